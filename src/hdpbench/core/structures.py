"""Conversions between ASE Atoms and phonopy's PhonopyAtoms, and reading POSCAR-style text."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from ase import Atoms

from hdpbench.core.errors import DataError


def to_phonopy_atoms(atoms: Atoms):
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(),
        cell=np.array(atoms.cell.array),
        scaled_positions=atoms.get_scaled_positions(wrap=False),
        masses=atoms.get_masses(),
    )


def from_phonopy_atoms(patoms) -> Atoms:
    return Atoms(
        symbols=list(patoms.symbols),
        cell=np.array(patoms.cell),
        scaled_positions=np.array(patoms.scaled_positions),
        masses=np.array(patoms.masses),
        pbc=True,
    )


def read_poscar(source: str | Path | bytes, *, name: str | None = None) -> Atoms:
    """A VASP POSCAR/CONTCAR/SPOSCAR from a path or from the file's bytes."""
    from ase.io.vasp import read_vasp

    label = name or str(source)
    try:
        if isinstance(source, (bytes, bytearray)):
            return read_vasp(io.StringIO(source.decode()))
        return read_vasp(str(source))
    except Exception as error:  # ASE raises assorted errors for malformed POSCARs
        raise DataError(label, f"not a readable VASP structure file ({type(error).__name__}: {error})") from error


MIN_DISTANCE = 0.5  # Å: two atoms closer than this are one atom written twice, not a structure to compute


def check_structure(atoms: Atoms, name: str | Path) -> Atoms:
    """``atoms`` when it can be computed with; a :class:`DataError` naming ``name`` for non-finite
    coordinates or cell, a periodic cell without volume, or two atoms closer than :data:`MIN_DISTANCE`."""
    from hdpbench.core.errors import NonFiniteError

    positions, cell = np.asarray(atoms.positions, dtype=float), np.asarray(atoms.cell.array, dtype=float)
    if len(atoms) == 0:
        raise DataError(name, "holds no atoms")
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
    if len(bad):
        raise NonFiniteError(name, f"non-finite coordinates of atom {int(bad[0])} ({positions[bad[0]].tolist()})")
    if not np.isfinite(cell).all():
        raise NonFiniteError(name, f"non-finite cell {cell.tolist()}")
    if atoms.pbc.any():
        lengths = np.linalg.norm(cell, axis=1)
        if (lengths[atoms.pbc] == 0).any() or abs(np.linalg.det(cell)) < 1e-6 * max(lengths.max(), 1.0) ** 3:
            raise DataError(name, f"the periodic cell {cell.round(6).tolist()} has no volume")
    if len(atoms) > 1:
        from ase.neighborlist import neighbor_list

        first, second, distance = neighbor_list("ijd", atoms, MIN_DISTANCE)
        if len(distance):
            k = int(np.argmin(distance))
            i, j = int(first[k]), int(second[k])
            which = f"atom {i} and its periodic image" if i == j else f"atoms {i} and {j}"
            raise DataError(name, f"{which} are {distance[k]:.3f} Å apart (less than {MIN_DISTANCE} Å): overlapping atoms")
    return atoms


def supercell_matrix_between(unitcell: Atoms, supercell: Atoms, *, name: str = "supercell") -> np.ndarray:
    """Integer M with supercell.cell = M @ unitcell.cell (rows are lattice vectors)."""
    ratio = supercell.cell.array @ np.linalg.inv(unitcell.cell.array)
    matrix = np.rint(ratio).astype(int)
    if not np.allclose(ratio, matrix, atol=1e-4) or round(abs(np.linalg.det(matrix))) * len(unitcell) != len(
        supercell
    ):
        raise DataError(name, "its cell is not an integer supercell of the unit cell with matching atom count")
    return matrix


def double_perovskite(a_site: str, b_site: str, b_prime_site: str, halide: str, a: float, x: float = 0.25) -> Atoms:
    """The 10-atom primitive cell of an Fm-3m A2BB'X6 double perovskite.

    Wyckoff sites of the conventional cell (lattice constant ``a``): A 8c (1/4, 1/4, 1/4), B 4a
    (0, 0, 0), B' 4b (1/2, 1/2, 1/2), X 24e (x, 0, 0). Atom order: A, A, B, B', X x 6.
    """
    cell = 0.5 * a * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    conventional_fractional = [
        (0.25, 0.25, 0.25),
        (0.75, 0.75, 0.75),
        (0.0, 0.0, 0.0),
        (0.5, 0.5, 0.5),
        (x, 0.0, 0.0),
        (-x, 0.0, 0.0),
        (0.0, x, 0.0),
        (0.0, -x, 0.0),
        (0.0, 0.0, x),
        (0.0, 0.0, -x),
    ]
    atoms = Atoms(
        symbols=[a_site, a_site, b_site, b_prime_site] + [halide] * 6,
        positions=a * np.array(conventional_fractional),
        cell=cell,
        pbc=True,
    )
    atoms.wrap()
    return atoms


