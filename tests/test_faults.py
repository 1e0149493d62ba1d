"""Fault injection: kills during MD writes, hostile archives, read-only and full disks, bad values,
concurrent runs, and the determinism that makes a resumed or repeated run give the same bytes.

Each test here failed on the code before issue 21 and passes now. The module runs in about 90 s on two
cores (the MD kills start ~20 short subprocesses). The archive attacks (``..``, absolute paths, links,
devices, truncated or empty archives, NaN forces, wrong shapes, atom-order mismatches) are refused in
``tests/test_bad_input.py``; ``make test-faults`` runs both modules.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import platform
import random
import signal
import stat
import subprocess
import sys
import tarfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from hdpbench.core.errors import (
    ArchiveTooLargeError,
    CompoundFailures,
    ForceConstantsShapeError,
    StoreWriteError,
    UnsafeArchiveMemberError,
)
from hdpbench.io.archive import CompoundFiles
from hdpbench.models.mace import build_mace, save_model
from hdpbench.pipeline.runner import run
from hdpbench.pipeline.settings import RunSettings
from hdpbench.pipeline.store import StageManifest, StageResults

from .builders import compound_members, write_folder, write_tarball

CHILD = Path(__file__).with_name("fault_md_child.py")
ELEMENTS = [55, 47, 83, 35, 11, 49, 17, 37, 28, 9]


# ---- crash-safe MD output -------------------------------------------------------------------------
def run_child(output: Path, fault: str = "", *, extra=(), env=None, timeout=120) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HDPBENCH_TEST_FAULT": fault, **(env or {})}
    return subprocess.run(
        [sys.executable, str(CHILD), str(output), *extra], env=environment, capture_output=True, text=True, timeout=timeout
    )


def trajectory_bytes(output: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(output.glob("replica_*.extxyz"))}


@pytest.fixture(scope="module")
def uninterrupted_md(tmp_path_factory) -> dict[str, bytes]:
    output = tmp_path_factory.mktemp("md-reference")
    finished = run_child(output)
    assert finished.returncode == 0, finished.stderr[-2000:]
    files = trajectory_bytes(output)
    assert len(files) == 2 and all(data.count(b"Lattice=") == 40 for data in files.values())
    return files


@pytest.mark.parametrize(
    "fault",
    [
        "step:3",  # after the first frames, before the first checkpoint (resumed into duplicated steps before)
        "append:9",  # half a frame written (resume failed with "Frame has 5 atoms, expected 10" before)
        "append:30",  # half a frame after a checkpoint
        "fsync:3",  # frames written, checkpoint not yet
        "replace:2",  # checkpoint temporary written, not yet renamed
        "step:40",  # in the last step
    ],
)
def test_md_killed_at_any_instruction_resumes_to_the_same_bytes(fault, uninterrupted_md, tmp_path):
    killed = run_child(tmp_path, fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = run_child(tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert trajectory_bytes(tmp_path) == uninterrupted_md
    assert not list(tmp_path.glob(".*.tmp"))  # the killed writer's checkpoint temporary is gone


def test_md_killed_at_random_moments_resumes_to_the_same_bytes(uninterrupted_md, tmp_path):
    """Kill a real run (SIGKILL) at random moments until it finishes; every frame equals the uninterrupted run's."""
    rng = random.Random(21)
    environment = {**os.environ, "HDPBENCH_TEST_FAULT": "", "HDPBENCH_TEST_STEP_DELAY": "0.01"}
    kills = 0
    for _attempt in range(12):
        process = subprocess.Popen([sys.executable, str(CHILD), str(tmp_path)], env=environment, stderr=subprocess.PIPE)
        # imports take ~1-2 s; the 40 steps another ~0.6 s: most kills land inside the run
        time.sleep(rng.uniform(1.0, 2.5))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        if process.returncode == 0:
            break
    else:
        finished = run_child(tmp_path)
        assert finished.returncode == 0, finished.stderr[-2000:]
    assert kills >= 1
    assert trajectory_bytes(tmp_path) == uninterrupted_md


def demo_supercell(path: Path) -> Path:
    """An 80-atom rattled Cs2NaInCl6 supercell: with a trained model (``demo-small-data``) this size shows
    the first-call difference; an 8-channel untrained model or a 10-atom cell does not."""
    from ase.io import write

    from hdpbench.core.structures import double_perovskite

    cell = double_perovskite("Cs", "Na", "In", "Cl", a=10.5, x=0.245).repeat(2)
    cell.rattle(0.05, seed=1)
    write(path, cell)
    return path


