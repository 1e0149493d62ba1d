"""``kind: isolated``: an ASE calculator in its own Python environment, behind a worker process.

The registry entry names the environment (:mod:`hdpbench.models.environments`) and how to build the
calculator inside it::

    kind: isolated
    isolated:
      environment: {python_version: "3.11", dependencies: [torch==2.13.0, sevenn==0.13.0, ...]}
      calculator: sevenn.calculator:SevenNetCalculator   # module:callable, imported in the worker
      calculator_kwargs: {modal: PBE}
      weights: {package: sevenn, file: pretrained_potentials/.../checkpoint.pth}  # inside that environment
      weights_kwarg: model
      device_kwarg: device
      timeout_s: 600        # one request (a batch); a hung worker is killed and the call fails
      batch_size: 16        # structures per request

One long-lived worker per loaded model (:mod:`hdpbench.models.isolated_worker`) evaluates a whole
batch per request over its standard input and output. A worker that dies mid-batch (killed, out of
memory) is started again once and the batch retried: the calculator is deterministic, so the
numbers are the same (tested with ``kill -9``); a second death is an error naming the model, the
exit status and the worker's log. Replies of the wrong shape or with non-finite values are refused
(:func:`hdpbench.models.interface.check_evaluation`).
"""

from __future__ import annotations

import atexit
import os
import select
import subprocess
import sys
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from hdpbench.core.errors import HdpbenchError
from hdpbench.models import isolated_worker as protocol
from hdpbench.models.base import Evaluation, check_elements
from hdpbench.models.environments import (
    DEFAULT_BATCH_SIZE,
    Environment,
    IsolatedSpec,
    ensure_environment,
)
from hdpbench.models.interface import Capability, check_evaluation


class WorkerError(HdpbenchError):
    """The worker of an isolated model failed (died twice, timed out, or refused a request)."""


class _WorkerDied(Exception):
    pass


def worker_timeout(default: float) -> float:
    """``HDPBENCH_WORKER_TIMEOUT`` (seconds per request) if set, else the registry's ``timeout_s``."""
    value = os.environ.get("HDPBENCH_WORKER_TIMEOUT")
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise HdpbenchError(f"HDPBENCH_WORKER_TIMEOUT={value!r}: expected a positive number of seconds")
    return seconds


