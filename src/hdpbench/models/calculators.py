"""Any machine-learned potential that is not a MACE checkpoint: an ASE calculator, built by an
importable factory named in the model registry, evaluated through the library's own batched
inference where it has one (CHGNet predicts many structures per call) or one structure at a time.

Registry entries of ``kind: ase`` name

* ``factory`` — ``"module:callable"`` returning an ASE calculator; ``factory_kwargs`` are passed as given;
* ``device_kwarg`` / ``dtype_kwarg`` / ``weights_kwarg`` — the factory's keyword that receives the
  device, the floating-point type and the weights file (left out when the factory has none);
* ``dtypes`` — the types the model can compute in; a request for another is refused, never ignored;
* ``weights`` — ``{package: P, file: F}`` (a file shipped inside an installed package) or a path, with
  ``sha256`` enforced before the factory runs;
* ``elements`` — what the model was trained on, as symbols or a range such as ``"H-Pu"``;
* ``batched`` — optional ``"module:callable"`` ``f(calculator, structures, *, stress, batch_size)``
  returning ``(energies (n,), forces [n x (N_i, 3)], stresses (n, 3, 3) or None)``, the library's
  batched path; it must give the calculator's numbers (tested for CHGNet).
"""

from __future__ import annotations

import hashlib
import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from hdpbench.core.errors import DataError, HdpbenchError


