"""Cost model: wall time of each stage from measured throughput (the benchmarks' JSON) and a workload.

Nothing here is guessed: every rate comes from a file in ``benchmarks/results/`` that records the
hardware it was measured on. A device without measurements gets no estimate (and says so), rather
than a number extrapolated from another device. The rates that depend on the model (force calls,
MD) come only from measurements of one model class, ``COST_MODEL``: a MACE as wide as the paper's
medium foundation models, never the fastest model that happens to have been timed (CHGNet, the small
demo models).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hdpbench.core import paths
from hdpbench.pipeline.names import StageName


@dataclass(frozen=True)
class Workload:
    """Work per model. ``paper()`` is the full dataset as the paper used it (spec §1, §5–§7)."""

    compounds: int
    atoms: int = 80
    displaced_supercells_per_compound: int = 10  # finite displacements for Φ_model (Fm-3m: 4–10)
    reference_frames_per_compound: int = 3400  # AIMD frames re-evaluated (after the discard)
    md_runs_per_compound: int = 2
    md_steps_per_run: int = 2000
    kpca_compounds: int = 5  # paper Table 2
    kpca_frames_per_set: int = 100

    @classmethod
    def paper(cls) -> Workload:
        return cls(compounds=1682)


@dataclass(frozen=True)
class Rates:
    """Measured throughputs on one device, each with the file it came from."""

    device: str
    evaluate_frames_per_s: float | None = None  # 80-atom structures, batched evaluator
    md_atom_steps_per_s: float | None = None  # batched MD
    sigma_frames_per_s: float | None = None
    rematch_pairs_per_s: float | None = None  # kernel entries per second (blockwise kernel, as the stage)
    sources: tuple[str, ...] = ()


# The model the paper's cost is estimated for: the width of MACE-MP/OMAT "medium" (128 channels, L=1),
# as hdpbench.pipeline.benchmarking.random_mace_label names it in the benchmark reports
COST_MODEL = "ScaleShiftMACE 128 channels"
MODEL_DEPENDENT_RATES = ("evaluate_frames_per_s", "md_atom_steps_per_s")


def measured_rates(device: str, directory: Path | None = None, *, model_class: str | None = COST_MODEL) -> Rates:
    """The best throughput of each kind found in the benchmark JSON files for ``device`` ('cpu', 'cuda').

    ``model_class``: model-dependent rates only from reports whose ``model`` starts with it (None: any)."""
    directory = directory or paths.project_root() / "benchmarks" / "results"
    found: dict[str, float] = {}
    source_of: dict[str, str] = {}  # the file each kept rate came from (a rate beaten later is not a source)
    for path in sorted(directory.glob("*.json")):
        report = json.loads(path.read_text())
        if not str(report.get("device", "cpu")).startswith(device):
            continue
        rates = {
            "evaluate_frames_per_s": report.get("batched_frames_per_s") if report.get("atoms_per_frame") == 80 else None,
            "md_atom_steps_per_s": report.get("batched_atom_steps_per_s"),
            "sigma_frames_per_s": report["frames"] / report["vectorised_s"] if report.get("benchmark") == "sigma" else None,
            "rematch_pairs_per_s": report.get("rematch_pairs_per_s"),
        }
        for key, value in rates.items():
            if key in MODEL_DEPENDENT_RATES and model_class is not None and not str(report.get("model", "")).startswith(model_class):
                continue
            if value and value > found.get(key, 0.0):
                found[key] = float(value)
                model = report.get("model")
                source_of[key] = f"{path.name} ({model})" if model else path.name
    return Rates(device=device, sources=tuple(sorted(set(source_of.values()))), **found)


def _seconds(amount: float, rate: float | None) -> float | None:
    return amount / rate if rate else None


def _md_frames(w: Workload) -> int:
    return w.compounds * w.md_runs_per_compound * w.md_steps_per_run


# The work of each stage of the stage table (hdpbench.pipeline.stages) and the rate that measures it.
STAGE_COST: dict[StageName, Callable[[Workload, Rates], float | None]] = {
    StageName.PHONONS: lambda w, r: _seconds(w.compounds * w.displaced_supercells_per_compound, r.evaluate_frames_per_s),
    StageName.SIGMA_REFERENCE_FRAMES: lambda w, r: _seconds(w.compounds * w.reference_frames_per_compound, r.evaluate_frames_per_s),
    StageName.MD: lambda w, r: _seconds(_md_frames(w) * w.atoms, r.md_atom_steps_per_s),
    StageName.SIGMA_MD: lambda w, r: _seconds(_md_frames(w), r.sigma_frames_per_s),
    StageName.KPCA: lambda w, r: _seconds(w.kpca_compounds * (2 * w.kpca_frames_per_set) ** 2, r.rematch_pairs_per_s),
}


def estimate(workload: Workload, rates: Rates, stages: Sequence[str] | None = None) -> dict[str, Any]:
    """Seconds per stage for one model (None where the rate was never measured on this device);
    ``stages``: only these (e.g. the plan of one stage, its needs included), default all."""
    names = [StageName(s) for s in stages] if stages is not None else list(STAGE_COST)
    per_stage = {name.value: STAGE_COST[name](workload, rates) for name in names}
    known = [s for s in per_stage.values() if s is not None]
    return {
        "device": rates.device,
        "workload": asdict(workload),
        "seconds_per_stage": per_stage,
        "total_hours": sum(known) / 3600 if known else None,
        "complete": all(s is not None for s in per_stage.values()),
        "sources": list(rates.sources),
    }


def format_estimate(result: dict[str, Any], models: int = 1) -> str:
    work = result["workload"]
    frames = f" ({work['reference_frames_per_compound']} reference frames each)" if StageName.SIGMA_REFERENCE_FRAMES in result["seconds_per_stage"] else ""
    lines = [f"Estimated cost on {result['device']} for {work['compounds']} compounds{frames}, per model:"]
    for stage, seconds in result["seconds_per_stage"].items():
        value = "not measured on this device" if seconds is None else f"{seconds / 3600:10.2f} h"
        lines.append(f"  {stage:24s} {value}")
    if result["total_hours"] is not None:
        suffix = "" if result["complete"] else " (stages not measured are left out)"
        lines.append(f"  {'total':24s} {result['total_hours']:10.2f} h per model, {models * result['total_hours']:.2f} h for {models} model(s){suffix}")
    lines.append("  rates from: " + ("; ".join(result["sources"]) or "no benchmark files for this device"))
    return "\n".join(lines)
