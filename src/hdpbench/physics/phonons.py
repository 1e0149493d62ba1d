"""Harmonic phonons of a model and their errors against reference force constants (paper §3.1).

Φ_model comes from phonopy finite displacements on the given unit cell (by default the reference's
relaxed cell, no re-relaxation, as the paper) in the reference's own supercell (a 2x2x2 supercell of
the authors' primitive cells; for phonondb's elpasolites the 40-atom conventional cell itself), with
every displaced supercell evaluated in ONE batched call. Reference and model bands are always computed
on identical q-points: the seekpath-convention path of the primitive cell (the unit cell taken to it
by the primitive matrix), 50 points per segment, every labelled point the high-symmetry point it
names (tested for rock salt, cubic perovskite and an elpasolite).

Metrics (paper and Lee & Xia):
* ``rmse_omega2_thz2`` — RMSE of the signed ω² = sign(f)·f² over q and bands, THz²;
* ``rmse_vg_thz_ang`` — RMSE of group velocities over q, bands and Cartesian components, THz·Å;
* ``mae_freq_thz`` — mean |f_model − f_ref| over the path;
* minimum frequencies, dynamical stability (unstable if any frequency < −0.5 THz on the path or
  the mesh, the three acoustic modes at Γ set aside: they are zero by symmetry, and force noise or
  float32 models move them by up to ~1.5 THz), and Helmholtz free energy, C_v and S at 300 K and 1000 K (phonopy thermal properties,
  mesh length 75, frequencies below 0.1 THz excluded) with their errors.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from hdpbench.core.errors import UsageError
from hdpbench.core.structures import (
    from_phonopy_atoms,
    make_phonopy,
    primitive_matrix_3x3,
    supercell_matrix_3x3,
    to_phonopy_atoms,
)
from hdpbench.core.validation import require_dtype, require_positive, require_positive_int

THERMAL_TEMPERATURES = (300.0, 1000.0)
THERMAL_MESH_LENGTH = 75.0
THERMAL_CUTOFF_THZ = 0.1


MIN_DISPLACEMENT, MAX_DISPLACEMENT = 1e-4, 0.5  # Å: below, the forces are noise; above, not harmonic


@dataclass(frozen=True)
class PhononSettings:
    """Φ_model by finite displacements. The authors use two displacements: 0.01 Å for the bands
    (``phonon_plotter.py``) and their ``PhonopyWorker`` default, 0.02 Å, for the Φ_MACE that σ
    reads (``mace/collect_data.py``); :meth:`for_sigma` gives the settings of the latter.
    ``group_velocities``: the bands' group velocities and RMSE(v_g); off for the σ displacement's Φ_model,
    whose bands no page compares (phonopy's group velocities are ~0.7 s per 10-atom compound and model,
    ~25 times its bands: 0.75 against 0.03 s, measured).
    ``supercell``: None (default) computes Φ_model in the reference's own supercell, the only one its Φ
    can be compared in (2x2x2 for the authors' data, the 40-atom cell itself for phonondb's
    elpasolites); three numbers must equal the reference's (a compound whose reference differs fails,
    saying so)."""

    supercell: tuple[int, int, int] | None = None
    displacement: float = 0.01  # Å, bands and phonon metrics
    sigma_displacement: float = 0.02  # Å, the Φ_model of σ_model(Φ_model), σ_model-only and the maps' σ
    symmetrize: bool = False
    points_per_segment: int = 50
    unstable_below_thz: float = -0.5
    dtype: str = "float32"
    group_velocities: bool = True

    def __post_init__(self):
        supercell = self.supercell
        if supercell is not None and (
            not isinstance(supercell, (tuple, list))
            or len(supercell) != 3
            or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in supercell)
        ):
            raise UsageError(f"phonons setting supercell={supercell!r}: expected three positive integers, e.g. [2, 2, 2]")
        object.__setattr__(self, "supercell", None if supercell is None else tuple(supercell))
        for name in ("displacement", "sigma_displacement"):
            value = getattr(self, name)
            require_positive(f"phonons setting {name}", value)
            if not MIN_DISPLACEMENT <= value <= MAX_DISPLACEMENT:
                raise UsageError(f"phonons setting {name}={value!r} Å: expected {MIN_DISPLACEMENT:g} to {MAX_DISPLACEMENT:g} Å")
        require_positive_int("phonons setting points_per_segment", self.points_per_segment)
        require_dtype("phonons setting dtype", self.dtype)
        if not isinstance(self.group_velocities, bool):
            raise UsageError(f"phonons setting group_velocities={self.group_velocities!r}: expected true or false")

    def for_sigma(self) -> PhononSettings:
        """The settings of the Φ_model that the σ stages read (displacement ``sigma_displacement``, no
        group velocities)."""
        return dataclasses.replace(self, displacement=self.sigma_displacement, group_velocities=False)



_DEFAULT = PhononSettings()
DEFAULT_SUPERCELL = (2, 2, 2)  # the authors' supercell of their primitive cells, where none is given


def displaced_supercells(
    unitcell: Atoms, supercell_matrix=DEFAULT_SUPERCELL, displacement: float = _DEFAULT.displacement, primitive_matrix=None
):
    """(phonopy object with displacements generated, list of displaced supercells as ASE Atoms)."""
    phonon = make_phonopy(unitcell, supercell_matrix, primitive_matrix=primitive_matrix)
    phonon.generate_displacements(distance=displacement)
    return phonon, [from_phonopy_atoms(s) for s in phonon.supercells_with_displacements]


def model_force_constants(
    unitcell: Atoms,
    model,
    *,
    supercell_matrix=DEFAULT_SUPERCELL,
    displacement: float = _DEFAULT.displacement,
    symmetrize: bool = False,
    evaluator=None,
    primitive_matrix=None,
):
    """Φ_model by finite displacements; ``model`` is a LoadedModel/registry name/path or an ASE calculator.

    Returns the Phonopy object holding the force constants (``phonon.force_constants``, full, (N, N, 3, 3)
    eV/Å² on the supercell; the primitive matrix changes only which cell its bands are of).
    """
    from hdpbench.models.evaluate import evaluate

    phonon, structures = displaced_supercells(unitcell, supercell_matrix, displacement, primitive_matrix)
    if evaluator is not None:
        result = evaluator.evaluate(structures)
    else:
        result = evaluate(model, structures, progress=False)
    phonon.forces = result.forces_array()
    phonon.produce_force_constants()
    if symmetrize:
        phonon.symmetrize_force_constants()
    return phonon


def save_phonopy_yaml(phonon, path: str | Path) -> None:
    """One self-describing file per phonon run (cells, displacements, forces, force constants)."""
    phonon.save(filename=str(path), settings={"force_constants": True})


def primitive_cell(unitcell: Atoms, primitive_matrix=None):
    """The primitive cell (PhonopyAtoms) of ``unitcell`` under ``primitive_matrix`` (None: the unit cell)."""
    from phonopy.structure.cells import get_primitive

    matrix = primitive_matrix_3x3(primitive_matrix)
    cell = to_phonopy_atoms(unitcell)
    return cell if matrix is None else get_primitive(cell, matrix)


def band_path(unitcell: Atoms, npoints: int = _DEFAULT.points_per_segment, primitive_matrix=None):
    """(q-point segments, labels, connections) of the seekpath path of the primitive cell.

    Segments: ``npoints`` q-points each, fractional in the reciprocal basis of the primitive cell
    (``primitive_matrix.T @ unitcell.cell``). Phonopy's seekpath helper uses seekpath's coordinates,
    which are in the basis of seekpath's *standardised* primitive cell, as if they were in the given
    cell's; the two agree for the authors' fcc primitive cells, not for a conventional cell passed as
    primitive (rock salt's 8-atom cell: X, U, K, W off their points) or a rotated one. So the end
    points are taken from seekpath's coordinates in the given cell (``get_path_orig_cell``); where they
    equal the helper's (within 1e-8) the helper's q-points are kept, bit for bit."""
    import seekpath
    from phonopy.phonon.band_structure import get_band_qpoints_by_seekpath

    primitive = primitive_cell(unitcell, primitive_matrix)
    qpoints, labels, connections = get_band_qpoints_by_seekpath(primitive, npoints)
    with warnings.catch_warnings():
        # seekpath warns that a conventional cell is a supercell of its primitive cell: expected here,
        # the path's end points are wanted in exactly that cell's basis (see above)
        warnings.filterwarnings("ignore", message="The provided cell is a supercell")
        original = seekpath.get_path_orig_cell(primitive.totuple())
    ends = [(np.asarray(original["point_coords"][start]), np.asarray(original["point_coords"][end])) for start, end in original["path"]]
    same = len(ends) == len(qpoints) and all(
        np.allclose(segment[0], start, atol=1e-8) and np.allclose(segment[-1], end, atol=1e-8)
        for segment, (start, end) in zip(qpoints, ends, strict=True)
    )
    if not same:
        qpoints = [np.array([start + (end - start) / (npoints - 1) * i for i in range(npoints)]) for start, end in ends]
    return qpoints, labels, connections


def gamma_acoustic_free_minimum(frequencies: np.ndarray, qpoints: np.ndarray) -> float:
    """The smallest frequency (THz) with the three acoustic modes of every Γ point set aside.

    ``frequencies`` (nq, nbands) THz, imaginary as negative; ``qpoints`` (nq, 3) fractional (Γ of any
    zone: integer coordinates). At Γ the acoustic modes are the three of smallest |f| (phonopy's own
    choice): zero by symmetry, so their spurious values (unsymmetrised Φ, float32 models: up to ~1.5
    THz either way) say nothing about stability."""
    frequencies = np.array(frequencies, dtype=float)
    qpoints = np.asarray(qpoints, dtype=float).reshape(len(frequencies), 3)
    at_gamma = np.all(np.abs(qpoints - np.round(qpoints)) < 1e-8, axis=1)
    if at_gamma.any():
        acoustic = np.argsort(np.abs(frequencies[at_gamma]), axis=1)[:, :3]
        rows = frequencies[at_gamma]
        np.put_along_axis(rows, acoustic, np.inf, axis=1)
        frequencies[at_gamma] = rows
    return float(frequencies.min())


@dataclass
class Bands:
    distances: np.ndarray  # (nq,) cumulative path length
    frequencies: np.ndarray  # (nq, nbands) THz, imaginary as negative
    group_velocities: np.ndarray | None  # (nq, nbands, 3) THz·Å; None when not computed
    labels: list
    segment_ends: np.ndarray  # indices where segments end
    connections: list  # per segment: whether the path continues into the next one (phonopy)
    qpoints: np.ndarray | None = None  # (nq, 3) fractional, reciprocal basis of the primitive cell

    @property
    def min_frequency_without_gamma_acoustic(self) -> float:
        """The smallest frequency on the path, Γ's three acoustic modes set aside (THz)."""
        if self.qpoints is None:
            raise ValueError("bands without their q-points")
        return gamma_acoustic_free_minimum(self.frequencies, self.qpoints)

    @property
    def omega2(self) -> np.ndarray:
        """Signed ω² = sign(f)·f² (THz²)."""
        return np.sign(self.frequencies) * self.frequencies**2


def bands(phonon, path, *, group_velocities: bool = True) -> Bands:
    qpoints, labels, connections = path
    phonon.run_band_structure(qpoints, path_connections=connections, labels=labels, with_group_velocities=group_velocities)
    data = phonon.band_structure
    lengths = np.cumsum([len(d) for d in data.distances])
    return Bands(
        distances=np.concatenate(data.distances),
        frequencies=np.concatenate(data.frequencies),
        group_velocities=np.concatenate(data.group_velocities) if group_velocities else None,
        labels=labels,
        segment_ends=lengths,
        connections=[bool(c) for c in connections],
        qpoints=np.concatenate(qpoints),
    )


def thermal_properties(phonon, temperatures: Sequence[float] = THERMAL_TEMPERATURES) -> dict[str, Any]:
    """Helmholtz free energy (kJ/mol), C_v and S (J/K/mol) per unit cell, and the mesh minimum frequency."""
    phonon.run_mesh(THERMAL_MESH_LENGTH)
    mesh_min = float(np.min(phonon.mesh.frequencies))
    mesh_min_stable = gamma_acoustic_free_minimum(phonon.mesh.frequencies, phonon.mesh.qpoints)
    # The three Γ acoustic modes are zero by symmetry; unsymmetrised Φ (reference or model) gives them spurious values,
    # reported separately by acoustic_sum_rule_violation, so they stay out of the sums.
    phonon.run_thermal_properties(
        temperatures=list(temperatures), cutoff_frequency=THERMAL_CUTOFF_THZ, exclude_gamma_acoustic=True
    )
    data = phonon.thermal_properties
    return {
        "temperatures_K": [float(t) for t in data.temperatures],
        "free_energy_kJ_mol": [float(v) for v in data.free_energy],
        "heat_capacity_J_K_mol": [float(v) for v in data.heat_capacity],
        "entropy_J_K_mol": [float(v) for v in data.entropy],
        "mesh_min_freq_thz": mesh_min,
        "mesh_min_freq_without_gamma_acoustic_thz": mesh_min_stable,
    }


def acoustic_sum_rule_violation(phonon) -> dict[str, float]:
    """How far Φ is from translational invariance (Σ_j Φ_ij = 0), which finite displacements break
    through force noise and cutoffs: the largest |Σ_j Φ_ij| entry (eV/Å²) and the largest |f|
    of the three Γ modes of smallest |f| (THz), phonopy's own choice of the acoustic modes."""
    # full (N, N, 3, 3) or compact (N_prim, N, 3, 3): the second index runs over all supercell atoms
    residual = np.abs(phonon.force_constants.sum(axis=1)).max()
    phonon.run_qpoints([[0.0, 0.0, 0.0]])
    gamma = np.sort(np.abs(phonon.qpoints.frequencies[0]))[:3]
    return {"asr_residual_ev_ang2": float(residual), "gamma_acoustic_max_thz": float(gamma.max())}


def commensurate_frequencies(phonon) -> tuple[np.ndarray, np.ndarray]:
    """(q-points (n, 3) fractional, frequencies (n, bands) THz) at the q-points commensurate with the
    supercell: where Φ of that supercell gives the dynamical matrix exactly, with no interpolation
    (for phonondb's elpasolites, whose supercell is the 40-atom conventional cell: Γ and the three X)."""
    from phonopy.harmonic.dynmat_to_fc import get_commensurate_points

    supercell_in_primitive = np.rint(np.linalg.inv(phonon.primitive.primitive_matrix)).astype(int)
    qpoints = get_commensurate_points(supercell_in_primitive)
    phonon.run_qpoints(qpoints)
    return qpoints, np.asarray(phonon.qpoints.frequencies)


def compare(
    unitcell: Atoms,
    reference_fc: np.ndarray,
    model_fc: np.ndarray,
    *,
    supercell_matrix=DEFAULT_SUPERCELL,
    npoints: int = _DEFAULT.points_per_segment,
    unstable_below: float = _DEFAULT.unstable_below_thz,
    thermal: bool = True,
    group_velocities: bool = True,
    primitive_matrix=None,
) -> tuple[dict[str, Any], Bands, Bands]:
    """All phonon metrics of ``model_fc`` against ``reference_fc`` on the same unit cell, supercell and
    q-points; both Φ (N, N, 3, 3) eV/Å² on ``supercell_matrix`` of ``unitcell``, bands of the primitive
    cell ``primitive_matrix`` gives (None: ``unitcell`` is primitive).

    Stability: ``stable_*`` when no frequency on the path or mesh is below ``unstable_below`` (THz)
    once Γ's three acoustic modes are set aside (``min_freq_*_without_gamma_acoustic_thz``);
    ``min_freq_*_thz`` keep every mode. The same at the supercell's commensurate q-points only, where
    neither side is interpolated (``*_commensurate``: a small supercell's path between them is a
    Fourier interpolation of Φ, which can show imaginary modes of its own).

    ``group_velocities=False``: the model's bands without them and no ``rmse_vg_thz_ang`` (the
    reference's, cached, always have them).

    The reference side (its bands, Γ acoustic check and thermal properties) is the same for every model
    and displacement: it is computed once per process and reused (band group velocities dominate the
    cost of this function)."""
    path = band_path(unitcell, npoints, primitive_matrix)
    reference = make_phonopy(unitcell, supercell_matrix, reference_fc, primitive_matrix=primitive_matrix)
    model = make_phonopy(unitcell, supercell_matrix, model_fc, primitive_matrix=primitive_matrix)
    reference_side = _reference_side(unitcell, reference_fc, reference, path, supercell_matrix, npoints, thermal, primitive_matrix)
    ref_bands, model_bands = reference_side["bands"], bands(model, path, group_velocities=group_velocities)
    metrics: dict[str, Any] = {"rmse_omega2_thz2": float(np.sqrt(np.mean((model_bands.omega2 - ref_bands.omega2) ** 2)))}
    if group_velocities:
        metrics["rmse_vg_thz_ang"] = float(np.sqrt(np.mean((model_bands.group_velocities - ref_bands.group_velocities) ** 2)))
    metrics |= {
        "mae_freq_thz": float(np.mean(np.abs(model_bands.frequencies - ref_bands.frequencies))),
        "min_freq_reference_thz": float(ref_bands.frequencies.min()),
        "min_freq_model_thz": float(model_bands.frequencies.min()),
        "min_freq_reference_without_gamma_acoustic_thz": ref_bands.min_frequency_without_gamma_acoustic,
        "min_freq_model_without_gamma_acoustic_thz": model_bands.min_frequency_without_gamma_acoustic,
        "n_qpoints": int(len(ref_bands.distances)),
        "n_bands": int(ref_bands.frequencies.shape[1]),
        "unstable_below_thz": unstable_below,
    }
    for owner, violation in (("reference", reference_side["acoustic"]), ("model", acoustic_sum_rule_violation(model))):
        for key, value in violation.items():
            metrics[f"{key}_{owner}"] = value
    if thermal:
        ref_thermal, model_thermal = reference_side["thermal"], _thermal(model)
        metrics["min_freq_reference_thz"] = min(metrics["min_freq_reference_thz"], ref_thermal["mesh_min_freq_thz"])
        metrics["min_freq_model_thz"] = min(metrics["min_freq_model_thz"], model_thermal["mesh_min_freq_thz"])
        for owner, side in (("reference", ref_thermal), ("model", model_thermal)):
            key = f"min_freq_{owner}_without_gamma_acoustic_thz"
            metrics[key] = min(metrics[key], side["mesh_min_freq_without_gamma_acoustic_thz"])
        metrics["thermal_reference"] = ref_thermal
        metrics["thermal_model"] = model_thermal
        for key in ("free_energy_kJ_mol", "heat_capacity_J_K_mol", "entropy_J_K_mol"):
            metrics[f"error_{key}"] = [m - r for m, r in zip(model_thermal[key], ref_thermal[key], strict=True)]
    (commensurate, ref_exact), (_, model_exact) = commensurate_frequencies(reference), commensurate_frequencies(model)
    signed = [np.sign(f) * f**2 for f in (ref_exact, model_exact)]
    metrics["n_commensurate_qpoints"] = int(len(commensurate))
    metrics["rmse_omega2_commensurate_thz2"] = float(np.sqrt(np.mean((signed[1] - signed[0]) ** 2)))
    for owner, frequencies in (("reference", ref_exact), ("model", model_exact)):
        metrics[f"min_freq_{owner}_commensurate_thz"] = gamma_acoustic_free_minimum(frequencies, commensurate)
        metrics[f"stable_{owner}_commensurate"] = metrics[f"min_freq_{owner}_commensurate_thz"] >= unstable_below
    metrics["stable_reference"] = metrics["min_freq_reference_without_gamma_acoustic_thz"] >= unstable_below
    metrics["stable_model"] = metrics["min_freq_model_without_gamma_acoustic_thz"] >= unstable_below
    metrics["stability_agrees"] = metrics["stable_reference"] == metrics["stable_model"]
    return metrics, ref_bands, model_bands


def _thermal(phonon) -> dict[str, Any]:
    with warnings.catch_warnings():
        # phonopy warns when Γ acoustic modes are far from zero; that is reported as
        # gamma_acoustic_max_thz_*, and the modes are excluded from the thermal sums.
        warnings.filterwarnings("ignore", message="The acoustic frequencies at Gamma")
        return thermal_properties(phonon)


_REFERENCE_CACHE: dict[str, dict[str, Any]] = {}
_REFERENCE_CACHE_SIZE = 64


def _reference_side(
    unitcell: Atoms, reference_fc, reference, path, supercell_matrix, npoints: int, thermal: bool, primitive_matrix=None
) -> dict[str, Any]:
    """Bands, Γ acoustic check and (optionally) thermal properties of Φ_ref, cached by a digest of every
    input (cell, positions, species, masses, Φ_ref bytes, supercell and primitive matrix, q-points per segment, phonopy's
    version, the source of the code that computes it): in this process, and in the cache folder for the next one (the book's phonon, σ and
    fine-tuning pages compare their models with the same Φ_ref; its group velocities take ~0.7 s per
    10-atom compound)."""
    import hashlib

    import phonopy

    from hdpbench.core.storage import source_digest

    digest = hashlib.sha256()
    for array in (
        unitcell.cell.array, unitcell.positions, unitcell.numbers, unitcell.get_masses(), np.asarray(reference_fc),
        supercell_matrix_3x3(supercell_matrix),
    ):  # fmt: skip
        digest.update(np.ascontiguousarray(array).tobytes())
    primitive = primitive_matrix_3x3(primitive_matrix)
    if primitive is not None:
        digest.update(b"primitive" + np.ascontiguousarray(primitive, dtype=float).tobytes())
    code = source_digest("physics/phonons.py", "core/structures.py")  # what computes the reference side
    digest.update(f"{npoints}|{thermal}|phonopy {phonopy.__version__}|code {code}".encode())
    key = digest.hexdigest()
    if key not in _REFERENCE_CACHE:
        if len(_REFERENCE_CACHE) >= _REFERENCE_CACHE_SIZE:
            _REFERENCE_CACHE.pop(next(iter(_REFERENCE_CACHE)))
        stored = _load_reference_side(key)
        if stored is None:
            stored = {"bands": bands(reference, path), "acoustic": acoustic_sum_rule_violation(reference), "thermal": _thermal(reference) if thermal else None}
            _store_reference_side(key, stored)
        _REFERENCE_CACHE[key] = stored
    return _REFERENCE_CACHE[key]


def _reference_side_file(key: str) -> Path:
    from hdpbench.core import paths

    return paths.cache_dir() / "phonon-reference" / f"{key}.npz"


def _store_reference_side(key: str, side: dict[str, Any]) -> None:
    import json

    from hdpbench.core.storage import try_write_cache_arrays

    band = side["bands"]
    try_write_cache_arrays(
        _reference_side_file(key),
        {
            "distances": band.distances, "frequencies": band.frequencies, "group_velocities": band.group_velocities,
            "labels": np.array([str(label) for label in band.labels]), "segment_ends": band.segment_ends,
            "connections": np.array(band.connections, dtype=bool), "qpoints": band.qpoints,
            "scalars": np.array(json.dumps({"acoustic": side["acoustic"], "thermal": side["thermal"]})),
        },
    )  # fmt: skip


def _load_reference_side(key: str) -> dict[str, Any] | None:
    """What :func:`_store_reference_side` wrote (JSON keeps every float exactly), or None when absent
    or unreadable."""
    import json

    from hdpbench.core.storage import try_read_cache_arrays

    def from_cache(stored) -> dict[str, Any]:
        band = Bands(
            distances=stored["distances"], frequencies=stored["frequencies"], group_velocities=stored["group_velocities"],
            labels=[str(label) for label in stored["labels"]], segment_ends=stored["segment_ends"],
            connections=[bool(c) for c in stored["connections"]], qpoints=stored["qpoints"],
        )  # fmt: skip
        scalars = json.loads(str(stored["scalars"]))
        return {"bands": band, "acoustic": scalars["acoustic"], "thermal": scalars["thermal"]}

    return try_read_cache_arrays(_reference_side_file(key), from_cache)


def band_arrays(reference_bands: Bands, model_bands: Bands) -> dict[str, np.ndarray]:
    """What a stage stores of two band structures on the same q-points (for the band figures); group
    velocities only where the model's bands have them."""
    arrays = {
        "distances": reference_bands.distances,
        "segment_ends": reference_bands.segment_ends,
        "band_labels": np.array([str(label) for label in reference_bands.labels]),
        "band_connections": np.array(reference_bands.connections, dtype=bool),
        "frequencies_reference": reference_bands.frequencies,
        "frequencies_model": model_bands.frequencies,
    }
    if model_bands.group_velocities is not None:
        arrays["group_velocities_reference"] = reference_bands.group_velocities
        arrays["group_velocities_model"] = model_bands.group_velocities
    return arrays


def stability_accuracy(reference_stable: Sequence[bool], model_stable: Sequence[bool]) -> float:
    """Fraction of compounds whose dynamical-stability class the model gets right (Lee & Xia)."""
    reference_stable, model_stable = np.asarray(reference_stable), np.asarray(model_stable)
    return float(np.mean(reference_stable == model_stable)) if len(reference_stable) else float("nan")


def analytic_force_constants(supercell: Atoms, loaded_model) -> np.ndarray:
    """Φ as the model's exact Hessian (autograd) at ``supercell``: (N, N, 3, 3) eV/Å².

    An alternative to finite displacements; both should agree to O(displacement²) for a smooth model.
    Needs a model with the ``hessian`` capability (:mod:`hdpbench.models.interface`).
    """
    from hdpbench.models.interface import Capability, require_capability

    require_capability(loaded_model, Capability.HESSIAN, "the analytic Hessian")
    return loaded_model.hessian(supercell)
