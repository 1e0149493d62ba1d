"""SOAP–REMatch kernel maps: equal to dscribe used directly, perfect overlap for identical trajectories."""

from __future__ import annotations

import numpy as np

from hdpbench.kpca import (
    configuration_map,
    overlap_score,
    rematch_kernel,
    soap_descriptors,
    subsample,
)
from hdpbench.structures import double_perovskite


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
