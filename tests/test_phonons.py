"""Phonon metrics on real VASP force sets (NaCl, CaTiO3) and Φ from a model, batched or not."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest

from hdpbench.io.force_constants import read_force_constants
from hdpbench.physics.phonons import (
    PhononSettings,
    acoustic_sum_rule_violation,
    analytic_force_constants,
    band_arrays,
    compare,
    make_phonopy,
    model_force_constants,
    save_phonopy_yaml,
    stability_accuracy,
)


def real_case(fixtures, name):
    unitcell = ase.io.read(fixtures / "phonopy" / name / "POSCAR-unitcell", format="vasp")
    fc = read_force_constants(fixtures / "phonopy" / name / "FORCE_SETS", unitcell=unitcell, supercell_matrix=np.diag([2, 2, 2]))
    return unitcell, fc


@pytest.mark.parametrize("name", ["NaCl", "CaTiO3"])
def test_identical_force_constants_give_zero_errors(fixtures, name):
    unitcell, fc = real_case(fixtures, name)
    metrics, reference, model = compare(unitcell, fc, fc, thermal=False)
    assert metrics["rmse_omega2_thz2"] == 0.0 and metrics["rmse_vg_thz_ang"] == 0.0 and metrics["mae_freq_thz"] == 0.0
    assert metrics["n_qpoints"] == len(reference.distances) and len(reference.distances) % 50 == 0


@pytest.mark.parametrize("name", ["NaCl", "CaTiO3"])
def test_scaled_force_constants_scale_signed_omega2_exactly(fixtures, name):
    """ω² is linear in Φ, so 1.1·Φ gives RMSE(ω²) = 0.1·RMS(ω²) — imaginary modes included."""
    unitcell, fc = real_case(fixtures, name)
    metrics, reference, _ = compare(unitcell, fc, 1.1 * fc, thermal=False)
    rms = np.sqrt(np.mean(reference.omega2**2))
    assert metrics["rmse_omega2_thz2"] == pytest.approx(0.1 * rms, rel=1e-10)
    if name == "CaTiO3":  # the cubic perovskite is unstable: its imaginary modes are in the comparison
        assert metrics["min_freq_reference_thz"] < -1.0 and not metrics["stable_reference"]
        assert metrics["min_freq_model_thz"] == pytest.approx(np.sqrt(1.1) * metrics["min_freq_reference_thz"], rel=1e-6)


def test_thermal_properties_match_phonopy_directly(fixtures):
    unitcell, fc = real_case(fixtures, "NaCl")
    metrics, _, _ = compare(unitcell, fc, fc)
    phonon = make_phonopy(unitcell, (2, 2, 2), fc)
    phonon.run_mesh(75.0)
    phonon.run_thermal_properties(temperatures=[300, 1000], cutoff_frequency=0.1, exclude_gamma_acoustic=True)
    expected = phonon.thermal_properties
    np.testing.assert_allclose(metrics["thermal_reference"]["heat_capacity_J_K_mol"], expected.heat_capacity)
    np.testing.assert_allclose(metrics["thermal_reference"]["free_energy_kJ_mol"], expected.free_energy)
    assert metrics["error_entropy_J_K_mol"] == [0.0, 0.0]
    assert metrics["stable_reference"] and metrics["stability_agrees"]


def test_acoustic_sum_rule_violation_against_a_direct_gamma_diagonalisation(fixtures):
    """A self-term shift c·I breaks Σ_j Φ_ij = 0 by exactly c; the Γ acoustic frequencies are checked
    against the dynamical matrix at Γ built here directly from Φ and the masses."""
    from phonopy.physical_units import get_physical_units

    unitcell, fc = real_case(fixtures, "NaCl")
    phonon = make_phonopy(unitcell, (2, 2, 2), fc)
    phonon.symmetrize_force_constants()
    invariant = phonon.force_constants.copy()
    assert acoustic_sum_rule_violation(phonon)["asr_residual_ev_ang2"] < 1e-10
    assert acoustic_sum_rule_violation(phonon)["gamma_acoustic_max_thz"] < 1e-4

    shift = 0.05
    broken = invariant + shift * np.eye(3)[None, None] * np.eye(len(invariant))[:, :, None, None]
    phonon.force_constants = broken
    violation = acoustic_sum_rule_violation(phonon)
    assert violation["asr_residual_ev_ang2"] == pytest.approx(shift, rel=1e-8)

    supercell, primitive = phonon.supercell, phonon.primitive
    masses = supercell.masses
    s2p = primitive.s2p_map  # supercell index of each atom's primitive representative
    p2p = primitive.p2p_map
    n_prim = len(primitive)
    dynamical = np.zeros((n_prim, 3, n_prim, 3))
    for a, i in enumerate(primitive.p2s_map):
        for j in range(len(supercell)):
            b = p2p[s2p[j]]
            dynamical[a, :, b, :] += broken[i, j] / np.sqrt(masses[i] * masses[j])
    eigenvalues = np.linalg.eigvalsh(dynamical.reshape(3 * n_prim, 3 * n_prim))
    frequencies = np.sign(eigenvalues) * np.sqrt(np.abs(eigenvalues)) * get_physical_units().DefaultToTHz
    expected = np.sort(np.abs(frequencies))[:3].max()
    assert violation["gamma_acoustic_max_thz"] == pytest.approx(expected, rel=1e-8)
    assert expected > 0.5  # the shift is visible, not round-off


def test_stability_accuracy():
    assert stability_accuracy([True, False, True, True], [True, True, True, False]) == 0.5


def test_model_force_constants_batched_equals_ase_calculator(tmp_path):
    from mace.calculators import MACECalculator

    from hdpbench.core.structures import double_perovskite
    from hdpbench.models.evaluate import load_model
    from hdpbench.models.mace import build_mace, save_model

    unitcell = double_perovskite("Cs", "Ag", "Bi", "Br", 11.2, 0.25)
    path = save_model(build_mace([55, 47, 83, 35], channels=8, r_max=5.0, seed=1), tmp_path / "tiny.model")
    batched = model_force_constants(unitcell, load_model(str(path), dtype="float64"))
    one_by_one = model_force_constants(unitcell, MACECalculator(model_paths=str(path), default_dtype="float64"))
    np.testing.assert_allclose(batched.force_constants, one_by_one.force_constants, atol=1e-8)
    assert batched.force_constants.shape == (80, 80, 3, 3) and np.abs(batched.force_constants).max() > 1e-3
    save_phonopy_yaml(batched, tmp_path / "phonopy.yaml")
    np.testing.assert_allclose(read_force_constants(tmp_path / "phonopy.yaml"), batched.force_constants, atol=1e-12)


def test_analytic_hessian_agrees_with_finite_displacements(tmp_path):
    from hdpbench.core.structures import double_perovskite
    from hdpbench.models.evaluate import load_model
    from hdpbench.models.mace import build_mace

    unitcell = double_perovskite("Rb", "Ni", "Ag", "F", 8.6, 0.24)  # 10 atoms: a cheap Hessian
    model = load_model(build_mace([37, 28, 47, 9], channels=8, r_max=5.0, seed=2), dtype="float64")
    finite = model_force_constants(unitcell, model, supercell_matrix=(1, 1, 1)).force_constants
    analytic = analytic_force_constants(unitcell, model)
    scale = np.abs(analytic).max()
    assert scale > 1e-3
    assert np.abs(analytic - finite).max() < 1e-3 * scale  # O(h²) with h = 0.01 Å


@pytest.mark.parametrize("name", ["NaCl", "CaTiO3"])
def test_fig_s2_ticks_sit_where_phonopy_ends_each_segment(fixtures, name):
    """Fig. S2 from the stored arrays: every tick at the path length where phonopy's own band structure
    ends a segment (real VASP force sets), labelled with seekpath's points; a jump shows as "A|B"."""
    from hdpbench.book import figures
    from hdpbench.physics.phonons import band_arrays, band_path, bands, make_phonopy

    unitcell, fc = real_case(fixtures, name)
    path = band_path(unitcell, 12)
    computed = bands(make_phonopy(unitcell, np.diag([2, 2, 2]), fc), path)
    arrays = band_arrays(computed, computed)
    direct = make_phonopy(unitcell, np.diag([2, 2, 2]), fc)
    direct.run_band_structure(path[0], path_connections=path[2], labels=path[1])
    ends = [float(segment[-1]) for segment in direct.band_structure.distances]
    starts = [float(segment[0]) for segment in direct.band_structure.distances]
    positions, names = figures.band_ticks(arrays["distances"], arrays["segment_ends"], arrays["band_labels"], arrays["band_connections"])
    np.testing.assert_allclose(positions, [starts[0], *ends], atol=1e-12)
    fig = figures.band_comparison([(name, arrays)], "model", "test data")
    np.testing.assert_allclose(fig.axes[0].get_xticks(), positions)
    # seekpath's labels (LaTeX, e.g. "$\\mathrm{X}$"), one per point where segments meet, "X|Y" where the path jumps
    plain = [label.replace("$", "").replace("\\mathrm{", "").replace("}", "").replace("\\Gamma", "Γ") for label in path[1]]
    expected, label = [plain[0]], 1
    for k, connected in enumerate(path[2]):
        if connected or k == len(path[2]) - 1:
            expected.append(plain[label])
            label += 1
        else:
            expected.append(f"{plain[label]}|{plain[label + 1]}")
            label += 2
    assert names == expected


