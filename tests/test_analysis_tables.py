"""The tables behind the book's figures (what the CSV links hold) and the numbers the text quotes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hdpbench.book import analysis


def test_band_table_keeps_every_q_point_and_band():
    reference = np.arange(12.0).reshape(4, 3)
    table = analysis.band_table({"distances": np.linspace(0, 1, 4), "frequencies_reference": reference,
                                 "frequencies_model": reference + 0.5}, "X")
    assert len(table) == 12 and set(table["compound"]) == {"X"}
    row = table[(table["q_index"] == 2) & (table["band"] == 1)].iloc[0]
    assert row["frequency_reference_thz"] == reference[2, 1] and row["frequency_model_thz"] == reference[2, 1] + 0.5
    assert row["distance"] == pytest.approx(2 / 3)


def test_confusion_table_round_trips_the_counts_and_the_published_ones():
    counts = np.array([[5, 1, 0], [2, 3, 0], [0, 1, 4]])
    table = analysis.confusion_table([{"counts": counts, "title": "m\nΦ_ref", "published": counts * 10}, {"counts": counts, "title": "n"}])
    first = table[table["panel"] == "m Φ_ref"]
    np.testing.assert_array_equal(first["count"].to_numpy().reshape(3, 3), counts)
    np.testing.assert_array_equal(first["published_count"].to_numpy().reshape(3, 3), counts * 10)
    assert table[table["panel"] == "n"]["published_count"].isna().all()


def test_temperature_table_drops_the_steps_after_a_run_stopped():
    runs = np.array([[300.0, 310.0, np.nan], [290.0, 295.0, 301.0]])
    table = analysis.temperature_table({"m": {"A": runs}})
    assert table.groupby("run").size().tolist() == [2, 3]
    assert table["temperature_K"].notna().all()


def test_kpca_table_gives_each_frame_its_origin_and_index():
    arrays = {"coordinates": np.arange(10.0).reshape(5, 2), "labels": np.array([0, 0, 1, 0, 1]),
              "sigma_per_frame": np.linspace(0.1, 0.5, 5), "reference_frame_index": np.array([0, 5, 9]),
              "model_frame_index": np.array([2, 7])}
    table = analysis.kpca_table({"A": arrays})
    assert table["origin"].tolist() == ["reference", "reference", "model", "reference", "model"]
    assert table["frame_index"].tolist() == [0, 5, 2, 9, 7]
    assert table["kpca_2"].tolist() == [1.0, 3.0, 5.0, 7.0, 9.0]


def test_canonical_temperature_spread_matches_sampled_maxwell_boltzmann_velocities():
    # independent check: kinetic temperatures of N atoms with Maxwell–Boltzmann velocities
    rng = np.random.default_rng(0)
    n_atoms, target = 80, 300.0
    velocities = rng.normal(size=(20000, n_atoms, 3))  # units where k_B T / m = 1
    temperatures = target * (velocities**2).sum(axis=(1, 2)) / (3 * n_atoms)
    assert analysis.canonical_temperature_spread(target, n_atoms) == pytest.approx(temperatures.std(), rel=0.02)


def test_generator_failures_read_as_sentences():
    text = analysis.readable_failure("failed: relaxation: CalculationFailed: (sygvd) failed to solve eigenvalue problem. info=378")
    assert text == "the reference calculation stopped during relaxation (CalculationFailed in its LAPACK eigensolver)"
    assert "info=378" not in text


def test_data_show_reports_the_gamma_acoustic_frequency_of_the_shipped_force_constants(capsys):
    from hdpbench.cli import main

    assert main(["data", "show", "Cs2AgBiBr6", "--dataset", "demo", "--no-md", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    # version 1 of the demo: ± displacements at tight SCF, symmetrised above 0.1 THz
    assert 0.0 <= info["gamma_acoustic_max_thz"] <= 0.1
    assert info["generation"]["force_constants"]["plusminus"] is True


def test_every_demo_force_constant_set_is_translationally_clean():
    """Measured on the Φ_ref each archive ships, not read from the generator's report."""
    from hdpbench.data.datasets import get_dataset
    from hdpbench.physics.phonons import acoustic_sum_rule_violation, make_phonopy

    dataset = get_dataset("demo", download=False)
    acoustic = {}
    for formula in dataset.compounds():
        compound = dataset.load(formula, trajectories=False)
        phonon = make_phonopy(compound.unitcell, compound.supercell_matrix, compound.force_constants)
        acoustic[formula] = acoustic_sum_rule_violation(phonon)["gamma_acoustic_max_thz"]
    assert len(acoustic) == 8 and max(acoustic.values()) <= 0.1, acoustic


