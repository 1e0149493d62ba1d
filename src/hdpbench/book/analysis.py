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

from hdpbench.core.compound import HALIDES
from hdpbench.physics.anharmonicity import confusion_matrix, sigma_class
from hdpbench.pipeline.compute import collect
from hdpbench.pipeline.names import StageName
from hdpbench.pipeline.runner import run_stage_in_process
from hdpbench.pipeline.settings import RunSettings
from hdpbench.pipeline.store import StageResults

# The book's notebooks import this module; tqdm.auto asks for ipywidgets there, which the static book
# cannot show anyway.
warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)


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


def _rows(stage: StageResults, model: str, compounds: Sequence[str] | None) -> list[dict[str, Any]]:
    return [{"model": model, **row} for row in collect(stage, compounds)]


def phonon_table(dataset: str, models: Sequence[str], **kwargs) -> pd.DataFrame:
    """One row per (model, compound): RMSE(ω²), RMSE(v_g), MAE(f), minimum frequencies, stability,
    thermal-property errors at 300 and 1000 K, σ_ref from the summary database."""
    rows = []
    for model in models:
        rows += _rows(stage_results(StageName.PHONONS, dataset, model, **kwargs), model, kwargs.get("compounds"))
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


HALIDE_NAMES = {"F": "fluorides", "Cl": "chlorides", "Br": "bromides", "I": "iodides"}
# below this many compounds a scatter of one halide shows no trend: Fig. 1a then shows every halide
MIN_COMPOUNDS_FOR_SCATTER = 3
# a Spearman ρ needs at least 3 pairs; below SMALL_N_FOR_CORRELATION the page adds a caution
MIN_COMPOUNDS_FOR_CORRELATION = 3
SMALL_N_FOR_CORRELATION = 10


def lowest_median_model(phonons: pd.DataFrame, column: str = "rmse_omega2_thz2") -> str:
    """The model with the lowest median ``column`` over its compounds (ties: the first listed)."""
    return str(phonons.groupby("model", sort=False)[column].median().idxmin())


def fig1a_selection(
    phonons: pd.DataFrame, halide: str | None, model: str, *, min_compounds: int = MIN_COMPOUNDS_FOR_SCATTER
) -> dict[str, Any]:
    """Which model and halide Fig. 1a shows, and a sentence saying so.

    The paper's Fig. 1a is ``halide`` (chlorides) with ``model`` (omat-0-medium). Shown as published
    where ``model`` has results and at least ``min_compounds`` compounds of ``halide``; otherwise the
    fallback is the model of lowest median RMSE(ω²) (when ``model`` has no results) and every halide
    (when fewer than ``min_compounds`` compounds of ``halide`` are there, as one point shows no trend).

    ``phonons``: :func:`phonon_table` rows (columns model, compound, halide, rmse_omega2_thz2).
    Returns {"model": registry name, "label": its name in figures, "halide": symbol or None (= all
    halides), "n": compounds shown, "as_published": bool, "sentence": what is shown and, where it
    differs, why}.
    """
    from hdpbench.models.registry import display_name

    halide_name = HALIDE_NAMES.get(halide, f"{halide} compounds") if halide else "all compounds"
    requested = f"the paper's Fig. 1a shows the {halide_name} with {display_name(model)}"
    reasons = []
    if model in set(phonons["model"]):
        chosen_model = model
    else:
        chosen_model = lowest_median_model(phonons)
        run = ", ".join(display_name(m) for m in dict.fromkeys(phonons["model"]))
        reasons.append(f"{display_name(model)} has no results here (models run: {run}), so the model of lowest median "
                       f"RMSE(ω²), {display_name(chosen_model)}, is shown")
    rows = phonons[phonons["model"] == chosen_model]
    n_halide = int((rows["halide"] == halide).sum()) if halide else len(rows)
    chosen_halide = halide if halide and n_halide >= min_compounds else None
    if halide and chosen_halide is None:
        reasons.append(f"with {n_halide} of the {halide_name} here (fewer than {min_compounds}, too few to show a trend), "
                       f"all {len(rows)} compounds are shown, every halide")
    n = n_halide if chosen_halide else len(rows)
    if not reasons:
        sentence = f"As published: the {halide_name} with {display_name(chosen_model)} (n = {n})."
    else:
        sentence = f"Not as published: {requested}; here " + "; ".join(reasons) + f" (n = {n})."
    return {"model": chosen_model, "label": display_name(chosen_model), "halide": chosen_halide, "n": n, "as_published": not reasons,
            "sentence": sentence}


