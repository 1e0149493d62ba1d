"""Read reference force constants in the formats phonopy writes, always as the full (N, N, 3, 3) array.

Supported: ``force_constants.hdf5`` (full or compact), ``FORCE_CONSTANTS`` (text), phonopy yaml
(``phonopy.yaml``/``phonopy_params.yaml``, optionally ``.xz``/``.gz``/``.bz2``/``.lzma``) and
``FORCE_SETS`` (finite-displacement forces; Φ then comes from phonopy, which needs the unit cell and
the supercell matrix). Compact force constants are expanded with phonopy's own routine.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO

import numpy as np
from ase import Atoms

from hdpbench.core.compound import check_force_constants
from hdpbench.core.errors import DataError, ForceConstantsShapeError
from hdpbench.core.structures import from_phonopy_atoms, make_phonopy

_YAML_SUFFIXES = (".yaml", ".yaml.xz", ".yaml.gz", ".yaml.bz2", ".yaml.lzma", ".yml")


def force_constants_format(name: str | Path) -> str:
    """'hdf5', 'FORCE_CONSTANTS', 'FORCE_SETS' or 'phonopy-yaml', from the file name."""
    base = Path(name).name
    lower = base.lower()
    if lower.endswith((".hdf5", ".h5")):
        return "hdf5"
    if "FORCE_CONSTANTS" in base:
        return "FORCE_CONSTANTS"
    if "FORCE_SETS" in base:
        return "FORCE_SETS"
    if lower.endswith(_YAML_SUFFIXES):
        return "phonopy-yaml"
    raise DataError(name, "unknown force-constant format (expected .hdf5, FORCE_CONSTANTS, FORCE_SETS or phonopy yaml)")


def _phonopy(unitcell: Atoms, supercell_matrix, name: str):
    if unitcell is None or supercell_matrix is None:
        raise DataError(name, "needs the unit cell and the supercell matrix to build the full force constants")
    return make_phonopy(unitcell, supercell_matrix)


def _expand_compact(fc: np.ndarray, unitcell, supercell_matrix, name: str) -> np.ndarray:
    from phonopy.harmonic.force_constants import compact_fc_to_full_fc

    phonon = _phonopy(unitcell, supercell_matrix, name)
    if fc.shape[:2] != (len(phonon.primitive), len(phonon.supercell)):
        raise DataError(
            name,
            f"compact force constants of shape {fc.shape} do not fit a {len(phonon.supercell)}-atom "
            f"supercell of a {len(phonon.primitive)}-atom primitive cell",
        )
    return compact_fc_to_full_fc(phonon.primitive, fc)


def read_hdf5_force_constants(source: str | Path | bytes | IO[bytes], *, name: str | None = None) -> np.ndarray:
    """The ``force_constants`` (or ``fc2``) dataset of a phonopy hdf5 file, as stored."""
    import h5py

    label = name or str(source)
    handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        with h5py.File(handle, "r") as f:
            key = "fc2" if "fc2" in f else "force_constants" if "force_constants" in f else None
            if key is None:
                raise DataError(label, f"no 'force_constants' dataset (has {sorted(f.keys())})")
            return np.asarray(f[key][()], dtype=float)
    except OSError as error:
        raise DataError(label, f"not a readable HDF5 file ({error})") from error


def read_force_sets(
    source: str | Path | bytes, unitcell: Atoms, supercell_matrix, *, name: str | None = None
) -> np.ndarray:
    """Φ from a FORCE_SETS file via phonopy's own solver (no symmetrisation, as ``phonopy --fc``)."""
    from phonopy.file_IO import parse_FORCE_SETS_from_strings

    label = name or str(source)
    text = source.decode() if isinstance(source, (bytes, bytearray)) else Path(source).read_text()
    header = text.split(maxsplit=1)[0] if text.strip() else ""
    if header.isdigit() and unitcell is not None and supercell_matrix is not None:  # phonopy's format: line 1 is the atom count
        from hdpbench.core.structures import supercell_matrix_3x3

        matrix = supercell_matrix_3x3(supercell_matrix)
        expected = len(unitcell) * round(abs(np.linalg.det(matrix)))
        if int(header) != expected:  # checked before phonopy builds the supercell (50x50x50 never finished)
            raise DataError(
                label, f"holds forces of {header} atoms per supercell, but the {len(unitcell)}-atom unit cell x supercell "
                f"{matrix.tolist()} has {expected}: give the supercell matrix it was computed with",
            )
    phonon = _phonopy(unitcell, supercell_matrix, label)
    try:
        dataset = parse_FORCE_SETS_from_strings(text, natom=len(phonon.supercell))
    except Exception as error:
        raise DataError(label, f"not a readable FORCE_SETS file ({type(error).__name__}: {error})") from error
    phonon.dataset = dataset
    phonon.produce_force_constants()
    return np.asarray(phonon.force_constants)


def read_phonopy_yaml(path: str | Path) -> tuple[np.ndarray, Atoms, np.ndarray]:
    """(full Φ, unit cell, supercell matrix) from a phonopy yaml holding force constants or forces.

    PyYAML builds a Python object per number, so one 80-atom supercell's force constants take ~0.6 s
    to parse, and the book reads each model's file on several pages. The parsed arrays are therefore
    kept in the cache folder under the file's sha256 (and phonopy's version): an edited file has
    another key, so a hit is never stale; an unreadable entry is parsed again."""
    from hdpbench.core.storage import try_read_cache_arrays

    def from_cache(stored) -> tuple[np.ndarray, Atoms, np.ndarray]:
        unitcell = Atoms(numbers=stored["numbers"], cell=stored["cell"], positions=stored["positions"], masses=stored["masses"], pbc=True)
        return stored["force_constants"], unitcell, stored["supercell_matrix"]

    cached = _parsed_yaml_file(path)
    hit = try_read_cache_arrays(cached, from_cache) if cached is not None else None
    if hit is not None:
        return hit
    fc, unitcell, matrix = _parse_phonopy_yaml(path)
    if cached is not None:
        _store_parsed_yaml(cached, fc, unitcell, matrix)
    return fc, unitcell, matrix


