"""The authors' raw data layout (Yang, Fan & Li, Chem. Mater. 2022), read into :class:`Compound` records.

Per compound (archive ``dpv_<formula>.tar.gz`` or folder ``dpv_<formula>/``)::

    CONTCAR                      relaxed 10-atom primitive cell = phonon unit cell
    SPOSCAR                      2x2x2 supercell of CONTCAR (80 atoms): reference positions for u
    force_constants.hdf5         full Φ (80, 80, 3, 3), eV/Å²  (FORCE_SETS is the fallback)
    MD/vasprun_prod.xml          300 K production MD, then vasprun_prod_1.xml, _2.xml, ...

and a summary database ``double_halide_pv.db`` (ASE db, ``uid = dpv_<formula>``) beside the halide
folders. Equilibration (``MD/*_equ*``), SOC runs and ``phonon.tar.gz`` are not used.

The project's demo dataset adds two members the authors' archives lack: ``provenance.json`` (method,
settings, seeds, versions) and ``training/rattled.extxyz`` (rattled supercells with reference forces,
for training the demo models only).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from hdpbench.core.compound import Compound, Trajectory, halide_of
from hdpbench.core.errors import DataError, EmptyTrajectoryError, MissingMemberError
from hdpbench.core.structures import read_poscar, supercell_matrix_between
from hdpbench.io.archive import CompoundFiles, formula_of
from hdpbench.io.force_constants import read_force_constants
from hdpbench.io.vasprun import read_vasprun

UNITCELL_MEMBER = "CONTCAR"
SUPERCELL_MEMBER = "SPOSCAR"
FC_MEMBER = "force_constants.hdf5"
FORCE_SETS_MEMBER = "FORCE_SETS"
PRODUCTION_MD = re.compile(r"^MD/vasprun_prod(?:_(\d+))?\.xml$")
SUMMARY_DB = "double_halide_pv.db"
PROVENANCE_MEMBER = "provenance.json"
TRAINING_POOL_MEMBER = "training/rattled.extxyz"
DEFAULT_DISCARD = 100  # equilibration frames dropped from the start of every production file
SIGMA_MISSING_AT = 2.0  # the authors treat σ_DFT ≥ 2 as missing


def production_file_number(name: str) -> int | None:
    """0 for MD/vasprun_prod.xml, k for MD/vasprun_prod_k.xml, None for anything else."""
    match = PRODUCTION_MD.match(name)
    if not match:
        return None
    return int(match.group(1) or 0)


class FrameSet(StrEnum):
    """Which production files a stage reads, as the authors' scripts read them (public repository
    yangjackie/futuremat, perovskite_screenings/halide_double_perovskites/; read for facts only).

    * ``paper`` — ``vasprun_prod_1.xml`` then ``vasprun_prod_2.xml`` (``mace/anharmonic_score_benchmarking.py``:
      σ_DFT and σ_MACE of Fig. 3, S7–S9, and the AIMD frames of the KPCA maps). ``vasprun_prod.xml`` is
      not part of it.
    * ``all`` — every ``vasprun_prod*.xml`` in file order: what ``collect_data.py`` reads for the
      database's ``sigma_300K_single``, and the extended AIMD (files ``_3`` … ``_5``) of Fig. S11.
    * ``md-start`` — the one file model-only MD starts from: ``vasprun_prod_2.xml``, else ``_1``
      (``mace/mace_benchmarking.py``; a random step 0–700 of that file).
    """

    PAPER = "paper"
    ALL = "all"
    MD_START = "md-start"

    def select(self, production_files: Sequence[str]) -> list[str]:
        """The members of this set among ``production_files`` (member names), in reading order."""
        by_number = {production_file_number(name): name for name in production_files}
        if self is FrameSet.ALL:
            return [by_number[k] for k in sorted(by_number)]
        if self is FrameSet.PAPER:
            return [by_number[k] for k in PAPER_SIGMA_FILES if k in by_number]
        first = next((k for k in MD_START_FILES if k in by_number), None)
        return [] if first is None else [by_number[first]]

    def describe(self) -> str:
        return FRAME_SET_DESCRIPTIONS[self]


PAPER_SIGMA_FILES = (1, 2)  # vasprun_prod_1.xml, vasprun_prod_2.xml
MD_START_FILES = (2, 1)  # vasprun_prod_2.xml, else vasprun_prod_1.xml
FRAME_SET_DESCRIPTIONS = {
    FrameSet.PAPER: "MD/vasprun_prod_1.xml and MD/vasprun_prod_2.xml",
    FrameSet.ALL: "every MD/vasprun_prod*.xml",
    FrameSet.MD_START: "MD/vasprun_prod_2.xml, else MD/vasprun_prod_1.xml",
}


def frame_set(value: str | FrameSet) -> FrameSet:
    """``value`` as a :class:`FrameSet`; a clear error naming the choices otherwise."""
    try:
        return FrameSet(value)
    except ValueError:
        from hdpbench.core.errors import UsageError

        raise UsageError(f"frame set {value!r} is not one of {[s.value for s in FrameSet]}") from None


@dataclass
class MemberInventory:
    """What one compound's archive or folder contains, from its member names alone."""

    unitcell: bool
    supercell: bool
    force_constants_hdf5: bool
    force_sets: bool
    production_files: list[str] = field(default_factory=list)
    training_pool: bool = False
    provenance: bool = False

    @classmethod
    def from_names(cls, names: list[str]) -> MemberInventory:
        production = sorted((n for n in names if production_file_number(n) is not None), key=production_file_number)
        return cls(
            unitcell=UNITCELL_MEMBER in names,
            supercell=SUPERCELL_MEMBER in names,
            force_constants_hdf5=FC_MEMBER in names,
            force_sets=FORCE_SETS_MEMBER in names,
            production_files=production,
            training_pool=TRAINING_POOL_MEMBER in names,
            provenance=PROVENANCE_MEMBER in names,
        )

    @property
    def has_force_constants(self) -> bool:
        return self.force_constants_hdf5 or self.force_sets


