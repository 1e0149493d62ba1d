"""The tables behind the book's figures (what the CSV links hold) and the numbers the text quotes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hdpbench import analysis


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
    from hdpbench.datasets import get_dataset
    from hdpbench.phonons import acoustic_sum_rule_violation, make_phonopy

    dataset = get_dataset("demo", download=False)
    acoustic = {}
    for formula in dataset.compounds():
        compound = dataset.load(formula, trajectories=False)
        phonon = make_phonopy(compound.unitcell, compound.supercell_matrix, compound.force_constants)
        acoustic[formula] = acoustic_sum_rule_violation(phonon)["gamma_acoustic_max_thz"]
    assert len(acoustic) == 8 and max(acoustic.values()) <= 0.1, acoustic
