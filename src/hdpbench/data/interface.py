"""One interface for every reference source: :class:`ReferenceSource`.

A source is a folder of reference systems in one layout: the authors' archives (``authors``:
:class:`hdpbench.data.datasets.Dataset`), declared real DFT systems (``reference-systems``:
:class:`hdpbench.data.reference_systems.ReferenceSystems`) or Kyoto phonondb archives (``phonondb``:
:class:`hdpbench.data.phonondb.PhonondbSource`). The stages see only this interface:

* ``name``, ``spec`` (the registry entry), ``root`` (the folder);
* ``compounds()`` / ``systems()`` — the names, listed without parsing any physics;
* ``info(name)`` — a :class:`SystemInfo`: halide, the files the record is read from, what the system
  *has* (:class:`Capability`), and a listing problem (an unreadable archive) if any;
* ``load(name, *, discard, trajectories, frames)`` — the :class:`~hdpbench.core.compound.Compound`
  record every stage reads;
* ``input_digest(name)`` — sha256 over the bytes the record is read from, so results are keyed by
  their inputs, not by a folder's name (:func:`files_digest`, cached by path, size and mtime).

A stage declares the capabilities it needs (:data:`hdpbench.pipeline.stages.STAGES`); a system that
lacks one is recorded as *not applicable* with the reason (:func:`missing`), never failed.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from hdpbench.core import paths
from hdpbench.core.compound import Compound


class Capability(StrEnum):
    """What a reference system can give a stage."""

    FORCE_CONSTANTS = "force constants"  # Φ_ref (from force sets or stored)
    REFERENCE_FRAMES = "reference frames"  # structures with reference forces: AIMD frames or displaced sets
    AIMD_FRAMES = "AIMD frames"  # an MD trajectory (with its temperature): model MD starts from it, maps compare with it
    DISPLACED_SETS = "displaced supercells"  # randomly displaced supercells with forces (not MD)


@dataclass(frozen=True)
class SystemInfo:
    """A system as listed (nothing parsed beyond names and small headers)."""

    name: str
    halide: str | None
    files: tuple[Path, ...]  # what the record is read from
    capabilities: frozenset[Capability] = frozenset()
    temperature_K: float | None = None  # of the AIMD frames, where known
    problem: str | None = None  # why the system could not even be listed (its stages record this error)
    details: dict[str, Any] = field(default_factory=dict, compare=False)  # layout-specific listing fields

    def has(self, capability: Capability) -> bool:
        return capability in self.capabilities


@runtime_checkable
class ReferenceSource(Protocol):
    """What every dataset layout implements (see the module docstring)."""

    spec: Any
    root: Path

    @property
    def name(self) -> str: ...

    @property
    def layout(self) -> str: ...

    def compounds(self, halide: str | None = None) -> list[str]: ...

    def systems(self) -> list[str]: ...

    def info(self, name: str) -> SystemInfo: ...

    def load(self, name: str, **options) -> Compound: ...

    def input_digest(self, name: str) -> str: ...


def missing(info: SystemInfo, needs: Iterable[Capability]) -> str | None:
    """Why a stage needing ``needs`` is not applicable to this system (``"not applicable: no AIMD
    frames"``), or None when it is. A system whose listing failed is applicable: its stage then
    records the listing's error for it, instead of quietly leaving it out."""
    if info.problem:
        return None
    absent = [str(capability) for capability in needs if capability not in info.capabilities]
    return f"not applicable: no {' and no '.join(absent)}" if absent else None


# -- input digests ------------------------------------------------------------------------------
_DIGESTS: dict[str, tuple[list[int], str]] = {}
_DIGESTS_LOCK = threading.Lock()
_DIGEST_CACHE_LOADED = False
_UNSAVED = 0
_SAVE_EVERY = 64  # new digests between writes of the cache file (and once more at exit)


def _digest_cache_file() -> Path:
    return paths.cache_dir() / "input-digests.json"


def _load_digest_cache() -> None:
    global _DIGEST_CACHE_LOADED
    if _DIGEST_CACHE_LOADED:
        return
    _DIGEST_CACHE_LOADED = True
    try:
        stored = json.loads(_digest_cache_file().read_text())
    except (OSError, ValueError):
        return
    if isinstance(stored, dict):
        for path, record in stored.items():
            if isinstance(record, list) and len(record) == 2 and isinstance(record[1], str):
                _DIGESTS.setdefault(path, (record[0], record[1]))


def _save_digest_cache() -> None:
    global _UNSAVED
    from hdpbench.core.storage import try_write_cache

    if not _UNSAVED:
        return
    _UNSAVED = 0
    try_write_cache(_digest_cache_file(), {path: [stamp, digest] for path, (stamp, digest) in _DIGESTS.items()})


def file_digest(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, cached by (absolute path, size, mtime_ns) in this process and in
    ``<cache>/input-digests.json``: listing a dataset's digests reads each file once per change."""
    from hdpbench.core.storage import sha256_file

    file = Path(path).resolve()
    stat = file.stat()
    stamp = [stat.st_size, stat.st_mtime_ns]
    with _DIGESTS_LOCK:
        _load_digest_cache()
        known = _DIGESTS.get(str(file))
        if known is not None and list(known[0]) == stamp:
            return known[1]
    digest = sha256_file(file)
    global _UNSAVED
    with _DIGESTS_LOCK:
        _DIGESTS[str(file)] = (stamp, digest)
        _UNSAVED += 1
        if _UNSAVED >= _SAVE_EVERY:
            _save_digest_cache()
    return digest


atexit.register(_save_digest_cache)


def files_digest(files: Sequence[str | Path], extra: Any = None) -> str:
    """sha256 over the named files' bytes (a folder: every file below it, by relative name), in the
    given order, plus ``extra`` (JSON, e.g. a summary-database row the record also reads)."""
    digest = hashlib.sha256()
    for item in files:
        path = Path(item)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()):
                digest.update(file.relative_to(path).as_posix().encode() + b"\0" + file_digest(file).encode())
        else:
            digest.update(path.name.encode() + b"\0" + file_digest(path).encode())
    if extra is not None:
        digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def detect_layout(folder: str | Path) -> str | None:
    """The layout of a folder from its contents: ``phonondb`` (phonondb archives), ``authors``
    (``dpv_*`` archives or folders, at the top or in halide folders), or None."""
    from hdpbench.core.compound import HALIDE_FOLDERS
    from hdpbench.io.phonondb import is_phonondb_archive

    root = Path(folder)
    if not root.is_dir():
        return None
    try:
        items = list(os.scandir(root))
    except OSError:
        return None
    if any(entry.is_file() and is_phonondb_archive(entry.name) for entry in items):
        return "phonondb"
    candidates = [root] + [root / name for name in HALIDE_FOLDERS.values()]
    if any(c.is_dir() and any(p.name.startswith("dpv_") for p in c.iterdir()) for c in candidates):
        return "authors"
    return None
