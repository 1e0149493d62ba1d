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


def import_mace():
    """The ``mace`` package, imported after :func:`prepare_torch`."""
    prepare_torch()
    import mace

    return mace