def load_compound(
    path: str | Path,
    *,
    discard: int = DEFAULT_DISCARD,
    trajectories: bool = True,
    frames: str | FrameSet = FrameSet.ALL,
    summary: dict[str, Any] | None = None,
    halide: str | None = None,
) -> Compound:
    """Read one compound in the authors' layout, in a single pass over its archive.

    ``frames`` picks the production files (:class:`FrameSet`); ``discard`` frames are dropped from the
    start of each. With ``trajectories=False`` the MD files are skipped (fast: phonon stages need only
    cells and Φ).

    An archive's parsed contents are cached under its sha256, its path and these options
    (:func:`hdpbench.core.storage.content_cache_file`): every stage of every page loads its compounds
    again, and decompressing and parsing a demo archive takes 0.09 s without its MD files and 0.17–0.25 s
    with them; a changed archive is parsed again. Folders are parsed every time.
    """
    from hdpbench.core.validation import require_positive_int

    require_positive_int("discard", discard, allow_zero=True)
    frames = frame_set(frames)
    cached = _parsed_compound_file(path, discard=discard, trajectories=trajectories, frames=frames)
    parts = _load_parsed_compound(cached) if cached is not None else None
    if parts is None:
        parts = _parse_compound(path, discard=discard, trajectories=trajectories, frames=frames)
        if cached is not None:
            _store_parsed_compound(cached, parts)
    else:
        for location, message in parts["provenance"]["truncated_production_files"].items():
            warnings.warn(f"{location}: {message}", stacklevel=2)  # what parsing the file warned
    return Compound(
        formula=formula_of(path),
        halide=halide or halide_of(parts["unitcell"].get_chemical_symbols()),
        summary=dict(summary or {}),
        **parts,
    )


def _parse_compound(path: str | Path, *, discard: int, trajectories: bool, frames: FrameSet) -> dict[str, Any]:
    """The archive's (or folder's) parts of a :class:`Compound`: cells, Φ, trajectories, provenance."""
    files = CompoundFiles(path)
    wanted_static = {UNITCELL_MEMBER, SUPERCELL_MEMBER, FC_MEMBER, FORCE_SETS_MEMBER}
    # Decided from the name alone, in one pass; md-start parses both candidates and keeps one below.
    numbers = {FrameSet.PAPER: set(PAPER_SIGMA_FILES), FrameSet.MD_START: set(MD_START_FILES)}.get(frames)
    static: dict[str, bytes] = {}
    parsed: dict[int, Trajectory] = {}
    skipped: dict[str, str] = {}
    truncated: dict[str, str] = {}

    def wanted(name: str) -> bool:
        number = production_file_number(name)
        if number is None:
            return name in wanted_static
        return trajectories and (numbers is None or number in numbers)

    for name, stream in files.iter_members(wanted):
        number = production_file_number(name)
        if number is None:
            static[name] = stream.read()
        else:
            report: dict[str, str] = {}
            try:
                parsed[number] = read_vasprun(stream, discard=discard, name=files.location(name), report=report)
            except EmptyTrajectoryError as error:  # a run shorter than its equilibration: no frames to use
                skipped[files.location(name)] = error.problem
            if "truncated" in report:
                truncated[files.location(name)] = report["truncated"]

    for required in (UNITCELL_MEMBER, SUPERCELL_MEMBER):
        if required not in static:
            raise MissingMemberError(files.location(required), f"missing member {required} of {files.name}")
    unitcell = read_poscar(static[UNITCELL_MEMBER], name=files.location(UNITCELL_MEMBER))
    supercell = read_poscar(static[SUPERCELL_MEMBER], name=files.location(SUPERCELL_MEMBER))
    matrix = supercell_matrix_between(unitcell, supercell, name=files.location(SUPERCELL_MEMBER))

    if FC_MEMBER in static:
        fc_member = FC_MEMBER
    elif FORCE_SETS_MEMBER in static:
        fc_member = FORCE_SETS_MEMBER
    else:
        raise MissingMemberError(
            files.location(FC_MEMBER), f"missing member {FC_MEMBER} of {files.name} (and no {FORCE_SETS_MEMBER} to fall back on)"
        )
    force_constants = read_force_constants(
        static[fc_member],
        name=files.location(fc_member),
        unitcell=unitcell,
        supercell_matrix=matrix,
        n_atoms=len(supercell),
    )

    if frames is FrameSet.MD_START:
        first = next((k for k in MD_START_FILES if k in parsed), None)
        parsed = {} if first is None else {first: parsed[first]}
    order = PAPER_SIGMA_FILES if frames is FrameSet.PAPER else sorted(parsed)
    trajectory_list = [parsed[k] for k in order if k in parsed]
    return {
        "unitcell": unitcell,
        "supercell_matrix": matrix,
        "reference_supercell": supercell,
        "force_constants": force_constants,
        "trajectories": trajectory_list,
        "provenance": {
            "source": str(files.path),
            "layout": "authors",
            "force_constants_from": fc_member,
            "frame_set": frames.value,
            "production_files": [t.source_files[0] for t in trajectory_list],
            "discarded_frames_per_file": discard,
            "skipped_production_files": skipped,
            "truncated_production_files": truncated,
        },
    }