def phonon_rows(models=("m1", "m2")):
    """Per model: 4 fluorides whose errors rise with σ (m2's twice m1's), one chloride, one
    fluoride without σ_ref."""
    import pandas as pd

    rows = []
    for scale, model in enumerate(models, start=1):
        for k in range(4):
            rows.append({"model": model, "compound": f"F{k}", "halide": "F", "sigma_reference_db": 0.1 * (k + 1),
                         "rmse_omega2_thz2": scale * (1.0 + k), "rmse_vg_thz_ang": scale * (4.0 - k)})
        rows.append({"model": model, "compound": "Cl0", "halide": "Cl", "sigma_reference_db": 0.9,
                     "rmse_omega2_thz2": scale * 9.0, "rmse_vg_thz_ang": scale * 0.5})
        rows.append({"model": model, "compound": "Fx", "halide": "F", "sigma_reference_db": None,
                     "rmse_omega2_thz2": 100.0, "rmse_vg_thz_ang": 100.0})
    return pd.DataFrame(rows)


def test_fig1a_shows_the_paper_selection_where_it_can_and_says_what_it_shows_instead():
    phonons = phonon_rows()
    shown = analysis.fig1a_selection(phonons, "F", "m2")
    assert shown == {"model": "m2", "label": "m2", "halide": "F", "n": 5, "as_published": True,
                     "sentence": "As published: the fluorides with m2 (n = 5)."}
    # the requested model has no results: the lowest median RMSE(ω²) (m1), the requested halide kept
    shown = analysis.fig1a_selection(phonons, "F", "medium-omat-0")
    assert (shown["model"], shown["halide"], shown["n"], shown["as_published"]) == ("m1", "F", 5, False)
    assert "omat-0-medium has no results here (models run: m1, m2)" in shown["sentence"]
    assert "lowest median RMSE(ω²), m1" in shown["sentence"]
    # one chloride is too few for a trend: every halide of the model
    shown = analysis.fig1a_selection(phonons, "Cl", "m2")
    assert (shown["model"], shown["halide"], shown["n"]) == ("m2", None, 6)
    assert "with 1 of the chlorides here (fewer than 3" in shown["sentence"]
    assert len(analysis.selected_rows(phonons, "m2", None)) == 6 and len(analysis.selected_rows(phonons, "m2", "Cl")) == 1


def test_sigma_rank_correlations_per_model_and_halide_leave_out_missing_sigma():
    table = analysis.sigma_rank_correlations(phonon_rows())
    # Cl has one compound with σ: no row for it; Fx has no σ: n counts 4 fluorides, 5 in all
    assert table[["model", "scope", "n"]].values.tolist() == [["m1", "all halides", 5], ["m1", "F", 4],
                                                             ["m2", "all halides", 5], ["m2", "F", 4]]
    fluorides = table[table["scope"] == "F"]
    assert (fluorides["rho_omega2"] == 1.0).all() and (fluorides["rho_vg"] == -1.0).all()
    everything = table[table["scope"] == "all halides"].iloc[0]
    # five compounds in rank order: the two extreme orderings of 120 (exact p)
    assert everything["rho_omega2"] == pytest.approx(1.0) and everything["p_omega2"] == pytest.approx(2 / 120)
    assert everything["rho_vg"] == pytest.approx(-1.0)


