"""The book's figures, drawn from the analysis tables (no computation here beyond what a plot needs).

Every figure carries a footer naming the dataset and its reference method, so a demo figure can never
be mistaken for the paper's DFT.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .compound import HALIDES
from .models import display_name
from .published import CLASS_LABELS

HALIDE_ORDER = list(HALIDES)


def source_note(fig, dataset_label: str) -> None:
    fig.text(0.01, 0.002, dataset_label, fontsize=7, color="0.35", ha="left", va="bottom")


def phonon_error_scatter(phonons: pd.DataFrame, model: str, dataset_label: str, halide: str | None = None):
    """Fig. 1a: RMSE(ω²) against RMSE(v_g) per compound, coloured by σ_ref; best and worst labelled."""
    data = phonons[phonons["model"] == model]
    if halide:
        data = data[data["halide"] == halide]
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    sigma_ref = pd.to_numeric(data["sigma_reference_db"], errors="coerce")
    known = sigma_ref.notna()
    # NaN colours would be drawn transparent: compounds without σ_ref get their own grey marker instead
    points = ax.scatter(data.loc[known, "rmse_vg_thz_ang"], data.loc[known, "rmse_omega2_thz2"], c=sigma_ref[known],
                        cmap="viridis", s=36, edgecolor="k", lw=0.4)
    if known.any():
        fig.colorbar(points, ax=ax, label="σ_ref")
    if (~known).any():
        ax.scatter(data.loc[~known, "rmse_vg_thz_ang"], data.loc[~known, "rmse_omega2_thz2"], s=36, facecolor="0.8",
                   edgecolor="k", lw=0.4, marker="s", label="σ_ref missing (none, or ≥ 2)")
        ax.legend(fontsize=8, loc="lower right")
    ax.set(xscale="log", yscale="log", xlabel="RMSE(v_g) / THz·Å", ylabel="RMSE(ω²) / THz²")
    if len(data):
        for name, row in (("best", data.loc[data["rmse_omega2_thz2"].idxmin()]), ("worst", data.loc[data["rmse_omega2_thz2"].idxmax()])):
            on_right = row["rmse_vg_thz_ang"] > data["rmse_vg_thz_ang"].median()  # label inwards, not off the axes
            ax.annotate(f"{row['compound']} ({name})", (row["rmse_vg_thz_ang"], row["rmse_omega2_thz2"]), fontsize=8,
                        xytext=(-4 if on_right else 4, 4), textcoords="offset points", ha="right" if on_right else "left")
    ax.set_title(display_name(model) + (f", {halide} compounds" if halide else ""), fontsize=10)
    source_note(fig, dataset_label)
    fig.tight_layout()
    return fig


def phonon_error_boxes(phonons: pd.DataFrame, models: Sequence[str], dataset_label: str):
    """Fig. 1b,c: RMSE(ω²) and RMSE(v_g) per halide and model (log scale)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    halides = [h for h in HALIDE_ORDER if h in set(phonons["halide"])]
    width = 0.8 / max(len(models), 1)
    for ax, column, label in zip(axes, ["rmse_omega2_thz2", "rmse_vg_thz_ang"], ["RMSE(ω²) / THz²", "RMSE(v_g) / THz·Å"], strict=True):
        for k, model in enumerate(models):
            data = [phonons[(phonons["model"] == model) & (phonons["halide"] == h)][column].to_numpy() for h in halides]
            positions = np.arange(len(halides)) + (k - (len(models) - 1) / 2) * width
            boxes = ax.boxplot(data, positions=positions, widths=width * 0.9, patch_artist=True, showfliers=True)
            for patch in boxes["boxes"]:
                patch.set_facecolor(f"C{k}")
            ax.plot([], [], color=f"C{k}", lw=6, label=display_name(model))
        ax.set(yscale="log", ylabel=label, xticks=range(len(halides)), xticklabels=halides)
    axes[0].legend(fontsize=8)
    source_note(fig, dataset_label)
    fig.tight_layout()
    return fig