def make_supercell(unitcell: Atoms, supercell_matrix) -> Atoms:
    """The supercell exactly as phonopy builds it (atom order of phonopy's SPOSCAR)."""
    return from_phonopy_atoms(make_phonopy(unitcell, supercell_matrix).supercell)


def supercell_matrix_3x3(supercell_matrix) -> np.ndarray:
    """A supercell matrix as 3×3 integers; three numbers mean a diagonal matrix."""
    matrix = np.asarray(supercell_matrix, dtype=int)
    return np.diag(matrix) if matrix.shape == (3,) else matrix


def primitive_matrix_3x3(primitive_matrix) -> np.ndarray | None:
    """A primitive matrix as a 3×3 float array, or None for the identity (the unit cell is primitive)."""
    if primitive_matrix is None:
        return None
    matrix = np.asarray(primitive_matrix, dtype=float)
    if matrix.shape != (3, 3):
        raise ValueError(f"primitive matrix of shape {matrix.shape}: expected 3x3")
    return None if np.array_equal(matrix, np.eye(3)) else matrix


def make_phonopy(unitcell: Atoms, supercell_matrix=(2, 2, 2), force_constants: np.ndarray | None = None, primitive_matrix=None):
    """A Phonopy object on ``unitcell``; ``primitive_matrix`` (3, 3) takes it to the primitive cell
    (phonopy's PRIMITIVE_AXIS), None the identity (the authors' setting: their unit cell is primitive).

    Phonopy searches the supercell's symmetry and atom permutations when it is built (~0.1 s for an
    80-atom supercell; 48 builds were 6.8 s of a profiled 65.6 s σ page), and the stages build one per
    model and displacement, and per comparison side, on the same cell. So the first object of a cell is kept
    (without force constants) and later calls get a deep copy of it (~0.4 ms), which gives the same
    bits as a freshly built one (tested)."""
    import copy

    from hdpbench.core.compound import check_force_constants

    template = _phonopy_template(unitcell, supercell_matrix_3x3(supercell_matrix), primitive_matrix_3x3(primitive_matrix))
    phonon = copy.deepcopy(template)
    if force_constants is not None:
        phonon.force_constants = check_force_constants(force_constants, len(phonon.supercell), "force constants")
    return phonon


_PHONOPY_TEMPLATES: dict[bytes, object] = {}
_PHONOPY_TEMPLATES_SIZE = 32


def _phonopy_template(unitcell: Atoms, matrix: np.ndarray, primitive: np.ndarray | None = None):
    """The Phonopy object :func:`make_phonopy` copies, built once per cell, species, masses,
    supercell and primitive matrix (kept for the last ``_PHONOPY_TEMPLATES_SIZE`` of them)."""
    import hashlib

    import phonopy

    digest = hashlib.sha256()
    for array in (unitcell.cell.array, unitcell.get_scaled_positions(wrap=False), unitcell.numbers, unitcell.get_masses(), matrix):
        digest.update(np.ascontiguousarray(array, dtype=float).tobytes())
    if primitive is not None:  # the identity adds nothing: the authors' keys (and objects) are unchanged
        digest.update(b"primitive" + np.ascontiguousarray(primitive, dtype=float).tobytes())
    key = digest.digest()
    if key not in _PHONOPY_TEMPLATES:
        if len(_PHONOPY_TEMPLATES) >= _PHONOPY_TEMPLATES_SIZE:
            _PHONOPY_TEMPLATES.pop(next(iter(_PHONOPY_TEMPLATES)))
        _PHONOPY_TEMPLATES[key] = phonopy.Phonopy(
            to_phonopy_atoms(unitcell), supercell_matrix=matrix, primitive_matrix="P" if primitive is None else primitive
        )
    return _PHONOPY_TEMPLATES[key]


def find_primitive_matrix(unitcell: Atoms, symprec: float = 1e-5) -> np.ndarray | None:
    """The matrix taking ``unitcell`` to its primitive cell, found by symmetry (spglib through
    phonopy's ``primitive_matrix="auto"``); None when ``unitcell`` is already primitive. For the
    8-atom conventional cell of rock salt it is the fcc matrix (0 ½ ½ / ½ 0 ½ / ½ ½ 0)."""
    from phonopy.structure.cells import guess_primitive_matrix

    matrix = np.asarray(guess_primitive_matrix(to_phonopy_atoms(unitcell), symprec=symprec), dtype=float)
    if abs(abs(np.linalg.det(matrix)) - 1) < 1e-8:
        return None
    return matrix