def test_the_reference_side_is_computed_once_and_reused_with_identical_metrics(fixtures, monkeypatch, tmp_path):
    """Two models against one Φ_ref: the reference bands are computed once, kept in this process and in
    the cache folder for the next process, and the metrics and bands equal those computed afresh."""
    from hdpbench.physics import phonons

    monkeypatch.setenv("HDPBENCH_CACHE", str(tmp_path))
    unitcell, fc = real_case(fixtures, "NaCl")
    monkeypatch.setattr(phonons, "_REFERENCE_CACHE", {})
    calls = []
    real_bands = phonons.bands
    monkeypatch.setattr(phonons, "bands", lambda phonon, path, **options: calls.append(1) or real_bands(phonon, path, **options))
    fresh = [compare(unitcell, fc, scale * fc, npoints=8) for scale in (1.1, 1.2)]
    assert len(calls) == 3  # the reference once, each model once
    monkeypatch.setattr(phonons, "_REFERENCE_CACHE", {})  # as in a new process: the cache folder has it
    cached = [compare(unitcell, fc, scale * fc, npoints=8) for scale in (1.1, 1.2)]
    assert len(calls) == 5  # the two models only
    for (metrics, reference, model), (fresh_metrics, fresh_reference, fresh_model) in zip(cached, fresh, strict=True):
        assert metrics == fresh_metrics
        for name in ("distances", "frequencies", "group_velocities", "segment_ends"):
            np.testing.assert_array_equal(getattr(reference, name), getattr(fresh_reference, name))
        assert reference.labels == fresh_reference.labels and reference.connections == fresh_reference.connections
        np.testing.assert_array_equal(model.group_velocities, fresh_model.group_velocities)
    compare(unitcell, 1.01 * fc, fc, npoints=8)  # another Φ_ref is another entry
    assert len(calls) == 7 and len(phonons._REFERENCE_CACHE) == 2


