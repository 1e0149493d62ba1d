"""Make torch, e3nn and mace-torch importable together, once, before any of them is used, and make
their results independent of what the process computed before.

e3nn 0.4.4 (pinned by mace-torch) loads its constants with ``torch.load``; torch ≥ 2.6 loads with
``weights_only=True`` and refuses the pickled ``slice`` objects in that file. Registering ``slice``
as a safe global before e3nn is imported fixes it without weakening checkpoint loading in general.
Every hdpbench module that touches e3nn or mace imports it through :func:`import_mace`.

Two process-wide settings make results depend only on the inputs (tested in ``tests/test_faults.py``):

* TorchScript's *profiling* executor (e3nn scripts its tensor products) runs the first call of a
  module unoptimised and later calls optimised, with other rounding: the forces of the first call
  differ from later calls in the last bits (measured with ``demo-small-data``, float32, 80-atom
  cells: up to 1.2e-7 eV/Å), so a resumed MD run, whose first force call in the new process is a
  later step, diverged from an uninterrupted one. The legacy executor optimises at the first call, so
  every call gives the same bits (those of the profiling executor's later calls), at no measurable
  cost per force call on a CPU with the tuned allocator below (README, "Same bytes").
* The torch thread count changes the order of floating-point sums (measured: 1 vs 2 threads differ
  by up to 6e-8 eV/Å on 8 x 80 atoms). :func:`pin_threads` fixes it once per process (``HDPBENCH_THREADS``, default the
  cores this process may use) and every entry point (CLI, stages, runner workers) calls it.

One process-wide setting is for speed only (:func:`tune_allocator`): on a CPU, torch takes every
tensor from the C allocator, and glibc's defaults hand large blocks back to the kernel as soon as
they are freed, so the next force call faults every page of its edge tensors in again.
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
    if hasattr(torch._C, "_jit_set_profiling_executor"):  # same bits at every call (module docstring)
        torch._C._jit_set_profiling_executor(False)
    tune_allocator()
    return torch


# glibc mallopt parameters (malloc.h): keep freed memory in the process instead of returning it.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


@functools.cache
def tune_allocator() -> bool:
    """Keep freed heap memory for reuse (glibc only; ``HDPBENCH_MALLOC_TUNING=0`` turns it off).

    A MACE force call allocates and frees tens of (edges x features) tensors of a few MB each. With
    glibc's defaults those blocks go back to the kernel at every free (``munmap`` or heap trim) and
    come back as fresh zero pages, so much of a CPU force call is page faults: the zero fills of
    e3nn's backward pass ran at ~4 GB/s. Serving blocks up to 32 MB from the heap and never trimming
    it removes that cost (measured with ``hdpbench bench md``; README, Benchmarks). The arithmetic is
    unchanged: torch aligns every tensor to 64 bytes either way, so results are bit-identical.
    The price is that the process keeps its peak heap until it exits. Returns whether it applied.
    """
    import ctypes
    import os
    import sys

    if os.environ.get("HDPBENCH_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
        mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False
    settings = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, 64 << 20))
    return all(mallopt(parameter, value) == 1 for parameter, value in settings)


_pinned_threads: int | None = None


def default_threads() -> int:
    """``HDPBENCH_THREADS`` if set, else the CPU cores this process may run on."""
    import os

    value = os.environ.get("HDPBENCH_THREADS")
    if value:
        if not value.isdigit() or int(value) < 1:
            from hdpbench.core.errors import UsageError

            raise UsageError(f"HDPBENCH_THREADS={value!r}: expected a positive integer")
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pinned_threads() -> int | None:
    """The thread count :func:`pin_threads` fixed in this process, None before any computation."""
    return _pinned_threads


def pin_threads(threads: int | None = None) -> int:
    """Fix torch's intra-op thread count for this process and return it.

    ``threads`` given: set it (a runner worker taking its share of the cores). Not given: keep the
    count an earlier call fixed, else use :func:`default_threads`. Results are bit-identical between
    runs with the same count; the count used is recorded in every stage manifest.
    """
    global _pinned_threads
    torch = prepare_torch()
    if threads is not None:
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, not {threads!r}")
        _pinned_threads = threads
    elif _pinned_threads is None:
        _pinned_threads = default_threads()
    if torch.get_num_threads() != _pinned_threads:
        torch.set_num_threads(_pinned_threads)
    return _pinned_threads


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
