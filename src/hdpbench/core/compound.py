"""The canonical in-memory record of one compound, shared by every dataset and every stage.

The authors' archives, the embedded demo dataset and a user's own files all become a
:class:`Compound`; every downstream stage (phonons, sigma, MD, kernel maps) reads only this record.
Units: Å, eV, eV/Å, eV/Å².
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from hdpbench.core.errors import (
    DataError,
    ForceConstantsShapeError,
    FrameIndexError,
    NonFiniteError,
    TrajectoryMismatchError,
)

HALIDES = ("F", "Cl", "Br", "I")
HALIDE_FOLDERS = {"F": "fluorides", "Cl": "chlorides", "Br": "bromides", "I": "iodides"}


def _first_nonfinite(array: np.ndarray) -> tuple[int, ...] | None:
    bad = np.argwhere(~np.isfinite(array))
    return tuple(int(i) for i in bad[0]) if len(bad) else None


@dataclass
class Trajectory:
    """Frames of one or more MD files of the same supercell.

    ``source_files[frame_source[k]]`` is the file frame ``k`` came from and ``frame_index[k]`` its
    step index inside that file (counting the frames that were discarded as equilibration).
    """

    numbers: np.ndarray  # (n_atoms,) atomic numbers
    positions: np.ndarray  # (n_frames, n_atoms, 3) Å, Cartesian
    cells: np.ndarray  # (n_frames, 3, 3) Å, rows are lattice vectors
    forces: np.ndarray | None = None  # (n_frames, n_atoms, 3) eV/Å
    energies: np.ndarray | None = None  # (n_frames,) eV
    source_files: list[str] = field(default_factory=list)
    frame_source: np.ndarray | None = None  # (n_frames,) index into source_files
    frame_index: np.ndarray | None = None  # (n_frames,) step index within its source file
    pbc: tuple[bool, bool, bool] = (True, True, True)

    def __post_init__(self) -> None:
        self.numbers = np.asarray(self.numbers, dtype=int)
        self.positions = np.asarray(self.positions, dtype=float)
        self.cells = np.asarray(self.cells, dtype=float)
        if self.positions.ndim == 2:
            self.positions = self.positions[None]
        if self.cells.ndim == 2:
            self.cells = np.broadcast_to(self.cells, (len(self.positions), 3, 3)).copy()
        if self.forces is not None:
            self.forces = np.asarray(self.forces, dtype=float)
            if self.forces.ndim == 2:
                self.forces = self.forces[None]
        if self.energies is not None:
            self.energies = np.atleast_1d(np.asarray(self.energies, dtype=float))
        n = len(self.positions)
        if self.frame_source is None:
            self.frame_source = np.zeros(n, dtype=int)
        if self.frame_index is None:
            self.frame_index = np.arange(n)
        self.frame_source = np.asarray(self.frame_source, dtype=int)
        self.frame_index = np.asarray(self.frame_index, dtype=int)
        self._check_shapes()

    @property
    def origin(self) -> str:
        return ", ".join(self.source_files) if self.source_files else "<in-memory trajectory>"

    def _check_shapes(self) -> None:
        n_frames, n_atoms = self.positions.shape[:2]
        problems = []
        if self.positions.shape != (n_frames, n_atoms, 3):
            problems.append(f"positions have shape {self.positions.shape}, expected (frames, atoms, 3)")
        if self.numbers.shape != (n_atoms,):
            problems.append(f"{len(self.numbers)} atomic numbers for {n_atoms} atoms")
        if self.cells.shape != (n_frames, 3, 3):
            problems.append(f"cells have shape {self.cells.shape}, expected ({n_frames}, 3, 3)")
        if self.forces is not None and self.forces.shape != self.positions.shape:
            problems.append(f"forces have shape {self.forces.shape}, positions {self.positions.shape}")
        if self.energies is not None and self.energies.shape != (n_frames,):
            problems.append(f"{self.energies.shape} energies for {n_frames} frames")
        for name in ("frame_source", "frame_index"):
            if getattr(self, name).shape != (n_frames,):
                problems.append(f"{name} has shape {getattr(self, name).shape}, expected ({n_frames},)")
        if problems:
            raise DataError(self.origin, "; ".join(problems))

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def n_atoms(self) -> int:
        return self.positions.shape[1]

    @property
    def symbols(self) -> list[str]:
        return Atoms(numbers=self.numbers).get_chemical_symbols()

    def frame_file(self, k: int) -> str:
        """The file frame ``k`` was read from."""
        return self.source_files[self.frame_source[k]] if self.source_files else self.origin

    def check_finite(self) -> None:
        """Raise :class:`NonFiniteError` naming the file and frame of the first NaN/inf."""
        for name in ("positions", "cells", "forces", "energies"):
            array = getattr(self, name)
            if array is None:
                continue
            where = _first_nonfinite(array)
            if where is not None:
                frame = where[0]
                raise NonFiniteError(
                    self.frame_file(frame),
                    f"non-finite {name} in frame {self.frame_index[frame]} of that file "
                    f"(frame {frame} of the trajectory, index {where[1:]})",
                )

    def check_matches(self, reference: Atoms, reference_name: str = "reference supercell") -> None:
        """Raise :class:`TrajectoryMismatchError` unless atoms match ``reference`` one to one."""
        if self.n_atoms != len(reference):
            raise TrajectoryMismatchError(
                self.origin,
                f"{self.n_atoms} atoms per frame but the {reference_name} has {len(reference)}",
            )
        ref_numbers = reference.get_atomic_numbers()
        if not np.array_equal(self.numbers, ref_numbers):
            first = int(np.flatnonzero(self.numbers != ref_numbers)[0])
            same_species = sorted(self.numbers.tolist()) == sorted(ref_numbers.tolist())
            kind = "atom order differs from" if same_species else "species differ from"
            raise TrajectoryMismatchError(
                self.origin,
                f"{kind} the {reference_name}: atom {first} is {self.symbols[first]} here "
                f"but {reference.get_chemical_symbols()[first]} in the reference",
            )

    def select(self, indices: Sequence[int] | slice | np.ndarray) -> Trajectory:
        """A new trajectory with the given frames (negative indices count from the end)."""
        if isinstance(indices, slice):
            idx = np.arange(len(self))[indices]
        else:
            idx = np.asarray(indices, dtype=int).reshape(-1)
            out_of_range = idx[(idx >= len(self)) | (idx < -len(self))]
            if len(out_of_range):
                raise FrameIndexError(
                    self.origin,
                    f"frame index {int(out_of_range[0])} is past the end of a trajectory "
                    f"of {len(self)} frames",
                )
            idx = np.where(idx < 0, idx + len(self), idx)

        def take(array):
            return None if array is None else array[idx]

        return Trajectory(
            numbers=self.numbers,
            positions=self.positions[idx],
            cells=self.cells[idx],
            forces=take(self.forces),
            energies=take(self.energies),
            source_files=list(self.source_files),
            frame_source=self.frame_source[idx],
            frame_index=self.frame_index[idx],
            pbc=self.pbc,
        )

    def atoms(self, k: int) -> Atoms:
        """Frame ``k`` as ASE Atoms (with forces/energy attached when known)."""
        if not -len(self) <= k < len(self):
            raise FrameIndexError(
                self.origin, f"frame index {k} is past the end of a trajectory of {len(self)} frames"
            )
        atoms = Atoms(numbers=self.numbers, positions=self.positions[k], cell=self.cells[k], pbc=self.pbc)
        if self.forces is not None or self.energies is not None:
            from ase.calculators.singlepoint import SinglePointCalculator

            atoms.calc = SinglePointCalculator(
                atoms,
                forces=None if self.forces is None else self.forces[k].copy(),
                energy=None if self.energies is None else float(self.energies[k]),
            )
        return atoms

    def to_atoms_list(self) -> list[Atoms]:
        return [self.atoms(k) for k in range(len(self))]

    @classmethod
    def from_atoms_list(cls, frames: Sequence[Atoms], source: str | Path = "") -> Trajectory:
        """Build from ASE Atoms; forces/energies are taken from attached calculators when present."""
        if not frames:
            raise DataError(source or "<atoms list>", "no frames")
        numbers = frames[0].get_atomic_numbers()
        for k, atoms in enumerate(frames):
            if not np.array_equal(atoms.get_atomic_numbers(), numbers):
                raise TrajectoryMismatchError(source or "<atoms list>", f"frame {k} has different atoms")
        forces = energies = None
        if all(a.calc is not None and "forces" in a.calc.results for a in frames):
            forces = np.array([a.calc.results["forces"] for a in frames])
        if all(a.calc is not None and "energy" in a.calc.results for a in frames):
            energies = np.array([a.calc.results["energy"] for a in frames])
        return cls(
            numbers=numbers,
            positions=np.array([a.positions for a in frames]),
            cells=np.array([a.cell.array for a in frames]),
            forces=forces,
            energies=energies,
            source_files=[str(source)] if source else [],
            pbc=tuple(bool(p) for p in frames[0].pbc),
        )

    @classmethod
    def concatenate(cls, parts: Sequence[Trajectory]) -> Trajectory:
        """Join trajectories of the same atoms, keeping which file each frame came from."""
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        files: list[str] = []
        sources = []
        for part in parts:
            if not np.array_equal(part.numbers, first.numbers):
                raise TrajectoryMismatchError(part.origin, f"atoms differ from {first.origin}")
            offset = len(files)
            files.extend(part.source_files or [part.origin])
            sources.append(part.frame_source + offset)

        def joined(name):
            arrays = [getattr(p, name) for p in parts]
            return None if any(a is None for a in arrays) else np.concatenate(arrays)

        return cls(
            numbers=first.numbers,
            positions=joined("positions"),
            cells=joined("cells"),
            forces=joined("forces"),
            energies=joined("energies"),
            source_files=files,
            frame_source=np.concatenate(sources),
            frame_index=np.concatenate([p.frame_index for p in parts]),
            pbc=first.pbc,
        )


@dataclass
class Compound:
    """Everything the benchmark needs about one compound.

    ``unitcell`` is the phonon unit cell the reference was computed on, ``primitive_matrix`` (3, 3)
    takes it to the primitive cell (phonopy's ``PRIMITIVE_AXIS``: primitive lattice rows =
    ``primitive_matrix.T @ unitcell.cell``; identity for the authors' relaxed primitive cells, the fcc
    matrix for a 40-atom conventional elpasolite), ``reference_supercell`` = ``unitcell`` x
    ``supercell_matrix`` (the positions displacements are measured from), ``force_constants`` the
    reference Φ of that supercell, shape (N, N, 3, 3) in eV/Å². ``halide`` is None for a reference
    that is not a halide (CaTiO3); ``temperature_K`` is the temperature of the reference frames (AIMD),
    where known.
    """

    formula: str
    halide: str | None
    unitcell: Atoms
    supercell_matrix: np.ndarray
    reference_supercell: Atoms
    force_constants: np.ndarray | None = None
    trajectories: list[Trajectory] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    primitive_matrix: np.ndarray | None = None  # (3, 3); None: identity (``unitcell`` is primitive)
    temperature_K: float | None = None

    def __post_init__(self) -> None:
        self.supercell_matrix = np.asarray(self.supercell_matrix, dtype=int)
        if self.supercell_matrix.shape == (3,):
            self.supercell_matrix = np.diag(self.supercell_matrix)
        if self.primitive_matrix is not None:
            self.primitive_matrix = np.asarray(self.primitive_matrix, dtype=float)
            if self.primitive_matrix.shape != (3, 3) or not np.isfinite(self.primitive_matrix).all():
                raise DataError(self.source, f"primitive matrix {self.primitive_matrix.tolist()} is not a finite 3x3 matrix")
            if np.allclose(self.primitive_matrix, np.eye(3), atol=0, rtol=0):
                self.primitive_matrix = None  # one spelling of "unitcell is primitive"
        if self.halide is not None and self.halide not in HALIDES:
            raise DataError(self.source, f"halide {self.halide!r} is not one of {HALIDES}")
        if self.force_constants is not None:
            self.force_constants = check_force_constants(
                self.force_constants, len(self.reference_supercell), self.source
            )
        for trajectory in self.trajectories:
            trajectory.check_matches(self.reference_supercell, f"reference supercell of {self.formula}")

    @property
    def name(self) -> str:
        return self.formula

    @property
    def source(self) -> str:
        return str(self.provenance.get("source", f"<compound {self.formula}>"))

    @property
    def n_atoms(self) -> int:
        return len(self.reference_supercell)

    @property
    def trajectory(self) -> Trajectory | None:
        """All production frames of all files, in file order (None when there is no MD)."""
        if not self.trajectories:
            return None
        return Trajectory.concatenate(self.trajectories)

    @property
    def n_frames(self) -> int:
        return sum(len(t) for t in self.trajectories)

    def has(self) -> dict[str, Any]:
        """What this record holds, for listings."""
        return {
            "force_constants": self.force_constants is not None,
            "trajectory_files": len(self.trajectories),
            "frames": self.n_frames,
            "sigma_reference": self.summary.get("sigma_reference") is not None,
        }


def halide_or_none(formula_or_symbols: str | Sequence[str]) -> str | None:
    """:func:`halide_of`, or None for a compound without F, Cl, Br or I (CaTiO3)."""
    try:
        return halide_of(formula_or_symbols)
    except DataError:
        return None


def halide_of(formula_or_symbols: str | Sequence[str]) -> str:
    """The halide of an A2BB'X6 formula ('Cs2AgBiBr6' -> 'Br')."""
    from ase.formula import Formula

    if isinstance(formula_or_symbols, str):
        counts = Formula(formula_or_symbols).count()
    else:
        counts = {}
        for symbol in formula_or_symbols:
            counts[symbol] = counts.get(symbol, 0) + 1
    present = [x for x in HALIDES if x in counts]
    if not present:
        raise DataError(str(formula_or_symbols), "no halide (F, Cl, Br, I) in the formula")
    # In an A2BB'X6 perovskite the anion is the most abundant element.
    return max(present, key=lambda x: counts[x])


def check_force_constants(fc: np.ndarray, n_atoms: int, source: str | Path) -> np.ndarray:
    """Return ``fc`` as a float array of shape (N, N, 3, 3), accepting the (3N, 3N) matrix form."""
    fc = np.asarray(fc, dtype=float)
    if fc.shape == (3 * n_atoms, 3 * n_atoms):
        fc = fc.reshape(n_atoms, 3, n_atoms, 3).swapaxes(1, 2)
    if fc.shape != (n_atoms, n_atoms, 3, 3):
        raise ForceConstantsShapeError(
            source,
            f"force constants have shape {fc.shape}; a supercell of {n_atoms} atoms needs "
            f"({n_atoms}, {n_atoms}, 3, 3) or ({3 * n_atoms}, {3 * n_atoms})",
        )
    where = _first_nonfinite(fc)
    if where is not None:
        raise NonFiniteError(source, f"non-finite force constant at index {where}")
    return fc
