"""Bad input raises an error naming the file and the problem, and never touches stored results."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from hdpbench.core.compound import Compound, Trajectory, check_force_constants
from hdpbench.core.errors import (
    ArchiveError,
    CompoundFailures,
    DataError,
    ForceConstantsShapeError,
    FrameIndexError,
    MissingMemberError,
    NonFiniteError,
    TrajectoryMismatchError,
    UnsafeArchiveMemberError,
)
from hdpbench.io.archive import CompoundFiles, extract_archive
from hdpbench.io.authors import load_compound
from hdpbench.io.force_constants import read_force_constants
from hdpbench.io.vasprun import write_vasprun
from hdpbench.pipeline.store import StageManifest, StageResults

from .builders import production_name, write_folder, write_tarball


def _tar_with(path, members, extra):
    write_tarball(path, members, "dpv_Cs2AgBiBr6")
    with tarfile.open(path, "r:gz") as tar:
        existing = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(path, "w:gz") as tar:
        for member, data in existing:
            tar.addfile(member, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


@pytest.mark.parametrize(
    "make_member, problem",
    [
        (lambda: (tarfile.TarInfo("dpv_Cs2AgBiBr6/../../evil"), b"x"), "escapes the archive folder"),
        (lambda: (tarfile.TarInfo("/etc/evil"), b"x"), "absolute path"),
        (lambda: (_link("dpv_Cs2AgBiBr6/CONTCAR_link", "/etc/passwd", tarfile.SYMTYPE), None), "is a link"),
        (lambda: (_link("dpv_Cs2AgBiBr6/hard", "dpv_Cs2AgBiBr6/CONTCAR", tarfile.LNKTYPE), None), "is a link"),
    ],
)
def test_unsafe_members_are_refused_and_never_extracted(tmp_path, members_of, make_member, problem):
    members, _ = members_of()
    info, data = make_member()
    if data is not None:
        info.size = len(data)
    archive = _tar_with(tmp_path / "dpv_Cs2AgBiBr6.tar.gz", members, [(info, data)])
    with pytest.raises(UnsafeArchiveMemberError, match=problem) as caught:
        load_compound(archive)
    assert str(archive) in str(caught.value) and info.name in str(caught.value)
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveMemberError):
        extract_archive(archive, target)
    with pytest.raises(UnsafeArchiveMemberError):
        CompoundFiles(archive).extract(["CONTCAR"], target)
    assert not (tmp_path / "evil").exists()
    assert not target.exists() or not any(target.rglob("*"))


def _link(name, target, kind):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize("missing", ["CONTCAR", "SPOSCAR"])
def test_missing_member_is_named(tmp_path, members_of, missing):
    members, _ = members_of()
    del members[missing]
    archive = write_tarball(tmp_path / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6")
    with pytest.raises(MissingMemberError, match=f"missing member {missing} of dpv_Cs2AgBiBr6") as caught:
        load_compound(archive)
    assert caught.value.path == f"{archive}:{missing}"


def test_missing_force_constants_and_force_sets(tmp_path, members_of):
    members, _ = members_of()
    del members["force_constants.hdf5"], members["FORCE_SETS"]
    with pytest.raises(MissingMemberError, match="force_constants.hdf5 .* no FORCE_SETS"):
        load_compound(write_folder(tmp_path / "dpv_Cs2AgBiBr6", members))


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_tarball(tmp_path, members_of, damage):
    members, _ = members_of()
    archive = write_tarball(tmp_path / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x1f\x8b" + bytes(range(256)) * 40)
    with pytest.raises(ArchiveError, match="corrupt") as caught:
        load_compound(archive)
    assert str(archive) in str(caught.value)


def test_corrupt_force_constants_member(tmp_path, members_of):
    members, _ = members_of()
    members["force_constants.hdf5"] = b"not hdf5 at all"
    folder = write_folder(tmp_path / "dpv_Cs2AgBiBr6", members)
    with pytest.raises(DataError, match="force_constants.hdf5: not a readable HDF5 file"):
        load_compound(folder)


def _write_md(members, trajectory, tmp_path, k=0):
    path = tmp_path / "scratch.xml"
    write_vasprun(path, trajectory)
    members[production_name(k)] = path.read_bytes()


@pytest.mark.parametrize("change", ["count", "species", "order"])
def test_trajectory_not_matching_the_reference_supercell(tmp_path, members_of, change):
    members, built = members_of()
    good = built.frames[1]
    if change == "count":
        bad = Trajectory(good.numbers[:-1], good.positions[:, :-1], good.cells, good.forces[:, :-1])
        problem = "79 atoms per frame but the reference supercell of Cs2AgBiBr6 has 80"
    elif change == "species":
        numbers = good.numbers.copy()
        numbers[numbers == 35] = 17  # Br -> Cl
        bad = Trajectory(numbers, good.positions, good.cells, good.forces)
        problem = "species differ from the reference supercell"
    else:
        order = np.roll(np.arange(80), 1)
        bad = Trajectory(good.numbers[order], good.positions[:, order], good.cells, good.forces[:, order])
        problem = "atom order differs from the reference supercell"
    _write_md(members, bad, tmp_path, k=1)
    archive = write_tarball(tmp_path / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6")
    with pytest.raises(TrajectoryMismatchError, match=problem) as caught:
        load_compound(archive, discard=0)
    assert f"{archive}:{production_name(1)}" in str(caught.value)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_forces_name_file_and_frame(tmp_path, members_of, value):
    members, built = members_of()
    forces = built.frames[0].forces.copy()
    forces[4, 7, 1] = value
    bad = Trajectory(built.frames[0].numbers, built.frames[0].positions, built.frames[0].cells, forces)
    path = tmp_path / "scratch.xml"
    write_vasprun(path, bad)
    members[production_name(0)] = path.read_bytes().replace(b" nan", b"  NaN").replace(b" inf", b" Infinity")
    archive = write_tarball(tmp_path / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6")
    with pytest.raises(NonFiniteError, match=r"non-finite forces in frame 4 of that file") as caught:
        load_compound(archive, discard=0)
    assert f"{archive}:{production_name(0)}" in str(caught.value)


@pytest.mark.parametrize("shape", [(79, 80, 3, 3), (80, 80, 3), (240, 239)])
def test_force_constants_of_the_wrong_shape(tmp_path, shape):
    with pytest.raises(ForceConstantsShapeError, match=r"a supercell of 80 atoms needs \(80, 80, 3, 3\)"):
        check_force_constants(np.zeros(shape), 80, "fc.hdf5")


def test_force_constants_file_of_the_wrong_size_for_the_supercell(tmp_path, members_of):
    from phonopy.file_IO import write_force_constants_to_hdf5

    path = tmp_path / "force_constants.hdf5"
    write_force_constants_to_hdf5(np.zeros((40, 40, 3, 3)), filename=str(path))
    with pytest.raises(ForceConstantsShapeError, match=str(path)):
        read_force_constants(path, n_atoms=80)


def test_non_finite_force_constants(tmp_path):
    fc = np.zeros((2, 2, 3, 3))
    fc[1, 0, 2, 2] = np.nan
    with pytest.raises(NonFiniteError, match=r"fc.hdf5: non-finite force constant at index \(1, 0, 2, 2\)"):
        check_force_constants(fc, 2, "fc.hdf5")


def test_frame_index_past_the_end(members_of):
    _, built = members_of()
    trajectory = built.frames[0]
    with pytest.raises(FrameIndexError, match="frame index 6 is past the end of a trajectory of 6 frames"):
        trajectory.select([0, 6])
    with pytest.raises(FrameIndexError, match="past the end"):
        trajectory.atoms(-7)
    assert len(trajectory.select([-1, 0])) == 2


def test_bad_compound_leaves_the_results_store_untouched(tmp_path, members_of):
    members, _ = members_of()
    good = write_folder(tmp_path / "data" / "dpv_Cs2AgBiBr6", members)
    broken_members = dict(members)
    del broken_members["SPOSCAR"]
    broken = write_folder(tmp_path / "data" / "dpv_Broken", broken_members)
    stage = StageResults(StageManifest("user", "model", "inventory", settings={"discard": 0}), root=tmp_path / "results")

    def compute(name):
        compound = load_compound(good if name == "Cs2AgBiBr6" else broken, discard=0)
        return {"json_data": {"frames": compound.n_frames}}

    stage.run(["Cs2AgBiBr6"], compute, progress=False)
    snapshot = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in stage.directory.iterdir()}
    with pytest.raises(CompoundFailures, match="dpv_Broken") as caught:
        stage.run(["Cs2AgBiBr6", "Broken"], compute, progress=False)
    assert isinstance(caught.value.__cause__, MissingMemberError)
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in stage.directory.iterdir()}
    failure = stage.directory / "Broken.failed.json"
    assert after.pop(failure) and after == snapshot  # only the failure record was added
    assert stage.done() == ["Cs2AgBiBr6"] and stage.failures()["Broken"]["error_type"] == "MissingMemberError"


def test_compound_rejects_mismatched_trajectory_directly(members_of):
    _, built = members_of()
    wrong = Trajectory(built.frames[0].numbers[:10], built.frames[0].positions[:, :10], built.frames[0].cells)
    with pytest.raises(TrajectoryMismatchError, match="10 atoms per frame"):
        Compound("Cs2AgBiBr6", "Br", built.unitcell, np.diag([2, 2, 2]), built.supercell, trajectories=[wrong])


# ---- σ: frames that do not fit their reference (issue 40) ------------------------------------------------
VIBES = Path(__file__).resolve().parents[1] / "data" / "external" / "fhi-vibes" / "CsPbI3_aims_pbesol_700K_trajectory.nc"


def _vibes_reference(change: str):
    from hdpbench.io.trajectories import read_fhi_vibes

    reference = read_fhi_vibes(VIBES).reference.copy()
    iodine = [i for i, s in enumerate(reference.get_chemical_symbols()) if s == "I"]
    if change == "permuted":
        order = np.arange(len(reference))
        order[[iodine[0], iodine[5]]] = order[[iodine[5], iodine[0]]]
        reference.positions = reference.positions[order]  # two I sites swapped: the same structure, atoms relabelled
    elif change == "larger cell":
        reference.set_cell(reference.cell.array * 1.05, scale_atoms=True)
    return reference


@pytest.mark.parametrize(("change", "problem"), [("permuted", "permuted within a species"), ("larger cell", "has the cell")])
def test_sigma_refuses_a_reference_that_does_not_fit_the_frames_naming_both_files(change, problem, tmp_path, capsys):
    """σ was 24-27 instead of 0.66 with two atoms of a species swapped, and a reference cell 5 % larger than
    the frames' was accepted (σ 1.19), exit 0 both."""
    from ase.io import write

    from hdpbench.cli import main

    fitting, wrong = tmp_path / "SPOSCAR", tmp_path / "SPOSCAR-wrong"
    write(fitting, _vibes_reference("unchanged"), format="vasp", direct=True)
    write(wrong, _vibes_reference(change), format="vasp", direct=True)
    assert main(["sigma", str(VIBES), "--reference", str(fitting), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sigma_pooled"] == pytest.approx(0.6594, abs=1e-3)  # FHI-vibes' own value
    assert main(["sigma", str(VIBES), "--reference", str(wrong), "--json"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and problem in err and str(VIBES) in err and str(wrong) in err


def test_sigma_refuses_frames_with_atoms_permuted_within_a_species():
    from hdpbench.io.trajectories import read_fhi_vibes
    from hdpbench.physics.anharmonicity import sigma

    vibes = read_fhi_vibes(VIBES)
    frames = vibes.trajectory
    order = np.arange(frames.n_atoms)
    cesium = [i for i, s in enumerate(vibes.reference.get_chemical_symbols()) if s == "Cs"]
    order[[cesium[0], cesium[1]]] = order[[cesium[1], cesium[0]]]
    swapped = Trajectory(frames.numbers, frames.positions[:, order], frames.cells, forces=frames.forces[:, order], source_files=frames.source_files)
    with pytest.raises(DataError, match="permuted within a species") as caught:
        sigma(swapped, vibes.reference, vibes.force_constants)
    assert caught.value.path == str(VIBES)


def test_sigma_discard_is_honoured_for_fhi_vibes_files(capsys):
    """``--discard N`` was ignored for trajectory.nc, even with N above the frame count."""
    from hdpbench.cli import main

    assert main(["sigma", str(VIBES), "--discard", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_frames"] == 9 - 4
    assert main(["sigma", str(VIBES), "--discard", "9"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(VIBES) in err and "no frames left after discarding the first 9 (file has 9)" in err


# ---- NaN and degenerate values (issue 40) --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["phonons", "compare", "--unitcell", "POSCAR", "--reference", "FORCE_SETS", "--model", "m", "--unstable-below", "nan"], "--unstable-below"),
        (["phonons", "compare", "--unitcell", "POSCAR", "--reference", "FORCE_SETS", "--model", "m", "--displacement", "1e-300"], "--displacement"),
        (["sigma", "trajectory.nc", "--model", "m", "--displacement", "5"], "--displacement"),
    ],
)
def test_non_finite_or_absurd_option_values_exit_2(argv, option, capsys):
    """``--unstable-below nan`` wrote NaN into the results; ``--displacement 1e-300`` gave 1e147 THz; exit 0 both."""
    from hdpbench.cli import main

    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2 and option in capsys.readouterr().err


@pytest.mark.parametrize("config", ["phonons: {unstable_below_thz: .nan}", "md: {temperature_K: .inf}"])
def test_non_finite_settings_in_a_config_exit_2(config, tmp_path, capsys):
    from hdpbench.cli import main

    (tmp_path / "run.yaml").write_text(config + "\n")
    assert main(["run", "phonons", "--config", str(tmp_path / "run.yaml"), "--model", "no-such-model"]) == 2
    assert "expected a finite number" in capsys.readouterr().err
    assert main(["run", "phonons", "--model", "no-such-model", "--set", "phonons.unstable_below_thz=NaN"]) == 2
    assert "phonons.unstable_below_thz=nan: expected a finite number" in capsys.readouterr().err


def _copper_with(change: str):
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    if change == "NaN coordinate":
        atoms.positions[1, 2] = np.nan
    elif change == "overlapping atoms":
        atoms.positions[1] = atoms.positions[0] + [0.1, 0, 0]
    elif change == "zero-volume cell":
        atoms.cell[2] = [0, 0, 0]
        atoms.pbc = True
    return atoms


@pytest.mark.parametrize(
    ("change", "problem"),
    [("NaN coordinate", "non-finite coordinates of atom 1"), ("overlapping atoms", "atoms 0 and 1 are 0.100 Å apart"), ("zero-volume cell", "has no volume")],
)
def test_md_refuses_a_structure_that_cannot_be_computed_naming_the_file(change, problem, tmp_path, capsys):
    """``md`` on a structure with a NaN coordinate exited 0; overlapping atoms and zero-volume cells went unnoticed."""
    from ase.io import write

    from hdpbench.cli import main

    path = tmp_path / "start.extxyz"
    write(path, _copper_with(change))
    assert main(["md", "--structure", str(path), "--model", "no-such-model", "--steps", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path}: " in err and problem in err


# ---- one line, no traceback, for every user error (issue 40) ----------------------------------------------------
def _model_files(tmp_path: Path) -> dict[str, Path]:
    import zipfile

    files = {"text": tmp_path / "text.model", "empty": tmp_path / "empty.model", "random": tmp_path / "random.model",
             "zip": tmp_path / "zip.model", "truncated": tmp_path / "truncated.model"}  # fmt: skip
    files["text"].write_text("not a checkpoint\n")
    files["empty"].write_bytes(b"")
    files["random"].write_bytes(np.random.default_rng(0).bytes(3000))
    with zipfile.ZipFile(files["zip"], "w") as archive:
        archive.writestr("notes.txt", "hello")
    demo = Path(__file__).resolve().parents[1] / "models" / "demo" / "demo-small-data.model"
    files["truncated"].write_bytes(demo.read_bytes()[:20000])
    return files


@pytest.mark.parametrize(("kind", "problem"), [
    ("text", "not a PyTorch checkpoint"), ("empty", "empty file"), ("random", "not a PyTorch checkpoint"),
    ("zip", "not a PyTorch checkpoint"), ("truncated", "damaged or truncated"),
])  # fmt: skip
def test_a_model_file_that_is_not_a_checkpoint_is_one_line_naming_it(kind, problem, tmp_path, capsys):
    """Each was a traceback from inside torch.load (and ``../../etc/passwd`` was unpickled)."""
    from ase.build import bulk
    from ase.io import write

    from hdpbench.cli import main

    model = _model_files(tmp_path)[kind]
    write(tmp_path / "cu.extxyz", bulk("Cu", "fcc", a=3.61, cubic=True))
    assert main(["md", "--structure", str(tmp_path / "cu.extxyz"), "--model", str(model), "--steps", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{model}: " in err and problem in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "phonons", "--model", "demo-small-data", "--device", "foo", "--workers", "0"], "--device 'foo': not a device"),
        (["sigma", "x.nc", "--device", "foo"], "--device 'foo': not a device"),
        (["run", "phonons", "--model", "demo-small-data", "--compounds", "--workers", "0"], "--compounds without names"),
    ],
)
def test_bad_configuration_exits_2_before_any_work(argv, message, capsys):
    """``--device foo`` in ``run`` was recorded as a data failure of every compound (exit 1, "a rerun retries only these")."""
    from hdpbench.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_cuda_on_a_torch_without_it_exits_2(capsys):
    import torch

    from hdpbench.cli import main

    if torch.cuda.is_available():
        pytest.skip("this torch has CUDA")
    assert main(["md", "--structure", "x", "--model", "demo-small-data", "--device", "cuda"]) == 2
    assert "--device 'cuda'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "value"),
    [("HDPBENCH_THREADS", "0"), ("HDPBENCH_THREADS", "two"), ("HDPBENCH_MAX_XML_MB", "-3"), ("HDPBENCH_MAX_MEMBER_MB", "1.5"),
     ("HDPBENCH_TORCH_COMPILE", "yes")],
)  # fmt: skip
def test_bad_environment_variables_exit_2_naming_the_variable(variable, value, monkeypatch, capsys):
    """They were tracebacks, or failures recorded per compound in ``run``."""
    from hdpbench.cli import main

    monkeypatch.setenv(variable, value)
    assert main(["run", "phonons", "--model", "demo-small-data", "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{variable}={value!r}" in err


@pytest.mark.parametrize("layout", ["empty", "a level above"])
def test_a_dataset_folder_without_compounds_is_an_error(layout, authors_dataset, tmp_path, capsys):
    """"0/0 compounds done, ok" with exit 0 before."""
    from hdpbench.cli import main

    folder = tmp_path / "nothing-here" if layout == "empty" else authors_dataset[0].parent
    folder.mkdir(exist_ok=True)
    assert main(["run", "phonons", "--dataset", str(folder), "--model", "demo-small-data", "--workers", "0", "--quiet"]) == 2
    assert "no compounds found" in capsys.readouterr().err


def test_a_truncated_result_json_is_one_line_naming_it(tmp_path, capsys):
    from hdpbench.cli import main

    store = StageResults(StageManifest(dataset="d", model="m", stage="phonons"), root=tmp_path)
    store.save("A", json_data={"x": 1})
    result = store.path("A", ".json")
    result.write_text(result.read_text()[:10])
    assert main(["results", "export", "--dataset", "d", "--model", "m", "--stage", "phonons", "--results", str(tmp_path), "--json"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{result}: unreadable result" in err


def test_an_unreachable_scheduler_is_one_line(capsys):
    # distributed's defaults must be in dask's config before set(): leaving the block deletes a section
    # set() created, and with it every default distributed added inside, so later LocalClusters in this
    # process failed with KeyError 'distributed'
    import dask
    import distributed  # noqa: F401

    from hdpbench.cli import main

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert main(["run", "phonons", "--model", "demo-small-data", "--compounds", "Cs2AgBiBr6", "--scheduler", "tcp://127.0.0.1:9", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines()[-1].startswith("hdpbench: error: --scheduler tcp://127.0.0.1:9: cannot connect") and "Traceback" not in err


# ---- phonons compare: the reference's own cell (issue 40) -------------------------------------------------------
PHONOPY_EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "external" / "phonopy"


def test_phonons_compare_refuses_a_yaml_of_another_unit_cell_and_uses_its_own_supercell(tmp_path, capsys):
    """KCl's force constants were compared on a NaCl cell, exit 0."""
    from ase.io import write

    from hdpbench.cli import main
    from hdpbench.io.force_constants import read_phonopy_yaml

    kcl = PHONOPY_EXAMPLES / "KCl" / "phonopy_fc222_JPCM2022.yaml.xz"
    nacl = PHONOPY_EXAMPLES / "NaCl" / "POSCAR-unitcell"
    assert main(["phonons", "compare", "--unitcell", str(nacl), "--reference", str(kcl), "--model", str(kcl)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{kcl}: " in err and f"is not --unitcell {nacl}" in err
    _, unitcell, matrix = read_phonopy_yaml(kcl)
    write(tmp_path / "POSCAR", unitcell, format="vasp", direct=True)
    assert main(["phonons", "compare", "--unitcell", str(tmp_path / "POSCAR"), "--reference", str(kcl), "--model", str(kcl), "--supercell", "3", "3", "3"]) == 1
    assert f"supercell matrix {np.asarray(matrix).tolist()} is not --supercell" in capsys.readouterr().err
    assert main(["phonons", "compare", "--unitcell", str(tmp_path / "POSCAR"), "--reference", str(kcl), "--model", str(kcl), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rmse_omega2_thz2"] == pytest.approx(0, abs=1e-9)  # its own 2x2x2, itself


def test_phonons_compare_checks_the_supercell_against_force_sets_before_building_it(capsys):
    """``--supercell 50 50 50`` against a 64-atom FORCE_SETS hung in phonopy; ``5 5 5`` took 12 s to say so."""
    import time

    from hdpbench.cli import main

    nacl = PHONOPY_EXAMPLES / "NaCl"
    arguments = ["phonons", "compare", "--unitcell", str(nacl / "POSCAR-unitcell"), "--reference", str(nacl / "FORCE_SETS"), "--model", str(nacl / "FORCE_SETS")]
    start = time.perf_counter()
    assert main([*arguments, "--supercell", "5", "5", "5"]) == 1
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds forces of 64 atoms per supercell" in err and "has 1000" in err
    assert main([*arguments, "--supercell", "50", "50", "50"]) == 2
    assert "1000000 atoms" in capsys.readouterr().err


def test_phonon_displacement_is_bounded_through_settings_too():
    """--set phonons.displacement=1e-300 (or a config) is refused like --displacement (gave 1e147 THz)."""
    from hdpbench.core.errors import UsageError
    from hdpbench.physics.phonons import PhononSettings

    for value in (1e-300, 2.0):
        with pytest.raises(UsageError, match="expected 0.0001 to 0.5"):
            PhononSettings(displacement=value)
    PhononSettings(displacement=0.01)


def test_a_torch_file_that_is_not_a_model_is_named(tmp_path):
    """torch.save of a state dict passes the file-format check; loading it names the file and what it holds."""
    import torch

    from hdpbench.core.errors import DataError
    from hdpbench.models.evaluate import load_model

    path = tmp_path / "weights.model"
    torch.save({"layer.weight": torch.zeros(2)}, path)
    with pytest.raises(DataError, match="holds a dict, not a saved model") as error:
        load_model(str(path)).module  # noqa: B018 (the module loads on first use)
    assert str(path) in str(error.value)
