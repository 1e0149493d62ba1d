"""The one model interface every kind implements, and the checks that hold any implementation to it.

Kinds (:class:`hdpbench.models.registry.ModelKind`) are implementations:

* ``mace`` — :class:`hdpbench.models.evaluate.LoadedModel` (hdpbench's batched MACE evaluator);
* ``ase`` — :class:`hdpbench.models.calculators.CalculatorModel` (an ASE calculator in this process);
* ``isolated`` — :class:`hdpbench.models.isolated.IsolatedModel` (an ASE calculator in its own Python
  environment, behind a worker process).

Physics, pipeline, training and book code use only what :class:`Model` declares; what only some
kinds can do is a :class:`Capability`, asked for with :func:`require_capability`, never found out
with ``isinstance`` or ``kind``. One conformance test (``tests/test_model_interface.py``) runs over
every kind: the interface is there, evaluate equals the reference calculator, batched equals one at
a time, isolated equals in-process.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import numpy as np
from ase import Atoms

from hdpbench.core.errors import HdpbenchError
from hdpbench.models.base import Evaluation


class Capability(StrEnum):
    """What a model can do beyond ``evaluate``."""

    BATCHED = "batched"  # many structures per forward pass (the library's own batching)
    REPLICA_FORCES = "replica_forces"  # device-resident forces of moving replicas (batched MD): replica_forces()
    HESSIAN = "hessian"  # exact Hessians and Hessian-vector products by autograd: hessian()


class MissingCapabilityError(HdpbenchError):
    """A computation asked a model for something its kind cannot do."""


@runtime_checkable
class Model(Protocol):
    """A machine-learned potential ready to evaluate structures.

    Identity: ``name``, ``kind``, ``checkpoint_sha256`` (the weights file's hash where there is a file),
    ``identity`` (a stable short id for caches and result keys), ``versions()`` (the packages that
    compute it). ``atomic_numbers``: the elements it knows (None: not declared). The model owns its
    ``device`` and ``dtype``. ``execution()`` says how it runs (recorded in manifests, not in keys).
    """

    name: str
    kind: str
    device: str
    dtype: str
    atomic_numbers: list[int] | None
    checkpoint_sha256: str | None

    @property
    def identity(self) -> str: ...

    @property
    def capabilities(self) -> frozenset[Capability]: ...

    def versions(self) -> dict[str, str]: ...

    def execution(self) -> dict[str, Any]: ...

    def evaluator(self, *, batch_size: int | str | None = None, progress: bool = False) -> Evaluator: ...


@runtime_checkable
class Evaluator(Protocol):
    """``evaluate(structures) -> Evaluation``: energies (n,) eV, forces n × (N_i, 3) eV/Å, stresses
    (n, 3, 3) eV/Å³ (ASE sign) when asked, in input order."""

    def evaluate(self, structures: Sequence[Atoms], *, stress: bool = False) -> Evaluation: ...


def require_capability(model: Model, capability: Capability, purpose: str) -> None:
    """Refuse, naming model and purpose, a computation the model's kind cannot do."""
    if capability not in model.capabilities:
        have = ", ".join(sorted(c.value for c in model.capabilities)) or "none"
        raise MissingCapabilityError(
            f"{purpose} needs a model with the '{capability.value}' capability; model {model.name} "
            f"(kind {model.kind}) has: {have}"
        )


def check_evaluation(evaluation: Evaluation, structures: Sequence[Atoms], *, model: str, stress: bool) -> Evaluation:
    """Refuse results of the wrong shape or with non-finite values, naming the model and structure."""
    n = len(structures)
    energies = np.asarray(evaluation.energies)
    if energies.shape != (n,):
        raise HdpbenchError(f"model {model} returned energies of shape {energies.shape} for {n} structures")
    if len(evaluation.forces) != n:
        raise HdpbenchError(f"model {model} returned forces for {len(evaluation.forces)} of {n} structures")
    for index, (atoms, forces) in enumerate(zip(structures, evaluation.forces, strict=True)):
        if np.shape(forces) != (len(atoms), 3):
            raise HdpbenchError(f"model {model} returned forces of shape {np.shape(forces)} for structure {index} of {len(atoms)} atoms")
        if not np.all(np.isfinite(forces)) or not np.isfinite(energies[index]):
            raise HdpbenchError(f"model {model} returned a non-finite energy or force for structure {index} ({atoms.get_chemical_formula()})")
    if stress:
        stresses = evaluation.stresses
        if stresses is None or np.shape(stresses) != (n, 3, 3) or not np.all(np.isfinite(stresses)):
            raise HdpbenchError(f"model {model} returned no finite stresses of shape ({n}, 3, 3)")
    return evaluation


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of these distributions in this process (absent ones left out)."""
    from importlib import metadata

    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found
