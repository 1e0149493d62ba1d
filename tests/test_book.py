"""Notebooks execute through papermill with their parameters (the book's executor)."""

from __future__ import annotations

import json

import pytest

from hdpbench.book import NOTEBOOKS, execute_notebook


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes_with_parameters(tmp_path, name, authors_dataset):
    root, _ = authors_dataset
    output = execute_notebook(name, {"dataset": str(root), "models": []}, output_dir=tmp_path, timeout=300)
    notebook = json.loads(output.read_text())
    injected = [c for c in notebook["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and str(root) in "".join(injected[0]["source"])
    errors = [o for c in notebook["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    if name == "data_overview":
        assert "Cs2AgBiBr6" in output.read_text()


def test_failing_cell_fails_loudly(tmp_path, monkeypatch):
    import papermill

    from hdpbench import paths

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "broken.py").write_text('# %% tags=["parameters"]\nx = 1\n\n# %%\nraise RuntimeError("boom")\n')
    monkeypatch.setattr(paths, "notebooks_dir", lambda: notebooks)
    with pytest.raises(papermill.PapermillExecutionError, match="boom"):
        execute_notebook("broken", {}, output_dir=tmp_path, timeout=60)
