"""Sharded, resumable stage runs, serial or on Dask distributed.

A run splits the compounds into fixed shards (sorted names, ``shard_size`` each: the split never depends
on the number of workers, so batch composition, and with it every floating-point result, is the same
serially, on 2 workers or on 20). Each shard calls the stage function the notebooks call; the stage
writes each compound's results atomically as it finishes and skips what is done, so killing a run at
any moment and starting it again completes only what is missing, with identical results.

Workers load the model and the dataset once (cached per worker process). By default a Dask
``LocalCluster`` gets one worker per device (one per GPU with ``device="cuda"``, else one);
``workers=0`` runs in this process (as the notebooks do); ``workers=N`` starts a Dask ``LocalCluster`` of N single-threaded worker processes (with
``device="cuda"`` worker k uses ``cuda:k``, so use one worker per GPU); ``scheduler=ADDRESS`` uses an
existing cluster, e.g. one started by dask-jobqueue on SLURM GPU nodes (see the book's reproducibility
page).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .stages import KPCASettings, ModelMDSettings, PhononSettings, SigmaSettings

# stage → the settings group whose dtype loads the model
STAGE_SETTINGS = {"phonons": "phonons", "sigma-reference-frames": "sigma", "md": "md", "sigma-md": "md", "kpca": "kpca"}
STAGES = tuple(STAGE_SETTINGS)


@dataclass(frozen=True)
class RunSettings:
    """The settings of every stage in one record, so a stage and the stages it reads always agree."""

    phonons: PhononSettings = PhononSettings()
    sigma: SigmaSettings = SigmaSettings()
    md: ModelMDSettings = ModelMDSettings()
    kpca: KPCASettings = KPCASettings()

    @classmethod
    def dry_run(cls) -> RunSettings:
        """Tiny settings for smoke tests (results mean nothing, every code path runs)."""
        return cls(
            phonons=PhononSettings(points_per_segment=5),
            sigma=SigmaSettings(max_frames=8),
            md=ModelMDSettings(steps=5, runs_per_compound=1),
            kpca=KPCASettings(max_frames_per_set=5),
        )

    def with_dtype(self, dtype: str) -> RunSettings:
        return RunSettings(**{name: dataclasses.replace(getattr(self, name), dtype=dtype) for name in ("phonons", "sigma", "md", "kpca")})

    def with_overrides(self, overrides: Sequence[str]) -> RunSettings:
        """Apply ``group.field=value`` strings (e.g. ``md.steps=500``, ``sigma.max_frames=200``)."""
        groups = {name: dataclasses.asdict(getattr(self, name)) for name in ("phonons", "sigma", "md", "kpca")}
        for text in overrides:
            target, sep, raw = text.partition("=")
            group, dot, name = target.partition(".")
            if not sep or not dot or group not in groups or name not in groups[group]:
                known = ", ".join(f"{g}.{f}" for g, fields in groups.items() for f in fields)
                raise ValueError(f"bad setting {text!r}: expected GROUP.FIELD=VALUE with one of {known}")
            groups[group][name] = _parse_value(raw, groups[group][name], text)
        return RunSettings(
            phonons=PhononSettings(**groups["phonons"]),
            sigma=SigmaSettings(**groups["sigma"]),
            md=ModelMDSettings(**groups["md"]),
            kpca=KPCASettings(**groups["kpca"]),
        )


def _parse_value(raw: str, current: Any, text: str) -> Any:
    import json

    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if isinstance(current, bool) and not isinstance(value, bool):
        raise ValueError(f"bad setting {text!r}: expected true or false")
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return value


def shards(compounds: Sequence[str], shard_size: int) -> list[list[str]]:
    """Fixed shards of the sorted compound names."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be ≥ 1, not {shard_size}")
    names = sorted(set(compounds))
    return [names[i : i + shard_size] for i in range(0, len(names), shard_size)]


@functools.lru_cache(maxsize=4)
def _cached_model(model: str, device: str, dtype: str):
    from .evaluate import load_model

    return load_model(model, device=device, dtype=dtype)


@functools.lru_cache(maxsize=4)
def _cached_dataset(dataset: str):
    from .datasets import get_dataset

    return get_dataset(dataset, download=False)


def _worker_device(device: str) -> str:
    """On a cluster of GPU workers named 0..N-1 (our LocalCluster), worker k drives ``cuda:k``."""
    if device != "cuda":
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return device
    return f"cuda:{name}" if isinstance(name, int) else device


def run_stage_in_process(
    stage: str, dataset: str, model: str, shard: list[str], settings: RunSettings, device: str, results_root: str | None
):
    """Run (or reuse) one stage for these compounds here; returns its :class:`StageResults`.

    BLAS runs single-threaded, as in Dask workers, so results are bit-identical however they were run
    (a multi-threaded matrix product sums in another order).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _dispatch(stage, dataset, model, shard, settings, device, results_root)


def _dispatch(stage: str, dataset: str, model: str, shard: list[str], settings: RunSettings, device: str, results_root: str | None):
    from . import stages

    data = _cached_dataset(dataset)
    loaded = _cached_model(model, device, getattr(settings, STAGE_SETTINGS[stage]).dtype)
    # errors="record": a failing compound is written down and the rest of the shard still runs.
    common = {"compounds": shard, "device": device, "results_root": results_root, "progress": False, "errors": "record"}
    if stage == "phonons":
        result = stages.run_phonons(data, loaded, settings=settings.phonons, **common)
    elif stage == "sigma-reference-frames":
        result = stages.run_sigma_reference_frames(data, loaded, settings=settings.sigma, phonon_settings=settings.phonons, **common)
    elif stage == "md":
        result = stages.run_model_md(data, loaded, settings=settings.md, **common)
    elif stage == "sigma-md":
        result = stages.run_sigma_model_md(data, loaded, md_settings=settings.md, phonon_settings=settings.phonons, **common)
    elif stage == "kpca":
        result = stages.run_kpca(data, loaded, settings=settings.kpca, md_settings=settings.md, phonon_settings=settings.phonons, **common)
    else:
        raise ValueError(f"unknown stage {stage!r}: choose from {', '.join(STAGES)}")
    return result


def run_shard(
    stage: str,
    dataset: str,
    model: str,
    shard: list[str],
    settings: RunSettings,
    device: str,
    results_root: str | None,
    torch_threads: int | None = None,
) -> dict[str, Any]:
    """Run one stage on one shard (in whatever process calls it); returns what was done and how long it took."""
    start = time.perf_counter()
    from .torch_setup import pin_threads

    pin_threads(torch_threads)  # CPU workers share the cores instead of each taking all of them
    result = run_stage_in_process(stage, dataset, model, shard, settings, _worker_device(device), results_root)
    done = [name for name in shard if result.is_done(name)]
    failed = {name: record["error"] for name, record in result.failures([n for n in shard if n not in done]).items()}
    failed.update({name: "no result and no recorded failure" for name in shard if name not in done and name not in failed})
    return {"shard": shard, "done": done, "failed": failed, "seconds": time.perf_counter() - start, "directory": str(result.directory)}


def _dask_scratch() -> str | None:
    """Dask's spill and scratch space under the project cache (not ``/tmp/dask-scratch-space``);
    Dask's default where the cache cannot be written."""
    import warnings

    from .errors import StoreWriteError
    from .paths import cache_dir
    from .results import require_writable

    try:
        return str(require_writable(cache_dir() / "dask-scratch", hint="set HDPBENCH_CACHE to a writable folder"))
    except StoreWriteError as error:
        warnings.warn(f"Dask scratch goes to its default folder: {error}", RuntimeWarning, stacklevel=2)
        return None


def default_workers(device: str) -> int:
    """One Dask worker per device: one per GPU for ``device="cuda"``, else one."""
    if device != "cuda":
        return 1
    import torch

    return max(1, torch.cuda.device_count())


@dataclass
class RunReport:
    stage: str
    model: str
    compounds: int
    shards: int
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # compound → error (every compound of a shard that died)
    seconds: float = 0.0
    directory: str | None = None

    def summary_line(self) -> str:
        state = "ok" if not self.failed else f"{len(self.failed)} FAILED (a rerun retries only these)"
        return (
            f"{self.stage} [{self.model}]: {len(self.done)}/{self.compounds} compounds done, {state}, "
            f"{self.shards} shard(s), {self.seconds:.1f} s" + (f" → {self.directory}" if self.directory else "")
        )


def run(
    stage: str,
    dataset: str,
    model: str,
    *,
    compounds: Sequence[str] | None = None,
    settings: RunSettings = RunSettings(),
    device: str = "cpu",
    workers: int | None = None,
    scheduler: str | None = None,
    shard_size: int = 4,
    results_root: str | Path | None = None,
    progress: bool = True,
) -> RunReport:
    """Run ``stage`` for ``model`` on ``dataset`` shard by shard; see the module docstring."""
    from tqdm.auto import tqdm

    from .paths import results_dir
    from .results import require_writable

    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}: choose from {', '.join(STAGES)}")
    names = list(compounds) if compounds is not None else _cached_dataset(str(dataset)).compounds()
    work = shards(names, shard_size)
    root = str(require_writable(Path(results_root) if results_root is not None else results_dir()))
    report = RunReport(stage=stage, model=str(model), compounds=len({*names}), shards=len(work))
    start = time.perf_counter()
    bar = tqdm(total=report.compounds, desc=f"{stage} [{model}]", unit="compound", disable=not progress)

    def record(outcome: dict[str, Any]) -> None:
        report.done.extend(outcome["done"])
        report.failed.update(outcome["failed"])
        report.directory = outcome["directory"]
        bar.update(len(outcome["shard"]))

    def shard_died(shard: list[str], error: BaseException) -> None:  # e.g. the model could not be loaded
        report.failed.update({name: f"{type(error).__name__}: {error}" for name in shard})
        bar.update(len(shard))

    if workers is None:
        workers = default_workers(device)
    arguments = (stage, str(dataset), str(model))
    if workers == 0 and scheduler is None:
        for shard in work:
            try:
                record(run_shard(*arguments, shard, settings, device, root))
            except Exception as error:  # one bad shard must not lose the others' results
                shard_died(shard, error)
    else:
        import os

        from distributed import Client, LocalCluster, as_completed

        threads = max(1, (os.cpu_count() or 1) // workers) if workers and device == "cpu" else None

        cluster = None if scheduler else LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.WARNING,
            local_directory=_dask_scratch(),
        )
        try:
            with Client(scheduler or cluster) as client:
                futures = {
                    client.submit(run_shard, *arguments, shard, settings, device, root, threads, key=f"{stage}-{model}-shard-{i}", pure=False): shard
                    for i, shard in enumerate(work)
                }
                for future in as_completed(futures):
                    try:
                        record(future.result())
                    except Exception as error:
                        shard_died(futures[future], error)
        finally:
            if cluster is not None:
                cluster.close()
    bar.close()
    report.done.sort()
    report.seconds = time.perf_counter() - start
    return report
