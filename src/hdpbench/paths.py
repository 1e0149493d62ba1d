"""Every filesystem location the project uses, in one place.

Each location has a default inside the project checkout and an environment variable that overrides
it, so the same code serves a laptop checkout, CI (which points ``HDPBENCH_FIXTURES`` at the shared
reference files) and a cluster with the authors' archives on a scratch filesystem.

Locations are resolved on every call (not frozen at import), so tests and notebooks can redirect
them by setting the environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _looks_like_checkout(path: Path) -> bool:
    return (path / "pyproject.toml").is_file() and (path / "src" / "hdpbench").is_dir()


def project_root() -> Path:
    """The project checkout (``HDPBENCH_ROOT``, else the checkout this package lives in, else cwd)."""
    if env := os.environ.get("HDPBENCH_ROOT"):
        return Path(env).expanduser().resolve()
    source_checkout = _PACKAGE_DIR.parents[1]
    if _looks_like_checkout(source_checkout):
        return source_checkout
    return Path.cwd().resolve()


def _from_env(variable: str, default: Path) -> Path:
    value = os.environ.get(variable)
    return Path(value).expanduser().resolve() if value else default


def data_dir() -> Path:
    """Local mirror of datasets, looked in before any download (``HDPBENCH_DATA_DIR``)."""
    return _from_env("HDPBENCH_DATA_DIR", project_root() / "data")


def dataset_registry_dir() -> Path:
    """One YAML per named dataset (``HDPBENCH_DATASETS``)."""
    return _from_env("HDPBENCH_DATASETS", project_root() / "datasets")


def model_registry_dir() -> Path:
    """One YAML per model (``HDPBENCH_MODELS``)."""
    return _from_env("HDPBENCH_MODELS", project_root() / "models")


def results_dir() -> Path:
    """Root of the results store ``results/<dataset>/<model>/<stage>/<key>/`` (``HDPBENCH_RESULTS``)."""
    return _from_env("HDPBENCH_RESULTS", project_root() / "results")


def cache_dir() -> Path:
    """Scratch space that may be deleted at any time (``HDPBENCH_CACHE``)."""
    return _from_env("HDPBENCH_CACHE", project_root() / ".cache")


def fixtures_dir() -> Path | None:
    """Real DFT/AIMD reference files for tests (``HDPBENCH_FIXTURES``); None when not configured."""
    value = os.environ.get("HDPBENCH_FIXTURES")
    if not value:
        return None
    return Path(value).expanduser().resolve()


def demo_work_dir() -> Path:
    """Resumable scratch of the demo-data generator (``HDPBENCH_DEMO_WORK``); not committed."""
    return _from_env("HDPBENCH_DEMO_WORK", project_root() / "data" / "demo-work")


def book_dir() -> Path:
    return project_root() / "book"


def notebooks_dir() -> Path:
    return project_root() / "notebooks"
