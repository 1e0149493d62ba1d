"""Configuration-space maps: SOAP descriptors, the REMatch kernel between frames, kernel PCA (paper §2.3).

Every atom is a SOAP centre (dscribe; periodic, r_cut 5 Å, Gaussian width 0.1 Å, n_max 7, l_max 6)
and each atom's vector is L2-normalised; frames are compared with the REMatch kernel as dscribe defines
it (linear metric, normalised; computed here in batches, equal to dscribe's ``REMatchKernel``) and projected to 2-D with scikit-learn's KernelPCA on the precomputed kernel,
reference-MD and model-MD frames of one compound in one map. REMatch costs O(frames²) kernel
entries, each an entropy-regularised assignment between all atom pairs: subsample frames
(``max_frames_per_set``) and say so on the figure.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

from hdpbench.core.validation import require_choice, require_dtype, require_positive_int

SOAP_SETTINGS = {"r_cut": 5.0, "n_max": 7, "l_max": 6, "sigma": 0.1, "periodic": True}
REMATCH_SETTINGS = {"alpha": 0.1, "threshold": 1e-6, "metric": "linear", "normalize_kernel": True}
GRAM_PRECISIONS = ("float64", "mixed", "float32")  # of REMatch's atom-pair products (rematch_kernel)
DEFAULT_CPU_BLOCK = 10  # frames per block of rematch_kernel's CPU path (measured best; its docstring)


@dataclass(frozen=True)
class KPCASettings:
    max_frames_per_set: int = 100  # REMatch is O(frames²): reference and model frames are subsampled evenly
    frames: str = "paper"  # AIMD files of the map (io.authors.FrameSet); "all" adds the extended AIMD of Fig. S11
    discard: int = 100
    dtype: str = "float32"
    # precision of REMatch's atom-pair products (rematch_kernel's gram_dtype): "mixed" is within 1e-11
    # of dscribe's float64 kernel on the demo AIMD (tested) in two thirds of its time
    gram_precision: str = "mixed"

    def __post_init__(self):
        require_choice("kpca setting frames", self.frames, ("paper", "all"))
        require_choice("kpca setting gram_precision", self.gram_precision, GRAM_PRECISIONS)
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
    block: int | None = None,
    gram_dtype: str = "float64",
    threads: int | None = None,
    device: str | None = None,
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
    frames (tested).

    The matrix products are the whole cost (BLAS-bound, as in dscribe), so ``gram_dtype`` chooses their
    precision: ``"float64"`` (dscribe's); ``"float32"`` (C off by ~2e-6, K by ~3e-8); ``"mixed"``
    (nearly as fast as float32, K within ~1e-11 of float64's on the demo AIMD: :class:`_GramFactors`).
    Each is compared with dscribe by the tests and by ``hdpbench bench rematch``.

    ``threads`` blocks are solved at once (default: the process's pinned thread count,
    :func:`hdpbench.core.torch_setup.pin_threads`), each with single-threaded BLAS, so the kernel is
    bit-identical whatever the count (tested): a multi-threaded matrix product may sum in another
    order, a block solved on another thread does not. Measured on 2 cores (demo AIMD, 120 x 120
    frames of 80 atoms, mixed): 3.0 s on one thread, 1.5 s on two (blocks of 16); blocks of 10 then
    took 1.40 s, against 1.45–1.53 for 16, 8 and 6 (more blocks to share out, products still large).
    ``block`` defaults to 10 frames on the CPU path.

    ``device``: None computes with numpy as above; a torch device (``"cuda"``, ``"cuda:1"``, also
    ``"cpu"``) computes the same arithmetic with torch tensors there, one block after another in
    blocks of ``block`` (default 64) frames: the GPU path (equal to dscribe within 1e-12 in float64,
    tested on the CPU; ``hdpbench bench rematch --device cuda`` measures it). SOAP stays dscribe's.
    """
    require_choice("gram_dtype", gram_dtype, GRAM_PRECISIONS)
    if block is not None:
        require_positive_int("block", block)
    if device is not None:
        ops = _TorchOps(device)
        factors = _GramFactors(descriptors, other, gram_dtype, ops=ops)
        with ThreadPoolExecutor(max_workers=1) as pool:  # the device runs each block in parallel itself
            return _solve_blocks(factors, other is None, block or 64, pool, progress)
    with _single_threaded_blas(), ThreadPoolExecutor(max_workers=_rematch_threads(threads)) as pool:
        factors = _GramFactors(descriptors, other, gram_dtype, map_frames=pool.map)
        return _solve_blocks(factors, other is None, block or DEFAULT_CPU_BLOCK, pool, progress)


