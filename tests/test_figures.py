"""The book's figures as a reader meets them: page width, fonts of at least 9 pt, n shown, points
instead of boxes for small groups, band ticks at the segment ends, one legend and colourbar."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from hdpbench import figures  # noqa: E402
from hdpbench.phonons import POINTS_PER_SEGMENT, Bands, band_arrays  # noqa: E402


@pytest.fixture(autouse=True)
def book_style():
    figures.use_book_style()
    yield
    plt.close("all")


def phonon_rows():
    rows = []
    for model in ("small", "more"):
        for k in range(6):
            rows.append({"model": model, "compound": f"F{k}", "halide": "F", "rmse_omega2_thz2": 1.0 + k, "rmse_vg_thz_ang": 0.5 + k})
        rows.append({"model": model, "compound": "Cl0", "halide": "Cl", "rmse_omega2_thz2": 2.0, "rmse_vg_thz_ang": 1.0})
    return pd.DataFrame(rows)


def bands_arrays():
    n_segments = 3
    distances = np.concatenate([np.linspace(k, k + 1, POINTS_PER_SEGMENT) for k in range(n_segments)])
    frequencies = np.tile(np.linspace(-1, 5, 6), (len(distances), 1))
    bands = Bands(distances, frequencies, np.zeros((*frequencies.shape, 3)), ["$\\Gamma$", "X", "U", "K", "$\\Gamma$"],
                  np.cumsum([POINTS_PER_SEGMENT] * n_segments), [True, False, True])
    return band_arrays(bands, bands)


def kpca_arrays(seed):
    rng = np.random.default_rng(seed)
    labels = np.array([0] * 6 + [1] * 5)
    return {"coordinates": rng.normal(size=(11, 2)), "labels": labels, "sigma_per_frame": rng.uniform(0.1, 0.4, 11),
            "reference_frame_index": np.arange(6), "model_frame_index": np.arange(5), "kernel": np.eye(11)}


def all_figures():
    panels = [{"counts": np.array([[3, 1, 0], [0, 2, 0], [0, 0, 1]]), "title": f"model {k}"} for k in range(4)]
    traces = {"small": {"A": np.full((1, 20), 300.0)}, "more": {"A": np.full((1, 20), 290.0)}}
    merged = phonon_rows().assign(abs_delta_sigma=0.1)
    sigma = phonon_rows().assign(delta_sigma_reference_fc=0.05, delta_sigma_model_fc=-0.1)
    return {
        "fig1a": figures.phonon_error_scatter(phonon_rows().assign(sigma_reference_db=0.3), "more", "test data"),
        "fig1bc": figures.phonon_error_boxes(phonon_rows(), ["small", "more"], "test data"),
        "figS2": figures.band_comparison([("A (best)", bands_arrays()), ("B (worst)", bands_arrays())], "more", "test data"),
        "fig3": figures.confusion_grid(panels, "test data"),
        "figS9": figures.delta_sigma_distributions(sigma, ["small", "more"], "test data"),
        "fig5": figures.delta_sigma_vs_phonon_errors(merged[merged["model"] == "more"], "test data"),
        "temperatures": figures.temperature_traces(traces, 300.0, "test data"),
        "fig6": figures.kpca_grid({"A": kpca_arrays(0), "B": kpca_arrays(1), "C": kpca_arrays(2)}, "more", "test data"),
        "figS10": figures.kpca_grid({"A": kpca_arrays(0)}, "more", "test data", colour_by_sigma=True),
    }


def test_every_book_figure_fits_the_page_with_fonts_of_at_least_9_pt():
    for name, fig in all_figures().items():
        assert fig.get_figwidth() <= figures.PAGE_WIDTH_IN + 1e-9, name
        fig.canvas.draw()
        sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip() and t.get_visible()]
        assert sizes and min(sizes) >= 9, (name, min(sizes))


def test_small_groups_are_points_with_their_n_and_large_ones_boxes():
    fig = figures.phonon_error_boxes(phonon_rows(), ["small", "more"], "test data")
    top = fig.axes[0]
    boxes = [p for p in top.patches]  # patch_artist boxes: one per model for the 6 fluorides
    assert len(boxes) == 2
    points = [c for c in top.collections if isinstance(c, matplotlib.collections.PathCollection) and len(c.get_offsets())]
    assert sorted(len(c.get_offsets()) for c in points) == [1, 1]  # the one chloride, per model
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["F\nn = 6", "Cl\nn = 1"]


def test_band_ticks_sit_at_the_segment_ends_with_the_path_labels():
    fig = figures.band_comparison([("A", bands_arrays())], "more", "test data")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Γ", "X", "U|K", "Γ"]
    np.testing.assert_allclose(ax.get_xticks(), [0, 1, 2, 3])


def test_confusion_grid_has_one_colourbar_and_states_n():
    fig = figures.confusion_grid([{"counts": np.array([[3, 1, 0], [0, 2, 0], [0, 0, 1]]), "title": "m"}] * 3, "test data")
    assert [ax.get_ylabel() for ax in fig.axes].count("fraction of the reference class") == 1
    assert "(n = 7)" in fig.axes[0].get_title()


def test_kpca_grid_puts_maps_two_per_row_with_one_legend():
    fig = figures.kpca_grid({c: kpca_arrays(k) for k, c in enumerate("ABC")}, "more", "test data")
    maps = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in maps] == ["A", "B", "C"] and len(fig.legends) == 1
    assert len({round(ax.get_position().x0, 3) for ax in maps}) == 2