def selected_rows(phonons: pd.DataFrame, model: str, halide: str | None = None) -> pd.DataFrame:
    """The rows of one model, and of one halide unless ``halide`` is None."""
    rows = phonons[phonons["model"] == model]
    return rows[rows["halide"] == halide] if halide else rows


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


def sigma_rank_correlations(
    phonons: pd.DataFrame, *, sigma_column: str = "sigma_reference_db", min_n: int = MIN_COMPOUNDS_FOR_CORRELATION
) -> pd.DataFrame:
    """Does the phonon error track the anharmonicity (paper §3.1, Fig. 1a)? Spearman rank correlation
    (:func:`spearman`: two-sided p, exact below SMALL_N_FOR_CORRELATION compounds) of RMSE(ω²) and of
    RMSE(v_g) with σ_ref, per model, over all halides and within each halide; compounds without σ_ref
    are left out.

    Returns one row per (model, scope) with at least ``min_n`` compounds: model, scope ("all halides"
    or a halide symbol), n, rho_omega2, p_omega2, rho_vg, p_vg (ρ and p NaN where a column is constant).
    """
    columns = ["model", "scope", "n", "rho_omega2", "p_omega2", "rho_vg", "p_vg"]
    rows = []
    for model, group in phonons.groupby("model", sort=False):
        group = group[pd.to_numeric(group[sigma_column], errors="coerce").notna()]
        scopes = [("all halides", group)] + [(h, group[group["halide"] == h]) for h in HALIDES if (group["halide"] == h).any()]
        for scope, part in scopes:
            if len(part) < min_n:
                continue
            sigma = part[sigma_column].to_numpy(float)
            row = {"model": model, "scope": scope, "n": len(part)}
            for key, column in (("omega2", "rmse_omega2_thz2"), ("vg", "rmse_vg_thz_ang")):
                row[f"rho_{key}"], row[f"p_{key}"] = spearman(part[column].to_numpy(float), sigma)
            rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def correlation_sentence(correlations: pd.DataFrame, model: str, scope: str = "all halides") -> str:
    """The Spearman ρ of one (model, scope) row of :func:`sigma_rank_correlations` as prose, with n
    and a caution when n is below SMALL_N_FOR_CORRELATION or p ≥ 0.05."""
    from hdpbench.models.registry import display_name

    row = correlations[(correlations["model"] == model) & (correlations["scope"] == scope)]
    where = "all halides" if scope == "all halides" else HALIDE_NAMES.get(scope, scope)
    if row.empty:
        return (f"For {display_name(model)} ({where}) fewer than {MIN_COMPOUNDS_FOR_CORRELATION} compounds have σ_ref: "
                "no rank correlation can be computed.")
    row = row.iloc[0]

    def one(key: str, name: str) -> str:
        if np.isnan(row[f"rho_{key}"]):
            return f"ρ({name}, σ_ref) is undefined (constant values)"
        return f"ρ({name}, σ_ref) = {row[f'rho_{key}']:.2f} (p = {row[f'p_{key}']:.2g})"

    text = (f"For {display_name(model)}, {where}: Spearman {one('omega2', 'RMSE(ω²)')} and {one('vg', 'RMSE(v_g)')}, "
            f"over n = {int(row['n'])} compounds with σ_ref.")
    n = int(row["n"])
    p_values = [row[f"p_{k}"] for k in ("omega2", "vg") if not np.isnan(row[f"p_{k}"])]
    if n < SMALL_N_FOR_CORRELATION:
        if p_values and min(p_values) < 0.05:
            text += f" Caution: n = {n} is small; one compound more or less can move ρ a lot."
        else:
            text += (f" Caution: with n = {n}, a ρ of this size is well within chance (p ≥ 0.05): this neither confirms "
                     "nor refutes the paper's trend.")
    elif p_values and min(p_values) >= 0.05:
        text += " Neither ρ is significant at the 5 % level."
    return text


def mean_phonon_frequency(frequencies: np.ndarray) -> float:
    """⟨ω⟩ of Fig. S1b: the mean of phonon frequencies f (THz) over every q-point and band of an
    (n_q, n_bands) array, imaginary modes counted as negative (phonopy's sign convention).

    The book applies it to the reference bands the phonons stage stores (the seekpath path, 50 points
    per segment), so ⟨ω⟩ is a path average, not a Brillouin-zone (mesh) average; the paper's values
    come from the authors' earlier study.
    """
    frequencies = np.asarray(frequencies, dtype=float)
    if frequencies.size == 0:
        raise ValueError("no frequencies")
    return float(frequencies.mean())


