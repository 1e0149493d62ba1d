"""The model worker: evaluates an ASE calculator inside the model's own Python environment.

This file runs *inside another environment* (built by :mod:`hdpbench.models.environments`), so it
imports only the standard library, numpy and ASE, never hdpbench. The parent process
(:mod:`hdpbench.models.isolated`) starts it as ``<env>/bin/python isolated_worker.py`` and talks to it
over the two pipes of its standard input and output: nothing outside this user and this process
tree can reach it (no socket, no port). It exits when its input closes (the parent finished or
died) or when its parent process changes (the parent was killed while a batch was computing).

Why not ASE's ``SocketIOCalculator`` or ``rootstock`` (i-PI): the i-PI protocol carries one
structure's positions and cell per request, with species and atom count fixed at the start; the
benchmark evaluates batches of structures of several compounds and sizes. One request here carries
a whole batch.

Messages, both ways: a 16-byte prefix (two little-endian uint64: header length, body length), a
UTF-8 JSON header, then the body: the raw bytes of the arrays the header lists as
``[[name, dtype, shape], ...]`` in that order. No pickle: a message is data only.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import struct
import sys
import threading
import time
import traceback

import numpy as np

PREFIX = struct.Struct("<QQ")
PROTOCOL_VERSION = 1
ALLOWED_DTYPES = {"float64", "float32", "int64", "int32", "bool"}


class ProtocolError(RuntimeError):
    """A message that is not a well-formed hdpbench worker message."""


def encode(header: dict, arrays: dict[str, np.ndarray] | None = None) -> bytes:
    """One message as bytes: prefix, JSON header (with the array table), array bytes."""
    arrays = arrays or {}
    table, chunks = [], []
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        if array.dtype.name not in ALLOWED_DTYPES:
            raise ProtocolError(f"array {name!r} has dtype {array.dtype.name}, not one of {sorted(ALLOWED_DTYPES)}")
        table.append([name, array.dtype.name, list(array.shape)])
        chunks.append(array.tobytes())
    header_bytes = json.dumps({**header, "arrays": table}).encode()
    body = b"".join(chunks)
    return PREFIX.pack(len(header_bytes), len(body)) + header_bytes + body


def decode(header_bytes: bytes, body: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and the arrays of one message (the inverse of :func:`encode`)."""
    try:
        header = json.loads(header_bytes.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProtocolError(f"message header is not JSON ({error})") from None
    if not isinstance(header, dict) or not isinstance(header.get("arrays", []), list):
        raise ProtocolError("message header is not an object with an 'arrays' list")
    arrays, offset = {}, 0
    for entry in header.pop("arrays", []):
        name, dtype, shape = entry
        if dtype not in ALLOWED_DTYPES or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ProtocolError(f"array {name!r}: bad dtype {dtype!r} or shape {shape!r}")
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if offset + size > len(body):
            raise ProtocolError(f"array {name!r} runs past the end of the message body")
        arrays[name] = np.frombuffer(body, dtype=dtype, count=int(np.prod(shape, dtype=np.int64)), offset=offset).reshape(shape).copy()
        offset += size
    if offset != len(body):
        raise ProtocolError(f"message body has {len(body) - offset} bytes no array claims")
    return header, arrays


def read_exactly(stream, n: int) -> bytes:
    """``n`` bytes from a binary stream; EOFError if it closes first."""
    parts, remaining = [], n
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise EOFError("stream closed")
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def read_message(stream) -> tuple[dict, dict[str, np.ndarray]]:
    header_length, body_length = PREFIX.unpack(read_exactly(stream, PREFIX.size))
    return decode(read_exactly(stream, header_length), read_exactly(stream, body_length))


# -- the worker's side -------------------------------------------------------------------------------


def _package_versions() -> dict[str, str]:
    from importlib import metadata

    return {dist.metadata["Name"]: dist.version for dist in metadata.distributions() if dist.metadata["Name"]}


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _import_object(reference: str):
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{reference!r} is not of the form 'package.module:callable'")
    return getattr(importlib.import_module(module_name), attribute)


class Worker:
    def __init__(self):
        self.calculator = None

    def load(self, header: dict) -> dict:
        """Build the calculator the registry entry names; a weights file inside a package of this
        environment is resolved here and its sha256 checked before anything loads it."""
        kwargs = dict(header.get("kwargs") or {})
        reply: dict = {}
        weights = header.get("weights")
        if weights:
            module = importlib.import_module(weights["package"])
            path = os.path.join(os.path.dirname(module.__file__), weights["file"])
            if not os.path.isfile(path):
                raise FileNotFoundError(f"weights file {weights['file']!r} is not in package {weights['package']!r} ({path})")
            actual = _sha256(path)
            expected = header.get("sha256")
            if expected and actual != expected:
                raise ValueError(f"weights {path}: sha256 {actual} does not match the registered {expected}; refusing to load it")
            reply.update(weights_path=path, weights_sha256=actual)
            if header.get("weights_kwarg"):
                kwargs[header["weights_kwarg"]] = path
        if header.get("device_kwarg"):
            kwargs[header["device_kwarg"]] = header.get("device", "cpu")
        if header.get("dtype_kwarg"):
            kwargs[header["dtype_kwarg"]] = header.get("dtype", "float32")
        factory = _import_object(header["calculator"])
        self.calculator = factory(**kwargs)
        return reply

    def evaluate(self, header: dict, arrays: dict[str, np.ndarray]) -> tuple[dict, dict[str, np.ndarray]]:
        from ase import Atoms
        from ase.stress import voigt_6_to_full_3x3_stress

        if self.calculator is None:
            raise RuntimeError("evaluate before load")
        sizes = arrays["sizes"]
        starts = np.concatenate([[0], np.cumsum(sizes)])
        stress = bool(header.get("stress"))
        energies = np.empty(len(sizes))
        forces = np.empty((int(starts[-1]), 3))
        stresses = np.empty((len(sizes), 3, 3))
        for k in range(len(sizes)):
            atoms = Atoms(
                numbers=arrays["numbers"][starts[k] : starts[k + 1]],
                positions=arrays["positions"][starts[k] : starts[k + 1]],
                cell=arrays["cells"][k],
                pbc=arrays["pbc"][k],
            )
            atoms.calc = self.calculator
            forces[starts[k] : starts[k + 1]] = atoms.get_forces()
            energies[k] = atoms.get_potential_energy()
            if stress:
                stresses[k] = voigt_6_to_full_3x3_stress(atoms.get_stress())
        out = {"energies": energies, "forces": forces}
        if stress:
            out["stresses"] = stresses
        return {}, out


def _tune_allocator() -> None:
    """The parent's glibc tuning (``hdpbench.core.torch_setup.tune_allocator``, repeated here because
    this file imports nothing of hdpbench): freed tensor memory stays in the heap instead of coming
    back as fresh zero pages at every force call; ``HDPBENCH_MALLOC_TUNING=0`` turns it off."""
    import ctypes

    if os.environ.get("HDPBENCH_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    for parameter, value in ((-3, 32 << 20), (-1, 2**31 - 1), (-2, 64 << 20)):  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_TOP_PAD
        mallopt(parameter, value)


def _exit_when_orphaned(parent: int) -> None:
    """A worker whose parent died mid-batch must not keep computing (its input stays open only
    while the parent lives, but a busy worker is not reading it)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(3)


def serve() -> int:
    # The protocol owns the real standard output; whatever the model's libraries print goes to
    # standard error (the worker's log), never into a message.
    protocol_out = open(os.dup(1), "wb", buffering=1 << 16)  # buffered: write() sends all bytes
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    protocol_in = open(0, "rb", buffering=0, closefd=False)
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    _tune_allocator()
    worker = Worker()
    while True:
        try:
            header, arrays = read_message(protocol_in)
        except EOFError:
            return 0
        operation = header.get("op")
        try:
            if operation == "hello":
                reply, out = {"protocol": PROTOCOL_VERSION, "python": sys.version.split()[0], "packages": _package_versions(), "pid": os.getpid()}, {}
            elif operation == "load":
                reply, out = worker.load(header), {}
            elif operation == "evaluate":
                reply, out = worker.evaluate(header, arrays)
            elif operation == "exit":
                protocol_out.write(encode({"ok": True}))
                protocol_out.flush()
                return 0
            else:
                raise ValueError(f"unknown operation {operation!r}")
            message = encode({"ok": True, **reply}, out)
        except Exception as error:  # the parent gets the cause; the worker stays up for the next request
            message = encode({"ok": False, "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()})
        protocol_out.write(message)
        protocol_out.flush()


if __name__ == "__main__":
    sys.exit(serve())
