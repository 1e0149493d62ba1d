"""Shared reading of registry entries (one YAML file per dataset or model)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TypeVar

import yaml

from hdpbench.core.errors import DataError

Spec = TypeVar("Spec")


def spec_from_yaml(cls: type[Spec], file: Path, *, strict: bool = False, free_sections: set[str] = frozenset()) -> Spec:
    """Build dataclass ``cls`` from a YAML file; keys it does not declare go to its ``extra`` dict.

    ``strict``: a key that is neither a field nor one of ``free_sections`` is an error naming the
    file and the key (with the closest known key, so ``sha265`` says "did you mean 'sha256'?").
    """
    try:
        raw = yaml.safe_load(Path(file).read_text()) or {}
    except yaml.YAMLError as error:
        raise DataError(file, f"not valid YAML ({error})") from error
    if not isinstance(raw, dict):
        raise DataError(file, f"registry entry must be a mapping of keys to values, not {type(raw).__name__}")
    if "name" not in raw:
        raise DataError(file, "registry entry has no 'name'")
    known = {f for f in cls.__dataclass_fields__ if f not in ("extra", "source_file")}
    if strict:
        for key in raw:
            if key not in known and key not in free_sections:
                close = difflib.get_close_matches(str(key), sorted(known | free_sections), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise DataError(file, f"unknown key {key!r}{hint} (known keys: {', '.join(sorted(known | free_sections))})")
    return cls(**{k: v for k, v in raw.items() if k in known}, extra={k: v for k, v in raw.items() if k not in known})


def read_registry(folders: list[Path], read) -> dict:
    """``{name: read(file)}`` over the ``*.yaml`` files of ``folders``; a folder earlier in the list
    overrides a later one (a user's registry folder over the shipped one); two entries of one name in
    one folder are an error naming both files (one would shadow the other silently)."""
    specs = {}
    for folder in reversed(folders):
        seen: dict[str, Path] = {}
        for file in sorted(folder.glob("*.yaml")):
            spec = read(file)
            if spec.name in seen:
                raise DataError(file, f"name {spec.name!r} is also the name of {seen[spec.name]}; names must be unique in a registry folder")
            seen[spec.name] = file
            specs[spec.name] = spec
    return specs