def _solve_blocks(factors: _GramFactors, symmetric: bool, block: int, pool: ThreadPoolExecutor, progress: bool) -> np.ndarray:
    """The kernel from the factors, block pairs solved on ``pool`` (BLAS single-threaded already)."""
    from tqdm.auto import tqdm

    ops = factors.ops

    if not factors.sizes or (not symmetric and not factors.column_sizes):
        return np.zeros((len(factors.sizes), len(factors.column_sizes)))
    alpha, threshold = REMATCH_SETTINGS["alpha"], REMATCH_SETTINGS["threshold"]
    kernel = np.zeros((len(factors.sizes), len(factors.column_sizes)))
    tasks = _block_pairs(factors.sizes, factors.column_sizes, block, symmetric)

    def solve(task) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(first frames, second frames, K) of one block's pairs."""
        row_index, column_index, upper_only = task
        similarity, (i, j) = _local_similarities(factors, row_index, column_index, upper_only)
        if not symmetric:
            return [(i, j, ops.to_numpy(_rematch_sinkhorn(similarity, alpha, threshold, ops)))]
        # dscribe solves the pair (i, j) with i <= j as C_ij; a pair below the diagonal is solved as C_ji.
        below = i > j
        solved = []
        for take, swap in ((~below, False), (below, True)):
            if take.any():
                stack = similarity[ops.index(take)]
                stack = ops.contiguous(ops.permute(stack, (0, 2, 1))) if swap else stack
                first, second = (j[take], i[take]) if swap else (i[take], j[take])
                solved.append((first, second, ops.to_numpy(_rematch_sinkhorn(stack, alpha, threshold, ops))))
        return solved

    for solved in tqdm(pool.map(solve, tasks), total=len(tasks), desc="REMatch kernel", unit="block", disable=not progress):
        for first, second, values in solved:
            kernel[first, second] = values
            if symmetric:
                kernel[second, first] = values
    if symmetric:
        row_self = column_self = np.diag(kernel).copy()
    else:
        row_self = _self_similarities(factors, factors.sizes, block, alpha, threshold, side="rows")
        column_self = _self_similarities(factors, factors.column_sizes, block, alpha, threshold, side="columns")
    return kernel / np.sqrt(np.outer(row_self, column_self))


def _rematch_threads(threads: int | None) -> int:
    if threads is None:
        from hdpbench.core.torch_setup import default_threads, pinned_threads

        return pinned_threads() or default_threads()
    require_positive_int("threads", threads)
    return threads