_TRAJECTORY_ARRAYS = ("numbers", "positions", "cells", "forces", "energies", "frame_source", "frame_index")


def _parsed_compound_file(path: str | Path, *, discard: int, trajectories: bool, frames: FrameSet) -> Path | None:
    """Where an archive's parsed parts are cached; None for a folder or an unreadable archive."""
    import ase
    import phonopy

    from hdpbench.core.storage import content_cache_file

    path = Path(path)
    if not path.is_file():
        return None
    options = f"{path.resolve()}|discard {discard}|trajectories {trajectories}|frames {frames.value}"
    versions = f"ase {ase.__version__}|phonopy {phonopy.__version__}"  # our readers' code: in every key
    return content_cache_file(path, "compounds", f"{options}|{versions}")


def _plain_atoms(atoms: Atoms) -> bool:
    """Atoms that numbers, positions, cell and pbc rebuild exactly (no constraints, masses, info...)."""
    return set(atoms.arrays) == {"numbers", "positions"} and not atoms.constraints and not atoms.info


def _store_parsed_compound(cached: Path, parts: dict[str, Any]) -> None:
    import json

    from hdpbench.core.storage import try_write_cache_arrays

    if not (_plain_atoms(parts["unitcell"]) and _plain_atoms(parts["reference_supercell"])):
        return  # rebuilt from arrays they would lose something: parsed every time instead
    arrays: dict[str, Any] = {"supercell_matrix": parts["supercell_matrix"], "provenance": np.array(json.dumps(parts["provenance"]))}
    if parts["force_constants"] is not None:
        arrays["force_constants"] = parts["force_constants"]
    for key in ("unitcell", "reference_supercell"):
        atoms = parts[key]
        arrays |= {f"{key}_numbers": atoms.numbers, f"{key}_positions": atoms.positions, f"{key}_cell": atoms.cell.array, f"{key}_pbc": atoms.pbc}
    arrays["n_trajectories"] = np.array(len(parts["trajectories"]))
    for k, trajectory in enumerate(parts["trajectories"]):
        arrays |= {f"trajectory{k}_{name}": value for name in _TRAJECTORY_ARRAYS if (value := getattr(trajectory, name)) is not None}
        arrays |= {f"trajectory{k}_pbc": np.array(trajectory.pbc), f"trajectory{k}_source_files": np.array(trajectory.source_files, dtype=str)}
    try_write_cache_arrays(cached, arrays)


