"""Tables the book's sections are drawn from: stage results of several models gathered into DataFrames.

Each function fills the results store first where needed (through the same stage functions as
``hdpbench run``) and then only reads it, so a second build reuses everything.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from tqdm import TqdmWarning

from .anharmonicity import confusion_matrix, sigma_class
from .compound import HALIDES
from .results import StageResults
from .runner import RunSettings, run_stage_in_process
from .stages import collect

# The book's notebooks import this module; tqdm.auto asks for ipywidgets there, which the static book
# cannot show anyway.
warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)


def stage_results(
    stage: str, dataset: str, model: str, *, compounds: Sequence[str] | None = None, settings: RunSettings | None = None,
    device: str = "cpu", results_root=None,
) -> StageResults:
    """The stage's results for these compounds, computed where missing."""
    from .runner import _cached_dataset

    settings = settings or RunSettings()
    names = list(compounds) if compounds is not None else _cached_dataset(str(dataset)).compounds()
    return run_stage_in_process(stage, str(dataset), str(model), names, settings, device, results_root)


def dataset_compounds(dataset: str) -> list[str]:
    """The compounds a dataset has on this machine (the book's default compound list)."""
    from .runner import _cached_dataset

    return _cached_dataset(str(dataset)).compounds()


def _rows(stage: StageResults, model: str, compounds: Sequence[str] | None) -> list[dict[str, Any]]:
    return [{"model": model, **row} for row in collect(stage, compounds)]


def phonon_table(dataset: str, models: Sequence[str], **kwargs) -> pd.DataFrame:
    """One row per (model, compound): RMSE(ω²), RMSE(v_g), MAE(f), minimum frequencies, stability,
    thermal-property errors at 300 and 1000 K, σ_ref from the summary database."""
    rows = []
    for model in models:
        rows += _rows(stage_results("phonons", dataset, model, **kwargs), model, kwargs.get("compounds"))
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    for key, short in (("free_energy_kJ_mol", "F"), ("heat_capacity_J_K_mol", "Cv"), ("entropy_J_K_mol", "S")):
        column = f"error_{key}"
        if column in table:
            errors = np.array(table[column].tolist(), dtype=float)
            temperatures = table["thermal_reference"].iloc[0]["temperatures_K"]
            for k, temperature in enumerate(temperatures):
                table[f"abs_error_{short}_{temperature:.0f}K"] = np.abs(errors[:, k])
    return table.drop(columns=[c for c in ("thermal_reference", "thermal_model") if c in table])


def band_table(arrays: dict[str, np.ndarray], compound: str) -> pd.DataFrame:
    """Long table of two band structures on the same q-points (a band figure's data): compound,
    q-point index, path distance, band index, reference and model frequency (THz)."""
    reference, model = arrays["frequencies_reference"], arrays["frequencies_model"]
    n_q, n_bands = reference.shape
    return pd.DataFrame(
        {
            "compound": compound,
            "q_index": np.repeat(np.arange(n_q), n_bands),
            "distance": np.repeat(arrays["distances"], n_bands),
            "band": np.tile(np.arange(n_bands), n_q),
            "frequency_reference_thz": reference.ravel(),
            "frequency_model_thz": model.ravel(),
        }
    )


def lee_xia_metrics(phonons: pd.DataFrame) -> pd.DataFrame:
    """Per model: MAE of frequencies, of F, C_v, S at 300/1000 K, and the stability-classification accuracy."""
    columns = ["mae_freq_thz"] + [c for c in phonons.columns if c.startswith("abs_error_")]
    summary = phonons.groupby("model", sort=False)[columns].mean()
    summary["stability_accuracy"] = phonons.groupby("model", sort=False)["stability_agrees"].mean()
    for owner in ("model", "reference"):  # translational invariance of Φ (0 for an exact Hessian)
        column = f"gamma_acoustic_max_thz_{owner}"
        if column in phonons:
            summary[f"median_gamma_acoustic_thz_{owner}"] = phonons.groupby("model", sort=False)[column].median()
    summary["compounds"] = phonons.groupby("model", sort=False).size()
    return summary


def sigma_table(dataset: str, models: Sequence[str], **kwargs) -> pd.DataFrame:
    """One row per (model, compound): σ_ref, σ_model(Φ_ref), σ_model(Φ_model), force errors."""
    rows = []
    for model in models:
        rows += _rows(stage_results("sigma-reference-frames", dataset, model, **kwargs), model, kwargs.get("compounds"))
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


def md_table(dataset: str, models: Sequence[str], **kwargs) -> pd.DataFrame:
    """One row per (model, compound): σ_model-only (Φ_model) and σ_ref, with the runs' fate."""
    rows = []
    for model in models:
        sigma_md = stage_results("sigma-md", dataset, model, **kwargs)
        reference = {r["compound"]: r for r in collect(stage_results("sigma-reference-frames", dataset, model, **kwargs))}
        for row in _rows(sigma_md, model, kwargs.get("compounds")):
            row["sigma_reference"] = reference.get(row["compound"], {}).get("sigma_reference")
            row["stopped"] = len(row["stopped_runs"])
            rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:
        table["abs_delta_sigma"] = (table["sigma_model_only"] - table["sigma_reference"]).abs()
    return table