def _single_threaded_blas():
    """BLAS on one thread while blocks are solved (the runner sets this already; callers such as the
    benchmark and the notebooks may not)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


class _NumpyOps:
    """The array operations of the REMatch kernel, in numpy (the CPU path)."""

    concatenate = staticmethod(np.concatenate)
    stack = staticmethod(np.stack)
    exp = staticmethod(np.exp)
    einsum = staticmethod(np.einsum)
    contiguous = staticmethod(np.ascontiguousarray)

    @staticmethod
    def array(x):
        return x

    @staticmethod
    def index(x):
        return np.asarray(x)

    @staticmethod
    def float64(x):
        return x.astype(np.float64, copy=False)

    @staticmethod
    def permute(x, axes):
        return x.transpose(axes)

    @staticmethod
    def full(shape, value, like):
        return np.full(shape, value, dtype=like.dtype)

    @staticmethod
    def to_numpy(x):
        return x


class _TorchOps:
    """The same operations on torch tensors on ``device`` (the GPU path)."""

    def __init__(self, device: str):
        from hdpbench.core.torch_setup import prepare_torch

        self.torch = prepare_torch()
        self.device = self.torch.device(device)
        self.concatenate, self.stack, self.exp, self.einsum = self.torch.cat, self.torch.stack, self.torch.exp, self.torch.einsum

    def array(self, x):
        return self.torch.as_tensor(x, device=self.device)

    def index(self, x):
        return self.torch.as_tensor(np.asarray(x), device=self.device)

    def float64(self, x):
        return x.to(self.torch.float64)

    @staticmethod
    def contiguous(x):
        return x.contiguous()

    @staticmethod
    def permute(x, axes):
        return x.permute(axes)

    def full(self, shape, value, like):
        return self.torch.full(shape, value, dtype=like.dtype, device=like.device)

    @staticmethod
    def to_numpy(x):
        return x.cpu().numpy()


class _GramFactors:
    """The frames' descriptors in the form their products C = X_i X_j^T are taken in.

    ``float64`` / ``float32``: the matrices themselves. ``mixed``: every atom vector x is split into
    its projection on a few reference directions and the rest, x = (x V) V^T + r, with V the
    ``REFERENCE_DIRECTIONS`` leading right singular vectors (float64) of the atom vectors of the first
    frame (and of the first ``other`` frame). Then x_a . x_b = (x_a V)(x_b V)^T + r_a . r_b exactly
    (r is orthogonal to V), the first term in float64 (16 of 2842 features: <1 % of the work) and the
    second in float32. An atom's SOAP vector stays close to those of its site in the first frame
    (thermal motion), so |r| is small against |x| = 1 and the float32 rounding, which scales with
    |r_a||r_b|, shrinks with it: measured on the demo AIMD (120 frames x 80 atoms), the kernel is
    within 1e-11 of float64's, against 3e-8 for plain float32, in 0.67 of float64's time (plain
    float32: 0.6). Frames unlike the first (another compound) leave larger r: at worst plain float32.
    """

    REFERENCE_DIRECTIONS = 16

    def __init__(self, descriptors, other, precision: str, *, map_frames=map, ops=_NumpyOps):
        self.ops = ops
        rows = [np.asarray(x, dtype=np.float64) for x in descriptors]
        columns = rows if other is None else [np.asarray(y, dtype=np.float64) for y in other]
        self.sizes = [len(x) for x in rows]
        self.column_sizes = [len(y) for y in columns]
        if precision == "mixed" and rows and columns:
            reference = rows[0] if other is None else np.concatenate([rows[0], columns[0]])
            _, _, directions = np.linalg.svd(reference, full_matrices=False)
            basis = directions[: self.REFERENCE_DIRECTIONS].T  # (features, k) orthonormal columns
            split = functools.partial(self._split, basis=basis, map_frames=map_frames)
            self.rows, self.columns = split(rows), (None if other is None else split(columns))
        else:
            cast = np.float32 if precision == "float32" else np.float64
            self.rows = ([x.astype(cast, copy=False) for x in rows],)
            self.columns = None if other is None else ([y.astype(cast, copy=False) for y in columns],)
        if ops is not _NumpyOps:  # the split is made in numpy, the products where ops computes
            self.rows = tuple([ops.array(x) for x in part] for part in self.rows)
            self.columns = None if self.columns is None else tuple([ops.array(y) for y in part] for part in self.columns)
        if self.columns is None:
            self.columns = self.rows

    @staticmethod
    def _split(frames, basis, map_frames=map):
        """(projections on ``basis``, float32 residuals) of each frame's atom vectors; ``map_frames``
        runs the frames (e.g. a thread pool's ``map``)."""

        def split_frame(x):
            projection = x @ basis
            return projection, (x - projection @ basis.T).astype(np.float32)

        projections, residuals = zip(*map_frames(split_frame, frames), strict=True) if frames else ((), ())
        return list(projections), list(residuals)

    def gram(self, row_index, column_index, upper_only: bool, side: str | None = None) -> np.ndarray:
        """(atoms of the row frames) x (atoms of the column frames) products, float64."""
        rows = self.rows if side != "columns" else self.columns
        columns = self.columns if side is None else rows
        concatenate = self.ops.concatenate
        gram = None
        for row_parts, column_parts in zip(rows, columns, strict=True):
            a = concatenate([row_parts[i] for i in row_index])
            part = a @ a.T if upper_only else a @ concatenate([column_parts[j] for j in column_index]).T  # a @ a.T: BLAS syrk
            gram = self.ops.float64(part) if gram is None else gram + part
        return gram


def rematch_product_flops(frame_sizes: Sequence[int], n_features: int, block: int = DEFAULT_CPU_BLOCK) -> float:
    """Floating-point operations of the atom-pair products of :func:`rematch_kernel`'s symmetric kernel
    of frames with ``frame_sizes`` atoms and ``n_features`` descriptor features, in its blocks of
    ``block`` frames (a diagonal block's a a^T counted as BLAS's syrk computes it: each pair once)."""
    flops = 0.0
    for rows, columns, upper_only in _block_pairs(frame_sizes, frame_sizes, block, symmetric=True):
        n, m = sum(frame_sizes[i] for i in rows), sum(frame_sizes[j] for j in columns)
        flops += (n * (n + 1) if upper_only else 2 * n * m) * n_features
    return flops


def _block_pairs(rows, columns, block: int, symmetric: bool) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """(row frames, column frames, upper triangle only) blocks of frame sizes ``rows``/``columns``;
    frames in one block have one size."""

    row_blocks = _size_blocks(rows, block)
    if not symmetric:
        return [(r, c, False) for r in row_blocks for c in _size_blocks(columns, block)]
    return [(r, c, i == k) for i, r in enumerate(row_blocks) for k, c in enumerate(row_blocks) if k >= i]


def _size_blocks(frame_sizes, block: int) -> list[np.ndarray]:
    """Frame indices in blocks of at most ``block`` frames of one size (ascending within a size)."""
    sizes = np.asarray(frame_sizes)
    blocks = []
    for size in np.unique(sizes):
        members = np.flatnonzero(sizes == size)
        blocks.extend(members[start : start + block] for start in range(0, len(members), block))
    return blocks


def _local_similarities(factors: _GramFactors, row_index, column_index, upper_only: bool):
    """C_ij = X_i X_j^T for every frame pair of a block, shape (pairs, n_i, n_j), and the pairs (i, j)."""
    ops = factors.ops
    gram = factors.gram(row_index, column_index, upper_only)
    n, m = factors.sizes[row_index[0]], factors.column_sizes[column_index[0]]
    blocks = ops.permute(gram.reshape(len(row_index), n, len(column_index), m), (0, 2, 1, 3))
    i, j = np.meshgrid(np.arange(len(row_index)), np.arange(len(column_index)), indexing="ij")
    if upper_only:
        keep = i <= j
        similarity = ops.contiguous(blocks[ops.index(i[keep]), ops.index(j[keep])])
        i, j = i[keep], j[keep]
    else:
        similarity = ops.contiguous(blocks).reshape(-1, n, m)
        i, j = i.ravel(), j.ravel()
    return similarity, (np.asarray(row_index)[i], np.asarray(column_index)[j])


def _rematch_sinkhorn(similarity, alpha: float, threshold: float, ops=_NumpyOps):
    """dscribe's ``REMatchKernel.get_global_similarity`` for a stack of (n, m) similarity matrices
    (float64, numpy or torch as ``ops``): Sinkhorn balancing of exp(-(1 - C)/alpha) to uniform
    marginals, each matrix stopping when dscribe's would, then Tr(P^T C)."""
    pairs, n, m = similarity.shape
    transport = ops.exp(-(1.0 - similarity) / alpha)
    u = ops.full((pairs, n), 1.0 / n, similarity)
    v = ops.full((pairs, m), 1.0 / m, similarity)
    active = ops.index(np.arange(pairs))
    iteration = 0
    while len(active):
        k = transport if len(active) == pairs else transport[active]
        u_previous, v_previous = u[active], v[active]
        v_new = (1.0 / m) / ops.einsum("bi,bij->bj", u_previous, k)
        u_new = (1.0 / n) / ops.einsum("bij,bj->bi", k, v_new)
        u[active], v[active] = u_new, v_new
        if iteration % 5:  # dscribe tests convergence on every iteration not divisible by 5
            error = ((u_new - u_previous) ** 2).sum(1) / (u_new**2).sum(1) + ((v_new - v_previous) ** 2).sum(1) / (v_new**2).sum(1)
            active = active[error > threshold]
        iteration += 1
    return ops.einsum("bi,bij,bj->b", u, transport * similarity, v)


def _self_similarities(factors: _GramFactors, sizes, block: int, alpha: float, threshold: float, side: str) -> np.ndarray:
    """Unnormalised REMatch K_ii of each frame of ``side`` (rows, columns) with itself (for a rectangular
    kernel's normalisation)."""
    ops = factors.ops
    values = np.empty(len(sizes))
    for index in _size_blocks(sizes, block):
        similarity = ops.stack([factors.gram([i], [i], True, side=side) for i in index])
        values[index] = ops.to_numpy(_rematch_sinkhorn(similarity, alpha, threshold, ops))
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
    gram_precision: str = "float64",
    device: str | None = None,
) -> ConfigurationMap:
    """KPCA map of reference and model frames of one compound (kernel computed unless given;
    ``gram_precision`` and ``device``: :func:`rematch_kernel`'s ``gram_dtype`` and ``device``)."""
    reference_index = subsample(len(reference_frames), max_frames_per_set)
    model_index = subsample(len(model_frames), max_frames_per_set)
    frames = [reference_frames[i] for i in reference_index] + [model_frames[i] for i in model_index]
    labels = np.array([0] * len(reference_index) + [1] * len(model_index))
    if kernel is None:
        kernel = rematch_kernel(soap_descriptors(frames), progress=progress, gram_dtype=gram_precision, device=device)
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
