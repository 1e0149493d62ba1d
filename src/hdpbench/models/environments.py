"""A model's own Python environment: declared in its registry entry, built once, reused.

Many machine-learned potentials cannot be installed beside mace-torch (it pins ``e3nn==0.4.4``;
SevenNet needs ``e3nn>=0.5``). A registry entry of ``kind: isolated`` therefore names its own
environment, with matbench-discovery's field names::

    isolated:
      environment:
        python_version: "3.11"
        dependencies: [torch==2.13.0, sevenn==0.13.0, e3nn==0.6.0]

Every dependency is pinned (``==``); what the installer resolved around them is recorded, with the
sha256 of each downloaded file where pip reports one, in ``environment.json`` inside the
environment, and from there in every result manifest. The environment is built with the standard
library's ``venv`` and pip, on first use or ahead of time (``hdpbench models env NAME``), into
:func:`hdpbench.core.paths.environments_dir` under a folder named by a hash of the spec: another
spec is another folder, the same spec is built once (models that declare one environment share
it). A pinned ``torch`` is installed from the machine's wheel folder (:func:`hdpbench.core.paths.local_wheels_dir`) where the file is
there, as the project's own ``make install`` does. A file lock makes concurrent builders (several
runner workers, several shells) wait for one build; a build that fails or is killed leaves no
half-built environment behind, only its log.

Installing an environment runs the packages' code: a registry folder is code, add only entries
you trust.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdpbench.core import paths
from hdpbench.core.errors import DataError, HdpbenchError

DEFAULT_TIMEOUT_S = 600.0  # seconds per request to a model's worker
DEFAULT_BATCH_SIZE = 16  # structures per request
ENVIRONMENT_RECORD = "environment.json"  # written last: its presence marks a complete build
WORKER_IMPORTS = ("numpy", "ase")  # what the worker script itself imports inside the environment
_PINNED = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9,._-]+\])?\s*==\s*([A-Za-z0-9.+!_-]+)\s*$")


class EnvironmentBuildError(HdpbenchError):
    """A model's environment could not be built (package not found, no network, ...)."""