def band_comparison(arrays: dict[str, np.ndarray], compound: str, model: str, dataset_label: str):
    """Fig. S2: reference and model bands on the same q-points (negative = imaginary)."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    distances = arrays["distances"]
    ax.plot(distances, arrays["frequencies_reference"], color="k", lw=1.0)
    ax.plot(distances, arrays["frequencies_model"], color="C3", lw=0.9, ls="--")
    ax.plot([], [], color="k", label="reference")
    ax.plot([], [], color="C3", ls="--", label=display_name(model))
    for end in np.cumsum(arrays["segment_ends"])[:-1]:
        ax.axvline(distances[min(int(end), len(distances) - 1)], color="0.8", lw=0.6)
    ax.axhline(0, color="0.5", lw=0.6)
    ax.set(xlim=(distances[0], distances[-1]), ylabel="frequency / THz", xticks=[], title=compound)
    ax.legend(fontsize=8, loc="upper right")
    source_note(fig, dataset_label)
    fig.tight_layout()
    return fig


def _confusion_panel(ax, counts: np.ndarray, title: str, published: np.ndarray | None = None) -> None:
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.nan_to_num(counts / totals)
    ax.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
    for i in range(3):
        for j in range(3):
            text = f"{counts[i, j]}"
            if published is not None:
                text += f"\n(paper {published[i, j]})"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="w" if fraction[i, j] > 0.6 else "k")
    ax.set(xticks=range(3), yticks=range(3), xticklabels=CLASS_LABELS, yticklabels=CLASS_LABELS, title=title)
    ax.tick_params(labelsize=6)


def confusion_grid(panels: list[dict], dataset_label: str, *, columns: int = 4):
    """Fig. 3 / 4: one 3x3 panel per entry {counts, title, published (optional)}; rows = reference class."""
    rows = int(np.ceil(len(panels) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 3.0 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        _confusion_panel(ax, panel["counts"], panel["title"], panel.get("published"))
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("reference class")
    for ax in axes[-1, :]:
        ax.set_xlabel("model class")
    source_note(fig, dataset_label)
    fig.tight_layout()
    return fig


def delta_sigma_distributions(sigma: pd.DataFrame, models: Sequence[str], dataset_label: str):
    """Fig. S9: σ_model − σ_ref for both approaches, per model."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, column, title in zip(axes, ["delta_sigma_reference_fc", "delta_sigma_model_fc"], ["with Φ_ref", "with Φ_model"], strict=True):
        values = sigma[column].dropna()
        edges = np.linspace(min(values.min(), -0.05), max(values.max(), 0.05), 25) if len(values) else 10
        for k, model in enumerate(models):
            ax.hist(sigma[sigma["model"] == model][column].dropna(), bins=edges, histtype="step", lw=1.4, color=f"C{k}", label=display_name(model))
        ax.axvline(0, color="0.4", lw=0.8)
        ax.set(xlabel="σ_model − σ_ref", title=title)
    axes[0].set_ylabel("compounds")
    axes[0].legend(fontsize=8)
    source_note(fig, dataset_label)
    fig.tight_layout()
    return fig


