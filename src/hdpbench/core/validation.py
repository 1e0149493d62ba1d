"""Checks of user-given values, each naming the setting, the value and what was expected.

Settings dataclasses call these in ``__post_init__``, so a bad value is refused where it is made
(command line, notebook parameter, config), before any work.
"""

from __future__ import annotations

import numbers

from hdpbench.core.errors import UsageError


def require_positive_int(name: str, value, *, allow_zero: bool = False) -> int:
    """``value`` as an int ≥ 1 (≥ 0 with ``allow_zero``); a ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageError(f"{name}={value!r}: expected an integer")
    lowest = 0 if allow_zero else 1
    if value < lowest:
        raise UsageError(f"{name}={value!r}: expected an integer ≥ {lowest}")
    return int(value)


def require_positive(name: str, value) -> float:
    """``value`` as a finite float > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UsageError(f"{name}={value!r}: expected a number")
    if not (value > 0 and value != float("inf")):
        raise UsageError(f"{name}={value!r}: expected a finite number > 0")
    return float(value)


def require_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise UsageError(f"{name}={value!r}: expected one of {', '.join(map(repr, choices))}")


def require_probability(name: str, value) -> float:
    """``value`` as a float in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise UsageError(f"{name}={value!r}: expected a probability between 0 and 1")
    return float(value)


DTYPES = ("float32", "float64")


def require_dtype(name: str, value) -> str:
    """A floating-point type the models compute in."""
    require_choice(name, value, DTYPES)
    return value
