"""The book's figures, drawn from the analysis tables (no computation here beyond what a plot needs).

Every figure carries a footer naming the dataset and its reference method, so a demo figure can never
be mistaken for the paper's DFT.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hdpbench.core.compound import HALIDES
from hdpbench.data.published import CLASS_LABELS
from hdpbench.models.registry import display_name

HALIDE_ORDER = list(HALIDES)
# The book's text column is about 7 in wide: a figure at most this wide shows its fonts at their size.
PAGE_WIDTH_IN = 7.0
BOOK_STYLE = {
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.dpi": 150,  # inline PNGs at 150 dpi: sharp on high-density screens
    "savefig.dpi": 150,
}
# below this many values a box plot hides more than it shows: draw the points
MIN_VALUES_FOR_BOX = 5
REFERENCE_STYLE = {"color": "0.25", "marker": "o"}
MODEL_STYLE = {"color": "C3", "marker": "^"}


def plain_log_ticks(ax) -> None:
    """Log axes of ``ax`` labelled with plain numbers ("5", "0.2", "20", not "5×10⁰"), at most about
    five labels an axis: within a factor of 3 evenly spaced ticks (5.2, 5.6, 6), within a decade
    1-2-5 ticks, beyond that the decades. Call it after the data are drawn (it reads the limits)."""
    from matplotlib import ticker

    ax.autoscale_view()
    plain = ticker.FuncFormatter(lambda value, _: f"{value:.3g}")
    for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() != "log":
            continue
        low, high = sorted(limits)
        ratio = high / low if low > 0 else np.inf
        if ratio < 3:
            axis.set_major_locator(ticker.MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))
        elif ratio < 10:
            axis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(ticker.NullFormatter())


def use_book_style() -> None:
    """Fonts of at least 9 pt at page width, 150 dpi inline figures (called by every page)."""
    plt.rcParams.update(BOOK_STYLE)
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png", dpi=BOOK_STYLE["figure.dpi"])
    except ImportError:  # outside IPython
        pass


def source_note(fig, dataset_label: str) -> None:
    fig.text(0.01, 0.002, dataset_label, fontsize=9, color="0.35", ha="left", va="bottom")


def phonon_error_scatter(phonons: pd.DataFrame, model: str, dataset_label: str, halide: str | None = None):
    """Fig. 1a: RMSE(ω²) against RMSE(v_g) per compound, coloured by σ_ref; best and worst labelled."""
    data = phonons[phonons["model"] == model]
    if halide:
        data = data[data["halide"] == halide]
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
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
        # below the axes: inside, it would cover the labelled compounds
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    ax.set(xscale="log", yscale="log", xlabel="RMSE(v_g) (THz·Å)", ylabel="RMSE(ω²) (THz²)")
    if len(data):
        for name, row in (("best", data.loc[data["rmse_omega2_thz2"].idxmin()]), ("worst", data.loc[data["rmse_omega2_thz2"].idxmax()])):
            on_right = row["rmse_vg_thz_ang"] > data["rmse_vg_thz_ang"].median()  # label inwards, not off the axes
            below = name == "worst" and len(data) > 1  # the highest point: its label under it, inside the axes
            ax.annotate(f"{row['compound']} ({name})", (row["rmse_vg_thz_ang"], row["rmse_omega2_thz2"]), fontsize=9,
                        xytext=(-4 if on_right else 4, -5 if below else 4), textcoords="offset points",
                        ha="right" if on_right else "left", va="top" if below else "bottom")
    ax.set_title(display_name(model) + (f", {halide} compounds" if halide else "") + f" (n = {len(data)})")
    plain_log_ticks(ax)
    source_note(fig, dataset_label)
    fig.tight_layout(rect=(0, 0.04, 1, 1))  # room for the source note under the x label
    return fig


def _box_or_points(ax, values: np.ndarray, position: float, width: float, colour: str) -> None:
    """A box at ``position`` for MIN_VALUES_FOR_BOX values or more, else the points with their median as a bar."""
    if len(values) >= MIN_VALUES_FOR_BOX:
        ax.boxplot([values], positions=[position], widths=width * 0.85, patch_artist=True,
                   boxprops={"facecolor": colour, "alpha": 0.45}, medianprops={"color": "k", "lw": 1.5},
                   flierprops={"markersize": 3})
    elif len(values):
        ax.scatter(np.full(len(values), position), values, color=colour, edgecolor="k", lw=0.4, s=30, zorder=3)
        ax.hlines(np.median(values), position - width * 0.4, position + width * 0.4, color="k", lw=1.5, zorder=4)


def halide_error_panels(phonons: pd.DataFrame, halide: str, models: Sequence[str], dataset_label: str):
    """Figs. S3–S6: Fig. 1a for one halide, one panel per model (two per row): RMSE(ω²) (THz²)
    against RMSE(v_g) (THz·Å) per compound on log axes, coloured by σ_ref (``sigma_reference_db``) on
    one colour scale for all panels; compounds without σ_ref are grey squares; n per panel in its title.
    A dataset without compounds of ``halide`` gives panels that say so."""
    from hdpbench.book.analysis import HALIDE_NAMES

    columns = min(max(len(models), 1), 2)
    rows = -(-max(len(models), 1) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(PAGE_WIDTH_IN, 2.9 * rows + 0.7), squeeze=False)
    data = phonons[phonons["halide"] == halide]
    sigma = pd.to_numeric(data["sigma_reference_db"], errors="coerce")
    limits = (float(sigma.min()), float(sigma.max())) if sigma.notna().any() else None
    points, missing_drawn = None, False
    for ax, model in zip(axes.flat, models, strict=False):
        rows_model = data[data["model"] == model]
        known = pd.to_numeric(rows_model["sigma_reference_db"], errors="coerce")
        has = known.notna()
        if has.any():
            points = ax.scatter(rows_model.loc[has, "rmse_vg_thz_ang"], rows_model.loc[has, "rmse_omega2_thz2"], c=known[has],
                                cmap="viridis", vmin=limits[0], vmax=limits[1], s=36, edgecolor="k", lw=0.4)
        if (~has).any():
            missing_drawn = True
            ax.scatter(rows_model.loc[~has, "rmse_vg_thz_ang"], rows_model.loc[~has, "rmse_omega2_thz2"], s=36, facecolor="0.8",
                       edgecolor="k", lw=0.4, marker="s")
        if len(rows_model):
            ax.set(xscale="log", yscale="log")
            plain_log_ticks(ax)
        else:  # the dataset has none, or this model has no results for them
            text = f"no {HALIDE_NAMES.get(halide, halide)}\nin this dataset" if data.empty else "no results\nfor this model"
            ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=10, color="0.35")
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(f"{display_name(model)} (n = {len(rows_model)})")
    for ax in axes.flat[len(models):]:
        ax.set_visible(False)
    for ax in axes[-1, :]:
        ax.set_xlabel("RMSE(v_g) (THz·Å)")
    for ax in axes[:, 0]:
        ax.set_ylabel("RMSE(ω²) (THz²)")
    title = f"{HALIDE_NAMES.get(halide, halide).capitalize()} ({halide})"
    fig.suptitle(title + ("; grey squares: σ_ref missing (none, or ≥ 2)" if missing_drawn else ""), fontsize=10)
    source_note(fig, dataset_label)
    fig.tight_layout(rect=(0, 0.05, 0.88 if points is not None else 1, 1))
    if points is not None:
        bar = fig.add_axes((0.9, 0.2, 0.02, 0.6))
        fig.colorbar(points, cax=bar, label="σ_ref")
    return fig


def halide_reference_distributions(table: pd.DataFrame, dataset_label: str):
    """Fig. S1: (a) σ_ref (summary database) and (b) ⟨ω⟩ (THz, mean reference frequency) per halide,
    from :func:`hdpbench.book.analysis.halide_reference_table`; a box for MIN_VALUES_FOR_BOX compounds or
    more, else the points and their median as a bar; n per halide in each panel's tick labels."""
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 3.4))
    halides = [h for h in HALIDE_ORDER if h in set(table["halide"])]
    panels = [("sigma_reference_db", "σ_ref (summary database)", "(a) anharmonicity"),
              ("mean_frequency_thz", "⟨ω⟩ (THz)", "(b) mean reference frequency")]
    for ax, (column, label, title) in zip(axes, panels, strict=True):
        counts = []
        for h, halide in enumerate(halides):
            values = pd.to_numeric(table.loc[table["halide"] == halide, column], errors="coerce").dropna().to_numpy()
            counts.append(len(values))
            _box_or_points(ax, values, h, 0.6, f"C{h}")
        ax.set_xticks(range(len(halides)), [f"{halide}\nn = {n}" for halide, n in zip(halides, counts, strict=True)])
        ax.set_xlim(-0.6, max(len(halides), 1) - 0.4)
        ax.set(ylabel=label, title=title)
    axes[0].axhline(0.5, color="0.6", lw=0.8, ls=":")  # the weak/strong anharmonicity class boundary
    axes[0].text(0.98, 0.5, "weakly | strongly anharmonic ", transform=axes[0].get_yaxis_transform(), ha="right", va="top",
                 fontsize=9, color="0.4")
    source_note(fig, dataset_label)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def phonon_error_boxes(phonons: pd.DataFrame, models: Sequence[str], dataset_label: str):
    """Fig. 1b,c: RMSE(ω²) (top) and RMSE(v_g) (bottom) per halide and model (log scale). Groups of
    fewer than MIN_VALUES_FOR_BOX compounds are drawn as points with their median as a bar; n per
    halide is in the tick labels."""
    fig, axes = plt.subplots(2, 1, figsize=(PAGE_WIDTH_IN, 5.6), sharex=True)
    halides = [h for h in HALIDE_ORDER if h in set(phonons["halide"])]
    width = 0.8 / max(len(models), 1)
    for ax, column, label in zip(axes, ["rmse_omega2_thz2", "rmse_vg_thz_ang"], ["RMSE(ω²) (THz²)", "RMSE(v_g) (THz·Å)"], strict=True):
        for k, model in enumerate(models):
            colour = f"C{k}"
            for h, halide in enumerate(halides):
                values = phonons[(phonons["model"] == model) & (phonons["halide"] == halide)][column].dropna().to_numpy()
                _box_or_points(ax, values, h + (k - (len(models) - 1) / 2) * width, width, colour)
            ax.scatter([], [], color=colour, edgecolor="k", lw=0.4, s=30, label=display_name(model))
        ax.set(yscale="log", ylabel=label)
        plain_log_ticks(ax)
    counts = phonons.drop_duplicates("compound").groupby("halide").size()
    axes[1].set_xticks(range(len(halides)), [f"{h}\nn = {int(counts.get(h, 0))}" for h in halides])
    axes[0].legend(loc="best", title="black bar: median", title_fontsize=9)
    source_note(fig, dataset_label)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def band_comparison(panels: Sequence[tuple[str, dict[str, np.ndarray]]], model: str, dataset_label: str):
    """Fig. S2: reference and model bands on the same q-points (negative = imaginary), one panel per
    (title, stage arrays) entry, side by side with a shared frequency axis."""
    fig, axes = plt.subplots(1, len(panels), figsize=(PAGE_WIDTH_IN, 3.6), sharey=True, squeeze=False)
    for ax, (title, arrays) in zip(axes[0], panels, strict=True):
        distances = arrays["distances"]
        ax.plot(distances, arrays["frequencies_reference"], color="k", lw=1.0)
        ax.plot(distances, arrays["frequencies_model"], color="C3", lw=0.9, ls="--")
        if "band_labels" in arrays:
            positions, names = band_ticks(distances, arrays["segment_ends"], arrays["band_labels"], arrays["band_connections"])
        else:  # results written before labels were stored: segment boundaries only
            positions, names = [float(distances[int(end) - 1]) for end in arrays["segment_ends"]], []
        for tick in positions[1:-1] if names else positions[:-1]:
            ax.axvline(tick, color="0.8", lw=0.6)
        ax.set_xticks(positions if names else [], names)
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set(xlim=(distances[0], distances[-1]), title=title)
    axes[0, 0].set_ylabel("frequency (THz)")
    axes[0, 0].plot([], [], color="k", label="reference")
    axes[0, 0].plot([], [], color="C3", ls="--", label=display_name(model))
    axes[0, 0].legend(loc="lower right", framealpha=0.9)
    fig.text(0.99, 0.002, "negative: imaginary", fontsize=9, color="0.35", ha="right", va="bottom")
    source_note(fig, dataset_label)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def _confusion_panel(ax, counts: np.ndarray, title: str, published: np.ndarray | None = None):
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.nan_to_num(counts / totals)
    image = ax.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
    for i in range(3):
        for j in range(3):
            text = f"{counts[i, j]}"
            if published is not None:
                text += f"\n(paper {published[i, j]})"
            ax.text(j, i, text, ha="center", va="center", fontsize=9, color="w" if fraction[i, j] > 0.6 else "k")
    ax.set(xticks=range(3), yticks=range(3), title=f"{title} (n = {int(counts.sum())})")
    ax.set_xticklabels(CLASS_LABELS, fontsize=9)
    ax.set_yticklabels(CLASS_LABELS, fontsize=9)
    return image


