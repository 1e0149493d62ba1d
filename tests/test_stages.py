"""Phonon and σ stages end to end on archives in the authors' layout, with a tiny MACE model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hdpbench.data.datasets import get_dataset
from hdpbench.models.evaluate import load_model
from hdpbench.models.mace import build_mace
from hdpbench.physics.anharmonicity import SigmaSettings, sigma
from hdpbench.physics.kpca import KPCASettings
from hdpbench.physics.md import MDSettings
from hdpbench.physics.phonons import PhononSettings
from hdpbench.pipeline.compute import collect
from hdpbench.pipeline.names import StageName
from hdpbench.pipeline.settings import RunSettings
from hdpbench.pipeline.stages import run_stage


def run_phonons(dataset, model, *, settings, **kwargs):
    return run_stage(StageName.PHONONS, dataset, model, settings=RunSettings(phonons=settings), **kwargs)


def run_sigma_reference_frames(dataset, model, *, settings, phonon_settings, **kwargs):
    return run_stage(StageName.SIGMA_REFERENCE_FRAMES, dataset, model, settings=RunSettings(sigma=settings, phonons=phonon_settings), **kwargs)


@pytest.fixture(scope="module")
def tiny_model():
    return load_model(build_mace([55, 47, 83, 35, 11, 49, 17], channels=8, r_max=5.0, seed=4), dtype="float64")


def test_phonon_and_sigma_stages(authors_dataset, tiny_model, tmp_path):
    root, built = authors_dataset
    dataset = get_dataset(root)
    settings = PhononSettings(dtype="float64", points_per_segment=10)
    sigma_settings = SigmaSettings(discard=2, dtype="float64")
    stage = run_sigma_reference_frames(
        dataset, tiny_model, settings=sigma_settings, phonon_settings=settings, results_root=tmp_path, progress=False
    )
    phonons = run_phonons(dataset, tiny_model, settings=settings, results_root=tmp_path, progress=False)
    assert sorted(phonons.done()) == ["Cs2AgBiBr6", "Cs2NaInCl6"]
    assert sorted(stage.done()) == ["Cs2AgBiBr6", "Cs2NaInCl6"]
    manifest = json.loads((phonons.directory / "manifest.json").read_text())
    assert manifest["settings"]["displacement"] == 0.01 and manifest["model_sha256"]

    row = stage.load_json("Cs2AgBiBr6")
    # The paper's frame set: vasprun_prod_1.xml (and _2, absent here), never vasprun_prod.xml.
    assert row["production_files"] == ["vasprun_prod_1.xml"] and row["frame_set"] == "paper"
    assert row["n_frames"] == 4
    # σ_ref from the stage equals σ computed directly from the archive's own data.
    compound = dataset.load("Cs2AgBiBr6", discard=2, frames="paper")
    direct = sigma(compound.trajectory, compound.reference_supercell, compound.force_constants)
    assert row["sigma_reference"] == pytest.approx(direct.sigma_mean_per_frame, rel=1e-12)
    arrays = stage.load_arrays("Cs2AgBiBr6")
    np.testing.assert_allclose(arrays["sigma_per_frame_reference"], direct.sigma_per_frame)
    assert arrays["sigma_per_frame_model_fc_model"].shape == (4,)

    metrics = {r["compound"]: r for r in collect(phonons)}
    assert metrics["Cs2NaInCl6"]["rmse_omega2_thz2"] > 0 and metrics["Cs2NaInCl6"]["halide"] == "Cl"

    # A rerun with the same settings computes nothing; other settings recompute.
    before = {p: p.stat().st_mtime_ns for p in phonons.directory.iterdir()}
    run_phonons(dataset, tiny_model, settings=settings, results_root=tmp_path, progress=False)
    assert {p: p.stat().st_mtime_ns for p in phonons.directory.iterdir()} == before
    other = run_phonons(
        dataset, tiny_model, compounds=["Cs2NaInCl6"], settings=PhononSettings(dtype="float64", points_per_segment=5),
        results_root=tmp_path, progress=False,
    )
    assert other.load_json("Cs2NaInCl6")["n_qpoints"] < metrics["Cs2NaInCl6"]["n_qpoints"]
    # σ_model(Φ_model) reads the Φ of the phonons stage at the σ displacement (0.02 Å, as the authors):
    # changing it makes σ a different result; changing the bands' displacement does not.
    sigma_phonons = run_phonons(dataset, tiny_model, settings=settings.for_sigma(), results_root=tmp_path, progress=False)
    assert json.loads((sigma_phonons.directory / "manifest.json").read_text())["settings"]["displacement"] == 0.02
    assert "rmse_vg_thz_ang" not in sigma_phonons.load_json("Cs2NaInCl6") and "rmse_vg_thz_ang" in metrics["Cs2NaInCl6"]
    same = run_sigma_reference_frames(dataset, tiny_model, compounds=[], settings=sigma_settings, phonon_settings=settings, results_root=tmp_path)
    bands_changed = run_sigma_reference_frames(
        dataset, tiny_model, compounds=[], settings=sigma_settings,
        phonon_settings=PhononSettings(dtype="float64", points_per_segment=10, displacement=0.03), results_root=tmp_path,
    )
    changed = run_sigma_reference_frames(
        dataset, tiny_model, compounds=[], settings=sigma_settings,
        phonon_settings=PhononSettings(dtype="float64", points_per_segment=10, sigma_displacement=0.01), results_root=tmp_path,
    )
    assert same.key == stage.key == bands_changed.key != changed.key


def test_model_md_stage(authors_dataset, tiny_model, tmp_path):
    root, _ = authors_dataset
    dataset = get_dataset(root)
    settings = MDSettings(steps=4, dtype="float64", start_frame_max=5)
    phonon_settings = PhononSettings(dtype="float64", points_per_segment=5)
    run_settings = RunSettings(md=settings, phonons=phonon_settings)
    stage = run_stage(StageName.SIGMA_MD, dataset, tiny_model, settings=run_settings, results_root=tmp_path, progress=False)
    md_stage = run_stage(StageName.MD, dataset, tiny_model, settings=run_settings, results_root=tmp_path, progress=False)
    assert sorted(stage.done()) == sorted(md_stage.done()) == ["Cs2AgBiBr6", "Cs2NaInCl6"]
    md_row = md_stage.load_json("Cs2AgBiBr6")
    assert md_row["n_frames"] == 8 and len(md_row["start_frames"]) == 2 and all(0 <= f <= 5 for f in md_row["start_frames"])
    assert md_row["stopped_runs"] == {}
    # The authors start from vasprun_prod_2.xml, else _1 (here), at a raw step index: none dropped.
    assert md_row["start_from"] == [f"vasprun_prod_1.xml step {f}" for f in md_row["start_frames"]]
    assert md_stage.load_arrays("Cs2AgBiBr6")["run_of_frame"].tolist() == [0] * 4 + [1] * 4
    # each compound's file is its two runs' files (two consecutive replicas of the batch) one after the other
    (work,) = (md_stage.directory / "_md_work").iterdir()
    replicas = [path.read_bytes() for path in sorted(work.glob("replica_*.extxyz"))]
    assert len(replicas) == 4 and all(replicas)
    written = {md_stage.path(name, ".md.extxyz").read_bytes() for name in md_stage.done()}
    assert written == {replicas[0] + replicas[1], replicas[2] + replicas[3]}
    row = stage.load_json("Cs2AgBiBr6")
    assert np.isfinite(row["sigma_model_only"]) and np.isfinite(row["sigma_model_md_fc_reference"])
    # σ_model-only is σ of the written frames with the model's own Φ.
    import ase.io

    from hdpbench.core.compound import Trajectory
    from hdpbench.io.force_constants import read_force_constants

    frames = ase.io.read(md_stage.path("Cs2AgBiBr6", ".md.extxyz"), index=":")
    phonons = run_phonons(dataset, tiny_model, settings=phonon_settings.for_sigma(), results_root=tmp_path, progress=False)
    compound = dataset.load("Cs2AgBiBr6", discard=0)
    direct = sigma(Trajectory.from_atoms_list(frames), compound.reference_supercell, read_force_constants(phonons.path("Cs2AgBiBr6", ".phonopy.yaml")))
    assert row["sigma_model_only"] == pytest.approx(direct.sigma_mean_per_frame, rel=1e-6)


def test_kpca_stage(authors_dataset, tiny_model, tmp_path):
    root, _ = authors_dataset
    settings = RunSettings(
        kpca=KPCASettings(max_frames_per_set=4, discard=0, dtype="float64"),
        md=MDSettings(steps=3, dtype="float64", start_frame_max=5),
        phonons=PhononSettings(dtype="float64", points_per_segment=5),
    )
    stage = run_stage(StageName.KPCA, get_dataset(root), tiny_model, compounds=["Cs2NaInCl6"], settings=settings, results_root=tmp_path, progress=False)
    row = stage.load_json("Cs2NaInCl6")
    arrays = stage.load_arrays("Cs2NaInCl6")
    assert row["n_reference_frames"] == 4 and row["n_model_frames"] == 4 and 0.0 <= row["overlap"] <= 1.0
    assert arrays["coordinates"].shape == (8, 2) and arrays["kernel"].shape == (8, 8)
    assert np.all(np.isfinite(arrays["sigma_per_frame"]))


def test_a_compound_without_the_papers_files_is_recorded_with_the_files_it_lacks(tmp_path, members_of, tiny_model):
    """Only vasprun_prod.xml: the paper's σ frame set (_1, _2) is empty, so the σ stage records a clear
    failure for that compound (the authors' scripts skip it too) and the others are unaffected."""
    from .builders import write_tarball

    members, _ = members_of("Cs2AgBiBr6", n_files=1)
    write_tarball(tmp_path / "hdp" / "bromides" / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6")
    stage = run_sigma_reference_frames(
        get_dataset(tmp_path / "hdp"), tiny_model, settings=SigmaSettings(discard=0, dtype="float64"),
        phonon_settings=PhononSettings(dtype="float64", points_per_segment=5), results_root=tmp_path / "results",
        progress=False, errors="record",
    )
    failure = stage.failures()["Cs2AgBiBr6"]
    assert "MD/vasprun_prod_1.xml and MD/vasprun_prod_2.xml" in failure["error"] and "none of these files" in failure["error"]