@dataclass(frozen=True)
class EnvironmentSpec:
    """What a model's environment holds: pinned requirements and the Python minor version."""

    dependencies: tuple[str, ...]
    python_version: str

    @classmethod
    def from_mapping(cls, raw: Any, source: str | Path) -> EnvironmentSpec:
        """The ``environment:`` section of a registry entry, validated strictly (file named in errors)."""
        if not isinstance(raw, dict):
            raise DataError(source, f"isolated.environment: expected a mapping with 'dependencies', got {raw!r}")
        unknown = set(raw) - {"dependencies", "python_version"}
        if unknown:
            raise DataError(source, f"isolated.environment: unknown key(s) {sorted(unknown)}; expected dependencies, python_version")
        dependencies = raw.get("dependencies")
        if not isinstance(dependencies, list) or not dependencies or not all(isinstance(d, str) for d in dependencies):
            raise DataError(source, "isolated.environment.dependencies: expected a non-empty list of 'package==version' strings")
        for requirement in dependencies:
            if not _PINNED.match(requirement):
                raise DataError(source, f"isolated.environment.dependencies: {requirement!r} is not pinned as 'package==version'")
        version = str(raw.get("python_version") or f"{sys.version_info.major}.{sys.version_info.minor}")
        if not re.fullmatch(r"3\.\d{1,2}", version):
            raise DataError(source, f"isolated.environment.python_version: {version!r} is not of the form '3.11'")
        return cls(tuple(dependencies), version)

    def pinned(self) -> dict[str, str]:
        """Package name (normalised) → pinned version."""
        pins = {}
        for requirement in self.dependencies:
            match = _PINNED.match(requirement)
            pins[_normalise(match.group(1))] = match.group(3)
        return pins

    @property
    def digest(self) -> str:
        """16 hex digits of the spec (sorted requirements, Python version): the build's folder key."""
        text = json.dumps({"dependencies": sorted(self.dependencies), "python_version": self.python_version}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class IsolatedSpec:
    """The ``isolated:`` section of a registry entry (validated in :meth:`from_mapping`)."""

    environment: EnvironmentSpec
    calculator: str
    calculator_kwargs: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, str] | None = None
    weights_kwarg: str | None = None
    device_kwarg: str | None = None
    dtype_kwarg: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    batch_size: int = DEFAULT_BATCH_SIZE

    FIELDS = ("environment", "calculator", "calculator_kwargs", "weights", "weights_kwarg", "device_kwarg", "dtype_kwarg", "timeout_s", "batch_size")

    @classmethod
    def from_mapping(cls, raw: Any, source: str | Path) -> IsolatedSpec:
        if not isinstance(raw, dict):
            raise DataError(source, "kind 'isolated' needs an 'isolated:' section (environment, calculator, ...)")
        unknown = set(raw) - set(cls.FIELDS)
        if unknown:
            raise DataError(source, f"isolated: unknown key(s) {sorted(unknown)}; expected {', '.join(cls.FIELDS)}")
        calculator = raw.get("calculator")
        if not isinstance(calculator, str) or ":" not in calculator:
            raise DataError(source, "isolated.calculator: expected 'package.module:callable'")
        weights = raw.get("weights")
        if weights is not None and (not isinstance(weights, dict) or set(weights) != {"package", "file"}):
            raise DataError(source, f"isolated.weights: expected {{package: NAME, file: PATH}}, got {weights!r}")
        kwargs = raw.get("calculator_kwargs") or {}
        if not isinstance(kwargs, dict):
            raise DataError(source, f"isolated.calculator_kwargs: expected a mapping, got {kwargs!r}")
        timeout = raw.get("timeout_s", DEFAULT_TIMEOUT_S)
        batch = raw.get("batch_size", DEFAULT_BATCH_SIZE)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise DataError(source, f"isolated.timeout_s: expected a positive number of seconds, got {timeout!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise DataError(source, f"isolated.batch_size: expected a positive integer, got {batch!r}")
        return cls(
            environment=EnvironmentSpec.from_mapping(raw.get("environment"), source),
            calculator=calculator, calculator_kwargs=dict(kwargs), weights=weights,
            weights_kwarg=raw.get("weights_kwarg"), device_kwarg=raw.get("device_kwarg"), dtype_kwarg=raw.get("dtype_kwarg"),
            timeout_s=float(timeout), batch_size=batch,
        )  # fmt: skip


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Environment:
    """A built environment: its folder, interpreter and the record of what was installed."""

    folder: Path

    @property
    def python(self) -> Path:
        return self.folder / "bin" / "python"

    @property
    def record(self) -> dict[str, Any]:
        return json.loads((self.folder / ENVIRONMENT_RECORD).read_text())

    @property
    def packages(self) -> dict[str, str]:
        """Every installed distribution → version, as resolved at build time."""
        return dict(self.record.get("packages", {}))


def environment_folder(name: str, spec: EnvironmentSpec) -> Path:
    """Keyed by the spec alone: models with one spec (the four SevenNet models) share one build."""
    return paths.environments_dir() / spec.digest


def built_environment(name: str, spec: EnvironmentSpec) -> Environment | None:
    """The environment if it is built and complete; None otherwise. Imports and installs nothing."""
    folder = environment_folder(name, spec)
    return Environment(folder) if (folder / ENVIRONMENT_RECORD).is_file() and (folder / "bin" / "python").exists() else None


def environment_status(name: str, spec: EnvironmentSpec) -> str:
    """``built`` or ``not built (buildable: python3.X found)`` / ``not built (no python3.X here)``."""
    if built_environment(name, spec) is not None:
        return "built"
    try:
        _interpreter(spec.python_version)
    except EnvironmentBuildError:
        return f"not built (no python{spec.python_version} on this machine)"
    return "not built (built on first use)"


def local_torch_wheel(version: str, python_version: str) -> Path | None:
    """This machine's wheel of torch ``version`` for ``python_version``, if the wheel folder has one."""
    tag = "cp" + python_version.replace(".", "")
    folder = paths.local_wheels_dir()
    if not folder.is_dir():
        return None
    for wheel in sorted(folder.glob(f"torch-{version}*-{tag}-{tag}-*.whl")):
        local = wheel.name.split("-")[1]
        if local == version or local.startswith(version + "+"):
            return wheel
    return None


def ensure_environment(name: str, spec: EnvironmentSpec, *, quiet: bool = False) -> Environment:
    """The built environment of model ``name``, building it first if needed (one builder at a time)."""
    from hdpbench.core.storage import exclusive_locks

    found = built_environment(name, spec)
    if found is not None:
        return found
    folder = environment_folder(name, spec)
    with exclusive_locks([folder.parent / f"{folder.name}.lock"], what=f"the environment of model {name} being built"):
        found = built_environment(name, spec)  # another builder finished while this one waited
        if found is not None:
            return found
        return _build(name, spec, folder, quiet=quiet)


def _interpreter(python_version: str) -> str:
    if python_version == f"{sys.version_info.major}.{sys.version_info.minor}":
        return sys.executable
    found = shutil.which(f"python{python_version}")
    if found is None:
        raise EnvironmentBuildError(f"python{python_version} is not on this machine's PATH (needed for the environment)")
    return found


def _build(name: str, spec: EnvironmentSpec, folder: Path, *, quiet: bool) -> Environment:
    log = folder.parent / f"{folder.name}.build.log"
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists():  # a build killed earlier: start again
        shutil.rmtree(folder)
    start = time.perf_counter()
    environment = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
    for variable in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
        environment.pop(variable, None)
    python = folder / "bin" / "python"
    report = folder / "pip-report.json"

    def step(what: str, command: list[str]) -> None:
        if not quiet:
            print(f"hdpbench: environment of {name}: {what}", file=sys.stderr, flush=True)
        with open(log, "a") as handle:
            handle.write(f"$ {' '.join(map(str, command))}\n")
            handle.flush()
            result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=environment, check=False)
        if result.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-12:])
            raise EnvironmentBuildError(
                f"model {name}: building its environment failed at '{what}' (exit {result.returncode}); "
                f"full log: {log}\n{tail}"
            )

    log.write_text(f"# environment of model {name}, spec {spec.digest}, {_dt.datetime.now(_dt.UTC).isoformat()}\n")
    step(f"create a Python {spec.python_version} venv in {folder}", [_interpreter(spec.python_version), "-m", "venv", str(folder)])
    pinned_torch = spec.pinned().get("torch")
    wheel = local_torch_wheel(pinned_torch, spec.python_version) if pinned_torch else None
    if wheel is not None:
        step(f"install torch from {wheel}", [str(python), "-m", "pip", "install", "--quiet", str(wheel)])
    step(
        f"install {', '.join(spec.dependencies)}",
        [str(python), "-m", "pip", "install", "--quiet", "--report", str(report), *spec.dependencies],
    )
    step(f"check that the worker's imports ({', '.join(WORKER_IMPORTS)}) are installed", [str(python), "-c", "import " + ", ".join(WORKER_IMPORTS)])
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, env=environment, check=True)
    packages = {entry["name"]: entry["version"] for entry in json.loads(listed.stdout)}
    record = {
        "model": name,
        "spec": {"dependencies": list(spec.dependencies), "python_version": spec.python_version},
        "digest": spec.digest,
        "python": subprocess.run([str(python), "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True, check=True).stdout.strip(),
        "packages": packages,
        "downloads": _downloads(report),
        "torch_wheel": str(wheel) if wheel is not None else None,
        "build_seconds": round(time.perf_counter() - start, 1),
        "built_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    from hdpbench.core.storage import atomic_write_json

    atomic_write_json(folder / ENVIRONMENT_RECORD, record)
    return Environment(folder)


def _downloads(report: Path) -> list[dict[str, Any]]:
    """What pip installed in the last step, with the archive's sha256 where pip reports one."""
    try:
        installed = json.loads(report.read_text()).get("install", [])
    except (OSError, json.JSONDecodeError):
        return []
    rows = []
    for item in installed:
        metadata = item.get("metadata", {})
        info = item.get("download_info", {})
        hashes = info.get("archive_info", {}).get("hashes", {}) or {}
        rows.append({"name": metadata.get("name"), "version": metadata.get("version"), "url": info.get("url"), "sha256": hashes.get("sha256")})
    return rows
