"""What the book's pages share when they show things to readers: the data behind each figure as CSV
beside the page, tables with human column names, units and sensible digits, and no NaN on screen.

The notebooks call these; the CSV files land in ``<page>_data/`` next to the executed notebook (the
folder ``python -m hdpbench.book`` passes as ``HDPBENCH_PAGE_DIR``), and each figure's Markdown links
its file with ``{download}``, which Sphinx copies into the built book.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from hdpbench.core import paths
from hdpbench.core.storage import atomic_path

PAGE_DIR_VARIABLE = "HDPBENCH_PAGE_DIR"
MISSING = "missing"

# Column ids of the analysis tables → what a reader sees (with units).
COLUMN_LABELS = {
    "model": "model",
    "compound": "compound",
    "halide": "halide",
    "rmse_omega2_thz2": "RMSE(ω²) (THz²)",
    "rmse_vg_thz_ang": "RMSE(v_g) (THz·Å)",
    "mae_freq_thz": "MAE(f) (THz)",
    "sigma_reference": "σ_ref",
    "sigma_reference_db": "σ_ref (summary db)",
    "sigma_model_fc_reference": "σ_model(Φ_ref)",
    "sigma_model_fc_model": "σ_model(Φ_model)",
    "sigma_model_only": "σ_model-only",
    "abs_delta_sigma": "|σ_ref − σ_model-only|",
    "delta_sigma_reference_fc": "σ_model(Φ_ref) − σ_ref",
    "delta_sigma_model_fc": "σ_model(Φ_model) − σ_ref",
    "overlap": "overlap score",
    "class_ref": "class (reference)",
    "class_model": "class (model)",
    "n_frames": "frames",
    "force_mae_ev_ang": "force MAE (eV/Å)",
    "gamma_acoustic_max_thz": "largest Γ acoustic |f| (THz)",
    "gamma_acoustic_max_thz_reference": "Γ acoustic, Φ_ref (THz)",
    "gamma_acoustic_max_thz_model": "Γ acoustic, Φ_model (THz)",
    "median_gamma_acoustic_thz_reference": "median Γ acoustic |f|, Φ_ref (THz)",
    "median_gamma_acoustic_thz_model": "median Γ acoustic |f|, Φ_model (THz)",
    "stability_accuracy": "stability class right (fraction)",
    "compounds": "compounds",
}
for _temperature in (300, 1000):
    COLUMN_LABELS[f"abs_error_F_{_temperature}K"] = f"MAE(F) at {_temperature} K (kJ/mol)"
    COLUMN_LABELS[f"abs_error_Cv_{_temperature}K"] = f"MAE(C_v) at {_temperature} K (J/K/mol)"
    COLUMN_LABELS[f"abs_error_S_{_temperature}K"] = f"MAE(S) at {_temperature} K (J/K/mol)"


def page_dir() -> Path:
    """Where the executed notebook of the current page lives (its CSV folders go beside it)."""
    return Path(os.environ.get(PAGE_DIR_VARIABLE) or paths.book_dir() / "_generated")


def figure_data(frame: pd.DataFrame, page: str, name: str, folder: str | Path | None = None) -> None:
    """Write one figure's data as ``<page>_data/<name>.csv`` beside the page (atomically); the page
    links it as ``{download}`Data of this figure (CSV) <<page>_data/<name>.csv>```. Returns nothing,
    so that a call ending a notebook cell prints no path onto the page."""
    path = Path(folder or page_dir() / f"{page}_data") / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def significant(value, digits: int = 3, missing: str = MISSING) -> str:
    """A number as a reader wants it: ``digits`` significant digits, no exponent for ordinary sizes,
    a typographic minus, and ``missing`` for None/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:d}".replace("-", "−")
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if -4 <= magnitude < 6:
        decimals = max(digits - 1 - magnitude, 0)
        text = f"{value:.{decimals}f}"
    else:
        text = f"{value:.{digits - 1}e}"
    return text.replace("-", "−")


CELL_PADDING = "0.2em 0.5em"
# what a dataset's compound has (hdpbench.data.datasets.CompoundEntry.has), as the data page shows it
INVENTORY_LABELS = {
    "unitcell": "unit cell", "reference_supercell": "reference supercell", "force_constants": "force constants (file)",
    "production_md_files": "production MD files", "training_pool": "training pool",
}  # fmt: skip


def readable(
    frame: pd.DataFrame, *, digits: int = 3, index: bool = False, labels: dict[str, str] | None = None, missing: str = MISSING
):
    """A pandas Styler: human column names (``COLUMN_LABELS``, then ``labels``), ``digits``
    significant digits, ``missing`` (or what the table means by it) for NaN/None, no row numbers
    unless ``index``."""
    names = {**COLUMN_LABELS, **(labels or {})}
    shown = frame.rename(columns=lambda c: names.get(c, c))
    if index:  # a transposed table has column ids as its index
        shown = shown.rename(index=lambda i: names.get(i, i) if isinstance(i, str) else i)
        shown = shown.rename_axis(index=names.get(shown.index.name, shown.index.name))
    styler = shown.style.format(lambda v: significant(v, digits, missing))
    # the book's theme pads pandas' own tables but not a Styler's: without this, cells run together
    styler = styler.set_table_styles([{"selector": "th, td", "props": [("padding", CELL_PADDING)]}], overwrite=False)
    if index:
        styler = styler.format_index(lambda v: significant(v, digits) if isinstance(v, float) else str(v))
    else:
        styler = styler.hide(axis="index")
    return styler


def show(table: pd.DataFrame, **kwargs) -> None:
    """Display a table as readers should see it (:func:`readable`: human column names, three
    significant digits, no row numbers)."""
    from IPython.display import display

    display(readable(table, **kwargs))
