"""σ and the phonon comparison end to end on one committed demo compound with a committed demo model,
through the same stage code the book and `hdpbench run` use, checked against mace-torch's own ASE
calculator and phonopy (well under a minute on 2 CPU cores)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hdpbench.core.storage import sha256_file
from hdpbench.data.datasets import get_dataset
from hdpbench.models.registry import checkpoint_path, get_model_spec, is_available
from hdpbench.pipeline.runner import run_stage_in_process
from hdpbench.pipeline.settings import RunSettings

COMPOUND = "Rb3AlF6"
MODEL = "demo-small-data"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    spec = get_model_spec(MODEL)
    assert is_available(spec), f"{MODEL}'s checkpoint is committed under models/demo/"
    assert sha256_file(checkpoint_path(spec, download=False)) == spec.sha256
    results = tmp_path_factory.mktemp("results")
    settings = RunSettings().with_dtype("float64").with_overrides(["sigma.max_frames=24"])
    sigma = run_stage_in_process("sigma-reference-frames", "demo", MODEL, [COMPOUND], settings, "cpu", results)
    phonons = run_stage_in_process("phonons", "demo", MODEL, [COMPOUND], settings, "cpu", results)
    return spec, sigma, phonons


def test_sigma_of_model_forces_matches_mace_calculator(demo_run):
    from mace.calculators import MACECalculator

    spec, sigma, _ = demo_run
    assert sigma.manifest.model_sha256 == spec.sha256
    compound = get_dataset("demo", download=False).load(COMPOUND, frames="paper")  # the frames the stage read
    arrays = sigma.load_arrays(COMPOUND)
    summary = sigma.load_json(COMPOUND)
    # σ with reference forces reproduces the value the dataset's summary database holds
    assert summary["sigma_reference"] == pytest.approx(compound.summary["sigma_reference"], abs=0.05)  # 24 of 200 frames, time average against the database's pooled σ over all 600
    calculator = MACECalculator(model_paths=str(checkpoint_path(spec, download=False)), device="cpu", default_dtype="float64")
    reference = compound.reference_supercell
    fc = compound.force_constants.transpose(0, 2, 1, 3).reshape(3 * len(reference), 3 * len(reference))
    for k in (0, len(arrays["frame_index"]) // 2, len(arrays["frame_index"]) - 1):
        frame = [i for i in range(len(compound.trajectory)) if compound.trajectory.frame_index[i] == arrays["frame_index"][k]
                 and compound.trajectory.frame_source[i] == arrays["frame_source"][k]][0]
        atoms = compound.trajectory.atoms(frame)
        atoms.calc = calculator
        forces = atoms.get_forces()
        # σ(t) = sqrt(Σ (F − F_harm)² / Σ F²), F_harm = −Φ u, u by the minimum image (independent of hdpbench)
        displacement = atoms.positions - reference.positions
        fractional = displacement @ np.linalg.inv(reference.cell.array)
        displacement = (fractional - np.round(fractional)) @ reference.cell.array
        harmonic = -(fc @ displacement.ravel()).reshape(-1, 3)
        expected = np.sqrt(((forces - harmonic) ** 2).sum() / (forces**2).sum())
        assert arrays["sigma_per_frame_model_fc_reference"][k] == pytest.approx(expected, rel=1e-6)


def test_phonon_comparison_of_the_demo_model(demo_run):
    import phonopy

    _, _, phonons = demo_run
    metrics = phonons.load_json(COMPOUND)
    arrays = phonons.load_arrays(COMPOUND)
    reference, model = arrays["frequencies_reference"], arrays["frequencies_model"]
    signed = lambda f: np.sign(f) * f**2  # noqa: E731
    rmse = np.sqrt(np.mean((signed(model) - signed(reference)) ** 2))
    assert metrics["rmse_omega2_thz2"] == pytest.approx(rmse, rel=1e-9)
    # a trained model: its ω² error is well below the spread of the reference ω² themselves
    assert rmse < 0.5 * np.sqrt(np.mean(signed(reference) ** 2))
    # the stored phonopy yaml is a complete phonopy record of the model's force constants
    saved = phonopy.load(str(phonons.directory / f"{COMPOUND}.phonopy.yaml"), is_compact_fc=False, log_level=0)
    assert saved.force_constants.shape[0] == 80 and np.isfinite(saved.force_constants).all()
    assert json.loads((phonons.directory / "manifest.json").read_text())["settings"]["dtype"] == "float64"
