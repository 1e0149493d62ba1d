"""Phonon fine-tuning: the Hessian-vector product against finite differences of forces and against
mace-torch's own Hessian, the Φ column convention, that training lowers the Φ error, that a resumed
run gives the same weights as an uninterrupted one, and the registry entry it writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hdpbench.core.errors import UsageError
from hdpbench.training import finetune


@pytest.fixture(scope="module")
def small_cell():
    """A rattled 10-atom unit cell of a demo fluoride (periodic images inside the 5 Å cutoff)."""
    from hdpbench.data.datasets import get_dataset

    atoms = get_dataset("demo").load("K2NaAlF6", trajectories=False).unitcell.copy()
    atoms.positions += np.random.default_rng(3).normal(0, 0.03, atoms.positions.shape)
    return atoms


@pytest.fixture(scope="module")
def model():
    from hdpbench.models.evaluate import load_model

    return load_model("demo-small-data", dtype="float64")


def test_hessian_vector_product_equals_finite_differences_of_forces(small_cell, model):
    from hdpbench.models.evaluate import evaluate

    rng = np.random.default_rng(0)
    vector = rng.normal(size=(len(small_cell), 3))
    product = finetune.hessian_vector_product(model, small_cell, vector)
    step = 1e-4  # Å along the vector: central difference, error O(step²)

    def forces(sign):
        atoms = small_cell.copy()
        atoms.positions += sign * step * vector
        return evaluate(model, [atoms], progress=False).forces_array()[0]

    finite = -(forces(+1) - forces(-1)) / (2 * step)  # H·v = −dF/dε along v
    assert np.abs(product).max() > 1.0  # a real signal, eV/Å²
    np.testing.assert_allclose(product, finite, atol=1e-6 * np.abs(finite).max())


def test_hessian_columns_equal_mace_hessian(small_cell, model):
    from hdpbench.physics.phonons import analytic_force_constants

    hessian = analytic_force_constants(small_cell, model)  # mace-torch's compute_hessian, (N, N, 3, 3)
    target = finetune.PhononTarget("cell", small_cell, hessian)
    n = len(small_cell)
    for j in (0, 7, 3 * n - 1):
        unit = np.zeros((n, 3))
        unit[j // 3, j % 3] = 1.0
        np.testing.assert_allclose(finetune.hessian_vector_product(model, small_cell, unit), target.column(j), atol=1e-10)


def test_phonon_target_rejects_a_wrong_shape(small_cell):
    from hdpbench.core.errors import DataError

    with pytest.raises(DataError, match=r"expected \(10, 10, 3, 3\)"):
        finetune.PhononTarget("cell", small_cell, np.zeros((10, 9, 3, 3)))


@pytest.mark.parametrize("field, value", [("phi_weight", 0), ("epochs", 0), ("cotrain_steps", -1), ("dtype", "float16"), ("energy_weight", -1.0)])
def test_settings_refuse_bad_values(field, value):
    with pytest.raises(UsageError, match=f"finetune.{field}"):
        finetune.FinetuneSettings(**{field: value})


@pytest.fixture(scope="module")
def training_inputs(small_cell):
    """Φ of the same cell by the other demo model: a target the base does not already match."""
    from hdpbench.models.evaluate import load_model
    from hdpbench.physics.phonons import analytic_force_constants

    other = load_model("demo-more-data", dtype="float64")
    targets = [finetune.PhononTarget("cell", small_cell, analytic_force_constants(small_cell, other))]
    cotrain = []
    for seed in range(3):
        atoms = small_cell.copy()
        atoms.positions += np.random.default_rng(seed + 10).normal(0, 0.05, atoms.positions.shape)
        from hdpbench.models.evaluate import evaluate

        result = evaluate(other, [atoms], progress=False)
        atoms.info["REF_energy"] = float(result.energies[0])
        atoms.arrays["REF_forces"] = result.forces_array()[0]
        cotrain.append(atoms)
    return targets, cotrain


TINY = finetune.FinetuneSettings(epochs=6, phonon_batch=1, columns_per_structure=4, cotrain_batch=2, eval_columns=30, eval_every=1, learning_rate=5e-3)


def test_finetuning_lowers_the_phi_error(tmp_path, training_inputs):
    targets, cotrain = training_inputs
    run = finetune.finetune("demo-small-data", targets, cotrain, settings=TINY, checkpoint=tmp_path / "m.model", progress=False)
    before = run.log[0]["phi_mae_fixed_columns"]["cell"]
    after = run.log[-1]["phi_mae_fixed_columns"]["cell"]
    assert [entry["epoch"] for entry in run.log] == [0, 1, 2, 3, 4, 5, 6]
    assert after < 0.7 * before, (before, after)
    # the written checkpoint is a loadable MACE model whose Hessian is the trained one
    from hdpbench.models.evaluate import load_model

    trained = load_model(str(run.checkpoint), dtype="float64")
    unit = np.zeros((len(targets[0].atoms), 3))
    unit[0, 0] = 1.0
    error = np.abs(finetune.hessian_vector_product(trained, targets[0].atoms, unit) - targets[0].column(0)).mean()
    assert error < before
    log = json.loads(run.checkpoint.with_suffix(".log.json").read_text())
    assert log["settings"]["phi_weight"] == 100.0 and len(log["epochs"]) == 7


def test_resumed_run_equals_uninterrupted(tmp_path, training_inputs):
    import dataclasses

    import torch

    targets, cotrain = training_inputs
    short = dataclasses.replace(TINY, epochs=2)
    whole = finetune.finetune("demo-small-data", targets, cotrain, settings=short, checkpoint=tmp_path / "a.model", state_dir=tmp_path / "a", progress=False)
    first = dataclasses.replace(TINY, epochs=1)
    finetune.finetune("demo-small-data", targets, cotrain, settings=first, checkpoint=tmp_path / "b.model", state_dir=tmp_path / "b", progress=False)
    resumed = finetune.finetune("demo-small-data", targets, cotrain, settings=short, checkpoint=tmp_path / "b.model", state_dir=tmp_path / "b", progress=False)
    assert [e["epoch"] for e in resumed.log] == [0, 1, 2]
    a = torch.load(whole.checkpoint, weights_only=False).state_dict()
    b = torch.load(resumed.checkpoint, weights_only=False).state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_changed_inputs_start_afresh(tmp_path, training_inputs):
    import dataclasses

    targets, cotrain = training_inputs
    one = dataclasses.replace(TINY, epochs=1)
    finetune.finetune("demo-small-data", targets, cotrain, settings=one, checkpoint=tmp_path / "c.model", state_dir=tmp_path / "c", progress=False)
    other = dataclasses.replace(one, phi_weight=50.0)
    run = finetune.finetune("demo-small-data", targets, cotrain, settings=other, checkpoint=tmp_path / "c.model", state_dir=tmp_path / "c", progress=False)
    assert [e["epoch"] for e in run.log] == [0, 1]  # not resumed from the other weights' state


def test_register_writes_a_readable_entry(tmp_path, monkeypatch, training_inputs):
    import shutil

    from hdpbench.core import paths
    from hdpbench.models.registry import get_model_spec, is_available, model_table

    registry = tmp_path / "models"
    shutil.copytree(paths.project_root() / "models", registry, ignore=shutil.ignore_patterns("*.model"))
    monkeypatch.setenv("HDPBENCH_MODELS", str(registry))
    (registry / "demo").mkdir(exist_ok=True)
    shutil.copy(paths.project_root() / "models" / "demo" / "demo-small-data.model", registry / "demo" / "demo-small-data.model")
    monkeypatch.setattr(paths, "project_root", lambda: tmp_path)
    targets, cotrain = training_inputs
    run = finetune.finetune(
        "demo-small-data", targets, cotrain, settings=finetune.FinetuneSettings(epochs=1, eval_columns=2, cotrain_batch=2),
        checkpoint=finetune.finetuned_checkpoint("tiny-pft"), progress=False,
    )  # fmt: skip
    path = finetune.register("tiny-pft", "demo-small-data", run, dataset="demo", train_compounds=["cell"], cotrain_source="test", cotrain_count=3)
    spec = get_model_spec("tiny-pft")
    assert path == registry / "tiny-pft.yaml" and is_available(spec)
    assert spec.extra["finetune"]["base"] == "demo-small-data"
    assert spec.extra["finetune"]["train_compounds"] == ["cell"]
    row = next(r for r in model_table() if r["name"] == "tiny-pft")
    assert row["finetune"]["settings"]["phi_weight"] == 100.0 and row["available"]
    # a fine-tuned entry may be replaced; any other registry entry may not
    finetune.check_output_name("tiny-pft")
    with pytest.raises(UsageError, match="not a fine-tuned one"):
        finetune.check_output_name("demo-small-data")
    with pytest.raises(UsageError, match="letters, digits"):
        finetune.check_output_name("../x")


def test_cli_refuses_bad_requests_before_any_work(capsys):
    from hdpbench.cli import main

    assert main(["finetune", "--model", "demo-small-data", "--dataset", "demo", "--train-compounds", "K2NaAlF6x", "--output", "x"]) == 2
    assert "did you mean K2NaAlF6" in capsys.readouterr().err
    assert main(["finetune", "--model", "chgnet-0.3.0", "--dataset", "demo", "--train-compounds", "K2NaAlF6", "--output", "x"]) == 2
    assert "needs a model with the 'hessian' capability" in capsys.readouterr().err  # CHGNet: no autograd Hessian in hdpbench yet
    args = ["finetune", "--model", "demo-small-data", "--dataset", "demo", "--train-compounds", "K2NaAlF6", "--validation-compounds", "K2NaAlF6", "--output", "x"]
    assert main(args) == 2
    assert "both in training and validation" in capsys.readouterr().err


def test_kcl_split_holds_out_a_fifth_and_cotraining_uses_only_the_training_part():
    from hdpbench.demo.train import cotrain_structures, system_split, training_structures

    train, test = system_split(120, 0.2, 0)
    assert len(test) == 24 and len(train) == 96 and not set(train) & set(test)
    np.testing.assert_array_equal(test, system_split(120, 0.2, 0)[1])  # seeded
    _, structures, record, test_frames = training_structures("kcl-small")
    assert len(structures) == 96 and len(test_frames) == 24
    assert sorted(r["index_in_pool"] for r in record) == train.tolist()
    held_positions = {frame.tobytes() for frame in test_frames.positions}
    cotrain = cotrain_structures("kcl-small")
    assert len(cotrain) == 96 - round(0.1 * 96)  # the base's validation split removed too
    assert not held_positions & {atoms.positions.tobytes() for atoms in cotrain}
    assert all("REF_forces" in atoms.arrays for atoms in cotrain)


def test_a_committed_experiment_is_done_until_its_base_is_retrained(tmp_path, monkeypatch):
    import shutil

    from hdpbench.core import paths
    from hdpbench.demo import pft
    from hdpbench.models.registry import get_model_spec

    item = pft.experiment("kcl-small-pft")
    assert pft.is_done(item)  # the committed checkpoint, made from the committed base
    registry = tmp_path / "models"  # the same entries; checkpoints stay where the entries point
    shutil.copytree(paths.model_registry_dir(), registry, ignore=shutil.ignore_patterns("*.model", "demo", "finetuned"))
    base = registry / "kcl-small.yaml"
    base.write_text(base.read_text().replace(get_model_spec("kcl-small").sha256, "a" * 64))
    monkeypatch.setenv("HDPBENCH_MODELS", str(registry))
    assert not pft.is_done(item)


def test_cli_finetunes_registers_and_lists_the_model(tmp_path, monkeypatch, capsys):
    import shutil

    from hdpbench.cli import main
    from hdpbench.core import paths

    registry = tmp_path / "models"  # a scratch registry: the command writes the entry and checkpoint there
    registry.mkdir()
    shutil.copy(paths.model_registry_dir() / "demo-small-data.yaml", registry)
    monkeypatch.setenv("HDPBENCH_MODELS", str(registry))
    args = ["finetune", "--model", "demo-small-data", "--dataset", "demo", "--train-compounds", "K2NaAlF6", "--epochs", "1",
            "--phonon-batch", "1", "--cotrain-steps", "0", "--output", "cli-pft", "--json", "--quiet"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs"] == 1 and (registry / "finetuned" / "cli-pft.model").is_file()
    assert main(["models", "list", "--json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert listed["cli-pft"]["available"] and listed["cli-pft"]["finetune"]["train_compounds"] == ["K2NaAlF6"]
    assert listed["cli-pft"]["finetune"]["cotrain"]["structures"] == 0
