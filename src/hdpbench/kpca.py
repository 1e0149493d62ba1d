"""Configuration-space maps: SOAP descriptors, the REMatch kernel between frames, kernel PCA (paper §2.3).

Every atom is a SOAP centre (dscribe; periodic, r_cut 5 Å, Gaussian width 0.1 Å, n_max 7, l_max 6)
and each atom's vector is L2-normalised; frames are compared with dscribe's REMatch kernel (linear
metric, normalised) and projected to 2-D with scikit-learn's KernelPCA on the precomputed kernel,
reference-MD and model-MD frames of one compound in one map. REMatch costs O(frames²) kernel
entries, each an entropy-regularised assignment between all atom pairs: subsample frames
(``max_frames_per_set``) and say so on the figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

SOAP_SETTINGS = {"r_cut": 5.0, "n_max": 7, "l_max": 6, "sigma": 0.1, "periodic": True}
REMATCH_SETTINGS = {"alpha": 0.1, "threshold": 1e-6, "metric": "linear", "normalize_kernel": True}


def soap_descriptors(frames: Sequence[Atoms], species: Sequence[str] | None = None, *, n_jobs: int = 1) -> list[np.ndarray]:
    """Per-frame (n_atoms, n_features) SOAP matrices, each row L2-normalised."""
    from dscribe.descriptors import SOAP

    species = sorted(set(species or [s for atoms in frames for s in atoms.get_chemical_symbols()]))
    soap = SOAP(species=species, **SOAP_SETTINGS)
    descriptors = soap.create(list(frames), n_jobs=n_jobs)
    if len(frames) == 1:
        descriptors = [descriptors]
    normalised = []
    for matrix in descriptors:
        matrix = np.asarray(matrix, dtype=float)
        normalised.append(matrix / np.linalg.norm(matrix, axis=1, keepdims=True))
    return normalised


def rematch_kernel(
    descriptors: Sequence[np.ndarray], other: Sequence[np.ndarray] | None = None, *, progress: bool = False, block: int = 16
) -> np.ndarray:
    """Normalised REMatch kernel between frames (dscribe's implementation), computed in row blocks
    so long kernels show progress."""
    from dscribe.kernels import REMatchKernel
    from tqdm.auto import tqdm

    kernel = REMatchKernel(**REMATCH_SETTINGS)
    rows = list(descriptors)
    columns = rows if other is None else list(other)
    if len(rows) <= block:
        return np.asarray(kernel.create(rows, None if other is None else columns))
    # dscribe normalises each block by its own diagonal: K_ij / sqrt(K_ii K_jj), the same for any block.
    parts = [
        np.asarray(kernel.create(rows[start : start + block], columns))
        for start in tqdm(range(0, len(rows), block), desc="REMatch kernel", unit="block", disable=not progress)
    ]
    return np.concatenate(parts)


def kernel_pca(kernel: np.ndarray, n_components: int = 2) -> np.ndarray:
    from sklearn.decomposition import KernelPCA

    return KernelPCA(n_components=n_components, kernel="precomputed").fit_transform(kernel)


def subsample(n: int, max_frames: int | None) -> np.ndarray:
    """Evenly spaced indices, at most ``max_frames`` of ``n``."""
    if not max_frames or n <= max_frames:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_frames).round().astype(int))


def overlap_score(kernel: np.ndarray, labels: np.ndarray, *, model_label: int = 1, reference_label: int = 0) -> float:
    """Fraction of model frames whose nearest other frame (kernel distance √(2 − 2K)) is a reference frame.

    1 when the model samples where the reference does (identical trajectories give exactly 1);
    near 0 when the model explores a region of configuration space of its own.
    """
    distance = np.sqrt(np.clip(2.0 - 2.0 * kernel, 0.0, None))
    np.fill_diagonal(distance, np.inf)
    model_frames = np.flatnonzero(labels == model_label)
    if len(model_frames) == 0:
        return float("nan")
    nearest = labels[np.argmin(distance[model_frames], axis=1)]
    return float(np.mean(nearest == reference_label))


@dataclass
class ConfigurationMap:
    coordinates: np.ndarray  # (n_frames, 2)
    labels: np.ndarray  # 0 reference, 1 model
    kernel: np.ndarray
    frame_indices: dict[str, np.ndarray]  # which frames of each set were used
    overlap: float
    sigma_per_frame: np.ndarray | None = None  # for colouring (Figs. S10/S12), aligned with labels
    extra: dict = field(default_factory=dict)


def configuration_map(
    reference_frames: Sequence[Atoms],
    model_frames: Sequence[Atoms],
    *,
    max_frames_per_set: int | None = 100,
    kernel: np.ndarray | None = None,
    reference_sigma: np.ndarray | None = None,
    model_sigma: np.ndarray | None = None,
    progress: bool = False,
) -> ConfigurationMap:
    """KPCA map of reference and model frames of one compound (kernel computed unless given)."""
    reference_index = subsample(len(reference_frames), max_frames_per_set)
    model_index = subsample(len(model_frames), max_frames_per_set)
    frames = [reference_frames[i] for i in reference_index] + [model_frames[i] for i in model_index]
    labels = np.array([0] * len(reference_index) + [1] * len(model_index))
    if kernel is None:
        kernel = rematch_kernel(soap_descriptors(frames), progress=progress)
    sigma_per_frame = None
    if reference_sigma is not None and model_sigma is not None:
        sigma_per_frame = np.concatenate([np.asarray(reference_sigma)[reference_index], np.asarray(model_sigma)[model_index]])
    return ConfigurationMap(
        sigma_per_frame=sigma_per_frame,
        coordinates=kernel_pca(kernel),
        labels=labels,
        kernel=kernel,
        frame_indices={"reference": reference_index, "model": model_index},
        overlap=overlap_score(kernel, labels),
    )
