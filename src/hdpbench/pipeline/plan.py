"""What a run would do, checked and described before any work: the dataset, models and compounds
validated (with close-match suggestions), and for ``hdpbench run --dry-run`` the plan — the stages
in order (needs first), their results folders and keys, the compounds already done and still to
compute, the files each compound gets, the shards and the estimated cost. Nothing is written.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hdpbench.core.errors import UsageError
from hdpbench.pipeline.settings import RunSettings


def suggestion(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def require_dataset(name: str):
    """The dataset (registered name or folder), or a :class:`UsageError` naming the registered ones."""
    from hdpbench.core.errors import UnknownDatasetError
    from hdpbench.data.datasets import get_dataset, registered_datasets

    try:
        return get_dataset(name, download=False)
    except UnknownDatasetError as error:
        known = sorted(registered_datasets())
        raise UsageError(f"unknown dataset {name!r}{suggestion(name, known)}; registered: {', '.join(known)} ({error})") from None


def require_models(models: Sequence[str]) -> None:
    """Every model a registry name or a checkpoint file, else a :class:`UsageError` with suggestions."""
    from hdpbench.models.registry import registered_models

    known = sorted(registered_models())
    for model in models:
        if str(model) in known or Path(model).expanduser().is_file():
            continue
        raise UsageError(
            f"unknown model {model!r}{suggestion(model, known)}; registered: {', '.join(known)}; "
            "a MACE checkpoint file can also be given by path"
        )


def require_compounds(data, compounds: Sequence[str] | None) -> list[str]:
    """The compounds to run (all of the dataset by default); an unknown one is a :class:`UsageError`."""
    known = data.compounds()
    if not known:  # an empty folder, or one a level above the layout: "0/0 compounds done, ok" before
        raise UsageError(f"dataset {data.name} at {getattr(data, 'root', '?')}: no compounds found; is this the folder that holds the layout's archives?")
    if compounds is not None and not compounds:
        raise UsageError("--compounds without names: give the formulas to run, or leave the option out for all of the dataset")
    if compounds is None:
        return list(known)
    for name in compounds:
        if name not in known:
            raise UsageError(f"compound {name!r} is not in dataset {data.name}{suggestion(name, known)}; it has {len(known)}: {', '.join(known[:20])}{' ...' if len(known) > 20 else ''}")
    return list(compounds)


def model_identity(model: str, dtype: str) -> tuple[Any | None, str | None]:
    """(loaded model, None) where its weights are on this machine, else (None, why not): a dry run
    never downloads."""
    from hdpbench.models.evaluate import load_model
    from hdpbench.models.registry import get_model_spec, is_available, weights_location

    spec = get_model_spec(model)
    if not Path(model).expanduser().is_file() and not is_available(spec):
        return None, f"weights not on this machine ({weights_location(spec)}): the key is known once they are"
    return load_model(model, device="cpu", dtype=dtype), None


def describe(
    stage: str, data, models: Sequence[str], compounds: Sequence[str], settings: RunSettings, *,
    results_root: str | Path | None, shard_size: int, device: str, frames_per_compound: int | None = None,
) -> dict[str, Any]:
    """The plan of ``hdpbench run STAGE`` as a JSON-able dict (see the module docstring)."""
    from hdpbench.core import paths
    from hdpbench.pipeline import compute
    from hdpbench.pipeline.runner import shards
    from hdpbench.pipeline.stages import get_stage, key_settings, plan
    from hdpbench.pipeline.store import StageManifest, StageResults

    target = get_stage(stage)
    root = Path(results_root) if results_root is not None else paths.results_dir()
    applicable, not_applicable = compute.split_applicable(data, compounds, target.requires)
    names = sorted(set(applicable))  # as the shards
    steps = plan(stage, settings)
    result: dict[str, Any] = {
        "stage": target.name.value,
        "dataset": data.name,
        "results_root": str(root),
        "device": device,
        "compounds": list(names),
        "not_applicable": dict(sorted(not_applicable.items())),
        "shards": len(shards(names, shard_size)) if names else 0,
        "shard_size": shard_size,
        "stages": [step.name.value for step, _ in steps],
        "models": [],
        "estimate": estimate(
            workload(settings, [step.name for step, _ in steps], data=data, names=names, frames_per_compound=frames_per_compound),
            [step.name.value for step, _ in steps], device,
        ),
    }
    for model in models:
        loaded, why = model_identity(model, settings.group(target.dtype_group).dtype)
        entry: dict[str, Any] = {"model": str(model), "stages": []}
        for step, step_settings in steps:
            step_names, _ = compute.split_applicable(data, names, step.requires)
            item: dict[str, Any] = {"stage": step.name.value, "compounds": len(step_names), "files_per_compound": [*step.writes, ".done.json"]}
            if loaded is None:
                item.update({"directory": None, "key": None, "why_no_key": why, "done": None, "to_compute": step_names})
            else:
                store = StageResults(
                    StageManifest(
                        dataset=data.name, model=loaded.name, stage=step.name.value, settings=key_settings(step, step_settings),
                        model_sha256=loaded.checkpoint_sha256 or loaded.identity, dataset_version=data.spec.version, stage_version=step.version,
                    ),
                    root=root, input_digest=data.input_digest,
                )  # fmt: skip
                done = [n for n in step_names if store.is_done(n)]
                item.update({"directory": str(store.directory), "key": store.key, "done": done, "to_compute": [n for n in step_names if n not in done]})
            entry["stages"].append(item)
        result["models"].append(entry)
    return result


def workload(settings: RunSettings, stages: Sequence[str], *, data=None, names: Sequence[str] = (), frames_per_compound: int | None = None):
    """The work of a run for the cost model: the paper's full dataset when ``data`` is None, else these
    compounds. AIMD frames are counted in the production files only when the σ stage is in ``stages``
    (the only stage whose cost depends on them)."""
    import dataclasses

    from hdpbench.pipeline.cost import Workload
    from hdpbench.pipeline.names import StageName

    if data is None:
        base = Workload.paper()
    else:
        counted = StageName.SIGMA_REFERENCE_FRAMES in stages and names
        frames = frames_per_compound or (mean_reference_frames(data, names, settings) if counted else 1)
        base = Workload(compounds=len(names), reference_frames_per_compound=max(frames, 1))
    return dataclasses.replace(
        base, md_runs_per_compound=settings.md.runs_per_compound, md_steps_per_run=settings.md.steps,
        kpca_frames_per_set=settings.kpca.max_frames_per_set,
    )  # fmt: skip


def estimate(work, stages: Sequence[str], device: str) -> dict[str, Any]:
    """The cost of these stages for this workload from measured throughput on ``device`` (None where not measured)."""
    from hdpbench.pipeline.cost import estimate, measured_rates

    return estimate(work, measured_rates("cuda" if device.startswith("cuda") else device), stages)


def mean_reference_frames(data, names: Sequence[str], settings: RunSettings) -> int:
    """Frames the σ stage re-evaluates per compound, counted in the production files (after the
    discard and the subsampling cap), so a local estimate reflects the data actually there."""
    from tqdm.auto import tqdm

    sigma = settings.sigma
    counts = []
    for name in tqdm(names, desc="counting frames", unit="compound", disable=len(names) < 20):
        frames = len(data.load(name, discard=sigma.discard, frames=sigma.frames).trajectory or [])
        counts.append(min(frames, sigma.max_frames or frames))
    return max(1, round(sum(counts) / len(counts))) if counts else 0


def format_plan(described: dict[str, Any]) -> str:
    """The plan as text for the terminal."""
    from hdpbench.pipeline.cost import format_estimate

    names = described["compounds"]
    lines = [
        f"Dry run of `{described['stage']}` on {described['dataset']}: nothing is computed and no results are written.",
        f"  stages, needs first: {' → '.join(described['stages'])}",
        f"  compounds: {len(names)} ({', '.join(names[:8])}{' ...' if len(names) > 8 else ''}), "
        f"{described['shards']} shard(s) of ≤ {described['shard_size']}, device {described['device']}",
    ]
    skipped = described.get("not_applicable") or {}
    for reason in sorted(set(skipped.values())):
        which = [name for name, why in skipped.items() if why == reason]
        lines.append(f"  {reason}: {len(which)} compound(s) ({', '.join(which[:8])}{' ...' if len(which) > 8 else ''}), recorded as such")
    for entry in described["models"]:
        lines.append(f"  model {entry['model']}:")
        for item in entry["stages"]:
            if item["key"] is None:
                lines.append(f"    {item['stage']:24s} {item['compounds']} compound(s); {item['why_no_key']}")
                continue
            lines.append(
                f"    {item['stage']:24s} {len(item['done'])} done, {len(item['to_compute'])} to compute → {item['directory']}/"
                f"<compound>{{{','.join(item['files_per_compound'])}}}"
            )
    lines.append(format_estimate(described["estimate"], models=len(described["models"])))
    return "\n".join(lines)