def confusion(reference: Sequence[float], model: Sequence[float]) -> dict[str, Any]:
    """Counts, row-normalised matrix and the fractions the paper quotes (off-diagonal triangles)."""
    counts, normalised = confusion_matrix(reference, model)
    unstable_rows = counts[1:].sum()
    stable_rows = counts[:2].sum()
    return {
        "counts": counts,
        "normalised": normalised,
        "accuracy": float(np.trace(counts) / counts.sum()) if counts.sum() else float("nan"),
        # more stable than the reference (lower triangle), among compounds not in the most stable class
        "more_stable_fraction": float(np.tril(counts, -1).sum() / unstable_rows) if unstable_rows else float("nan"),
        # less stable than the reference (upper triangle), among compounds not in the least stable class
        "less_stable_fraction": float(np.triu(counts, 1).sum() / stable_rows) if stable_rows else float("nan"),
    }


def confusion_table(panels: Sequence[dict]) -> pd.DataFrame:
    """Long table of confusion panels ({counts, title, published (optional)}): the data of Figs. 3/4."""
    from .published import CLASS_LABELS

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


def kpca_table(arrays: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """Long table of KPCA maps ({compound: stage arrays}): compound, origin, frame index in its set,
    both coordinates and σ(t) (the data of Figs. 6, S10, S12)."""
    parts = []
    for compound, a in arrays.items():
        origin = np.where(a["labels"] == 0, "reference", "model")
        frame = np.empty(len(a["labels"]), dtype=int)
        frame[a["labels"] == 0] = a["reference_frame_index"]
        frame[a["labels"] == 1] = a["model_frame_index"]
        parts.append(
            pd.DataFrame(
                {"compound": compound, "origin": origin, "frame_index": frame, "kpca_1": a["coordinates"][:, 0],
                 "kpca_2": a["coordinates"][:, 1], "sigma_per_frame": a["sigma_per_frame"]}
            )
        )
    return pd.concat(parts, ignore_index=True)


def supercell_atoms(dataset: str, compound: str) -> int:
    """Atoms in a compound's reference supercell (the MD cell)."""
    from .datasets import get_dataset

    return get_dataset(dataset, download=False).load(compound, trajectories=False).n_atoms


def canonical_temperature_spread(target_K: float, n_atoms: int) -> float:
    """Standard deviation (K) of the instantaneous kinetic temperature of N atoms in the canonical
    ensemble, T·sqrt(2/(3N)): what a correct thermostat must show, not noise to be removed."""
    return float(target_K * np.sqrt(2.0 / (3.0 * n_atoms)))


def classes(values: Sequence[float]) -> np.ndarray:
    return sigma_class(np.asarray(values, dtype=float))


def book_settings(
    *, dtype: str = "float32", n_frames: int | None = None, md_steps: int | None = None, md_runs: int | None = None,
    kpca_frames: int | None = None, discard: int | None = None, dry_run: bool = False,
) -> RunSettings:
    """The notebooks' parameters as stage settings (None keeps the paper's value)."""
    settings = (RunSettings.dry_run() if dry_run else RunSettings()).with_dtype(dtype)
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
        overrides += [f"sigma.discard={discard}", f"md.discard={discard}", f"kpca.discard={discard}"]
    return settings.with_overrides(overrides)


def dataset_label(dataset: str) -> str:
    """What a figure says about its data: the paper's DFT, or plainly the demo's GFN1-xTB."""
    from .datasets import registered_datasets

    spec = registered_datasets().get(str(dataset))
    if spec is not None and spec.demo:
        return f"Dataset '{spec.name}': GFN1-xTB reference made by this project, NOT the paper's DFT"
    if spec is not None:
        return f"Dataset '{spec.name}': {spec.title}"
    return f"Dataset at {dataset} (user data)"


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

    from .datasets import get_dataset
    from .demo.compounds import by_formula, ionic_radius_lattice_constant

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
    from .datasets import get_dataset

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

    from . import paths
    from .models import get_model_spec, model_table

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
            "weights here": "yes" if row["available"] else "no",
            "kind": spec.kind,
            "source": spec.mace_mp_name or spec.url or spec.path or spec.factory or "",
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


def heldout_force_table(models: Sequence[str]) -> pd.DataFrame:
    """Per-compound force MAE of each demo model on the production frames it never saw."""
    import json

    from . import paths

    rows = []
    for model in models:
        path = paths.model_registry_dir() / "demo" / model / "heldout_force_mae.json"
        if path.is_file():
            for formula, values in json.loads(path.read_text())["per_compound"].items():
                rows.append({"model": model, "compound": formula, **values})
    return pd.DataFrame(rows)


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

    from .book import execution_times_path

    path = execution_times_path()
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    table = pd.DataFrame(record.get("pages", []), columns=["page", "seconds"]).set_index("page")
    return table, record
