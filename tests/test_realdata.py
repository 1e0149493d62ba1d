"""The real-data stages on the committed DFT references (data/external), with a cheap analytic model."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.lj import LennardJones

from hdpbench.data.datasets import get_dataset
from hdpbench.physics.anharmonicity import sigma
from hdpbench.physics.phonons import compare, model_force_constants
from hdpbench.pipeline import realdata


@pytest.fixture(scope="module")
def model():
    return LennardJones(sigma=2.6, epsilon=0.01, rc=6.0, smooth=True)


def test_real_phonons_equal_a_direct_comparison(model, tmp_path):
    stage = realdata.run_phonons(model, systems=("NaCl",), results_root=tmp_path)
    row = stage.load_json("NaCl")
    system = get_dataset("external").load("NaCl")
    phonon = model_force_constants(system.unitcell, model, supercell_matrix=system.supercell_matrix, displacement=0.01)
    direct, _, _ = compare(system.unitcell, system.force_constants, phonon.force_constants, supercell_matrix=system.supercell_matrix)
    assert row["rmse_omega2_thz2"] == pytest.approx(direct["rmse_omega2_thz2"], rel=1e-10)
    assert row["system"] == "NaCl" and row["settings_key"] == stage.key
    # a rerun computes nothing
    before = {p: p.stat().st_mtime_ns for p in stage.directory.iterdir()}
    realdata.run_phonons(model, systems=("NaCl",), results_root=tmp_path)
    assert {p: p.stat().st_mtime_ns for p in stage.directory.iterdir()} == before


def test_real_sigma_of_the_dft_frames_equals_sigma_computed_directly(model, tmp_path):
    stage = realdata.run_sigma(model, systems=("KCl",), results_root=tmp_path)
    row, arrays = stage.load_json("KCl"), stage.load_arrays("KCl")
    system = get_dataset("external").load("KCl")
    direct = sigma(system.trajectory, system.reference_supercell, system.force_constants)
    assert row["sigma_reference"] == pytest.approx(direct.sigma_mean_per_frame, rel=1e-12)
    assert row["n_frames"] == len(system.trajectory) and arrays["forces_model"].shape == system.trajectory.forces.shape
    np.testing.assert_allclose(arrays["sigma_per_frame_reference"], direct.sigma_per_frame)
