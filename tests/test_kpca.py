"""SOAP–REMatch kernel maps: equal to dscribe used directly, perfect overlap for identical trajectories."""

from __future__ import annotations

import numpy as np
import pytest

from hdpbench.core.structures import double_perovskite
from hdpbench.physics.kpca import (
    configuration_map,
    overlap_score,
    reference_split_overlap,
    rematch_kernel,
    rematch_kernel_dscribe,
    rematch_product_flops,
    soap_descriptors,
    subsample,
)


def frames(n, amplitude=0.08, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        atoms = double_perovskite("Cs", "Ag", "Bi", "Br", 11.25, 0.25)
        atoms.positions += rng.normal(0, amplitude, atoms.positions.shape)
        out.append(atoms)
    return out


def test_kernel_equals_dscribe_directly():
    from dscribe.descriptors import SOAP
    from dscribe.kernels import REMatchKernel
    from sklearn.preprocessing import normalize

    sample = frames(4)
    soap = SOAP(species=["Ag", "Bi", "Br", "Cs"], r_cut=5.0, n_max=7, l_max=6, sigma=0.1, periodic=True)
    expected = REMatchKernel(metric="linear", alpha=0.1, threshold=1e-6, normalize_kernel=True).create(
        [normalize(soap.create(a)) for a in sample]
    )
    ours = rematch_kernel(soap_descriptors(sample))
    np.testing.assert_allclose(ours, expected, atol=1e-10)
    np.testing.assert_allclose(np.diag(ours), 1.0, atol=1e-10)
    assert ours.min() < 0.9999  # the frames differ


def test_identical_trajectories_overlap_perfectly():
    sample = frames(6)
    result = configuration_map(sample, [a.copy() for a in sample], max_frames_per_set=None)
    assert result.overlap == 1.0
    reference = result.coordinates[result.labels == 0]
    model = result.coordinates[result.labels == 1]
    np.testing.assert_allclose(reference, model, atol=1e-6)


def test_separated_sets_do_not_overlap():
    kernel = np.array([[1.0, 0.99, 0.1, 0.1], [0.99, 1.0, 0.1, 0.1], [0.1, 0.1, 1.0, 0.98], [0.1, 0.1, 0.98, 1.0]])
    assert overlap_score(kernel, np.array([0, 0, 1, 1])) == 0.0
    assert overlap_score(kernel, np.array([0, 1, 0, 1])) == 1.0


def test_reference_split_overlap_scores_the_later_half_against_the_earlier():
    # a 1D "trajectory" of 8 reference frames drifting in time, then 2 model frames; kernel from distance
    position = np.array([0.0, 0.1, 0.2, 0.3, 1.0, 1.1, 1.2, 1.3, 5.0, 5.1])
    kernel = 1.0 - 0.5 * (position[:, None] - position[None, :]) ** 2  # so sqrt(2 - 2K) = |Δx|
    labels = np.array([0] * 8 + [1, 1])
    # later half (1.0-1.3): the nearest frame of each is in its own half, except 1.0 whose nearest is
    # 1.1 (own half) -> 0; model frames never enter
    assert reference_split_overlap(kernel, labels) == 0.0
    interleaved = np.array([0.0, 1.0, 0.1, 1.1, 0.2, 1.2, 0.3, 1.3])  # halves = [0,1,0.1,1.1] vs [0.2,1.2,0.3,1.3]
    kernel = 1.0 - 0.5 * (interleaved[:, None] - interleaved[None, :]) ** 2
    assert reference_split_overlap(kernel, np.zeros(8, int)) == 0.5  # 0.2 -> 0.1 and 1.2 -> 1.1 are earlier
    assert np.isnan(reference_split_overlap(np.eye(3), np.zeros(3, int)))


def test_subsample():
    assert subsample(10, None).tolist() == list(range(10))
    assert subsample(10, 3).tolist() == [0, 4, 9] or subsample(10, 3).tolist() == [0, 5, 9]
    assert len(subsample(1000, 100)) == 100


def test_blockwise_kernel_equals_one_call():
    descriptors = soap_descriptors(frames(7, seed=3))
    whole = rematch_kernel(descriptors, block=100)
    np.testing.assert_allclose(rematch_kernel(descriptors, block=3), whole, atol=1e-12)


def test_sigma_colours_follow_the_subsampled_frames():
    sample = frames(5, seed=4)
    result = configuration_map(sample, sample[:3], max_frames_per_set=None, reference_sigma=np.arange(5.0), model_sigma=10 + np.arange(3.0))
    assert result.sigma_per_frame.tolist() == [0, 1, 2, 3, 4, 10, 11, 12]


@pytest.fixture(scope="module")
def demo_aimd_descriptors():
    """SOAP of 14 real demo AIMD frames (GFN1-xTB, 300 K, 80 atoms) of one compound."""
    from hdpbench.data.datasets import get_dataset

    data = get_dataset("demo")
    reference = data.load(data.compounds()[0], discard=100).trajectory.to_atoms_list()
    return soap_descriptors([reference[i] for i in subsample(len(reference), 14)])


def test_batched_rematch_equals_dscribe_on_real_aimd_frames(demo_aimd_descriptors):
    expected = rematch_kernel_dscribe(demo_aimd_descriptors)
    assert expected.min() < 0.9999  # thermal frames of one compound differ by ~1e-4 in K: tolerances below are far smaller
    for block in (5, 16):  # partial blocks and one block
        np.testing.assert_allclose(rematch_kernel(demo_aimd_descriptors, block=block), expected, rtol=0, atol=1e-12)
    # float32 atom-pair products: the faster option stays within the 1e-6
    plain32 = rematch_kernel(demo_aimd_descriptors, gram_dtype="float32")
    np.testing.assert_allclose(plain32, expected, rtol=0, atol=1e-6)
    # mixed: float64 reference directions + float32 residuals, orders of magnitude closer than float32
    mixed = rematch_kernel(demo_aimd_descriptors, gram_dtype="mixed", block=5)
    np.testing.assert_allclose(mixed, expected, rtol=0, atol=1e-10)
    assert np.abs(mixed - expected).max() < np.abs(plain32 - expected).max() / 100


def test_mixed_precision_rematch_rectangular_sizes_and_another_compound(demo_aimd_descriptors):
    """The mixed split on rectangular kernels and mixed frame sizes, and on frames of another compound,
    where the first frame's directions do not fit: still within plain float32's accuracy."""
    from hdpbench.data.datasets import get_dataset

    rows, columns = demo_aimd_descriptors[:5], demo_aimd_descriptors[5:9]
    np.testing.assert_allclose(rematch_kernel(rows, columns, gram_dtype="mixed"), rematch_kernel_dscribe(rows, columns), rtol=0, atol=1e-10)
    sizes = [d if k % 2 else d[: 40 + 10 * (k % 3)] for k, d in enumerate(demo_aimd_descriptors[:7])]
    np.testing.assert_allclose(rematch_kernel(sizes, block=2, gram_dtype="mixed"), rematch_kernel_dscribe(sizes), rtol=0, atol=1e-10)
    data = get_dataset("demo")
    first = data.load(data.compounds()[0], discard=100).trajectory.to_atoms_list()[:3]
    other = data.load(data.compounds()[1], discard=100).trajectory.to_atoms_list()[:3]
    both = soap_descriptors(first + other)  # one SOAP basis (the species of both compounds)
    np.testing.assert_allclose(rematch_kernel(both, gram_dtype="mixed"), rematch_kernel_dscribe(both), rtol=0, atol=1e-6)


def test_batched_rematch_rectangular_and_mixed_sizes_equal_dscribe(demo_aimd_descriptors):
    rows, columns = demo_aimd_descriptors[:5], demo_aimd_descriptors[5:9]
    np.testing.assert_allclose(rematch_kernel(rows, columns, block=2), rematch_kernel_dscribe(rows, columns), rtol=0, atol=1e-12)
    # frames of different sizes (atoms dropped): dscribe solves pair (i, j) with i <= j; so must we
    mixed = [d if k % 2 else d[: 40 + 10 * (k % 3)] for k, d in enumerate(demo_aimd_descriptors[:7])]
    np.testing.assert_allclose(rematch_kernel(mixed, block=2), rematch_kernel_dscribe(mixed), rtol=0, atol=1e-12)
    np.testing.assert_allclose(rematch_kernel(mixed[:3], mixed[3:], block=2), rematch_kernel_dscribe(mixed[:3], mixed[3:]), rtol=0, atol=1e-12)


def test_batched_rematch_equals_dscribe_on_dft_aimd_frames():
    """CsPbI3 FHI-vibes AIMD (PBEsol, 700 K, 135 atoms), shipped in data/external."""
    from hdpbench.data.datasets import get_dataset

    frames = get_dataset("external").load("CsPbI3").trajectory.to_atoms_list()
    descriptors = soap_descriptors(frames[:6])
    np.testing.assert_allclose(rematch_kernel(descriptors, block=4), rematch_kernel_dscribe(descriptors), rtol=0, atol=1e-12)


def test_rematch_kernel_is_bit_identical_on_one_or_several_threads(demo_aimd_descriptors):
    """Blocks solved on several threads (each with single-threaded BLAS) give the same bytes as one
    thread, whatever BLAS's own thread count: results must not depend on how a run was split."""
    from threadpoolctl import threadpool_limits

    rows, columns = demo_aimd_descriptors[:6], demo_aimd_descriptors[6:11]
    for precision in ("float64", "mixed"):
        serial = rematch_kernel(demo_aimd_descriptors, gram_dtype=precision, block=3, threads=1)
        with threadpool_limits(limits=2, user_api="blas"):  # what a notebook without the runner's limit has
            threaded = rematch_kernel(demo_aimd_descriptors, gram_dtype=precision, block=3, threads=3)
        assert np.array_equal(serial, threaded), precision
        rectangular = rematch_kernel(rows, columns, gram_dtype=precision, block=2, threads=1)
        assert np.array_equal(rectangular, rematch_kernel(rows, columns, gram_dtype=precision, block=2, threads=2)), precision


def test_rematch_on_a_torch_device_equals_dscribe(demo_aimd_descriptors):
    """The GPU path (torch tensors on ``device``) run on the CPU: the same arithmetic as the numpy path,
    so within dscribe's tolerances for every precision, square, rectangular and mixed frame sizes."""
    expected = rematch_kernel_dscribe(demo_aimd_descriptors)
    on_device = rematch_kernel(demo_aimd_descriptors, device="cpu", block=5)
    assert isinstance(on_device, np.ndarray) and on_device.shape == expected.shape
    np.testing.assert_allclose(on_device, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(rematch_kernel(demo_aimd_descriptors, device="cpu", gram_dtype="mixed"), expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(rematch_kernel(demo_aimd_descriptors, device="cpu", gram_dtype="float32"), expected, rtol=0, atol=1e-6)
    rows, columns = demo_aimd_descriptors[:5], demo_aimd_descriptors[5:9]
    np.testing.assert_allclose(rematch_kernel(rows, columns, device="cpu", block=2), rematch_kernel_dscribe(rows, columns), rtol=0, atol=1e-12)
    sizes = [d if k % 2 else d[: 40 + 10 * (k % 3)] for k, d in enumerate(demo_aimd_descriptors[:7])]
    np.testing.assert_allclose(rematch_kernel(sizes, device="cpu", block=2), rematch_kernel_dscribe(sizes), rtol=0, atol=1e-12)


def test_rematch_refuses_a_bad_thread_count():
    with pytest.raises(ValueError, match="threads=0: expected"):
        rematch_kernel([np.ones((2, 3))], threads=0)


def test_rematch_refuses_an_unknown_precision():
    with pytest.raises(ValueError, match="gram_dtype='float16': expected one of 'float64', 'mixed', 'float32'"):
        rematch_kernel([np.ones((2, 3))], gram_dtype="float16")


def test_rematch_product_flops_counts_the_blocks_products():
    """Frames of 2, 2 and 3 atoms, 5 features, blocks of 2 frames: the 2-atom frames form one
    diagonal block (4 atoms: syrk's 4 x 5 / 2 entries), the 3-atom frame another (3 x 4 / 2), and
    one 4 x 3 block between them; each entry is 5 multiply-adds."""
    entries = 4 * 5 / 2 + 3 * 4 / 2 + 4 * 3
    assert rematch_product_flops([2, 2, 3], 5, block=2) == pytest.approx(entries * 5 * 2)


def test_bench_rematch_cli_reports_ratio_and_difference_in_one_run(capsys):
    import json

    from hdpbench import cli

    assert cli.main(["bench", "rematch", "--quick", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 20 and report["atoms_per_frame"] == 80
    assert report["ratio_vs_dscribe"] == pytest.approx(report["dscribe_s"] / report["ours_s"])
    assert report["ours_precision"] == "mixed" and report["max_abs_diff"] < 1e-10 and report["device"] == "cpu"
    assert report["max_abs_diff_float64"] < 1e-12 and report["max_abs_diff_float32"] < 1e-6
    # the products' arithmetic, counted by hand: 20 frames = 2 blocks of 10 x 80 atoms; two diagonal
    # blocks (syrk: n(n+1)/2 multiply-adds) and one off-diagonal block (n x n)
    n, features = 800, report["features_per_atom"]
    assert report["products_gflop_float32"] == pytest.approx((2 * n * (n + 1) + 2 * n * n) * features / 1e9)
    floor = report["products_gflop_float32"] / report["matmul_gflop_per_s_float32"]
    assert report["products_floor_s_float32"] == pytest.approx(floor)
    assert report["ratio_ceiling_float32_products_vs_dscribe"] == pytest.approx(report["dscribe_s"] / floor)
    assert cli.main(["bench", "rematch", "--frames", "100000"]) == 2  # more frames than the compound has
    assert "frames after the discard" in capsys.readouterr().err
