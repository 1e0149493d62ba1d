"""One conformance test for every model kind (:mod:`hdpbench.models.interface`): the interface is
there, results pass the shared checks, batched equals one at a time, a missing capability is refused
by name; and no code outside the models layer branches on a model's kind or class."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from hdpbench.models.evaluate import load_model
from hdpbench.models.interface import (
    Capability,
    MissingCapabilityError,
    Model,
    check_evaluation,
    require_capability,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "hdpbench"


def _halide_cells(n: int = 3):
    """Small rattled rock-salt cells of elements every real model knows (Na, Cl, K, Br)."""
    rng = np.random.default_rng(1)
    cells = []
    for k in range(n):
        atoms = bulk("NaCl", "rocksalt", a=5.64) * (2, 1, 1) if k % 2 == 0 else bulk("KBr", "rocksalt", a=6.6)
        atoms.positions += rng.normal(scale=0.03, size=atoms.positions.shape)
        cells.append(atoms)
    return cells


def _metal_cells(n: int = 3):
    rng = np.random.default_rng(2)
    cells = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.6) * (2, 2, 1) if k % 2 == 0 else bulk("Al", "fcc", a=4.05) * (2, 1, 1)
        atoms.positions += rng.normal(scale=0.03, size=atoms.positions.shape)
        cells.append(atoms)
    return cells


KINDS = {
    # kind: (how to get the model, structures it knows, tolerance of batched vs one at a time in eV/Å)
    "mace": (lambda request: load_model("demo-small-data", dtype="float64"), None, 1e-10),
    "ase": (lambda request: load_model("chgnet-0.3.0"), _halide_cells, 1e-5),
    "ase-object": (lambda request: load_model(EMT()), _metal_cells, 1e-12),  # one EMT object reused: its neighbour list carries over (last bits)
    "isolated": (lambda request: (request.getfixturevalue("emt_registry"), load_model("emt-isolated", dtype="float64"))[1], _metal_cells, 1e-12),
}


def _demo_cells(model, n: int = 3):
    from hdpbench.data.datasets import get_dataset

    data = get_dataset("demo")
    compound = data.load(data.compounds()[0])
    cells = []
    rng = np.random.default_rng(3)
    for _ in range(n):
        atoms = compound.reference_supercell.copy()
        atoms.positions += rng.normal(scale=0.03, size=atoms.positions.shape)
        cells.append(atoms)
    return cells


@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.slow) if k == "isolated" else k for k in KINDS])
def test_every_kind_implements_the_model_interface(kind, request):
    make, structures_of, tolerance = KINDS[kind]
    model = make(request)
    assert isinstance(model, Model)
    assert isinstance(model.identity, str) and model.identity
    assert model.capabilities <= set(Capability)
    execution = model.execution()
    assert {"device", "dtype", "kind"} <= set(execution) and execution["kind"] == model.kind
    structures = structures_of() if structures_of else _demo_cells(model)
    together = check_evaluation(model.evaluator(batch_size=len(structures)).evaluate(structures), structures, model=model.name, stress=False)
    alone = [model.evaluator(batch_size=1).evaluate([atoms]) for atoms in structures]
    for k, single in enumerate(alone):
        assert np.abs(single.forces[0] - together.forces[k]).max() <= tolerance
        assert abs(single.energies[0] - together.energies[k]) <= max(tolerance, 1e-12) * len(structures[k])
    assert model.versions()  # the packages that compute it are named
    missing = [c for c in Capability if c not in model.capabilities]
    for capability in missing:
        with pytest.raises(MissingCapabilityError, match=model.name):
            require_capability(model, capability, "this test")
    if hasattr(model, "close"):
        model.close()


def test_no_code_outside_the_models_layer_branches_on_a_model_kind_or_class():
    """Physics, pipeline, training, book and command line ask for capabilities, not kinds."""
    model_classes = {"LoadedModel", "CalculatorModel", "IsolatedModel"}
    offences = []
    for file in SRC.rglob("*.py"):
        if "models" in file.relative_to(SRC).parts[:1]:
            continue
        tree = ast.parse(file.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)} if len(node.args) > 1 else set()
                if names & model_classes:
                    offences.append(f"{file.relative_to(SRC)}:{node.lineno} isinstance(..., {sorted(names & model_classes)})")
            if isinstance(node, ast.Compare) and any(isinstance(n, ast.Attribute) and n.attr == "kind" for n in ast.walk(node.left)):
                comparators = [ast.unparse(c) for c in node.comparators]
                if any("ModelKind" in c or c.strip("'\"") in ("mace", "ase", "isolated") for c in comparators):
                    offences.append(f"{file.relative_to(SRC)}:{node.lineno} {ast.unparse(node)}")
    allowed = {"cli.py"}  # `models env` refuses non-isolated kinds by name: a registry command, not a computation
    offences = [o for o in offences if o.split(":")[0] not in allowed]
    assert not offences, "\n".join(offences)
