"""Batched evaluation of MACE models: many structures (any sizes, mixed compounds) per forward pass.

This is the engine every stage uses. Structures are turned into mace-torch graphs (``AtomicData``,
the same neighbour lists as ``MACECalculator``), collated into batches, evaluated with the force
gradient only (parameters frozen), and copied to numpy once per batch. Results come back in input
order.

Batch size is chosen by *measured* throughput under a memory budget: on a CPU bigger batches are
often slower (measured here: 0.31 s/frame at batch 1 vs 0.76 s/frame at batch 16 for a 128-channel
model), on a GPU they are faster up to memory. The choice is cached per (model, device, dtype,
structure size). A CUDA out-of-memory error frees the cache, halves the batch and retries.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms

from hdpbench.core import paths
from hdpbench.core.errors import HdpbenchError
from hdpbench.core.storage import try_write_cache
from hdpbench.core.torch_setup import import_mace, prepare_torch
from hdpbench.models.base import DTYPES, Evaluation, UnknownElementError, check_elements  # noqa: F401 (public here too)


@dataclass
class LoadedModel:
    """A MACE module ready for evaluation, with what is needed to build its input graphs.

    The module itself is loaded on first use (``module``): a stage whose results are all stored
    needs only the name, hash and elements, and loading mace-torch and a checkpoint costs seconds.
    """

    name: str
    module_loader: Callable[[], Any] = field(repr=False)  # returns the torch.nn.Module, ready on device
    device: str
    dtype: str
    r_max: float
    atomic_numbers: list[int]
    heads: list[str]
    head: str
    checkpoint_sha256: str | None = None
    kind: str = "mace"
    accelerator: str = "e3nn"  # tensor-product backend (hdpbench.models.mace.ACCELERATORS)
    compiled: bool = False  # torch.compile (hdpbench.models.mace.compile_mace)
    _module: Any = field(default=None, init=False, repr=False)

    @property
    def module(self):
        """The torch.nn.Module (loaded now if it was not yet)."""
        if self._module is None:
            self._module = self.module_loader()
        return self._module

    @property
    def is_loaded(self) -> bool:
        return self._module is not None

    def forward(self, inputs: dict, *, compute_stress: bool = False) -> dict:
        """mace-torch's output dict (energy, forces, ...) for a graph dict, in the calling convention
        of this module: a compiled module runs with ``training=True`` and positions that already
        require grad (as mace-torch's calculator calls it), an uncompiled one with ``training=False``."""
        if self.compiled:
            inputs["positions"].requires_grad_(True)
        return self.module(inputs, compute_stress=compute_stress, training=self.compiled)

    def evaluator(self, *, batch_size: int | str | None = "auto", progress: bool = False) -> BatchedEvaluator:
        return BatchedEvaluator(self, batch_size="auto" if batch_size is None else batch_size, progress=progress)

    # -- the model interface (hdpbench.models.interface.Model) ---------------------------------
    @property
    def capabilities(self):
        from hdpbench.models.interface import Capability

        return frozenset({Capability.BATCHED, Capability.REPLICA_FORCES, Capability.HESSIAN})

    def versions(self) -> dict[str, str]:
        from hdpbench.models.interface import package_versions

        return package_versions("mace-torch", "torch", "e3nn")

    def execution(self) -> dict[str, Any]:
        """How it runs (recorded in manifests, not in result keys: it changes rounding only)."""
        return {"device": str(self.device), "dtype": self.dtype, "kind": self.kind, "accelerator": self.accelerator, "torch_compile": bool(self.compiled)}

    def replica_forces(self, structures: Sequence[Atoms], *, replicas_per_call: int | str | None = "auto") -> ReplicaForces:
        """Device-resident forces of these structures as their positions move (batched MD)."""
        return ReplicaForces(self, structures, replicas_per_call=replicas_per_call)

    def hessian(self, atoms: Atoms) -> np.ndarray:
        """The exact Hessian by autograd at ``atoms``: Φ (N, N, 3, 3) eV/Å² (mace-torch's ``compute_hessian``)."""
        torch = prepare_torch()
        from mace.tools import torch_geometric

        graphs = BatchedEvaluator(self, batch_size=1, progress=False).graphs([atoms])
        batch = torch_geometric.Batch.from_data_list(graphs).to(self.device)
        module = getattr(self.module, "_orig_mod", self.module)  # a compiled model's own module: no Hessian tracing
        output = module(batch.to_dict(), compute_hessian=True, training=False)
        hessian = output["hessian"].detach().to("cpu", torch.float64).numpy()  # (3N, 3N) = −∂F/∂x
        n = len(atoms)
        return hessian.reshape(n, 3, n, 3).transpose(0, 2, 1, 3)

    @property
    def identity(self) -> str:
        """Stable id for caches: checkpoint hash when known, else a hash of the weights."""
        if self.checkpoint_sha256:
            return self.checkpoint_sha256[:16]
        torch = prepare_torch()
        digest = hashlib.sha256()
        with torch.no_grad():
            for name, tensor in sorted(self.module.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().to(torch.float64).numpy().tobytes())
        self.checkpoint_sha256 = "weights:" + digest.hexdigest()
        return self.checkpoint_sha256[:24]


def _choose_head(heads: list[str], head: str | None, name: str) -> str:
    if head is not None:
        if head not in heads:
            raise HdpbenchError(f"model {name}: head {head!r} not among {heads}")
        return head
    if len(heads) == 1:
        return heads[0]
    defaults = [h for h in heads if h.lower() == "default"]
    if defaults:
        return defaults[0]
    raise HdpbenchError(f"model {name} has several heads {heads}: choose one with head=")


def default_accelerator() -> str:
    """``HDPBENCH_ACCELERATOR`` if set (``e3nn`` or ``cueq``), else ``e3nn``: the backend of every MACE model
    loaded without an explicit ``accelerator=`` (stages, notebooks, runner workers inherit it)."""
    import os

    from hdpbench.models.mace import ACCELERATORS

    value = os.environ.get("HDPBENCH_ACCELERATOR") or "e3nn"
    if value not in ACCELERATORS:
        raise HdpbenchError(f"HDPBENCH_ACCELERATOR={value!r}: expected one of {', '.join(ACCELERATORS)}")
    return value


def default_torch_compile() -> bool:
    """``HDPBENCH_TORCH_COMPILE=1``: MACE models loaded without an explicit ``torch_compile=`` are
    compiled (stages, notebooks and runner workers inherit it); unset or ``0``: not."""
    import os

    value = os.environ.get("HDPBENCH_TORCH_COMPILE") or "0"
    if value not in ("0", "1"):
        raise HdpbenchError(f"HDPBENCH_TORCH_COMPILE={value!r}: expected 0 or 1")
    return value == "1"


def load_model(
    model, *, device: str = "cpu", dtype: str = "float32", head: str | None = None, accelerator: str | None = None,
    torch_compile: bool | None = None,
):  # fmt: skip
    """Any model → a :class:`hdpbench.models.interface.Model` (``evaluator()``, ``name``, ``device``,
    ``dtype``, ``atomic_numbers``, ``capabilities``, ``execution()``).

    ``model``: a registry name (any kind), a MACE checkpoint path, a torch module, an ASE calculator
    object, or an already loaded model (returned as it is). MACE models become a
    :class:`LoadedModel`; ``kind: ase`` entries and calculator objects a
    :class:`~hdpbench.models.calculators.CalculatorModel`; ``kind: isolated`` entries an
    :class:`~hdpbench.models.isolated.IsolatedModel` (its environment built and worker started on
    first evaluation).

    ``accelerator``: the tensor-product backend of a MACE model, ``"e3nn"`` or ``"cueq"``
    (:func:`hdpbench.models.mace.accelerate`); None: :func:`default_accelerator`. Other kinds take
    only ``"e3nn"`` (their own code) when it is given explicitly.

    ``torch_compile``: compile a MACE model with ``torch.compile`` (:func:`hdpbench.models.mace.compile_mace`;
    e3nn backend only; slower on a CPU, measured); None: :func:`default_torch_compile`.

    Checkpoints are pickles and run code when loaded: only load files from a trusted source
    (registry models are checked against their sha256 where known).
    """
    from ase.calculators.calculator import BaseCalculator

    from hdpbench.core.torch_setup import pin_threads
    from hdpbench.models.calculators import CalculatorModel, load_calculator_model
    from hdpbench.models.interface import Model

    pin_threads()  # every computation loads a model first: fix the thread count here (torch_setup)
    if isinstance(model, Model):
        return model
    if isinstance(model, BaseCalculator):
        return CalculatorModel.from_calculator(model)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    torch = prepare_torch()
    if isinstance(model, torch.nn.Module):
        import_mace()
        accelerator = accelerator or default_accelerator()
        compiled = _resolve_compile(torch_compile, accelerator)
        module = _ready_module(model, device, dtype, accelerator, compiled)
        return _loaded_model(type(model).__name__, lambda: module, _describe(module), device, dtype, head, None, accelerator, compiled, module)
    from hdpbench.core.storage import sha256_file
    from hdpbench.models.registry import ModelKind, checkpoint_path, get_model_spec

    spec = get_model_spec(model)
    if spec.kind in (ModelKind.ASE.value, ModelKind.ISOLATED.value):
        if accelerator not in (None, "e3nn") or torch_compile:
            raise HdpbenchError(f"model {spec.name} (kind: {spec.kind}) runs its own code: accelerator and torch_compile apply to MACE models only")
        if spec.kind == ModelKind.ISOLATED.value:
            from hdpbench.models.isolated import load_isolated_model

            return load_isolated_model(spec, device=device, dtype=dtype)
        return load_calculator_model(spec, device=device, dtype=dtype)
    accelerator = accelerator or default_accelerator()
    compiled = _resolve_compile(torch_compile, accelerator)
    path = checkpoint_path(spec)
    checkpoint_sha256 = spec.sha256 or sha256_file(path)

    def load_module():
        import_mace()
        module = torch.load(path, map_location=device, weights_only=False)
        if not isinstance(module, torch.nn.Module):  # e.g. torch.save of a state dict
            from hdpbench.core.errors import DataError

            raise DataError(path, f"holds a {type(module).__name__}, not a saved model (a MACE .model file is a pickled torch.nn.Module)")
        return _ready_module(module, device, dtype, accelerator, compiled)

    description = _cached_description(checkpoint_sha256)
    module = None
    if description is None:  # first use of this checkpoint here: load it now and remember what it is
        module = load_module()
        description = _describe(module)
        try_write_cache(_description_file(checkpoint_sha256), description)
    return _loaded_model(spec.name, load_module, description, device, dtype, head or spec.head, checkpoint_sha256, accelerator, compiled, module)


def _resolve_compile(torch_compile: bool | None, accelerator: str) -> bool:
    compiled = default_torch_compile() if torch_compile is None else bool(torch_compile)
    if compiled and accelerator != "e3nn":
        raise HdpbenchError(f"torch_compile applies to the e3nn backend, not accelerator {accelerator!r}")
    return compiled


def _ready_module(module, device: str, dtype: str, accelerator: str, compiled: bool = False):
    """The module on ``device`` in ``dtype``, frozen, in eval mode, on the ``accelerator`` backend,
    compiled if asked."""
    from hdpbench.models.mace import accelerate, compile_mace

    torch = prepare_torch()
    module = module.to(device=device, dtype=getattr(torch, dtype)).eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    module = accelerate(module, accelerator, device)
    return compile_mace(module, device) if compiled else module


def _describe(module) -> dict[str, Any]:
    """What building graphs and checking elements need, read from a MACE module."""
    return {
        "r_max": float(module.r_max.item() if hasattr(module.r_max, "item") else module.r_max),
        "atomic_numbers": [int(z) for z in module.atomic_numbers],
        "heads": list(getattr(module, "heads", None) or ["Default"]),
    }


def _description_file(checkpoint_sha256: str):
    return paths.cache_dir() / "model-descriptions" / f"{checkpoint_sha256}.json"


def _cached_description(checkpoint_sha256: str) -> dict[str, Any] | None:
    """:func:`_describe` of a checkpoint seen before (keyed by the file's sha256, so never stale)."""
    try:
        description = json.loads(_description_file(checkpoint_sha256).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(description, dict) or set(description) != {"r_max", "atomic_numbers", "heads"}:
        return None
    return description


def _loaded_model(name, module_loader, description, device, dtype, head, checkpoint_sha256, accelerator, compiled, module=None) -> LoadedModel:
    loaded = LoadedModel(
        name=name,
        module_loader=module_loader,
        device=device,
        dtype=dtype,
        r_max=description["r_max"],
        atomic_numbers=description["atomic_numbers"],
        heads=description["heads"],
        head=_choose_head(description["heads"], head, name),
        checkpoint_sha256=checkpoint_sha256,
        accelerator=accelerator,
        compiled=compiled,
    )
    loaded._module = module
    return loaded


def _is_out_of_memory(error: BaseException) -> bool:
    torch = prepare_torch()
    oom = getattr(torch.cuda, "OutOfMemoryError", ())
    return (oom and isinstance(error, oom)) or "out of memory" in str(error).lower()


class BatchedEvaluator:
    """Evaluate many structures with one model, batch by batch.

    ``batch_size``: an int, or ``"auto"`` to measure throughput on the first structures (cached per
    model, device, dtype and structure size; the probe's outputs are discarded, so a cold and a warm
    cache give the same bits).
    ``max_batch_atoms`` bounds the atoms in one batch (the memory budget).
    """

    def __init__(
        self,
        model: LoadedModel,
        *,
        batch_size: int | str = "auto",
        max_batch_atoms: int = 20_000,
        progress: bool = True,
    ):
        self.model = model
        self.batch_size = batch_size
        self.max_batch_atoms = max_batch_atoms
        self.progress = progress
        self.timings = {"graphs_s": 0.0, "model_s": 0.0}
        import_mace()
        from mace.tools.utils import AtomicNumberTable

        self.z_table = AtomicNumberTable(model.atomic_numbers)

    # -- graph construction ---------------------------------------------------------------
    def graphs(self, structures: Sequence[Atoms]) -> list:
        """mace-torch graphs (neighbour lists included), built as MACECalculator builds them."""
        from mace import data as mace_data
        from mace.tools import torch_tools

        start = time.perf_counter()
        graphs = []
        with torch_tools.default_dtype(self.model.dtype):
            for atoms in structures:
                config = mace_data.config_from_atoms(atoms, head_name=self.model.head)
                graphs.append(
                    mace_data.AtomicData.from_config(config, z_table=self.z_table, cutoff=self.model.r_max, heads=self.model.heads)
                )
        self.timings["graphs_s"] += time.perf_counter() - start
        return graphs

    def _forward(self, graphs: list, stress: bool) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None]:
        torch = prepare_torch()
        from mace.tools import torch_geometric

        start = time.perf_counter()
        batch = torch_geometric.Batch.from_data_list(graphs).to(self.model.device)
        output = self.model.forward(batch.to_dict(), compute_stress=stress)
        energies = output["energy"].detach().to("cpu", torch.float64).numpy()
        forces = output["forces"].detach().to("cpu", torch.float64).numpy()
        stresses = output["stress"].detach().to("cpu", torch.float64).numpy() if stress else None
        ptr = batch.ptr.cpu().numpy()
        self.timings["model_s"] += time.perf_counter() - start
        return energies, [forces[ptr[k] : ptr[k + 1]] for k in range(len(ptr) - 1)], stresses

    def _forward_with_oom_retry(self, graphs: list, stress: bool, size: int):
        """Evaluate ``graphs`` in chunks of ``size``; on CUDA OOM free, halve and retry."""
        torch = prepare_torch()
        energies, forces, stresses = [], [], []
        start = 0
        while start < len(graphs):
            chunk = graphs[start : start + size]
            try:
                e, f, s = self._forward(chunk, stress)
            except RuntimeError as error:
                if not _is_out_of_memory(error) or size == 1:
                    raise
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                size = max(1, size // 2)
                self.oom_halvings = getattr(self, "oom_halvings", 0) + 1
                continue
            energies.append(e)
            forces.extend(f)
            if stress:
                stresses.append(s)
            start += len(chunk)
        return energies, forces, stresses, size

    # -- batch size by measured throughput --------------------------------------------------
    def _cache_key(self, n_atoms: int) -> str:
        return f"{self.model.identity}|{self.model.device}|{self.model.dtype}|{n_atoms}"

    @staticmethod
    def _cache_file():
        return paths.cache_dir() / "batch_sizes.json"

    def cached_batch_size(self, n_atoms: int) -> int | None:
        """The cached batch size, or None (probe again) when there is none or it is not an integer ≥ 1:
        the cache is disposable, and a hand-edited 0 would loop forever, -1 or 1.5 would fail."""
        try:
            table = json.loads(self._cache_file().read_text())
        except (OSError, ValueError):
            return None
        size = table.get(self._cache_key(n_atoms)) if isinstance(table, dict) else None
        if size is None:
            return None
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            import warnings

            warnings.warn(f"{self._cache_file()}: cached batch size {size!r} is not an integer ≥ 1; discarded, probing again", RuntimeWarning, stacklevel=2)
            return None
        return size

    def _store_batch_size(self, n_atoms: int, size: int) -> None:
        from hdpbench.core.storage import try_write_cache

        try:
            table = json.loads(self._cache_file().read_text())
        except (OSError, ValueError):
            table = {}
        if not isinstance(table, dict):  # a damaged cache file is replaced
            table = {}
        table[self._cache_key(n_atoms)] = size
        try_write_cache(self._cache_file(), table)

    def _candidate_sizes(self, n_atoms: int, n_structures: int) -> list[int]:
        limit = max(1, min(n_structures, self.max_batch_atoms // max(n_atoms, 1)))
        sizes, size = [], 1
        while size <= limit:
            sizes.append(size)
            size *= 2
        return sizes

    def _probe_batch_size(self, structures: list[Atoms], n_atoms: int, stress: bool) -> int:
        if len(structures) < 2:
            return 1
        self._forward_with_oom_retry(self.graphs(structures[:1]), stress, 1)  # warm-up (allocations), untimed
        best_rate, size = 0.0, 1
        for candidate in self._candidate_sizes(n_atoms, len(structures)):
            chunk = structures[:candidate]
            if len(chunk) < candidate:
                break
            start = time.perf_counter()
            *_, used = self._forward_with_oom_retry(self.graphs(chunk), stress, candidate)
            rate = len(chunk) / (time.perf_counter() - start)
            if used < candidate or rate < best_rate * 1.05:  # OOM, or no real gain: stop growing
                if rate > best_rate:
                    size = used
                break
            best_rate, size = rate, candidate
        return size

    # -- public API -------------------------------------------------------------------------
    def evaluate(self, structures: Sequence[Atoms], *, stress: bool = False) -> Evaluation:
        """Energies, forces (and stresses) of all structures, in input order."""
        from tqdm.auto import tqdm

        structures = list(structures)
        check_elements(structures, self.model)
        energies: list[np.ndarray] = []
        forces: list[np.ndarray] = []
        stresses: list[np.ndarray] = []
        n_atoms = int(np.median([len(a) for a in structures])) if structures else 0
        size = self.batch_size if isinstance(self.batch_size, int) else self.cached_batch_size(n_atoms)
        position = 0
        bar = tqdm(total=len(structures), desc=f"evaluate [{self.model.name}]", unit="frame", disable=not self.progress)
        timings_before = dict(self.timings)
        if size is None:
            # Probe 1, 2, 4, ... structures per batch by measured frames/s. The probe's outputs are
            # thrown away: batch composition changes the last bits of the forces, so every result
            # below comes from batches of the chosen size, whether the size was probed or cached.
            size = self._probe_batch_size(structures, n_atoms, stress)
            if len(structures) > 1:  # one structure measures nothing: probe again on a real batch
                self._store_batch_size(n_atoms, size)
        while position < len(structures):
            chunk = structures[position : position + size]
            e, f, s, size = self._forward_with_oom_retry(self.graphs(chunk), stress, size)
            energies.extend(e), forces.extend(f), stresses.extend(s)
            position += len(chunk)
            bar.update(len(chunk))
        bar.close()
        return Evaluation(
            energies=np.concatenate(energies) if energies else np.zeros(0),
            forces=forces,
            stresses=np.concatenate(stresses) if stress and stresses else None,
            timings={key: self.timings[key] - timings_before[key] for key in self.timings},  # this call only
            batch_size=size,
        )


def evaluate(
    model,
    structures: Sequence[Atoms],
    *,
    device: str = "cpu",
    dtype: str = "float32",
    batch_size: int | str = "auto",
    stress: bool = False,
    progress: bool = True,
) -> Evaluation:
    """One-call form: ``model`` is anything :func:`load_model` takes."""
    loaded = load_model(model, device=device, dtype=dtype)
    return loaded.evaluator(batch_size=batch_size, progress=progress).evaluate(structures, stress=stress)


class ReplicaForces:
    """Forces of a MACE model on a fixed set of structures whose positions move (batched MD): position
    tensor in, force tensor out, on the model's device.

    Graphs are built from tensors (:func:`hdpbench.models.neighbours.neighbour_list`, the edges mace-torch's
    ``get_neighborhood`` finds), so no ASE ``Atoms``, numpy array or CPU neighbour list is made per call;
    element one-hots, cells and heads are built once. Inputs and outputs equal
    :class:`BatchedEvaluator`'s for the same structures (tested). ``replicas_per_call`` splits the
    structures into several forward passes; ``None``: all in one; ``"auto"``: all in one on a GPU, and
    on a CPU passes of at most ``CPU_ATOMS_PER_CALL`` atoms (measured with ``demo-small-data``, 8 x 80
    atoms, float32, 2 cores, seconds per force call: 2 replicas per pass 0.21, 4 0.19, 8 0.26; and
    16 x 80 atoms in one pass 0.64 s: big passes leave the caches) and whose largest edge tensor
    (edges x the widest convolution output) stays within ``CPU_EDGE_TENSOR_BYTES``, the largest block
    the tuned allocator keeps (:func:`hdpbench.core.torch_setup.tune_allocator`): a 128-channel MACE on
    the dense demo fluorides (r_cut 6 Å, 7312 edges per 80-atom cell, 5120 floats per edge) measured
    694 ms per frame at 1 replica per pass, 777 at 2 and 918 at 4. A fixed rule, not a timing probe,
    so results never depend on machine load.
    """

    CPU_ATOMS_PER_CALL = 320
    CPU_EDGE_TENSOR_BYTES = 32 << 20

    def __init__(self, model: LoadedModel, structures: Sequence[Atoms], *, replicas_per_call: int | str | None = "auto"):
        torch = prepare_torch()
        import_mace()
        structures = list(structures)
        check_elements(structures, model)
        pbc = {tuple(bool(p) for p in atoms.pbc) for atoms in structures}
        if len(pbc) != 1:
            raise ValueError(f"structures mix periodicities {sorted(pbc)}; run them in separate batches")
        self.pbc = pbc.pop()
        self.model = model
        if replicas_per_call == "auto":
            replicas_per_call = None if str(model.device).startswith("cuda") else self._cpu_replicas_per_call(model, structures)
        elif replicas_per_call is not None and (not isinstance(replicas_per_call, int) or replicas_per_call < 1):
            raise ValueError(f"replicas_per_call must be a positive integer, 'auto' or None, not {replicas_per_call!r}")
        self.replicas_per_call = replicas_per_call
        self.dtype = getattr(torch, model.dtype)
        device = model.device
        sizes = [len(atoms) for atoms in structures]
        self.structure_of_atom = torch.as_tensor(np.repeat(np.arange(len(structures)), sizes), device=device)
        self.cells = torch.as_tensor(np.stack([np.asarray(atoms.cell[:]) for atoms in structures]), dtype=torch.float64, device=device)
        if any(self.pbc) and bool((torch.linalg.det(self.cells) == 0).any()):
            raise ValueError("a periodic structure has a singular cell")
        index = {z: k for k, z in enumerate(model.atomic_numbers)}
        species = torch.as_tensor([index[int(z)] for atoms in structures for z in atoms.numbers], device=device)
        self.node_attrs = torch.nn.functional.one_hot(species, len(model.atomic_numbers)).to(self.dtype)
        self.head = torch.full((len(structures),), model.heads.index(model.head), dtype=torch.int64, device=device)
        self.calls = 0

    @classmethod
    def _cpu_replicas_per_call(cls, model: LoadedModel, structures: list[Atoms]) -> int:
        """The CPU rule of the class docstring, from the starting structures' edges and the model's widths."""
        torch = prepare_torch()
        from hdpbench.models.neighbours import neighbour_list

        largest = max((len(atoms) for atoms in structures), default=1)
        by_atoms = max(1, cls.CPU_ATOMS_PER_CALL // largest)
        widths = [getattr(getattr(block.conv_tp, "irreps_out", None), "dim", None) for block in getattr(model.module, "interactions", [])]
        if not structures or not widths or None in widths:  # not a MACE of the usual layout: the atom rule only
            return by_atoms
        edges = 0
        for atoms in structures:
            found = neighbour_list(
                torch.as_tensor(atoms.positions, dtype=torch.float64), torch.as_tensor(np.asarray(atoms.cell[:]))[None],
                torch.zeros(len(atoms), dtype=torch.int64), model.r_max, tuple(bool(p) for p in atoms.pbc),
            )  # fmt: skip
            edges = max(edges, len(found.sender))
        per_replica = max(1, edges) * max(widths) * torch.empty((), dtype=getattr(torch, model.dtype)).element_size()
        return max(1, min(by_atoms, cls.CPU_EDGE_TENSOR_BYTES // per_replica))

    def __call__(self, positions, replicas: Sequence[int] | None = None):
        """Forces (N, 3) eV/Å, float64, for ``positions`` (N, 3) Å of all atoms; atoms of replicas not in
        ``replicas`` (default: all) get zero force and cost nothing."""
        torch = prepare_torch()
        n_structures = len(self.cells)
        replicas = list(range(n_structures)) if replicas is None else list(replicas)
        positions = positions.to(self.model.device)
        forces = torch.zeros(positions.shape, dtype=torch.float64, device=self.model.device)
        step = self.replicas_per_call or max(1, len(replicas))
        for start in range(0, len(replicas), step):
            chosen = torch.as_tensor(replicas[start : start + step], device=self.model.device)
            selected = torch.zeros(n_structures, dtype=torch.bool, device=self.model.device)
            selected[chosen] = True
            atoms = torch.nonzero(selected[self.structure_of_atom], as_tuple=True)[0]
            forces[atoms] = self._forward(positions[atoms], chosen, atoms).to(torch.float64)
        self.calls += 1
        return forces

    def graph(self, positions, chosen, atoms) -> dict:
        """mace-torch's input dict for the atoms ``atoms`` of structures ``chosen`` (ascending)."""
        torch = prepare_torch()
        from hdpbench.models.neighbours import neighbour_list

        renumber = torch.full((len(self.cells),), -1, dtype=torch.int64, device=positions.device)
        renumber[chosen] = torch.arange(len(chosen), device=positions.device)
        batch = renumber[self.structure_of_atom[atoms]]
        cells = self.cells[chosen]
        edges = neighbour_list(positions.to(torch.float64), cells, batch, self.model.r_max, self.pbc)
        counts = torch.bincount(batch, minlength=len(chosen))
        return {
            "positions": positions.to(self.dtype),
            "node_attrs": self.node_attrs[atoms],
            "edge_index": torch.stack([edges.sender, edges.receiver]),
            "shifts": edges.shifts.to(self.dtype),
            "unit_shifts": edges.unit_shifts.to(self.dtype),
            "cell": cells.reshape(-1, 3).to(self.dtype),
            "batch": batch,
            "ptr": torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)]),
            "head": self.head[chosen],
        }

    def _forward(self, positions, chosen, atoms):
        output = self.model.forward(self.graph(positions, chosen, atoms))
        return output["forces"].detach()