def delta_sigma_vs_phonon_errors(merged: pd.DataFrame, dataset_label: str):
    """Fig. 5: |σ_ref − σ_model-only| against RMSE(ω²) and RMSE(v_g)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, column, label in zip(axes, ["rmse_omega2_thz2", "rmse_vg_thz_ang"], ["RMSE(ω²) / THz²", "RMSE(v_g) / THz·Å"], strict=True):
        for k, halide in enumerate(h for h in HALIDE_ORDER if h in set(merged["halide"])):
            data = merged[merged["halide"] == halide]
            ax.scatter(data[column], data["abs_delta_sigma"], s=30, color=f"C{k}", label=halide, edgecolor="k", lw=0.4)
        ax.set(xscale="log", xlabel=label)
    axes[0].set_ylabel("|σ_ref − σ_model-only|")
    axes[0].legend(fontsize=8)
    source_note(fig, dataset_label)
    fig.tight_layout()
    return fig


def temperature_traces(traces: dict[str, dict[str, np.ndarray]], target_K: float, dataset_label: str):
    """Instantaneous temperature of every model-MD run, one panel per model ({model: {compound: runs × steps}});
    NaN after a run was stopped. One colour per compound, the same in every panel."""
    compounds = list(dict.fromkeys(c for per_model in traces.values() for c in per_model))
    fig, axes = plt.subplots(1, len(traces), figsize=(4.2 * len(traces) + 1.6, 3.2), sharey=True, squeeze=False)
    for ax, (model, per_compound) in zip(axes[0], traces.items(), strict=True):
        for compound, temperatures in per_compound.items():
            colour = f"C{compounds.index(compound) % 10}"
            for run in np.atleast_2d(temperatures):
                ax.plot(run, color=colour, lw=0.6, alpha=0.7)
        ax.axhline(target_K, color="k", lw=0.8, ls="--")
        ax.set(xlabel="MD step", title=display_name(model))
    axes[0, 0].set_ylabel("T / K")
    legend_width = 0.0
    if len(compounds) <= 12:  # beyond that (the full dataset) a legend would hide more than it tells
        handles = [plt.Line2D([], [], color=f"C{k % 10}", lw=1.5) for k in range(len(compounds))]
        fig.legend(handles, compounds, fontsize=7, loc="center right", frameon=False)
        legend_width = 1.5 / fig.get_figwidth()
    source_note(fig, dataset_label)
    fig.tight_layout(rect=(0, 0, 1 - legend_width, 1))
    return fig


def kpca_map(arrays: dict[str, np.ndarray], compound: str, model: str, dataset_label: str, *, colour_by_sigma: bool = False):
    """Fig. 6 (labels) or Figs. S10/S12 (per-frame σ): reference and model-MD frames in one KPCA map."""
    fig, ax = plt.subplots(figsize=(4.4, 3.8))
    coordinates, labels = arrays["coordinates"], arrays["labels"]
    markers = {0: ("o", "reference MD"), 1: ("^", f"{display_name(model)} MD")}
    for label, (marker, name) in markers.items():
        chosen = labels == label
        if colour_by_sigma:
            points = ax.scatter(*coordinates[chosen].T, c=arrays["sigma_per_frame"][chosen], cmap="magma", marker=marker, s=18,
                                vmin=np.nanmin(arrays["sigma_per_frame"]), vmax=np.nanmax(arrays["sigma_per_frame"]), label=name)
        else:
            ax.scatter(*coordinates[chosen].T, marker=marker, s=18, alpha=0.7, label=name)
    if colour_by_sigma:
        fig.colorbar(points, ax=ax, label="σ(t)")
    ax.set(xlabel="KPCA 1", ylabel="KPCA 2", title=compound)
    ax.legend(fontsize=7)
    source_note(fig, dataset_label)
    fig.tight_layout()
    return fig


# ---- the real-data chapter (real DFT references, any model) ----------------------------------------

def _model_colours(models: Sequence[str]) -> dict[str, str]:
    return {model: f"C{k + 1}" for k, model in enumerate(models)}


def _panels(n: int, *, height: float = 3.3, sharey: bool = False):
    """One panel per model, two per row, so a figure stays ~7 in wide (the page width: fonts show at size)."""
    columns = min(n, 2)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.7 * columns, height * rows), sharey=sharey, squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def real_bands(arrays_by_model: dict[str, dict[str, np.ndarray]], system: str, labels: Sequence[str], connections: Sequence[bool]):
    """Φ_DFT (black) and each model's Φ (dashed) on the same q-points, one panel per model."""
    models = list(arrays_by_model)
    colours = _model_colours(models)
    fig, axes = _panels(len(models), sharey=True)
    for ax, model in zip(axes, models, strict=True):
        arrays = arrays_by_model[model]
        distances = arrays["distances"]
        ax.plot(distances, arrays["frequencies_reference"], color="k", lw=0.9)
        ax.plot(distances, arrays["frequencies_model"], color=colours[model], lw=0.9, ls="--")
        ax.plot([], [], color="k", label="DFT")
        ax.plot([], [], color=colours[model], ls="--", label=display_name(model))
        positions, names = band_ticks(distances, arrays["segment_ends"], labels, connections)
        for tick in positions[1:-1]:
            ax.axvline(tick, color="0.8", lw=0.6)
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_xticks(positions, names, fontsize=9)
        ax.set(xlim=(distances[0], distances[-1]), title=f"{system}: {display_name(model)}", ylabel="frequency (THz)")
        ax.legend(fontsize=9, loc="lower right", framealpha=0.9)
    fig.text(0.01, 0.0, "negative: imaginary frequencies", fontsize=9, color="0.3", va="bottom")
    fig.tight_layout()
    return fig


def band_ticks(distances: np.ndarray, segment_ends: Sequence[int], labels: Sequence[str], connections: Sequence[bool]):
    """Tick positions and names of a phonopy band path: ``segment_ends`` are cumulative point counts,
    ``labels`` phonopy's (one per point where segments meet, two where the path jumps, "X|R")."""
    ends = np.asarray(segment_ends, dtype=int)
    names = [_band_label(label) for label in labels]
    positions, ticks, next_label = [float(distances[0])], [names[0]], 1
    for k, end in enumerate(ends):
        positions.append(float(distances[end - 1]))
        if k == len(ends) - 1 or connections[k]:
            ticks.append(names[next_label])
            next_label += 1
        else:
            ticks.append(f"{names[next_label]}|{names[next_label + 1]}")
            next_label += 2
    return positions, ticks


