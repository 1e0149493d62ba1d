"""The anharmonicity score σ (Knoop et al., Phys. Rev. Mater. 4, 083809 (2020)).

σ = sqrt( Σ_{i,α} ⟨(F_iα − F⁽²⁾_iα)²⟩ / Σ_{i,α} ⟨F_iα²⟩ ),   F⁽²⁾ = −Φ·u,

with u the displacement of every atom from the reference supercell (minimum image: VASP writes
positions wrapped into the cell). Conventions, all offered and labelled:

* ``sigma_per_frame`` — σ(t), the ratio over atoms and Cartesian components of one frame;
* ``sigma_mean_per_frame`` — ⟨σ(t)⟩_t, the paper's per-compound score;
* ``sigma_pooled`` — FHI-vibes' convention: one ratio of standard deviations over all frames,
  atoms and components;
* ``sigma_per_species`` — the pooled ratio restricted to the atoms of one element.

Classes (paper Fig. 2): σ < 0.5 weakly anharmonic, 0.5 ≤ σ ≤ 1 strongly anharmonic, σ > 1
dynamically unstable at the temperature of the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from hdpbench.core.compound import Trajectory, check_force_constants
from hdpbench.core.errors import DataError
from hdpbench.core.validation import require_choice, require_dtype, require_positive_int

CLASS_LABELS = ("σ < 0.5", "0.5 ≤ σ ≤ 1", "σ > 1")
CLASS_EDGES = (0.5, 1.0)


@dataclass(frozen=True)
class SigmaSettings:
    frames: str = "paper"  # production files read (io.authors.FrameSet): the authors' σ scripts read _1 and _2
    discard: int = 100  # frames dropped from the start of each production file (the authors' read(index='100:'))
    max_frames: int | None = None  # evenly subsample the kept frames to at most this many
    dtype: str = "float32"

    def __post_init__(self):
        require_choice("sigma setting frames", self.frames, ("paper", "all"))
        require_positive_int("sigma setting discard", self.discard, allow_zero=True)
        if self.max_frames is not None:
            require_positive_int("sigma setting max_frames", self.max_frames)
        require_dtype("sigma setting dtype", self.dtype)


def displacements(positions: np.ndarray, reference: Atoms) -> np.ndarray:
    """u = positions − reference positions, minimum image, for (F, N, 3) or (N, 3) positions.

    Rounding the fractional difference recovers the physical displacement exactly whenever it is
    shorter than half a cell vector in fractional terms, which holds for any vibrating crystal.
    """
    cell = reference.cell.array
    fractional = (np.asarray(positions) - reference.positions) @ np.linalg.inv(cell)
    fractional -= np.round(fractional)
    return fractional @ cell


def fc_matrix(force_constants: np.ndarray) -> np.ndarray:
    """(N, N, 3, 3) → the (3N, 3N) matrix Φ[3i+α, 3j+β]."""
    n = force_constants.shape[0]
    return force_constants.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)


def harmonic_forces(force_constants: np.ndarray, u: np.ndarray) -> np.ndarray:
    """F⁽²⁾ = −Φ·u for all frames at once: one (F, 3N) x (3N, 3N) product, no loop over atoms."""
    u = np.asarray(u)
    single = u.ndim == 2
    frames = u[None] if single else u
    n_frames, n_atoms = frames.shape[:2]
    forces = -(frames.reshape(n_frames, 3 * n_atoms) @ fc_matrix(force_constants).T).reshape(n_frames, n_atoms, 3)
    return forces[0] if single else forces


@dataclass
class SigmaResult:
    sigma_per_frame: np.ndarray
    sigma_mean_per_frame: float
    sigma_pooled: float
    sigma_per_species: dict[str, float]
    n_frames: int
    n_atoms: int

    def to_dict(self) -> dict:
        return {
            "sigma_pooled": self.sigma_pooled,
            "sigma_mean_per_frame": self.sigma_mean_per_frame,
            "sigma_per_frame": self.sigma_per_frame.tolist(),
            "sigma_per_species": self.sigma_per_species,
            "n_frames": self.n_frames,
            "n_atoms": self.n_atoms,
        }


def sigma_from_forces(forces: np.ndarray, harmonic: np.ndarray, symbols: Sequence[str]) -> SigmaResult:
    """σ in every convention from (F, N, 3) forces and harmonic forces of the same frames."""
    forces = np.asarray(forces, dtype=float)
    harmonic = np.asarray(harmonic, dtype=float)
    if forces.ndim == 2:
        forces, harmonic = forces[None], harmonic[None]
    residual = forces - harmonic
    squared_force = (forces**2).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        per_frame = np.sqrt((residual**2).sum(axis=(1, 2)) / squared_force)
    symbols = np.asarray(symbols)
    per_species = {
        str(element): float(residual[:, symbols == element].std() / forces[:, symbols == element].std())
        for element in dict.fromkeys(symbols.tolist())
    }
    return SigmaResult(
        sigma_per_frame=per_frame,
        # A frame with no force at all (e.g. exactly at the reference) has no defined σ(t): NaN, skipped.
        sigma_mean_per_frame=float(np.nanmean(per_frame)) if np.isfinite(per_frame).any() else float("nan"),
        sigma_pooled=float(residual.std() / forces.std()),
        sigma_per_species=per_species,
        n_frames=forces.shape[0],
        n_atoms=forces.shape[1],
    )


CELL_TOLERANCE = 1e-3  # largest change of a cell-vector component, relative to the longest vector


def check_reference_fits(trajectory: Trajectory, reference: Atoms, reference_name: str = "reference supercell") -> np.ndarray:
    """The displacements u of every frame from ``reference``, after checking that they can be: the
    frames' cells equal the reference cell (a relative tolerance :data:`CELL_TOLERANCE`), and no atom
    is half-way or further to another reference site of its species (atoms permuted within a
    species, in the frames or in the reference, or a diffusing atom: u would be measured from the
    wrong site and σ would be meaningless). Both errors name the trajectory and the reference."""
    trajectory.check_matches(reference, reference_name)
    cell = np.asarray(reference.cell.array, dtype=float)
    scale = float(np.linalg.norm(cell, axis=1).max()) if cell.size else 0.0
    if scale == 0 or abs(np.linalg.det(cell)) < 1e-9 * scale**3:
        raise DataError(reference_name, f"the reference cell {cell.round(6).tolist()} has no volume")
    off = np.abs(trajectory.cells - cell[None]).max(axis=(1, 2))
    worst = int(np.argmax(off))
    if off[worst] > CELL_TOLERANCE * scale:
        raise DataError(
            trajectory.origin,
            f"frame {worst} has the cell {trajectory.cells[worst].round(5).tolist()} but the {reference_name} has "
            f"{cell.round(5).tolist()} (differing by up to {off[worst]:.4g} Å): σ needs the frames' own reference supercell",
        )
    u = displacements(trajectory.positions, reference)
    length = np.linalg.norm(u, axis=-1)  # (F, N)
    limit = _half_site_distance(reference)  # (N,)
    ratio = length / limit[None]
    frame, atom = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    if ratio[frame, atom] >= 1:
        symbol = reference.get_chemical_symbols()[atom]
        raise DataError(
            trajectory.origin,
            f"atom {atom} ({symbol}) of frame {frame} is {length[frame, atom]:.2f} Å from its site in the {reference_name}, "
            f"at least half the distance between two {symbol} sites ({2 * limit[atom]:.2f} Å): the atoms are permuted within a "
            "species (in the frames or in the reference) or the reference is not these frames' structure",
        )
    return u


def _half_site_distance(reference: Atoms) -> np.ndarray:
    """For every atom, half the shortest distance between two sites of its species in ``reference``
    (periodic images included): a displacement shorter than this is nearest to the atom's own site."""
    from ase.geometry import get_distances, minkowski_reduce

    cell = np.asarray(reference.cell.array, dtype=float)
    shortest_vector = float(np.linalg.norm(minkowski_reduce(cell)[0], axis=1).min())
    numbers = reference.numbers
    half = np.empty(len(reference))
    for number in np.unique(numbers):
        members = np.flatnonzero(numbers == number)
        shortest = shortest_vector
        if len(members) > 1:
            _, distances = get_distances(reference.positions[members], cell=cell, pbc=True)
            np.fill_diagonal(distances, np.inf)
            shortest = min(shortest, float(distances.min()))
        half[members] = shortest / 2
    return half


