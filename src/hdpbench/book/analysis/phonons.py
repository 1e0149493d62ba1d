"""The harmonic phonons section (§3.1, Figs. 1, S1–S6): errors against Φ_ref, bands, rank correlations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from hdpbench.book.analysis.common import (
    HALIDE_NAMES,
    MIN_COMPOUNDS_FOR_CORRELATION,
    MIN_COMPOUNDS_FOR_SCATTER,
    SMALL_N_FOR_CORRELATION,
    spearman,
    stage_results,
    stage_rows,
)
from hdpbench.core.compound import HALIDES
from hdpbench.pipeline.names import StageName


def phonon_table(dataset: str, models: Sequence[str], **kwargs) -> pd.DataFrame:
    """One row per (model, compound): RMSE(ω²), RMSE(v_g), MAE(f), minimum frequencies, stability,
    thermal-property errors at 300 and 1000 K, σ_ref from the summary database."""
    rows = []
    for model in models:
        rows += stage_rows(stage_results(StageName.PHONONS, dataset, model, **kwargs), model, kwargs.get("compounds"))
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
