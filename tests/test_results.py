"""The results store: atomic writes, skip-if-done by manifest key, resume after interruption."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from hdpbench.core.storage import atomic_path, atomic_write_json
from hdpbench.pipeline.store import StageManifest, StageResults


def stage(tmp_path, **settings):
    manifest = StageManifest("demo", "tiny-mace", "phonons", settings=settings or {"displacement": 0.01}, model_sha256="ab12")
    return StageResults(manifest, root=tmp_path)


def test_layout_and_manifest(tmp_path):
    results = stage(tmp_path)
    results.save("Cs2AgBiBr6", json_data={"rmse": 0.5}, arrays={"omega2": np.arange(6.0)})
    directory = tmp_path / "demo" / "tiny-mace" / "phonons" / results.key
    assert sorted(p.name for p in directory.iterdir()) == [
        "Cs2AgBiBr6.done.json",
        "Cs2AgBiBr6.json",
        "Cs2AgBiBr6.npz",
        "manifest.json",
    ]
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["model_sha256"] == "ab12" and manifest["settings"] == {"displacement": 0.01}
    assert manifest["key"] == results.key and manifest["hdpbench_version"]
    data = {"rmse": 0.5}
    assert results.load_json("Cs2AgBiBr6") == {"rmse": 0.5, "settings_key": results.key}  # every result names its settings
    results.save("Cs2AgBiBr6", json_data=data)
    assert data == {"rmse": 0.5}  # the caller's dict is not changed
    np.testing.assert_array_equal(results.load_arrays("Cs2AgBiBr6")["omega2"], np.arange(6.0))


def test_rerun_skips_done_and_changed_settings_recompute(tmp_path):
    calls = []

    def compute(name):
        calls.append(name)
        return {"json_data": {"name": name}}

    assert stage(tmp_path).run(["A", "B"], compute, progress=False) == {"A": "done", "B": "done"}
    assert stage(tmp_path).run(["A", "B", "C"], compute, progress=False) == {"A": "skipped", "B": "skipped", "C": "done"}
    assert calls == ["A", "B", "C"]
    changed = stage(tmp_path, displacement=0.02)
    assert changed.key != stage(tmp_path).key
    assert changed.pending(["A", "B", "C"]) == ["A", "B", "C"]
    changed.run(["A"], compute, progress=False)
    # the other settings' result sits beside the first one, which stays done and is not recomputed
    assert calls[-1] == "A" and changed.is_done("A") and stage(tmp_path).is_done("A")
    assert changed.directory != stage(tmp_path).directory and changed.directory.parent == stage(tmp_path).directory.parent
    assert stage(tmp_path).run(["A"], compute, progress=False) == {"A": "skipped"}


def test_key_ignores_settings_order_but_not_model_checkpoint(tmp_path):
    a = StageManifest("demo", "m", "s", settings={"x": 1, "y": 2}, model_sha256="1")
    b = StageManifest("demo", "m", "s", settings={"y": 2, "x": 1}, model_sha256="1")
    c = StageManifest("demo", "m", "s", settings={"x": 1, "y": 2}, model_sha256="2")
    assert a.key == b.key != c.key


def test_interrupted_compound_is_recomputed(tmp_path):
    results = stage(tmp_path)

    def crash(name):
        def writer(path):
            path.write_text("half")
            raise KeyboardInterrupt  # killed while writing the second file

        return {"json_data": {"ok": True}, "files": {".phonopy.yaml": writer}}

    with pytest.raises(KeyboardInterrupt):
        results.run(["A"], crash, progress=False)
    assert not results.is_done("A")
    assert not results.path("A", ".phonopy.yaml").exists()  # no half-written file under the final name
    assert not list(results.directory.glob(".*.tmp"))  # and no temporary left behind
    results.run(["A"], lambda name: {"json_data": {"ok": 2}}, progress=False)
    assert results.load_json("A") == {"ok": 2, "settings_key": results.key}


def test_missing_data_file_means_not_done(tmp_path):
    results = stage(tmp_path)
    results.save("A", arrays={"x": np.zeros(2)})
    results.path("A", ".npz").unlink()
    assert not results.is_done("A")
    with pytest.raises(FileNotFoundError, match="no result for A"):
        results.load_arrays("A")


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError
    assert json.loads(target.read_text()) == {"a": 1}


@pytest.mark.parametrize("bad", ["", "..", "a/b"])
def test_unsafe_names_are_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="invalid"):
        stage(tmp_path).path(bad, ".json")


def test_orphaned_temporaries_of_dead_writers_are_removed(tmp_path):
    import subprocess
    import sys

    from hdpbench.core.storage import remove_orphaned_temporaries

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    from hdpbench.core.storage import _HOST

    orphan = tmp_path / f".X.npz.{_HOST}.{dead}.abc123.tmp"
    live = tmp_path / f".Y.npz.{_HOST}.{os.getpid()}.def456.tmp"
    unrelated = tmp_path / ".notes.tmp"
    for path in (orphan, live, unrelated):
        path.write_text("partial")
    assert remove_orphaned_temporaries(tmp_path) == [orphan]
    assert not orphan.exists() and live.exists() and unrelated.exists()
    with atomic_path(tmp_path / "Z.json") as tmp:  # the writer's pid is in the temporary name
        assert f".{_HOST}.{os.getpid()}." in tmp.name
