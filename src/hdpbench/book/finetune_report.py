"""Tables and verdicts of the page "Can Hessian supervision fix it?" (``notebooks/finetuning.py``).

Every number comes from the same stages as the rest of the book (phonons, σ on reference frames,
model-only MD) run for a base model and its phonon-fine-tuned version, or from the fine-tuning logs.
Compounds whose Φ entered the Hessian loss are labelled ``in-sample``; the others ``held-out``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

HELD_OUT = "held-out"
IN_SAMPLE = "in-sample"


def finetune_record(name: str) -> dict[str, Any]:
    """The ``finetune`` section of a registered fine-tuned model."""
    from hdpbench.models.registry import get_model_spec

    record = get_model_spec(name).extra.get("finetune")
    if not record:
        raise KeyError(f"model {name!r} is not a fine-tuned model (no 'finetune' section in its registry entry)")
    return record


def split_of(name: str, compound: str) -> str:
    return IN_SAMPLE if compound in finetune_record(name)["train_compounds"] else HELD_OUT


def training_log(names: Sequence[str]) -> pd.DataFrame:
    """Long table of the logged Φ errors: model, epoch, compound, split, Φ MAE over fixed columns (eV/Å²)."""
    from hdpbench.core import paths

    rows = []
    for name in names:
        record = finetune_record(name)
        log = json.loads((paths.project_root() / record["log"]).read_text())
        for entry in log["epochs"]:
            for key, split in (("phi_mae_fixed_columns", IN_SAMPLE), ("phi_mae_fixed_columns_validation", HELD_OUT)):
                for compound, value in entry.get(key, {}).items():
                    rows.append({"model": name, "epoch": entry["epoch"], "compound": compound, "split": split, "phi_mae_ev_ang2": value})
    return pd.DataFrame(rows)


def paired(table: pd.DataFrame, columns: Sequence[str], *, base: str, tuned: str) -> pd.DataFrame:
    """One row per compound: each column before (base) and after (fine-tuned), with the split."""
    left = table[table["model"] == base][["compound", "halide", *columns]].set_index("compound")
    right = table[table["model"] == tuned][["compound", *columns]].set_index("compound")
    table = left.join(right, lsuffix="_before", rsuffix="_after", how="inner").reset_index()
    table.insert(0, "split", [split_of(tuned, c) for c in table["compound"]])
    table.insert(0, "model", tuned)
    return table


def comparison(
    phonons: pd.DataFrame, sigma: pd.DataFrame, md: pd.DataFrame | None, pairs: dict[str, str]
) -> pd.DataFrame:
    """Per (fine-tuned model, compound): RMSE(ω²), RMSE(v_g), stability, σ_model(Φ_model), the
    held-out production force MAE and σ_model-only, before and after; σ_ref beside them."""
    tables = []
    for tuned, base in pairs.items():
        ph = paired(phonons, ["rmse_omega2_thz2", "rmse_vg_thz_ang", "stability_agrees", "stable_model", "stable_reference", "min_freq_model_thz", "min_freq_reference_thz"], base=base, tuned=tuned)
        sg = paired(sigma, ["sigma_reference", "sigma_model_fc_model", "force_mae_ev_ang"], base=base, tuned=tuned)
        table = ph.merge(sg.drop(columns=["model", "split", "halide"]), on="compound")
        table["sigma_reference"] = table.pop("sigma_reference_before")
        table = table.drop(columns=["sigma_reference_after", "stable_reference_after", "min_freq_reference_thz_after"])
        table = table.rename(columns={"stable_reference_before": "stable_reference", "min_freq_reference_thz_before": "min_freq_reference_thz"})
        if md is not None and not md.empty:
            mm = paired(md, ["sigma_model_only"], base=base, tuned=tuned)
            table = table.merge(mm[["compound", "sigma_model_only_before", "sigma_model_only_after"]], on="compound", how="left")
        table.insert(1, "base", base)
        tables.append(table)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _class_agrees(reference: pd.Series, model: pd.Series) -> pd.Series:
    from hdpbench.physics.anharmonicity import sigma_class

    return pd.Series(sigma_class(model.to_numpy(float)) == sigma_class(reference.to_numpy(float)), index=model.index)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per fine-tuned model and split: medians of the errors before and after, stability and σ-class
    agreement counts (``k/n``), the number of compounds."""
    rows = []
    for (model, split), group in table.groupby(["model", "split"], sort=False):
        n = len(group)
        row: dict[str, Any] = {"model": model, "base": group["base"].iloc[0], "split": split, "compounds": n}
        for column, label in (("rmse_omega2_thz2", "RMSE(ω²) THz²"), ("rmse_vg_thz_ang", "RMSE(v_g) THz·Å"), ("force_mae_ev_ang", "force MAE eV/Å")):
            row[f"{label}, before"] = float(group[f"{column}_before"].median())
            row[f"{label}, after"] = float(group[f"{column}_after"].median())
        for when in ("before", "after"):
            row[f"stability right, {when}"] = f"{int(group[f'stability_agrees_{when}'].sum())}/{n}"
            row[f"σ(Φ_model) class right, {when}"] = f"{int(_class_agrees(group['sigma_reference'], group[f'sigma_model_fc_model_{when}']).sum())}/{n}"
            column = f"sigma_model_only_{when}"
            if column in group and group[column].notna().any():
                present = group[group[column].notna()]
                row[f"σ_model-only class right, {when}"] = f"{int(_class_agrees(present['sigma_reference'], present[column]).sum())}/{len(present)}"
            else:  # model-only MD runs for the held-out compounds only (the book's build time)
                row[f"σ_model-only class right, {when}"] = "not run"
        rows.append(row)
    return pd.DataFrame(rows)


