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
# The registries a built wheel ships (copied from the checkout's models/ and datasets/ by setup.py);
# absent in a checkout, where the checkout's own folders are read.
_SHIPPED_REGISTRIES = _PACKAGE_DIR.parent / "registries"


def _looks_like_checkout(path: Path) -> bool:
    return (path / "pyproject.toml").is_file() and (path / "src" / "hdpbench").is_dir()


def project_root() -> Path:
    """The project checkout (``HDPBENCH_ROOT``, else the checkout this package lives in, else cwd)."""
    if env := os.environ.get("HDPBENCH_ROOT"):
        return Path(env).expanduser().resolve()
    source_checkout = _PACKAGE_DIR.parents[2]  # src/hdpbench/core → the checkout
    if _looks_like_checkout(source_checkout):
        return source_checkout
    return Path.cwd().resolve()


def _from_env(variable: str, default: Path) -> Path:
    value = os.environ.get(variable)
    return Path(value).expanduser().resolve() if value else default


def data_dir() -> Path:
    """Local mirror of datasets, looked in before any download (``HDPBENCH_DATA_DIR``)."""
    return _from_env("HDPBENCH_DATA_DIR", project_root() / "data")


# -- registries: one YAML per dataset or model, searched in several folders -------------------------
#
# Search order, first wins for a name: the folders in HDPBENCH_MODELS / HDPBENCH_DATASETS (one or
# more, separated by os.pathsep), then the project's models/ or datasets/ (the checkout's, or
# HDPBENCH_ROOT's, or the working directory's for an installed package), then the registries shipped
# inside the installed package. New entries are written to the first configured folder, else the
# project's folder, never into the installed package.


def _env_folders(variable: str) -> list[Path]:
    value = os.environ.get(variable, "")
    return [Path(part).expanduser().resolve() for part in value.split(os.pathsep) if part.strip()]


def _is_shipped(path: Path) -> bool:
    return Path(path).resolve().is_relative_to(_SHIPPED_REGISTRIES)


def _writable_registry_dir(variable: str, kind: str) -> Path:
    for folder in _env_folders(variable):
        if not _is_shipped(folder):
            return folder
    return project_root() / kind


def _registry_dirs(variable: str, kind: str) -> list[Path]:
    folders = [*_env_folders(variable), project_root() / kind, _SHIPPED_REGISTRIES / kind]
    unique: list[Path] = []
    for folder in map(Path.resolve, folders):
        if folder.is_dir() and folder not in unique:
            unique.append(folder)
    return unique


def is_shipped_registry_file(path: Path) -> bool:
    """Whether ``path`` lies in the registries shipped inside the installed package (read-only)."""
    return _is_shipped(path)


def dataset_registry_dirs() -> list[Path]:
    """Every existing dataset registry folder, highest priority first (``HDPBENCH_DATASETS``, then the
    project's ``datasets/``, then the registry shipped with the package)."""
    return _registry_dirs("HDPBENCH_DATASETS", "datasets")


def dataset_registry_dir() -> Path:
    """The folder new dataset entries are written to: the first ``HDPBENCH_DATASETS`` folder, else the
    project's ``datasets/`` (never the installed package)."""
    return _writable_registry_dir("HDPBENCH_DATASETS", "datasets")


def model_registry_dirs() -> list[Path]:
    """Every existing model registry folder, highest priority first (``HDPBENCH_MODELS``, then the
    project's ``models/``, then the registry shipped with the package)."""
    return _registry_dirs("HDPBENCH_MODELS", "models")


def model_registry_dir() -> Path:
    """The folder new model entries (and their ``demo/`` and ``finetuned/`` checkpoints) are written
    to: the first ``HDPBENCH_MODELS`` folder, else the project's ``models/`` (never the installed
    package)."""
    return _writable_registry_dir("HDPBENCH_MODELS", "models")


def results_dir() -> Path:
    """Root of the results store ``results/<dataset>/<model>/<stage>/<key>/`` (``HDPBENCH_RESULTS``)."""
    return _from_env("HDPBENCH_RESULTS", project_root() / "results")


def smoke_results_dir() -> Path:
    """Results of ``hdpbench run --smoke`` (tiny settings, meaningless numbers), kept apart from the
    real store (``HDPBENCH_SMOKE_RESULTS``)."""
    return _from_env("HDPBENCH_SMOKE_RESULTS", cache_dir() / "smoke-results")


def cache_dir() -> Path:
    """Scratch space that may be deleted at any time (``HDPBENCH_CACHE``)."""
    return _from_env("HDPBENCH_CACHE", project_root() / ".cache")


def environments_dir() -> Path:
    """Models' own Python environments (``HDPBENCH_ENVIRONMENTS``, else
    ``$XDG_CACHE_HOME/hdpbench/environments``): a user cache outside the checkout, so ``make clean``
    keeps them and several checkouts share one build (each is keyed by a hash of its spec)."""
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return _from_env("HDPBENCH_ENVIRONMENTS", cache_home / "hdpbench" / "environments")


def local_wheels_dir() -> Path:
    """Wheels this machine provides on disk (``HDPBENCH_WHEELS``, else ``/opt/wheels``): a model's
    environment installs its pinned torch from here where the file exists, instead of downloading."""
    return _from_env("HDPBENCH_WHEELS", Path("/opt/wheels"))


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