def confusion_grid(panels: list[dict], dataset_label: str, *, columns: int = 2):
    """Fig. 3 / 4: one 3x3 panel per entry {counts, title, published (optional)}; rows = reference
    class, columns = model class; colour = fraction of the reference class (row), one colourbar."""
    columns = max(1, min(columns, len(panels), 2))
    rows = int(np.ceil(len(panels) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(PAGE_WIDTH_IN, 3.2 * rows + 0.3), squeeze=False)
    image = None
    for ax, panel in zip(axes.flat, panels, strict=False):
        image = _confusion_panel(ax, panel["counts"], panel["title"], panel.get("published"))
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("reference class")
    for ax in axes[:, 1:].flat:  # class names once per row: they would run into the panel to the left
        ax.set_yticklabels([])
    for ax in axes[-1, :]:
        ax.set_xlabel("model class")
    source_note(fig, dataset_label)
    fig.tight_layout(rect=(0, 0.03, 0.9, 1))
    if image is not None:
        bar = fig.add_axes((0.91, 0.15, 0.02, 0.7))
        fig.colorbar(image, cax=bar, label="fraction of the reference class")
    return fig


def delta_sigma_distributions(sigma: pd.DataFrame, models: Sequence[str], dataset_label: str):
    """Fig. S9: σ_model − σ_ref for both approaches, per model."""
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 3.4), sharex=True, sharey=True)
    columns = ["delta_sigma_reference_fc", "delta_sigma_model_fc"]
    values = pd.concat([sigma[column] for column in columns]).dropna()
    # the same bins in both panels, so the two approaches compare at a glance
    edges = np.linspace(min(values.min(), -0.05), max(values.max(), 0.05), 25) if len(values) else 10
    for ax, column, title in zip(axes, columns, ["with Φ_ref", "with Φ_model"], strict=True):
        for k, model in enumerate(models):
            ax.hist(sigma[sigma["model"] == model][column].dropna(), bins=edges, histtype="step", lw=1.4, color=f"C{k}", label=display_name(model))
        ax.axvline(0, color="0.4", lw=0.8)
        ax.set(xlabel="σ_model − σ_ref", title=title)
    axes[0].set_ylabel(f"compounds (n = {sigma['compound'].nunique()})")
    axes[0].legend()
    source_note(fig, dataset_label)
    fig.tight_layout(rect=(0, 0.04, 1, 1))  # room for the source note under the x label
    return fig


