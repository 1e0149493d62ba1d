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

FINDINGS = {
    "phonons": "Errors fall from fluorides to iodides; omat-0-medium is best, with ~10x lower RMSE(ω²) than matpes-pbe-omat-ft.",
    "sigma_model_fc": "With Φ_MACE, σ tails to lower values than σ_DFT: the models over-stabilise.",
    "md_lower_triangle": 0.38,  # fraction of low-stability HDPs that MACE-only MD puts in a more stable class
    "md_upper_triangle": 0.06,  # fraction of stable HDPs put in a less stable class (mostly fluorides)
}
