"""σ against FHI-vibes' stored values (CsPbI3), an independent computation on real KCl data, and edge cases."""

from __future__ import annotations

import lzma

import numpy as np
import phonopy
import pytest
from ase.build import bulk

from hdpbench.core.compound import Trajectory
from hdpbench.core.structures import from_phonopy_atoms
from hdpbench.io.trajectories import read_fhi_vibes
from hdpbench.physics.anharmonicity import (
    confusion_matrix,
    displacements,
    harmonic_forces,
    sigma,
    sigma_class,
    sigma_from_forces,
)


@pytest.fixture
def cspbi3(fixtures):
    return read_fhi_vibes(fixtures / "fhi-vibes" / "CsPbI3_aims_pbesol_700K_trajectory.nc")


def test_cspbi3_equals_fhi_vibes_stored_sigma(cspbi3):
    # Only positions, reference, cell and Φ are used: not the file's harmonic forces or displacements.
    result = sigma(cspbi3.trajectory, cspbi3.reference, cspbi3.force_constants)
    np.testing.assert_allclose(result.sigma_per_frame, cspbi3.sigma_per_sample, rtol=0, atol=1e-6)
    assert result.sigma_pooled == pytest.approx(cspbi3.sigma, abs=1e-6)
    assert result.n_frames == 9 and result.n_atoms == 135
    assert set(result.sigma_per_species) == {"Cs", "Pb", "I"}


def test_cspbi3_wrapped_positions_give_the_same_sigma(cspbi3):
    trajectory = cspbi3.trajectory
    cell = cspbi3.reference.cell.array
    fractional = trajectory.positions @ np.linalg.inv(cell)
    wrapped = (fractional - np.floor(fractional)) @ cell
    assert np.abs(wrapped - trajectory.positions).max() > 1.0  # some atoms really moved across the cell
    moved = Trajectory(trajectory.numbers, wrapped, trajectory.cells, trajectory.forces)
    a = sigma(trajectory, cspbi3.reference, cspbi3.force_constants)
    b = sigma(moved, cspbi3.reference, cspbi3.force_constants)
    np.testing.assert_allclose(a.sigma_per_frame, b.sigma_per_frame, rtol=0, atol=1e-12)


def test_kcl_random_displacements_against_an_independent_computation(fixtures, tmp_path):
    kcl = fixtures / "phonopy" / "KCl"
    fc_file = tmp_path / "fc.yaml"
    fc_file.write_bytes(lzma.decompress((kcl / "phonopy_fc222_JPCM2022.yaml.xz").read_bytes()))
    params = tmp_path / "params.yaml"
    params.write_bytes(lzma.decompress((kcl / "phonopy_mlpsscha_params_KCl-120.yaml.xz").read_bytes()))
    fc_phonon = phonopy.load(str(fc_file), is_compact_fc=False, log_level=0)
    data = phonopy.load(str(params), produce_fc=False, log_level=0)
    dataset = data.dataset
    u_true = np.array(dataset["displacements"])
    forces = np.array(dataset["forces"])
    reference = from_phonopy_atoms(data.supercell)
    np.testing.assert_allclose(reference.positions, from_phonopy_atoms(fc_phonon.supercell).positions, atol=1e-10)
    trajectory = Trajectory(reference.numbers, reference.positions + u_true, reference.cell.array, forces)
    result = sigma(trajectory, reference, fc_phonon.force_constants)

    # Independent: explicit double sum over atom pairs, per sample, with the file's own displacements.
    fc = fc_phonon.force_constants
    expected = []
    for u, f in zip(u_true, forces, strict=True):
        f2 = -np.einsum("ijab,jb->ia", fc, u)
        expected.append(np.sqrt(np.sum((f - f2) ** 2) / np.sum(f**2)))
    assert len(expected) == 120
    np.testing.assert_allclose(result.sigma_per_frame, expected, rtol=1e-10)
    np.testing.assert_allclose(displacements(trajectory.positions, reference), u_true, atol=1e-10)


def test_harmonic_forces_are_vectorised_and_linear():
    rng = np.random.default_rng(0)
    fc = rng.normal(size=(4, 4, 3, 3))
    u = rng.normal(size=(5, 4, 3))
    expected = -np.einsum("ijab,tjb->tia", fc, u)
    np.testing.assert_allclose(harmonic_forces(fc, u), expected, atol=1e-12)
    np.testing.assert_allclose(harmonic_forces(fc, u[2]), expected[2], atol=1e-12)


def test_exactly_harmonic_forces_give_zero_and_sign_flip_gives_two():
    rng = np.random.default_rng(1)
    atoms = bulk("NaCl", "rocksalt", a=5.6, cubic=True).repeat((2, 1, 1))
    a = rng.normal(size=(len(atoms) * 3,) * 2)
    fc = (a @ a.T).reshape(len(atoms), 3, len(atoms), 3).transpose(0, 2, 1, 3)
    u = rng.normal(0, 0.05, size=(3, len(atoms), 3))
    f2 = harmonic_forces(fc, u)
    frames = Trajectory(atoms.numbers, atoms.positions + u, atoms.cell.array, f2)
    assert np.allclose(sigma(frames, atoms, fc).sigma_per_frame, 0.0)
    assert np.allclose(sigma(frames, atoms, fc, forces=-f2).sigma_per_frame, 2.0)


def test_edge_cases_single_frame_zero_displacement_and_single_atom_species():
    atoms = bulk("NaCl", "rocksalt", a=5.6, cubic=True)
    atoms.symbols[0] = "K"  # K present once
    fc = np.zeros((8, 8, 3, 3))
    rng = np.random.default_rng(2)
    forces = rng.normal(size=(1, 8, 3))
    one = sigma(Trajectory(atoms.numbers, atoms.positions, atoms.cell.array, forces), atoms, fc)
    assert one.n_frames == 1 and one.sigma_per_frame[0] == pytest.approx(1.0)  # Φ = 0: all force anharmonic
    assert set(one.sigma_per_species) == {"K", "Na", "Cl"} and np.isfinite(one.sigma_per_species["K"])
    # A frame exactly at the reference with zero force has no σ(t): NaN, ignored by the mean.
    two = sigma_from_forces(np.stack([np.zeros((8, 3)), forces[0]]), np.zeros((2, 8, 3)), atoms.get_chemical_symbols())
    assert np.isnan(two.sigma_per_frame[0]) and two.sigma_mean_per_frame == pytest.approx(1.0)


def test_mismatched_trajectory_is_refused():
    from hdpbench.core.errors import TrajectoryMismatchError

    atoms = bulk("NaCl", "rocksalt", a=5.6, cubic=True)
    wrong = Trajectory(atoms.numbers[::-1], atoms.positions, atoms.cell.array, np.ones((8, 3)))
    with pytest.raises(TrajectoryMismatchError):
        sigma(wrong, atoms, np.zeros((8, 8, 3, 3)))


def test_classes_and_confusion_matrix():
    assert sigma_class([0.1, 0.5, 1.0, 1.01, np.nan]).tolist() == [0, 1, 1, 2, -1]
    reference = [0.2, 0.3, 0.7, 0.8, 1.5, np.nan]
    model = [0.25, 0.6, 0.4, 0.9, 1.2, 0.3]
    counts, normalised = confusion_matrix(reference, model)
    assert counts.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    np.testing.assert_allclose(normalised.sum(axis=1), 1.0)