def change(table: pd.DataFrame, column: str, split: str, model: str | None = None) -> dict[str, float]:
    """Median before, median after and the median of per-compound ratios after/before for one split."""
    rows = table[table["split"] == split]
    if model is not None:
        rows = rows[rows["model"] == model]
    before, after = rows[f"{column}_before"].to_numpy(float), rows[f"{column}_after"].to_numpy(float)
    ratio = after / np.where(before == 0, np.nan, before)
    return {"before": float(np.median(before)), "after": float(np.median(after)), "ratio": float(np.nanmedian(ratio)), "n": int(len(rows))}


def verdict(table: pd.DataFrame) -> str:
    """One paragraph that states what the numbers show for the held-out compounds, whatever it is."""
    parts = []
    for model, rows in table.groupby("model", sort=False):
        held = change(rows, "rmse_omega2_thz2", HELD_OUT)
        seen = change(rows, "rmse_omega2_thz2", IN_SAMPLE)
        forces = change(rows, "force_mae_ev_ang", HELD_OUT)
        forces_all = change(rows.assign(split="all"), "force_mae_ev_ang", "all")
        word = "lowered" if held["ratio"] < 0.9 else ("raised" if held["ratio"] > 1.1 else "left about unchanged")
        held_rows = rows[rows["split"] == HELD_OUT]
        right_before, right_after = int(held_rows["stability_agrees_before"].sum()), int(held_rows["stability_agrees_after"].sum())
        parts.append(
            f"**{model}**: on the {held['n']} held-out compounds fine-tuning {word} RMSE(ω²) "
            f"(median {held['before']:.2f} → {held['after']:.2f} THz², median ratio {held['ratio']:.2f}); "
            f"in-sample ({seen['n']} compounds) the median went {seen['before']:.2f} → {seen['after']:.2f} THz². "
            f"Stability class right on held-out compounds: {right_before}/{held['n']} before, {right_after}/{held['n']} after. "
            f"Forces on held-out production frames (forgetting check, all {forces_all['n']} compounds): median MAE "
            f"{forces_all['before']:.3f} → {forces_all['after']:.3f} eV/Å"
            + (f" (held-out compounds {forces['before']:.3f} → {forces['after']:.3f})." if forces["n"] else ".")
        )
    return "\n\n".join(parts)


# -- the real-data experiment (KCl) --------------------------------------------------------------
def kcl_split(base: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices of ``count`` KCl supercells, as the base model's training block drew them."""
    from hdpbench.demo.train import system_split, training_spec

    training = training_spec(base)
    return system_split(count, training.get("test_fraction", 0.2), int(training.get("split_seed", 0)))


def kcl_sigma_split(sigma_stage, system, indices: np.ndarray) -> dict[str, float]:
    """σ and force errors of a real-sigma stage result restricted to some frames of a loaded
    reference ``system`` (e.g. the test set)."""
    from hdpbench.physics.anharmonicity import model_sigma_report, sigma

    arrays = sigma_stage.load_arrays(system.name)
    frames = system.trajectory.select(indices)
    report = model_sigma_report(frames, system.reference_supercell, system.force_constants, arrays["forces_model"][indices], arrays["force_constants_model"])
    dft = sigma(frames, system.reference_supercell, system.force_constants)
    return {
        "frames": int(len(indices)),
        "sigma_dft": dft.sigma_mean_per_frame,
        "sigma_model_phi_dft": report["sigma_model_phi_reference"],
        "sigma_model_phi_model": report["sigma_model_phi_model"],
        "force_mae_ev_ang": report["force_mae_ev_ang"],
        "force_rmse_ev_ang": report["force_rmse_ev_ang"],
    }


def kcl_table(phonon_stages: dict[str, Any], sigma_stages: dict[str, Any], system, train: np.ndarray, test: np.ndarray) -> pd.DataFrame:
    """Per KCl model (rows): RMSE(ω²) and minimum frequency against the DFT Φ (in-sample for the
    fine-tuned model), and σ and forces on the held-out supercells ``test`` (out of sample) and on
    the ``train`` ones. Column names carry the supercell counts."""
    rows = []
    for model in phonon_stages:
        phonons = phonon_stages[model].load_json(system.name)
        row = {
            "model": model,
            "RMSE(ω²) vs DFT Φ (THz²)": phonons["rmse_omega2_thz2"],
            "RMSE(v_g) vs DFT Φ (THz·Å)": phonons["rmse_vg_thz_ang"],
            "lowest frequency (THz)": phonons["min_freq_model_thz"],
        }
        for label, indices in (("held-out", test), ("training", train)):
            part = kcl_sigma_split(sigma_stages[model], system, indices)
            where = f"{part['frames']} {label} supercells"
            row[f"force MAE, {where} (eV/Å)"] = part["force_mae_ev_ang"]
            row[f"σ_model(Φ_model), {where}"] = part["sigma_model_phi_model"]
            row[f"σ_DFT, {where}"] = part["sigma_dft"]
        rows.append(row)
    return pd.DataFrame(rows)
