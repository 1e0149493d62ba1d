"""Reader of the Kyoto phonon database's archives (A. Togo, phonondb 2018-04-17), read unchanged.

Each archive (``materials-id-<id>-<formula>-<space group>.tar.lzma``, an xz-compressed tar despite the
name) holds one folder ``mp-<id>-20180417/`` with

* ``POSCAR-unitcell`` — the relaxed unit cell (VASP PBEsol);
* ``phonopy.conf`` — ``DIM`` (3 or 9 integers: the supercell matrix) and ``PRIMITIVE_AXIS`` (9
  numbers or fractions such as ``1/2``: the primitive matrix; absent means the identity);
* ``FORCE_SETS`` — phonopy's type-I force sets (0.01 Å displacements, VASP forces);
* ``BORN`` where the material is polar enough for phonopy's non-analytical correction (the cubic
  ABX3); read as bytes and recorded, not applied: a model has no Born charges, so model and reference
  are compared on their short-range Φ alone.

Members are read in one streaming pass through :class:`hdpbench.io.archive.CompoundFiles` (the same
checks as the authors' archives: no links, no escaping names, size limits). Every error names the
archive and the member at fault (``ARCHIVE:FOLDER/MEMBER: problem``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from ase import Atoms

from hdpbench.core.errors import ArchiveError, DataError, MissingMemberError

PHONONDB_SUFFIXES = (".tar.lzma", ".tar.xz")
REQUIRED_MEMBERS = ("POSCAR-unitcell", "FORCE_SETS", "phonopy.conf")
OPTIONAL_MEMBERS = ("BORN",)
_ARCHIVE_NAME = re.compile(r"^materials-id-(?P<id>\d+)-(?P<formula>[a-z0-9]+)-(?P<group>.+?)(?:\.tar\.lzma|\.tar\.xz)$")


def is_phonondb_archive(path: str | Path) -> bool:
    """A file named like a phonondb archive (``*.tar.lzma``, or ``materials-id-*``/``mp-*`` ``.tar.xz``)."""
    name = Path(path).name
    if name.endswith(".tar.lzma"):
        return True
    return name.endswith(".tar.xz") and name.startswith(("materials-id-", "mp-"))


def archive_stem(path: str | Path) -> str:
    """The archive's name without its suffix."""
    name = Path(path).name
    for suffix in PHONONDB_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def name_parts(path: str | Path) -> tuple[str | None, str | None]:
    """(materials-project id, lower-case formula) from a phonondb archive name, (None, None) when the
    name is not of that pattern (the archive may still be read: its folder and cell say the rest)."""
    match = _ARCHIVE_NAME.match(Path(path).name)
    return (f"mp-{match['id']}", match["formula"]) if match else (None, None)


@dataclass
class PhonondbMaterial:
    """One archive's parsed content. ``unitcell`` as in POSCAR-unitcell; ``supercell_matrix`` (3, 3)
    int from DIM; ``primitive_matrix`` (3, 3) float from PRIMITIVE_AXIS (identity when absent);
    ``force_sets`` phonopy's type-I dataset (displacements in Å, forces (N, 3) eV/Å per displacement)."""

    archive: Path
    folder: str  # mp-<id>-20180417
    unitcell: Atoms
    supercell_matrix: np.ndarray
    primitive_matrix: np.ndarray
    force_sets: dict
    born: bytes | None = None
    members: list[str] = field(default_factory=list)

    @property
    def material_id(self) -> str:
        """'mp-13190' from the folder ``mp-13190-20180417`` (else the folder's name)."""
        match = re.match(r"^(mp-\d+)", self.folder)
        return match.group(1) if match else self.folder

    def location(self, member: str) -> str:
        return f"{self.archive}:{self.folder}/{member}"

    @property
    def n_supercell_atoms(self) -> int:
        return int(round(abs(np.linalg.det(self.supercell_matrix)))) * len(self.unitcell)


def _folder_of(names: list[str], archive: Path) -> str:
    folders = sorted({name.split("/", 1)[0] for name in names if "/" in name})
    if len(folders) != 1:
        raise ArchiveError(archive, f"expected one folder mp-<id>-<date>/ holding the material's files, found {folders or 'none'}")
    return folders[0]