def test_a_comparison_without_group_velocities_keeps_every_other_result(fixtures, monkeypatch, tmp_path):
    """The σ displacement's comparison (``group_velocities=False``): the model's bands without group
    velocities, no RMSE(v_g), and every other metric and frequency exactly as in the full comparison."""
    from hdpbench.physics import phonons

    monkeypatch.setenv("HDPBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(phonons, "_REFERENCE_CACHE", {})
    unitcell, fc = real_case(fixtures, "CaTiO3")
    full, _, full_model = compare(unitcell, fc, 1.1 * fc, npoints=8)
    lean, reference, model = compare(unitcell, fc, 1.1 * fc, npoints=8, group_velocities=False)
    assert full["rmse_vg_thz_ang"] > 0 and "rmse_vg_thz_ang" not in lean
    assert lean == {key: value for key, value in full.items() if key != "rmse_vg_thz_ang"}
    assert model.group_velocities is None and reference.group_velocities is not None
    np.testing.assert_array_equal(model.frequencies, full_model.frequencies)
    stored = band_arrays(reference, model)
    assert "group_velocities_model" not in stored and "group_velocities_reference" not in stored
    assert "group_velocities_model" in band_arrays(reference, full_model)


def test_group_velocities_setting_is_checked_and_off_for_sigma():
    from hdpbench.core.errors import UsageError

    assert PhononSettings().group_velocities and not PhononSettings().for_sigma().group_velocities
    with pytest.raises(UsageError, match="group_velocities='no'"):
        PhononSettings(group_velocities="no")


def test_phonopy_objects_of_one_cell_share_one_symmetry_search_and_give_the_same_bits(fixtures, monkeypatch):
    """make_phonopy builds phonopy's object (its symmetry search) once per cell and hands out copies:
    a copy's bands, group velocities and thermal properties equal a freshly built object's exactly,
    and what one caller does to its copy (displacements, Φ) does not reach the next."""
    import phonopy

    from hdpbench.core import structures
    from hdpbench.physics.phonons import band_path, bands, thermal_properties

    unitcell, fc = real_case(fixtures, "CaTiO3")
    monkeypatch.setattr(structures, "_PHONOPY_TEMPLATES", {})
    built = []
    real_phonopy = phonopy.Phonopy
    monkeypatch.setattr(phonopy, "Phonopy", lambda *a, **k: built.append(1) or real_phonopy(*a, **k))
    first = make_phonopy(unitcell, (2, 2, 2), fc)
    first.generate_displacements(distance=0.01)
    second = make_phonopy(unitcell, (2, 2, 2), 1.1 * fc)
    assert len(built) == 1 and second.dataset is None and first.dataset is not None
    np.testing.assert_array_equal(second.force_constants, 1.1 * fc)
    fresh = real_phonopy(structures.to_phonopy_atoms(unitcell), supercell_matrix=np.diag([2, 2, 2]), primitive_matrix="P")
    fresh.force_constants = 1.1 * fc
    path = band_path(unitcell, 8)
    copied, direct = bands(second, path), bands(fresh, path)
    np.testing.assert_array_equal(copied.frequencies, direct.frequencies)
    np.testing.assert_array_equal(copied.group_velocities, direct.group_velocities)
    assert thermal_properties(second) == thermal_properties(fresh)
    make_phonopy(unitcell, (1, 1, 2))  # another supercell: another object
    assert len(built) == 2
