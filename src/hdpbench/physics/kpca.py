"""Configuration-space maps: SOAP descriptors, the REMatch kernel between frames, kernel PCA (paper §2.3).

Every atom is a SOAP centre (dscribe; periodic, r_cut 5 Å, Gaussian width 0.1 Å, n_max 7, l_max 6)
and each atom's vector is L2-normalised; frames are compared with the REMatch kernel as dscribe defines
it (linear metric, normalised; computed here in batches, equal to dscribe's ``REMatchKernel``) and projected to 2-D with scikit-learn's KernelPCA on the precomputed kernel,
reference-MD and model-MD frames of one compound in one map. REMatch costs O(frames²) kernel
entries, each an entropy-regularised assignment between all atom pairs: subsample frames
(``max_frames_per_set``) and say so on the figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

from hdpbench.core.validation import require_choice, require_dtype, require_positive_int

SOAP_SETTINGS = {"r_cut": 5.0, "n_max": 7, "l_max": 6, "sigma": 0.1, "periodic": True}
REMATCH_SETTINGS = {"alpha": 0.1, "threshold": 1e-6, "metric": "linear", "normalize_kernel": True}


@dataclass(frozen=True)
class KPCASettings:
    max_frames_per_set: int = 100  # REMatch is O(frames²): reference and model frames are subsampled evenly
    frames: str = "paper"  # AIMD files of the map (io.authors.FrameSet); "all" adds the extended AIMD of Fig. S11
    discard: int = 100
    dtype: str = "float32"

    def __post_init__(self):
        require_choice("kpca setting frames", self.frames, ("paper", "all"))
        require_positive_int("kpca setting max_frames_per_set", self.max_frames_per_set)
        require_positive_int("kpca setting discard", self.discard, allow_zero=True)
        require_dtype("kpca setting dtype", self.dtype)


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
    descriptors: Sequence[np.ndarray],
    other: Sequence[np.ndarray] | None = None,
    *,
    progress: bool = False,
    block: int = 16,
    gram_dtype: str = "float64",
) -> np.ndarray:
    """Normalised REMatch kernel between frames, batched: dscribe's ``REMatchKernel`` (paper settings,
    ``REMATCH_SETTINGS``) computed block by block instead of pair by pair.

    ``descriptors``: per-frame (n_atoms, n_features) SOAP matrices (any mix of sizes); ``other``: a second
    set (rectangular kernel), else the symmetric kernel of ``descriptors``. Returns (n_frames, n_other)
    K_ij / sqrt(K_ii K_jj), as dscribe with ``normalize_kernel=True``.

    The same arithmetic as dscribe, in bulk: the atom-pair similarities C = X_i X_j^T of ``block`` x
    ``block`` frame pairs come from one matrix product, and their Sinkhorn iterations run together, each
    pair stopping at the iteration where dscribe's loop stops (same update order, same convergence test
    every iteration not divisible by 5), and only i <= j is solved for a symmetric kernel, as dscribe
    does (REMatch at finite convergence is not exactly symmetric). Equal to dscribe within 1e-12 on real
    frames (tested). ``gram_dtype="float32"`` halves the time of the matrix products, which dominate,
    at a cost in accuracy that ``hdpbench bench rematch`` measures.
    """
    from tqdm.auto import tqdm

    if gram_dtype not in ("float32", "float64"):
        raise ValueError(f"gram_dtype must be 'float32' or 'float64', not {gram_dtype!r}")
    rows = [np.asarray(x, dtype=gram_dtype) for x in descriptors]
    symmetric = other is None
    columns = rows if symmetric else [np.asarray(y, dtype=gram_dtype) for y in other]
    if not rows or not columns:
        return np.zeros((len(rows), len(columns)))
    alpha, threshold = REMATCH_SETTINGS["alpha"], REMATCH_SETTINGS["threshold"]
    kernel = np.zeros((len(rows), len(columns)))
    tasks = _block_pairs(rows, columns, block, symmetric)
    for row_index, column_index, upper_only in tqdm(tasks, desc="REMatch kernel", unit="block", disable=not progress):
        similarity, (i, j) = _local_similarities(rows, columns, row_index, column_index, upper_only)
        if not symmetric:
            kernel[i, j] = _rematch_sinkhorn(similarity, alpha, threshold)
            continue
        # dscribe solves the pair (i, j) with i <= j as C_ij; a pair below the diagonal is solved as C_ji.
        below = i > j
        for take, swap in ((~below, False), (below, True)):
            if take.any():
                stack = similarity[take].transpose(0, 2, 1) if swap else similarity[take]
                first, second = (j[take], i[take]) if swap else (i[take], j[take])
                values = _rematch_sinkhorn(np.ascontiguousarray(stack), alpha, threshold)
                kernel[first, second] = kernel[second, first] = values
    if symmetric:
        row_self = column_self = np.diag(kernel).copy()
    else:
        row_self = _self_similarities(rows, block, alpha, threshold)
        column_self = _self_similarities(columns, block, alpha, threshold)
    return kernel / np.sqrt(np.outer(row_self, column_self))


def _block_pairs(rows, columns, block: int, symmetric: bool) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """(row frames, column frames, upper triangle only) blocks; frames in one block have one size."""

    row_blocks = _size_blocks(rows, block)
    if not symmetric:
        return [(r, c, False) for r in row_blocks for c in _size_blocks(columns, block)]
    return [(r, c, i == k) for i, r in enumerate(row_blocks) for k, c in enumerate(row_blocks) if k >= i]


def _size_blocks(frames, block: int) -> list[np.ndarray]:
    """Frame indices in blocks of at most ``block`` frames of one size (ascending within a size)."""
    sizes = np.array([len(x) for x in frames])
    blocks = []
    for size in np.unique(sizes):
        members = np.flatnonzero(sizes == size)
        blocks.extend(members[start : start + block] for start in range(0, len(members), block))
    return blocks


def _local_similarities(rows, columns, row_index, column_index, upper_only: bool):
    """C_ij = X_i X_j^T for every frame pair of a block, shape (pairs, n_i, n_j), and the pairs (i, j)."""
    a = np.concatenate([rows[i] for i in row_index])
    gram = a @ a.T if upper_only else a @ np.concatenate([columns[j] for j in column_index]).T  # a @ a.T: BLAS syrk
    n, m = len(rows[row_index[0]]), len(columns[column_index[0]])
    blocks = gram.reshape(len(row_index), n, len(column_index), m).transpose(0, 2, 1, 3)
    i, j = np.meshgrid(np.arange(len(row_index)), np.arange(len(column_index)), indexing="ij")
    if upper_only:
        keep = i <= j
        similarity = np.ascontiguousarray(blocks[i[keep], j[keep]], dtype=np.float64)
        i, j = i[keep], j[keep]
    else:
        similarity = np.ascontiguousarray(blocks, dtype=np.float64).reshape(-1, n, m)
        i, j = i.ravel(), j.ravel()
    return similarity, (np.asarray(row_index)[i], np.asarray(column_index)[j])


def _rematch_sinkhorn(similarity: np.ndarray, alpha: float, threshold: float) -> np.ndarray:
    """dscribe's ``REMatchKernel.get_global_similarity`` for a stack of (n, m) similarity matrices:
    Sinkhorn balancing of exp(-(1 - C)/alpha) to uniform marginals, each matrix stopping when dscribe's
    would, then Tr(P^T C)."""
    pairs, n, m = similarity.shape
    transport = np.exp(-(1.0 - similarity) / alpha)
    u = np.full((pairs, n), 1.0 / n)
    v = np.full((pairs, m), 1.0 / m)
    active = np.arange(pairs)
    iteration = 0
    while len(active):
        k = transport if len(active) == pairs else transport[active]
        u_previous, v_previous = u[active], v[active]
        v_new = (1.0 / m) / np.einsum("bi,bij->bj", u_previous, k)
        u_new = (1.0 / n) / np.einsum("bij,bj->bi", k, v_new)
        u[active], v[active] = u_new, v_new
        if iteration % 5:  # dscribe tests convergence on every iteration not divisible by 5
            error = ((u_new - u_previous) ** 2).sum(1) / (u_new**2).sum(1) + ((v_new - v_previous) ** 2).sum(1) / (v_new**2).sum(1)
            active = active[error > threshold]
        iteration += 1
    return np.einsum("bi,bij,bj->b", u, transport * similarity, v)


def _self_similarities(frames, block: int, alpha: float, threshold: float) -> np.ndarray:
    """Unnormalised REMatch K_ii of each frame with itself (for a rectangular kernel's normalisation)."""
    values = np.empty(len(frames))
    for index in _size_blocks(frames, block):
        similarity = np.stack([frames[i] @ frames[i].T for i in index]).astype(np.float64)
        values[index] = _rematch_sinkhorn(similarity, alpha, threshold)
    return values


def rematch_kernel_dscribe(descriptors: Sequence[np.ndarray], other: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """The same kernel from dscribe's ``REMatchKernel``, pair by pair (the reference for tests and benchmarks)."""
    from dscribe.kernels import REMatchKernel

    return np.asarray(REMatchKernel(**REMATCH_SETTINGS).create(list(descriptors), None if other is None else list(other)))


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


def reference_split_overlap(kernel: np.ndarray, labels: np.ndarray, *, reference_label: int = 0) -> float:
    """The overlap score of the reference frames with themselves: the later half of them (in frame
    order) scored as if it were the model's against the earlier half.

    MD frames close in time are close in configuration space, so a frame's nearest neighbour tends to
    lie in its own stretch of trajectory: even two stretches of one dynamics score well below the 0.5
    of two shuffled samples. This is the scale on which a model's overlap score should be read.
    """
    frames = np.flatnonzero(labels == reference_label)
    if len(frames) < 4:
        return float("nan")
    halves = (np.arange(len(frames)) >= len(frames) // 2).astype(int)
    return overlap_score(kernel[np.ix_(frames, frames)], halves, model_label=1, reference_label=0)


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