def delta_sigma_vs_phonon_errors(merged: pd.DataFrame, dataset_label: str):
    """Fig. 5: |σ_ref − σ_model-only| against RMSE(ω²) and RMSE(v_g)."""
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 3.6), sharey=True)
    for ax, column, label in zip(axes, ["rmse_omega2_thz2", "rmse_vg_thz_ang"], ["RMSE(ω²) (THz²)", "RMSE(v_g) (THz·Å)"], strict=True):
        for k, halide in enumerate(h for h in HALIDE_ORDER if h in set(merged["halide"])):
            data = merged[merged["halide"] == halide]
            ax.scatter(data[column], data["abs_delta_sigma"], s=30, color=f"C{k}", label=halide, edgecolor="k", lw=0.4)
        if len(merged) <= 12:  # a handful of compounds: name each point, as the text discusses them
            for _, row in merged.iterrows():
                ax.annotate(row["compound"], (row[column], row["abs_delta_sigma"]), fontsize=9,
                            xytext=(3, 3), textcoords="offset points")
        ax.set(xscale="log", xlabel=label)
    axes[0].set_ylabel(f"|σ_ref − σ_model-only| (n = {len(merged)})")
    axes[0].legend()
    source_note(fig, dataset_label)
    fig.tight_layout(rect=(0, 0.04, 1, 1))  # room for the source note under the x label
    return fig