class Worker:
    """One worker process: started, asked, restarted, stopped. Pipes only (owner-only by nature)."""

    def __init__(self, model: str, environment: Environment, load_request: dict[str, Any], *, timeout_s: float, log: Path, source: str | None = None):
        self.model = model
        self.source = source
        self.environment = environment
        self.load_request = load_request
        self.timeout_s = timeout_s
        self.log = log
        self.process: subprocess.Popen | None = None
        self.hello: dict[str, Any] = {}
        self.loaded: dict[str, Any] = {}
        self.starts = 0

    # -- lifetime ------------------------------------------------------------------------------
    def start(self) -> None:
        from hdpbench.core.torch_setup import pinned_threads

        self.stop()
        environment = dict(os.environ, PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1")
        for variable in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
            environment.pop(variable, None)
        threads = pinned_threads()
        if threads:  # the worker computes while this process waits: it gets this process's share
            environment.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(self.environment.python), "-I", protocol.__file__],  # -I: no cwd, user site or PYTHON* on the path
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=environment, close_fds=True,
            )  # fmt: skip
        self.starts += 1
        self.hello = self._request({"op": "hello"})[0]
        self.loaded = self._request({"op": "load", **self.load_request})[0]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            process.stdin.write(protocol.encode({"op": "exit"}))
            process.stdin.close()
            process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    # -- requests ------------------------------------------------------------------------------
    def request(self, header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> tuple[dict, dict]:
        """One request; a worker that died is started again once and the request repeated."""
        if self.process is None:
            self.start()
        try:
            return self._request(header, arrays)
        except _WorkerDied as first:
            print(f"hdpbench: the worker of model {self.model} died ({first}); starting it again and retrying the batch", file=sys.stderr, flush=True)
            try:
                self.start()
                return self._request(header, arrays)
            except _WorkerDied as second:
                raise WorkerError(f"model {self.model}: its worker died twice ({second}); see its log {self.log}{self._log_tail()}") from None

    def _request(self, header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> tuple[dict, dict]:
        process = self.process
        try:
            process.stdin.write(protocol.encode(header, arrays))
            process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise _WorkerDied(self._death(f"could not send the request: {error}")) from None
        reply, out = self._read(process)
        if not reply.get("ok"):
            entry = f"registry entry {self.source}; " if self.source and header.get("op") == "load" else ""
            raise WorkerError(f"model {self.model}: the worker refused '{header.get('op')}': {reply.get('error')} ({entry}log {self.log})")
        return reply, out

    def _read(self, process: subprocess.Popen) -> tuple[dict, dict]:
        deadline = time.monotonic() + self.timeout_s
        fd = process.stdout.fileno()

        def exactly(n: int) -> bytes:
            parts, remaining = [], n
            while remaining:
                left = deadline - time.monotonic()
                ready, _, _ = select.select([fd], [], [], max(0.0, left))
                if not ready:
                    process.kill()
                    process.wait()
                    self.process = None
                    raise WorkerError(
                        f"model {self.model}: its worker sent no answer within {self.timeout_s:g} s; it was stopped "
                        "(set isolated.timeout_s in the registry entry or HDPBENCH_WORKER_TIMEOUT)"
                    )
                chunk = os.read(fd, min(remaining, 1 << 20))
                if not chunk:
                    raise _WorkerDied(self._death("its output closed"))
                parts.append(chunk)
                remaining -= len(chunk)
            return b"".join(parts)

        header_length, body_length = protocol.PREFIX.unpack(exactly(protocol.PREFIX.size))
        try:
            return protocol.decode(exactly(header_length), exactly(body_length))
        except protocol.ProtocolError as error:
            raise WorkerError(f"model {self.model}: malformed reply from its worker ({error})") from None

    def _death(self, what: str) -> str:
        process = self.process
        status = None
        if process is not None:
            try:
                status = process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                status = process.wait()
        self.process = None
        return f"{what}; exit status {status}"

    def _log_tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()[-8:]
        except OSError:
            return ""
        return ("\n" + "\n".join(lines)) if lines else ""


_LIVE_WORKERS: weakref.WeakSet[Worker] = weakref.WeakSet()


@atexit.register
def _stop_workers() -> None:
    for worker in list(_LIVE_WORKERS):
        worker.stop()


@dataclass
class IsolatedModel:
    """A model evaluated by a worker in its own environment (implements :class:`hdpbench.models.interface.Model`)."""

    name: str
    spec: IsolatedSpec
    device: str
    dtype: str
    atomic_numbers: list[int] | None
    registered_sha256: str | None = None
    source_file: str | None = None  # the registry entry (named in errors)
    kind: str = "isolated"
    _environment: Environment | None = field(default=None, repr=False)
    _worker: Worker | None = field(default=None, repr=False)

    # -- the interface -------------------------------------------------------------------------
    @property
    def capabilities(self) -> frozenset[Capability]:
        return frozenset({Capability.BATCHED})  # a whole batch per request; no tensors cross the pipe

    @property
    def checkpoint_sha256(self) -> str | None:
        """The weights file's sha256: the registered one (checked by the worker before loading)."""
        return self.registered_sha256 or (self.worker.loaded.get("weights_sha256") if self.spec.weights else None)

    @property
    def identity(self) -> str:
        if self.checkpoint_sha256:
            return self.checkpoint_sha256[:16]
        import hashlib
        import json

        text = json.dumps({"calculator": self.spec.calculator, "kwargs": self.spec.calculator_kwargs, "env": self.spec.environment.digest}, sort_keys=True)
        return "isolated:" + hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def environment(self) -> Environment:
        if self._environment is None:
            self._environment = ensure_environment(self.name, self.spec.environment)
        return self._environment

    def versions(self) -> dict[str, str]:
        """What was resolved in the model's environment (every distribution), and its Python."""
        record = self.environment.record
        return {"python": record.get("python", ""), **record.get("packages", {})}

    def execution(self) -> dict[str, Any]:
        record = self.environment.record
        pinned = self.spec.environment.pinned()
        return {
            "device": self.device, "dtype": self.dtype, "kind": self.kind,
            "environment": {"digest": self.spec.environment.digest, "folder": str(self.environment.folder), "python": record.get("python"),
                            "pinned": pinned, "packages": record.get("packages", {})},
        }  # fmt: skip

    def evaluator(self, *, batch_size: int | str | None = None, progress: bool = False) -> IsolatedEvaluator:
        return IsolatedEvaluator(self, batch_size=batch_size if isinstance(batch_size, int) else self.spec.batch_size, progress=progress)

    # -- the worker ----------------------------------------------------------------------------
    @property
    def worker(self) -> Worker:
        if self._worker is None:
            from hdpbench.core import paths

            request = {
                "calculator": self.spec.calculator, "kwargs": self.spec.calculator_kwargs, "weights": self.spec.weights,
                "weights_kwarg": self.spec.weights_kwarg, "sha256": self.registered_sha256, "device_kwarg": self.spec.device_kwarg,
                "device": self.device, "dtype_kwarg": self.spec.dtype_kwarg, "dtype": self.dtype,
            }  # fmt: skip
            log = paths.environments_dir() / "logs" / f"{self.environment.folder.name}.worker.log"
            self._worker = Worker(self.name, self.environment, request, timeout_s=worker_timeout(self.spec.timeout_s), log=log, source=self.source_file)
            _LIVE_WORKERS.add(self._worker)
        return self._worker

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()


class IsolatedEvaluator:
    """Structures → one request per ``batch_size`` structures → :class:`Evaluation` (checked)."""

    def __init__(self, model: IsolatedModel, *, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False):
        self.model = model
        self.batch_size = max(1, int(batch_size))
        self.progress = progress
        self.timings = {"worker_s": 0.0}

    def evaluate(self, structures: Sequence[Atoms], *, stress: bool = False) -> Evaluation:
        from tqdm.auto import tqdm

        structures = list(structures)
        check_elements(structures, self.model)
        start = time.perf_counter()
        energies, forces, stresses = [], [], []
        bar = tqdm(total=len(structures), desc=f"evaluate [{self.model.name}]", unit="frame", disable=not self.progress)
        for first in range(0, len(structures), self.batch_size):
            chunk = structures[first : first + self.batch_size]
            sizes = np.array([len(atoms) for atoms in chunk], dtype=np.int64)
            arrays = {
                "sizes": sizes,
                "numbers": np.concatenate([atoms.numbers for atoms in chunk]).astype(np.int64),
                "positions": np.concatenate([atoms.positions for atoms in chunk]).astype(np.float64),
                "cells": np.stack([np.asarray(atoms.cell[:], dtype=np.float64) for atoms in chunk]),
                "pbc": np.stack([np.asarray(atoms.pbc, dtype=bool) for atoms in chunk]),
            }
            _, out = self.model.worker.request({"op": "evaluate", "stress": stress}, arrays)
            bounds = np.concatenate([[0], np.cumsum(sizes)])
            chunk_forces = out.get("forces", np.zeros((0, 3)))
            if chunk_forces.shape != (int(bounds[-1]), 3):
                raise WorkerError(f"model {self.model.name}: the worker returned forces of shape {chunk_forces.shape} for {int(bounds[-1])} atoms")
            energies.extend(np.asarray(out.get("energies", []), dtype=float).tolist())
            forces.extend(chunk_forces[bounds[k] : bounds[k + 1]] for k in range(len(chunk)))
            if stress:
                stresses.extend(out.get("stresses", np.zeros((0, 3, 3))))
            bar.update(len(chunk))
        bar.close()
        elapsed = time.perf_counter() - start
        self.timings["worker_s"] += elapsed
        evaluation = Evaluation(
            energies=np.array(energies, dtype=float), forces=forces, stresses=np.array(stresses) if stress else None,
            timings={"worker_s": elapsed}, batch_size=self.batch_size,
        )  # fmt: skip
        return check_evaluation(evaluation, structures, model=self.model.name, stress=stress)


_LOADED: dict[tuple, IsolatedModel] = {}


def load_isolated_model(spec, *, device: str = "cpu", dtype: str | None = None) -> IsolatedModel:
    """A registry entry of ``kind: isolated``: validated now; its environment is built and its worker
    started on first evaluation (a stage whose results are all stored needs neither). One model per
    entry, device and dtype in a process: the stages of a page share its worker (starting one costs
    seconds: torch and the model's package are imported in it)."""
    key = (spec.name, spec.source_file, spec.sha256, repr(spec.isolated), device, dtype or spec.dtype)
    model = _LOADED.get(key)
    if model is None:  # (a closed model's worker starts again on its next request)
        model = _LOADED[key] = _new_isolated_model(spec, device=device, dtype=dtype)
    return model


def _new_isolated_model(spec, *, device: str, dtype: str | None) -> IsolatedModel:
    from hdpbench.models.calculators import parse_elements
    from hdpbench.models.registry import registry_file

    source = registry_file(spec)
    isolated = IsolatedSpec.from_mapping(spec.isolated, source)
    supported = list(spec.dtypes or [spec.dtype])
    dtype = dtype or spec.dtype
    if dtype not in supported:
        raise HdpbenchError(f"model {spec.name} computes in {supported} only; dtype {dtype!r} was asked for ({source})")
    if len(supported) > 1 and not isolated.dtype_kwarg:
        raise HdpbenchError(f"model {spec.name}: dtypes {supported} listed but no isolated.dtype_kwarg ({source})")
    if device != "cpu" and not isolated.device_kwarg:
        raise HdpbenchError(f"model {spec.name} has no isolated.device_kwarg in {source}: it runs on the CPU only, not {device!r}")
    return IsolatedModel(
        name=spec.name, spec=isolated, device=device, dtype=dtype,
        atomic_numbers=parse_elements(spec.elements, source=source) if spec.elements is not None else None,
        registered_sha256=spec.sha256, source_file=str(source),
    )  # fmt: skip