def test_rank_correlation_of_a_constant_error_is_undefined_not_a_warning():
    import warnings

    phonons = phonon_rows(("m1",)).assign(rmse_vg_thz_ang=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = analysis.sigma_rank_correlations(phonons)
    assert table["rho_vg"].isna().all() and table["rho_omega2"].notna().all()
    assert "ρ(RMSE(v_g), σ_ref) is undefined" in analysis.correlation_sentence(table, "m1")


def test_correlation_sentence_states_n_and_cautions_when_n_is_small():
    table = analysis.sigma_rank_correlations(phonon_rows())
    text = analysis.correlation_sentence(table, "m2", "F")
    assert "m2, fluorides: Spearman ρ(RMSE(ω²), σ_ref) = 1.00" in text and "n = 4 compounds" in text
    assert "Caution: with n = 4" in text  # ρ = ±1 on 4 points: p = 0.083 by the exact test
    assert "fewer than 3 compounds have σ_ref" in analysis.correlation_sentence(table, "m2", "Cl")


def test_mean_phonon_frequency_counts_imaginary_modes_as_negative():
    frequencies = np.array([[-1.0, 2.0, 5.0], [0.0, 3.0, 6.0]])  # 2 q-points x 3 bands
    assert analysis.mean_phonon_frequency(frequencies) == pytest.approx(15.0 / 6)
    with pytest.raises(ValueError):
        analysis.mean_phonon_frequency(np.empty((0, 3)))


def test_halide_reference_table_has_one_row_per_compound_in_halide_order():
    phonons = phonon_rows()
    arrays = {c: {"frequencies_reference": np.full((4, 3), float(k))} for k, c in enumerate(["F0", "F1", "F2", "F3", "Cl0"])}
    table = analysis.halide_reference_table(phonons, arrays)
    assert table["compound"].tolist() == ["F0", "F1", "F2", "F3", "Fx", "Cl0"]
    assert table.loc[table["compound"] == "Cl0", "mean_frequency_thz"].item() == 4.0
    assert np.isnan(table.loc[table["compound"] == "Fx", "mean_frequency_thz"].item())  # no stored bands
    assert np.isnan(table.loc[table["compound"] == "Fx", "sigma_reference_db"].item())
    assert analysis.halide_medians_sentence(table, "mean_frequency_thz", "THz") == "F 1.50 THz (n = 4), Cl 4.00 THz (n = 1)"
    assert analysis.band_grid_sentence(arrays) == "all 3 bands at the 4 q-points"


def test_spearman_p_is_exact_for_few_pairs_and_scipys_for_many():
    from scipy.stats import spearmanr

    rho, p = analysis.spearman([1, 2, 3, 4], [10, 20, 30, 40])
    assert rho == 1.0 and p == pytest.approx(2 / 24)  # 2 of the 24 orderings are as extreme (ρ = ±1)
    # ρ = 1 − Σd²/20 = 0.8: Σd² ≤ 4 for the identity, 4 adjacent swaps and 3 pairs of disjoint ones,
    # and as many orderings give ρ ≤ −0.8: 16 of 120
    rho, p = analysis.spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])
    assert rho == pytest.approx(0.8) and p == pytest.approx(16 / 120)
    x = np.arange(12.0)
    y = np.array([0, 2, 1, 3, 5, 4, 7, 6, 9, 8, 11, 10.0])
    assert analysis.spearman(x, y) == pytest.approx(tuple(spearmanr(x, y)))
    assert all(np.isnan(analysis.spearman([1, 2, 3], [5, 5, 5])))


def test_reference_bands_come_from_the_first_model_that_has_each_compound(monkeypatch):
    class Stage:
        def __init__(self, model, done):
            self.model, self.done = model, done

        def is_done(self, compound):
            return compound in self.done

        def load_arrays(self, compound):
            return {"from": self.model}

    done = {"m1": {"A"}, "m2": {"A", "B"}, "m3": set()}
    opened = []

    def fake_stage_results(stage, dataset, model, **kwargs):
        opened.append(model)
        return Stage(model, done[model])

    monkeypatch.setattr(analysis.phonons, "stage_results", fake_stage_results)  # where reference_band_arrays looks it up
    arrays = analysis.reference_band_arrays("d", ["m1", "m2", "m3"], ["B", "A", "C"], compounds=None)
    assert {c: a["from"] for c, a in arrays.items()} == {"B": "m2", "A": "m1"} and list(arrays) == ["B", "A"]
    assert opened == ["m1", "m2", "m3"]
    opened.clear()
    analysis.reference_band_arrays("d", ["m1", "m2"], ["A"])
    assert opened == ["m1"]  # every compound found: no further stage opened


