"""The anharmonicity section (§3.2, Figs. 3, S7–S9): σ tables, confusion matrices, σ(t) traces."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from hdpbench.book.analysis.common import fraction_text, stage_results, stage_rows
from hdpbench.physics.anharmonicity import confusion_matrix
from hdpbench.pipeline.names import StageName


def sigma_table(dataset: str, models: Sequence[str], **kwargs) -> pd.DataFrame:
    """One row per (model, compound): σ_ref, σ_model(Φ_ref), σ_model(Φ_model), force errors."""
    rows = []
    for model in models:
        rows += stage_rows(stage_results(StageName.SIGMA_REFERENCE_FRAMES, dataset, model, **kwargs), model, kwargs.get("compounds"))
    table = pd.DataFrame(rows)
    if not table.empty:
        table["delta_sigma_reference_fc"] = table["sigma_model_fc_reference"] - table["sigma_reference"]
        table["delta_sigma_model_fc"] = table["sigma_model_fc_model"] - table["sigma_reference"]
    return table


def per_species_sigma_table(sigma: pd.DataFrame) -> pd.DataFrame:
    """Per compound: σ_ref of each element's atoms (reference forces and Φ_ref, most anharmonic first),
    the most anharmonic element, and every model's force MAE on the same frames.

    One text column instead of one column per element: a dataset of many compounds would otherwise
    give a table that is mostly empty.
    """
    if sigma.empty:
        return pd.DataFrame()
    first_model = sigma["model"].iloc[0]  # the reference columns are the same for every model
    rows = []
    for _, row in sigma[sigma["model"] == first_model].iterrows():
        by_species = sorted(row["sigma_per_species_reference"].items(), key=lambda item: -item[1])
        rows.append(
            {
                "compound": row["compound"],
                "halide": row["halide"],
                "most anharmonic": by_species[0][0],
                "its σ_ref": by_species[0][1],
                "σ_ref by element": " · ".join(f"{element} {value:.2f}" for element, value in by_species),
            }
        )
    table = pd.DataFrame(rows).set_index("compound")
    forces = sigma.pivot(index="compound", columns="model", values="force_mae_ev_ang")
    forces = forces[list(dict.fromkeys(sigma["model"]))].add_prefix("force MAE (eV/Å) ")
    return table.join(forces)


def triangle_counts(counts: np.ndarray) -> dict[str, Any]:
    """What a 3x3 confusion matrix (rows: reference class, most stable first) says, with denominators:
    total, correct (diagonal), more stable than the reference (lower triangle, among the compounds not
    in the most stable reference class) and less stable (upper triangle, among those not in the least
    stable reference class). A fraction with a zero denominator is NaN."""
    counts = np.asarray(counts, dtype=int)
    total, correct = int(counts.sum()), int(np.trace(counts))
    lower, lower_of = int(np.tril(counts, -1).sum()), int(counts[1:].sum())
    upper, upper_of = int(np.triu(counts, 1).sum()), int(counts[:2].sum())

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {
        "total": total, "correct": correct, "correct_fraction": ratio(correct, total),
        "more_stable_count": lower, "more_stable_denominator": lower_of, "more_stable_fraction": ratio(lower, lower_of),
        "less_stable_count": upper, "less_stable_denominator": upper_of, "less_stable_fraction": ratio(upper, upper_of),
    }


def confusion(reference: Sequence[float], model: Sequence[float]) -> dict[str, Any]:
    """Counts, row-normalised matrix and the fractions the paper quotes (off-diagonal triangles), with
    their counts and denominators (see ``triangle_counts``); ``accuracy`` is the correct fraction."""
    counts, normalised = confusion_matrix(reference, model)
    summary = triangle_counts(counts)
    return {"counts": counts, "normalised": normalised, "accuracy": summary["correct_fraction"], **summary}


SIGMA_APPROACHES = (("reference_fc", "sigma_model_fc_reference", "Φ_ref"), ("model_fc", "sigma_model_fc_model", "Φ_model"))


def sigma_confusion_panels(sigma: pd.DataFrame, models: Sequence[str]) -> list[dict[str, Any]]:
    """Fig. 3 panels from :func:`sigma_table` rows: per approach (Φ_ref, then Φ_model) and model, the
    counts against σ_ref, accuracy, a title and the published counts where the model is the paper's."""
    from hdpbench.data.published import fig3_counts
    from hdpbench.models.registry import display_name

    panels = []
    for approach, column, name in SIGMA_APPROACHES:
        for model in models:
            rows = sigma[sigma["model"] == model]
            result = confusion(rows["sigma_reference"], rows[column])
            panels.append(
                {
                    "model": model, "approach": name, "approach_key": approach, "counts": result["counts"],
                    "accuracy": result["accuracy"], "title": f"{display_name(model)}\n{name}",
                    "published": fig3_counts(model, approach),
                }
            )
    return panels


