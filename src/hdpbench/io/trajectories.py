"""Read MD trajectories with forces from any supported format into a :class:`Trajectory`.

Formats: VASP ``vasprun.xml`` (streamed), FHI-vibes ``trajectory.nc`` (NetCDF4 read with h5py; also
gives the reference supercell and Φ it was computed with) and anything ``ase.io.read`` understands
that carries forces (extxyz, ASE ``.traj``...).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from hdpbench.core.compound import Trajectory, check_force_constants
from hdpbench.core.errors import DataError
from hdpbench.io.vasprun import read_vasprun


@dataclass
class FhiVibesTrajectory:
    """What an FHI-vibes ``trajectory.nc`` holds that σ needs, plus FHI-vibes' own σ for checks."""

    trajectory: Trajectory
    reference: Atoms
    force_constants: np.ndarray | None  # (N, N, 3, 3)
    sigma_per_sample: np.ndarray | None
    sigma: float | None


def trajectory_format(path: str | Path) -> str:
    name = Path(path).name.lower()
    if name.endswith(".nc"):
        return "fhi-vibes"
    if "vasprun" in name or name.endswith(".xml"):
        return "vasprun"
    return "ase"


def read_fhi_vibes(path: str | Path) -> FhiVibesTrajectory:
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise DataError(path, f"not a readable NetCDF4/HDF5 file ({error})") from error
    with f:
        required = ("positions", "forces", "cell", "positions_reference", "lattice_reference")
        missing = [key for key in required if key not in f]
        if missing:
            raise DataError(path, f"not an FHI-vibes trajectory: missing {missing}")
        numbers = _numbers_from_vibes(f, path)
        reference = Atoms(
            numbers=numbers,
            positions=f["positions_reference"][()],
            cell=f["lattice_reference"][()],
            pbc=True,
        )
        fc = None
        if "force_constants_remapped" in f:
            fc = check_force_constants(f["force_constants_remapped"][()], len(numbers), f"{path}:force_constants_remapped")
        energies = f["energy_potential"][()] if "energy_potential" in f else None
        trajectory = Trajectory(
            numbers=numbers,
            positions=f["positions"][()],
            cells=f["cell"][()],
            forces=f["forces"][()],
            energies=energies,
            source_files=[str(path)],
        )
        sigma_per_sample = f["sigma_per_sample"][()] if "sigma_per_sample" in f else None
        sigma = float(np.ravel(f.attrs["sigma"])[0]) if "sigma" in f.attrs else None
    trajectory.check_finite()
    return FhiVibesTrajectory(trajectory, reference, fc, sigma_per_sample, sigma)


def _numbers_from_vibes(f, path) -> np.ndarray:
    """FHI-vibes stores the species as an attribute array of symbols in atom order."""
    from ase.data import atomic_numbers

    raw = f.attrs.get("symbols")
    if raw is None:
        raise DataError(path, "no 'symbols' attribute: not an FHI-vibes trajectory")
    symbols = [s.decode() if isinstance(s, bytes) else str(s) for s in np.atleast_1d(raw)]
    unknown = sorted({s for s in symbols if s not in atomic_numbers})
    if unknown:
        raise DataError(path, f"unknown element symbol(s) {unknown}")
    return np.array([atomic_numbers[s] for s in symbols])


def read_trajectory(path: str | Path, *, discard: int = 0, file_format: str | None = None) -> Trajectory:
    """Frames with forces from a vasprun.xml, an FHI-vibes trajectory.nc or an ASE-readable file."""
    from hdpbench.core.validation import require_positive_int

    require_positive_int("discard", discard, allow_zero=True)
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such trajectory file")
    kind = file_format or trajectory_format(path)
    if kind == "vasprun":
        return read_vasprun(path, discard=discard)
    if kind == "fhi-vibes":
        trajectory = read_fhi_vibes(path).trajectory
    else:
        trajectory = read_ase_frames(path)
        if trajectory.forces is None:
            raise DataError(path, "frames carry no forces")
    trajectory = discard_frames(trajectory, discard, path)
    trajectory.check_finite()
    return trajectory


def discard_frames(trajectory: Trajectory, discard: int, path: str | Path) -> Trajectory:
    """``trajectory`` without its first ``discard`` frames; a :class:`DataError` naming ``path`` when
    none would be left."""
    if not discard:
        return trajectory
    if discard >= len(trajectory):
        raise DataError(path, f"no frames left after discarding the first {discard} (file has {len(trajectory)})")
    return trajectory.select(slice(discard, None))


def read_ase_frames(path: str | Path, source: str | Path | None = None) -> Trajectory:
    """Every frame of an ASE-readable file (extxyz, ``.traj``...) as a :class:`Trajectory`, forces and
    energies where the frames carry them; no other check (``source``: the name errors give, default
    the path).

    ``ase.io.read`` takes ~0.8 ms per 80-atom extxyz frame (0.25 s for one 301-frame model-MD file),
    and the σ and map stages both read every model-MD file, so the parsed arrays are cached under the
    file's content (:func:`hdpbench.core.storage.content_cache_file`: an edited file is parsed again)."""
    import ase

    from hdpbench.core.storage import content_cache_file, try_read_cache_arrays

    path = Path(path)
    source = path if source is None else source

    def from_cache(stored) -> Trajectory:
        return Trajectory(
            numbers=stored["numbers"], positions=stored["positions"], cells=stored["cells"],
            forces=stored["forces"] if "forces" in stored.files else None,
            energies=stored["energies"] if "energies" in stored.files else None,
            source_files=[str(source)], pbc=tuple(bool(p) for p in stored["pbc"]),
        )  # fmt: skip

    cached = content_cache_file(path, "ase-frames", f"ase {ase.__version__}")
    hit = try_read_cache_arrays(cached, from_cache) if cached is not None else None
    if hit is not None:
        return hit
    import ase.io

    try:
        frames = ase.io.read(path, index=":")
    except Exception as error:
        raise DataError(path, f"ase.io.read could not read it ({type(error).__name__}: {error})") from error
    trajectory = Trajectory.from_atoms_list(frames, source=source)
    if cached is not None:
        from hdpbench.core.storage import try_write_cache_arrays

        arrays = {"numbers": trajectory.numbers, "positions": trajectory.positions, "cells": trajectory.cells, "pbc": np.array(trajectory.pbc)}
        arrays |= {name: value for name in ("forces", "energies") if (value := getattr(trajectory, name)) is not None}
        try_write_cache_arrays(cached, arrays)
    return trajectory


