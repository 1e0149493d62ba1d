"""Sharded runs: serial = Dask workers, and a SIGKILLed run resumes to byte-identical results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hdpbench.models.mace import build_mace, save_model
from hdpbench.pipeline.runner import run, shards
from hdpbench.pipeline.settings import RunSettings
from hdpbench.pipeline.stages import STAGES

from .builders import write_folder, write_tarball

SETTINGS = RunSettings.smoke().with_dtype("float64").with_overrides(["md.start_frame_max=4", "md.steps=6", "sigma.discard=0", "kpca.discard=0"])


@pytest.fixture(scope="module")
def three_compounds(tmp_path_factory):
    from .builders import compound_members

    root = tmp_path_factory.mktemp("sharded") / "hdp"
    for formula, folder in [("Cs2AgBiBr6", "bromides"), ("Cs2NaInCl6", "chlorides"), ("Rb2NiAgF6", "fluorides")]:
        members, _ = compound_members(formula, n_files=2, frames_per_file=5)
        if formula == "Cs2NaInCl6":
            write_folder(root / folder / f"dpv_{formula}", members)
        else:
            write_tarball(root / folder / f"dpv_{formula}.tar.gz", members, f"dpv_{formula}")
    model = save_model(
        build_mace([55, 47, 83, 35, 11, 49, 17, 37, 28, 9], channels=8, r_max=5.0, seed=1), root.parent / "tiny.model"
    )
    return str(root), str(model)


def result_files(root: Path) -> dict[str, bytes]:
    """Every result file except the manifests' timestamps and the MD scratch (checkpoints)."""
    files = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and path.name != "manifest.json" and "_md_work" not in relative.parts:
            files[str(relative)] = path.read_bytes()
    return files


def test_shards_do_not_depend_on_order_or_workers():
    assert shards(["c", "a", "b", "a"], 2) == [["a", "b"], ["c"]]
    with pytest.raises(ValueError):
        shards(["a"], 0)


def test_settings_overrides_are_checked():
    changed = RunSettings().with_overrides(["md.steps=10", "phonons.displacement=0.02", "sigma.max_frames=null"])
    assert changed.md.steps == 10 and changed.phonons.displacement == 0.02 and changed.sigma.max_frames is None
    for bad, message in [("md.stepz=1", "unknown setting md.stepz"), ("steps=1", "expected GROUP.FIELD=VALUE"), ("md.steps", "expected GROUP.FIELD=VALUE")]:
        with pytest.raises(ValueError, match=message):
            RunSettings().with_overrides([bad])


