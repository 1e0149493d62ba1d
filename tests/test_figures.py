"""The book's figures as a reader meets them: page width, fonts of at least 9 pt, n shown, points
instead of boxes for small groups, band ticks at the segment ends, one legend and colourbar."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from hdpbench.book import figures  # noqa: E402
from hdpbench.physics.phonons import Bands, PhononSettings, band_arrays  # noqa: E402


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
    distances = np.concatenate([np.linspace(k, k + 1, PhononSettings().points_per_segment) for k in range(n_segments)])
    frequencies = np.tile(np.linspace(-1, 5, 6), (len(distances), 1))
    bands = Bands(distances, frequencies, np.zeros((*frequencies.shape, 3)), ["$\\Gamma$", "X", "U", "K", "$\\Gamma$"],
                  np.cumsum([PhononSettings().points_per_segment] * n_segments), [True, False, True])
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
        "figS3to6": figures.halide_error_panels(sigma_rows(), "F", ["small", "more"], "test data"),
        "figS3to6_four_models": figures.halide_error_panels(sigma_rows(), "F", ["small", "more", "small", "more"], "test data"),
        "figS3to6_absent": figures.halide_error_panels(sigma_rows(), "I", ["small", "more"], "test data"),
        "figS1": figures.halide_reference_distributions(reference_rows(), "test data"),
        "db_self_check": figures.sigma_db_self_check(db_check_rows(), "test data"),
    }


def db_check_rows():
    return pd.DataFrame({"compound": ["F0", "F1", "Cl0"], "halide": ["F", "F", "Cl"], "sigma_db": [0.2, 2.5, 0.3],
                         "sigma_db_recomputed": [0.2, 2.5, 0.3], "sigma_paper": [0.22, 2.8, 0.29]})


def test_db_self_check_puts_every_compound_on_both_panels_around_the_diagonal():
    fig = figures.sigma_db_self_check(db_check_rows(), "test data")
    left, right = fig.axes[:2]
    for ax in (left, right):
        points = np.concatenate([c.get_offsets() for c in ax.collections])
        assert len(points) == 3 and ax.get_xscale() == "log"
        assert ax.get_xlim()[0] <= points.min() and ax.get_xlim()[1] >= points.max()  # nothing clipped
        assert "n = 3" in ax.get_xlabel()
    diagonal = left.get_lines()[0]
    np.testing.assert_allclose(diagonal.get_xdata(), diagonal.get_ydata())
    np.testing.assert_allclose(sorted(np.concatenate([c.get_offsets() for c in right.collections])[:, 1]), [0.22, 0.29, 2.8])


def sigma_rows():
    """phonon_rows with σ_ref: rising with the fluorides' index, one fluoride without (σ ≥ 2)."""
    rows = phonon_rows()
    sigma = rows["compound"].map({f"F{k}": 0.1 * (k + 1) for k in range(6)} | {"Cl0": 0.3})
    return rows.assign(sigma_reference_db=sigma.where(rows["compound"] != "F5"))


def reference_rows():
    return pd.DataFrame({"compound": [f"F{k}" for k in range(6)] + ["Cl0", "I0"], "halide": ["F"] * 6 + ["Cl", "I"],
                         "sigma_reference_db": [0.1, 0.2, 0.3, np.nan, 0.5, 0.6, 0.3, 0.2],
                         "mean_frequency_thz": [5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 3.0, 2.0]})


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


def test_halide_panels_one_per_model_with_n_log_axes_and_one_shared_colour_scale():
    fig = figures.halide_error_panels(sigma_rows(), "F", ["small", "more"], "test data")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["small (n = 6)", "more (n = 6)"]
    assert all(ax.get_xscale() == "log" and ax.get_yscale() == "log" for ax in panels)
    assert panels[0].get_xlabel() == "RMSE(v_g) (THz·Å)" and panels[0].get_ylabel() == "RMSE(ω²) (THz²)"
    assert [ax.get_ylabel() for ax in fig.axes].count("σ_ref") == 1  # one colourbar
    coloured = [c for ax in panels for c in ax.collections if c.get_array() is not None]
    assert {c.get_clim() for c in coloured} == {(0.1, 0.5)}  # the fluorides' σ range in every panel
    # F5 has no σ_ref: a grey square in each panel, so every compound is drawn
    assert [sum(len(c.get_offsets()) for c in ax.collections) for ax in panels] == [6, 6]


def test_halide_panels_say_when_the_dataset_has_no_such_halide():
    fig = figures.halide_error_panels(sigma_rows(), "Br", ["small"], "test data")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["no bromides\nin this dataset"] and fig.axes[0].get_title() == "small (n = 0)"


def test_halide_reference_distributions_count_each_panel_on_its_own():
    fig = figures.halide_reference_distributions(reference_rows(), "test data")
    sigma_ax, omega_ax = fig.axes
    # F3 has no σ_ref: 5 fluorides in (a), 6 in (b); 5 or more is a box, fewer are points
    assert [t.get_text() for t in sigma_ax.get_xticklabels()] == ["F\nn = 5", "Cl\nn = 1", "I\nn = 1"]
    assert [t.get_text() for t in omega_ax.get_xticklabels()] == ["F\nn = 6", "Cl\nn = 1", "I\nn = 1"]
    assert len(sigma_ax.patches) == 1 and omega_ax.get_ylabel() == "⟨ω⟩ (THz)"


def test_log_axes_read_as_plain_numbers_even_over_less_than_a_decade():
    fig, ax = plt.subplots()
    ax.scatter([5.1, 6.4], [0.97, 1.3])
    ax.set(xscale="log", yscale="log")
    figures.plain_log_ticks(ax)
    fig.canvas.draw()
    for axis, (low, high) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        shown = [tick.label1.get_text() for tick in axis.get_major_ticks() if low <= tick.get_loc() <= high]
        assert 2 <= len(shown) <= 6 and all(label and "×" not in label and "$" not in label for label in shown), shown
        assert not [t for t in axis.get_minorticklabels() if t.get_text()]
        assert all(float(label) == pytest.approx(tick) for label, tick in zip(shown, [t for t in axis.get_majorticklocs() if low <= t <= high], strict=True))


def test_halide_panels_tell_a_missing_result_from_a_missing_halide():
    rows = sigma_rows()
    fig = figures.halide_error_panels(rows[~((rows["model"] == "more") & (rows["halide"] == "Cl"))], "Cl", ["small", "more"], "test data")
    assert [t.get_text() for t in fig.axes[1].texts] == ["no results\nfor this model"]
