"""The numbers behind the σ and model-MD pages (issue 16): published Fig. 3 totals, confusion
triangles with their denominators, rank correlations, σ(t) traces, and the introduction's verdicts."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from hdpbench.book import analysis, figures
from hdpbench.data import published  # noqa: E402

COUNTS = np.array([[5, 1, 0], [2, 3, 1], [1, 1, 4]])


def test_published_fig3_totals_match_the_printed_panels():
    # sums of the panels as printed in the paper (read off by hand: 717+248+1+19+390+65+0+8+234 = 1682 ...)
    printed = {"mace-matpes-pbe-0": 1682, "medium-mpa-0": 1690, "medium-0b3": 1690, "medium-omat-0": 1689}
    totals = published.fig3_totals()
    assert totals == {"reference_fc": printed, "model_fc": printed}
    rows = {(r["model"], r["approach"]): r for r in published.fig3_reconciliation()}
    omat = rows[("omat-0-medium", "Φ_DFT")]
    assert omat["total"] == 1689 and omat[f"minus {published.N_VALID_AIMD} valid AIMD"] == 7
    # rows are DFT classes: 940 + 29 + 0, 49 + 414 + 14, 1 + 27 + 215
    assert [omat[f"DFT class {label}"] for label in published.CLASS_LABELS] == [969, 477, 243]
    assert rows[("matpes-pbe-omat-ft", "Φ_MACE")]["DFT class σ < 0.5"] == 966


def test_verdicts_carry_the_published_numbers_and_follow_the_constants(monkeypatch):
    text = published.verdicts_markdown()
    assert "38 %" in text and "6 %" in text and "10x" in text and "1682" in text
    assert text.count("**") == 8 and text.startswith("1. **Harmonic phonons.**")
    assert "~10x" in published.FINDINGS["phonons"]
    # formatted from the constants, not typed: change one and the text follows
    monkeypatch.setattr(published, "MD_LOWER_TRIANGLE", 0.5)
    monkeypatch.setattr(published, "PHONON_RMSE_OMEGA2_RATIO", 12)
    changed = published.verdicts_markdown()
    assert "50 %" in changed and "38 %" not in changed and "12x" in changed


def test_book_build_writes_the_verdicts_the_introduction_includes(monkeypatch, tmp_path):
    import subprocess

    from hdpbench.book import build as book
    from hdpbench.core import paths

    monkeypatch.setattr(book, "generated_dir", lambda: tmp_path)
    monkeypatch.setattr(book, "execute_notebook", lambda name, parameters: None)
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: None)
    book.build({"dataset": "demo"}, notebooks=["sigma"])
    assert (tmp_path / "verdicts.md").read_text() == published.verdicts_markdown()
    intro = (paths.book_dir() / "intro.md").read_text()
    include = intro.index("```{include} _generated/verdicts.md")
    assert intro.index("{admonition} What this build shows") < intro.index("## The paper's four verdicts") < include
    assert "38" not in intro and "10x" not in intro  # the numbers live in published.py only


def test_triangle_counts_give_counts_denominators_and_fractions():
    summary = analysis.triangle_counts(COUNTS)
    assert summary["total"] == 18 and summary["correct"] == 12
    # lower triangle 2 + 1 + 1 of the 12 compounds in rows 2-3; upper 1 + 0 + 1 of the 12 in rows 1-2
    assert (summary["more_stable_count"], summary["more_stable_denominator"]) == (4, 12)
    assert (summary["less_stable_count"], summary["less_stable_denominator"]) == (2, 12)
    assert summary["less_stable_fraction"] == pytest.approx(2 / 12)
    only_stable = analysis.triangle_counts(np.array([[3, 0, 0], [0, 0, 0], [0, 0, 0]]))
    assert only_stable["more_stable_denominator"] == 0 and np.isnan(only_stable["more_stable_fraction"])
    # confusion() keeps its keys and adds the counts
    result = analysis.confusion([0.1, 0.7, 1.5, 0.2], [0.1, 0.2, 0.7, 0.8])
    assert result["more_stable_count"] == 2 and result["more_stable_denominator"] == 2
    assert result["less_stable_count"] == 1 and result["less_stable_denominator"] == 3
    assert result["accuracy"] == pytest.approx(0.25) and result["more_stable_fraction"] == 1.0


def test_confusion_summary_and_its_text_cells():
    table = analysis.confusion_summary([{"source": "s", "model": "m", "title": "x", "counts": COUNTS}])
    row = table.iloc[0]
    assert list(table.columns[:2]) == ["source", "model"] and "title" not in table
    assert row["n"] == 18 and row["correct (%)"] == pytest.approx(100 * 12 / 18)
    assert row["of (outside the most stable class)"] == 12 and row["more stable (%)"] == pytest.approx(100 / 3)
    shown = analysis.readable_triangles(table, ["model"])
    assert shown.iloc[0]["more stable (lower triangle)"] == "4\u00a0of\u00a012 (33\u00a0%)"
    assert shown.iloc[0]["correct (diagonal)"] == "12\u00a0of\u00a018 (67\u00a0%)"
    assert analysis.fraction_text(np.nan, np.nan, 38.0) == "38\u00a0% (counts not printed)"
    assert analysis.fraction_text(None, None) == "not printed" and analysis.fraction_text(0, 0) == "0\u00a0of\u00a00"
    assert analysis.range_text([0.031, 0.029]) == "0.03"  # equal ends in print: one number, not "0.03 to 0.03"
    assert analysis.range_text(np.array([0.12, 0.031, 0.05])) == "0.03 to 0.12"


def test_published_fig3_summary_counts_the_paper_panels():
    summary = analysis.published_fig3_summary().set_index(["model", "approach"])
    omat = summary.loc[("omat-0-medium", "Φ_ref (Φ_DFT)")]
    assert omat["correct"] == 940 + 414 + 215 and omat["n"] == 1689
    assert omat["more stable (lower triangle)"] == 49 + 1 + 27 and omat["of (outside the most stable class)"] == 477 + 243
    assert len(summary) == 8


def md_rows():
    # model "a": F1 less stable (0.3 → 0.7), Cl1 more stable (0.7 → 0.3), rest right
    reference = [0.3, 0.3, 0.7, 0.2, 1.2]
    return pd.DataFrame(
        {
            "model": ["a"] * 5 + ["b"] * 5,
            "compound": ["F1", "F2", "Cl1", "Cl2", "Br1"] * 2,
            "halide": ["F", "F", "Cl", "Cl", "Br"] * 2,
            "sigma_reference": reference * 2,
            "sigma_model_only": [0.7, 0.3, 0.3, 0.2, 1.3] + reference,
        }
    )


def test_md_triangles_every_model_then_the_paper_row():
    table = analysis.md_triangles(md_rows(), ["a", "b"])
    assert table["model"].tolist() == ["a", "b", "omat-0-medium"]
    a = table.iloc[0]
    assert (a["more stable (lower triangle)"], a["of (outside the most stable class)"]) == (1, 2)
    assert (a["less stable (upper triangle)"], a["of (outside the least stable class)"]) == (1, 4)
    paper = table.iloc[2]
    assert paper["source"] == "paper Fig. 4a" and np.isnan(paper["n"])
    assert paper["more stable (%)"] == pytest.approx(38) and paper["less stable (%)"] == pytest.approx(6)
    shown = analysis.readable_triangles(table, ["source", "model"])
    assert shown.iloc[2]["less stable (upper triangle)"] == "6\u00a0% (counts not printed)"


def test_halide_triangles_split_the_upper_triangle_by_halide():
    table = analysis.halide_triangles(md_rows(), ["a", "b"]).set_index(["model", "halide"])
    share = "share of the model's less-stable compounds (%)"
    assert table.loc[("a", "F"), "less stable (upper triangle)"] == 1 and table.loc[("a", "F"), share] == 100
    assert table.loc[("a", "Cl"), share] == 0 and table.loc[("a", "Cl"), "more stable (lower triangle)"] == 1
    assert np.isnan(table.loc[("b", "F"), share])  # model b misplaces nothing
    assert [h for h in table.loc["a"].index] == ["F", "Cl", "Br"]


def test_rank_correlations_per_model_with_n_and_undefined_cases():
    merged = pd.DataFrame(
        {
            "model": ["a"] * 4 + ["b"] * 2 + ["c"] * 3,
            "abs_delta_sigma": [0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.1, 0.2, 0.3],
            "rmse_omega2_thz2": [1.0, 2.0, 3.0, 5.0, 1.0, 2.0, 1.0, 1.0, 1.0],
            "rmse_vg_thz_ang": [4.0, 3.0, 2.0, 1.0, 1.0, 2.0, 3.0, 2.0, np.nan],
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a page must not print warnings
        table = analysis.rank_correlations(merged, ["a", "b", "c"]).set_index("model")
    assert table.loc["a", "rho (rmse_omega2_thz2)"] == pytest.approx(1.0)
    assert table.loc["a", "rho (rmse_vg_thz_ang)"] == pytest.approx(-1.0) and table.loc["a", "n (rmse_vg_thz_ang)"] == 4
    assert np.isnan(table.loc["b", "rho (rmse_omega2_thz2)"]) and table.loc["b", "n (rmse_omega2_thz2)"] == 2
    assert np.isnan(table.loc["c", "rho (rmse_omega2_thz2)"])  # constant RMSE
    assert table.loc["c", "n (rmse_vg_thz_ang)"] == 2


def test_trace_compounds_pick_the_most_over_stabilised_and_the_closest():
    sigma = pd.DataFrame({"model": ["m"] * 3 + ["n"], "compound": ["A", "B", "C", "A"],
                          "delta_sigma_model_fc": [-0.3, 0.01, 0.2, -0.9]})
    chosen = analysis.trace_compounds(sigma, "m")
    assert list(chosen) == ["A", "B"] and "over-stabilised" in chosen["A"] and "closest" in chosen["B"]
    positive = analysis.trace_compounds(sigma[sigma["compound"] != "A"], "m")
    assert list(positive) == ["B"] and positive["B"].endswith("also the closest")  # lowest and closest are one compound


def trace_arrays():
    # two production files: steps 100-102 of the first (300 steps long as far as seen: last step 299), 100-101 of the second
    return {
        "frame_source": np.array([0, 0, 0, 1, 1]),
        "frame_index": np.array([100, 200, 299, 100, 101]),
        "sigma_per_frame_reference": np.array([0.3, 0.4, 0.5, 0.6, 0.7]),
        "sigma_per_frame_model_fc_reference": np.array([0.31, 0.41, 0.51, 0.61, 0.71]),
        "sigma_per_frame_model_fc_model": np.array([0.2, 0.3, 0.4, 0.5, 0.6]),
    }


def test_sigma_trace_table_places_the_files_end_to_end():
    table = analysis.sigma_trace_table({"A": trace_arrays()}, timestep_fs=2.0)
    assert table["time_fs"].tolist() == [200.0, 400.0, 598.0, 800.0, 802.0]
    assert table["file"].tolist() == [0, 0, 0, 1, 1] and table["file_start_fs"].tolist() == [0, 0, 0, 600.0, 600.0]
    assert table["sigma_model_fc_model"].tolist() == [0.2, 0.3, 0.4, 0.5, 0.6]
    assert analysis.sigma_trace_table({}).empty


def test_sigma_time_traces_never_join_frames_of_two_files():
    figures.use_book_style()
    traces = analysis.sigma_trace_table({"A": trace_arrays(), "B": trace_arrays()})
    fig = figures.sigma_time_traces(traces, {"A": "most over-stabilised", "B": "closest"}, "m", "test data")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().split(":")[0] for ax in panels] == ["A", "B"] and "n = 5 frames, 2 files" in panels[0].get_title()
    # σ(t) lines vary in x and y (the class limits are horizontal, the file boundary vertical)
    data_lines = [line for line in panels[0].get_lines() if np.ptp(line.get_xdata()) > 0 and np.ptp(line.get_ydata()) > 0]
    assert len(data_lines) == 6  # three σ(t) lines per file, two files
    boundary = traces["file_start_fs"].max()  # 300 fs: the first file's last step seen is 299
    assert boundary == 300
    for line in data_lines:
        x = np.asarray(line.get_xdata())
        assert x.max() < boundary or x.min() >= boundary  # each line inside one file
    assert fig.get_figwidth() <= figures.PAGE_WIDTH_IN + 1e-9
    fig.canvas.draw()
    sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip() and t.get_visible()]
    assert min(sizes) >= 9
    plt.close(fig)


def test_trace_summary_names_each_compound_with_its_scores():
    sigma = pd.DataFrame({"model": ["m", "m"], "compound": ["A", "B"], "sigma_reference": [0.8, 0.3],
                          "sigma_model_fc_model": [0.5, 0.31]})
    text = analysis.trace_summary(sigma, "m", {"A": "most over-stabilised", "B": "closest"})
    assert text == ("A (most over-stabilised; σ_ref 0.80, σ_model(Φ_model) 0.50) and "
                    "B (closest; σ_ref 0.30, σ_model(Φ_model) 0.31)")
    assert analysis.trace_summary(sigma, "m", {}) == "no compound with both scores"


def test_less_stable_by_halide_names_each_model_and_its_halides():
    halides = analysis.halide_triangles(md_rows(), ["a", "b"])
    assert analysis.less_stable_by_halide(halides) == (
        "a puts 1 compound in a less stable class (F: 1); b puts no compound in a less stable class")
