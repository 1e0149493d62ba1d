"""The model-only MD section (§3.3, Figs. 4–5): runs, temperatures, σ_model-only against σ_ref."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from hdpbench.book.analysis.common import spearman, stage_results, stage_rows
from hdpbench.book.analysis.sigma import confusion, confusion_summary
from hdpbench.core.compound import HALIDES
from hdpbench.pipeline.compute import collect
from hdpbench.pipeline.names import StageName


def md_start_sentence(dataset: str, md: pd.DataFrame, md_settings) -> str:
    """Where the model-MD runs of this build started, as a sentence: the rule (the authors' file and
    step range) and the files the stored runs actually started from (their ``start_from`` records)."""
    from hdpbench.io.authors import FrameSet, frame_set

    started = sorted({entry.split(" step ")[0] for entries in md.get("start_from", pd.Series(dtype=object)).dropna() for entry in entries})
    rule = (
        f"Each run starts from a random step 0–{md_settings.start_frame_max} (none dropped) of "
        f"{frame_set(md_settings.start_frames).describe()}"
    )
    if frame_set(md_settings.start_frames) is not FrameSet.MD_START:
        rule += " (not the authors' rule, which is `vasprun_prod_2.xml`, else `_1`)"
    return f"{rule}; in this build: {', '.join(f'`{name}`' for name in started) or 'no run'}."


def md_table(dataset: str, models: Sequence[str], **kwargs) -> pd.DataFrame:
    """One row per (model, compound): σ_model-only (Φ_model) and σ_ref, with the runs' fate."""
    rows = []
    for model in models:
        sigma_md = stage_results(StageName.SIGMA_MD, dataset, model, **kwargs)
        reference = {r["compound"]: r for r in collect(stage_results(StageName.SIGMA_REFERENCE_FRAMES, dataset, model, **kwargs))}
        for row in stage_rows(sigma_md, model, kwargs.get("compounds")):
            row["sigma_reference"] = reference.get(row["compound"], {}).get("sigma_reference")
            row["stopped"] = len(row["stopped_runs"])
            rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:
        table["abs_delta_sigma"] = (table["sigma_model_only"] - table["sigma_reference"]).abs()
    return table


def temperature_table(traces: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """Long table of MD temperature traces ({model: {compound: runs x steps}}): model, compound, run,
    step, T (K); steps after a run stopped are left out."""
    rows = []
    for model, per_compound in traces.items():
        for compound, temperatures in per_compound.items():
            for run, trace in enumerate(np.atleast_2d(temperatures)):
                kept = np.flatnonzero(np.isfinite(trace))
                rows.append(pd.DataFrame({"model": model, "compound": compound, "run": run, "step": kept, "temperature_K": trace[kept]}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["model", "compound", "run", "step", "temperature_K"])


def canonical_temperature_spread(target_K: float, n_atoms: int) -> float:
    """Standard deviation (K) of the instantaneous kinetic temperature of N atoms in the canonical
    ensemble, T·sqrt(2/(3N)): what a correct thermostat must show, not noise to be removed."""
    return float(target_K * np.sqrt(2.0 / (3.0 * n_atoms)))


def md_triangles(md: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """Fig. 4a for every model (σ_model-only against σ_ref, ``confusion_summary`` columns), then the
    paper's omat-0-medium row, which prints percentages only (lower and upper triangle)."""
    from hdpbench.data.published import FINDINGS

    panels = [
        {"source": "recomputed", "model": model,
         "counts": confusion(md[md["model"] == model]["sigma_reference"], md[md["model"] == model]["sigma_model_only"])["counts"]}
        for model in models
    ]
    table = confusion_summary(panels)
    paper = {column: np.nan for column in table.columns}
    paper.update({"source": "paper Fig. 4a", "model": "omat-0-medium", "more stable (%)": 100 * FINDINGS["md_lower_triangle"],
                  "less stable (%)": 100 * FINDINGS["md_upper_triangle"]})
    return pd.concat([table, pd.DataFrame([paper])], ignore_index=True)


def halide_triangles(md: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """Fig. 4b behind "6 %, mostly fluorides": per model and halide the ``confusion_summary`` of
    σ_model-only against σ_ref, and each halide's share of the model's upper-triangle compounds."""
    panels = []
    for model in models:
        rows = md[md["model"] == model]
        for halide in [h for h in HALIDES if h in set(rows["halide"])]:
            group = rows[rows["halide"] == halide]
            panels.append({"model": model, "halide": halide,
                           "counts": confusion(group["sigma_reference"], group["sigma_model_only"])["counts"]})
    table = confusion_summary(panels)
    if not table.empty:
        upper = table.groupby("model")["less stable (upper triangle)"].transform("sum")
        table["share of the model's less-stable compounds (%)"] = np.where(
            upper > 0, 100 * table["less stable (upper triangle)"] / upper.where(upper > 0, 1), np.nan)
    return table


def less_stable_by_halide(halides: pd.DataFrame) -> str:
    """A ``halide_triangles`` table as a phrase: per model, how many compounds it puts in a less
    stable class and their halides ("m puts 3 compounds in a less stable class (F: 2, Cl: 1)")."""
    parts = []
    for model, rows in halides.groupby("model", sort=False):
        counts = rows.set_index("halide")["less stable (upper triangle)"]
        total = int(counts.sum())
        if not total:
            parts.append(f"{model} puts no compound in a less stable class")
            continue
        by_halide = ", ".join(f"{halide}: {int(n)}" for halide, n in counts.items() if n)
        parts.append(f"{model} puts {total} compound{'s' if total > 1 else ''} in a less stable class ({by_halide})")
    return "; ".join(parts) if parts else "no compounds"


def rank_correlations(merged: pd.DataFrame, models: Sequence[str], target: str = "abs_delta_sigma",
                      against: Sequence[str] = ("rmse_omega2_thz2", "rmse_vg_thz_ang")) -> pd.DataFrame:
    """Fig. 5 per model: Spearman ρ (and its two-sided p, :func:`spearman`) of ``target`` against each
    ``against`` column, over the n compounds that have both values; NaN where ρ is undefined (n < 3 or
    a constant column)."""
    rows = []
    for model in models:
        data = merged[merged["model"] == model]
        row: dict[str, Any] = {"model": model}
        for column in against:
            pair = data[[target, column]].apply(pd.to_numeric, errors="coerce").dropna()
            rho, p = spearman(pair[target], pair[column])
            row.update({f"n ({column})": len(pair), f"rho ({column})": rho, f"p ({column})": p})
        rows.append(row)
    return pd.DataFrame(rows)
