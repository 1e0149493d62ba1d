"""Make torch, e3nn and mace-torch importable together, once, before any of them is used.

e3nn 0.4.4 (pinned by mace-torch) loads its constants with ``torch.load``; torch ≥ 2.6 loads with
``weights_only=True`` and refuses the pickled ``slice`` objects in that file. Registering ``slice``
as a safe global before e3nn is imported fixes it without weakening checkpoint loading in general.
Every hdpbench module that touches e3nn or mace imports it through :func:`import_mace`.
"""

from __future__ import annotations

import functools


@functools.cache
def prepare_torch():
    """Import torch with the safe globals e3nn needs registered (idempotent); returns torch."""
    import torch

    if hasattr(torch.serialization, "add_safe_globals"):
        torch.serialization.add_safe_globals([slice])
    return torch


def import_e3nn():
    prepare_torch()
    import e3nn

    return e3nn


@functools.cache
def import_mace():
    """The ``mace`` package, imported after :func:`prepare_torch`.

    mace-torch prints notices (e.g. about cuEquivariance) to stdout when its modules are imported;
    they go to stderr here so that ``--json`` output stays machine-readable.
    """
    import contextlib
    import importlib
    import sys

    prepare_torch()
    with contextlib.redirect_stdout(sys.stderr):
        for name in ("mace", "mace.modules", "mace.data", "mace.tools", "mace.calculators"):
            importlib.import_module(name)
    return sys.modules["mace"]
