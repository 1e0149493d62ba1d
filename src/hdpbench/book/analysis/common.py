"""Stage results gathered for the pages, the pages' settings, and wording shared by every section."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from hdpbench.physics.anharmonicity import sigma_class
from hdpbench.pipeline.compute import collect
from hdpbench.pipeline.runner import run_stage_in_process
from hdpbench.pipeline.settings import RunSettings
from hdpbench.pipeline.store import StageResults


def stage_results(
    stage: str, dataset: str, model: str, *, compounds: Sequence[str] | None = None, settings: RunSettings | None = None,
    device: str = "cpu", results_root=None,
) -> StageResults:
    """The stage's results for these compounds, computed where missing."""
    from hdpbench.pipeline.runner import cached_dataset

    settings = settings or RunSettings()
    names = list(compounds) if compounds is not None else cached_dataset(str(dataset)).compounds()
    return run_stage_in_process(stage, str(dataset), str(model), names, settings, device, results_root)


def dataset_compounds(dataset: str) -> list[str]:
    """The compounds a dataset has on this machine (the book's default compound list)."""
    from hdpbench.pipeline.runner import cached_dataset

    return cached_dataset(str(dataset)).compounds()


def stage_rows(stage: StageResults, model: str, compounds: Sequence[str] | None) -> list[dict[str, Any]]:
    """The JSON results of the done compounds of a stage, one dict per compound with the model named."""
    return [{"model": model, **row} for row in collect(stage, compounds)]


HALIDE_NAMES = {"F": "fluorides", "Cl": "chlorides", "Br": "bromides", "I": "iodides"}


# below this many compounds a scatter of one halide shows no trend: Fig. 1a then shows every halide
MIN_COMPOUNDS_FOR_SCATTER = 3


# a Spearman ρ needs at least 3 pairs; below SMALL_N_FOR_CORRELATION the page adds a caution
MIN_COMPOUNDS_FOR_CORRELATION = 3


SMALL_N_FOR_CORRELATION = 10


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Spearman ρ of two equal-length sequences (``scipy.stats.spearmanr``) and its two-sided p.

    Below SMALL_N_FOR_CORRELATION pairs p is exact (every permutation of ``y``'s ranks: scipy's
    t approximation gives p = 0 for ρ = ±1 on 4 points, where the exact p is 1/12); from there on it is
    scipy's. (NaN, NaN) where either sequence is constant (ρ undefined) or has fewer than 3 values.
    """
    import itertools

    from scipy.stats import rankdata, spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    result = spearmanr(x, y)
    rho = float(result.statistic)
    if len(x) >= SMALL_N_FOR_CORRELATION:
        return rho, float(result.pvalue)
    rx, ry = rankdata(x), rankdata(y)
    permuted = np.array(list(itertools.permutations(ry)))  # n! x n, at most 9! rows
    rx_c, permuted_c = rx - rx.mean(), permuted - permuted.mean(axis=1, keepdims=True)
    rhos = permuted_c @ rx_c / (np.linalg.norm(rx_c) * np.linalg.norm(permuted_c, axis=1))
    return rho, float(np.mean(np.abs(rhos) >= abs(rho) - 1e-12))


def supercell_atoms(dataset: str, compound: str) -> int:
    """Atoms in a compound's reference supercell (the MD cell)."""
    from hdpbench.data.datasets import get_dataset

    return get_dataset(dataset, download=False).load(compound, trajectories=False).n_atoms


def classes(values: Sequence[float]) -> np.ndarray:
    return sigma_class(np.asarray(values, dtype=float))


def book_settings(
    *, dtype: str = "float32", n_frames: int | None = None, md_steps: int | None = None, md_runs: int | None = None,
    kpca_frames: int | None = None, discard: int | None = None, smoke: bool = False,
) -> RunSettings:
    """The notebooks' parameters as stage settings (None keeps the paper's value)."""
    settings = (RunSettings.smoke() if smoke else RunSettings()).with_dtype(dtype)
    overrides = []
    if n_frames is not None:
        overrides.append(f"sigma.max_frames={n_frames}")
    if md_steps is not None:
        overrides.append(f"md.steps={md_steps}")
    if md_runs is not None:
        overrides.append(f"md.runs_per_compound={md_runs}")
    if kpca_frames is not None:
        overrides.append(f"kpca.max_frames_per_set={kpca_frames}")
    if discard is not None:
        overrides += [f"sigma.discard={discard}", f"kpca.discard={discard}"]
    return settings.with_overrides(overrides)


def dataset_label(dataset: str) -> str:
    """What a figure says about its data: the paper's DFT, or plainly the demo's GFN1-xTB."""
    from hdpbench.data.datasets import registered_datasets

    spec = registered_datasets().get(str(dataset))
    if spec is not None and spec.demo:
        return f"Dataset '{spec.name}': GFN1-xTB reference made by this project, NOT the paper's DFT"
    if spec is not None:
        return f"Dataset '{spec.name}': {spec.title}"
    return f"Dataset at {dataset} (user data)"


class prose:
    """Text to glue into Markdown prose as is ({glue:md}); IPython's Markdown would read a string
    that happens to name an existing file (e.g. a checkpoint path) as that file."""

    def __init__(self, text: str):
        self.text = str(text)

    def _repr_markdown_(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


def book_execution_times() -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """Seconds each page of the latest `make book` took (pages executed so far), with the build's
    parameters; None when no build has recorded any."""
    import json

    from hdpbench.book.build import execution_times_path

    path = execution_times_path()
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    table = pd.DataFrame(record.get("pages", []), columns=["page", "seconds"]).set_index("page")
    return table, record


def range_text(values, digits: int = 2) -> str:
    """The span of ``values`` for prose: "0.03 to 0.12", or one number when both ends print alike."""
    low, high = (f"{float(v):.{digits}f}" for v in (np.min(values), np.max(values)))
    return low if low == high else f"{low} to {high}"


# -- triangles, rank correlations and σ(t) traces (σ and model-MD pages) ----------------------------
def fraction_text(count, denominator, percent=None) -> str:
    """A fraction as a table cell: "3 of 5 (60 %)"; a published percentage without counts as
    "38 % (counts not printed)"; "not printed" when there is nothing."""
    def known(value) -> bool:
        return value is not None and not (isinstance(value, float) and np.isnan(value))

    if known(count) and known(denominator):
        count, denominator = int(count), int(denominator)
        # no-break spaces: a narrow table column must not break "(100 %)" apart
        return f"{count}\u00a0of\u00a0{denominator}" + (f" ({100 * count / denominator:.0f}\u00a0%)" if denominator else "")
    if known(percent):
        return f"{percent:.0f}\u00a0% (counts not printed)"
    return "not printed"
