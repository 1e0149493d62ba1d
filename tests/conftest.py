from __future__ import annotations

import functools
from pathlib import Path

import pytest

from hdpbench.core import paths

from .builders import BuiltCompound, compound_members, write_folder, write_summary_db, write_tarball


@pytest.fixture(autouse=True)
def _isolated_locations(tmp_path_factory, monkeypatch):
    """Tests never read or write the developer's data/, results/ or cache."""
    base = tmp_path_factory.mktemp("hdpbench-home")
    monkeypatch.setenv("HDPBENCH_RESULTS", str(base / "results"))
    monkeypatch.setenv("HDPBENCH_CACHE", str(base / "cache"))
    monkeypatch.setenv("HDPBENCH_DATA_DIR", str(base / "data"))
    monkeypatch.setenv("HDPBENCH_DEMO_WORK", str(base / "demo-work"))


@pytest.fixture
def fixtures() -> Path:
    """The shared real DFT/AIMD files (HDPBENCH_FIXTURES); tests using it skip where it is unset."""
    root = paths.fixtures_dir()
    if root is None or not root.is_dir():
        pytest.skip("real reference files not configured: set HDPBENCH_FIXTURES (CI points it at ../shared/fixtures)")
    return root


@functools.cache
def _members(formula: str, n_files: int, frames_per_file: int):
    return compound_members(formula, n_files=n_files, frames_per_file=frames_per_file)


@pytest.fixture
def members_of():
    """members_of(formula, n_files=2, frames_per_file=6) -> (dict of member bytes, BuiltCompound); cached."""

    def get(formula: str = "Cs2AgBiBr6", n_files: int = 2, frames_per_file: int = 6):
        members, built = _members(formula, n_files, frames_per_file)
        return dict(members), built

    return get


@pytest.fixture
def authors_dataset(tmp_path, members_of):
    """A dataset folder in the authors' layout: a tarball, an extracted folder and a summary db."""
    root = tmp_path / "hdp"
    members, bromide = members_of("Cs2AgBiBr6")
    bromide.path = write_tarball(root / "bromides" / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6")
    members, chloride = members_of("Cs2NaInCl6")
    chloride.path = write_folder(root / "chlorides" / "dpv_Cs2NaInCl6", members)
    write_summary_db(
        root / "double_halide_pv.db",
        {
            "Cs2AgBiBr6": {"sigma_300K_single": 0.41, "formation_energy": -1.2, "G_min_ph_freq": -0.3},
            "Cs2NaInCl6": {"sigma_300K_single": 2.5, "formation_energy": -1.9},
        },
    )
    return root, {"Cs2AgBiBr6": bromide, "Cs2NaInCl6": chloride}


__all__ = ["BuiltCompound"]


# ---- models in their own environment (tests/test_isolated.py, tests/test_model_interface.py) -----------


def isolated_entry(name: str, calculator: str = "ase.calculators.emt:EMT", kwargs: str = "{}", dependencies=None, extra: str = "") -> str:
    """A ``kind: isolated`` registry entry around an ASE calculator; by default pinned to this
    process's ase and numpy, so the same code runs on both sides of the pipe."""
    import sys
    import textwrap
    from importlib import metadata

    dependencies = dependencies or [f"ase=={metadata.version('ase')}", f"numpy=={metadata.version('numpy')}"]
    text = textwrap.dedent(
        f"""\
        name: {name}
        kind: isolated
        isolated:
          environment: {{python_version: "{sys.version_info.major}.{sys.version_info.minor}", dependencies: [{", ".join(dependencies)}]}}
          calculator: {calculator}
          calculator_kwargs: {kwargs}
          batch_size: 4
        elements: [Cu, Al, Ni, Pd, Ag, Pt, Au]
        dtype: float64
        dtypes: [float64]
        license: LGPL-2.1 (ASE)
        """
    )
    return text + extra  # extra: top-level lines, each ending in a newline


@pytest.fixture
def model_registry(tmp_path, monkeypatch):
    """An empty private model registry folder (HDPBENCH_MODELS) in front of the project's."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("HDPBENCH_MODELS", str(folder))
    return folder


@pytest.fixture(scope="session")
def environments(tmp_path_factory):
    """One environment folder for the session: the small EMT environment is built once."""
    return tmp_path_factory.mktemp("environments")


@pytest.fixture
def emt_registry(model_registry, environments, monkeypatch):
    """Registered EMT models in a built environment (venv + pip from PyPI: the test's own build),
    with the tests' calculators (tests/isolated_calculators.py) copied into it."""
    import shutil
    import subprocess
    import sys

    from hdpbench.models.environments import EnvironmentSpec, ensure_environment

    monkeypatch.setenv("HDPBENCH_ENVIRONMENTS", str(environments))
    (model_registry / "emt.yaml").write_text(isolated_entry("emt-isolated"))
    (model_registry / "emt-slow.yaml").write_text(isolated_entry("emt-slow", "isolated_calculators:SlowEMT", "{delay: 1.5}"))
    (model_registry / "emt-nan.yaml").write_text(isolated_entry("emt-nan", "isolated_calculators:NaNForces"))
    from importlib import metadata

    pins = [f"ase=={metadata.version('ase')}", f"numpy=={metadata.version('numpy')}"]
    spec = EnvironmentSpec.from_mapping({"dependencies": pins, "python_version": f"{sys.version_info.major}.{sys.version_info.minor}"}, "test")
    environment = ensure_environment("emt-isolated", spec, quiet=True)
    site = subprocess.run(
        [str(environment.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    shutil.copy(Path(__file__).parent / "isolated_calculators.py", site)
    return model_registry