def sigma(
    trajectory: Trajectory,
    reference: Atoms,
    force_constants: np.ndarray,
    *,
    forces: np.ndarray | None = None,
    reference_name: str = "reference supercell",
) -> SigmaResult:
    """σ of ``trajectory`` around ``reference`` with Φ; ``forces`` overrides the trajectory's own
    (e.g. model forces on reference frames). ``reference_name`` (the reference's file) is named when
    the frames do not fit the reference (:func:`check_reference_fits`)."""
    u = check_reference_fits(trajectory, reference, reference_name)
    fc = check_force_constants(force_constants, len(reference), "force constants")
    forces = trajectory.forces if forces is None else np.asarray(forces)
    if forces is None:
        raise DataError(trajectory.origin, "σ needs forces, and this trajectory has none")
    if forces.shape != trajectory.positions.shape:
        raise DataError(trajectory.origin, f"forces of shape {forces.shape} for positions {trajectory.positions.shape}")
    if not np.all(np.isfinite(forces)):
        raise DataError(trajectory.origin, "non-finite forces")
    return sigma_from_forces(forces, harmonic_forces(fc, u), reference.get_chemical_symbols())


def sigma_class(value: float | np.ndarray) -> np.ndarray:
    """0: σ < 0.5, 1: 0.5 ≤ σ ≤ 1, 2: σ > 1 (NaN stays -1)."""
    values = np.asarray(value, dtype=float)
    classes = np.where(values < CLASS_EDGES[0], 0, np.where(values <= CLASS_EDGES[1], 1, 2))
    return np.where(np.isnan(values), -1, classes)