def sigma_db_self_check(check: pd.DataFrame, dataset_label: str):
    """σ_DFT stored in the summary database against (left) the same number recomputed like for like
    (every production file, none dropped, pooled) and (right) the paper's σ of Fig. 3 (⟨σ(t)⟩ over
    ``_1`` and ``_2`` after the discard); rows of :func:`hdpbench.book.analysis.sigma_db_check`."""
    from matplotlib import ticker

    from hdpbench.physics.anharmonicity import CLASS_EDGES

    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 3.6))
    columns = [("sigma_db_recomputed", "σ recomputed like for like"), ("sigma_paper", "σ_ref of Fig. 3 (paper's frames)")]
    low = float(np.nanmin(check[["sigma_db", "sigma_db_recomputed", "sigma_paper"]].to_numpy())) * 0.8
    high = float(np.nanmax(check[["sigma_db", "sigma_db_recomputed", "sigma_paper"]].to_numpy())) * 1.25
    for ax, (column, label) in zip(axes, columns, strict=True):
        ax.plot([low, high], [low, high], color="0.6", lw=0.8, zorder=0)
        for k, halide in enumerate(h for h in HALIDE_ORDER if h in set(check["halide"])):
            rows = check[check["halide"] == halide]
            ax.scatter(rows["sigma_db"], rows[column], s=30, color=f"C{k}", label=halide, edgecolor="k", lw=0.4)
        for edge in CLASS_EDGES:  # the class limits: a point off the diagonal across one changes class
            ax.axvline(edge, color="0.85", lw=0.8, ls=":", zorder=0)
            ax.axhline(edge, color="0.85", lw=0.8, ls=":", zorder=0)
        ax.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high), xlabel=f"σ_DFT stored in the database (n = {len(check)})", ylabel=label)
        ticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5) if low <= t <= high]  # 1-2-5: σ spans about a decade
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(ticker.FixedLocator(ticks))
            axis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
            axis.set_minor_locator(ticker.NullLocator())
    axes[0].legend(loc="upper left")
    source_note(fig, dataset_label)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def temperature_traces(traces: dict[str, dict[str, np.ndarray]], target_K: float, dataset_label: str):
    """Instantaneous temperature of every model-MD run, one panel per model ({model: {compound: runs × steps}});
    NaN after a run was stopped. One colour per compound, the same in every panel."""
    compounds = list(dict.fromkeys(c for per_model in traces.values() for c in per_model))
    fig, axes = plt.subplots(1, len(traces), figsize=(PAGE_WIDTH_IN, 3.2), sharey=True, squeeze=False)
    for ax, (model, per_compound) in zip(axes[0], traces.items(), strict=True):
        for compound, temperatures in per_compound.items():
            colour = f"C{compounds.index(compound) % 10}"
            for run in np.atleast_2d(temperatures):
                ax.plot(run, color=colour, lw=0.6, alpha=0.7)
        ax.axhline(target_K, color="k", lw=0.8, ls="--")
        ax.set(xlabel="MD step", title=display_name(model))
    axes[0, 0].set_ylabel("T (K)")
    legend_width = 0.0
    if len(compounds) <= 12:  # beyond that (the full dataset) a legend would hide more than it tells
        handles = [plt.Line2D([], [], color=f"C{k % 10}", lw=1.5) for k in range(len(compounds))]
        fig.legend(handles, compounds, fontsize=9, loc="center right", frameon=False)
        legend_width = 1.45 / fig.get_figwidth()
    source_note(fig, dataset_label)
    fig.tight_layout(rect=(0, 0.04, 1 - legend_width, 1))
    return fig


