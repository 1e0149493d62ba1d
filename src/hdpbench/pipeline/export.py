"""One tidy table of a stage's results: a row per compound, for a spreadsheet, R or pandas.

The results store keeps a stage's results as ``<root>/<dataset>/<model>/<stage>/<key>/<compound>.json``
(plus arrays and other files, which are not exported). :func:`export_rows` reads every key folder of
a stage (or one, ``key=``) and returns one row per compound that is **done** (its ``.done.json``
marker holds the folder's key and its files are there), **failed** (a ``.failed.json`` record with
the folder's key and no result) or **not applicable** (``.not_applicable.json``: the system lacks what
the stage needs, e.g. AIMD frames; ``error`` says what). Compounds in progress, interrupted or computed
with other settings are not rows. Where the dataset can be opened here, a row whose input digest (in
its marker) is not the digest of the dataset's current files has status **stale**: its inputs changed
since (a rerun recomputes it).

Columns, in this order:

* ``dataset, model, stage, settings_key, compound`` — where the row comes from; ``settings_key`` is
  the key folder (it equals the ``settings_key`` field every result JSON carries);
* ``status`` (``done``, ``failed``, ``not applicable`` or ``stale``), ``error_type``, ``error``,
  ``error_file`` (None for done rows), ``input_digest`` (sha256 of the inputs the row was computed from);
* the fields of the compound's JSON, flattened by the rule below (:func:`flatten`), in the order first met.

Every row has every column (None where a row has no such field), so the rows form a rectangle.

Flattening rule (:func:`flatten`):

* a scalar (number, string, bool, None) is a column of the field's name;
* a dict is flattened with a dot: ``{"thermal_model": {"entropy": x}}`` → ``thermal_model.entropy``,
  recursively;
* a list of at most :data:`MAX_LIST_ITEMS` scalars becomes one column per item, ``name[0]``,
  ``name[1]``, …; longer lists, lists holding lists or dicts, and empty lists or dicts give no column
  (per-frame or per-q-point data belongs to the ``.npz`` files, not to a table);
* a field named like one of the leading columns above keeps that name only where it holds the same
  value (``compound``); otherwise it becomes ``result.<name>``.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from hdpbench.core import paths
from hdpbench.core.errors import DataError, UsageError

MAX_LIST_ITEMS = 8
"""Lists of at most this many scalars are exported item by item (``name[i]``); longer ones are dropped."""

IDENTITY_COLUMNS = ("dataset", "model", "stage", "settings_key", "compound")
STATUS_COLUMNS = ("status", "error_type", "error", "error_file", "input_digest")

_SCALARS = (str, int, float, bool, type(None))


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A result JSON's fields as flat columns (the module's flattening rule)."""
    flat: dict[str, Any] = {}
    for name, value in data.items():
        column = f"{prefix}{name}"
        if isinstance(value, _SCALARS):
            flat[column] = value
        elif isinstance(value, dict):
            flat.update(flatten(value, prefix=f"{column}."))
        elif isinstance(value, list) and len(value) <= MAX_LIST_ITEMS and all(isinstance(v, _SCALARS) for v in value):
            flat.update({f"{column}[{i}]": v for i, v in enumerate(value)})
    return flat


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _done(folder: Path, compound: str) -> bool:
    """The store's rule (:meth:`StageResults.is_done`) for a folder: the marker holds its key, its files are there."""
    marker = _read_json(folder / f"{compound}.done.json")
    return (
        marker is not None
        and marker.get("key") == folder.name
        and all((folder / f"{compound}{suffix}").is_file() for suffix in marker.get("files", []))
    )