def reference_band_arrays(dataset: str, models: Sequence[str], wanted: Sequence[str], **kwargs) -> dict[str, dict[str, np.ndarray]]:
    """{compound: phonons-stage arrays} for each of the ``wanted`` compounds, read from the first of
    ``models`` whose phonons stage has it (Φ_ref and the q-path, hence the reference bands, are the
    same for every model); a compound no model has is left out. ``kwargs`` as for
    :func:`stage_results`; nothing is computed beyond what :func:`phonon_table` already ran with them."""
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for model in models:
        missing = [c for c in wanted if c not in arrays]
        if not missing:
            break
        stage = stage_results(StageName.PHONONS, dataset, model, **kwargs)
        arrays.update({c: stage.load_arrays(c) for c in missing if stage.is_done(c)})
    return {c: arrays[c] for c in wanted if c in arrays}


def halide_reference_table(phonons: pd.DataFrame, arrays_by_compound: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """Per compound (Fig. S1): halide, σ_ref from the summary database (``sigma_reference_db``, NaN
    where missing or ≥ 2) and ⟨ω⟩ (THz, :func:`mean_phonon_frequency` of ``frequencies_reference``).

    ``phonons``: :func:`phonon_table` rows (one per model and compound; reference values are the same
    for every model); ``arrays_by_compound``: {compound: phonons-stage arrays}. Sorted by halide.
    """
    first = phonons.drop_duplicates("compound")
    table = pd.DataFrame(
        {
            "compound": first["compound"].to_numpy(),
            "halide": first["halide"].to_numpy(),
            "sigma_reference_db": pd.to_numeric(first["sigma_reference_db"], errors="coerce").to_numpy(),
            "mean_frequency_thz": [
                mean_phonon_frequency(arrays_by_compound[c]["frequencies_reference"]) if c in arrays_by_compound else np.nan
                for c in first["compound"]
            ],
        }
    )
    order = {h: k for k, h in enumerate(HALIDES)}
    return table.sort_values(["halide", "compound"], key=lambda c: c.map(order) if c.name == "halide" else c).reset_index(drop=True)


def band_grid_sentence(arrays_by_compound: dict[str, dict[str, np.ndarray]]) -> str:
    """What a ⟨ω⟩ averages over, as prose: "all 30 bands at the 300 q-points" (sizes of the stored
    ``frequencies_reference``, (n_q, n_bands); several sizes are joined with "or")."""
    shapes = sorted({arrays["frequencies_reference"].shape for arrays in arrays_by_compound.values()})
    if not shapes:
        return "no stored bands"
    bands = " or ".join(str(b) for b in sorted({b for _, b in shapes}))
    points = " or ".join(str(q) for q in sorted({q for q, _ in shapes}))
    return f"all {bands} bands at the {points} q-points"


def halide_medians_sentence(table: pd.DataFrame, column: str, unit: str = "", digits: int = 2) -> str:
    """Median of ``column`` per halide as prose, in the order F, Cl, Br, I: "F 4.1 THz (n = 5), Cl …";
    halides without a value are left out."""
    parts = []
    for halide in HALIDES:
        values = pd.to_numeric(table.loc[table["halide"] == halide, column], errors="coerce").dropna()
        if len(values):
            parts.append(f"{halide} {values.median():.{digits}f}{' ' + unit if unit else ''} (n = {len(values)})")
    return ", ".join(parts) if parts else "no values"


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
        rows += _rows(stage_results(StageName.SIGMA_REFERENCE_FRAMES, dataset, model, **kwargs), model, kwargs.get("compounds"))
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
        sigma_md = stage_results(StageName.SIGMA_MD, dataset, model, **kwargs)
        reference = {r["compound"]: r for r in collect(stage_results(StageName.SIGMA_REFERENCE_FRAMES, dataset, model, **kwargs))}
        for row in _rows(sigma_md, model, kwargs.get("compounds")):
            row["sigma_reference"] = reference.get(row["compound"], {}).get("sigma_reference")
            row["stopped"] = len(row["stopped_runs"])
            rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:
        table["abs_delta_sigma"] = (table["sigma_model_only"] - table["sigma_reference"]).abs()
    return table


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
    from hdpbench.data.datasets import get_dataset

    return get_dataset(dataset, download=False).load(compound, trajectories=False).n_atoms


def canonical_temperature_spread(target_K: float, n_atoms: int) -> float:
    """Standard deviation (K) of the instantaneous kinetic temperature of N atoms in the canonical
    ensemble, T·sqrt(2/(3N)): what a correct thermostat must show, not noise to be removed."""
    return float(target_K * np.sqrt(2.0 / (3.0 * n_atoms)))


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
