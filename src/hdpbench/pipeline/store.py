"""The results store: ``results/<dataset>/<model>/<stage>/<key>/<compound>.*`` plus a manifest per key.

``<key>`` is the stage key (a hash of model, checkpoint, dataset version, stage version and settings),
so results of other settings live beside each other: the bands' Φ at 0.01 Å and σ's at 0.02 Å, the
maps on the paper's frames and on the extended AIMD, a smoke run and a full one never overwrite one
another.

Expensive stages write here once; notebooks only read. Each compound's result is committed by a
small ``<compound>.done.json`` marker written *after* its data files, holding the stage key; a result
counts as done only when that marker exists and its key equals the current key. So

* rerunning skips compounds already done with the same model, checkpoint, dataset version and
  settings; changing any of them recomputes;
* a run killed at any moment leaves either a complete result or none (every file is written to a
  temporary name and renamed), and the next run completes only what is missing;
* a compound that fails (bad input) raises without touching any other compound's files.

Results are keyed by what they were computed from, not only by the dataset's name: a store opened
with ``input_digest`` (the source's :meth:`~hdpbench.data.interface.ReferenceSource.input_digest`,
sha256 over the bytes a compound's record is read from) writes that digest into each marker and
counts a compound done only when its marker carries the current digest. An archive corrected in
place is recomputed, and two folders of one name but other content never share a result.

A compound that lacks what the stage needs (no AIMD frames for the MD stage) is recorded as *not
applicable* (``<compound>.not_applicable.json``, with the reason), neither done nor failed.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hdpbench import __version__
from hdpbench.core import paths
from hdpbench.core.errors import CompoundFailures, StoreWriteError
from hdpbench.core.storage import (
    atomic_path,
    atomic_write_json,
    exclusive_locks,
    json_default,
    remove_orphaned_temporaries,
)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=json_default, separators=(",", ":"))


def _safe_component(name: str, what: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"invalid {what} name {name!r} for the results store")
    return name


@dataclass
class StageManifest:
    """What a stage's results were computed with. ``key`` covers everything that changes results."""

    dataset: str
    model: str
    stage: str
    settings: dict[str, Any] = field(default_factory=dict)
    model_sha256: str | None = None
    dataset_version: str | None = None
    stage_version: int = 1  # bump when a stage's code changes its results
    # How the model ran (device, backend, its own environment's resolved packages): recorded, not in
    # the key, like the thread count; a callable is asked when the manifest is written (an isolated
    # model's environment exists only once it has computed)
    execution: dict[str, Any] | Callable[[], dict[str, Any]] = field(default_factory=dict)

    def _identity(self) -> dict[str, Any]:
        """Everything that changes results (and nothing that does not, such as the time)."""
        return {
            "dataset": self.dataset,
            "dataset_version": self.dataset_version,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "stage": self.stage,
            "stage_version": self.stage_version,
            "settings": self.settings,
        }

    @property
    def key(self) -> str:
        return hashlib.sha256(_canonical(self._identity()).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        from hdpbench.core.torch_setup import pinned_threads

        return {
            **self._identity(),
            "key": self.key,
            "hdpbench_version": __version__,
            # Not in the key: results are bit-identical for the same count, equal within float
            # tolerance for another (README, "Same bytes, failures, limits").
            "torch_threads": pinned_threads(),
            **({"execution": execution} if (execution := self.execution() if callable(self.execution) else self.execution) else {}),
            "written_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }


class StageResults:
    """Results of one stage for one (dataset, model), one set of files per compound.

    ``input_digest(compound) -> str``: the digest of the compound's inputs (module docstring); None
    for results not read from a dataset (markers then carry no digest)."""

    def __init__(self, manifest: StageManifest, root: str | Path | None = None, *, input_digest: Callable[[str], str] | None = None):
        self.manifest = manifest
        self.input_digest = input_digest
        root = Path(root) if root is not None else paths.results_dir()
        self.directory = (
            root
            / _safe_component(manifest.dataset, "dataset")
            / _safe_component(manifest.model, "model")
            / _safe_component(manifest.stage, "stage")
            / manifest.key
        )

    @property
    def key(self) -> str:
        return self.manifest.key

    def _marker(self, compound: str) -> Path:
        return self.directory / f"{_safe_component(compound, 'compound')}.done.json"

    def path(self, compound: str, suffix: str) -> Path:
        """Where a data file of ``compound`` lives, e.g. suffix '.npz' or '.phonopy.yaml'."""
        return self.directory / f"{_safe_component(compound, 'compound')}{suffix}"

    def current_inputs(self, compound: str) -> str | None:
        """The digest of the compound's inputs now (None without ``input_digest``; "unreadable" when
        they cannot be read, so nothing stored for it counts as current)."""
        if self.input_digest is None:
            return None
        try:
            return self.input_digest(compound)
        except Exception:  # a missing or unreadable archive: its stage records the error when it runs
            return "unreadable"

    def _current_record(self, path: Path, compound: str) -> dict[str, Any] | None:
        """The marker at ``path`` if it holds this key and, with ``input_digest``, the current inputs."""
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if not isinstance(record, dict) or record.get("key") != self.key:
            return None
        if self.input_digest is not None and record.get("inputs") != self.current_inputs(compound):
            return None
        return record

    def is_done(self, compound: str) -> bool:
        record = self._current_record(self._marker(compound), compound)
        return record is not None and all(self.path(compound, s).is_file() for s in record.get("files", []))

    def pending(self, compounds: Iterable[str]) -> list[str]:
        return [c for c in compounds if not self.is_done(c)]

    def done(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        names = sorted(p.name[: -len(".done.json")] for p in self.directory.glob("*.done.json"))
        return [n for n in names if self.is_done(n)]

    def write_manifest(self) -> Path:
        path = self.directory / "manifest.json"
        atomic_write_json(path, self.manifest.to_dict())
        return path

    def read_manifest(self) -> dict[str, Any] | None:
        path = self.directory / "manifest.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def save(
        self,
        compound: str,
        *,
        json_data: dict[str, Any] | None = None,
        arrays: dict[str, np.ndarray] | None = None,
        files: dict[str, Callable[[Path], None]] | None = None,
        inputs: str | None = None,
    ) -> None:
        """Write a compound's results atomically, then its done-marker.

        ``inputs``: the input digest the results were computed from (read *before* computing, so an
        archive replaced during the computation is not credited); default the current one.

        ``json_data`` → ``<compound>.json``, with ``"settings_key": self.key`` added (the caller's
        dict is not changed), so a result file names the settings it was computed with even when
        copied out of its folder; ``arrays`` → ``<compound>.npz``; ``files`` maps a suffix to a
        writer called with a temporary path (e.g. a phonopy yaml or extxyz writer).
        """
        written = []
        if json_data is not None:
            atomic_write_json(self.path(compound, ".json"), {**json_data, "settings_key": self.key})
            written.append(".json")
        if arrays is not None:
            with atomic_path(self.path(compound, ".npz")) as tmp:
                with open(tmp, "wb") as handle:
                    np.savez_compressed(handle, **arrays)
            written.append(".npz")
        for suffix, writer in (files or {}).items():
            with atomic_path(self.path(compound, suffix)) as tmp:
                writer(tmp)
            written.append(suffix)
        current = self.read_manifest()
        if current is None or current.get("key") != self.key:
            self.write_manifest()
        marker = {"key": self.key, "files": written}
        if self.input_digest is not None:
            marker["inputs"] = inputs if inputs is not None else self.current_inputs(compound)
        atomic_write_json(self._marker(compound), marker)

    def load_json(self, compound: str) -> dict[str, Any]:
        self._require(compound)
        return json.loads(self.path(compound, ".json").read_text())

    def load_arrays(self, compound: str) -> dict[str, np.ndarray]:
        self._require(compound)
        with np.load(self.path(compound, ".npz")) as data:
            return {k: data[k] for k in data.files}

    def _require(self, compound: str) -> None:
        if not self.is_done(compound):
            raise FileNotFoundError(
                f"{self.directory}: no result for {compound} with key {self.key} "
                "(not computed yet, computed with other settings, or interrupted)"
            )

    def locked(self, compounds: Iterable[str]):
        """A context holding this stage key's lock of each compound (``<stage>/.locks/<key>/<compound>.lock``,
        beside the key folders, so a key folder holds results only): two
        runs on one results folder compute a compound one after the other, the second finding it done
        (the MD stage holds its batch's locks for the whole run). Re-entrant within a process."""
        names = [_safe_component(c, "compound") for c in compounds]
        what = f"another run of {self.manifest.stage} [{self.manifest.model}] on {', '.join(names)}"
        return exclusive_locks([self.directory.parent / ".locks" / self.key / f"{name}.lock" for name in names], what=what)

    # -- failures ----------------------------------------------------------------------------
    def _failure_marker(self, compound: str) -> Path:
        return self.directory / f"{_safe_component(compound, 'compound')}.failed.json"

    def record_failure(self, compound: str, error: BaseException) -> dict[str, Any]:
        """Write ``<compound>.failed.json`` (stage key, error type and message, the file at fault)."""
        record = {
            "key": self.key,
            **({"inputs": self.current_inputs(compound)} if self.input_digest is not None else {}),
            "compound": compound,
            "error_type": type(error).__name__,
            "error": str(error).splitlines()[0] if str(error) else type(error).__name__,
            "file": getattr(error, "path", None),
            "traceback": "".join(traceback.format_exception(error, limit=-8)),
            "written_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        atomic_write_json(self._failure_marker(compound), record)
        return record

    def failures(self, compounds: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """{compound: failure record} of compounds that failed with the current key and are not done."""
        if compounds is None:
            if not self.directory.is_dir():
                return {}
            compounds = sorted(p.name[: -len(".failed.json")] for p in self.directory.glob("*.failed.json"))
        found = {}
        for compound in compounds:
            if not self._failure_marker(compound).is_file() or self.is_done(compound):
                continue
            record = self._current_record(self._failure_marker(compound), compound)
            if record is not None:
                found[compound] = record
        return found

    # -- not applicable ----------------------------------------------------------------------
    def _not_applicable_marker(self, compound: str) -> Path:
        return self.directory / f"{_safe_component(compound, 'compound')}.not_applicable.json"

    def record_not_applicable(self, compounds: dict[str, str]) -> None:
        """Write ``<compound>.not_applicable.json`` (key, inputs, reason) for each {compound: reason}
        not recorded yet with this key, these inputs and this reason."""
        for compound, reason in compounds.items():
            current = self._current_record(self._not_applicable_marker(compound), compound)
            if current is not None and current.get("reason") == reason:
                continue
            record = {"key": self.key, "compound": compound, "reason": reason}
            if self.input_digest is not None:
                record["inputs"] = self.current_inputs(compound)
            atomic_write_json(self._not_applicable_marker(compound), record)

    def not_applicable(self, compounds: Iterable[str] | None = None) -> dict[str, str]:
        """{compound: reason} of compounds recorded as not applicable with the current key and inputs."""
        if compounds is None:
            if not self.directory.is_dir():
                return {}
            compounds = sorted(p.name[: -len(".not_applicable.json")] for p in self.directory.glob("*.not_applicable.json"))
        found = {}
        for compound in compounds:
            record = self._current_record(self._not_applicable_marker(compound), compound)
            if record is not None:
                found[compound] = str(record.get("reason", "not applicable"))
        return found

    def run(
        self,
        compounds: Iterable[str],
        compute: Callable[[str], dict[str, Any]],
        *,
        progress: bool = True,
        errors: str = "raise",
    ) -> dict[str, str]:
        """Compute and save every pending compound; ``compute(name)`` returns ``save``'s keyword arguments.

        Returns {compound: 'done' | 'skipped' | 'failed'}. A compound whose computation raises is
        recorded (``<compound>.failed.json``: error and file) and the others still run; a rerun retries
        only what is not done. Then, with ``errors="raise"``, :class:`~hdpbench.core.errors.CompoundFailures`
        lists the failures; with ``errors="record"`` they are only recorded (the runner reports them).
        A results file that cannot be written (full disk) stops the run: every other compound would
        fail the same way.
        """
        from tqdm.auto import tqdm

        if errors not in ("raise", "record"):
            raise ValueError(f"errors={errors!r}: expected 'raise' or 'record'")
        compounds = list(compounds)
        if self.directory.is_dir():
            remove_orphaned_temporaries(self.directory)
        todo = set(self.pending(compounds))
        status = {c: "skipped" for c in compounds if c not in todo}
        failed: dict[str, dict[str, Any]] = {}
        first_error: Exception | None = None
        for compound in tqdm(
            [c for c in compounds if c in todo],
            desc=f"{self.manifest.stage} [{self.manifest.model}]",
            unit="compound",
            disable=not progress,
        ):
            with self.locked([compound]):  # another run may be computing it: wait, then skip it if done
                if self.is_done(compound):
                    status[compound] = "skipped"
                    continue
                inputs = self.current_inputs(compound)  # before computing: a file replaced meanwhile is not credited
                try:
                    self.save(compound, **compute(compound), inputs=inputs)
                except StoreWriteError:
                    raise
                except Exception as error:  # one bad compound must not stop the others
                    failed[compound] = self.record_failure(compound, error)
                    first_error = first_error or error
                    status[compound] = "failed"
                    continue
                self._failure_marker(compound).unlink(missing_ok=True)
                status[compound] = "done"
        if failed and errors == "raise":
            raise CompoundFailures(self.manifest.stage, self.directory, failed) from first_error
        return status
