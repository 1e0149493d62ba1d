"""Shared reading of registry entries (one YAML file per dataset or model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import DataError

Spec = TypeVar("Spec")


def spec_from_yaml(cls: type[Spec], file: Path) -> Spec:
    """Build dataclass ``cls`` from a YAML file; keys it does not declare go to its ``extra`` dict."""
    try:
        raw: dict[str, Any] = yaml.safe_load(Path(file).read_text()) or {}
    except yaml.YAMLError as error:
        raise DataError(file, f"not valid YAML ({error})") from error
    if "name" not in raw:
        raise DataError(file, "registry entry has no 'name'")
    known = {f for f in cls.__dataclass_fields__ if f != "extra"}
    return cls(**{k: v for k, v in raw.items() if k in known}, extra={k: v for k, v in raw.items() if k not in known})