def _load_parsed_compound(cached: Path) -> dict[str, Any] | None:
    """What :func:`_store_parsed_compound` wrote, or None when absent or unreadable."""
    import json

    from hdpbench.core.storage import try_read_cache_arrays

    def from_cache(stored) -> dict[str, Any]:
        def atoms(key: str) -> Atoms:
            return Atoms(numbers=stored[f"{key}_numbers"], positions=stored[f"{key}_positions"], cell=stored[f"{key}_cell"], pbc=stored[f"{key}_pbc"])

        def trajectory(k: int) -> Trajectory:
            present = {name: stored[f"trajectory{k}_{name}"] for name in _TRAJECTORY_ARRAYS if f"trajectory{k}_{name}" in stored.files}
            return Trajectory(
                **present, source_files=[str(f) for f in stored[f"trajectory{k}_source_files"]],
                pbc=tuple(bool(p) for p in stored[f"trajectory{k}_pbc"]),
            )  # fmt: skip

        return {
            "unitcell": atoms("unitcell"),
            "supercell_matrix": stored["supercell_matrix"],
            "reference_supercell": atoms("reference_supercell"),
            "force_constants": stored["force_constants"] if "force_constants" in stored.files else None,
            "trajectories": [trajectory(k) for k in range(int(stored["n_trajectories"]))],
            "provenance": json.loads(str(stored["provenance"])),
        }

    return try_read_cache_arrays(cached, from_cache)


def read_summary_db(path: str | Path) -> dict[str, dict[str, Any]]:
    """Per-compound summary values from ``double_halide_pv.db``, keyed by formula.

    Canonical keys: ``sigma_reference`` (σ_DFT at 300 K; None where the authors' value is ≥ 2,
    which they treat as missing), ``formation_energy`` (eV/atom) and ``min_phonon_freq_thz``
    ({'G','L','W','X'} → THz). The database's own key-value pairs are kept under ``raw``.
    """
    import ase.db

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "summary database not found")
    try:
        rows = list(ase.db.connect(str(path), type="db").select())
    except Exception as error:
        raise DataError(path, f"not a readable ASE database ({type(error).__name__}: {error})") from error
    summaries: dict[str, dict[str, Any]] = {}
    for row in rows:
        uid = row.get("uid")
        if not isinstance(uid, str) or not uid.startswith("dpv_"):
            continue  # element reference rows (uid = element_<X>)
        values = dict(row.key_value_pairs)
        sigma = values.get("sigma_300K_single")
        if sigma is not None and (not np.isfinite(sigma) or sigma >= SIGMA_MISSING_AT):
            sigma = None
        summaries[uid[4:]] = {
            "sigma_reference": sigma,
            "formation_energy": values.get("formation_energy"),
            "min_phonon_freq_thz": {
                point: values[f"{point}_min_ph_freq"] for point in "GLWX" if f"{point}_min_ph_freq" in values
            },
            "raw": values,
        }
    return summaries


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The ``provenance.json`` of a compound (demo data); an empty dict where there is none."""
    import json

    files = CompoundFiles(path)
    members = files.read_members({PROVENANCE_MEMBER})
    if PROVENANCE_MEMBER not in members:
        return {}
    try:
        return json.loads(members[PROVENANCE_MEMBER])
    except json.JSONDecodeError as error:
        raise DataError(files.location(PROVENANCE_MEMBER), f"not valid JSON: {error}") from error


def read_training_structures(path: str | Path) -> list:
    """Training structures of a compound with reference forces (demo data): the rattled pool, then
    each phonopy displaced supercell (from FORCE_SETS, forces only, no energy).

    ``atoms.info["config_type"]`` is ``"rattled"`` or ``"displaced"``; reference values are stored as
    ``REF_energy`` / ``REF_forces`` (mace-torch's recommended keys).
    """
    import io

    import ase.io
    from phonopy.file_IO import parse_FORCE_SETS

    files = CompoundFiles(path)
    members = files.read_members({TRAINING_POOL_MEMBER, FORCE_SETS_MEMBER, SUPERCELL_MEMBER})
    if TRAINING_POOL_MEMBER not in members:
        raise MissingMemberError(files.location(TRAINING_POOL_MEMBER), f"{files.name} has no training pool (not a demo compound?)")
    structures = []
    for atoms in ase.io.read(io.StringIO(members[TRAINING_POOL_MEMBER].decode()), index=":", format="extxyz"):
        forces, energy = atoms.get_forces(), atoms.get_potential_energy()
        atoms.calc = None
        atoms.arrays["REF_forces"] = forces
        atoms.info.update({"REF_energy": energy, "config_type": "rattled"})
        structures.append(atoms)
    if FORCE_SETS_MEMBER in members and SUPERCELL_MEMBER in members:
        supercell = read_poscar(members[SUPERCELL_MEMBER], name=files.location(SUPERCELL_MEMBER))
        import tempfile

        with tempfile.NamedTemporaryFile("wb", suffix=".FORCE_SETS") as handle:
            handle.write(members[FORCE_SETS_MEMBER])
            handle.flush()
            dataset = parse_FORCE_SETS(filename=handle.name, natom=len(supercell))
        for displacement in dataset["first_atoms"]:
            atoms = supercell.copy()
            atoms.positions[displacement["number"]] += displacement["displacement"]
            atoms.arrays["REF_forces"] = np.asarray(displacement["forces"], dtype=float)
            atoms.info["config_type"] = "displaced"
            structures.append(atoms)
    return structures