def test_mace_md_resumed_in_a_new_process_equals_an_uninterrupted_run(tmp_path):
    """A resumed MACE run diverged after the resume step (6e-8 eV/Å): the first force call of a process
    gave other bits than later calls (TorchScript's profiling executor)."""
    env = {"HDPBENCH_TEST_STRUCTURE": str(demo_supercell(tmp_path / "cell.extxyz")), "HDPBENCH_THREADS": "1"}
    extra = ("--model", "demo-small-data", "--steps", "12")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run_child(straight, extra=extra, env=env).returncode == 0
    assert run_child(resumed, "step:10", extra=extra, env=env).returncode == -signal.SIGKILL
    finished = run_child(resumed, extra=extra, env=env)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert trajectory_bytes(resumed) == trajectory_bytes(straight)


FIRST_CALLS = """
import sys, numpy as np, torch
from ase.io import read
from hdpbench.models.evaluate import ReplicaForces, load_model
atoms = read(sys.argv[1])
forces = ReplicaForces(load_model("demo-small-data"), [atoms])
positions = torch.as_tensor(atoms.positions, dtype=torch.float64)
calls = [forces(positions).numpy() for _ in range(3)]
np.save(sys.argv[2], calls[0])
print(max(float(np.abs(later - calls[0]).max()) for later in calls[1:]))
"""


def test_the_first_force_call_of_a_process_gives_the_same_bits_as_later_calls(tmp_path):
    """And 1 vs 2 threads: not bit-equal (the README says so), equal within float32 tolerance."""
    structure = demo_supercell(tmp_path / "cell.extxyz")
    forces = {}
    for threads in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", FIRST_CALLS, str(structure), str(tmp_path / f"{threads}.npy")],
            env={**os.environ, "HDPBENCH_THREADS": threads}, capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert float(done.stdout.split()[-1]) == 0.0, f"{threads} thread(s): first call differs by {done.stdout.split()[-1]} eV/Å"
        forces[threads] = np.load(tmp_path / f"{threads}.npy")
    np.testing.assert_allclose(forces["1"], forces["2"], rtol=0, atol=1e-5)


def test_the_allocator_tuning_changes_no_bit_and_can_be_turned_off(tmp_path):
    """``tune_allocator`` (speed only) applies by default on glibc and not with HDPBENCH_MALLOC_TUNING=0;
    the forces of the two processes are bit-identical."""
    structure = demo_supercell(tmp_path / "cell.extxyz")
    script = FIRST_CALLS.replace("print(max(", "from hdpbench.core.torch_setup import tune_allocator\nprint(tune_allocator(), max(")
    applied = {}
    for tuning in ("0", "1"):
        done = subprocess.run(
            [sys.executable, "-c", script, str(structure), str(tmp_path / f"tuning{tuning}.npy")],
            env={**os.environ, "HDPBENCH_THREADS": "2", "HDPBENCH_MALLOC_TUNING": tuning}, capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        applied[tuning] = done.stdout.split()[-2]
    assert applied["0"] == "False"
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert applied["1"] == "True"
    assert np.load(tmp_path / "tuning0.npy").tobytes() == np.load(tmp_path / "tuning1.npy").tobytes()


def test_md_checkpoint_of_another_system_or_a_shortened_file_is_refused(uninterrupted_md, tmp_path):
    from ase.build import bulk

    from hdpbench.core.errors import DataError
    from hdpbench.physics.md import BatchedAndersen, MDSettings

    assert run_child(tmp_path, "step:20").returncode == -signal.SIGKILL
    first = tmp_path / "replica_000.extxyz"
    first.write_bytes(first.read_bytes()[:100])  # someone cut the committed frames
    structures = [bulk("Cu", "fcc", a=3.61, cubic=True), bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))]
    rng = np.random.default_rng(7)
    for atoms in structures:
        atoms.rattle(0.05, rng=rng)  # the child's run, so only the file differs
    with pytest.raises(DataError, match="committed"):
        BatchedAndersen(structures, lambda s: [], MDSettings(steps=40, checkpoint_every=7, seed=3), output_dir=tmp_path).run(progress=False)
    with pytest.raises(DataError, match="another system"):
        BatchedAndersen([bulk("Cu", cubic=True)], lambda s: [], MDSettings(steps=40), output_dir=tmp_path).run(progress=False)


class _EMTForces:
    """EMT forces with a model identity, as :class:`hdpbench.physics.md.ModelForces` has."""

    def __init__(self, name="emt", dtype="float64"):
        self.identity = {"name": name, "weights": None, "dtype": dtype}

    def __call__(self, batch):
        from ase.calculators.emt import EMT

        out = []
        for atoms in batch:
            atoms = atoms.copy()
            atoms.calc = EMT()
            out.append(atoms.get_forces())
        return out


