"""Named datasets: where their files come from (DOI, URL, checksum) and where they live locally.

One YAML per dataset, read from every folder of :func:`hdpbench.core.paths.dataset_registry_dirs`
(``HDPBENCH_DATASETS``, the project's ``datasets/``, the registry shipped in the package; an earlier
folder's entry overrides a later one of the same name). A dataset
is looked for in its local mirror (``$HDPBENCH_DATA_DIR/<name>`` or the YAML's ``path``) before any
download; a download goes through pooch with the registered sha256 and is unpacked with tarfile's
``data`` filter. A folder path works wherever a dataset name does, for users' own data in the
authors' or the phonondb layout (recognised from the folder's contents).

Every layout implements :class:`hdpbench.data.interface.ReferenceSource`: :class:`Dataset` (the
authors' archives), :class:`~hdpbench.data.reference_systems.ReferenceSystems` and
:class:`~hdpbench.data.phonondb.PhonondbSource`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdpbench.core import paths
from hdpbench.core.compound import HALIDE_FOLDERS, Compound, halide_of
from hdpbench.core.errors import (
    ArchiveError,
    DataError,
    DatasetUnavailableError,
    UnknownDatasetError,
)
from hdpbench.core.specs import spec_from_yaml
from hdpbench.data.interface import Capability, SystemInfo, detect_layout, files_digest
from hdpbench.io.archive import ARCHIVE_SUFFIXES, CompoundFiles, extract_archive, formula_of
from hdpbench.io.authors import (
    DEFAULT_DISCARD,
    SUMMARY_DB,
    FrameSet,
    MemberInventory,
    frame_set,
    load_compound,
    read_summary_db,
)

_FOLDER_HALIDE = {folder: halide for halide, folder in HALIDE_FOLDERS.items()}


@dataclass
class DatasetSpec:
    """One entry of the dataset registry."""

    name: str
    title: str = ""
    description: str = ""
    layout: str = "authors"
    version: str = "1"
    doi: str | None = None
    citation: str | None = None
    license: str | None = None
    url: str | None = None  # one archive with the whole layout (a pooch-style download)
    sha256: str | None = None
    path: str | None = None  # local folder, relative to the project root unless absolute
    download_instructions: str = ""
    demo: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: Path) -> DatasetSpec:
        spec = spec_from_yaml(cls, path)
        spec.extra["_file"] = str(path)
        env_prefix = f"HDPBENCH_{spec.name.upper().replace('-', '_')}"
        spec.url = os.environ.get(f"{env_prefix}_URL", spec.url)
        spec.sha256 = os.environ.get(f"{env_prefix}_SHA256", spec.sha256)
        return spec

    @property
    def local_dir(self) -> Path:
        if self.path:
            candidate = Path(self.path).expanduser()
            return candidate if candidate.is_absolute() else paths.project_root() / candidate
        return paths.data_dir() / self.name


def registered_datasets() -> dict[str, DatasetSpec]:
    """Every registered dataset by name; a folder earlier in the search path overrides a later one."""
    from hdpbench.core.specs import read_registry

    return dict(sorted(read_registry(paths.dataset_registry_dirs(), DatasetSpec.from_yaml).items()))


@dataclass
class CompoundEntry:
    """A compound found in a dataset, described from its member names (nothing parsed yet)."""

    formula: str
    halide: str
    path: Path
    inventory: MemberInventory
    summary: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None  # why its archive could not be listed (corrupt, unsafe member)

    def has(self) -> dict[str, Any]:
        return {
            "problem": self.problem,
            "unitcell": self.inventory.unitcell,
            "reference_supercell": self.inventory.supercell,
            "force_constants": "force_constants.hdf5"
            if self.inventory.force_constants_hdf5
            else "FORCE_SETS"
            if self.inventory.force_sets
            else None,
            "production_md_files": len(self.inventory.production_files),
            "training_pool": self.inventory.training_pool,
            "provenance": self.inventory.provenance,
            "sigma_reference": self.summary.get("sigma_reference"),
        }

    def production_files(self, frames: str | FrameSet = FrameSet.ALL) -> list[str]:
        """The production MD members a stage reading ``frames`` would read, in order."""
        return frame_set(frames).select(self.inventory.production_files)


AUTHORS_AIMD_TEMPERATURE_K = 300.0  # the authors' NVT AIMD (and the demo's MD)


class Dataset:
    """A folder of compounds in the authors' layout, with an optional summary database; implements
    :class:`~hdpbench.data.interface.ReferenceSource`."""

    layout = "authors"

    def __init__(self, spec: DatasetSpec, root: Path):
        self.spec = spec
        self.root = Path(root)
        self._summary: dict[str, dict[str, Any]] | None = None
        self._entries: dict[str, CompoundEntry] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, root={str(self.root)!r})"

    def _compound_paths(self) -> Iterator[tuple[Path, str | None]]:
        """(archive or folder, halide from its folder) for every ``dpv_*`` below the root."""
        seen: set[str] = set()
        folders = [(self.root / folder, halide) for folder, halide in _FOLDER_HALIDE.items()] + [(self.root, None)]
        for folder, halide in folders:
            if not folder.is_dir():
                continue
            for item in sorted(folder.iterdir()):
                if not item.name.startswith("dpv_"):
                    continue
                is_archive = item.is_file() and item.name.endswith(ARCHIVE_SUFFIXES)
                if not (is_archive or item.is_dir()):
                    continue
                formula = formula_of(item)
                if formula in seen:  # an extracted folder beside its archive: use the first found
                    continue
                seen.add(formula)
                yield item, halide

    def summary(self) -> dict[str, dict[str, Any]]:
        if self._summary is None:
            db = self.root / SUMMARY_DB
            self._summary = read_summary_db(db) if db.is_file() else {}
        return self._summary

    def entries(self) -> dict[str, CompoundEntry]:
        """All compounds, keyed by formula (member lists cached by file size and mtime)."""
        if self._entries is None:
            cache = _InventoryCache(self.name)
            entries = {}
            for path, folder_halide in self._compound_paths():
                formula = formula_of(path)
                problem = None
                try:
                    names = cache.member_names(path)
                except ArchiveError as error:  # one bad archive must not hide the other compounds
                    names, problem = [], str(error)
                entries[formula] = CompoundEntry(
                    formula=formula,
                    halide=folder_halide or halide_of(formula),
                    path=path,
                    inventory=MemberInventory.from_names(names),
                    summary=self.summary().get(formula, {}),
                    problem=problem,
                )
            cache.save()
            self._entries = entries
        return self._entries

    def compounds(self, halide: str | None = None) -> list[str]:
        return [f for f, e in self.entries().items() if halide is None or e.halide == halide]

    def systems(self) -> list[str]:
        return self.compounds()

    def info(self, formula: str) -> SystemInfo:
        """What the compound has, from its archive's member names: Φ_ref (force_constants.hdf5 or
        FORCE_SETS), AIMD frames (production MD files, 300 K)."""
        entry = self._entry(formula)
        capabilities = set()
        if entry.inventory.force_constants_hdf5 or entry.inventory.force_sets:
            capabilities.add(Capability.FORCE_CONSTANTS)
        if entry.inventory.production_files:
            capabilities |= {Capability.AIMD_FRAMES, Capability.REFERENCE_FRAMES}
        return SystemInfo(
            name=formula, halide=entry.halide, files=(entry.path,), capabilities=frozenset(capabilities),
            temperature_K=AUTHORS_AIMD_TEMPERATURE_K if entry.inventory.production_files else None, problem=entry.problem,
        )  # fmt: skip

    def input_digest(self, formula: str) -> str:
        """sha256 over the compound's archive (or folder) bytes and its row of the summary database."""
        entry = self._entry(formula)
        return files_digest([entry.path], extra=entry.summary or None)

    def load(
        self, formula: str, *, discard: int = DEFAULT_DISCARD, trajectories: bool = True, frames: str | FrameSet = FrameSet.ALL
    ) -> Compound:
        """The full :class:`Compound` record of one compound; ``frames`` picks its production files
        (:class:`~hdpbench.io.authors.FrameSet`: ``paper``, ``all`` or ``md-start``)."""
        entries = self.entries()
        if formula not in entries:
            raise DataError(self.root, f"no compound {formula!r} in dataset {self.name!r}")
        entry = entries[formula]
        compound = load_compound(
            entry.path, discard=discard, trajectories=trajectories, frames=frames, summary=entry.summary, halide=entry.halide
        )
        compound.provenance.update({"dataset": self.name, "dataset_version": self.spec.version})
        return compound

    def _entry(self, formula: str) -> CompoundEntry:
        if formula not in self.entries():
            raise DataError(self.root, f"no compound {formula!r} in dataset {self.name!r}")
        return self.entries()[formula]

    def generation_record(self, formula: str) -> dict[str, Any]:
        """How a compound's reference data were made (the demo's ``provenance.json``; {} for the authors' data)."""
        from hdpbench.io.authors import read_provenance

        return read_provenance(self._entry(formula).path)

    def training_structures(self, formula: str) -> list:
        """The compound's training pool (demo data only): rattled supercells, then displaced supercells."""
        from hdpbench.io.authors import read_training_structures

        return read_training_structures(self._entry(formula).path)

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries())

    def __len__(self) -> int:
        return len(self.entries())