def _parse_phonopy_yaml(path: str | Path) -> tuple[np.ndarray, Atoms, np.ndarray]:
    import phonopy

    try:
        phonon = phonopy.load(str(path), is_compact_fc=False, produce_fc=True, log_level=0)
    except Exception as error:
        raise DataError(path, f"not a readable phonopy yaml ({type(error).__name__}: {error})") from error
    if phonon.force_constants is None:
        raise DataError(path, "holds neither force constants nor displacement forces")
    return np.asarray(phonon.force_constants), from_phonopy_atoms(phonon.unitcell), np.asarray(phonon.supercell_matrix)


def _parsed_yaml_file(path: str | Path) -> Path | None:
    """Where the parsed arrays of this file's content are cached (None: the file cannot be read)."""
    import phonopy

    from hdpbench.core.storage import content_cache_file

    return content_cache_file(path, "phonopy-yaml", f"phonopy {phonopy.__version__}")


def _store_parsed_yaml(cached: Path, fc: np.ndarray, unitcell: Atoms, matrix: np.ndarray) -> None:
    from hdpbench.core.storage import try_write_cache_arrays

    arrays = {
        "force_constants": fc, "numbers": unitcell.numbers, "cell": np.asarray(unitcell.cell),
        "positions": unitcell.positions, "masses": unitcell.get_masses(), "supercell_matrix": matrix,
    }  # fmt: skip
    try_write_cache_arrays(cached, arrays)


def read_force_constants(
    source: str | Path | bytes,
    *,
    unitcell: Atoms | None = None,
    supercell_matrix=None,
    n_atoms: int | None = None,
    name: str | None = None,
    file_format: str | None = None,
) -> np.ndarray:
    """Full force constants (N, N, 3, 3) in eV/Å² from any supported file.

    ``source`` is a path or (for archive members) the file's bytes with ``name`` giving its name.
    ``unitcell``/``supercell_matrix`` are needed for FORCE_SETS and compact force constants;
    ``n_atoms`` (the supercell size) is checked when given.
    """
    label = name or str(source)
    kind = file_format or force_constants_format(label)
    if kind == "hdf5":
        fc = read_hdf5_force_constants(source, name=label)
    elif kind == "FORCE_CONSTANTS":
        from phonopy.file_IO import parse_FORCE_CONSTANTS

        if isinstance(source, (bytes, bytearray)):
            import tempfile

            with tempfile.NamedTemporaryFile(suffix="_FORCE_CONSTANTS") as tmp:
                tmp.write(source)
                tmp.flush()
                fc = _parse_text_fc(parse_FORCE_CONSTANTS, tmp.name, label)
        else:
            fc = _parse_text_fc(parse_FORCE_CONSTANTS, source, label)
    elif kind == "FORCE_SETS":
        fc = read_force_sets(source, unitcell, supercell_matrix, name=label)
    elif kind == "phonopy-yaml":
        if isinstance(source, (bytes, bytearray)):
            raise DataError(label, "phonopy yaml must be read from a file path")
        fc, _, _ = read_phonopy_yaml(source)
    else:
        raise DataError(label, f"unknown force-constant format {kind!r}")
    if fc.ndim == 4 and fc.shape[0] != fc.shape[1]:
        # Compact Φ has one row per primitive atom (primitive = unit cell here); any other
        # non-square shape is a damaged file, not a question of which cell to use.
        n_primitive = len(unitcell) if unitcell is not None else None
        n_supercell = n_atoms if n_atoms is not None else fc.shape[1]
        if n_primitive is not None and (fc.shape[0] != n_primitive or fc.shape[1] != n_supercell or fc.shape[2:] != (3, 3)):
            expected = f"full ({n_supercell}, {n_supercell}, 3, 3)"
            if n_primitive is not None:
                expected += f" or compact ({n_primitive}, {n_supercell}, 3, 3)"
            raise ForceConstantsShapeError(label, f"force constants of shape {fc.shape}: expected {expected} for the {n_supercell}-atom supercell")
        fc = _expand_compact(fc, unitcell, supercell_matrix, label)
    if n_atoms is None:
        n_atoms = fc.shape[1] if fc.ndim == 4 else fc.shape[0] // 3
    return check_force_constants(fc, n_atoms, label)


def _parse_text_fc(parser, path, label: str) -> np.ndarray:
    try:
        return np.asarray(parser(path), dtype=float)
    except Exception as error:
        raise DataError(label, f"not a readable FORCE_CONSTANTS file ({type(error).__name__}: {error})") from error


def write_force_constants_hdf5(fc: np.ndarray, path: str | Path) -> None:
    """Write full Φ as phonopy's ``force_constants.hdf5`` (eV/Å²), atomically."""
    from phonopy.file_IO import write_force_constants_to_hdf5

    from hdpbench.core.storage import atomic_path

    with atomic_path(path) as tmp:
        write_force_constants_to_hdf5(np.asarray(fc, dtype="double"), filename=str(tmp), physical_unit="eV/angstrom^2")