def count_extxyz_frames(path: str | Path, n_atoms: int) -> int:
    """The number of frames of an extxyz file whose frames all have ``n_atoms`` atoms (each frame is a
    count line, a comment line and one line per atom), without parsing them."""
    path = Path(path)
    if not path.is_file():
        return 0
    lines = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
    frames, rest = divmod(lines, n_atoms + 2)
    if rest:
        raise DataError(path, f"{lines} lines are not whole frames of {n_atoms} atoms ({n_atoms + 2} lines each)")
    return frames


class ExtxyzFrameText:
    """The extxyz text of frames of one structure (``template``: species, cell, pbc, per-atom arrays)
    with new positions, velocities and forces: byte for byte what ``ase.io.write(..., format="extxyz")``
    writes for that ``Atoms`` with the velocities set (ASE writes them as momenta), the forces in a
    ``SinglePointCalculator`` and ``info["step"]``.

    ASE formats a frame atom by atom (1.15 ms for a 64-atom frame, measured, plus building the
    ``Atoms``); the MD writes one frame per replica and step, so for a template whose per-atom arrays
    are all floating point (masses, say) and which has no constraints or ``info`` the frame is
    formatted here in one ``%`` over all atoms (0.29 ms for the same frame). Any other template goes through ASE, so what is written never
    depends on this shortcut. Shapes: positions, velocities and forces (n_atoms, 3) in Å,
    Å/(ASE time unit) and eV/Å.
    """

    def __init__(self, template: Atoms):
        self.template = template.copy()
        self.template.calc = None
        self.n_atoms = len(template)
        # ASE's columns: species, positions, the template's other arrays in their order (momenta
        # where set_velocities puts it), then the forces.
        names = [name for name in template.arrays if name not in ("numbers", "positions")]
        names += [] if "momenta" in names else ["momenta"]
        constant = {name: np.asarray(template.arrays[name]) for name in names if name != "momenta"}
        self.plain = (
            not template.constraints and not template.info
            and all(a.dtype.kind == "f" and (a.ndim == 1 or a.ndim == 2) for a in constant.values())
        )  # fmt: skip
        if not self.plain:
            return
        widths = {name: 1 if a.ndim == 1 else a.shape[1] for name, a in constant.items()} | {"momenta": 3}
        self._columns = [(name, widths[name], constant.get(name)) for name in names] + [("forces", 3, None)]
        self._width = 1 + 3 + sum(width for _, width, _ in self._columns)
        self._masses = template.get_masses()[:, None]
        self._symbols = template.get_chemical_symbols()
        # ASE's header: the cell transposed, in Fortran order, each number by str(); then the columns.
        lattice = 'Lattice="' + " ".join(str(x) for x in np.reshape(template.cell.T, 9, order="F")) + '" ' if template.cell.any() else ""
        from ase.io.extxyz import PROPERTY_NAME_MAP

        properties = ":".join(f"{PROPERTY_NAME_MAP.get(name, name)}:R:{width}" for name, width, _ in self._columns)
        self._header = f"{self.n_atoms}\n{lattice}Properties=species:S:1:pos:R:3:{properties} "
        self._pbc = template.get_pbc()
        self._body = ("%-2s" + " %16.8f" * (self._width - 1) + "\n") * self.n_atoms  # ASE's column formats

    def atoms(self, positions: np.ndarray, velocities: np.ndarray, forces: np.ndarray | None, step: int) -> Atoms:
        """The frame as the ``Atoms`` ASE would write (velocities set, forces as calculator results)."""
        from ase.calculators.singlepoint import SinglePointCalculator

        atoms = self.template.copy()
        atoms.positions = positions
        atoms.set_velocities(velocities)
        if forces is not None:
            atoms.calc = SinglePointCalculator(atoms, forces=forces)
        atoms.info["step"] = step
        return atoms

    def text(self, positions: np.ndarray, velocities: np.ndarray, forces: np.ndarray | None, step: int) -> str:
        """One frame's extxyz text (count line, comment line, one line per atom)."""
        if not self.plain or forces is None:
            import io

            import ase.io

            buffer = io.StringIO()
            ase.io.write(buffer, self.atoms(positions, velocities, forces, step), format="extxyz")
            return buffer.getvalue()
        from ase.io.extxyz import key_val_dict_to_str

        values = np.empty((self.n_atoms, self._width), dtype=object)
        values[:, 0] = self._symbols
        values[:, 1:4] = positions
        column = 4
        for name, width, constant in self._columns:
            if name == "momenta":
                value = self._masses * velocities  # ASE's set_velocities: the same product
            elif name == "forces":
                value = forces
            else:
                value = constant
            values[:, column : column + width] = value.reshape(self.n_atoms, width)
            column += width
        comment = key_val_dict_to_str({"step": int(step), "pbc": self._pbc})
        return self._header + comment + "\n" + self._body % tuple(values.ravel().tolist())
