"""The data and models pages: frame sets, the σ database self-check, the demo's validation, the registries (Table 1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from hdpbench.core.compound import HALIDES
from hdpbench.physics.anharmonicity import sigma_class


def frame_set_files(dataset: str, compound: str, frames: str) -> list[str]:
    """The production files (``MD/...`` member names) a stage reading frame set ``frames`` reads for one
    compound (:class:`~hdpbench.io.authors.FrameSet`)."""
    from hdpbench.pipeline.runner import cached_dataset

    return cached_dataset(str(dataset)).entries()[compound].production_files(frames)


def extended_aimd_note(dataset: str, compound: str) -> str:
    """What the extended frame set (``all``) adds to the paper's (``_1``, ``_2``) for one compound, in a
    sentence: the authors' 4 ps extension is ``vasprun_prod_3.xml`` … ``_5.xml``."""
    from hdpbench.io.authors import PAPER_SIGMA_FILES, FrameSet, production_file_number

    paper = set(frame_set_files(dataset, compound, FrameSet.PAPER))
    extra = [name for name in frame_set_files(dataset, compound, FrameSet.ALL) if name not in paper]
    later = [name for name in extra if production_file_number(name) > max(PAPER_SIGMA_FILES)]
    if later:
        return f"Files beyond the paper's σ frames: {', '.join(f'`{name}`' for name in later)}."
    if extra:
        return (
            f"This dataset has no extension beyond `_2`; the extended set adds {', '.join(f'`{name}`' for name in extra)}, "
            "the segment before `_1`: more AIMD frames, not a longer time."
        )
    return "This dataset has no production file beyond the paper's, so these maps equal the ones above."


def sigma_db_check(dataset: str, compounds: Sequence[str] | None = None, *, discard: int = 100) -> pd.DataFrame:
    """Self-check of σ_DFT against the dataset's summary database, one row per compound with a stored value.

    ``sigma_db``: ``sigma_300K_single`` as stored (values ≥ 2 included, which the authors treat as
    missing). ``sigma_db_recomputed``: the same number recomputed like for like, as the authors'
    ``collect_data.py`` computes it: every ``vasprun_prod*.xml``, no frame dropped, one pooled ratio of
    standard deviations (reference forces, Φ_ref). ``sigma_paper``: the σ_DFT of the paper's Fig. 3,
    ⟨σ(t)⟩ over ``vasprun_prod_1.xml`` and ``_2.xml`` after dropping ``discard`` steps of each.
    Dimensionless; frame counts are of the two frame sets.
    """
    from pathlib import Path

    from hdpbench.io.authors import PAPER_SIGMA_FILES, FrameSet, production_file_number
    from hdpbench.physics.anharmonicity import sigma
    from hdpbench.pipeline.runner import cached_dataset

    data = cached_dataset(str(dataset))
    rows = []
    for name in compounds if compounds is not None else data.compounds():
        stored = data.entries()[name].summary.get("raw", {}).get("sigma_300K_single")
        if stored is None:
            continue
        # one read of the archive: the paper's frames (_1 then _2, file order) are a subset of all of them
        every = data.load(name, discard=0, frames=FrameSet.ALL)
        trajectory = every.trajectory
        pooled = averaged = np.nan
        kept = np.zeros(0, dtype=int)
        if trajectory is not None:
            pooled = sigma(trajectory, every.reference_supercell, every.force_constants).sigma_pooled
            numbers = [production_file_number(f"MD/{Path(source.rsplit(':', 1)[-1]).name}") for source in trajectory.source_files]
            in_paper = np.array([numbers[k] in PAPER_SIGMA_FILES for k in trajectory.frame_source], dtype=bool)
            kept = np.flatnonzero(in_paper & (trajectory.frame_index >= discard))
            if len(kept):
                paper = trajectory.select(kept)
                averaged = sigma(paper, every.reference_supercell, every.force_constants).sigma_mean_per_frame
        rows.append(
            {
                "compound": name, "halide": every.halide, "sigma_db": float(stored), "sigma_db_recomputed": pooled,
                "sigma_paper": averaged, "frames_db": every.n_frames, "frames_paper": len(kept),
            }
        )
    return pd.DataFrame(rows)


def sigma_db_note(dataset: str) -> str:
    """Whose stored value the self-check tests: the authors' DFT database, or a database this project
    generated itself (then agreement shows the convention was reproduced, not that DFT was)."""
    from hdpbench.data.datasets import registered_datasets

    spec = registered_datasets().get(str(dataset))
    if spec is not None and spec.demo:
        return (
            "On the demo the database was written by this project's generator in the authors' convention, so the left "
            "panel checks that the convention is reproduced; with the authors' database the same check tests their data."
        )
    return "The stored values are the authors' own."