def _numbers(text: str, location: str, key: str) -> list[Fraction]:
    try:
        return [Fraction(token) for token in text.split()]
    except (ValueError, ZeroDivisionError):
        raise DataError(location, f"{key} = {text.strip()!r}: expected numbers (fractions such as 1/2 allowed)") from None


def parse_phonopy_conf(text: str, location: str) -> tuple[np.ndarray, np.ndarray]:
    """(supercell matrix (3, 3) int from DIM, primitive matrix (3, 3) float from PRIMITIVE_AXIS, or the
    identity where the file has none). ``location`` names the file in errors."""
    settings: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            key, value = line.split("=", 1)
            settings[key.strip().upper()] = value.strip()
    if "DIM" not in settings:
        raise DataError(location, "no DIM line: the supercell of the force sets is unknown")
    dim = _numbers(settings["DIM"], location, "DIM")
    if len(dim) not in (3, 9) or any(value.denominator != 1 for value in dim):
        raise DataError(location, f"DIM = {settings['DIM']!r}: expected 3 or 9 integers")
    supercell = np.diag([int(v) for v in dim]) if len(dim) == 3 else np.array([int(v) for v in dim]).reshape(3, 3)
    if round(abs(np.linalg.det(supercell))) < 1:
        raise DataError(location, f"DIM = {settings['DIM']!r} is a singular supercell matrix")
    primitive = np.eye(3)
    axis = settings.get("PRIMITIVE_AXIS", settings.get("PRIMITIVE_AXES"))
    if axis is not None and axis.strip().upper() not in ("P", "AUTO"):
        values = _numbers(axis, location, "PRIMITIVE_AXIS")
        if len(values) != 9:
            raise DataError(location, f"PRIMITIVE_AXIS = {axis!r}: expected 9 numbers")
        primitive = np.array([float(v) for v in values]).reshape(3, 3)
        if abs(np.linalg.det(primitive)) < 1e-6:
            raise DataError(location, f"PRIMITIVE_AXIS = {axis!r} is singular")
    elif axis is not None and axis.strip().upper() == "AUTO":
        raise DataError(location, "PRIMITIVE_AXIS = AUTO: give the matrix (the phonondb archives do)")
    return supercell, primitive


def parse_force_sets(text: str, n_supercell_atoms: int, location: str) -> dict:
    """Phonopy's type-I dataset from FORCE_SETS text, its atom count checked against the supercell's
    before anything else is parsed."""
    from phonopy.file_IO import parse_FORCE_SETS_from_strings

    lines = [line for line in text.splitlines() if line.strip()]
    try:
        declared = int(lines[0].split()[0])
    except (IndexError, ValueError):
        raise DataError(location, "not a FORCE_SETS file: its first line is not the number of atoms") from None
    if declared != n_supercell_atoms:
        raise DataError(
            location, f"holds forces on {declared} atoms, but the supercell of POSCAR-unitcell and DIM has {n_supercell_atoms}"
        )
    try:
        dataset = parse_FORCE_SETS_from_strings(text, natom=n_supercell_atoms)
    except Exception as error:  # phonopy raises assorted errors on truncated files
        raise DataError(location, f"not a readable FORCE_SETS file ({type(error).__name__}: {error})") from error
    displacements = dataset.get("first_atoms", [])
    if not displacements:
        raise DataError(location, "holds no displacements")
    for k, displacement in enumerate(displacements):
        forces = np.asarray(displacement.get("forces", ()), dtype=float)
        if forces.shape != (n_supercell_atoms, 3) or not np.isfinite(forces).all():
            raise DataError(location, f"displacement {k + 1}: forces of shape {forces.shape} (expected ({n_supercell_atoms}, 3), finite)")
    return dataset