def import_object(reference: str, *, source: str | Path = "model registry") -> Any:
    """``"package.module:name"`` → the object; a clear error naming the registry file otherwise."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise DataError(source, f"{reference!r} is not of the form 'package.module:callable'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise DataError(source, f"cannot import {module_name!r} for {reference!r} ({error}); is the package installed?") from error
    try:
        return getattr(module, attribute)
    except AttributeError as error:
        raise DataError(source, f"module {module_name!r} has no {attribute!r}") from error


def parse_elements(value, *, source: str | Path = "model registry") -> list[int]:
    """Symbols (``[Cs, Pb, I]``), a range (``"H-Pu"``) or atomic numbers → sorted atomic numbers."""
    from ase.data import atomic_numbers

    def number(item) -> int:
        if isinstance(item, int):
            return item
        if item not in atomic_numbers:
            raise DataError(source, f"elements: {item!r} is not an element symbol")
        return atomic_numbers[item]

    if isinstance(value, str):
        first, _, last = value.partition("-")
        if not last:
            return [number(first.strip())]
        return list(range(number(first.strip()), number(last.strip()) + 1))
    if isinstance(value, Sequence):
        return sorted({number(item) for item in value})
    raise DataError(source, f"elements: expected symbols or a range like 'H-Pu', got {value!r}")


@dataclass
class CalculatorModel:
    """An ASE calculator ready for evaluation, with the facts every model kind states."""

    name: str
    calculator: Any
    device: str
    dtype: str  # what the model computes in ("native" for a calculator handed in as an object)
    atomic_numbers: list[int] | None  # None: not declared (a calculator handed in as an object)
    checkpoint_sha256: str | None = None
    batched: Callable | None = None
    batch_size: int = 1
    head: str | None = None
    kind: str = "ase"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """Stable id for caches and manifests: the weights' hash, else the calculator's class and parameters."""
        if self.checkpoint_sha256:
            return self.checkpoint_sha256[:16]
        parameters = getattr(self.calculator, "parameters", {}) or {}
        text = f"{type(self.calculator).__module__}.{type(self.calculator).__qualname__}:{sorted(parameters.items())!r}"
        return "calculator:" + hashlib.sha256(text.encode()).hexdigest()[:16]

    def evaluator(self, *, batch_size: int | str | None = None, progress: bool = False) -> CalculatorEvaluator:
        size = batch_size if isinstance(batch_size, int) else self.batch_size
        return CalculatorEvaluator(self, batch_size=size, progress=progress)

    # -- the model interface (hdpbench.models.interface.Model) ---------------------------------
    @property
    def capabilities(self):
        from hdpbench.models.interface import Capability

        return frozenset({Capability.BATCHED}) if self.batched is not None else frozenset()

    def versions(self) -> dict[str, str]:
        from hdpbench.models.interface import package_versions

        package = type(self.calculator).__module__.partition(".")[0]
        return package_versions(package, "ase", "torch")

    def execution(self) -> dict[str, Any]:
        return {"device": str(self.device), "dtype": self.dtype, "kind": self.kind}

    @classmethod
    def from_calculator(cls, calculator, *, name: str | None = None) -> CalculatorModel:
        """Wrap a calculator object (e.g. ``EMT()``): evaluated one structure at a time, elements not declared."""
        return cls(name=name or type(calculator).__name__, calculator=calculator, device="cpu", dtype="native", atomic_numbers=None)


class CalculatorEvaluator:
    """The evaluator of a :class:`CalculatorModel`: the same ``evaluate`` as the MACE ``BatchedEvaluator``."""

    def __init__(self, model: CalculatorModel, *, batch_size: int = 1, progress: bool = False):
        self.model = model
        self.batch_size = max(1, int(batch_size))
        self.progress = progress
        self.timings = {"calculator_s": 0.0}

    def evaluate(self, structures: Sequence[Atoms], *, stress: bool = False):
        from tqdm.auto import tqdm

        from hdpbench.models.base import Evaluation, check_elements

        structures = list(structures)
        check_elements(structures, self.model)
        start = time.perf_counter()
        energies: list[float] = []
        forces: list[np.ndarray] = []
        stresses: list[np.ndarray] = []
        bar = tqdm(total=len(structures), desc=f"evaluate [{self.model.name}]", unit="frame", disable=not self.progress)
        if self.model.batched is not None:
            for first in range(0, len(structures), self.batch_size):
                chunk = structures[first : first + self.batch_size]
                e, f, s = self.model.batched(self.model.calculator, chunk, stress=stress, batch_size=self.batch_size)
                energies.extend(np.asarray(e, dtype=float).tolist())
                forces.extend(np.asarray(x, dtype=float) for x in f)
                if stress:
                    stresses.extend(np.asarray(s, dtype=float))
                bar.update(len(chunk))
        else:
            from ase.stress import voigt_6_to_full_3x3_stress

            for atoms in structures:
                atoms = atoms.copy()
                atoms.calc = self.model.calculator
                forces.append(np.array(atoms.get_forces(), dtype=float))
                energies.append(float(atoms.get_potential_energy()))
                if stress:
                    stresses.append(voigt_6_to_full_3x3_stress(atoms.get_stress()))
                bar.update(1)
        bar.close()
        elapsed = time.perf_counter() - start
        self.timings["calculator_s"] += elapsed
        return Evaluation(
            energies=np.array(energies, dtype=float),
            forces=forces,
            stresses=np.array(stresses) if stress else None,
            timings={"calculator_s": elapsed},
            batch_size=self.batch_size if self.model.batched is not None else 1,
        )


def load_calculator_model(spec, *, device: str = "cpu", dtype: str | None = None) -> CalculatorModel:
    """Build a registry entry of ``kind: ase``: weights checked, dtype and device applied or refused."""
    from hdpbench.models.registry import ModelUnavailableError, registry_file, weights_file

    source = registry_file(spec)
    if not spec.factory:
        raise DataError(source, "kind 'ase' needs 'factory: package.module:callable'")
    supported = list(spec.dtypes or [spec.dtype])
    dtype = dtype or spec.dtype
    if dtype not in supported:
        raise HdpbenchError(f"model {spec.name} computes in {supported} only; dtype {dtype!r} was asked for ({source})")
    if len(supported) > 1 and not spec.dtype_kwarg:
        raise DataError(source, f"dtypes {supported} listed but no 'dtype_kwarg' to pass the choice to the factory")
    if device != "cpu" and not spec.device_kwarg:
        raise HdpbenchError(f"model {spec.name} has no 'device_kwarg' in {source}: it runs on the CPU only, not {device!r}")
    kwargs = dict(spec.factory_kwargs or {})
    weights = weights_file(spec, source)
    sha256 = None
    if weights is not None:
        if not weights.is_file():
            raise ModelUnavailableError(f"model {spec.name}: weights file {weights} is missing ({source})")
        from hdpbench.core.storage import sha256_file

        sha256 = sha256_file(weights)
        if spec.sha256 and sha256 != spec.sha256:
            raise DataError(weights, f"sha256 {sha256} does not match the registered {spec.sha256} ({source}); refusing to load it")
        if spec.weights_kwarg:
            kwargs[spec.weights_kwarg] = str(weights)
    if spec.device_kwarg:
        kwargs[spec.device_kwarg] = device
    if spec.dtype_kwarg:
        kwargs[spec.dtype_kwarg] = dtype
    factory = import_object(spec.factory, source=source)
    calculator = factory(**kwargs)
    return CalculatorModel(
        name=spec.name,
        calculator=calculator,
        device=device,
        dtype=dtype,
        atomic_numbers=parse_elements(spec.elements, source=source) if spec.elements is not None else None,
        checkpoint_sha256=sha256,
        batched=import_object(spec.batched, source=source) if spec.batched else None,
        batch_size=int(spec.batch_size or 1),
        head=spec.head,
        info={"factory": spec.factory, "factory_kwargs": spec.factory_kwargs or {}},
    )


# ---- CHGNet (the pretrained universal potentials shipped in the chgnet wheel) -----------------------


def chgnet_calculator(weights: str, device: str = "cpu", **model_kwargs):
    """A ``CHGNetCalculator`` on exactly the weights file named (whose sha256 the registry checked);
    ``model_kwargs`` as ``CHGNet.load`` passes them for that release (0.2.0: ``mlp_out_bias=True``)."""
    import contextlib
    import io
    import warnings

    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    # CHGNet prints its parameter count and device on stdout; keep notebooks and --json output clean.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        model = CHGNet.from_file(weights, **model_kwargs)
        return CHGNetCalculator(model=model, use_device=device)


def chgnet_batched(calculator, structures: Sequence[Atoms], *, stress: bool = False, batch_size: int = 16):
    """CHGNet's own batched inference (``CHGNet.predict_structure``), the numbers ``CHGNetCalculator`` gives.

    CHGNet predicts energy per atom (an intensive model) and stress in GPa; the calculator multiplies
    them by the atom count and ``stress_weight`` (GPa → eV/Å³), and so does this.
    """
    import warnings

    from pymatgen.io.ase import AseAtomsAdaptor

    model = calculator.model
    task = "efs" if stress else "ef"
    # One call per structure size: CHGNet 0.2.0 (mlp_first read-out) gives a structure batched with
    # structures of another size different forces (0.047 eV/Å measured here; tested), same sizes agree.
    predictions: list = [None] * len(structures)
    by_size: dict[int, list[int]] = {}
    for index, atoms in enumerate(structures):
        by_size.setdefault(len(atoms), []).append(index)
    for indices in by_size.values():
        with warnings.catch_warnings():  # chgnet's graph code trips a torch copy-construct UserWarning per batch
            warnings.simplefilter("ignore", UserWarning)
            result = model.predict_structure(
                [AseAtomsAdaptor.get_structure(structures[i]) for i in indices], task=task, batch_size=batch_size
            )
        for i, prediction in zip(indices, [result] if isinstance(result, dict) else result, strict=True):
            predictions[i] = prediction
    extensive = [len(atoms) if model.is_intensive else 1 for atoms in structures]
    energies = np.array([float(p["e"]) * factor for p, factor in zip(predictions, extensive, strict=True)])
    forces = [np.asarray(p["f"], dtype=float) for p in predictions]
    stresses = None
    if stress:
        stresses = np.array([np.asarray(p["s"], dtype=float) * calculator.stress_weight for p in predictions])
        stresses = np.array([_full_stress(s) for s in stresses])
    return energies, forces, stresses


def _full_stress(stress: np.ndarray) -> np.ndarray:
    from ase.stress import voigt_6_to_full_3x3_stress

    stress = np.asarray(stress, dtype=float)
    return stress if stress.shape == (3, 3) else voigt_6_to_full_3x3_stress(stress)