class _InventoryCache:
    """Member names of each archive, so listing ~2000 compressed archives is not a full re-read."""

    def __init__(self, dataset: str):
        self.file = paths.cache_dir() / "inventories" / f"{dataset}.json"
        try:
            self.data = json.loads(self.file.read_text())
        except (OSError, json.JSONDecodeError):
            self.data = {}
        self.changed = False

    def member_names(self, path: Path) -> list[str]:
        if path.is_dir():
            return CompoundFiles(path).member_names()
        stat = path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns]
        record = self.data.get(str(path))
        if record and record["stamp"] == stamp:
            return record["names"]
        names = CompoundFiles(path).member_names()
        self.data[str(path)] = {"stamp": stamp, "names": names}
        self.changed = True
        return names

    def save(self) -> None:
        if self.changed:
            from hdpbench.core.storage import try_write_cache

            try_write_cache(self.file, self.data)


def _has_compounds(root: Path) -> bool:
    return detect_layout(root) == "authors"


def unavailable_message(spec: DatasetSpec, reason: str = "") -> str:
    lines = [f"Dataset {spec.name!r} ({spec.title or spec.description}) is not on this machine."]
    if reason:
        lines.append(f"Download failed: {reason}")
    if spec.doi:
        lines.append(f"Source: doi:{spec.doi}" + (f" ({spec.citation})" if spec.citation else ""))
    if spec.download_instructions:
        lines.append(spec.download_instructions.strip())
    where = (
        f"Put the files at {spec.local_dir} (halide folders fluorides/ chlorides/ bromides/ iodides/ "
        f"holding dpv_<formula>.tar.gz or dpv_<formula>/, and {SUMMARY_DB} beside them)"
    )
    if not spec.path:
        where += f", or point HDPBENCH_DATA_DIR at a folder that has a '{spec.name}/' subfolder"
    lines.append(where + ".")
    if not spec.url and not spec.demo:
        env = f"HDPBENCH_{spec.name.upper().replace('-', '_')}_URL"
        lines.append(f"No download URL is registered; set {env} (and its _SHA256) to fetch an archive of that layout.")
    return "\n".join(lines)


