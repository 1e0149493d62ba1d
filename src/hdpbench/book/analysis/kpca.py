"""The configuration-space maps section (§3.4, Table 2, Fig. S11)."""

from __future__ import annotations

import numpy as np
import pandas as pd


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
