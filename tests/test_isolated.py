"""Models in their own Python environment (``kind: isolated``): the message format, registry
validation, and a real environment built here (venv + pip) whose worker must give the in-process
calculator's numbers, survive ``kill -9`` once, time out, refuse non-finite forces and exit with its
parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from hdpbench.core.errors import DataError
from hdpbench.models import isolated_worker as protocol
from hdpbench.models.base import UnknownElementError
from hdpbench.models.environments import EnvironmentBuildError, EnvironmentSpec, ensure_environment
from hdpbench.models.evaluate import load_model
from hdpbench.models.interface import Capability, Model
from hdpbench.models.isolated import WorkerError
from hdpbench.models.registry import registered_models

from .conftest import isolated_entry

TESTS = Path(__file__).parent
# The parent's own versions: the same EMT code on both sides of the pipe gives the same bits.
PINS = [f"ase=={metadata.version('ase')}", f"numpy=={metadata.version('numpy')}"]


def structures(n: int = 6, size: int = 2):
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (size, size, size) if k % 2 else bulk("Al", "fcc", a=4.05) * (size + 1, size, size)
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        out.append(atoms)
    return out


# ---- the message format ------------------------------------------------------------------------


def test_messages_round_trip_arrays_of_every_allowed_dtype():
    arrays = {"f": np.arange(12.0).reshape(4, 3), "i": np.arange(5, dtype=np.int64), "b": np.array([[True, False, True]]), "e": np.zeros((0, 3))}
    message = protocol.encode({"op": "evaluate", "stress": True}, arrays)
    header_length, body_length = protocol.PREFIX.unpack(message[: protocol.PREFIX.size])
    header, back = protocol.decode(message[16 : 16 + header_length], message[16 + header_length :])
    assert header == {"op": "evaluate", "stress": True} and len(message) == 16 + header_length + body_length
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype and np.array_equal(back[name], array)


def test_malformed_messages_are_refused_not_unpickled():
    with pytest.raises(protocol.ProtocolError, match="not JSON"):
        protocol.decode(b"\x80\x04pickle", b"")
    header = b'{"arrays": [["x", "object", [2]]]}'
    with pytest.raises(protocol.ProtocolError, match="bad dtype"):
        protocol.decode(header, b"")
    with pytest.raises(protocol.ProtocolError, match="runs past the end"):
        protocol.decode(b'{"arrays": [["x", "float64", [4]]]}', b"\0" * 8)
    with pytest.raises(protocol.ProtocolError, match="no array claims"):
        protocol.decode(b'{"arrays": []}', b"\0")


# ---- the registry --------------------------------------------------------------------------------


def test_isolated_entries_are_validated_strictly(model_registry):
    file = model_registry / "bad.yaml"
    file.write_text(isolated_entry("bad", dependencies=["ase>=3.22"]))
    with pytest.raises(DataError, match="'ase>=3.22' is not pinned") as error:
        registered_models()
    assert str(file) in str(error.value)
    file.write_text(isolated_entry("bad").replace("batch_size: 4", "batch_sise: 4"))
    with pytest.raises(DataError, match=r"unknown key\(s\) \['batch_sise'\]"):
        registered_models()
    file.write_text(isolated_entry("bad").replace("kind: isolated", "kind: isolated\nfactory: ase.calculators.emt:EMT"))
    with pytest.raises(DataError, match=r"\['factory'\] belong to kind 'ase'"):
        registered_models()


def test_two_entries_with_one_name_in_a_folder_are_an_error_naming_both(model_registry):
    (model_registry / "a.yaml").write_text(isolated_entry("twin"))
    (model_registry / "b.yaml").write_text(isolated_entry("twin"))
    with pytest.raises(DataError) as error:
        registered_models()
    assert str(model_registry / "a.yaml") in str(error.value) and str(model_registry / "b.yaml") in str(error.value)


def test_models_list_and_loading_install_nothing(model_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("HDPBENCH_ENVIRONMENTS", str(tmp_path / "environments"))
    (model_registry / "emt.yaml").write_text(isolated_entry("emt-isolated"))
    from hdpbench.models.registry import model_table

    row = {r["name"]: r for r in model_table()}["emt-isolated"]
    assert row["available"] is False and row["environment"].startswith("not built")
    model = load_model("emt-isolated", dtype="float64")
    assert isinstance(model, Model) and model.capabilities == frozenset({Capability.BATCHED})
    assert not (tmp_path / "environments").exists()


def test_the_shipped_sevennet_entries_name_their_checkpoints_and_fidelity():
    specs = registered_models()
    names = ["sevennet-0", "sevennet-0-22may2024", "sevennet-l3i5", "sevennet-mf-0"]
    digests = set()
    for name in names:
        spec = specs[name]
        assert spec.kind == "isolated" and spec.sha256 and spec.parameters and spec.training_data and spec.license
        assert spec.isolated["weights"]["package"] == "sevenn"
        digests.add(EnvironmentSpec.from_mapping(spec.isolated["environment"], name).digest)
    assert len(digests) == 1  # one environment for the four
    assert specs["sevennet-mf-0"].isolated["calculator_kwargs"] == {"modal": "PBE"}


# ---- a real environment ----------------------------------------------------------------------------


@pytest.mark.slow
def test_isolated_equals_in_process_bit_for_bit_and_records_the_environment(emt_registry):
    frames = structures()
    model = load_model("emt-isolated", dtype="float64")
    isolated = model.evaluator().evaluate(frames, stress=True)
    for atoms, forces, energy, stress in zip(frames, isolated.forces, isolated.energies, isolated.stresses, strict=True):
        atoms = atoms.copy()
        atoms.calc = EMT()
        assert np.array_equal(forces, atoms.get_forces())
        assert energy == atoms.get_potential_energy()
        assert np.allclose(stress, atoms.get_stress(voigt=False), rtol=0, atol=1e-14)
    one_at_a_time = model.evaluator(batch_size=1).evaluate(frames)
    assert all(np.array_equal(a, b) for a, b in zip(one_at_a_time.forces, isolated.forces, strict=True))
    execution = model.execution()
    assert execution["environment"]["packages"]["ase"] == metadata.version("ase")
    assert execution["environment"]["pinned"] == {"ase": metadata.version("ase"), "numpy": metadata.version("numpy")}
    model.close()


@pytest.mark.slow
def test_a_worker_killed_mid_batch_is_restarted_once_with_identical_results(emt_registry, capsys):
    frames = structures(n=2)
    model = load_model("emt-slow", dtype="float64")
    evaluator = model.evaluator(batch_size=2)
    result = {}
    thread = threading.Thread(target=lambda: result.update(evaluation=evaluator.evaluate(frames)))
    model.worker.start()
    first_pid = model.worker.pid
    thread.start()
    time.sleep(1.0)  # inside the first structure's 1.5 s
    os.kill(first_pid, signal.SIGKILL)
    thread.join(timeout=60)
    assert model.worker.starts == 2 and model.worker.pid != first_pid
    assert "died" in capsys.readouterr().err
    for atoms, forces in zip(frames, result["evaluation"].forces, strict=True):
        atoms = atoms.copy()
        atoms.calc = EMT()
        assert np.array_equal(forces, atoms.get_forces())
    model.close()


@pytest.mark.slow
def test_a_hung_worker_hits_the_timeout_and_bad_replies_are_refused(emt_registry, monkeypatch):
    monkeypatch.setenv("HDPBENCH_WORKER_TIMEOUT", "0.5")
    slow = load_model("emt-slow", dtype="float64")
    with pytest.raises(WorkerError, match=r"no answer within 0.5 s"):
        slow.evaluator().evaluate(structures(n=1))
    monkeypatch.delenv("HDPBENCH_WORKER_TIMEOUT")
    broken = load_model("emt-nan", dtype="float64")
    with pytest.raises(Exception, match="non-finite"):
        broken.evaluator().evaluate(structures(n=2))
    broken.close()
    with pytest.raises(UnknownElementError, match=r"\['Cs'\]"):
        load_model("emt-isolated", dtype="float64").evaluator().evaluate([bulk("Cs", "bcc", a=6.0)])


@pytest.mark.slow
def test_a_worker_whose_parent_is_killed_exits(emt_registry, tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(
        "from hdpbench.models.evaluate import load_model\n"
        "import sys, time\n"
        "model = load_model('emt-isolated', dtype='float64')\n"
        "model.worker.start()\n"
        "print(model.worker.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    worker_pid = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            break
        try:  # reap it if it became our child's orphan adopted by us (it is not; init reaps it)
            os.waitpid(worker_pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    else:
        pytest.fail(f"worker {worker_pid} still alive 15 s after its parent was killed")


@pytest.mark.slow
def test_an_environment_that_cannot_be_built_names_the_package_and_the_log(tmp_path, monkeypatch):
    monkeypatch.setenv("HDPBENCH_ENVIRONMENTS", str(tmp_path / "environments"))
    spec = EnvironmentSpec.from_mapping({"dependencies": ["hdpbench-no-such-package-xyz==1.0"]}, "test")
    with pytest.raises(EnvironmentBuildError) as error:
        ensure_environment("broken", spec, quiet=True)
    message = str(error.value)
    assert "hdpbench-no-such-package-xyz" in message and "full log:" in message
    assert not (tmp_path / "environments" / spec.digest).exists()  # nothing half-built left behind


@pytest.mark.slow
def test_models_env_builds_ahead_of_time_and_says_where(emt_registry, capsys):
    import json

    from hdpbench import cli

    assert cli.main(["models", "env", "emt-isolated", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert Path(record["interpreter"]).exists() and record["packages"]["ase"] == metadata.version("ase")
    assert cli.main(["models", "list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["emt-isolated"]["environment"] == "built" and rows["emt-isolated"]["available"] is True
    assert cli.main(["models", "env", "chgnet-0.3.0"]) == 2  # not an isolated model: a usage error, one line
    assert "kind 'ase'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_wrong_checkpoint_hash_is_refused_in_the_worker_naming_file_and_entry(emt_registry):
    """The weights file is resolved inside the model's environment and checked before anything loads it."""
    file = emt_registry / "emt-weights.yaml"
    file.write_text(
        isolated_entry("emt-weights", extra="sha256: \"" + "0" * 64 + "\"\n").replace(
            "  batch_size: 4\n", "  batch_size: 4\n  weights: {package: ase, file: calculators/emt.py}\n"
        )
    )
    with pytest.raises(WorkerError) as error:
        load_model("emt-weights", dtype="float64").evaluator().evaluate(structures(n=1))
    message = str(error.value)
    assert "does not match the registered" in message and "emt.py" in message and str(file) in message
