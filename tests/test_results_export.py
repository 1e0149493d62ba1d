"""``hdpbench results export``: one tidy row per done or failed compound, each with its settings key."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from hdpbench import cli
from hdpbench.core.errors import UsageError
from hdpbench.pipeline.export import export_rows, flatten
from hdpbench.pipeline.store import StageManifest, StageResults

IDENTITY = ["dataset", "model", "stage", "settings_key", "compound", "status", "error_type", "error", "error_file", "input_digest"]


def stage(root, displacement: float) -> StageResults:
    manifest = StageManifest("demo", "tiny-mace", "phonons", settings={"displacement": displacement}, model_sha256="ab12")
    return StageResults(manifest, root=root)


def result(compound: str, rmse: float) -> dict:
    return {
        "compound": compound,
        "rmse": rmse,
        "stable": rmse < 1,
        "halide": "Br",
        "thermal": {"entropy": [1.5, 2.5], "units": "J/K/mol"},  # dict of a short list and a scalar
        "per_frame": list(range(20)),  # long list: left out
        "stopped_runs": {},  # empty: no column
    }


@pytest.fixture
def store(tmp_path):
    """Two settings of one stage: A and B done with 0.01 Å, A done and C failed with 0.02 Å."""
    small, large = stage(tmp_path, 0.01), stage(tmp_path, 0.02)
    small.save("A", json_data=result("A", 0.5), arrays={"x": np.zeros(3)})
    small.save("B", json_data=result("B", 1.5))
    large.save("A", json_data=result("A", 0.7))
    large.record_failure("C", ValueError("bad OUTCAR\nsecond line"))
    large.save("D", json_data=result("D", 0.1))
    large._marker("D").write_text(json.dumps({"key": small.key, "files": [".json"]}))  # marker of other settings: not done
    return tmp_path, small, large


def test_every_result_json_carries_its_settings_key(store):
    _, small, large = store
    assert small.key != large.key
    for results, compound in ((small, "A"), (small, "B"), (large, "A")):
        on_disk = json.loads(results.path(compound, ".json").read_text())
        assert on_disk["settings_key"] == results.key == results.directory.name
        assert on_disk["rmse"] == results.load_json(compound)["rmse"]


def test_rows_columns_and_flattening(store):
    root, small, large = store
    rows = export_rows("demo", "tiny-mace", "phonons", results_root=root)
    assert [(r["settings_key"], r["compound"], r["status"]) for r in sorted(rows, key=lambda r: (r["settings_key"], r["compound"]))] == sorted(
        [(small.key, "A", "done"), (small.key, "B", "done"), (large.key, "A", "done"), (large.key, "C", "failed")]
    )  # D's marker holds the other key: not a row
    assert list(rows[0]) == IDENTITY + [  # the JSON's fields in its (sorted) order; settings_key and compound once
        "halide", "rmse", "stable", "thermal.entropy[0]", "thermal.entropy[1]", "thermal.units",
    ]
    assert all(list(r) == list(rows[0]) for r in rows)  # a rectangle
    by = {(r["settings_key"], r["compound"]): r for r in rows}
    assert by[small.key, "A"]["rmse"] == 0.5 and by[large.key, "A"]["rmse"] == 0.7 and by[small.key, "B"]["stable"] is False
    assert by[small.key, "A"]["thermal.entropy[1]"] == 2.5 and by[small.key, "A"]["thermal.units"] == "J/K/mol"
    assert {(r["dataset"], r["model"], r["stage"]) for r in rows} == {("demo", "tiny-mace", "phonons")}
    failed = by[large.key, "C"]
    assert failed["error_type"] == "ValueError" and failed["error"] == "bad OUTCAR" and failed["rmse"] is None
    assert by[small.key, "A"]["error"] is None and by[small.key, "A"]["status"] == "done"
    # settings_key is each folder's key
    for r in rows:
        assert (root / "demo" / "tiny-mace" / "phonons" / r["settings_key"]).is_dir()
        assert r["settings_key"] in (small.key, large.key)


def test_flatten_rule():
    flat = flatten({"a": 1, "b": {"c": {"d": None}}, "e": [1, 2], "f": [[1]], "g": list(range(9)), "h": [], "i": "x"})
    assert flat == {"a": 1, "b.c.d": None, "e[0]": 1, "e[1]": 2, "i": "x"}


def test_key_selection_by_prefix(store):
    root, small, large = store
    rows = export_rows("demo", "tiny-mace", "phonons", results_root=root, key=large.key[:6])
    assert sorted((r["compound"], r["status"]) for r in rows) == [("A", "done"), ("C", "failed")]
    assert {r["settings_key"] for r in rows} == {large.key}
    with pytest.raises(UsageError) as caught:
        export_rows("demo", "tiny-mace", "phonons", results_root=root, key="nonexistent")
    message = str(caught.value)
    assert small.key in message and large.key in message and "displacement=0.01" in message and "displacement=0.02" in message


def test_cli_writes_the_rows_as_csv(store, capsys):
    root, small, large = store
    target = root / "out" / "phonons.csv"
    assert cli.main(["results", "export", "--dataset", "demo", "--model", "tiny-mace", "--stage", "phonons",
                     "--csv", str(target), "--results", str(root)]) == 0
    out = capsys.readouterr().out
    assert "4 row(s) (3 done, 1 failed)" in out and "2 settings key(s)" in out and str(target) in out
    table = pd.read_csv(target, dtype={"settings_key": str})
    rows = export_rows("demo", "tiny-mace", "phonons", results_root=root)
    assert list(table.columns) == list(rows[0])
    assert len(table) == len(rows)
    for read, row in zip(table.to_dict("records"), rows, strict=True):
        for column, value in row.items():
            got = read[column]
            if value is None:
                assert isinstance(got, float) and math.isnan(got), column
            else:
                assert got == value, column
    assert not list(target.parent.glob(".*.tmp"))

    assert cli.main(["results", "export", "--dataset", "demo", "--model", "tiny-mace", "--stage", "phonons",
                     "--json", "--key", small.key, "--results", str(root)]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert [(r["compound"], r["settings_key"]) for r in printed] == [("A", small.key), ("B", small.key)]
    assert "2 row(s)" in captured.err


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--model", "tiny-mce", "--stage", "phonons"], ["'tiny-mce'", "did you mean 'tiny-mace'", "models there: tiny-mace"]),
        (["--model", "tiny-mace", "--stage", "phonon"], ["'phonon'", "did you mean 'phonons'", "stages there: phonons"]),
        (["--model", "tiny-mace", "--stage", "phonons", "--key", "zzz"], ["no settings key 'zzz'", "displacement=0.02"]),
    ],
)
def test_cli_unknown_names_exit_2_naming_what_exists(store, capsys, options, named):
    root, _, _ = store
    code = cli.main(["results", "export", "--dataset", "demo", *options, "--csv", str(root / "x.csv"), "--results", str(root)])
    err = capsys.readouterr().err
    assert code == 2
    for text in named:
        assert text in err
    assert not (root / "x.csv").exists()


def test_cli_missing_dataset_names_the_folder_looked_in(store, capsys):
    root, _, _ = store
    assert cli.main(["results", "export", "--dataset", "dmo", "--model", "m", "--stage", "s", "--json", "--results", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"in {root}" in err and "datasets there: demo" in err and "did you mean 'demo'" in err
