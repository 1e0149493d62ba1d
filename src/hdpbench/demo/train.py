"""Train the demo MACE models with mace-torch's own training entry point (``mace_run_train``).

Each demo model is one registry file ``models/<name>.yaml`` whose ``training`` block says what it is
trained on (rattled configurations per compound, whether phonopy's displaced supercells are added)
and holds the ``mace_run_train`` arguments (Lee & Xia's recipe where it fits: force-weighted loss,
2 layers, correlation order 3; 16 channels, l ≤ 2 and r_cut 5 Å so that the book can run MD with
them on 2 CPU cores). Production MD frames are never used: they are the held-out test set, on which
the force MAE per compound is reported.

Outputs (committed): ``models/demo/<name>.model`` (the checkpoint, float64), and in
``models/demo/<name>/``: ``mace_config.yaml`` (exact arguments), ``training_set.json`` (which
structures), ``train.log`` (mace's log) and ``heldout_force_mae.json``. The registry file gets the
checkpoint's sha256.

    python -m hdpbench.demo.train [--models demo-small-data demo-more-data] [--dry-run] [--heldout-only]

The training pools come from the packed archives or, while a compound's MD is still running, from
the pool the generator staged first (same bytes), so training need not wait for every trajectory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hdpbench.core import paths
from hdpbench.core.storage import atomic_path, atomic_write_json, sha256_file

DEMO_MODELS = ["demo-small-data", "demo-more-data"]


def training_spec(name: str) -> dict[str, Any]:
    from hdpbench.models.registry import get_model_spec, registry_file

    spec = get_model_spec(name)
    training = spec.extra.get("training")
    if not training:
        raise ValueError(f"{registry_file(spec)} has no 'training' block")
    return training


def output_dir(name: str) -> Path:
    return paths.model_registry_dir() / "demo" / name


def planned_demo_compounds() -> list[str]:
    """The compounds the demo generator plans (failed ones replaced), from its outcome records."""
    from hdpbench.demo.compounds import outcomes
    from hdpbench.demo.generate import planned_compounds

    known = outcomes()
    return [c.formula for c in planned_compounds(None, known) if not known.get(c.formula, "").startswith("failed")]


def training_pool_sources(dataset, planned: list[str] | None = None) -> dict[str, Path]:
    """Where each compound's training pool is: its packed archive in ``dataset`` or, for a
    ``planned`` compound whose MD is still running, the pool the generator staged with the same
    bytes. Every planned compound must have one, so a model is never trained on part of the set by
    accident."""
    from hdpbench.demo.generate import staged_pool_dir

    sources = {formula: dataset.entries()[formula].path for formula in dataset.compounds()}
    missing = []
    for formula in planned or []:
        if formula in sources:
            continue
        staged = staged_pool_dir(formula)
        if staged.is_dir():
            sources[formula] = staged
        else:
            missing.append(formula)
    if missing:
        raise FileNotFoundError(
            f"no training pool yet for {', '.join(missing)} (neither a packed archive in {dataset.root} "
            f"nor a staged pool in {paths.demo_work_dir()}); run `make demo-data` first"
        )
    return dict(sorted(sources.items()))


def select_training_structures(sources: dict[str, Path], rattled_per_compound: int | None, include_displaced: bool) -> tuple[list, list[dict]]:
    """(structures, record): the first ``rattled_per_compound`` rattled supercells of each compound
    (all if None; their order is the generator's random order) plus, optionally, the displaced ones."""
    from hdpbench.io.authors import read_training_structures

    structures, record = [], []
    for formula, source in sources.items():
        pool = read_training_structures(source)
        rattled = [a for a in pool if a.info["config_type"] == "rattled"]
        displaced = [a for a in pool if a.info["config_type"] == "displaced"]
        chosen = rattled if rattled_per_compound is None else rattled[:rattled_per_compound]
        if include_displaced:
            chosen = chosen + displaced
        for index, atoms in enumerate(chosen):
            atoms.info["compound"] = formula
            structures.append(atoms)
            record.append({"compound": formula, "config_type": atoms.info["config_type"], "index_in_pool": index})
    return structures, record


def split_validation(structures, fraction: float, seed: int) -> tuple[list, list]:
    """Indices (train, valid): a seeded ``fraction`` of the structures that carry an energy.

    mace's own ``valid_fraction`` may pick displaced supercells, which have forces only; its log
    would then report their missing energies as energy errors.
    """
    with_energy = [i for i, atoms in enumerate(structures) if "REF_energy" in atoms.info]
    rng = np.random.default_rng(seed)
    count = max(1, round(fraction * len(with_energy)))
    valid = sorted(rng.choice(with_energy, size=min(count, len(with_energy)), replace=False).tolist())
    held = set(valid)
    return [i for i in range(len(structures)) if i not in held], valid


def fitted_e0s(structures) -> dict[int, float]:
    """Per-element reference energies: least squares (minimum norm) of the energies over compositions.

    mace's ``E0s: average`` would include the displaced supercells, which carry forces only (NaN).
    """
    with_energy = [a for a in structures if "REF_energy" in a.info]
    elements = sorted({int(z) for a in structures for z in a.numbers})
    counts = np.array([[np.count_nonzero(a.numbers == z) for z in elements] for a in with_energy], dtype=float)
    energies = np.array([a.info["REF_energy"] for a in with_energy])
    solution, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {z: float(e) for z, e in zip(elements, solution, strict=True)}


def training_structures(name: str, dataset_name: str = "demo", *, staged: bool = True) -> tuple[Any, list, list[dict], Any]:
    """(dataset, structures, record, test frames or None) a model's ``training`` block names.

    Two kinds of block: the demo's (rattled pools and displaced supercells of every demo compound;
    tested on the production MD, so no test frames here) and a reference system's displaced
    supercells (``system: KCl``): a seeded ``test_fraction`` of them is held out as the test set
    (returned as a :class:`~hdpbench.core.compound.Trajectory`), the rest is the training pool.
    ``staged``: also take the pools the demo generator staged for compounds still running (training
    while ``make demo-data`` goes on); without it, the packed archives alone.
    """
    from hdpbench.data.datasets import get_dataset

    training = training_spec(name)
    if "system" in training:
        dataset = get_dataset(training.get("dataset", "external"), download=False)
        trajectory = dataset.load(training["system"]).trajectory
        train_idx, test_idx = system_split(len(trajectory), training.get("test_fraction", 0.2), int(training.get("split_seed", 0)))
        structures, record = [], []
        for index in train_idx:
            atoms = trajectory.atoms(int(index))
            forces, energy = atoms.get_forces(), (atoms.get_potential_energy() if trajectory.energies is not None else None)
            atoms.calc = None
            atoms.arrays["REF_forces"] = forces
            if energy is not None:
                atoms.info["REF_energy"] = energy
            atoms.info.update({"config_type": "displaced", "compound": training["system"]})
            structures.append(atoms)
            record.append({"compound": training["system"], "config_type": "displaced", "index_in_pool": int(index)})
        return dataset, structures, record, trajectory.select(test_idx)
    dataset = get_dataset(dataset_name, download=False)
    sources = training_pool_sources(dataset, planned_demo_compounds() if dataset_name == "demo" and staged else None)
    structures, record = select_training_structures(sources, training.get("rattled_per_compound"), training.get("include_displaced", True))
    return dataset, structures, record, None


def system_split(count: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices of ``count`` structures: a seeded ``test_fraction`` held out, both sorted."""
    rng = np.random.default_rng(seed)
    test = np.sort(rng.choice(count, size=max(1, round(test_fraction * count)), replace=False))
    return np.setdiff1d(np.arange(count), test), test


def cotrain_structures(name: str) -> list:
    """The structures a registered model was trained on (its ``training`` block, validation split
    removed): what phonon fine-tuning co-trains on against forgetting."""
    _, structures, _, _ = training_structures(name, training_spec(name).get("dataset", "demo"), staged=False)
    mace_args = training_spec(name)["mace_args"]
    train_indices, _ = split_validation(structures, mace_args.get("valid_fraction", 0.1), int(mace_args.get("seed", 0)))
    return [structures[i] for i in train_indices]


def frames_force_error(checkpoint, frames) -> dict[str, float]:
    """Force MAE/RMSE (eV/Å) of a model on frames with reference forces."""
    from hdpbench.models.evaluate import evaluate

    predicted = evaluate(str(checkpoint), frames.to_atoms_list(), dtype="float64", progress=False).forces_array()
    error = predicted - frames.forces
    return {
        "force_mae_ev_ang": float(np.abs(error).mean()),
        "force_rmse_ev_ang": float(np.sqrt((error**2).mean())),
        "reference_force_rms_ev_ang": float(np.sqrt((frames.forces**2).mean())),
        "frames": len(frames),
    }


def heldout_force_mae(dataset, checkpoint: Path, *, max_frames: int = 100) -> dict[str, dict[str, float]]:
    """Force MAE/RMSE (eV/Å) of the model on each compound's production frames (never trained on)."""
    report = {}
    for formula in dataset.compounds():
        trajectory = dataset.load(formula).trajectory
        picks = np.linspace(0, len(trajectory) - 1, min(max_frames, len(trajectory))).round().astype(int)
        report[formula] = frames_force_error(checkpoint, trajectory.select(picks))
    return report


def train(name: str, *, dry_run: bool = False, dataset_name: str = "demo") -> dict[str, Any]:
    """Train one demo model; skip if its checkpoint exists and matches the registered sha256."""
    import ase.io

    from hdpbench.models.registry import expected_checkpoint_path, get_model_spec

    spec = get_model_spec(name)
    training = training_spec(name)
    target = expected_checkpoint_path(spec)
    if target.is_file() and spec.sha256 and sha256_file(target) == spec.sha256 and not dry_run:
        print(f"{name}: checkpoint present and registered ({target})")
        return {"name": name, "skipped": True}
    dataset, structures, record, test_frames = training_structures(name, dataset_name)
    out = output_dir(name) if not dry_run else paths.cache_dir() / "demo-train-dry-run" / name
    # mace's checkpoints and logs; an interrupted training resumes from them (restart_latest)
    work = paths.cache_dir() / ("demo-train-dry-run" if dry_run else "demo-train") / name / "work"
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    mace_args = dict(training["mace_args"])
    train_indices, valid_indices = split_validation(
        structures, mace_args.pop("valid_fraction", 0.1), int(mace_args.get("seed", 0))
    )
    for index in valid_indices:
        record[index]["validation"] = True
    ase.io.write(work / "train.extxyz", [structures[i] for i in train_indices], format="extxyz")
    ase.io.write(work / "valid.extxyz", [structures[i] for i in valid_indices], format="extxyz")
    if dry_run:
        mace_args.update({"max_num_epochs": 3, "start_swa": 2, "eval_interval": 1, "num_channels": 8, "max_L": 0})
    # Paths relative to ``work`` (mace runs there), so the committed config names no machine's folders.
    mace_args.update(
        {
            "name": name,
            "train_file": "train.extxyz",
            "valid_file": "valid.extxyz",
            "energy_key": "REF_energy",
            "forces_key": "REF_forces",
            "work_dir": ".",
            "device": "cpu",
            "restart_latest": True,
            "E0s": str(fitted_e0s([structures[i] for i in train_indices])),
        }
    )
    with atomic_path(out / "mace_config.yaml") as tmp:
        header = "# mace_run_train arguments; paths are relative to its work folder, HDPBENCH_CACHE/demo-train/<name>/work\n"
        tmp.write_text(header + yaml.safe_dump(mace_args, sort_keys=True))
    _forget_stale_checkpoints(work, [out / "mace_config.yaml", work / "train.extxyz", work / "valid.extxyz"])
    atomic_write_json(
        out / "training_set.json",
        {
            "dataset": training.get("dataset", dataset_name),
            "count": len(structures),
            "compounds": sorted({r["compound"] for r in record}),
            "train_extxyz_sha256": sha256_file(work / "train.extxyz"),
            "valid_extxyz_sha256": sha256_file(work / "valid.extxyz"),
            "structures": record,
        },
    )
    start = time.time()
    command = [sys.executable, "-m", "hdpbench.demo.mace_train_entry", "--config", str(out / "mace_config.yaml")]
    with open(work / "stdout.log", "w") as log:
        completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    if completed.returncode != 0:
        tail = (work / "stdout.log").read_text()[-3000:]
        raise RuntimeError(f"mace_run_train failed for {name} (log: {work / 'stdout.log'}):\n{tail}")
    seconds = time.time() - start
    trained = work / f"{name}.model"
    logs = sorted((work / "logs").glob(f"{name}*.log"))
    if logs:
        shutil.copyfile(logs[-1], out / "train.log")
    destination = out / "checkpoint.model" if dry_run else target
    destination.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(destination) as tmp:
        shutil.copyfile(trained, tmp)
    checksum = sha256_file(destination)
    if test_frames is not None:  # a fifth of a reference system's supercells, never trained on
        heldout = {training["system"]: frames_force_error(destination, test_frames)}
    else:
        heldout = heldout_force_mae(dataset, destination, max_frames=5 if dry_run else 100)
    atomic_write_json(out / "heldout_force_mae.json", {"per_compound": heldout, "training_seconds": seconds})
    if not dry_run:
        _register_sha256(name, checksum)
    print(f"{name}: trained in {seconds / 60:.1f} min on {len(structures)} structures → {destination}")
    return {"name": name, "checkpoint": str(destination), "sha256": checksum, "seconds": seconds, "heldout": heldout}


def _forget_stale_checkpoints(work: Path, inputs: list[Path]) -> None:
    """mace resumes from the checkpoints in ``work`` (restart_latest): keep them only if they were
    made from these exact inputs, so a changed training set or config starts afresh."""
    import hashlib

    digest = hashlib.sha256(b"".join(sha256_file(path).encode() for path in inputs)).hexdigest()
    stamp = work / "inputs.sha256"
    if stamp.is_file() and stamp.read_text() == digest:
        return
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    stamp.write_text(digest)


def refresh_heldout(name: str, dataset_name: str = "demo") -> dict[str, Any]:
    """Recompute the held-out force errors of a trained demo model, e.g. once more compounds' MD is
    packed (a model may be trained on staged pools before every production trajectory exists)."""
    from hdpbench.data.datasets import get_dataset
    from hdpbench.models.registry import expected_checkpoint_path, get_model_spec

    checkpoint = expected_checkpoint_path(get_model_spec(name))
    report_path = output_dir(name) / "heldout_force_mae.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    report["per_compound"] = heldout_force_mae(get_dataset(dataset_name, download=False), checkpoint)
    atomic_write_json(report_path, report)
    return report


def _register_sha256(name: str, checksum: str) -> None:
    """Update the sha256 line of the registry file in place (keeping its comments); an entry shipped
    inside the installed package is copied to the writable registry folder instead, overriding it."""
    from hdpbench.models.registry import get_model_spec, registry_file, writable_registry_file

    spec = get_model_spec(name)
    path = writable_registry_file(spec)
    lines = registry_file(spec).read_text().splitlines()
    lines = [f"sha256: {checksum}" if line.startswith("sha256:") else line for line in lines]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=DEMO_MODELS)
    parser.add_argument("--dry-run", action="store_true", help="3 epochs of a tiny model, outputs under the cache")
    parser.add_argument("--heldout-only", action="store_true", help="only recompute the held-out force errors")
    args = parser.parse_args(argv)
    if args.heldout_only:
        for name in args.models:
            print(name, json.dumps(refresh_heldout(name)["per_compound"], indent=2))
        return 0
    results = [train(name, dry_run=args.dry_run) for name in args.models]
    print(json.dumps([{k: v for k, v in r.items() if k != "heldout"} for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