def _copper(a=3.61, symbol="Cu"):
    from ase.build import bulk

    atoms = bulk(symbol, "fcc", a=a, cubic=True)
    atoms.rattle(0.05, seed=2)
    return atoms


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"settings": {"temperature_K": 600.0}}, "temperature_K: 300.0 in the checkpoint, 600.0 now"),
        ({"settings": {"timestep_fs": 2.0}}, "timestep_fs"),
        ({"settings": {"seed": 1}}, "seed"),
        ({"structure": {"symbol": "Ni"}}, "species"),
        ({"structure": {"a": 3.7}}, "cells"),
        ({"forces": {"name": "other-model"}}, "model"),
        ({"forces": {"dtype": "float32"}}, "model"),
    ],
)
def test_md_checkpoint_of_another_run_is_refused_naming_what_differs(change, named, tmp_path):
    """A checkpoint with the same array shapes but another temperature, time step, seed, species, cell,
    model or dtype was resumed into one mixed trajectory (issue 40)."""
    from hdpbench.core.errors import DataError
    from hdpbench.physics.md import BatchedAndersen, MDSettings

    def md(settings=None, structure=None, forces=None):
        settings = MDSettings(steps=6, checkpoint_every=3, **(settings or {}))
        return BatchedAndersen([_copper(**(structure or {}))], _EMTForces(**(forces or {})), settings, output_dir=tmp_path)

    md().run(4, progress=False)
    with pytest.raises(DataError, match="another run") as caught:
        md(**change).run(progress=False)
    assert named in str(caught.value) and "checkpoint.npz" in caught.value.path
    md().run(progress=False)  # the same run still resumes
    assert (tmp_path / "replica_000.extxyz").read_text().count("Lattice=") == 6


