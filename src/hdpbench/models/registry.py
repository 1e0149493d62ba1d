"""The model registry: one YAML per model (name, paper label, kind, source, licence, sha256, dtype).

Entries are read from every folder of :func:`hdpbench.core.paths.model_registry_dirs`: the folders
in ``HDPBENCH_MODELS``, the project's ``models/`` and the registry shipped inside the installed
package, in that order of priority (an entry overrides a later one of the same name).

Every entry has a ``kind`` (:class:`ModelKind`): ``mace`` (a MACE checkpoint, evaluated by hdpbench's
batched evaluator) or ``ase`` (an importable factory returning an ASE calculator, see
:mod:`hdpbench.models.calculators`). Entries are validated when read: an unknown or misspelt key is an
error naming the file and the key, and a given sha256 is enforced before any weights are loaded.

A named foundation model is obtained through mace-torch's own mechanism (``mace_mp`` names, its
cache folder ``$XDG_CACHE_HOME/mace`` and file naming), so weights fetched by mace-torch elsewhere are
found here too. Where the download is impossible (no network) the error says exactly which file to
put where. Checkpoints are pickles — loading one runs code from it — so a registry model with a known
sha256 is refused on mismatch, and local checkpoints must come from a trusted source. (Importing
mace-torch sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` for the whole process, so torch's own
weights-only safety net is off once mace is loaded.)
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from hdpbench.core import paths
from hdpbench.core.errors import DataError, HdpbenchError
from hdpbench.core.specs import read_registry, spec_from_yaml


class ModelUnavailableError(HdpbenchError):
    """The weights of a model are not on this machine and could not be downloaded."""


class UnknownModelError(HdpbenchError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ModelKind(StrEnum):
    MACE = "mace"  # a MACE checkpoint: hdpbench's batched evaluator
    ASE = "ase"  # an importable factory returning an ASE calculator (batched where the library is)
    ISOLATED = "isolated"  # an ASE calculator in the model's own Python environment, behind a worker


# The fields only one kind reads; an entry of another kind that sets one is refused (a misplaced
# field would otherwise be silently ignored).
KIND_FIELDS = {
    ModelKind.MACE: ("mace_mp_name", "url", "path", "head"),
    ModelKind.ASE: ("factory", "factory_kwargs", "device_kwarg", "dtype_kwarg", "weights_kwarg", "weights", "batched", "batch_size"),
    ModelKind.ISOLATED: ("isolated",),
}


# Earlier names of the MACE kind, still read.
_KIND_ALIASES = {"mace-foundation": ModelKind.MACE, "mace-checkpoint": ModelKind.MACE}
# Free-form sections a registry file may hold besides the declared fields.
_FREE_SECTIONS = {"training", "finetune"}


@dataclass
class ModelSpec:
    name: str
    label: str = ""
    kind: str = ModelKind.MACE.value
    # MACE
    mace_mp_name: str | None = None
    url: str | None = None
    path: str | None = None  # local checkpoint, relative to the project root unless absolute
    head: str | None = None
    # ASE calculators (see hdpbench.models.calculators)
    factory: str | None = None
    factory_kwargs: dict[str, Any] | None = None
    device_kwarg: str | None = None
    dtype_kwarg: str | None = None
    weights_kwarg: str | None = None
    weights: Any = None  # {package: P, file: F} or a path
    batched: str | None = None
    batch_size: int | None = None
    # an own Python environment (see hdpbench.models.isolated): environment, calculator, weights, ...
    isolated: dict[str, Any] | None = None
    dtypes: list[str] | None = None  # the dtypes the model can compute in (default: [dtype])
    # every kind
    elements: Any = None  # symbols or a range like "H-Pu" (MACE: read from the checkpoint when absent)
    license: str = "unknown"
    sha256: str | None = None
    dtype: str = "float32"
    paper_order: int | None = None
    # the columns of the paper's Table 1 (optional; a fine-tuned entry falls back to its base's)
    elements_covered: int | str | None = None  # a count, or a count with its source ("94 (H–Pu)")
    training_data: str | None = None
    level_of_theory: str | None = None
    notes: str | None = None
    parameters: int | None = None
    citation: str | None = None
    source_file: str | None = None  # the YAML this entry was read from
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, file: Path) -> ModelSpec:
        spec = spec_from_yaml(cls, file, strict=True, free_sections=_FREE_SECTIONS)
        spec.source_file = str(file)
        kind = _KIND_ALIASES.get(spec.kind, spec.kind)
        try:
            spec.kind = ModelKind(kind).value
        except ValueError:
            raise DataError(file, f"kind {spec.kind!r} is not one of {[k.value for k in ModelKind]}") from None
        if spec.sha256 is not None and not (isinstance(spec.sha256, str) and re.fullmatch(r"[0-9a-f]{64}", spec.sha256)):
            raise DataError(file, f"sha256 must be 64 lower-case hex digits in quotes, not {spec.sha256!r}")
        if spec.dtype not in ("float32", "float64"):
            raise DataError(file, f"dtype {spec.dtype!r} is not float32 or float64")
        if not isinstance(spec.name, str) or not spec.name:
            raise DataError(file, f"name must be a non-empty string, not {spec.name!r}")
        for kind, names in KIND_FIELDS.items():
            misplaced = [name for name in names if kind.value != spec.kind and getattr(spec, name) is not None]
            if misplaced:
                raise DataError(file, f"field(s) {misplaced} belong to kind {kind.value!r}, not to this entry's kind {spec.kind!r}")
        if spec.kind == ModelKind.ASE.value and not spec.factory:
            raise DataError(file, "kind 'ase' needs 'factory: package.module:callable'")
        if spec.kind == ModelKind.ISOLATED.value:
            from hdpbench.models.environments import IsolatedSpec

            IsolatedSpec.from_mapping(spec.isolated, file)  # validated now: a bad entry fails when read, not mid-run
        return spec


def registry_file(spec: ModelSpec) -> Path:
    """The YAML file of a registry entry (for error messages)."""
    return Path(spec.source_file) if spec.source_file else paths.model_registry_dir() / f"{spec.name}.yaml"


def _searched() -> str:
    folders = paths.model_registry_dirs()
    return ", ".join(map(str, folders)) if folders else f"no registry folder found; expected {paths.model_registry_dir()}"


def writable_registry_file(spec: ModelSpec) -> Path:
    """The YAML to update for an entry: its own file, or, for an entry shipped inside the installed
    package (read-only), a file of the same name in the writable registry folder that overrides it."""
    source = registry_file(spec)
    return paths.model_registry_dir() / source.name if paths.is_shipped_registry_file(source) else source


def mace_cache_dir() -> Path:
    """Where mace-torch caches downloaded foundation models (same rule as ``mace.tools.utils.get_cache_dir``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mace"


def mace_cache_name(url: str) -> str:
    """mace-torch's cache file name: the URL's basename without characters other than alphanumerics and '_'."""
    return "".join(c for c in os.path.basename(url) if c.isalnum() or c == "_")


def registered_models() -> dict[str, ModelSpec]:
    """Every registered model by name; a folder earlier in the search path overrides a later one."""
    specs = read_registry(paths.model_registry_dirs(), ModelSpec.from_yaml)
    return dict(sorted(specs.items(), key=lambda item: (item[1].paper_order is None, item[1].paper_order or 0, item[0])))


def get_model_spec(name_or_path: str | Path) -> ModelSpec:
    specs = registered_models()
    if str(name_or_path) in specs:
        return specs[str(name_or_path)]
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return ModelSpec(name=path.stem, label=path.stem, kind=ModelKind.MACE.value, path=str(path.resolve()))
    raise UnknownModelError(
        f"no model {str(name_or_path)!r}: registered models are {sorted(specs)} (in {_searched()}); "
        "a local checkpoint file can also be given by path"
    )


def display_name(name_or_path: str | Path) -> str:
    """What figures call a model: its registry label (the paper's name for the paper's models), or a
    checkpoint file's stem, never a whole path."""
    spec = registered_models().get(str(name_or_path))
    if spec is not None:
        return spec.label or spec.name
    return Path(name_or_path).stem if Path(name_or_path).suffix else Path(name_or_path).name


def expected_checkpoint_path(spec: ModelSpec) -> Path:
    """The file that holds this model's weights on this machine (whether or not it exists yet)."""
    if spec.path:
        path = Path(spec.path).expanduser()
        return path if path.is_absolute() else paths.project_root() / path
    if not spec.url:
        raise DataError(registry_file(spec), "model has neither 'path' nor 'url'")
    return mace_cache_dir() / mace_cache_name(spec.url)


def is_available(spec: ModelSpec) -> bool:
    """Whether the model can be loaded here without a download (weights present, factory importable;
    for an isolated model: its environment is built). Imports and installs nothing for isolated models."""
    if spec.kind == ModelKind.ISOLATED.value:
        return environment_status(spec).startswith("built")
    if spec.kind == ModelKind.ASE.value:
        import importlib.util


        module = (spec.factory or "").partition(":")[0]
        try:
            if not module or importlib.util.find_spec(module) is None:
                return False
            weights = weights_file(spec, registry_file(spec))
        except (DataError, ImportError, ValueError):
            return False
        return weights is None or weights.is_file()
    try:
        return expected_checkpoint_path(spec).is_file()
    except DataError:
        return False


def weights_location(spec: ModelSpec) -> str:
    """Where the weights are (or would be) on this machine, for tables."""
    if spec.kind == ModelKind.ISOLATED.value:
        weights = (spec.isolated or {}).get("weights")
        where = f"{weights['package']}/{weights['file']}" if weights else f"built by {(spec.isolated or {}).get('calculator')}"
        return f"{where} in its own environment"
    if spec.kind == ModelKind.ASE.value:

        try:
            weights = weights_file(spec, registry_file(spec))
        except DataError as error:
            return f"({error.problem})"
        return str(weights) if weights is not None else f"built by {spec.factory}"
    return str(expected_checkpoint_path(spec))


def unavailable_message(spec: ModelSpec, reason: str = "") -> str:
    target = expected_checkpoint_path(spec)
    lines = [f"Model {spec.name!r} ({spec.label}, licence {spec.license}) has no weights on this machine."]
    if reason:
        lines.append(f"Download failed: {reason}")
    if spec.url:
        lines.append(f"Download {spec.url}")
        lines.append(f"and save it as {target} (mace-torch's cache: $XDG_CACHE_HOME/mace, file name {target.name}).")
    else:
        lines.append(f"Place the checkpoint at {target}.")
    return "\n".join(lines)


def checkpoint_path(spec: ModelSpec, *, download: bool = True) -> Path:
    """Path of a model's checkpoint: cached, else downloaded by mace-torch, else a clear error.

    A registered sha256 is checked before the path is returned (checkpoints are pickles).
    """
    target = expected_checkpoint_path(spec)
    if not target.is_file():
        if not (download and spec.mace_mp_name):
            raise ModelUnavailableError(unavailable_message(spec))
        from hdpbench.core.torch_setup import import_mace

        import_mace()
        from mace.calculators.foundations_models import download_mace_mp_checkpoint

        try:
            downloaded = Path(download_mace_mp_checkpoint(spec.mace_mp_name))
        except Exception as error:  # no network, HTTP error, timeout
            raise ModelUnavailableError(unavailable_message(spec, f"{type(error).__name__}: {error}")) from error
        if downloaded.resolve() != target.resolve():
            raise ModelUnavailableError(f"mace-torch stored {spec.name} at {downloaded}, expected {target}")
    if spec.sha256:
        from hdpbench.core.storage import sha256_file

        actual = sha256_file(target)
        if actual != spec.sha256:
            raise DataError(target, f"sha256 {actual} does not match the registered {spec.sha256}; refusing to load it")
    return target


def environment_status(spec: ModelSpec) -> str:
    """For ``kind: isolated``: ``built``, or why not and whether it can be (nothing imported or installed)."""
    from hdpbench.models.environments import IsolatedSpec
    from hdpbench.models.environments import environment_status as status

    return status(spec.name, IsolatedSpec.from_mapping(spec.isolated, registry_file(spec)).environment)


def model_table() -> list[dict[str, Any]]:
    """One row per registered model, for ``hdpbench models list``."""
    rows = []
    for spec in registered_models().values():
        rows.append(
            {
                "name": spec.name,
                "label": spec.label,
                "kind": spec.kind,
                "license": spec.license,
                "available": is_available(spec),
                "dtype": spec.dtype,
                "dtypes": spec.dtypes or [spec.dtype],
                "checkpoint": weights_location(spec),
                "sha256": spec.sha256,
                "url": spec.url,
                "elements": spec.elements,
                "elements_covered": spec.elements_covered,
                "training_data": spec.training_data,
                "level_of_theory": spec.level_of_theory,
                "notes": spec.notes,
                "parameters": spec.parameters,
                "finetune": spec.extra.get("finetune"),
                "environment": environment_status(spec) if spec.kind == ModelKind.ISOLATED.value else "hdpbench's",
            }
        )
    return rows


def weights_file(spec, source: Path) -> Path | None:
    """The weights file a registry entry names (inside an installed package, or a path), or None."""
    weights = spec.weights
    if weights is None:
        return None
    if isinstance(weights, dict):
        package, file = weights.get("package"), weights.get("file")
        if not package or not file or set(weights) - {"package", "file"}:
            raise DataError(source, f"weights: expected {{package: NAME, file: PATH}}, got {weights!r}")
        try:
            module = importlib.import_module(package)
        except ImportError as error:
            raise DataError(source, f"weights: package {package!r} is not installed ({error})") from error
        return Path(module.__file__).parent / file
    path = Path(str(weights)).expanduser()
    return path if path.is_absolute() else paths.project_root() / path