def confusion_matrix(reference: Sequence[float], model: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """3x3 counts (rows: reference class, columns: model class) and the row-normalised matrix.

    Pairs where either value is missing (NaN/None) are left out.
    """
    reference = np.asarray(reference, dtype=float)
    model = np.asarray(model, dtype=float)
    keep = np.isfinite(reference) & np.isfinite(model)
    counts = np.zeros((3, 3), dtype=int)
    np.add.at(counts, (sigma_class(reference[keep]), sigma_class(model[keep])), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = counts / counts.sum(axis=1, keepdims=True)
    return counts, np.nan_to_num(normalised)


def model_sigma_report(
    trajectory: Trajectory,
    reference: Atoms,
    force_constants: np.ndarray,
    model_forces: np.ndarray,
    model_force_constants: np.ndarray,
) -> dict:
    """σ with model forces on reference frames, with Φ_ref and with Φ_model, and the force errors.

    ``model_forces``: (F, N, 3) eV/Å on ``trajectory``'s frames; ``model_force_constants``: the model's
    own Φ of ``reference`` (N, N, 3, 3) eV/Å². Keys as ``hdpbench sigma --model --json``.
    """
    with_reference_fc = sigma(trajectory, reference, force_constants, forces=model_forces)
    with_model_fc = sigma(trajectory, reference, model_force_constants, forces=model_forces)
    error = np.asarray(model_forces) - trajectory.forces
    return {
        "sigma_model_phi_reference": with_reference_fc.sigma_mean_per_frame,
        "sigma_model_phi_model": with_model_fc.sigma_mean_per_frame,
        "sigma_pooled_model_phi_reference": with_reference_fc.sigma_pooled,
        "sigma_pooled_model_phi_model": with_model_fc.sigma_pooled,
        "sigma_per_species_model_phi_reference": with_reference_fc.sigma_per_species,
        "sigma_per_species_model_phi_model": with_model_fc.sigma_per_species,
        "sigma_per_frame_model_phi_reference": with_reference_fc.sigma_per_frame.tolist(),
        "sigma_per_frame_model_phi_model": with_model_fc.sigma_per_frame.tolist(),
        "force_mae_ev_ang": float(np.abs(error).mean()),
        "force_rmse_ev_ang": float(np.sqrt((error**2).mean())),
    }


def model_sigma(
    trajectory: Trajectory,
    reference: Atoms,
    force_constants: np.ndarray,
    model,
    *,
    displacement: float = 0.02,
    device: str = "cpu",
    dtype: str = "float32",
) -> dict:
    """:func:`model_sigma_report` for any model: its forces on the frames (batched) and its Φ from
    finite displacements of ``reference`` itself (phonopy, supercell matrix 1); ``displacement``
    (Å): the authors' σ scripts use 0.02 (:attr:`PhononSettings.sigma_displacement`)."""
    from hdpbench.models.evaluate import load_model
    from hdpbench.physics.phonons import model_force_constants

    loaded = load_model(model, device=device, dtype=dtype)
    evaluator = loaded.evaluator(progress=False)
    forces = evaluator.evaluate(trajectory.to_atoms_list()).forces_array()
    phonon = model_force_constants(reference, loaded, supercell_matrix=(1, 1, 1), displacement=displacement, evaluator=evaluator)
    report = model_sigma_report(trajectory, reference, force_constants, forces, phonon.force_constants)
    return {"model": loaded.name, "displacement_ang": displacement, **report}
