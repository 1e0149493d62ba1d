"""Numbers the paper publishes (Yang et al., PCCP 2026), for side-by-side display; never used as results.

Sources: Fig. 3 (confusion counts), Table 2 (configuration-space maps), §3.1 and §3.3 (findings), as
transcribed in the project's methods specification.
"""

from __future__ import annotations

import numpy as np

# Model order of the paper's figures (Table 1 names → paper labels).
PAPER_MODELS = ["mace-matpes-pbe-0", "medium-mpa-0", "medium-0b3", "medium-omat-0"]
PAPER_LABELS = {
    "mace-matpes-pbe-0": "matpes-pbe-omat-ft",
    "medium-mpa-0": "mpa-0-medium",
    "medium-0b3": "mp-0b3-medium",
    "medium-omat-0": "omat-0-medium",
}
CLASS_LABELS = ["σ < 0.5", "0.5 ≤ σ ≤ 1", "σ > 1"]

# Fig. 3: rows = DFT class, columns = MACE class; approach "reference_fc" = Φ_DFT, "model_fc" = Φ_MACE.
_FIG3 = {
    "reference_fc": {
        "mace-matpes-pbe-0": [[717, 248, 1], [19, 390, 65], [0, 8, 234]],
        "medium-mpa-0": [[915, 55, 0], [52, 399, 26], [0, 24, 219]],
        "medium-0b3": [[856, 114, 0], [45, 399, 33], [0, 20, 223]],
        "medium-omat-0": [[940, 29, 0], [49, 414, 14], [1, 27, 215]],
    },
    "model_fc": {
        "mace-matpes-pbe-0": [[925, 41, 0], [155, 314, 5], [26, 114, 102]],
        "medium-mpa-0": [[960, 10, 0], [164, 304, 9], [28, 102, 113]],
        "medium-0b3": [[926, 44, 0], [145, 317, 15], [19, 89, 135]],
        "medium-omat-0": [[962, 7, 0], [150, 316, 11], [23, 102, 118]],
    },
}


def fig3_counts(model: str, approach: str) -> np.ndarray | None:
    """The paper's 3x3 counts for a paper model and approach ('reference_fc' or 'model_fc'); None otherwise."""
    counts = _FIG3.get(approach, {}).get(model)
    return None if counts is None else np.array(counts)


# Table 2: σ_DFT class, σ_MACE-only class (omat-0-medium) and |σ_DFT − σ_MACE| as printed.
TABLE2 = [
    {"compound": "Rb3AlF6", "sigma_dft_class": "<0.5", "sigma_mace_class": "<0.5", "abs_delta_sigma": 0.000375},
    {"compound": "Rb2NiAgF6", "sigma_dft_class": "<0.5", "sigma_mace_class": "[0.5,1]", "abs_delta_sigma": 0.400},
    {"compound": "Cs2NaRuF6", "sigma_dft_class": "[0.5,1]", "sigma_mace_class": "<0.5", "abs_delta_sigma": 0.663},
    {"compound": "K2InAgF6", "sigma_dft_class": "[0.5,1]", "sigma_mace_class": "[0.5,1]", "abs_delta_sigma": 0.00102},
    {"compound": "K2RbSbF6", "sigma_dft_class": "[0.5,1]", "sigma_mace_class": ">0.5 (as printed)", "abs_delta_sigma": 0.440},
]

# §3.1: "an order of magnitude improvement in RMSE(ω²)" of omat-0-medium over matpes-pbe-omat-ft.
PHONON_RMSE_OMEGA2_RATIO = 10
# §3.2: AIMD trajectories with a valid σ_DFT (the population of Fig. 3).
N_VALID_AIMD = 1682
# §3.3, Fig. 4a (omat-0-medium, MACE-only MD against DFT)
MD_LOWER_TRIANGLE = 0.38  # low-stability HDPs put in a more stable class
MD_UPPER_TRIANGLE = 0.06  # stable HDPs put in a less stable class (mostly fluorides)


def percent(fraction: float) -> str:
    """A published fraction as the paper prints it (0.38 → "38 %")."""
    return f"{100 * fraction:.0f} %"


FINDINGS = {
    "phonons": (
        "Errors fall from fluorides to iodides; omat-0-medium is best, with "
        f"~{PHONON_RMSE_OMEGA2_RATIO}x lower RMSE(ω²) than matpes-pbe-omat-ft."
    ),
    "sigma_model_fc": "With Φ_MACE, σ tails to lower values than σ_DFT: the models over-stabilise.",
    "md_lower_triangle": MD_LOWER_TRIANGLE,
    "md_upper_triangle": MD_UPPER_TRIANGLE,
}


def fig3_totals() -> dict[str, dict[str, int]]:
    """Sum of each published Fig. 3 panel, {approach: {model: total}}. The paper's population is
    N_VALID_AIMD trajectories, yet the printed panels of different models do not all add up to it."""
    return {approach: {model: int(np.sum(counts)) for model, counts in by_model.items()} for approach, by_model in _FIG3.items()}


def fig3_reconciliation() -> list[dict[str, object]]:
    """One row per published Fig. 3 panel: its total, the difference from N_VALID_AIMD, and its row
    sums (compounds per DFT class, which should not depend on the model, since the rows are σ_DFT)."""
    rows = []
    for approach, by_model in _FIG3.items():
        for model, counts in by_model.items():
            counts = np.asarray(counts)
            row_sums = counts.sum(axis=1)
            rows.append(
                {
                    "model": PAPER_LABELS[model],
                    "approach": "Φ_DFT" if approach == "reference_fc" else "Φ_MACE",
                    "total": int(counts.sum()),
                    f"minus {N_VALID_AIMD} valid AIMD": int(counts.sum()) - N_VALID_AIMD,
                    **{f"DFT class {label}": int(n) for label, n in zip(CLASS_LABELS, row_sums, strict=True)},
                }
            )
    return rows


def verdicts() -> list[tuple[str, str]]:
    """The paper's four verdicts as (title, sentence), their numbers formatted from this module's
    constants (the book's introduction includes them; nothing is typed twice)."""
    return [
        (
            "Harmonic phonons",
            "Errors fall from fluorides to iodides for every model, and the model trained on the most data "
            f"(omat-0-medium) is the most accurate: about {PHONON_RMSE_OMEGA2_RATIO}x lower RMSE(ω²) than the "
            "weakest (matpes-pbe-omat-ft).",
        ),
        (
            "σ along the DFT trajectories",
            "With model forces and the DFT force constants, σ falls in the DFT class for most of the "
            f"{N_VALID_AIMD} compounds with a valid AIMD trajectory; with the model's own force constants it "
            "tails towards lower values: the models over-stabilise the highly anharmonic and unstable compounds.",
        ),
        (
            "Model-only MD",
            "Run on its own at 300 K, omat-0-medium puts "
            f"{percent(MD_LOWER_TRIANGLE)} of the low-stability compounds into a more stable class, and only "
            f"{percent(MD_UPPER_TRIANGLE)} of the stable ones (mostly fluorides) into a less stable one.",
        ),
        (
            "Configuration space",
            "SOAP–REMatch kernel-PCA maps show that model MD and AIMD largely explore overlapping "
            "configurations; the large σ discrepancies come from errors of the model's Hessian, not from "
            "sampling other regions.",
        ),
    ]


def verdicts_markdown() -> str:
    """The verdicts as a numbered Markdown list (what ``book/_generated/verdicts.md`` holds)."""
    items = [f"{k}. **{title}.** {text}" for k, (title, text) in enumerate(verdicts(), start=1)]
    return "\n".join(items) + "\n"