def fetch(spec: DatasetSpec, *, download: bool = True) -> Path:
    """Local folder of a dataset: the mirror if populated, else a checksummed download, else an error."""
    root = spec.local_dir
    if _has_compounds(root):
        return root
    if not (download and spec.url):
        raise DatasetUnavailableError(unavailable_message(spec))
    import pooch

    downloads = paths.data_dir() / ".downloads"
    try:
        archive = pooch.retrieve(
            spec.url, known_hash=f"sha256:{spec.sha256}" if spec.sha256 else None, path=downloads, progressbar=True
        )
    except Exception as error:  # network errors, checksum mismatch
        raise DatasetUnavailableError(unavailable_message(spec, f"{type(error).__name__}: {error}")) from error
    extract_archive(archive, root)
    if not _has_compounds(root):
        raise DatasetUnavailableError(unavailable_message(spec, f"{archive} did not contain dpv_* compounds"))
    return root


REFERENCE_SYSTEMS_LAYOUT = "reference-systems"
PHONONDB_LAYOUT = "phonondb"
LAYOUTS = ("authors", REFERENCE_SYSTEMS_LAYOUT, PHONONDB_LAYOUT)


def open_source(spec: DatasetSpec, root: Path):
    """The :class:`~hdpbench.data.interface.ReferenceSource` of ``spec.layout`` on ``root``."""
    if spec.layout == REFERENCE_SYSTEMS_LAYOUT:
        from hdpbench.data.reference_systems import ReferenceSystems

        return ReferenceSystems(spec, root)
    if spec.layout == PHONONDB_LAYOUT:
        from hdpbench.data.phonondb import PhonondbSource

        return PhonondbSource(spec, root)
    if spec.layout == "authors":
        return Dataset(spec, root)
    source = spec.extra.get("_file", f"dataset {spec.name!r}")
    raise DataError(source, f"layout {spec.layout!r} is not one of {', '.join(LAYOUTS)}")