def _subfolders(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def _locate(root: Path, dataset: str, model: str, stage: str) -> Path:
    """The stage folder; a UsageError naming the folder looked in and what exists there otherwise."""
    for what, name in (("dataset", dataset), ("model", model), ("stage", stage)):
        if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise UsageError(f"invalid {what} name {name!r}")
    if not root.is_dir():
        raise UsageError(f"no results store at {root} (nothing computed yet; --results or HDPBENCH_RESULTS selects another)")
    folder = root
    for what, name in (("dataset", dataset), ("model", model), ("stage", stage)):
        present = _subfolders(folder)
        if name not in present:
            listing = ", ".join(present) if present else "none"
            raise UsageError(
                f"no results for {what} {name!r} in {folder}{_did_you_mean(name, present)}; "
                f"{what}s there: {listing}"
            )
        folder = folder / name
    return folder


def _settings_summary(manifest: dict[str, Any] | None, limit: int = 160) -> str:
    if manifest is None:
        return "no manifest.json"
    text = json.dumps(manifest.get("settings", {}), sort_keys=True, separators=(", ", "="))
    text = text.replace('"', "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def key_summaries(stage_folder: Path) -> dict[str, str]:
    """{key: its manifest's settings, compact} for every key folder of a stage folder."""
    return {key: _settings_summary(_read_json(stage_folder / key / "manifest.json")) for key in _subfolders(stage_folder)}


def _select_keys(stage_folder: Path, key: str | None) -> list[str]:
    keys = _subfolders(stage_folder)
    if not keys:
        loose = any(stage_folder.glob("*.done.json"))
        raise UsageError(
            f"{stage_folder}: no key folders, nothing computed with any settings"
            + (" (results lying directly in this folder are of an older layout without keys and are not exported)" if loose else "")
        )
    if key is None:
        return keys
    chosen = [k for k in keys if k == key] or ([k for k in keys if k.startswith(key)] if key else [])
    if len(chosen) == 1:
        return chosen
    summaries = key_summaries(stage_folder)
    listing = "\n".join(f"  {k}  {summaries[k]}" for k in (chosen or keys))
    problem = f"settings key {key!r} is ambiguous" if chosen else f"no settings key {key!r}"
    raise UsageError(f"{problem} in {stage_folder}; the keys there (with their settings):\n{listing}")


def _merge(row: dict[str, Any], fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        if name in row:
            if row[name] == value:
                continue
            name = f"result.{name}"
        row[name] = value


def _open_source(dataset: str):
    """The dataset's source where it can be opened here (registered and on disk, or a folder), else
    None: rows are then exported without the staleness check."""
    from hdpbench.data.datasets import get_dataset

    try:
        return get_dataset(dataset, download=False)
    except Exception:
        return None


def export_rows(
    dataset: str,
    model: str,
    stage: str,
    *,
    results_root: str | Path | None = None,
    key: str | None = None,
) -> list[dict[str, Any]]:
    """One row per done or failed compound of a stage, for every key folder or the one ``key`` names.

    ``key`` may be a unique prefix of a key folder's name. A missing folder, an unknown or ambiguous
    key raise :class:`~hdpbench.core.errors.UsageError` naming what is there. A result JSON whose
    ``settings_key`` differs from its folder's key raises :class:`~hdpbench.core.errors.DataError`.
    Columns and the flattening rule: see the module's docstring.
    """
    root = Path(results_root) if results_root is not None else paths.results_dir()
    source = _open_source(dataset)
    if source is not None:
        dataset = source.name  # a folder given by path: its results live under its name
    stage_folder = _locate(root, dataset, model, stage)
    current: dict[str, str | None] = {}

    def status_of(compound: str, record: dict[str, Any] | None, status: str) -> str:
        """``status``, or "stale" where the record's inputs are not the dataset's current ones."""
        if source is None or record is None or "inputs" not in record:
            return status
        if compound not in current:
            try:
                current[compound] = source.input_digest(compound)
            except Exception:  # no longer in the dataset, or unreadable
                current[compound] = None
        return status if record["inputs"] == current[compound] else "stale"

    rows: list[dict[str, Any]] = []
    for folder_key in _select_keys(stage_folder, key):
        folder = stage_folder / folder_key
        done = sorted(p.name[: -len(".done.json")] for p in folder.glob("*.done.json"))
        done = [c for c in done if _done(folder, c)]
        failed = sorted(p.name[: -len(".failed.json")] for p in folder.glob("*.failed.json"))
        skipped = sorted(p.name[: -len(".not_applicable.json")] for p in folder.glob("*.not_applicable.json"))
        for compound in sorted({*done, *failed, *skipped}):
            row: dict[str, Any] = {
                "dataset": dataset, "model": model, "stage": stage, "settings_key": folder_key, "compound": compound,
            }
            if compound in done:
                marker = _read_json(folder / f"{compound}.done.json")
                row.update(status=status_of(compound, marker, "done"), error_type=None, error=None, error_file=None,
                           input_digest=marker.get("inputs"))  # fmt: skip
                path = folder / f"{compound}.json"
                if path.is_file():
                    try:
                        data = json.loads(path.read_text())
                    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                        raise DataError(path, f"unreadable result ({error}); delete it and {compound}.done.json, then rerun the stage to compute it again") from None
                    if data.get("settings_key", folder_key) != folder_key:
                        raise DataError(path, f"settings_key {data['settings_key']!r} differs from its folder's key {folder_key!r}")
                    _merge(row, flatten(data))
            elif compound in failed and (record := _read_json(folder / f"{compound}.failed.json")) and record.get("key") == folder_key:
                row.update(status=status_of(compound, record, "failed"), error_type=record.get("error_type"), error=record.get("error"),
                           error_file=record.get("file"), input_digest=record.get("inputs"))  # fmt: skip
            elif (record := _read_json(folder / f"{compound}.not_applicable.json")) and record.get("key") == folder_key:
                row.update(status=status_of(compound, record, "not applicable"), error_type=None, error=record.get("reason"),
                           error_file=None, input_digest=record.get("inputs"))  # fmt: skip
            else:
                continue  # a failure of other settings, or unreadable: not a result of this key
            rows.append(row)
    columns = list(dict.fromkeys(name for row in rows for name in row))
    return [{name: row.get(name) for name in columns} for row in rows]