def sigma_db_agreement(check: pd.DataFrame) -> dict[str, Any]:
    """What the self-check found: the largest relative deviation of the like-for-like recomputation
    from the stored σ, and the median relative difference between the paper's σ and the stored one."""
    recomputed = (check["sigma_db_recomputed"] / check["sigma_db"] - 1).abs()
    convention = check["sigma_paper"] / check["sigma_db"] - 1
    return {
        "n": len(check),
        "max_relative_deviation": float(recomputed.max()) if len(check) else float("nan"),
        "worst_compound": str(check.loc[recomputed.idxmax(), "compound"]) if len(check) else "",
        "median_paper_vs_db": float(convention.median()) if len(check) else float("nan"),
        "paper_vs_db_range": (float(convention.min()), float(convention.max())) if len(check) else (float("nan"),) * 2,
        "same_class": int((sigma_class(check["sigma_paper"]) == sigma_class(check["sigma_db"])).sum()),
    }


def sigma_db_sentence(agreement: dict[str, Any], tolerance: float = 1e-6) -> str:
    """The self-check's finding on the like-for-like recomputation, in words (no compound is named when
    all agree within ``tolerance``, relative)."""
    if not agreement["n"]:
        return "No compound of this dataset has a stored σ_DFT, so there is nothing to check."
    if agreement["max_relative_deviation"] <= tolerance:
        return f"For all {agreement['n']} compounds the like-for-like recomputation equals the stored value (relative deviation at most {tolerance:g})."
    return (
        f"Over {agreement['n']} compounds the like-for-like recomputation deviates from the stored value by at most "
        f"{100 * agreement['max_relative_deviation']:.2g} % ({agreement['worst_compound']})."
    )


def readable_failure(outcome: str) -> str:
    """A generator's failure record ("failed: relaxation: CalculationFailed: (sygvd) ... info=378") as a
    reader's sentence: which stage failed and the library's error class, not its raw message."""
    parts = [part.strip() for part in outcome.removeprefix("failed:").split(":")]
    stage = parts[0] if parts and parts[0] else "generation"
    error = parts[1] if len(parts) > 1 else "an error"
    detail = " in its LAPACK eigensolver" if "sygvd" in outcome or "syevd" in outcome else ""
    return f"the reference calculation stopped during {stage} ({error}{detail})"


def demo_validation_table(dataset: str) -> pd.DataFrame | None:
    """The demo generator's validation report (``validation.json`` beside the archives) as a table:
    relaxed lattice constant against literature, minimum Γ frequency, σ_ref and its class; None for a
    dataset without one (the authors' data)."""
    import json

    from hdpbench.data.datasets import get_dataset
    from hdpbench.demo.compounds import by_formula, ionic_radius_lattice_constant

    path = get_dataset(dataset, download=False).root / "validation.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    rows = []
    for formula, row in report["compounds"].items():
        literature = row.get("a_literature")
        try:
            ionic = ionic_radius_lattice_constant(by_formula(formula))
        except KeyError:  # a generated dataset with compounds this release does not list
            ionic = None
        rows.append(
            {
                "compound": formula,
                "halide": row["halide"],
                "a relaxed (Å)": row["a_relaxed"],
                "a literature (Å)": literature,
                "Δa (%)": 100 * (row["a_relaxed"] - literature) / literature if literature else None,
                "a ionic radii (Å)": ionic,
                "Δa vs ionic (%)": 100 * (row["a_relaxed"] - ionic) / ionic if ionic else None,
                "min Γ frequency (THz)": row["G_min_ph_freq"],
                "largest Γ acoustic |f| (THz)": row.get("gamma_acoustic_max_thz"),
                "Φ_ref symmetrised": "yes" if row.get("force_constants_symmetrized") else "no",
                "σ_ref": row["sigma_300K_single"],
                "class": row["sigma_class"],
            }
        )
    halide_order = {halide: k for k, halide in enumerate(HALIDES)}
    table = pd.DataFrame(rows)
    table = table.sort_values(["halide", "compound"], key=lambda c: c.map(halide_order) if c.name == "halide" else c)
    table = table.reset_index(drop=True)
    table.attrs["rejected"] = report.get("rejected", {})
    return table


def generation_record(dataset: str) -> dict[str, Any] | None:
    """Method, settings, seed rule and versions of a generated dataset (from its first compound's
    provenance; every compound carries its own), or None for data without provenance."""
    from hdpbench.data.datasets import get_dataset

    data = get_dataset(dataset, download=False)
    for formula in data.compounds():
        record = data.generation_record(formula)
        if record:
            return record
    return None