def get_dataset(name_or_path: str | Path, *, download: bool = True):
    """A registered dataset by name, or a folder by path, as its layout's
    :class:`~hdpbench.data.interface.ReferenceSource`.

    ``layout: reference-systems`` (real DFT references declared in the YAML) gives
    :class:`~hdpbench.data.reference_systems.ReferenceSystems`, ``layout: phonondb``
    :class:`~hdpbench.data.phonondb.PhonondbSource`, the authors' layout :class:`Dataset`. A folder's
    layout is recognised from its contents (phonondb archives, or ``dpv_*`` compounds).
    """
    specs = registered_datasets()
    key = str(name_or_path)
    if key in specs:
        spec = specs[key]
        if spec.layout == "authors":
            return Dataset(spec, fetch(spec, download=download))
        if not spec.local_dir.is_dir():
            raise DatasetUnavailableError(f"dataset {spec.name!r}: folder {spec.local_dir} is missing")
        return open_source(spec, spec.local_dir)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        layout = detect_layout(path) or "authors"  # an empty folder lists no compounds, as before
        spec = DatasetSpec(name=path.resolve().name, title=f"user data in {path}", path=str(path.resolve()), layout=layout)
        return open_source(spec, path)
    raise UnknownDatasetError(
        f"no dataset {key!r}: registered datasets are {sorted(specs)} (in {', '.join(map(str, paths.dataset_registry_dirs()))}); "
        "a folder in the authors' or the phonondb layout can also be given by path"
    )


def dataset_status(spec: DatasetSpec) -> dict[str, Any]:
    root = spec.local_dir
    if spec.layout == REFERENCE_SYSTEMS_LAYOUT:
        available = root.is_dir() and any(root.glob("*/provenance.json"))
    elif spec.layout == PHONONDB_LAYOUT:
        available = detect_layout(root) == PHONONDB_LAYOUT
    else:
        available = _has_compounds(root)
    return {
        "name": spec.name,
        "title": spec.title,
        "demo": spec.demo,
        "layout": spec.layout,
        "available": available,
        "local_dir": str(root),
        "doi": spec.doi,
        "url": spec.url,
    }


def compound_from_files(
    unitcell: str | Path,
    force_constants: str | Path | None = None,
    trajectories: list[str | Path] = (),
    *,
    supercell_matrix=(2, 2, 2),
    reference_supercell: str | Path | None = None,
    discard: int = 0,
    formula: str | None = None,
) -> Compound:
    """A :class:`Compound` from a user's own files (any supported formats), checked like the authors' data.

    ``unitcell`` is any ASE-readable structure (POSCAR, cif, extxyz...). The reference supercell is
    built with phonopy's atom order unless given (e.g. an SPOSCAR matching the trajectories' order).
    """
    import ase.io
    import numpy as np

    from hdpbench.core.structures import make_supercell, supercell_matrix_between
    from hdpbench.io.force_constants import read_force_constants
    from hdpbench.io.trajectories import read_trajectory

    try:
        cell = ase.io.read(unitcell)
    except Exception as error:
        raise DataError(unitcell, f"cannot read the unit cell ({type(error).__name__}: {error})") from error
    matrix = np.asarray(supercell_matrix, dtype=int)
    matrix = np.diag(matrix) if matrix.shape == (3,) else matrix
    if reference_supercell is not None:
        supercell = ase.io.read(reference_supercell)
        matrix = supercell_matrix_between(cell, supercell, name=str(reference_supercell))
    else:
        supercell = make_supercell(cell, matrix)
    fc = None
    if force_constants is not None:
        fc = read_force_constants(force_constants, unitcell=cell, supercell_matrix=matrix, n_atoms=len(supercell))
    name = formula or cell.get_chemical_formula(mode="metal")
    return Compound(
        formula=name,
        halide=halide_of(cell.get_chemical_symbols()),
        unitcell=cell,
        supercell_matrix=matrix,
        reference_supercell=supercell,
        force_constants=fc,
        trajectories=[read_trajectory(path, discard=discard) for path in trajectories],
        provenance={
            "source": str(unitcell),
            "layout": "user files",
            "force_constants_from": None if force_constants is None else str(force_constants),
            "trajectory_files": [str(p) for p in trajectories],
            "discarded_frames_per_file": discard,
        },
    )