def read_phonondb_archive(path: str | Path) -> PhonondbMaterial:
    """Parse one phonondb archive (see the module docstring); errors name the archive and member."""
    from hdpbench.core.structures import read_poscar
    from hdpbench.io.archive import CompoundFiles

    archive = Path(path)
    files = CompoundFiles(archive)
    names = files.member_names()
    folder = _folder_of(names, archive)
    wanted = {f"{folder}/{member}" for member in (*REQUIRED_MEMBERS, *OPTIONAL_MEMBERS)}
    content = files.read_members(wanted)
    for member in REQUIRED_MEMBERS:
        if f"{folder}/{member}" not in content:
            raise MissingMemberError(f"{archive}:{folder}/{member}", "member missing from the archive")

    def text(member: str) -> str:
        try:
            return content[f"{folder}/{member}"].decode()
        except UnicodeDecodeError:
            raise DataError(f"{archive}:{folder}/{member}", "not a text file") from None

    location = f"{archive}:{folder}"
    supercell, primitive = parse_phonopy_conf(text("phonopy.conf"), f"{location}/phonopy.conf")
    unitcell = read_poscar(content[f"{folder}/POSCAR-unitcell"], name=f"{location}/POSCAR-unitcell")
    if len(unitcell) == 0:
        raise DataError(f"{location}/POSCAR-unitcell", "holds no atoms")
    n_supercell = int(round(abs(np.linalg.det(supercell)))) * len(unitcell)
    force_sets = parse_force_sets(text("FORCE_SETS"), n_supercell, f"{location}/FORCE_SETS")
    return PhonondbMaterial(
        archive=archive, folder=folder, unitcell=unitcell, supercell_matrix=supercell, primitive_matrix=primitive,
        force_sets=force_sets, born=content.get(f"{folder}/BORN"), members=[name.split("/", 1)[1] for name in names if "/" in name],
    )  # fmt: skip


def read_unitcell_only(path: str | Path) -> tuple[str, Atoms]:
    """(folder, unit cell) of an archive: what a listing needs (its species name the material)."""
    from hdpbench.core.structures import read_poscar
    from hdpbench.io.archive import CompoundFiles

    archive = Path(path)
    files = CompoundFiles(archive)
    names = files.member_names()
    folder = _folder_of(names, archive)
    member = f"{folder}/POSCAR-unitcell"
    content = files.read_members({member})
    if member not in content:
        raise MissingMemberError(f"{archive}:{member}", "member missing from the archive")
    return folder, read_poscar(content[member], name=f"{archive}:{member}")


def force_constants_of(material: PhonondbMaterial) -> np.ndarray:
    """Φ (N, N, 3, 3) eV/Å² on the DIM supercell, phonopy's solver on the force sets (no
    symmetrisation, as ``phonopy --fc``); the atom order of phonopy's supercell."""
    from hdpbench.core.structures import make_phonopy

    phonon = make_phonopy(material.unitcell, material.supercell_matrix, primitive_matrix=material.primitive_matrix)
    try:
        phonon.dataset = material.force_sets
        phonon.produce_force_constants()
    except Exception as error:
        raise DataError(material.location("FORCE_SETS"), f"phonopy cannot make force constants of it ({type(error).__name__}: {error})") from error
    return np.asarray(phonon.force_constants)


def formula_from_name(lower: str, unitcell: Atoms) -> str | None:
    """The archive name's lower-case formula ('krb2gaf6') written with the unit cell's element symbols
    ('KRb2GaF6'), or None when it does not spell the cell's composition. The species set removes the
    ambiguity of lower case ('cs' is Cs, not C and S, when the cell has no C)."""
    from ase.formula import Formula

    symbols = sorted(set(unitcell.get_chemical_symbols()), key=len, reverse=True)
    target = Formula(unitcell.get_chemical_formula()).reduce()[0].count()

    def spell(rest: str) -> list[str] | None:
        if not rest:
            return []
        for symbol in symbols:
            if rest.startswith(symbol.lower()):
                digits = re.match(r"\d*", rest[len(symbol) :]).group(0)
                tail = spell(rest[len(symbol) + len(digits) :])
                if tail is not None:
                    return [symbol + digits, *tail]
        return None

    parts = spell(lower)
    if parts is None:
        return None
    written = "".join(parts)
    try:
        return written if Formula(written).reduce()[0].count() == target else None
    except ValueError:
        return None
