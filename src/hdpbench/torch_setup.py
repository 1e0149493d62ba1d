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
    import warnings

    import torch

    # mace-torch sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD for the process; torch then warns at every
    # load, including e3nn's own constants file. Checkpoints are verified by sha256 instead.
    warnings.filterwarnings("ignore", message="Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", category=UserWarning)
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

    mace-torch prints notices to stdout when its modules are imported; they go to stderr here so
    that ``--json`` output stays machine-readable, except the one that cuEquivariance (a CUDA
    accelerator) is missing, which says nothing on CPU and would clutter every book page.
    """
    import contextlib
    import importlib
    import io
    import sys

    prepare_torch()
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        for name in ("mace", "mace.modules", "mace.data", "mace.tools", "mace.calculators"):
            importlib.import_module(name)
    notices = [line for line in captured.getvalue().splitlines() if line.strip() and "cuequivariance" not in line.lower()]
    if notices:
        print("\n".join(notices), file=sys.stderr)
    return sys.modules["mace"]
