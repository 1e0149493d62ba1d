"""The command line, the dataset registry and import hygiene."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hdpbench import cli
from hdpbench.core.errors import DatasetUnavailableError, UnknownDatasetError
from hdpbench.data.datasets import DatasetSpec, fetch, get_dataset, registered_datasets


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    assert "data" in capsys.readouterr().out


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "hdpbench.cli", "data", "list", "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    names = {d["name"] for d in json.loads(result.stdout)}
    assert {"hdp", "demo"} <= names


def test_data_list_of_a_dataset_folder(capsys, authors_dataset):
    root, _ = authors_dataset
    code, out, _ = run_cli(capsys, "data", "list", "--dataset", str(root), "--json")
    assert code == 0
    listing = {row["formula"]: row for row in json.loads(out)}
    assert listing["Cs2AgBiBr6"]["halide"] == "Br" and listing["Cs2AgBiBr6"]["production_md_files"] == 2
    assert listing["Cs2NaInCl6"]["force_constants"] == "force_constants.hdf5"
    code, out, _ = run_cli(capsys, "data", "list", "--dataset", str(root), "--halide", "Cl")
    assert code == 0 and "Cs2NaInCl6" in out and "Cs2AgBiBr6" not in out
    # σ_DFT = 2.5 in its summary db: shown, but marked as treated as missing
    assert "2.500*" in out and "treated as missing" in out
    code, out, _ = run_cli(capsys, "data", "list", "--dataset", str(root), "--halide", "Br")
    assert "0.410" in out and "treated as missing" not in out


def test_data_show_loads_one_compound(capsys, authors_dataset):
    root, _ = authors_dataset
    code, out, _ = run_cli(capsys, "data", "show", "Cs2AgBiBr6", "--dataset", str(root), "--discard", "1", "--json")
    info = json.loads(out)
    assert code == 0 and info["supercell_atoms"] == 80 and info["frames_per_file"] == [5, 5]
    assert info["force_constants_shape"] == [80, 80, 3, 3]


def test_unavailable_dataset_says_what_to_download_and_where(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HDPBENCH_DATA_DIR", str(tmp_path / "mirror"))
    code, _, err = run_cli(capsys, "data", "list", "--dataset", "hdp")
    assert code == 1
    assert "10.1021/acs.chemmater.2c01779" in err
    assert str(tmp_path / "mirror" / "hdp") in err
    assert "HDPBENCH_HDP_URL" in err


def test_local_mirror_is_used_before_any_download(tmp_path, monkeypatch, members_of):
    from .builders import write_tarball

    monkeypatch.setenv("HDPBENCH_DATA_DIR", str(tmp_path / "mirror"))
    members, _ = members_of()
    write_tarball(tmp_path / "mirror" / "hdp" / "bromides" / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6")
    monkeypatch.setenv("HDPBENCH_HDP_URL", "https://example.invalid/never-contacted.tar.gz")
    dataset = get_dataset("hdp")
    assert dataset.compounds() == ["Cs2AgBiBr6"]


def test_failed_download_keeps_the_instructions(tmp_path, monkeypatch):
    import pooch

    def refuse(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(pooch, "retrieve", refuse)
    spec = DatasetSpec(name="hdp", title="t", url="https://example.invalid/x.tar.gz", sha256="0" * 64, path=str(tmp_path / "x"))
    with pytest.raises(DatasetUnavailableError, match="Download failed: ConnectionError: no network"):
        fetch(spec)


def test_unknown_dataset_name():
    with pytest.raises(UnknownDatasetError, match="registered datasets are"):
        get_dataset("no-such-dataset")


def test_registry_entries_are_complete():
    specs = registered_datasets()
    assert specs["hdp"].doi == "10.1021/acs.chemmater.2c01779" and specs["hdp"].layout == "authors"
    assert specs["demo"].demo and "not DFT" in specs["demo"].title


def test_e3nn_and_mace_import_after_torch_setup():
    """In a fresh interpreter: e3nn 0.4.4 under torch ≥ 2.6 needs `slice` as a safe global."""
    # e3nn first: mace's own import switches weights-only loading off process-wide, which would hide the fix.
    code = (
        "from hdpbench.core.torch_setup import import_mace, import_e3nn\n"
        "import_e3nn(); import_mace()\n"
        "from mace.modules import MACE\n"
        "import e3nn.o3\n"
        "print(e3nn.o3.Irreps('1x0e+1x1o').dim)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "4"


def test_sigma_cli_on_fhi_vibes_file(capsys, fixtures):
    code, out, _ = run_cli(capsys, "sigma", str(fixtures / "fhi-vibes" / "CsPbI3_aims_pbesol_700K_trajectory.nc"), "--json")
    result = json.loads(out)
    assert code == 0
    assert {"sigma_pooled", "sigma_mean_per_frame", "sigma_per_frame", "sigma_per_species", "n_frames", "n_atoms"} <= set(result)
    assert result["n_frames"] == 9 and result["sigma_pooled"] == pytest.approx(0.65941593, abs=1e-6)


def test_sigma_cli_on_vasprun_with_reference_and_fc(capsys, tmp_path, members_of):
    members, built = members_of()
    for name in ("SPOSCAR", "force_constants.hdf5", "MD/vasprun_prod.xml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(members[name])
    code, out, err = run_cli(
        capsys, "sigma", str(tmp_path / "MD/vasprun_prod.xml"), "--reference", str(tmp_path / "SPOSCAR"),
        "--force-constants", str(tmp_path / "force_constants.hdf5"), "--json",
    )
    assert code == 0, err
    assert json.loads(out)["n_frames"] == 6 and json.loads(out)["n_atoms"] == 80
    code, _, err = run_cli(capsys, "sigma", str(tmp_path / "MD/vasprun_prod.xml"))
    assert code == 1 and "needs --reference" in err


def test_phonons_compare_cli(capsys, fixtures, tmp_path):
    import ase.io
    from phonopy.file_IO import write_FORCE_CONSTANTS

    from hdpbench.io.force_constants import read_force_constants

    nacl = fixtures / "phonopy" / "NaCl"
    fc = read_force_constants(nacl / "FORCE_SETS", unitcell=ase.io.read(nacl / "POSCAR-unitcell", format="vasp"), supercell_matrix=[[2, 0, 0], [0, 2, 0], [0, 0, 2]])
    write_FORCE_CONSTANTS(1.1 * fc, filename=tmp_path / "FORCE_CONSTANTS")
    code, out, _ = run_cli(
        capsys, "phonons", "compare", "--unitcell", str(nacl / "POSCAR-unitcell"), "--supercell", "2", "2", "2",
        "--reference", str(nacl / "FORCE_SETS"), "--model", str(tmp_path / "FORCE_CONSTANTS"), "--json",
    )
    metrics = json.loads(out)
    assert code == 0
    for key in ("rmse_omega2_thz2", "rmse_vg_thz_ang", "mae_freq_thz", "min_freq_reference_thz", "min_freq_model_thz"):
        assert key in metrics
    assert metrics["rmse_omega2_thz2"] > 0.5 and metrics["stable_reference"]


def test_output_into_a_closed_pipe_ends_without_a_traceback():
    """`hdpbench models list | head -1`: the reader stops early; the command ends quietly."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "hdpbench", "models", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the table is written out
    stderr = process.stderr.read().decode()
    process.wait(timeout=60)
    assert "BrokenPipeError" not in stderr and "Traceback" not in stderr, stderr
