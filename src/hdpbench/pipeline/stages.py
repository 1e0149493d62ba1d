"""The stage table: every stage declared once (name, computation, settings group, the stages it needs,
the files it writes). The runner, the cost model, the command line, the book's tables and the
notebooks look stages up here; :func:`run_stage` walks the needs.

Adding a stage is one :class:`Stage` entry in :data:`STAGES` plus its function in
:mod:`hdpbench.pipeline.compute` (taking a :class:`StageRun`), and its cost in
:mod:`hdpbench.pipeline.cost`.

Results go to ``results/<dataset>/<model>/<stage>/<key>/``. The key hashes the model's checkpoint,
the dataset version, the stage version and the settings of the stage *and of every stage it needs*
(as that stage sees them), so changing an upstream setting recomputes everything downstream; each
compound's marker also carries the digest of the inputs it was read from
(:meth:`~hdpbench.data.interface.ReferenceSource.input_digest`).

A stage declares what a system must have (``requires``: force constants, AIMD frames, reference
frames); the dataset is any :class:`~hdpbench.data.interface.ReferenceSource`, and its systems that
lack one are recorded as not applicable, with the reason, instead of failing.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hdpbench.core.errors import UsageError
from hdpbench.data.interface import Capability
from hdpbench.pipeline import compute
from hdpbench.pipeline.names import StageName
from hdpbench.pipeline.settings import RunSettings
from hdpbench.pipeline.store import StageManifest, StageResults


def sigma_phonons(settings: RunSettings) -> RunSettings:
    """The Φ_model that σ reads: the authors' 0.02 Å displacement, not the bands' 0.01 Å."""
    return settings.replace(phonons=settings.phonons.for_sigma())


def unchanged(settings: RunSettings) -> RunSettings:
    return settings


@dataclass(frozen=True)
class Need:
    """A stage this one reads, with the settings it must be run with (``adapt`` of the run's settings)."""

    stage: StageName
    adapt: Callable[[RunSettings], RunSettings] = unchanged


@dataclass(frozen=True)
class Stage:
    name: StageName
    compute: Callable[[StageRun], None]
    settings: str | None  # the settings group of its own; None: keyed by its needs' settings only
    dtype_group: str  # the settings group whose dtype loads the model
    needs: tuple[Need, ...] = ()
    writes: tuple[str, ...] = (".json", ".npz")  # per compound, plus the <compound>.done.json marker
    requires: tuple[Capability, ...] = (Capability.FORCE_CONSTANTS,)  # what a system must have; others: not applicable
    version: int = 1  # bumped when the code changes what the stage stores: older results are recomputed
    summary: str = ""


STAGES: dict[StageName, Stage] = {
    stage.name: stage
    for stage in (
        Stage(
            StageName.PHONONS, compute.compute_phonons, "phonons", "phonons",
            writes=(".json", ".npz", ".phonopy.yaml"),
            # 2: acoustic sum-rule metrics; Γ acoustic modes out of the thermal sums. 3: Φ_model in the reference's
            # supercell with its primitive cell; the stability class sets Γ's acoustic modes aside
            version=3,
            summary="Φ_model by finite displacements, bands and phonon errors against Φ_ref (§3.1)",
        ),
        Stage(
            StageName.SIGMA_REFERENCE_FRAMES, compute.compute_sigma_reference_frames, "sigma", "sigma",
            needs=(Need(StageName.PHONONS, sigma_phonons),), requires=(Capability.FORCE_CONSTANTS, Capability.REFERENCE_FRAMES),
            summary="σ of the AIMD frames with model forces, with Φ_ref and Φ_model (§3.2, Fig. 3)",
        ),
        Stage(
            StageName.MD, compute.compute_model_md, "md", "md",
            writes=(".json", ".npz", ".md.extxyz"), requires=(Capability.AIMD_FRAMES,),
            summary="model-only Andersen MD at 300 K from the AIMD frames (§3.3)",
        ),
        Stage(
            StageName.SIGMA_MD, compute.compute_sigma_model_md, None, "md",
            needs=(Need(StageName.PHONONS, sigma_phonons), Need(StageName.MD)), requires=(Capability.FORCE_CONSTANTS, Capability.AIMD_FRAMES),
            summary="σ of the model-only MD frames with Φ_model (σ_model-only, Fig. 4)",
        ),
        Stage(
            StageName.KPCA, compute.compute_kpca, "kpca", "kpca",
            needs=(Need(StageName.SIGMA_MD), Need(StageName.MD)), requires=(Capability.FORCE_CONSTANTS, Capability.AIMD_FRAMES),
            summary="SOAP–REMatch kernel-PCA maps of AIMD and model-MD frames (§3.4, Table 2)",
        ),
    )
}  # fmt: skip


def get_stage(name: str) -> Stage:
    """The table entry of ``name``; an unknown name is a :class:`UsageError` with the close matches."""
    try:
        return STAGES[StageName(name)]
    except ValueError:
        close = difflib.get_close_matches(str(name), list(STAGES), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(f"unknown stage {name!r}{hint}; stages: {', '.join(STAGES)}") from None


def plan(name: str, settings: RunSettings = RunSettings()) -> list[tuple[Stage, RunSettings]]:
    """The stages to run for ``name``, needs first, each once with the settings it runs with."""
    ordered: list[tuple[Stage, RunSettings]] = []

    def visit(stage: Stage, stage_settings: RunSettings) -> None:
        for need in stage.needs:
            visit(STAGES[need.stage], need.adapt(stage_settings))
        if not any(done.name == stage.name and done_settings == stage_settings for done, done_settings in ordered):
            ordered.append((stage, stage_settings))

    visit(get_stage(name), settings)
    return ordered


def key_settings(stage: Stage, settings: RunSettings) -> dict[str, Any]:
    """What keys a stage's results: its own settings group, and the groups of every stage it needs,
    as they are run for it."""
    own = dataclasses.asdict(settings.group(stage.settings)) if stage.settings else {}
    upstream = {
        need_stage.settings: dataclasses.asdict(need_settings.group(need_stage.settings))
        for need_stage, need_settings in plan(stage.name, settings)[:-1]
        if need_stage.settings and need_stage.settings != stage.settings
    }
    return {**own, **upstream}


def results_store(name: str, settings: dict[str, Any], data, loaded, results_root=None, *, version: int = 1) -> StageResults:
    """The results store of stage ``name`` keyed by ``settings`` for this dataset and model, checked
    writable before any work (also used by the real-data stages of :mod:`hdpbench.pipeline.realdata`);
    each compound's result counts as done only for the inputs it was computed from (``data.input_digest``)."""
    from hdpbench.core.storage import require_writable

    store = StageResults(
        StageManifest(
            dataset=data.name, model=loaded.name, stage=str(name), settings=settings,
            model_sha256=loaded.checkpoint_sha256 or loaded.identity, dataset_version=data.spec.version, stage_version=version,
            execution=loaded.execution,
        ),
        root=results_root,
        input_digest=getattr(data, "input_digest", None),
    )  # fmt: skip
    require_writable(store.directory)
    return store


def open_store(stage: Stage, settings: RunSettings, data, loaded, results_root=None) -> StageResults:
    """The results store of a stage of the table, keyed by :func:`key_settings`."""
    return results_store(stage.name.value, key_settings(stage, settings), data, loaded, results_root, version=stage.version)


@dataclass
class StageRun:
    """Everything a stage's computation gets: its opened store, the data, the model, the compounds
    (already restricted to those that have what the stage requires), the settings and the stores of
    the stages it needs, by name."""

    store: StageResults
    data: Any
    loaded: Any
    compounds: list[str]
    settings: RunSettings
    upstream: dict[StageName, StageResults] = field(default_factory=dict)
    device: str = "cpu"
    progress: bool = True
    errors: str = "raise"


def load_inputs(dataset, model, *, device: str, dtype: str, compounds: Sequence[str] | None = None, accelerator: str | None = None):
    """The dataset and the loaded model (any kind); a compound with an element the model does not know
    is refused here, before any compute, naming compound and element."""
    import os

    from hdpbench.data.datasets import get_dataset
    from hdpbench.models.evaluate import load_model

    data = get_dataset(dataset, download=False) if isinstance(dataset, (str, os.PathLike)) else dataset
    loaded = load_model(model, device=device, dtype=dtype, accelerator=accelerator)
    compute.require_elements(loaded, list(compounds) if compounds is not None else data.compounds())
    return data, loaded


def run_stage(
    name: str,
    dataset,
    model,
    *,
    compounds: Sequence[str] | None = None,
    settings: RunSettings = RunSettings(),
    device: str = "cpu",
    results_root=None,
    progress: bool = True,
    errors: str = "raise",
    accelerator: str | None = None,
) -> StageResults:
    """Run stage ``name`` (and first every stage it needs, where not done) for ``model`` on ``dataset``;
    returns its results store. ``dataset``/``model``: names, or a loaded dataset and model.

    ``errors="raise"`` stops at the first failing compound; ``"record"`` writes the failure down and
    goes on. The needs always record, so one bad compound never hides the others' results.
    ``accelerator``: the MACE tensor-product backend when ``model`` is a name (``e3nn``, ``cueq``;
    :func:`hdpbench.models.evaluate.load_model`); it changes rounding only, so it is recorded in the
    manifest, not in the key.
    """
    stage = get_stage(name)
    data, loaded = load_inputs(
        dataset, model, device=device, dtype=settings.group(stage.dtype_group).dtype, compounds=compounds, accelerator=accelerator
    )
    names = list(compounds) if compounds is not None else data.compounds()
    names, not_applicable = compute.split_applicable(data, names, stage.requires)
    done: dict[tuple[StageName, RunSettings], StageResults] = {}
    for step, step_settings in plan(name, settings):
        upstream = {}
        for need in step.needs:
            need_settings = need.adapt(step_settings)
            upstream[need.stage] = done[(need.stage, need_settings)]
        store = open_store(step, step_settings, data, loaded, results_root)
        step_names, _ = compute.split_applicable(data, names, step.requires)
        if is_target := step.name == stage.name:
            store.record_not_applicable(not_applicable)
        step.compute(
            StageRun(store, data, loaded, step_names, step_settings, upstream, device, progress, errors if is_target else "record")
        )
        done[(step.name, step_settings)] = store
    return done[(stage.name, settings)]
