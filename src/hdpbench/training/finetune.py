"""Phonon fine-tuning (PFT): supervise a MACE model's energy Hessian with reference force constants.

The paper traces its wrong stability verdicts to errors of the model's Hessian Φ_model, which force
training alone does not control. PFT (Koker et al., ``../shared/papers``; the Nequix PFT trainer, read
for its settings) adds a loss on Φ itself:

* each Φ step draws random columns j of Φ_ref per structure (atom b, direction β; PFT: one,
  ``columns_per_structure`` here) and computes the model's column with one Hessian-vector product,
  H e_j = ∂(∇E · e_j)/∂x, by double backpropagation through the MACE energy
  (:func:`hessian_columns`); its loss is the mean absolute error of the columns, eV/Å²;
* after every Φ step, ``cotrain_steps`` steps on the model's original training data (energy MAE per
  atom and mean force-error norm, as in the PFT trainer) keep the model from forgetting it;
* the PFT defaults weigh Φ 100 and energies and forces 20 each (the "100x emphasis" on Φ).

Φ_ref is the reference supercell's full (N, N, 3, 3) matrix in eV/Å² (the finite-displacement Φ of the
dataset). The structure is the equilibrium supercell Φ_ref was computed at, so Φ columns of a periodic
supercell (an atom and all its images move together) are exactly what MACE's graph gives.

Training is resumable: the state (weights, optimiser, random generators, log) is written atomically
after every epoch into ``<cache>/finetune/<name>/state.pt`` and reused when the inputs are the same.
The result is a MACE checkpoint (a whole-module pickle, as mace-torch writes) and a registry entry with
a ``finetune:`` section (:func:`register`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from hdpbench.core import paths
from hdpbench.core.errors import DataError, UsageError
from hdpbench.core.torch_setup import import_mace, prepare_torch
from hdpbench.core.validation import require_positive, require_positive_int

# The PFT trainer's loss weights (energy MAE per atom, force-error norm, Φ-column MAE).
PFT_PHI_WEIGHT = 100.0
PFT_ENERGY_WEIGHT = 20.0
PFT_FORCE_WEIGHT = 20.0


@dataclass(frozen=True)
class PhononTarget:
    """One structure with its reference force constants: the Φ loss's data."""

    name: str
    atoms: Atoms  # the equilibrium supercell Φ_ref belongs to
    force_constants: np.ndarray  # (N, N, 3, 3) eV/Å², Φ[a, b, α, β] = ∂²E/∂x_aα ∂x_bβ

    def __post_init__(self) -> None:
        n = len(self.atoms)
        if np.shape(self.force_constants) != (n, n, 3, 3):
            raise DataError(self.name, f"force constants of shape {np.shape(self.force_constants)}, expected ({n}, {n}, 3, 3)")

    def column(self, j: int) -> np.ndarray:
        """Column j = 3 b + β of Φ as (N, 3): ∂²E/∂x_a ∂x_bβ for every atom a."""
        return self.force_constants[:, j // 3, :, j % 3]


@dataclass(frozen=True)
class FinetuneSettings:
    """Everything that shapes a fine-tuning run (recorded in the registry entry and the log)."""

    phi_weight: float = PFT_PHI_WEIGHT
    energy_weight: float = PFT_ENERGY_WEIGHT
    force_weight: float = PFT_FORCE_WEIGHT
    epochs: int = 40  # one epoch = one Φ step per batch of targets (+ co-training steps)
    phonon_batch: int = 5  # structures per Φ step
    columns_per_structure: int = 1  # Φ columns per structure and step (PFT: one)
    cotrain_steps: int = 1  # steps on the original data after each Φ step (0 = no co-training)
    cotrain_batch: int = 4
    learning_rate: float = 1e-3  # Adam
    grad_clip: float = 10.0  # global gradient norm
    eval_columns: int = 12  # fixed Φ columns per structure for the logged validation error
    eval_every: int = 5  # epochs between those evaluations (and the last epoch)
    seed: int = 0
    dtype: str = "float64"

    def __post_init__(self) -> None:
        for name in ("phi_weight", "learning_rate", "grad_clip"):
            require_positive(f"finetune.{name}", getattr(self, name))
        for name in ("energy_weight", "force_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise UsageError(f"finetune.{name}={value!r}: expected a number ≥ 0")
        for name in ("epochs", "phonon_batch", "columns_per_structure", "cotrain_batch", "eval_columns", "eval_every"):
            require_positive_int(f"finetune.{name}", getattr(self, name))
        require_positive_int("finetune.cotrain_steps", self.cotrain_steps, allow_zero=True)
        require_positive_int("finetune.seed", self.seed, allow_zero=True)
        if self.dtype not in ("float32", "float64"):
            raise UsageError(f"finetune.dtype={self.dtype!r}: expected 'float32' or 'float64'")


# -- the Hessian-vector product --------------------------------------------------------------------
def _graphs(loaded, structures: Sequence[Atoms]) -> list:
    """mace graphs of ``structures``, built as mace's calculator builds them."""
    from hdpbench.models.evaluate import BatchedEvaluator

    return BatchedEvaluator(loaded, batch_size=1, progress=False).graphs(structures)


def _batch(graphs: list, device: str) -> dict:
    """One mace input dict from graphs (mace's own collation)."""
    from mace.tools import torch_geometric

    return torch_geometric.Batch.from_data_list(graphs).to(device).to_dict()


def hessian_columns(module, data: dict, vectors, *, create_graph: bool) -> tuple[Any, Any, Any]:
    """(energies (G,), forces (n, 3), H·v (n, 3)) of a batched mace input ``data``.

    ``vectors`` (n, 3): one direction per graph, zero outside it (graphs are independent, so one
    product gives every graph's own column). H·v = ∂(∇E·v)/∂x, eV/Å² per unit of v; with a unit
    vector e_j it is column j of the model's Φ. A list of such tensors gives a list of products from
    one forward pass. ``create_graph=True`` keeps them differentiable with respect to the weights
    (training).
    """
    torch = prepare_torch()
    data = dict(data)
    data["positions"] = data["positions"].detach().clone().requires_grad_(True)
    output = module(data, training=True, compute_force=True)  # forces keep their graph
    forces = output["forces"]
    many = isinstance(vectors, (list, tuple))
    products = []
    for k, v in enumerate(vectors if many else [vectors]):
        # ∇E·v = −F·v; its gradient with respect to the positions is H·v
        keep = create_graph or k < (len(vectors) - 1 if many else 0)
        (product,) = torch.autograd.grad(-(forces * v).sum(), data["positions"], create_graph=create_graph, retain_graph=keep)
        products.append(product)
    return output["energy"], forces, (products if many else products[0])


def hessian_vector_product(loaded, atoms: Atoms, vector: np.ndarray) -> np.ndarray:
    """H·v of a loaded MACE model at ``atoms`` for ``vector`` (N, 3): (N, 3) eV/Å² per Å of v."""
    torch = prepare_torch()
    data = _batch(_graphs(loaded, [atoms]), loaded.device)
    v = torch.as_tensor(np.asarray(vector, dtype=float), dtype=data["positions"].dtype, device=loaded.device)
    _, _, product = hessian_columns(loaded.module, data, v, create_graph=False)
    return product.detach().to("cpu", torch.float64).numpy()


# -- data ------------------------------------------------------------------------------------------
def phonon_targets(dataset, names: Sequence[str]) -> list[PhononTarget]:
    """Φ_ref and its supercell for each named compound (authors' layout) or system (reference systems)."""
    targets = []
    for name in names:
        # reference systems (hdpbench.data.reference_systems) load whole; compounds without their MD
        record = dataset.load(name) if hasattr(dataset, "systems") else dataset.load(name, trajectories=False)
        if record.force_constants is None:
            raise DataError(name, "has no reference force constants to fine-tune on")
        targets.append(PhononTarget(name, record.reference_supercell.copy(), np.asarray(record.force_constants, dtype=float)))
    return targets


def _mace_targets(atoms: Atoms) -> tuple[float | None, np.ndarray]:
    """(energy or None, forces) of a co-training structure (REF_* keys, else its calculator)."""
    energy = atoms.info.get("REF_energy")
    forces = atoms.arrays.get("REF_forces")
    if forces is None and atoms.calc is not None:
        forces = atoms.get_forces()
        energy = atoms.get_potential_energy() if energy is None else energy
    if forces is None:
        raise DataError(atoms.info.get("source", "co-training structure"), "has no REF_forces (nor a calculator with forces)")
    if energy is not None and not np.isfinite(energy):
        energy = None
    return (None if energy is None else float(energy)), np.asarray(forces, dtype=float)


# -- training --------------------------------------------------------------------------------------
@dataclass
class FinetuneRun:
    """What a finished run returns (and :func:`register` records)."""

    checkpoint: Path
    log: list[dict[str, Any]]
    seconds: float
    settings: FinetuneSettings
    inputs: dict[str, Any] = field(default_factory=dict)


def _digest(*parts: Any) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(np.ascontiguousarray(part, dtype=np.float64).tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _inputs_digest(base_sha: str, targets: Sequence[PhononTarget], cotrain: Sequence[Atoms], cotrain_refs, settings: FinetuneSettings) -> str:
    # the epoch count is left out: a finished run can be extended, resuming where it stopped
    parts: list[Any] = [base_sha, {k: v for k, v in asdict(settings).items() if k != "epochs"}]
    for target in targets:
        parts += [target.name, target.atoms.positions, target.atoms.cell.array, target.force_constants]
    for atoms, (energy, forces) in zip(cotrain, cotrain_refs, strict=True):
        parts += [atoms.positions, forces, energy]
    return _digest(*parts)


def finetune(
    base,
    targets: Sequence[PhononTarget],
    cotrain: Sequence[Atoms],
    *,
    settings: FinetuneSettings = FinetuneSettings(),
    checkpoint: str | Path,
    state_dir: str | Path | None = None,
    validation_targets: Sequence[PhononTarget] = (),
    device: str = "cpu",
    progress: bool = True,
) -> FinetuneRun:
    """Fine-tune MACE model ``base`` (registry name or checkpoint) on ``targets``' Φ; write ``checkpoint``.

    ``cotrain``: the original training structures (``REF_energy``/``REF_forces``; energies may be
    missing) used against forgetting. ``validation_targets`` are only logged (never in the loss nor
    in any choice: the last epoch's weights are written). An interrupted run resumes from
    ``state_dir`` when the inputs are unchanged.
    """
    from hdpbench.core.storage import atomic_path, atomic_write_json
    from hdpbench.models.evaluate import check_elements, load_model

    torch = prepare_torch()
    import_mace()
    if not targets:
        raise UsageError("fine-tuning needs at least one structure with force constants")
    if settings.cotrain_steps and not cotrain:
        raise UsageError("co-training is on (cotrain_steps > 0) but no co-training structures were given")
    loaded = load_model(base, device=device, dtype=settings.dtype)
    check_elements([t.atoms for t in targets] + list(cotrain), loaded)
    module = loaded.module
    for parameter in module.parameters():
        parameter.requires_grad_(True)
    base_sha = loaded.identity
    cotrain_refs = [_mace_targets(a) for a in cotrain]  # (energy or None, forces) per structure
    inputs_digest = _inputs_digest(base_sha, targets, cotrain, cotrain_refs, settings)
    checkpoint = Path(checkpoint)
    state_dir = Path(state_dir) if state_dir else paths.cache_dir() / "finetune" / checkpoint.stem
    state_dir.mkdir(parents=True, exist_ok=True)
    state_file = state_dir / "state.pt"

    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=settings.learning_rate)
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    log: list[dict[str, Any]] = []
    start_epoch, seconds_before = 0, 0.0
    if state_file.is_file():
        state = torch.load(state_file, map_location=device, weights_only=False)
        if state.get("inputs_digest") == inputs_digest:
            module.load_state_dict(state["module"])
            optimizer.load_state_dict(state["optimizer"])
            rng.bit_generator.state = state["numpy_rng"]
            torch.set_rng_state(state["torch_rng"])
            log, start_epoch, seconds_before = state["log"], state["epoch"], state["seconds"]
            if progress:
                print(f"resuming {checkpoint.stem} at epoch {start_epoch} from {state_file}", flush=True)

    phonon_graphs = _graphs(loaded, [t.atoms for t in targets])
    cotrain_graphs = _graphs(loaded, list(cotrain))
    eval_rng = np.random.default_rng(settings.seed + 1)  # fixed validation columns, independent of training draws
    eval_columns = {
        t.name: eval_rng.choice(3 * len(t.atoms), size=min(settings.eval_columns, 3 * len(t.atoms)), replace=False)
        for t in [*targets, *validation_targets]
    }

    def phi_step(chosen: list[int]) -> tuple[Any, float]:
        data = _batch([phonon_graphs[i] for i in chosen], device)
        all_vectors, all_expected = [], []
        for _ in range(settings.columns_per_structure):
            vectors = torch.zeros_like(data["positions"])
            expected = []
            offset = 0
            for i in chosen:
                n = len(targets[i].atoms)
                j = int(rng.integers(3 * n))
                vectors[offset + j // 3, j % 3] = 1.0
                expected.append(targets[i].column(j))
                offset += n
            all_vectors.append(vectors)
            all_expected.append(np.concatenate(expected))
        _, _, products = hessian_columns(module, data, all_vectors, create_graph=True)  # one forward pass
        losses = [
            (product - torch.as_tensor(expected, dtype=product.dtype, device=product.device)).abs().mean()
            for product, expected in zip(products, all_expected, strict=True)
        ]
        loss = torch.stack(losses).mean()
        return settings.phi_weight * loss, float(loss.detach())

    def cotrain_loss(chosen: list[int]) -> tuple[Any, dict[str, float]]:
        data = _batch([cotrain_graphs[i] for i in chosen], device)
        output = module(data, training=True, compute_force=True)
        reference_forces = torch.as_tensor(np.concatenate([cotrain_refs[i][1] for i in chosen]), dtype=output["forces"].dtype, device=output["forces"].device)
        force_loss = torch.linalg.vector_norm(output["forces"] - reference_forces, dim=1).mean()
        with_energy = [k for k, i in enumerate(chosen) if cotrain_refs[i][0] is not None]
        energy_loss = torch.zeros((), dtype=force_loss.dtype, device=force_loss.device)
        if with_energy:
            counts = torch.as_tensor([len(cotrain[chosen[k]]) for k in with_energy], dtype=force_loss.dtype, device=force_loss.device)
            reference = torch.as_tensor([cotrain_refs[chosen[k]][0] for k in with_energy], dtype=force_loss.dtype, device=force_loss.device)
            energy_loss = ((output["energy"][with_energy] - reference).abs() / counts).mean()
        total = settings.force_weight * force_loss + settings.energy_weight * energy_loss
        return total, {"cotrain_force_error": float(force_loss.detach()), "cotrain_energy_mae_per_atom": float(energy_loss.detach())}

    evaluated = [*targets, *validation_targets]
    evaluated_batch = _batch(_graphs(loaded, [t.atoms for t in evaluated]), device)

    def phi_mae() -> dict[str, float]:
        """Mean |Φ_model − Φ_ref| (eV/Å²) over each structure's fixed validation columns: the k-th
        column of every structure in one Hessian-vector product."""
        errors: dict[str, list[float]] = {t.name: [] for t in evaluated}
        all_vectors, all_used = [], []
        for k in range(max(len(c) for c in eval_columns.values())):
            vectors = torch.zeros_like(evaluated_batch["positions"])
            offset, used = 0, []
            for t in evaluated:
                if k < len(eval_columns[t.name]):
                    j = int(eval_columns[t.name][k])
                    vectors[offset + j // 3, j % 3] = 1.0
                    used.append((t, j, offset))
                offset += len(t.atoms)
            all_vectors.append(vectors)
            all_used.append(used)
        _, _, products = hessian_columns(module, evaluated_batch, all_vectors, create_graph=False)  # one forward pass
        for product, used in zip(products, all_used, strict=True):
            product = product.detach().cpu().numpy()
            for t, j, start in used:
                errors[t.name].append(float(np.abs(product[start : start + len(t.atoms)] - t.column(j)).mean()))
        return {name: float(np.mean(values)) for name, values in errors.items()}

    def evaluation() -> dict[str, Any]:
        errors = phi_mae()
        record = {"phi_mae_fixed_columns": {t.name: errors[t.name] for t in targets}}
        if validation_targets:
            record["phi_mae_fixed_columns_validation"] = {t.name: errors[t.name] for t in validation_targets}
        return record

    def step(loss) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), settings.grad_clip)
        optimizer.step()

    started = time.perf_counter()
    if not log:  # the base model's errors, epoch 0
        log.append({"epoch": 0, **evaluation(), "seconds": 0.0})
    for epoch in range(start_epoch, settings.epochs):
        order = rng.permutation(len(targets))  # from the saved generator alone: a resumed run draws the same
        record: dict[str, Any] = {"epoch": epoch + 1, "phi_mae_train_columns": [], "cotrain_force_error": [], "cotrain_energy_mae_per_atom": []}
        for first in range(0, len(order), settings.phonon_batch):
            chosen = [int(i) for i in order[first : first + settings.phonon_batch]]
            loss, phi_error = phi_step(chosen)
            step(loss)
            record["phi_mae_train_columns"].append(phi_error)
            for _ in range(settings.cotrain_steps):
                picks = rng.choice(len(cotrain), size=min(settings.cotrain_batch, len(cotrain)), replace=False)
                loss, parts = cotrain_loss([int(i) for i in picks])
                step(loss)
                for key, value in parts.items():
                    record[key].append(value)
        record = {k: (float(np.mean(v)) if isinstance(v, list) and v else v) for k, v in record.items() if v != []}
        if (epoch + 1) % settings.eval_every == 0 or epoch + 1 == settings.epochs:
            record.update(evaluation())
        record["seconds"] = round(seconds_before + time.perf_counter() - started, 1)
        log.append(record)
        if progress:
            print(f"epoch {epoch + 1}/{settings.epochs}: Φ MAE (train columns) {record['phi_mae_train_columns']:.4f} eV/Å², "
                  f"co-train force error {record.get('cotrain_force_error', float('nan')):.4f} eV/Å", flush=True)
        state = {
            "inputs_digest": inputs_digest, "module": module.state_dict(), "optimizer": optimizer.state_dict(),
            "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "log": log,
            "epoch": epoch + 1, "seconds": record["seconds"],
        }  # fmt: skip
        with atomic_path(state_file) as tmp:
            torch.save(state, tmp)

    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(checkpoint) as tmp:
        torch.save(module, tmp)
    seconds = log[-1]["seconds"] if log else 0.0
    atomic_write_json(checkpoint.with_suffix(".log.json"), {"settings": asdict(settings), "epochs": log})
    return FinetuneRun(checkpoint=checkpoint, log=log, seconds=seconds, settings=settings, inputs={"inputs_digest": inputs_digest, "base_identity": base_sha})



# -- the registry entry ----------------------------------------------------------------------------
def finetuned_checkpoint(name: str) -> Path:
    """Where ``hdpbench finetune --output NAME`` writes its checkpoint (and ``NAME.log.json`` beside it)."""
    return paths.model_registry_dir() / "finetuned" / f"{name}.model"


def check_output_name(name: str) -> None:
    """A fine-tuned model may replace an earlier fine-tuned entry, never another registry entry."""
    import re

    from hdpbench.models.registry import registered_models

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise UsageError(f"--output {name!r}: use letters, digits, '.', '_' and '-' only (it names files)")
    existing = registered_models().get(name)
    if existing is not None and "finetune" not in existing.extra:
        raise UsageError(f"--output {name!r}: a registered model that is not a fine-tuned one has that name ({existing.source_file})")


def register(
    name: str,
    base: str,
    run: FinetuneRun,
    *,
    dataset: str,
    train_compounds: Sequence[str],
    validation_compounds: Sequence[str] = (),
    cotrain_source: str,
    cotrain_count: int,
) -> Path:
    """Write ``<name>.yaml`` into the writable registry folder (:func:`hdpbench.core.paths.model_registry_dir`:
    the first ``HDPBENCH_MODELS`` folder, else the project's ``models/``; never the installed package)
    for a fine-tuned checkpoint: a MACE entry with the base's licence, the checkpoint's sha256 and a
    ``finetune:`` section (base, compounds, settings, seeds, log)."""
    import yaml

    from hdpbench.core.storage import atomic_path, sha256_file
    from hdpbench.models.registry import get_model_spec

    spec = get_model_spec(base)
    root = paths.project_root()

    def relative(path: Path) -> str:
        path = Path(path).resolve()
        return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)

    final = run.log[-1] if run.log else {}
    entry = {
        "name": name,
        "label": name,
        "kind": "mace",
        "path": relative(run.checkpoint),
        "license": spec.license,
        "sha256": sha256_file(run.checkpoint),
        "dtype": run.settings.dtype,
        "elements": spec.elements,
        "training_data": f"{spec.training_data or base}; then Φ of {len(train_compounds)} structures of dataset {dataset} (phonon fine-tuning)",
        "level_of_theory": spec.level_of_theory,
        "finetune": {
            "method": "phonon fine-tuning (PFT): random Φ columns by Hessian-vector products, co-trained on the base's data",
            "base": base,
            "base_sha256": spec.sha256,
            "dataset": dataset,
            "train_compounds": list(train_compounds),
            "validation_compounds": list(validation_compounds),
            "cotrain": {"source": cotrain_source, "structures": cotrain_count},
            "settings": asdict(run.settings),
            "seed": run.settings.seed,
            "epochs": run.settings.epochs,
            "training_seconds": run.seconds,
            "final_phi_mae_train_columns": final.get("phi_mae_train_columns"),
            "log": relative(run.checkpoint.with_suffix(".log.json")),
        },
    }
    entry = {k: v for k, v in entry.items() if v is not None}
    target = paths.model_registry_dir() / f"{name}.yaml"
    header = f"# Written by `hdpbench finetune --model {base} --output {name}`: do not edit by hand; rerun it.\n"
    with atomic_path(target) as tmp:
        tmp.write_text(header + yaml.safe_dump(entry, sort_keys=False, allow_unicode=True))
    return target


def finetune_registered(
    base: str,
    *,
    dataset: str,
    train_compounds: Sequence[str],
    output: str,
    validation_compounds: Sequence[str] = (),
    settings: FinetuneSettings = FinetuneSettings(),
    cotrain_file: str | Path | None = None,
    cotrain_loader: Callable[[str], list] | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[FinetuneRun, Path]:
    """What ``hdpbench finetune`` does: validate, gather Φ targets and co-training data, train, register.

    Co-training data: ``cotrain_file`` (extxyz with ``REF_energy``/``REF_forces``, or energies and
    forces from its calculator), else ``cotrain_loader(base)``: the base's own training set rebuilt
    from its registry ``training`` block (for models this project trains the command line passes
    :func:`hdpbench.demo.train.cotrain_structures`).
    """
    from hdpbench.data.datasets import get_dataset
    from hdpbench.models.evaluate import load_model
    from hdpbench.models.interface import Capability, MissingCapabilityError, require_capability
    from hdpbench.models.registry import get_model_spec

    check_output_name(output)
    try:  # a MACE model's module loads on first use: this reads only its registry entry and description
        require_capability(load_model(base), Capability.HESSIAN, f"phonon fine-tuning of --model {base!r}")
    except MissingCapabilityError as error:
        raise UsageError(str(error)) from None
    spec = get_model_spec(base)
    overlap = sorted(set(train_compounds) & set(validation_compounds))
    if overlap:
        raise UsageError(f"compounds both in training and validation: {', '.join(overlap)}")
    data = get_dataset(dataset, download=False)
    known = list(data.systems()) if hasattr(data, "systems") else list(data.compounds())
    for name in [*train_compounds, *validation_compounds]:
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UsageError(f"compound {name!r} is not in dataset {dataset!r}{hint}; it has {', '.join(known)}")
    if cotrain_file is not None:
        import ase.io

        path = Path(cotrain_file)
        if not path.is_file():
            raise UsageError(f"--cotrain {path}: no such file")
        cotrain = ase.io.read(path, index=":")
        source = str(path)
    elif settings.cotrain_steps == 0:
        cotrain, source = [], "none (cotrain_steps = 0)"
    else:
        if "training" not in spec.extra or cotrain_loader is None:
            raise UsageError(
                f"--model {base!r} has no 'training' block to rebuild its training data from; give the data to co-train on with --cotrain FILE.extxyz, or --cotrain-steps 0"
            )
        cotrain = cotrain_loader(base)
        source = f"the training set of {base} (its registry 'training' block)"
    run = finetune(
        base,
        phonon_targets(data, train_compounds),
        cotrain,
        settings=settings,
        checkpoint=finetuned_checkpoint(output),
        validation_targets=phonon_targets(data, validation_compounds),
        device=device,
        progress=progress,
    )
    registry = register(
        output, base, run, dataset=dataset, train_compounds=train_compounds, validation_compounds=validation_compounds,
        cotrain_source=source, cotrain_count=len(cotrain),
    )  # fmt: skip
    return run, registry
