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