def test_md_command_refuses_to_resume_another_temperature(good_and_corrupt, tmp_path, capsys):
    from ase.build import bulk
    from ase.io import write

    from hdpbench.cli import main

    write(tmp_path / "cell.extxyz", bulk("NaCl", "rocksalt", a=5.64, cubic=True))
    model = good_and_corrupt[1]  # the module's tiny MACE (it knows Na and Cl)
    arguments = ["md", "--structure", str(tmp_path / "cell.extxyz"), "--model", model, "--replicas", "1", "--steps", "2", "--output", str(tmp_path / "md"), "--json"]
    assert main(arguments) == 0
    capsys.readouterr()
    assert main([*arguments, "--temperature", "600"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoint.npz" in err and "temperature_K: 300.0 in the checkpoint, 600.0 now" in err


# ---- determinism ------------------------------------------------------------------------------------
def test_cold_and_warm_batch_size_cache_give_the_same_bits(tmp_path, monkeypatch):
    from hdpbench.core.structures import double_perovskite
    from hdpbench.models.evaluate import load_model

    monkeypatch.setenv("HDPBENCH_CACHE", str(tmp_path / "cache"))
    model = load_model(save_model(build_mace(ELEMENTS, channels=8, r_max=5.0, seed=1), tmp_path / "tiny.model"))
    cell = double_perovskite("Cs", "Ag", "Bi", "Br", a=11.25, x=0.245)
    rng = np.random.default_rng(0)
    structures = []
    for _ in range(7):
        atoms = cell.copy()
        atoms.rattle(0.05, rng=rng)
        structures.append(atoms)
    cold = model.evaluator(batch_size="auto").evaluate(structures)
    assert (tmp_path / "cache" / "batch_sizes.json").is_file()
    warm = model.evaluator(batch_size="auto").evaluate(structures)
    assert cold.batch_size == warm.batch_size
    assert np.array_equal(cold.forces_array(), warm.forces_array())  # the probe's own outputs are discarded
    size_one = model.evaluator(batch_size=1).evaluate(structures)
    np.testing.assert_allclose(size_one.forces_array(), cold.forces_array(), atol=1e-5)  # other batches: float32 tolerance


def test_threads_are_pinned_and_recorded(tmp_path):
    import torch

    from hdpbench.core.torch_setup import pin_threads, pinned_threads

    before = torch.get_num_threads()
    try:
        assert pin_threads(1) == 1 and torch.get_num_threads() == 1
        assert pin_threads() == 1  # later calls keep what a worker fixed
        manifest = StageManifest(dataset="d", model="m", stage="phonons").to_dict()
        assert manifest["torch_threads"] == pinned_threads() == 1
    finally:
        pin_threads(before)


# ---- one bad compound never stops the others ----------------------------------------------------------
@pytest.fixture(scope="module")
def good_and_corrupt(tmp_path_factory):
    root = tmp_path_factory.mktemp("isolation") / "hdp"
    members, _ = compound_members("Cs2AgBiBr6", n_files=2, frames_per_file=5)
    write_tarball(root / "bromides" / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6")
    members, _ = compound_members("Cs2NaInCl6", n_files=2, frames_per_file=5)
    corrupt = write_tarball(root / "chlorides" / "dpv_Cs2NaInCl6.tar.gz", members, "dpv_Cs2NaInCl6")
    corrupt.write_bytes(corrupt.read_bytes()[: corrupt.stat().st_size // 2])  # truncated download
    model = save_model(build_mace(ELEMENTS, channels=8, r_max=5.0, seed=1), root.parent / "tiny.model")
    return str(root), str(model)


SMALL = RunSettings.smoke().with_dtype("float64").with_overrides(["md.start_frame_max=4", "md.steps=4", "sigma.discard=0"])


@pytest.mark.parametrize("stage", ["phonons", "sigma-reference-frames", "md"])
def test_a_corrupt_archive_fails_alone_and_reruns_retry_only_it(stage, good_and_corrupt, tmp_path):
    dataset, model = good_and_corrupt
    report = run(stage, dataset, model, settings=SMALL, shard_size=2, workers=0, results_root=tmp_path, progress=False)
    assert report.done == ["Cs2AgBiBr6"]
    assert list(report.failed) == ["Cs2NaInCl6"] and "dpv_Cs2NaInCl6.tar.gz" in report.failed["Cs2NaInCl6"]
    assert "1/2 compounds done, 1 FAILED" in report.summary_line()
    store = Path(report.directory)
    record = json.loads((store / "Cs2NaInCl6.failed.json").read_text())
    assert record["file"].endswith("dpv_Cs2NaInCl6.tar.gz")
    assert record["error_type"] == "ArchiveError" or "ArchiveError" in record["error"]  # its own or the phonons stage's
    done_at = (store / "Cs2AgBiBr6.done.json").stat().st_mtime_ns
    again = run(stage, dataset, model, settings=SMALL, shard_size=2, workers=0, results_root=tmp_path, progress=False)
    assert again.done == ["Cs2AgBiBr6"] and list(again.failed) == ["Cs2NaInCl6"]
    assert (store / "Cs2AgBiBr6.done.json").stat().st_mtime_ns == done_at  # not recomputed


def test_a_stage_called_from_python_saves_the_others_then_raises(good_and_corrupt, tmp_path):
    from hdpbench.pipeline.stages import run_stage

    dataset, model = good_and_corrupt
    with pytest.raises(CompoundFailures, match="Cs2NaInCl6") as caught:
        run_stage("phonons", dataset, model, settings=SMALL, results_root=tmp_path, progress=False)
    assert list(caught.value.failures) == ["Cs2NaInCl6"]
    assert (Path(caught.value.directory) / "Cs2AgBiBr6.done.json").is_file()


def test_a_compound_that_succeeds_on_retry_loses_its_failure_record(tmp_path):
    store = StageResults(StageManifest(dataset="d", model="m", stage="s"), root=tmp_path)
    attempts = []

    def compute(name):
        attempts.append(name)
        if len(attempts) == 1:
            raise ValueError("transient")
        return {"json_data": {"ok": 1}}

    assert store.run(["A"], compute, progress=False, errors="record") == {"A": "failed"}
    assert list(store.failures()) == ["A"] and store.failures()["A"]["error"] == "transient"
    assert store.run(["A"], compute, progress=False, errors="record") == {"A": "done"}
    assert store.failures() == {} and not (store.directory / "A.failed.json").exists()


# ---- hostile archives ---------------------------------------------------------------------------------
def gzip_bomb(path: Path, member: str, size: int) -> Path:
    """A .tar.gz holding one ``size``-byte member of zeros, as concatenated gzip streams (a few MB)."""
    header = tarfile.TarInfo(member)
    header.size = size
    block = gzip.compress(b"\0" * (1 << 20), compresslevel=9)
    with open(path, "wb") as out:
        out.write(gzip.compress(header.tobuf(format=tarfile.GNU_FORMAT)))
        for _ in range(size >> 20):
            out.write(block)
        out.write(gzip.compress(b"\0" * 1024))  # end-of-archive blocks
    return path


@pytest.mark.parametrize("member", ["dpv_Cs2AgBiBr6/CONTCAR", "dpv_Cs2AgBiBr6/MD/vasprun_prod.xml"])
def test_a_decompression_bomb_is_refused_quickly_and_without_memory(member, tmp_path):
    bomb = gzip_bomb(tmp_path / "dpv_Cs2AgBiBr6.tar.gz", member, 2 << 30)  # 2 GiB inside ~2 MB
    assert bomb.stat().st_size < 10 << 20
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ArchiveTooLargeError, match="2048 MiB uncompressed"):
        CompoundFiles(bomb).member_names()
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seconds < 2.0 and peak < 20 << 20  # refused from the tar header, before any member is read


def test_read_limits_are_configurable(tmp_path, monkeypatch, members_of):
    members, _ = members_of("Cs2AgBiBr6")
    archive = write_tarball(tmp_path / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6")
    assert "CONTCAR" in CompoundFiles(archive).member_names()
    monkeypatch.setenv("HDPBENCH_MAX_XML_MB", "0")
    with pytest.raises(ValueError, match="HDPBENCH_MAX_XML_MB"):
        CompoundFiles(archive).member_names()
    monkeypatch.setenv("HDPBENCH_MAX_XML_MB", "1")
    members["MD/vasprun_prod.xml"] = b" " * (2 << 20)
    big = write_tarball(tmp_path / "big" / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6")
    with pytest.raises(ArchiveTooLargeError, match="HDPBENCH_MAX_XML_MB"):
        CompoundFiles(big).member_names()


def test_a_symlink_in_an_extracted_folder_is_named_as_a_link(tmp_path, members_of):
    from hdpbench.io.authors import load_compound

    members, _ = members_of("Cs2AgBiBr6")
    folder = write_folder(tmp_path / "dpv_Cs2AgBiBr6", members)
    (tmp_path / "elsewhere").write_bytes((folder / "CONTCAR").read_bytes())
    (folder / "CONTCAR").unlink()
    (folder / "CONTCAR").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafeArchiveMemberError, match="symbolic link"):
        load_compound(folder)


def test_a_truncated_vasprun_is_recorded_in_the_result_provenance(tmp_path, members_of):
    from hdpbench.io.authors import load_compound

    members, _ = members_of("Cs2AgBiBr6")
    text = members["MD/vasprun_prod_1.xml"]  # a file of the paper's frame set, which the σ stage reads
    members["MD/vasprun_prod_1.xml"] = text[: text.rindex(b"<calculation>") + 40]  # cut inside the last step
    archive = write_tarball(tmp_path / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6")
    with pytest.warns(UserWarning, match="truncated"):
        compound = load_compound(archive, discard=0)
    (location, message), = compound.provenance["truncated_production_files"].items()
    assert location.endswith("vasprun_prod_1.xml") and "5 complete ionic steps" in message
    with pytest.warns(UserWarning, match="truncated") as warned:  # from the parse cache: the same warning
        again = load_compound(archive, discard=0)
    assert again.provenance == compound.provenance and str(warned[0].message) == f"{location}: {message}"

    from hdpbench.pipeline.stages import run_stage

    model = save_model(build_mace(ELEMENTS, channels=8, r_max=5.0, seed=1), tmp_path / "tiny.model")
    with pytest.warns(UserWarning, match="truncated"):
        stage = run_stage("sigma-reference-frames", tmp_path, model, settings=SMALL, results_root=tmp_path / "results", progress=False)
    assert stage.load_json("Cs2AgBiBr6")["truncated_production_files"] == {location: message}


def test_force_constants_of_a_wrong_shape_name_the_shape(tmp_path, members_of):
    from hdpbench.core.structures import double_perovskite
    from hdpbench.io.force_constants import read_force_constants

    unitcell = double_perovskite("Cs", "Ag", "Bi", "Br", a=11.25, x=0.245)
    path = tmp_path / "force_constants.hdf5"
    import h5py

    with h5py.File(path, "w") as handle:
        handle["force_constants"] = np.zeros((79, 80, 3, 3))
    with pytest.raises(ForceConstantsShapeError, match=r"shape \(79, 80, 3, 3\): expected full \(80, 80, 3, 3\) or compact \(10, 80, 3, 3\)"):
        read_force_constants(path, unitcell=unitcell, supercell_matrix=np.diag([2, 2, 2]), n_atoms=80)


# ---- read-only caches, unwritable results, full disks --------------------------------------------------
def unwritable(tmp_path: Path) -> Path:
    """A folder nothing can be written into, even as root (it lies below a regular file)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return blocker / "folder"


def test_an_unwritable_cache_is_skipped_with_one_warning(tmp_path, monkeypatch, capsys):
    from hdpbench.cli import main

    monkeypatch.setenv("HDPBENCH_CACHE", str(unwritable(tmp_path)))
    with pytest.warns(RuntimeWarning, match="cache not written") as warned:
        assert main(["data", "list", "--dataset", "demo"]) == 0
    assert len([w for w in warned if "cache not written" in str(w.message)]) == 1
    assert "Cs2AgBiBr6" in capsys.readouterr().out


def test_an_unwritable_cache_still_gives_parsed_force_constants(fixtures, tmp_path, monkeypatch):
    from hdpbench.io.force_constants import read_phonopy_yaml

    path = fixtures / "phonopy" / "KCl" / "phonopy_fc222_JPCM2022.yaml.xz"
    monkeypatch.setenv("HDPBENCH_CACHE", str(tmp_path / "writable"))
    expected = read_phonopy_yaml(path)[0]
    monkeypatch.setenv("HDPBENCH_CACHE", str(unwritable(tmp_path)))
    with pytest.warns(RuntimeWarning, match="cache not written"):
        np.testing.assert_array_equal(read_phonopy_yaml(path)[0], expected)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits (the blocked-path case above covers root)")
def test_a_read_only_cache_folder_is_skipped(tmp_path, monkeypatch):
    from hdpbench.cli import main

    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(stat.S_IRUSR | stat.S_IXUSR)
    monkeypatch.setenv("HDPBENCH_CACHE", str(cache))
    with pytest.warns(RuntimeWarning, match="cache not written"):
        assert main(["data", "list", "--dataset", "demo"]) == 0


def test_an_unwritable_results_folder_is_refused_before_any_work(good_and_corrupt, tmp_path, monkeypatch):
    import hdpbench.pipeline.runner as runner

    dataset, model = good_and_corrupt
    monkeypatch.setattr(runner, "run_shard", lambda *a, **k: pytest.fail("computed before checking the results folder"))
    with pytest.raises(StoreWriteError, match="results cannot be written here"):
        run("phonons", dataset, model, settings=SMALL, workers=0, results_root=unwritable(tmp_path), progress=False)


def test_a_full_disk_names_the_file_and_leaves_no_half_result(tmp_path, monkeypatch):
    store = StageResults(StageManifest(dataset="d", model="m", stage="s"), root=tmp_path)
    store.run(["A"], lambda name: {"json_data": {"ok": 1}, "arrays": {"x": np.zeros(3)}}, progress=False)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez_compressed", disk_full)
    with pytest.raises(StoreWriteError, match=r"B\.npz: cannot write \(No space left on device\)"):
        store.run(["A", "B"], lambda name: {"json_data": {"ok": 1}, "arrays": {"x": np.zeros(3)}}, progress=False)
    names = sorted(p.name for p in store.directory.iterdir())
    assert not any(n.endswith(".tmp") for n in names)  # temporaries removed
    assert "B.done.json" not in names and store.is_done("A")  # no done marker for B; A untouched


def test_results_files_get_the_users_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        import importlib

        import hdpbench.pipeline.store as results

        importlib.reload(results)
        results.atomic_write_json(tmp_path / "x.json", {"a": 1})
        assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644  # was 0600 (mkstemp)
    finally:
        os.umask(previous)
        importlib.reload(results)


def test_dask_scratch_lives_under_the_cache(tmp_path, monkeypatch):
    from hdpbench.pipeline.runner import _dask_scratch

    monkeypatch.setenv("HDPBENCH_CACHE", str(tmp_path / "cache"))
    assert _dask_scratch() == str(tmp_path / "cache" / "dask-scratch")


def test_temporaries_of_other_hosts_are_never_swept(tmp_path):
    from hdpbench.core.storage import remove_orphaned_temporaries

    other_host = tmp_path / ".x.json.node42.999999.abc.tmp"  # pid 999999 is dead here, but on node42?
    other_host.write_text("")
    assert remove_orphaned_temporaries(tmp_path) == [] and other_host.exists()


# ---- bad values ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["sigma", "trajectory.xml", "--discard", "-5"],
        ["data", "show", "Cs2AgBiBr6", "--discard", "-1"],
        ["md", "--structure", "x", "--model", "m", "--steps", "-5"],
        ["md", "--structure", "x", "--model", "m", "--replicas", "0"],
        ["run", "md", "--model", "m", "--shard-size", "0"],
    ],
)
def test_negative_or_zero_counts_exit_2_naming_the_option(argv, capsys):
    from hdpbench.cli import main

    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    option = next(a for a in argv if a.startswith("--") and a != "--model" and a != "--structure")
    assert option in capsys.readouterr().err


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("md.steps=-5", "md setting steps=-5: expected an integer ≥ 0"),
        ("md.steps=abc", "md.steps='abc': expected an integer"),
        ("phonons.supercell=3", "phonons.supercell=3: expected a list of 3 integers"),
        ("sigma.discard=-5", "sigma setting discard=-5: expected an integer ≥ 0"),
        ("md.andersen_prob=2", "expected a probability between 0 and 1"),
    ],
)
def test_bad_settings_exit_2_before_any_work(setting, message, capsys):
    from hdpbench.cli import main

    assert main(["run", "md", "--model", "no-such-model", "--set", setting]) == 2
    assert message in capsys.readouterr().err


def test_library_calls_refuse_negative_discards(tmp_path, members_of):
    from hdpbench.core.errors import UsageError
    from hdpbench.io.authors import load_compound
    from hdpbench.physics.md import MDSettings

    members, _ = members_of("Cs2AgBiBr6")
    archive = write_tarball(tmp_path / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6")
    with pytest.raises(UsageError, match="discard=-5"):
        load_compound(archive, discard=-5)
    with pytest.raises(UsageError, match="md setting steps=-5"):
        MDSettings(steps=-5)


# ---- concurrent runs ----------------------------------------------------------------------------------
def test_two_identical_concurrent_runs_give_valid_identical_results(good_and_corrupt, tmp_path):
    dataset, model = good_and_corrupt
    command = [
        sys.executable, "-m", "hdpbench", "run", "phonons", "--dataset", dataset, "--model", model, "--workers", "0",
        "--results", str(tmp_path), "--quiet", "--smoke", "--dtype", "float64",
    ]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == second.returncode == 1  # the corrupt compound fails in both, loudly
    for out, err in outputs:
        assert "1/2 compounds done, 1 FAILED" in out and "Cs2NaInCl6" in err, err[-3000:]
    store = next(tmp_path.rglob("phonons/*/manifest.json")).parent  # phonons/<key>/
    assert (store / "Cs2AgBiBr6.done.json").is_file()
    assert not list(store.glob(".*.tmp"))
    json.loads((store / "Cs2AgBiBr6.json").read_text())


SLOW_MD_RUN = """
import sys, time
from hdpbench.physics.md import BatchedAndersen
step = BatchedAndersen.step
def slow(self):
    time.sleep(0.05)
    step(self)
BatchedAndersen.step = slow
from hdpbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_two_concurrent_md_runs_on_one_results_folder_write_one_trajectory(good_and_corrupt, tmp_path):
    """Two runs of the md stage into one results folder interleaved their frames into one file (37 frames
    for 40 steps, steps missing and duplicated) and both marked it done (issue 40): each compound and stage
    is now locked, so the second run waits for the first and then finds the compound done."""
    dataset, model = good_and_corrupt
    command = [
        sys.executable, "-c", SLOW_MD_RUN, "run", "md", "--dataset", dataset, "--model", model, "--workers", "0", "--quiet",
        "--smoke", "--dtype", "float64", "--compounds", "Cs2AgBiBr6", "--set", "md.steps=20", "--set", "md.start_frame_max=4",
        "--results", str(tmp_path),
    ]  # fmt: skip
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.rglob("replica_000.extxyz")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the first run is inside its MD: the second starts on top of it
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == second.returncode == 0, [err[-2000:] for _, err in outputs]
    written = next(tmp_path.rglob("md/*/Cs2AgBiBr6.md.extxyz")).read_text()
    steps = [int(line.split(" step=")[1].split()[0]) for line in written.splitlines() if line.startswith("Lattice=")]
    assert steps == list(range(1, 21))


# ---- files the user names for output (issue 40) -----------------------------------------------------------
@pytest.fixture
def exportable(tmp_path):
    """A results store holding one compound, and the arguments that export it as CSV."""
    store = StageResults(StageManifest(dataset="d", model="m", stage="phonons"), root=tmp_path / "results")
    store.save("Cs2AgBiBr6", json_data={"rmse_omega2_thz2": 1.5})
    return ["results", "export", "--dataset", "d", "--model", "m", "--stage", "phonons", "--results", str(tmp_path / "results"), "--csv"]


def test_export_keeps_an_existing_files_mode_and_writes_through_a_symlink(exportable, tmp_path):
    from hdpbench.cli import main

    private = tmp_path / "private.csv"
    private.write_text("old\n")
    private.chmod(0o600)
    assert main([*exportable, str(private)]) == 0
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and "Cs2AgBiBr6" in private.read_text()  # came back 0644
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "target.csv")
    assert main([*exportable, str(link)]) == 0
    assert link.is_symlink() and "Cs2AgBiBr6" in (tmp_path / "target.csv").read_text()  # the link was replaced by a file


def test_export_writes_through_a_fifo_and_a_device_instead_of_replacing_them(exportable, tmp_path):
    """``--csv /dev/full`` (as root) replaced the system's /dev/full with a plain file."""
    from hdpbench.cli import main

    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader waiting, so the writer does not block
    try:
        assert main([*exportable, str(fifo)]) == 0
        received = os.read(reader, 1 << 16)
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.stat().st_mode) and b"Cs2AgBiBr6" in received
    assert main([*exportable, os.devnull]) == 0 and stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_output_into_a_folder_is_refused_in_one_line(exportable, tmp_path, capsys):
    from hdpbench.cli import main

    assert main([*exportable, str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{tmp_path}: is a folder" in err and tmp_path.is_dir()


# ---- a cache is disposable (issue 40) ---------------------------------------------------------------------
def test_a_bad_cached_batch_size_is_discarded_and_probed_again(good_and_corrupt, tmp_path, monkeypatch):
    """A cached batch size of 0 spun at 100 % CPU forever; -1, "abc", 1.5 and [] were tracebacks."""
    from hdpbench.core.structures import double_perovskite
    from hdpbench.models.evaluate import load_model

    monkeypatch.setenv("HDPBENCH_CACHE", str(tmp_path / "cache"))
    model = load_model(good_and_corrupt[1])  # the module's tiny MACE
    structures = [double_perovskite("Cs", "Ag", "Bi", "Br", a=11.25, x=0.245) for _ in range(3)]
    model.evaluator(batch_size="auto").evaluate(structures)
    cache = tmp_path / "cache" / "batch_sizes.json"
    keys = list(json.loads(cache.read_text()))
    evaluator = model.evaluator(batch_size="auto")
    for bad in (-1, "abc", 1.5, [], True, 0):
        cache.write_text(json.dumps({key: bad for key in keys}))
        with pytest.warns(RuntimeWarning, match="batch_sizes.json: cached batch size"):
            assert evaluator.cached_batch_size(10) is None, bad
    with pytest.warns(RuntimeWarning, match="cached batch size 0"):
        assert len(evaluator.evaluate(structures).forces) == 3  # 0 looped for ever
    assert all(isinstance(v, int) and v >= 1 for v in json.loads(cache.read_text()).values())  # probed and stored again
    cache.write_text("[]")  # not even a table
    assert evaluator.cached_batch_size(10) is None and len(evaluator.evaluate(structures).forces) == 3


def test_a_truncated_cache_entry_is_discarded_named_and_recomputed(tmp_path, monkeypatch):
    """A truncated ``.cache/*.npz`` failed its compound on every rerun with "File is not a zip file", no file named."""
    from ase.build import bulk
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    from hdpbench.io.trajectories import read_ase_frames

    monkeypatch.setenv("HDPBENCH_CACHE", str(tmp_path / "cache"))
    frames = []
    for k in range(2):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        atoms.rattle(0.05, seed=k)
        atoms.calc = SinglePointCalculator(atoms, energy=-1.0 * k, forces=np.full((4, 3), 0.1 * k))
        frames.append(atoms)
    write(tmp_path / "frames.extxyz", frames)
    first = read_ase_frames(tmp_path / "frames.extxyz")
    [entry] = list((tmp_path / "cache").rglob("*.npz"))
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    with pytest.warns(RuntimeWarning, match=f"{entry}: unreadable cache entry"):
        again = read_ase_frames(tmp_path / "frames.extxyz")
    assert np.array_equal(again.positions, first.positions) and np.array_equal(again.forces, first.forces)
    assert np.load(entry)["positions"].shape == first.positions.shape  # written again, whole


def test_ctrl_c_is_one_line_and_exit_130(good_and_corrupt, tmp_path):
    """Ctrl-C printed 61 lines of traceback and exited 1."""
    dataset, model = good_and_corrupt
    command = [
        sys.executable, "-c", SLOW_MD_RUN, "run", "md", "--dataset", dataset, "--model", model, "--workers", "0", "--quiet",
        "--smoke", "--dtype", "float64", "--compounds", "Cs2AgBiBr6", "--set", "md.steps=200", "--results", str(tmp_path),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.rglob("replica_000.extxyz")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-2000:]
    assert err.strip().splitlines() == ["hdpbench: interrupted; finished results are kept, and a rerun continues from them"]


# ---- one bad compound never fails its shard (issue 40) -----------------------------------------------------------
def test_a_compound_with_an_element_the_model_lacks_fails_alone(good_and_corrupt, tmp_path, monkeypatch):
    """Every compound of its shard failed with its error, so the outcome depended on --shard-size."""
    import hdpbench.pipeline.compute as compute
    from hdpbench.models.evaluate import UnknownElementError

    dataset, model = good_and_corrupt
    check = compute.require_elements

    def without_chlorine(loaded, formulas):  # as if the model lacked Cl (its one-hot width stays right)
        for formula in formulas:
            if "Cl" in formula:
                raise UnknownElementError(f"compound {formula} contains ['Cl'], which model {loaded.name} does not know")
        check(loaded, formulas)

    monkeypatch.setattr(compute, "require_elements", without_chlorine)
    report = run("phonons", dataset, model, settings=SMALL, shard_size=2, workers=0, results_root=tmp_path, progress=False)
    assert report.done == ["Cs2AgBiBr6"]
    assert list(report.failed) == ["Cs2NaInCl6"] and "contains ['Cl']" in report.failed["Cs2NaInCl6"]


def test_a_full_disk_keeps_the_compounds_finished_before_it_done(good_and_corrupt, tmp_path, monkeypatch):
    """A finished compound was reported FAILED on a full disk, and every other compound got its error."""
    import hdpbench.pipeline.store as store_module

    dataset, model = good_and_corrupt
    write = store_module.atomic_write_json

    def full_for_failure_records(path, obj):
        if str(path).endswith(".failed.json"):
            raise StoreWriteError(path, "cannot write (No space left on device); nothing of it was kept")
        write(path, obj)

    monkeypatch.setattr(store_module, "atomic_write_json", full_for_failure_records)
    report = run("phonons", dataset, model, settings=SMALL, shard_size=2, workers=0, results_root=tmp_path, progress=False)
    assert report.done == ["Cs2AgBiBr6"]
    assert list(report.failed) == ["Cs2NaInCl6"] and "Cs2NaInCl6.failed.json: cannot write (No space left on device)" in report.failed["Cs2NaInCl6"]