def kpca_grid(maps: dict[str, dict[str, np.ndarray]], model: str, dataset_label: str, *, colour_by_sigma: bool = False):
    """Fig. 6 (by origin) or Figs. S10/S12 (by per-frame σ): one KPCA map per compound ({compound:
    stage arrays}), two per row, one legend; reference frames are circles, model-MD frames triangles.
    Coloured by σ, each map has its own colour scale and colourbar: σ spans 0.2 in one compound and 3
    in another, and one scale would leave all but one map in a single colour."""
    compounds = list(maps)
    columns = min(2, len(compounds))
    rows = -(-len(compounds) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(PAGE_WIDTH_IN, 2.9 * rows + 0.5), squeeze=False)
    names = {0: "reference MD", 1: f"{display_name(model)} MD"}
    styles = {0: REFERENCE_STYLE, 1: MODEL_STYLE}
    for ax, compound in zip(axes.flat, compounds, strict=False):
        arrays = maps[compound]
        coordinates, labels = arrays["coordinates"], arrays["labels"]
        if colour_by_sigma:
            values = arrays["sigma_per_frame"]
            limits = (np.nanmin(values), np.nanmax(values)) if np.isfinite(values).any() else (0.0, 1.0)
        for label in (0, 1):
            chosen = labels == label
            if colour_by_sigma:
                points = ax.scatter(*coordinates[chosen].T, c=arrays["sigma_per_frame"][chosen], cmap="viridis",
                                    marker=styles[label]["marker"], s=16, vmin=limits[0], vmax=limits[1])
            else:
                ax.scatter(*coordinates[chosen].T, s=16, alpha=0.6, **styles[label])
        if colour_by_sigma:
            fig.colorbar(points, ax=ax, label="σ(t)", fraction=0.06, pad=0.02)
        ax.set_title(compound)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.flat[len(compounds):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("KPCA 2")
    for ax in axes[-1, :]:
        ax.set_xlabel("KPCA 1")
    handles = [plt.Line2D([], [], ls="", markersize=6, **({"marker": styles[k]["marker"], "color": "0.4"} if colour_by_sigma else styles[k]))
               for k in (0, 1)]
    fig.legend(handles, [names[0], names[1]], loc="upper center", ncol=2, frameon=False)
    source_note(fig, dataset_label)
    fig.tight_layout(rect=(0, 0.03, 1, 1 - 0.35 / fig.get_figheight()))
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


# -- phonon fine-tuning page -----------------------------------------------------------------------
SPLIT_STYLE = {"in-sample": {"marker": "o", "color": "0.45", "ls": "-"}, "held-out": {"marker": "^", "color": "C3", "ls": "--"}}


def finetune_training_curves(log: pd.DataFrame, dataset_label: str):
    """Φ error over fixed columns against epoch, one panel per fine-tuned model: in-sample compounds
    (their Φ is in the loss) solid grey, held-out compounds dashed red; epoch 0 is the base model."""
    models = list(dict.fromkeys(log["model"]))
    fig, axes = _panels(len(models), height=3.2, sharey=True)
    for ax, model in zip(axes, models, strict=True):
        rows = log[log["model"] == model]
        for (_, split), group in rows.groupby(["compound", "split"], sort=False):
            style = SPLIT_STYLE[split]
            ax.plot(group["epoch"], group["phi_mae_ev_ang2"], color=style["color"], ls=style["ls"], marker=style["marker"], ms=3, lw=1)
        for split, style in SPLIT_STYLE.items():
            if (rows["split"] == split).any():
                n = rows[rows["split"] == split]["compound"].nunique()
                ax.plot([], [], color=style["color"], ls=style["ls"], marker=style["marker"], ms=3, label=f"{split} (n = {n})")
        ax.set(xlabel="epoch", ylabel="mean |ΔΦ| (eV/Å²)", title=display_name(model))
        ax.legend(loc="upper right", framealpha=0.9)
    source_note(fig, dataset_label)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def before_after(table: pd.DataFrame, column: str, quantity: str, dataset_label: str):
    """Each compound's ``column`` with the base model (x) and after fine-tuning (y), one panel per
    fine-tuned model; below the diagonal = improved. Held-out compounds red triangles, labelled."""
    models = list(dict.fromkeys(table["model"]))
    fig, axes = _panels(len(models), height=3.4)
    for ax, model in zip(axes, models, strict=True):
        rows = table[table["model"] == model]
        values = np.concatenate([rows[f"{column}_before"].to_numpy(float), rows[f"{column}_after"].to_numpy(float)])
        low, high = 0.0, float(np.nanmax(values)) * 1.1 if np.isfinite(values).any() else 1.0
        ax.plot([low, high], [low, high], color="0.6", lw=0.8)
        for split, style in SPLIT_STYLE.items():
            part = rows[rows["split"] == split]
            ax.scatter(part[f"{column}_before"], part[f"{column}_after"], marker=style["marker"], color=style["color"], s=30, label=f"{split} (n = {len(part)})", zorder=3)
            if split == "held-out":
                for _, row in part.iterrows():
                    ax.annotate(row["compound"], (row[f"{column}_before"], row[f"{column}_after"]), fontsize=9, xytext=(3, 3), textcoords="offset points")
        ax.set(xlim=(low, high), ylim=(low, high), xlabel=f"{quantity}, base", ylabel=f"{quantity}, fine-tuned", title=display_name(model))
        ax.legend(loc="upper left", framealpha=0.9)
    source_note(fig, dataset_label)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def bands_before_after(panels: Sequence[tuple[str, dict[str, np.ndarray], dict[str, np.ndarray]]], base: str, tuned: str, dataset_label: str):
    """Reference bands (black), the base model's (blue, dotted) and the fine-tuned model's (red,
    dashed) on the same q-points; one panel per (title, base arrays, fine-tuned arrays)."""
    fig, axes = _panels(len(panels), height=3.4, sharey=False)
    for ax, (title, before, after) in zip(axes, panels, strict=True):
        distances = before["distances"]
        ax.plot(distances, before["frequencies_reference"], color="k", lw=1.0)
        ax.plot(distances, before["frequencies_model"], color="C0", lw=0.9, ls=":")
        ax.plot(distances, after["frequencies_model"], color="C3", lw=0.9, ls="--")
        if "band_labels" in before:
            positions, names = band_ticks(distances, before["segment_ends"], before["band_labels"], before["band_connections"])
            for tick in positions[1:-1]:
                ax.axvline(tick, color="0.8", lw=0.6)
            ax.set_xticks(positions, names)
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set(xlim=(distances[0], distances[-1]), title=title, ylabel="frequency (THz)")
    axes[0].plot([], [], color="k", label="reference")
    axes[0].plot([], [], color="C0", ls=":", label=display_name(base))
    axes[0].plot([], [], color="C3", ls="--", label=display_name(tuned))
    axes[0].legend(loc="lower right", framealpha=0.9)
    fig.text(0.99, 0.002, "negative: imaginary", fontsize=9, color="0.35", ha="right", va="bottom")
    source_note(fig, dataset_label)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


# -- σ page: Fig. S7 ----------------------------------------------------------------------------------
TRACE_STYLES = {
    "sigma_reference": {"color": "k", "ls": "-", "label": "σ_ref(t): reference forces, Φ_ref"},
    "sigma_model_fc_reference": {"color": "C0", "ls": "--", "label": "σ_model(Φ_ref)(t): model forces, Φ_ref"},
    "sigma_model_fc_model": {"color": "C3", "ls": "-.", "label": "σ_model(Φ_model)(t): model forces, own Φ"},
}


def sigma_time_traces(traces: pd.DataFrame, descriptions: dict[str, str], model: str, dataset_label: str):
    """Fig. S7: σ(t) against time for a few compounds (``analysis.sigma_trace_table`` rows), one panel
    each, titled with ``descriptions[compound]``: σ_ref, σ_model(Φ_ref) and σ_model(Φ_model). Each
    production file is its own line (never joined across a file boundary, marked by a dotted line);
    the class limits σ = 0.5 and 1 are grey."""
    compounds = [c for c in descriptions if c in set(traces["compound"])]
    fig, axes = plt.subplots(len(compounds), 1, figsize=(PAGE_WIDTH_IN, 2.6 * len(compounds) + 1.0), squeeze=False)
    for ax, compound in zip(axes[:, 0], compounds, strict=True):
        rows = traces[traces["compound"] == compound].sort_values("time_fs")
        for limit in (0.5, 1.0):
            ax.axhline(limit, color="0.75", lw=0.8, zorder=0)
        for k, (_, part) in enumerate(rows.groupby("file", sort=True)):
            if k:  # the boundary between two production files
                ax.axvline(part["file_start_fs"].iloc[0], color="0.4", lw=0.8, ls=":")
            for column, style in TRACE_STYLES.items():
                ax.plot(part["time_fs"], part[column], color=style["color"], ls=style["ls"], lw=1.1)
        n_files = rows["file"].nunique()
        ax.set(ylabel="σ(t)", title=f"{compound}: {descriptions[compound]} (n = {len(rows)} frames, {n_files} file{'s' if n_files > 1 else ''})")
    axes[-1, 0].set_xlabel("time (fs), production files end to end (dotted: file boundary)")
    handles = [plt.Line2D([], [], color=s["color"], ls=s["ls"], lw=1.1) for s in TRACE_STYLES.values()]
    fig.legend(handles, [f"{s['label']}" for s in TRACE_STYLES.values()], loc="upper center", ncol=1, frameon=False,
               title=f"model: {display_name(model)}", title_fontsize=9)
    source_note(fig, dataset_label)
    legend_height = 0.85 / fig.get_figheight()
    fig.tight_layout(rect=(0, 0.03, 1, 1 - legend_height))
    return fig


def error_scatter_by_halide(phonons: pd.DataFrame, models: Sequence[str], dataset_label: str):
    """Fig. 1a on a dataset without σ_ref: RMSE(ω²) against RMSE(v_g) per compound, one panel per model,
    coloured by halide (n per halide in the legend); best and worst compound of each panel labelled."""
    fig, axes = _panels(len(models), height=3.4, sharey=True)
    halides = [h for h in HALIDE_ORDER if h in set(phonons["halide"])]
    for ax, model in zip(axes, models, strict=True):
        data = phonons[phonons["model"] == model]
        for k, halide in enumerate(halides):
            rows = data[data["halide"] == halide]
            ax.scatter(rows["rmse_vg_thz_ang"], rows["rmse_omega2_thz2"], s=30, color=f"C{k}", edgecolor="k", lw=0.4,
                       label=f"{halide} (n = {len(rows)})")
        if len(data):
            for name, row in (("best", data.loc[data["rmse_omega2_thz2"].idxmin()]), ("worst", data.loc[data["rmse_omega2_thz2"].idxmax()])):
                on_right = row["rmse_vg_thz_ang"] > data["rmse_vg_thz_ang"].median()
                ax.annotate(row["compound"], (row["rmse_vg_thz_ang"], row["rmse_omega2_thz2"]), fontsize=9,
                            xytext=(-4 if on_right else 4, -5 if name == "worst" else 4), textcoords="offset points",
                            ha="right" if on_right else "left", va="top" if name == "worst" else "bottom")
        ax.set(xscale="log", yscale="log", xlabel="RMSE(v_g) (THz·Å)", title=f"{display_name(model)} (n = {len(data)})")
        plain_log_ticks(ax)
        ax.legend(fontsize=9, loc="best", framealpha=0.9)
    axes[0].set_ylabel("RMSE(ω²) (THz²)")
    source_note(fig, dataset_label)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def stability_confusion_grid(panels: Sequence[tuple[str, np.ndarray]], dataset_label: str, *, columns: int = 3):
    """Figs. S3–S6 as classes: one 2 x 2 panel per (title, counts) entry, rows the reference's class
    (stable, unstable), columns the model's; counts written in the cells, shade = fraction of the row."""
    labels = ["stable", "unstable"]
    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(min(2.4 * columns, PAGE_WIDTH_IN), 2.5 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    for ax, (title, counts) in zip(flat, panels, strict=False):
        totals = counts.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = np.nan_to_num(counts / totals)
        ax.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
        for i in range(2):
            for j in range(2):
                ax.text(j, i, f"{counts[i, j]}", ha="center", va="center", fontsize=10, color="w" if fraction[i, j] > 0.6 else "k")
        ax.set(xticks=range(2), yticks=range(2), title=f"{title} (n = {int(counts.sum())})")
        ax.set_xticklabels(labels, fontsize=9)
        ax.set_yticklabels(labels, fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel("DFT class")
    for ax in axes[-1, :]:
        ax.set_xlabel("model class")
    source_note(fig, dataset_label)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig
