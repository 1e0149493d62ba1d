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

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdpbench.pipeline.settings import RunSettings
from hdpbench.pipeline.stages import get_stage


def shards(compounds: Sequence[str], shard_size: int) -> list[list[str]]:
    """Fixed shards of the sorted compound names."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be ≥ 1, not {shard_size}")
    names = sorted(set(compounds))
    return [names[i : i + shard_size] for i in range(0, len(names), shard_size)]


@functools.lru_cache(maxsize=4)
def cached_model(model: str, device: str, dtype: str, accelerator: str | None = None):
    from hdpbench.models.evaluate import load_model

    return load_model(model, device=device, dtype=dtype, accelerator=accelerator)


@functools.lru_cache(maxsize=4)
def cached_dataset(dataset: str):
    from hdpbench.data.datasets import get_dataset

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
    stage: str, dataset: str, model: str, shard: list[str], settings: RunSettings, device: str, results_root: str | None,
    accelerator: str | None = None,
):
    """Run (or reuse) one stage, and the stages it needs, for these compounds here; returns its results store.

    The dataset and the model are loaded once per process (cached). BLAS runs single-threaded, as in
    Dask workers, so results are bit-identical however they were run (a multi-threaded matrix
    product sums in another order). A failing compound is written down and the rest still run.
    """
    from threadpoolctl import threadpool_limits

    from hdpbench.pipeline.compute import require_elements
    from hdpbench.pipeline.stages import run_stage

    table_entry = get_stage(stage)
    loaded = cached_model(model, device, settings.group(table_entry.dtype_group).dtype, accelerator)
    unknown: dict[str, Exception] = {}
    for name in shard:  # an element the model lacks fails its compound, not the shard with it
        try:
            require_elements(loaded, [name])
        except Exception as error:
            unknown[name] = error
    with threadpool_limits(limits=1, user_api="blas"):
        store = run_stage(
            stage, cached_dataset(dataset), loaded, compounds=[n for n in shard if n not in unknown], settings=settings,
            device=device, results_root=results_root, progress=False, errors="record",
        )  # fmt: skip
    for name, error in unknown.items():
        store.record_failure(name, error)
    return store


def _store_after_disk_failure(stage, dataset, model, settings, device, results_root, accelerator):
    """The stage's results store after a write failed (a full disk), to report what was saved before."""
    from hdpbench.pipeline.stages import open_store

    table_entry = get_stage(stage)
    loaded = cached_model(model, device, settings.group(table_entry.dtype_group).dtype, accelerator)
    return open_store(table_entry, settings, cached_dataset(dataset), loaded, results_root)


def run_shard(
    stage: str,
    dataset: str,
    model: str,
    shard: list[str],
    settings: RunSettings,
    device: str,
    results_root: str | None,
    torch_threads: int | None = None,
    accelerator: str | None = None,
) -> dict[str, Any]:
    """Run one stage on one shard (in whatever process calls it); returns what was done and how long it took."""
    start = time.perf_counter()
    from hdpbench.core.errors import StoreWriteError
    from hdpbench.core.torch_setup import pin_threads

    pin_threads(torch_threads)  # CPU workers share the cores instead of each taking all of them
    stopped = None
    try:
        result = run_stage_in_process(stage, dataset, model, shard, settings, _worker_device(device), results_root, accelerator)
    except StoreWriteError as error:  # a full disk stops the shard; what was saved before it stays done
        stopped = error
        try:
            result = _store_after_disk_failure(stage, dataset, model, settings, _worker_device(device), results_root, accelerator)
        except Exception:
            raise error from None
    done = [name for name in shard if result.is_done(name)]
    not_applicable = result.not_applicable([n for n in shard if n not in done])
    failed = {name: record["error"] for name, record in result.failures([n for n in shard if n not in done and n not in not_applicable]).items()}
    for name in shard:
        if name in done or name in failed or name in not_applicable:
            continue
        if stopped is None:
            failed[name] = "no result and no recorded failure"
        elif Path(stopped.path).name.startswith(f"{name}."):  # the compound whose file could not be written
            failed[name] = str(stopped)
        else:
            failed[name] = f"not computed: the run stopped when {stopped.path} could not be written"
    return {
        "shard": shard, "done": done, "failed": failed, "not_applicable": not_applicable,
        "seconds": time.perf_counter() - start, "directory": str(result.directory),
    }  # fmt: skip


def _dask_scratch() -> str | None:
    """Dask's spill and scratch space under the project cache (not ``/tmp/dask-scratch-space``);
    Dask's default where the cache cannot be written."""
    import warnings

    from hdpbench.core.errors import StoreWriteError
    from hdpbench.core.paths import cache_dir
    from hdpbench.core.storage import require_writable

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
    not_applicable: dict[str, str] = field(default_factory=dict)  # compound → why the stage does not apply (no AIMD frames)
    seconds: float = 0.0
    directory: str | None = None

    def summary_line(self) -> str:
        state = "ok" if not self.failed else f"{len(self.failed)} FAILED (a rerun retries only these)"
        reasons = sorted(set(self.not_applicable.values()))
        skipped = f"{len(self.not_applicable)} {'; '.join(reasons)}, " if self.not_applicable else ""
        return (
            f"{self.stage} [{self.model}]: {len(self.done)}/{self.compounds} compounds done, {skipped}{state}, "
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
    accelerator: str | None = None,
) -> RunReport:
    """Run ``stage`` for ``model`` on ``dataset`` shard by shard; see the module docstring.

    ``accelerator``: the MACE tensor-product backend (``e3nn``, ``cueq``); None: this process's
    :func:`~hdpbench.models.evaluate.default_accelerator`, resolved here so that workers on another
    machine run what was asked."""
    from tqdm.auto import tqdm

    from hdpbench.core.paths import results_dir
    from hdpbench.core.storage import require_writable

    get_stage(stage)  # an unknown name fails here, with suggestions
    from hdpbench.models.evaluate import default_accelerator

    accelerator = accelerator or default_accelerator()
    names = list(compounds) if compounds is not None else cached_dataset(str(dataset)).compounds()
    work = shards(names, shard_size)
    root = str(require_writable(Path(results_root) if results_root is not None else results_dir()))
    report = RunReport(stage=stage, model=str(model), compounds=len({*names}), shards=len(work))
    start = time.perf_counter()
    bar = tqdm(total=report.compounds, desc=f"{stage} [{model}]", unit="compound", disable=not progress)

    def record(outcome: dict[str, Any]) -> None:
        report.done.extend(outcome["done"])
        report.failed.update(outcome["failed"])
        report.not_applicable.update(outcome.get("not_applicable", {}))
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
                record(run_shard(*arguments, shard, settings, device, root, None, accelerator))
            except Exception as error:  # one bad shard must not lose the others' results
                shard_died(shard, error)
    else:
        import os

        from distributed import Client, LocalCluster, as_completed

        threads = max(1, (os.cpu_count() or 1) // workers) if workers and device == "cpu" else None
        if os.environ.get("HDPBENCH_THREADS"):  # the user's count wins over the share of the cores
            from hdpbench.core.torch_setup import default_threads

            threads = default_threads()

        cluster = None if scheduler else LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.WARNING,
            local_directory=_dask_scratch(),
        )
        try:
            try:
                client = Client(scheduler or cluster)
            except (OSError, TimeoutError) as error:
                if scheduler is None:
                    raise
                from hdpbench.core.errors import UsageError

                raise UsageError(f"--scheduler {scheduler}: cannot connect ({error}); is the Dask scheduler running there?") from None
            with client:
                futures = {
                    client.submit(run_shard, *arguments, shard, settings, device, root, threads, accelerator, key=f"{stage}-{model}-shard-{i}", pure=False): shard
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