def _band_label(label: str) -> str:
    """seekpath's TeX labels ("$\\Gamma$", "$\\mathrm{X}$") as plain text."""
    text = str(label).replace("$", "").replace("\\mathrm{", "").replace("}", "").replace("{", "")
    return "Γ" if text.strip("\\").upper() == "GAMMA" else text.replace("_", "")


def force_parity(forces_by_model: dict[str, tuple[np.ndarray, np.ndarray]], system: str):
    """DFT vs model force components (eV/Å), one panel per model, with the MAE."""
    models = list(forces_by_model)
    colours = _model_colours(models)
    fig, axes = _panels(len(models), height=3.6)
    for ax, model in zip(axes, models, strict=True):
        reference, predicted = (np.ravel(a) for a in forces_by_model[model])
        limit = float(np.abs(np.concatenate([reference, predicted])).max()) * 1.05
        ax.plot([-limit, limit], [-limit, limit], color="0.6", lw=0.8)
        ax.scatter(reference, predicted, s=3, alpha=0.35, color=colours[model], rasterized=True)
        mae = float(np.abs(predicted - reference).mean())
        ax.set(xlim=(-limit, limit), ylim=(-limit, limit), xlabel="DFT force (eV/Å)", ylabel="model force (eV/Å)", title=display_name(model))
        ax.text(0.04, 0.95, f"MAE {mae:.3f} eV/Å\nn = {reference.size}", transform=ax.transAxes, va="top", fontsize=9)
        ax.set_aspect("equal")
    fig.suptitle(system, fontsize=11)
    fig.tight_layout()
    return fig


def real_sigma_traces(table: pd.DataFrame, system: str):
    """σ(t) per frame: DFT forces with Φ_DFT, and per model its forces with Φ_DFT and with its own Φ."""
    fig, ax = plt.subplots(figsize=(7.2, 3.6))
    reference = table[table["model"] == table["model"].iloc[0]]
    ax.plot(reference["frame"], reference["sigma_dft"], color="k", marker="o", label="DFT forces, Φ_DFT")
    for k, (model, rows) in enumerate(table.groupby("model", sort=False)):
        ax.plot(rows["frame"], rows["sigma_model_phi_dft"], color=f"C{k + 1}", marker="s", ms=4, lw=0.9, label=f"{model}, Φ_DFT")
        ax.plot(rows["frame"], rows["sigma_model_phi_model"], color=f"C{k + 1}", marker="^", ms=4, lw=0.9, ls="--", label=f"{model}, own Φ")
    ax.set(xlabel="AIMD frame", ylabel="σ(t)", title=f"{system}: σ per frame (n = {len(reference)} frames)")
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def error_vs_amplitude(table: pd.DataFrame, system: str):
    """Per-frame force MAE against the frame's RMS displacement, one colour per model."""
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for k, (model, rows) in enumerate(table.groupby("model", sort=False)):
        ax.scatter(rows["displacement_rms_ang"], rows["force_mae_ev_ang"], s=14, color=f"C{k + 1}", label=model)
    ax.set(xlabel="RMS displacement of the frame (Å)", ylabel="force MAE (eV/Å)", yscale="log",
           title=f"{system}: n = {table['frame'].nunique()} displaced supercells")
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def real_kpca_maps(arrays_by_model: dict[str, dict[str, np.ndarray]], system: str):
    """AIMD (black circles) and model-MD frames in each model's own KPCA map."""
    models = list(arrays_by_model)
    colours = _model_colours(models)
    fig, axes = _panels(len(models))
    for ax, model in zip(axes, models, strict=True):
        arrays = arrays_by_model[model]
        coordinates, labels = arrays["kpca_coordinates"], arrays["kpca_labels"]
        ax.scatter(*coordinates[labels == 1].T, marker="^", s=18, alpha=0.7, color=colours[model], label=f"model MD (n = {(labels == 1).sum()})")
        ax.scatter(*coordinates[labels == 0].T, marker="o", s=26, color="k", label=f"AIMD (n = {(labels == 0).sum()})")
        ax.set(xlabel="KPCA 1", ylabel="KPCA 2", title=display_name(model))
        ax.legend(fontsize=9)
    fig.suptitle(system, fontsize=11)
    fig.tight_layout()
    return fig
