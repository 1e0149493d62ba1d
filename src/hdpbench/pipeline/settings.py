"""The settings of a run: one record per concept (owned by its physics module), gathered in
:class:`RunSettings` so a stage and the stages it reads always agree.

Every way of giving a value (``--set GROUP.FIELD=VALUE``, a ``--config run.yaml`` file, a notebook
parameter) goes through :meth:`RunSettings.with_values`, which checks each value against the
field's declared type before any work and names the key, the value and the expected type.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hdpbench.core.errors import UsageError
from hdpbench.physics.anharmonicity import SigmaSettings
from hdpbench.physics.kpca import KPCASettings
from hdpbench.physics.md import MDSettings
from hdpbench.physics.phonons import PhononSettings

GROUPS: dict[str, type] = {"phonons": PhononSettings, "sigma": SigmaSettings, "md": MDSettings, "kpca": KPCASettings}


@dataclass(frozen=True)
class RunSettings:
    """The settings of every stage in one record (defaults: the authors' settings, see each class)."""

    phonons: PhononSettings = PhononSettings()
    sigma: SigmaSettings = SigmaSettings()
    md: MDSettings = MDSettings()
    kpca: KPCASettings = KPCASettings()

    @classmethod
    def smoke(cls) -> RunSettings:
        """Tiny settings for a smoke test: every code path runs, the numbers mean nothing."""
        return cls(
            phonons=PhononSettings(points_per_segment=5),
            sigma=SigmaSettings(max_frames=8),
            md=MDSettings(steps=5, runs_per_compound=1),
            kpca=KPCASettings(max_frames_per_set=5),
        )

    def group(self, name: str):
        return getattr(self, name)

    def replace(self, **groups) -> RunSettings:
        return dataclasses.replace(self, **groups)

    def with_dtype(self, dtype: str) -> RunSettings:
        return self.with_values({name: {"dtype": dtype} for name in GROUPS}, source="--dtype")

    def with_values(self, values: Mapping[str, Any], *, source: str = "settings") -> RunSettings:
        """These settings with ``{GROUP: {FIELD: VALUE}}`` applied, every value type-checked first."""
        if not isinstance(values, Mapping):
            raise UsageError(f"{source}: expected a mapping GROUP: {{FIELD: VALUE}}, got {type(values).__name__}")
        groups = {}
        for group, fields in values.items():
            if group not in GROUPS:
                raise UsageError(f"{source}: unknown settings group {group!r}; expected one of {', '.join(GROUPS)}")
            if not isinstance(fields, Mapping):
                raise UsageError(f"{source}: {group}: expected a mapping FIELD: VALUE, got {fields!r}")
            hints = field_types(group)
            current = dataclasses.asdict(self.group(group))
            for name, value in fields.items():
                if name not in hints:
                    raise UsageError(f"{source}: unknown setting {group}.{name}; {group} has {', '.join(hints)}")
                current[name] = check_type(f"{group}.{name}", value, hints[name], source)
            groups[group] = GROUPS[group](**current)  # range checks in __post_init__ name the setting
        return self.replace(**groups)

    def with_overrides(self, overrides: Sequence[str], *, source: str = "--set") -> RunSettings:
        """Apply ``GROUP.FIELD=VALUE`` strings (values read as JSON, else as text): ``md.steps=500``."""
        values: dict[str, dict[str, Any]] = {}
        for text in overrides:
            target, sep, raw = text.partition("=")
            group, dot, name = target.strip().partition(".")
            if not sep or not dot:
                raise UsageError(f"{source} {text!r}: expected GROUP.FIELD=VALUE, e.g. md.steps=500; keys: {', '.join(setting_keys())}")
            values.setdefault(group, {})[name] = parse_text(raw)
        return self.with_values(values, source=source)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(self.group(name)) for name in GROUPS}


def field_types(group: str) -> dict[str, Any]:
    return typing.get_type_hints(GROUPS[group])


def setting_keys() -> list[str]:
    """Every ``GROUP.FIELD`` the command line and config files accept."""
    return [f"{group}.{name}" for group in GROUPS for name in field_types(group)]


def parse_text(raw: str) -> Any:
    """A command-line value: JSON where it parses (``500``, ``true``, ``[2, 2, 2]``, ``null``), else the text."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def describe_type(kind) -> str:
    if kind is bool:
        return "true or false"
    if kind is int:
        return "an integer"
    if kind is float:
        return "a number"
    if kind is str:
        return "text"
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is tuple:
        return f"a list of {len(args)} integers, e.g. [2, 2, 2]"
    if type(None) in args:
        others = [a for a in args if a is not type(None)]
        return " or ".join(describe_type(a) for a in others) + " or null"
    return str(kind)


def check_type(key: str, value: Any, kind, source: str) -> Any:
    """``value`` as a ``kind``; a :class:`UsageError` naming source, key, value and expected type otherwise."""

    def refuse():
        return UsageError(f"{source}: {key}={value!r}: expected {describe_type(kind)}")

    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if type(None) in args:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        others = [a for a in args if a is not type(None)]
        try:
            return check_type(key, value, others[0], source) if len(others) == 1 else value
        except UsageError:
            raise refuse() from None
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise refuse()
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise refuse()
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # NaN from `.nan` in YAML or `NaN` on the command line
                raise UsageError(f"{source}: {key}={value!r}: expected a finite number")
            return float(value)
        raise refuse()
    if kind is str:
        if isinstance(value, str):
            return value
        raise refuse()
    if origin is tuple:
        if isinstance(value, (list, tuple)) and len(value) == len(args) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
        raise refuse()
    return value