def confusion_summary(panels: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per confusion panel ({counts, and any descriptive keys such as source, model,
    approach}): the descriptive keys, then n, correct / n, lower triangle / compounds outside the most
    stable reference class, upper triangle / compounds outside the least stable one (percentages)."""
    rows = []
    for panel in panels:
        summary = triangle_counts(panel["counts"])
        rows.append(
            {
                **{k: v for k, v in panel.items() if k not in ("counts", "published", "title", "approach_key", "accuracy")},
                "n": summary["total"],
                "correct": summary["correct"],
                "correct (%)": 100 * summary["correct_fraction"],
                "more stable (lower triangle)": summary["more_stable_count"],
                "of (outside the most stable class)": summary["more_stable_denominator"],
                "more stable (%)": 100 * summary["more_stable_fraction"],
                "less stable (upper triangle)": summary["less_stable_count"],
                "of (outside the least stable class)": summary["less_stable_denominator"],
                "less stable (%)": 100 * summary["less_stable_fraction"],
            }
        )
    return pd.DataFrame(rows)


def confusion_table(panels: Sequence[dict]) -> pd.DataFrame:
    """Long table of confusion panels ({counts, title, published (optional)}): the data of Figs. 3/4."""
    from hdpbench.data.published import CLASS_LABELS

    rows = []
    for panel in panels:
        published = panel.get("published")
        for i, reference_class in enumerate(CLASS_LABELS):
            for j, model_class in enumerate(CLASS_LABELS):
                rows.append(
                    {
                        "panel": panel["title"].replace("\n", " "),
                        "reference_class": reference_class,
                        "model_class": model_class,
                        "count": int(panel["counts"][i, j]),
                        "published_count": int(published[i, j]) if published is not None else None,
                    }
                )
    return pd.DataFrame(rows)


def readable_triangles(summary: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """A ``confusion_summary`` (or one with published rows that carry percentages only) as text cells:
    the ``keys`` columns, then n, correct, more stable, less stable as "k of n (p %)"."""
    table = summary[list(keys)].copy()
    table["n"] = [str(int(n)) if pd.notna(n) else "not printed" for n in summary["n"]]
    for name, count, of, percent in (
        ("correct (diagonal)", "correct", "n", "correct (%)"),
        ("more stable (lower triangle)", "more stable (lower triangle)", "of (outside the most stable class)", "more stable (%)"),
        ("less stable (upper triangle)", "less stable (upper triangle)", "of (outside the least stable class)", "less stable (%)"),
    ):
        table[name] = [fraction_text(c, o, p) for c, o, p in zip(summary[count], summary[of], summary[percent], strict=True)]
    return table


def published_fig3_summary() -> pd.DataFrame:
    """``confusion_summary`` of the paper's eight Fig. 3 panels (source "paper Fig. 3")."""
    from hdpbench.data.published import PAPER_LABELS, PAPER_MODELS, fig3_counts

    panels = [
        {"source": "paper Fig. 3", "model": PAPER_LABELS[model], "approach": name, "counts": fig3_counts(model, approach)}
        for approach, name in (("reference_fc", "Φ_ref (Φ_DFT)"), ("model_fc", "Φ_model (Φ_MACE)"))
        for model in PAPER_MODELS
    ]
    return confusion_summary(panels)


def trace_compounds(sigma: pd.DataFrame, model: str, column: str = "delta_sigma_model_fc") -> dict[str, str]:
    """Compounds whose σ(t) the σ page draws (Fig. S7), {compound: why}: the one ``model`` makes most
    stable against σ_ref (most negative ``column``; 'largest' shift if none is negative) and the one it
    gets closest (smallest |column|)."""
    data = sigma[sigma["model"] == model].dropna(subset=[column])
    if data.empty:
        return {}
    lowest = data.loc[data[column].idxmin()]
    closest = data.loc[data[column].abs().idxmin()]

    def shift(value: float) -> str:
        return f"Δσ = {value:+.2f}".replace("-", "−")

    chosen = {}
    if lowest[column] < 0:
        chosen[lowest["compound"]] = f"most over-stabilised, {shift(lowest[column])}"
    else:
        chosen[lowest["compound"]] = f"lowest {shift(lowest[column])}, none is over-stabilised"
    if closest["compound"] in chosen:
        chosen[closest["compound"]] += ", also the closest"
    else:
        chosen[closest["compound"]] = f"closest, {shift(closest[column])}"
    return chosen


def trace_summary(sigma: pd.DataFrame, model: str, chosen: dict[str, str]) -> str:
    """The compounds of ``trace_compounds`` as a phrase for the page: each with why it was chosen and
    its time-averaged σ_ref and σ_model(Φ_model) for ``model``."""
    rows = sigma[sigma["model"] == model].set_index("compound")
    parts = [
        f"{compound} ({why}; σ_ref {rows.loc[compound, 'sigma_reference']:.2f}, "
        f"σ_model(Φ_model) {rows.loc[compound, 'sigma_model_fc_model']:.2f})"
        for compound, why in chosen.items()
    ]
    if not parts:
        return "no compound with both scores"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def sigma_trace_table(arrays: dict[str, dict[str, np.ndarray]], timestep_fs: float = 1.0) -> pd.DataFrame:
    """Long table of σ(t) on the reference frames ({compound: sigma-reference-frames stage arrays}):
    compound, production file (its order), step in that file, time (fs) with the files placed end to
    end (a file starts one step after the previous file's last step seen here), the file's start time,
    and σ_ref(t), σ_model(Φ_ref)(t), σ_model(Φ_model)(t) (the data of Fig. S7)."""
    parts = []
    for compound, a in arrays.items():
        source, index = np.asarray(a["frame_source"], dtype=int), np.asarray(a["frame_index"], dtype=int)
        files = list(dict.fromkeys(source.tolist()))  # in the order the frames come
        start, offsets = 0, {}
        for file in files:
            offsets[file] = start
            start += int(index[source == file].max()) + 1
        offset = np.array([offsets[f] for f in source])
        parts.append(
            pd.DataFrame(
                {"compound": compound, "file": [files.index(f) for f in source], "frame_index": index,
                 "time_fs": (offset + index) * timestep_fs, "file_start_fs": offset * timestep_fs,
                 "sigma_reference": a["sigma_per_frame_reference"],
                 "sigma_model_fc_reference": a["sigma_per_frame_model_fc_reference"],
                 "sigma_model_fc_model": a["sigma_per_frame_model_fc_model"]}
            )
        )
    columns = ["compound", "file", "frame_index", "time_fs", "file_start_fs", "sigma_reference", "sigma_model_fc_reference", "sigma_model_fc_model"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