def test_sigma_db_agreement_reports_the_worst_deviation_and_the_convention_gap():
    from hdpbench.book import analysis

    check = pd.DataFrame({"compound": ["A", "B", "C"], "sigma_db": [0.2, 0.4, 0.9], "sigma_db_recomputed": [0.2, 0.404, 0.9],
                          "sigma_paper": [0.22, 0.38, 1.2]})
    found = analysis.sigma_db_agreement(check)
    assert found["n"] == 3 and found["worst_compound"] == "B"
    assert found["max_relative_deviation"] == pytest.approx(0.01)
    assert found["median_paper_vs_db"] == pytest.approx(0.1)
    assert found["paper_vs_db_range"] == pytest.approx((-0.05, 1 / 3))
    assert found["same_class"] == 2  # C moves from 0.5 ≤ σ ≤ 1 to σ > 1


def test_md_start_sentence_states_the_rule_and_the_files_runs_started_from():
    from hdpbench.book import analysis
    from hdpbench.physics.md import MDSettings

    md = pd.DataFrame({"start_from": [["vasprun_prod_1.xml step 3"], ["vasprun_prod_2.xml step 600", "vasprun_prod_2.xml step 7"]]})
    text = analysis.md_start_sentence("demo", md, MDSettings())
    assert "random step 0–700" in text and "MD/vasprun_prod_2.xml, else MD/vasprun_prod_1.xml" in text
    assert text.endswith("`vasprun_prod_1.xml`, `vasprun_prod_2.xml`.") and "not the authors'" not in text
    other = analysis.md_start_sentence("demo", md.iloc[:0], MDSettings(start_frames="all", start_frame_max=10))
    assert "not the authors' rule" in other and "random step 0–10" in other and other.endswith("no run.")


def test_sigma_confusion_panels_one_per_approach_and_model_with_published_counts_for_paper_models():
    from hdpbench.book import analysis
    from hdpbench.data import published

    sigma = pd.DataFrame({
        "model": ["medium-omat-0"] * 3 + ["mine"] * 3,
        "sigma_reference": [0.2, 0.7, 1.5] * 2,
        "sigma_model_fc_reference": [0.2, 0.7, 0.9, 0.2, 0.2, 0.2],
        "sigma_model_fc_model": [0.2, 0.3, 0.9, 0.6, 0.7, 1.5],
    })
    panels = analysis.sigma_confusion_panels(sigma, ["medium-omat-0", "mine"])
    assert [(p["approach_key"], p["model"]) for p in panels] == [
        ("reference_fc", "medium-omat-0"), ("reference_fc", "mine"), ("model_fc", "medium-omat-0"), ("model_fc", "mine")]
    assert panels[0]["accuracy"] == pytest.approx(2 / 3) and panels[1]["accuracy"] == pytest.approx(1 / 3)
    assert panels[2]["counts"].tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 0]]
    np.testing.assert_array_equal(panels[0]["published"], published.fig3_counts("medium-omat-0", "reference_fc"))
    assert panels[1]["published"] is None


def test_sigma_db_sentence_names_the_worst_compound_only_when_there_is_a_deviation():
    from hdpbench.book import analysis

    exact = {"n": 8, "max_relative_deviation": 0.0, "worst_compound": "A"}
    assert analysis.sigma_db_sentence(exact).startswith("For all 8 compounds") and "A" not in analysis.sigma_db_sentence(exact)
    off = {"n": 8, "max_relative_deviation": 0.012, "worst_compound": "Rb2NiAgF6"}
    assert analysis.sigma_db_sentence(off) == (
        "Over 8 compounds the like-for-like recomputation deviates from the stored value by at most 1.2 % (Rb2NiAgF6).")
    assert "nothing to check" in analysis.sigma_db_sentence({"n": 0})