def model_registry_table(models: Sequence[str] | None = None) -> pd.DataFrame:
    """The registered models (or those named): paper label, licence, dtype, whether the weights are
    here and, for the demo models, what they were trained on and their held-out force error."""
    import json

    from hdpbench.core import paths
    from hdpbench.models.registry import get_model_spec, model_table

    rows = []
    for row in model_table():
        if models is not None and row["name"] not in models:
            continue
        spec = get_model_spec(row["name"])
        entry = {
            "model": row["name"],
            "paper label": row["label"] if spec.paper_order is not None else "",
            "licence": row["license"],
            "dtype": row["dtype"],
            "weights here": "yes" if row["available"] else ("on first use" if spec.isolated else "no"),
            "kind": spec.kind,
            "source": spec.mace_mp_name or spec.url or spec.path or spec.factory or (spec.isolated or {}).get("calculator") or "",
            "fine-tuned from": (row["finetune"] or {}).get("base", ""),
        }
        demo_dir = paths.model_registry_dir() / "demo" / row["name"]
        training, heldout = demo_dir / "training_set.json", demo_dir / "heldout_force_mae.json"
        if training.is_file() and row["available"]:  # a model still training has inputs, no results
            entry["training structures"] = json.loads(training.read_text())["count"]
        if heldout.is_file():
            report = json.loads(heldout.read_text())
            errors = [v["force_mae_ev_ang"] for v in report["per_compound"].values()]
            entry["held-out force MAE (eV/Å)"] = float(np.mean(errors)) if errors else None
            entry["training time (min)"] = report.get("training_seconds", float("nan")) / 60
        rows.append(entry)
    table = pd.DataFrame(rows)
    if "training structures" in table:  # a count, not a float, though foundation models have none
        table["training structures"] = table["training structures"].astype("Int64")
    return table


# The paper's Table 1 columns, from the registry fields that hold them.
TABLE1_COLUMNS = {
    "label": "Model name",
    "elements_covered": "Elements covered",
    "training_data": "Training dataset",
    "level_of_theory": "Level of theory",
    "notes": "Notes",
}


def table1(models: Sequence[str] | None = None) -> pd.DataFrame:
    """The paper's Table 1 (Model name, Elements covered, Training dataset, Level of theory, Notes)
    for every registered model, or those named, in registry order (the paper's four first).

    Values are the registry's (``models/*.yaml``). A fine-tuned entry without its own takes
    elements and level of theory from its base; "Elements covered" otherwise falls back to the
    count of the entry's ``elements``. Unknown values are None. The index is the registry name.
    """
    from hdpbench.models.calculators import parse_elements
    from hdpbench.models.registry import registered_models

    specs = registered_models()
    rows = {}
    for name, spec in specs.items():
        if models is not None and name not in models:
            continue
        base = specs.get((spec.extra.get("finetune") or {}).get("base", ""))
        elements = spec.elements_covered
        if elements is None and spec.elements is not None:
            elements = len(parse_elements(spec.elements, source=spec.source_file or name))
        if elements is None and base is not None:
            elements = base.elements_covered
        notes = spec.notes
        if notes is None and base is not None:
            notes = f"Fine-tuned here (PFT) from {base.label or base.name}"
        rows[name] = {
            "Model name": spec.label or name,
            "Elements covered": elements,
            "Training dataset": spec.training_data,
            "Level of theory": spec.level_of_theory or (base.level_of_theory if base is not None else None),
            "Notes": notes,
        }
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(TABLE1_COLUMNS.values()))


def heldout_force_table(models: Sequence[str]) -> pd.DataFrame:
    """Per-compound force MAE of each demo model on the production frames it never saw."""
    import json

    from hdpbench.core import paths

    rows = []
    for model in models:
        path = paths.model_registry_dir() / "demo" / model / "heldout_force_mae.json"
        if path.is_file():
            for formula, values in json.loads(path.read_text())["per_compound"].items():
                rows.append({"model": model, "compound": formula, **values})
    return pd.DataFrame(rows)


def measured_call_costs(report_file, models: Sequence[str]) -> str:
    """'0.41 s per 135-atom structure for sevennet-0 against 0.098 s for chgnet-0.3.0, measured on
    <hardware>' from ``benchmarks/bench_real_models.py``'s JSON; a sentence naming the benchmark
    where the file or a model is missing (the page never prints a number it did not read)."""
    import json
    from pathlib import Path

    try:
        report = json.loads(Path(report_file).read_text())
        rows = [(name, report["models"][name]["per_structure_s"]) for name in models]
    except (OSError, ValueError, KeyError):
        return "measured by `benchmarks/bench_real_models.py`, README *Benchmarks*"
    costs = " against ".join(f"{seconds:.2g} s for {name}" for name, seconds in rows)
    return f"per 135-atom structure, {costs} ({report.get('hardware', 'this machine')}; `benchmarks/results/real_models_cpu.json`)"
