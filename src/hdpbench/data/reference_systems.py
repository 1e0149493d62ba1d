"""Real first-principles reference systems (``layout: reference-systems`` datasets, e.g. ``external``).

Each system is declared in the dataset's YAML (``systems:``) by the files that hold it:

* ``trajectory`` — an FHI-vibes ``trajectory.nc`` (frames with DFT forces, the reference supercell and
  Φ); the unit cell is cut from the reference supercell with ``supercell`` and Φ is reordered to
  phonopy's supercell atom order, so bands and σ use the same Φ_DFT;
* ``unitcell`` + ``force_constants`` (FORCE_SETS, phonopy yaml, hdf5, FORCE_CONSTANTS) + ``supercell``;
* ``force_constants`` as a phonopy yaml alone (it holds its unit cell and supercell matrix);
* ``displaced_supercells`` — a phonopy yaml of displaced supercells with DFT forces (KCl's 120
  random displacements), read as σ frames on the force constants' supercell.

Every system is a :class:`~hdpbench.core.compound.Compound` (:class:`ReferenceSystem` adds the
declaration's code, functional, description and file list), so the stages read it like any other
source's (:class:`hdpbench.data.interface.ReferenceSource`): ``unitcell``, ``primitive_matrix`` (found
by symmetry: the 8-atom rock-salt cells of NaCl and KCl are conventional, their primitive cell has 2
atoms), ``supercell_matrix``, ``force_constants`` (N, N, 3, 3) eV/Å² on phonopy's supercell of
``unitcell``, ``reference_supercell`` (that supercell as ASE Atoms) and ``trajectory`` (frames with
DFT forces, or None). Their frames are production samples (FHI-vibes' AIMD, KCl's displaced
supercells): the stages' ``discard`` and frame sets, which describe the authors' MD files, do not apply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from hdpbench.core.compound import Compound, Trajectory, halide_or_none
from hdpbench.core.errors import DataError
from hdpbench.data.interface import Capability, SystemInfo, files_digest

LAYOUT = "reference-systems"

SYSTEM_KEYS = {
    "formula", "description", "trajectory", "unitcell", "force_constants", "displaced_supercells", "supercell",
    "temperature_K", "timestep_fs", "code", "functional",
}  # fmt: skip


@dataclass
class ReferenceSystem(Compound):
    """A declared system as a :class:`Compound` (``formula`` is the system's name; its frames with DFT
    forces are ``trajectories[0]``, atoms in ``reference_supercell``'s order), plus its declaration."""

    description: str = ""
    code: str = ""
    functional: str = ""
    timestep_fs: float | None = None
    files: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. FHI-vibes' own σ


def atom_order(from_atoms: Atoms, to_atoms: Atoms, *, tolerance: float = 1e-3, name: str = "structure") -> np.ndarray:
    """``order`` such that ``from_atoms[order]`` is ``to_atoms`` atom by atom (same cell, positions
    equal modulo lattice vectors, same species). Raises naming ``name`` if no such order exists."""
    if len(from_atoms) != len(to_atoms):
        raise DataError(name, f"{len(from_atoms)} atoms cannot be matched to {len(to_atoms)}")
    inverse_cell = np.linalg.inv(to_atoms.cell.array)
    frac_from = from_atoms.positions @ inverse_cell
    frac_to = to_atoms.positions @ inverse_cell
    delta = frac_to[:, None, :] - frac_from[None, :, :]
    delta -= np.round(delta)
    distance = np.linalg.norm(delta @ to_atoms.cell.array, axis=2)  # (N_to, N_from) Å
    order = distance.argmin(axis=1)
    if distance[np.arange(len(order)), order].max() > tolerance or len(set(order.tolist())) != len(order):
        raise DataError(name, f"atoms do not match the supercell within {tolerance} Å")
    if (from_atoms.numbers[order] != to_atoms.numbers).any():
        raise DataError(name, "matched atoms have different species")
    return order


def reorder_force_constants(force_constants: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Φ of ``atoms`` → Φ of ``atoms[order]``."""
    return force_constants[np.ix_(order, order)]


def unitcell_from_supercell(supercell: Atoms, supercell_matrix) -> Atoms:
    """The unit cell of a diagonal supercell: cell / n, the atoms whose fractional coordinates lie in the first cell."""
    repeats = np.asarray(supercell_matrix, dtype=int)
    repeats = np.diag(repeats) if repeats.ndim == 2 else repeats
    cell = supercell.cell.array / repeats[:, None]
    fractional = supercell.get_scaled_positions(wrap=True) * repeats
    first = np.all(fractional < 1 - 1e-6, axis=1)
    unitcell = Atoms(numbers=supercell.numbers[first], positions=supercell.positions[first], cell=cell, pbc=True)
    unitcell.wrap()
    if len(unitcell) * int(np.prod(repeats)) != len(supercell):
        raise DataError("supercell", f"{len(supercell)} atoms are not {np.prod(repeats)} copies of a {len(unitcell)}-atom cell")
    return unitcell


class ReferenceSystems:
    """The systems of one ``layout: reference-systems`` dataset, loaded on demand."""

    layout = LAYOUT

    def __init__(self, spec, root: Path):
        self.spec = spec
        self.root = Path(root)
        self.declared: dict[str, dict[str, Any]] = spec.extra.get("systems") or {}
        source = Path(spec.extra.get("_file", f"datasets/{spec.name}.yaml"))
        for name, entry in self.declared.items():
            unknown = set(entry) - SYSTEM_KEYS
            if unknown:
                raise DataError(source, f"system {name}: unknown key(s) {sorted(unknown)} (known: {sorted(SYSTEM_KEYS)})")

    @property
    def name(self) -> str:
        return self.spec.name

    def systems(self) -> list[str]:
        return list(self.declared)

    def compounds(self, halide: str | None = None) -> list[str]:
        return [name for name in self.declared if halide is None or self.info(name).halide == halide]

    def info(self, name: str) -> SystemInfo:
        """What the declaration says the system has (no file is parsed)."""
        if name not in self.declared:
            raise DataError(self.root, f"no system {name!r} in dataset {self.name!r}: {self.systems()}")
        entry = self.declared[name]
        capabilities = {Capability.FORCE_CONSTANTS}
        if "trajectory" in entry:
            capabilities |= {Capability.AIMD_FRAMES, Capability.REFERENCE_FRAMES}
        if "displaced_supercells" in entry:
            capabilities |= {Capability.DISPLACED_SETS, Capability.REFERENCE_FRAMES}
        files = tuple(self.root / entry[key] for key in ("trajectory", "unitcell", "force_constants", "displaced_supercells") if key in entry)
        return SystemInfo(
            name=name, halide=halide_or_none(str(entry.get("formula", name))), files=files,
            capabilities=frozenset(capabilities), temperature_K=entry.get("temperature_K") if "trajectory" in entry else None,
            details={"code": entry.get("code", ""), "functional": entry.get("functional", "")},
        )  # fmt: skip

    def input_digest(self, name: str) -> str:
        """sha256 over the system's declared files and its declaration."""
        return files_digest(self.info(name).files, extra=self.declared[name])

    def formula(self, name: str) -> str:
        """The declared formula (checked against the files when the system is loaded)."""
        if name not in self.declared:
            raise KeyError(f"no system {name!r} in dataset {self.name}: {self.systems()}")
        return str(self.declared[name]["formula"])

    def provenance(self) -> dict[str, Any]:
        """Every folder's provenance.json, by folder."""
        return {p.parent.name: json.loads(p.read_text()) for p in sorted(self.root.glob("*/provenance.json"))}

    def _file(self, name: str, key: str) -> Path:
        path = self.root / self.declared[name][key]
        if not path.is_file():
            raise DataError(path, f"file of system {name} ({key}) is missing")
        return path

    def load(self, name: str, *, trajectories: bool = True, **_options) -> ReferenceSystem:
        """The system's record. ``trajectories=False`` leaves out KCl's displaced supercells (their yaml
        takes a while to parse); ``discard`` and ``frames`` are accepted and ignored (module docstring)."""
        from hdpbench.core.structures import (
            find_primitive_matrix,
            from_phonopy_atoms,
            make_phonopy,
            read_poscar,
        )
        from hdpbench.io.force_constants import read_force_constants, read_phonopy_yaml
        from hdpbench.io.trajectories import read_fhi_vibes

        if name not in self.declared:
            raise KeyError(f"no system {name!r} in dataset {self.name}: {self.systems()}")
        entry = self.declared[name]
        files: list[str] = []
        trajectory, extra = None, {}
        if "trajectory" in entry:
            path = self._file(name, "trajectory")
            files.append(str(path))
            vibes = read_fhi_vibes(path)
            matrix = np.diag(entry.get("supercell", [1, 1, 1]))
            unitcell = unitcell_from_supercell(vibes.reference, entry.get("supercell", [1, 1, 1]))
            supercell = from_phonopy_atoms(make_phonopy(unitcell, matrix).supercell)
            order = atom_order(vibes.reference, supercell, name=path)
            if vibes.force_constants is None:
                raise DataError(path, "holds no force_constants_remapped")
            force_constants = reorder_force_constants(vibes.force_constants, order)
            t = vibes.trajectory
            trajectory = Trajectory(t.numbers[order], t.positions[:, order], t.cells, t.forces[:, order], t.energies, source_files=[str(path)])
            extra = {"sigma_fhi_vibes": vibes.sigma, "sigma_per_sample_fhi_vibes": vibes.sigma_per_sample}
        elif "unitcell" in entry:
            unit_path, fc_path = self._file(name, "unitcell"), self._file(name, "force_constants")
            files += [str(unit_path), str(fc_path)]
            unitcell = read_poscar(unit_path)
            matrix = np.diag(entry.get("supercell", [1, 1, 1]))
            force_constants = read_force_constants(fc_path, unitcell=unitcell, supercell_matrix=matrix)
        else:
            fc_path = self._file(name, "force_constants")
            files.append(str(fc_path))
            force_constants, unitcell, matrix = read_phonopy_yaml(fc_path)
        matrix = np.asarray(matrix, dtype=int)
        reference_supercell = from_phonopy_atoms(make_phonopy(unitcell, matrix).supercell)
        if "displaced_supercells" in entry and trajectories:
            path = self._file(name, "displaced_supercells")
            files.append(str(path))
            trajectory = displaced_supercell_frames(path, reference_supercell)
        from ase.formula import Formula

        declared = Formula(self.formula(name)).reduce()[0]
        if Formula(unitcell.get_chemical_formula()).reduce()[0] != declared:
            raise DataError(files[0], f"system {name} is declared as {declared}, its files hold {unitcell.get_chemical_formula()}")
        return ReferenceSystem(
            formula=name,
            halide=halide_or_none(unitcell.get_chemical_symbols()),
            unitcell=unitcell,
            supercell_matrix=matrix,
            force_constants=force_constants,
            reference_supercell=reference_supercell,
            trajectories=[trajectory] if trajectory is not None else [],
            primitive_matrix=find_primitive_matrix(unitcell),
            provenance={"source": files[0], "layout": LAYOUT, "dataset": self.name, "dataset_version": self.spec.version, "files": files},
            description=entry.get("description", ""),
            code=entry.get("code", ""),
            functional=entry.get("functional", ""),
            temperature_K=entry.get("temperature_K"),
            timestep_fs=entry.get("timestep_fs"),
            files=files,
            extra=extra,
        )

    def table(self) -> list[dict[str, Any]]:
        """One row per system, from the declaration (no file is parsed)."""
        return [
            {"system": name, "code": e.get("code", ""), "functional": e.get("functional", ""), "description": e.get("description", "")}
            for name, e in self.declared.items()
        ]


def displaced_supercell_frames(path: Path, reference_supercell: Atoms) -> Trajectory:
    """Displaced supercells with forces from a phonopy yaml (type-II dataset) as frames, in the
    atom order of ``reference_supercell``."""
    import phonopy

    from hdpbench.core.structures import from_phonopy_atoms

    try:
        data = phonopy.load(str(path), produce_fc=False, log_level=0)
    except Exception as error:
        raise DataError(path, f"not a readable phonopy yaml ({type(error).__name__}: {error})") from error
    dataset = data.dataset or {}
    if "displacements" not in dataset or "forces" not in dataset:
        raise DataError(path, "holds no displacements with forces (a phonopy type-II dataset)")
    supercell = from_phonopy_atoms(data.supercell)
    order = atom_order(supercell, reference_supercell, name=path)
    displacements = np.asarray(dataset["displacements"])[:, order]
    forces = np.asarray(dataset["forces"])[:, order]
    energies = np.asarray(dataset["supercell_energies"]) if "supercell_energies" in dataset else None
    cells = np.broadcast_to(reference_supercell.cell.array, (len(forces), 3, 3)).copy()
    return Trajectory(reference_supercell.numbers, reference_supercell.positions + displacements, cells, forces, energies, source_files=[str(path)])
