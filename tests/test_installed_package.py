"""The package installed from a wheel, outside the repository, still knows its registries.

The wheel is built from a copy of what an sdist holds (pyproject.toml, setup.py, src/, the
registries' YAMLs), installed with ``pip install --target``, and driven from an empty working
directory with every ``HDPBENCH_*`` variable removed, so nothing can come from this checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def registry_names(kind: str) -> set[str]:
    """The names registered in the checkout's ``models/`` or ``datasets/``, one per YAML file."""
    files = sorted((REPO / kind).glob("*.yaml"))
    names = {yaml.safe_load(file.read_text())["name"] for file in files}
    assert names == {file.stem for file in files}, f"{kind}/*.yaml: file names differ from entry names"
    return names


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A folder holding the installed package (``pip install --target``), built from a fresh wheel."""
    base = tmp_path_factory.mktemp("installed")
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src" / "hdpbench", source / "src" / "hdpbench", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for kind in ("models", "datasets"):
        (source / kind).mkdir()
        for file in (REPO / kind).glob("*.yaml"):
            shutil.copy(file, source / kind)
    wheels = base / "wheel"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(source)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("hdpbench-*.whl")
    site = base / "site"
    install = subprocess.run([*pip, "install", "-q", "--no-deps", "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=120)
    assert install.returncode == 0, install.stdout + install.stderr
    for kind in ("models", "datasets"):
        shipped = {file.stem for file in (site / "hdpbench" / "registries" / kind).glob("*.yaml")}
        assert shipped == registry_names(kind), f"the wheel's {kind} registry differs from the checkout's"
    return site


def run_installed(site: Path, cwd: Path, script: str, env: dict[str, str] | None = None) -> dict:
    """Run ``script`` with the installed package first on sys.path, from ``cwd``; returns its JSON
    (the last line of stdout). The script sees ``site`` and must print one JSON object last."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HDPBENCH_") and k != "PYTHONPATH"}
    clean |= env or {}
    prelude = textwrap.dedent(
        f"""
        import io, json, sys
        from contextlib import redirect_stdout
        sys.path.insert(0, {str(site)!r})
        import hdpbench
        from hdpbench.cli import main

        def cli(*argv):
            out = io.StringIO()
            with redirect_stdout(out):
                code = main(list(argv))
            assert code == 0, (argv, code, out.getvalue())
            return json.loads(out.getvalue())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script)], cwd=cwd, env=clean, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_installed_package_lists_the_shipped_registries_from_an_empty_folder(installed, tmp_path):
    cwd = tmp_path / "empty"
    cwd.mkdir()
    result = run_installed(
        installed,
        cwd,
        """
        from hdpbench.core import paths
        print(json.dumps({
            "module": hdpbench.__file__,
            "models": cli("models", "list", "--json"),
            "datasets": cli("data", "list", "--json"),
            "model_registry_dirs": [str(p) for p in paths.model_registry_dirs()],
            "writable": str(paths.model_registry_dir()),
        }))
        """,
    )
    assert Path(result["module"]).resolve() == (installed / "hdpbench" / "__init__.py").resolve()
    assert not Path(result["module"]).resolve().is_relative_to(REPO)
    assert result["model_registry_dirs"] == [str((installed / "hdpbench" / "registries" / "models").resolve())]
    assert Path(result["writable"]) == cwd.resolve() / "models"  # new entries: never into the package

    models = {row["name"]: row for row in result["models"]}
    assert set(models) == registry_names("models")
    assert {"medium-omat-0", "chgnet-0.3.0", "demo-small-data"} <= set(models)
    # the demo checkpoints live in a checkout (models/demo/), not in the wheel: listed, not available
    assert models["demo-small-data"]["available"] is False
    assert Path(models["demo-small-data"]["checkpoint"]) == cwd.resolve() / "models" / "demo" / "demo-small-data.model"

    datasets = {row["name"]: row for row in result["datasets"]}
    assert set(datasets) == registry_names("datasets") and {"demo", "hdp", "external"} <= set(datasets)
    assert datasets["demo"]["available"] is False and Path(datasets["demo"]["local_dir"]) == cwd.resolve() / "data" / "demo"
    assert list(cwd.iterdir()) == []  # listing wrote nothing


def test_user_folders_override_the_shipped_entries_and_take_new_registrations(installed, tmp_path):
    cwd = tmp_path / "work"
    cwd.mkdir()
    mine, other, my_datasets = tmp_path / "mine", tmp_path / "other", tmp_path / "my-datasets"
    for folder in (mine, other, my_datasets):
        folder.mkdir()
    omat = yaml.safe_load((REPO / "models" / "medium-omat-0.yaml").read_text())
    (mine / "medium-omat-0.yaml").write_text(yaml.safe_dump(omat | {"label": "my omat"}))
    entry = {"name": "my-model", "kind": "mace", "path": str(tmp_path / "absent.model"), "license": "MIT"}
    (mine / "my-model.yaml").write_text(yaml.safe_dump(entry | {"label": "mine"}))
    (other / "my-model.yaml").write_text(yaml.safe_dump(entry | {"label": "shadowed"}))
    hdp = yaml.safe_load((REPO / "datasets" / "hdp.yaml").read_text())
    (my_datasets / "hdp.yaml").write_text(yaml.safe_dump(hdp | {"title": "my copy of hdp"}))
    result = run_installed(
        installed,
        cwd,
        """
        from pathlib import Path

        from hdpbench.core import paths
        from hdpbench.models.registry import get_model_spec, registry_file, writable_registry_file
        from hdpbench.training.finetune import FinetuneRun, FinetuneSettings, register

        models = {row["name"]: row for row in cli("models", "list", "--json")}
        datasets = {row["name"]: row for row in cli("data", "list", "--json")}
        checkpoint = Path("weights.model")
        checkpoint.write_bytes(b"not a real checkpoint")
        run = FinetuneRun(checkpoint=checkpoint.resolve(), log=[], seconds=0.0, settings=FinetuneSettings(epochs=1))
        written = register("my-pft", "demo-small-data", run, dataset="demo", train_compounds=["K2NaAlF6"], cotrain_source="none", cotrain_count=0)
        after = {row["name"]: row for row in cli("models", "list", "--json")}
        print(json.dumps({
            "models": models, "datasets": datasets, "written": str(written), "after": after,
            "omat_file": str(registry_file(get_model_spec("medium-omat-0"))),
            "chgnet_file": str(registry_file(get_model_spec("chgnet-0.3.0"))),
            "chgnet_update": str(writable_registry_file(get_model_spec("chgnet-0.3.0"))),
            "writable": str(paths.model_registry_dir()),
        }))
        """,
        env={"HDPBENCH_MODELS": os.pathsep.join([str(mine), str(other)]), "HDPBENCH_DATASETS": str(my_datasets)},
    )
    shipped = (installed / "hdpbench" / "registries").resolve()
    models = result["models"]
    assert set(models) == registry_names("models") | {"my-model"}
    assert models["medium-omat-0"]["label"] == "my omat"  # the user's entry overrides the shipped one
    assert models["my-model"]["label"] == "mine" and models["my-model"]["available"] is False  # first folder wins
    assert models["chgnet-0.3.0"]["label"] == "CHGNet 0.3.0"
    assert result["datasets"]["hdp"]["title"] == "my copy of hdp" and {"demo", "external"} <= set(result["datasets"])
    assert Path(result["omat_file"]) == mine.resolve() / "medium-omat-0.yaml"
    assert Path(result["chgnet_file"]).is_relative_to(shipped)
    assert Path(result["chgnet_update"]) == mine.resolve() / "chgnet-0.3.0.yaml"  # shipped entries are not rewritten
    # a registration goes to the first configured folder, never into the installed package
    assert Path(result["writable"]) == mine.resolve()
    assert Path(result["written"]) == mine.resolve() / "my-pft.yaml" and (mine / "my-pft.yaml").is_file()
    assert result["after"]["my-pft"]["finetune"]["base"] == "demo-small-data" and result["after"]["my-pft"]["available"]
    assert not any(installed.rglob("my-pft*"))