def test_serial_and_two_worker_runs_give_identical_results(three_compounds, tmp_path):
    """Same bytes at the same torch thread count (README): the serial run takes what each of the two
    workers gets, cores // 2."""
    from hdpbench.core.torch_setup import pin_threads, pinned_threads

    dataset, model = three_compounds
    before = pinned_threads()
    try:
        pin_threads(max(1, (os.cpu_count() or 1) // 2))
        serial = run("kpca", dataset, model, settings=SETTINGS, shard_size=2, workers=0, results_root=tmp_path / "serial", progress=False)
    finally:
        if before:
            pin_threads(before)
    parallel = run("kpca", dataset, model, settings=SETTINGS, shard_size=2, workers=2, results_root=tmp_path / "dask", progress=False)
    assert serial.failed == {} and parallel.failed == {}
    assert serial.done == parallel.done == ["Cs2AgBiBr6", "Cs2NaInCl6", "Rb2NiAgF6"]
    expected = result_files(tmp_path / "serial")
    stages = {Path(name).parts[2] for name in expected}
    assert stages == set(STAGES) - {"sigma-reference-frames"}  # kpca reads phonons, md and sigma-md
    assert result_files(tmp_path / "dask") == expected


def test_the_accelerator_reaches_the_workers_and_the_manifest(three_compounds, tmp_path):
    """``accelerator="cueq"`` on a two-worker run: every worker's model runs cuEquivariance (recorded in
    the manifest, not in the key) and the phonon frequencies equal the e3nn run's within rounding."""
    pytest.importorskip("cuequivariance_torch", reason="the cueq extra (pip install cuequivariance-torch)")
    dataset, model = three_compounds
    compounds = ["Cs2AgBiBr6", "Rb2NiAgF6"]
    reports = {
        accelerator: run("phonons", dataset, model, compounds=compounds, settings=SETTINGS, shard_size=1, workers=workers,
                         results_root=tmp_path / accelerator, progress=False, accelerator=accelerator)
        for accelerator, workers in (("e3nn", 0), ("cueq", 2))
    }  # fmt: skip
    manifests = {name: json.loads((Path(report.directory) / "manifest.json").read_text()) for name, report in reports.items()}
    assert manifests["cueq"]["key"] == manifests["e3nn"]["key"]
    assert {name: m["execution"]["accelerator"] for name, m in manifests.items()} == {"e3nn": "e3nn", "cueq": "cueq"}
    assert {m["execution"]["torch_compile"] for m in manifests.values()} == {False}
    for compound in compounds:
        thz = {name: np.load(Path(report.directory) / f"{compound}.npz")["frequencies_model"] for name, report in reports.items()}
        assert np.abs(thz["e3nn"]).max() > 0.1
        np.testing.assert_allclose(thz["cueq"], thz["e3nn"], rtol=0, atol=1e-4)


def test_a_finished_stage_is_read_without_loading_the_model(three_compounds, tmp_path):
    """A rerun whose results are all stored needs the model's hash, name and elements, not its
    weights: mace-torch and the checkpoint are not loaded (seconds on every notebook page)."""
    from hdpbench.pipeline.runner import cached_model, run_stage_in_process
    from hdpbench.pipeline.stages import get_stage

    dataset, model = three_compounds
    cached_model.cache_clear()  # an earlier test's model was described in that test's cache folder
    run("phonons", dataset, model, compounds=["Cs2AgBiBr6"], settings=SETTINGS, shard_size=1, workers=0, results_root=tmp_path, progress=False)
    cached_model.cache_clear()
    store = run_stage_in_process("phonons", dataset, model, ["Cs2AgBiBr6"], SETTINGS, "cpu", str(tmp_path))
    assert store.is_done("Cs2AgBiBr6")
    loaded = cached_model(model, "cpu", SETTINGS.group(get_stage("phonons").dtype_group).dtype, None)
    assert not loaded.is_loaded
    assert loaded.atomic_numbers == [9, 11, 17, 28, 35, 37, 47, 49, 55, 83] and loaded.r_max == 5.0
    assert loaded.module.r_max.item() == 5.0 and loaded.is_loaded  # loaded when first used


def test_killed_run_resumes_to_byte_identical_results(three_compounds, tmp_path):
    dataset, model = three_compounds
    settings = SETTINGS.with_overrides(["md.steps=60"])
    reference = run("md", dataset, model, settings=settings, shard_size=1, workers=0, results_root=tmp_path / "uninterrupted", progress=False)
    assert reference.done == ["Cs2AgBiBr6", "Cs2NaInCl6", "Rb2NiAgF6"]

    results = tmp_path / "killed"
    command = [
        sys.executable, "-m", "hdpbench", "run", "md", "--dataset", dataset, "--model", model, "--workers", "2",
        "--shard-size", "1", "--results", str(results), "--dtype", "float64", "--smoke", "--quiet",
        *[f"--set={item}" for item in ["md.start_frame_max=4", "md.steps=60"]],
    ]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    md_dir = None
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        markers = list(results.rglob("md/*/*.done.json"))  # md/<key>/<compound>.done.json
        checkpoints = list(results.rglob("_md_work/*/checkpoint*"))
        if markers and checkpoints:  # one shard finished, at least one other mid-trajectory
            md_dir = markers[0].parent
            break
        time.sleep(0.2)
    assert process.poll() is None, f"the run ended before it could be killed: {process.stderr.read().decode()[-2000:]}"
    assert md_dir is not None, "no shard finished within the time limit"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished_before = {p.name: p.stat().st_mtime_ns for p in md_dir.glob("*.done.json")}
    assert 0 < len(finished_before) < 3

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # the shards done before the kill were not recomputed
    assert {name: (md_dir / name).stat().st_mtime_ns for name in finished_before} == finished_before
    assert result_files(results) == result_files(tmp_path / "uninterrupted")


def test_a_failing_shard_does_not_lose_the_others(three_compounds, tmp_path):
    dataset, model = three_compounds
    report = run(
        "phonons", dataset, model, compounds=["Cs2AgBiBr6", "NoSuchCompound"], settings=SETTINGS, shard_size=1,
        results_root=tmp_path, progress=False,  # default: a one-worker LocalCluster
    )
    assert report.done == ["Cs2AgBiBr6"] and list(report.failed) == ["NoSuchCompound"]
    assert "1/2 compounds done, 1 FAILED" in report.summary_line() and "no compound 'NoSuchCompound'" in report.failed["NoSuchCompound"]


def test_dry_run_prints_the_plan_and_writes_nothing(three_compounds, tmp_path, capsys):
    from hdpbench.cli import main

    dataset, model = three_compounds
    results = tmp_path / "results"
    base = ["run", "kpca", "--dataset", dataset, "--model", model, "--results", str(results), "--dtype", "float64", "--shard-size", "2"]
    assert main([*base, "--dry-run", "--json", "--set", "md.steps=6"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["stages"] == ["phonons", "md", "sigma-md", "kpca"] and plan["shards"] == 2
    assert plan["compounds"] == ["Cs2AgBiBr6", "Cs2NaInCl6", "Rb2NiAgF6"]
    (entry,) = plan["models"]
    assert [s["stage"] for s in entry["stages"]] == plan["stages"]
    assert all(s["done"] == [] and len(s["to_compute"]) == 3 and s["key"] for s in entry["stages"])
    assert ".md.extxyz" in entry["stages"][1]["files_per_compound"]
    assert set(plan["estimate"]["seconds_per_stage"]) == set(plan["stages"])
    assert not results.exists()  # nothing written, not even the folder

    # after a run of the md stage, the plan knows what is done, under the same folder and key
    smoke = RunSettings.smoke().with_dtype("float64").with_overrides(["md.steps=6", "md.start_frame_max=4"])
    report = run("md", dataset, model, settings=smoke, shard_size=2, workers=0, results_root=results, progress=False)
    assert report.failed == {}
    assert main([*base, "--dry-run", "--json", "--smoke", "--set", "md.steps=6", "--set", "md.start_frame_max=4"]) == 0
    md_step = json.loads(capsys.readouterr().out)["models"][0]["stages"][1]
    assert md_step["directory"] == report.directory and md_step["to_compute"] == [] and len(md_step["done"]) == 3
    assert main([*base, "--dry-run"]) == 0
    assert "nothing is computed and no results are written" in capsys.readouterr().out


def test_config_file_with_command_line_overrides(three_compounds, tmp_path, capsys):
    from hdpbench.cli import main

    dataset, model = three_compounds
    config = tmp_path / "run.yaml"
    config.write_text(
        f"dataset: {dataset}\nmodels: [{model}]\ncompounds: [Cs2AgBiBr6, Rb2NiAgF6]\ndtype: float64\n"
        "md: {steps: 7, runs_per_compound: 1}\nphonons: {supercell: [2, 2, 2]}\n"
    )
    assert main(["run", "md", "--config", str(config), "--set", "md.steps=9", "--results", str(tmp_path / "r"), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["compounds"] == ["Cs2AgBiBr6", "Rb2NiAgF6"]
    from_file = plan["models"][0]["stages"][0]["key"]
    # the same run given entirely on the command line has the same key: the file's md.runs_per_compound
    # and dtype were read, and --set md.steps=9 overrode the file's 7
    explicit = ["run", "md", "--dataset", dataset, "--model", model, "--compounds", "Cs2AgBiBr6", "Rb2NiAgF6", "--dtype", "float64",
                "--results", str(tmp_path / "r"), "--dry-run", "--json"]
    assert main([*explicit, "--set", "md.steps=9", "--set", "md.runs_per_compound=1"]) == 0
    assert json.loads(capsys.readouterr().out)["models"][0]["stages"][0]["key"] == from_file
    assert main([*explicit, "--set", "md.steps=7", "--set", "md.runs_per_compound=1"]) == 0
    assert json.loads(capsys.readouterr().out)["models"][0]["stages"][0]["key"] != from_file

    for text, message in [
        ("md: {steps: many}\n", "md.steps='many': expected an integer"),
        ("mdd: {steps: 3}\n", "unknown key(s) mdd"),
        ("models: 5\n", "models=5: expected a name or a list of names"),
        ("phonons: {supercell: 2}\n", "phonons.supercell=2: expected a list of 3 integers"),
        ("[1, 2]\n", "expected a mapping"),
        ("accelerator: triton\n", "accelerator='triton': expected one of 'e3nn', 'cueq'"),
    ]:
        config.write_text(text)
        assert main(["run", "md", "--config", str(config), "--model", model, "--dry-run"]) == 2
        error = capsys.readouterr().err
        assert message in error and str(config) in error
    config.write_text(f"dataset: {dataset}\n")
    assert main(["run", "md", "--config", str(config), "--model", model, "--compounds", "Cs2AgBiBr", "--dry-run"]) == 2
    assert "did you mean Cs2AgBiBr6" in capsys.readouterr().err
    assert main(["run", "md", "--config", str(tmp_path / "missing.yaml"), "--model", model]) == 2
    assert "no such file" in capsys.readouterr().err


def test_smoke_runs_write_into_their_own_folder(three_compounds, tmp_path, monkeypatch, capsys):
    from hdpbench.cli import main

    dataset, model = three_compounds
    monkeypatch.setenv("HDPBENCH_RESULTS", str(tmp_path / "real"))
    monkeypatch.setenv("HDPBENCH_SMOKE_RESULTS", str(tmp_path / "smoke"))
    args = ["run", "phonons", "--dataset", dataset, "--model", model, "--compounds", "Cs2AgBiBr6", "--workers", "0", "--dtype", "float64"]
    assert main([*args, "--smoke", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["smoke"] is True and report["settings"]["phonons"]["points_per_segment"] == 5
    (only,) = report["runs"]
    assert only["done"] == ["Cs2AgBiBr6"] and only["directory"].startswith(str(tmp_path / "smoke"))
    assert not (tmp_path / "real").exists()
