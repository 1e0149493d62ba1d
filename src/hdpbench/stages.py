"""Stages that compute once and store results for the notebooks: ``results/<dataset>/<model>/<stage>/<key>/``.

* ``phonons`` — Φ_model by batched finite displacements on the reference unit cell, all phonon
  metrics against Φ_ref, the bands of both on the same q-points, Φ_model as a phonopy yaml.
* ``sigma-reference-frames`` — model forces on the reference (AIMD) frames, batched; σ_ref
  (reference forces, Φ_ref), σ_model(Φ_ref) and σ_model(Φ_model), per frame and per compound.

Each stage skips compounds already done with the same settings and resumes after interruption
(see :mod:`hdpbench.results`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .results import StageManifest, StageResults, require_writable
from .validation import require_choice, require_positive, require_positive_int, require_probability


@dataclass(frozen=True)
class PhononSettings:
    """Φ_model by finite displacements. The authors use two displacements: 0.01 Å for the bands
    (``phonon_plotter.py``) and their ``PhonopyWorker`` default, 0.02 Å, for the Φ_MACE that σ
    reads (``mace/collect_data.py``); :meth:`for_sigma` gives the settings of the latter."""

    supercell: tuple[int, int, int] = (2, 2, 2)
    displacement: float = 0.01  # Å, bands and phonon metrics
    sigma_displacement: float = 0.02  # Å, the Φ_model of σ_model(Φ_model), σ_model-only and the maps' σ
    symmetrize: bool = False
    points_per_segment: int = 50
    unstable_below_thz: float = -0.5
    dtype: str = "float32"

    def __post_init__(self):
        supercell = self.supercell
        if (
            not isinstance(supercell, (tuple, list))
            or len(supercell) != 3
            or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in supercell)
        ):
            raise UsageError(f"phonons setting supercell={supercell!r}: expected three positive integers, e.g. [2, 2, 2]")
        object.__setattr__(self, "supercell", tuple(supercell))
        require_positive("phonons setting displacement", self.displacement)
        require_positive("phonons setting sigma_displacement", self.sigma_displacement)
        require_positive_int("phonons setting points_per_segment", self.points_per_segment)
        _check_dtype("phonons", self.dtype)

    def for_sigma(self) -> PhononSettings:
        """The settings of the Φ_model that the σ stages read (displacement ``sigma_displacement``)."""
        return replace(self, displacement=self.sigma_displacement)


@dataclass(frozen=True)
class SigmaSettings:
    frames: str = "paper"  # production files read (io.authors.FrameSet): the authors' σ scripts read _1 and _2
    discard: int = 100  # frames dropped from the start of each production file (the authors' read(index='100:'))
    max_frames: int | None = None  # evenly subsample the kept frames to at most this many
    dtype: str = "float32"

    def __post_init__(self):
        _check_frames("sigma", self.frames, ("paper", "all"))
        require_positive_int("sigma setting discard", self.discard, allow_zero=True)
        if self.max_frames is not None:
            require_positive_int("sigma setting max_frames", self.max_frames)
        _check_dtype("sigma", self.dtype)


def _check_dtype(group: str, dtype) -> None:
    require_choice(f"{group} setting dtype", dtype, ("float32", "float64"))


def _check_frames(group: str, frames, choices: tuple[str, ...]) -> None:
    require_choice(f"{group} setting frames", frames, choices)


def _dataset_and_model(dataset, model, device: str, dtype: str, compounds: Sequence[str] | None = None):
    """The dataset and the loaded model (any kind); a compound with an element the model does not know
    is refused here, before any compute, naming compound and element."""
    from .datasets import Dataset, get_dataset
    from .evaluate import load_model

    data = dataset if isinstance(dataset, Dataset) else get_dataset(dataset, download=False)
    loaded = load_model(model, device=device, dtype=dtype)
    require_elements(loaded, list(compounds) if compounds is not None else data.compounds())
    return data, loaded


def require_elements(loaded, formulas: Sequence[str]) -> None:
    """Raise :class:`~hdpbench.evaluate.UnknownElementError` for the first formula with an element the model lacks."""
    from ase.data import atomic_numbers
    from ase.formula import Formula

    from .evaluate import UnknownElementError

    if loaded.atomic_numbers is None:
        return
    known = set(loaded.atomic_numbers)
    for formula in formulas:
        try:
            counts = Formula(formula).count()
        except ValueError:  # not a formula: the stage reports the unknown compound itself
            continue
        missing = sorted(s for s in counts if atomic_numbers[s] not in known)
        if missing:
            raise UnknownElementError(f"compound {formula} contains {missing}, which model {loaded.name} does not know")


# Bumped when a stage's code changes what it stores, so that older results are recomputed.
STAGE_VERSIONS = {"phonons": 2}  # 2: acoustic sum-rule metrics; Γ acoustic modes out of the thermal sums


def stage_store(data, loaded, stage: str, settings, results_root, **upstream) -> StageResults:
    """``upstream``: settings of the stages this one reads; changing them must recompute this one too."""
    manifest = StageManifest(
        dataset=data.name,
        model=loaded.name,
        stage=stage,
        settings={**asdict(settings), **{name: asdict(value) for name, value in upstream.items()}},
        model_sha256=loaded.checkpoint_sha256 or loaded.identity,
        dataset_version=data.spec.version,
        stage_version=STAGE_VERSIONS.get(stage, 1),
    )
    store = StageResults(manifest, root=results_root)
    require_writable(store.directory)  # before any work, not after the computation
    return store


def with_production_md(data, names: Sequence[str]) -> list[str]:
    """The compounds that have production MD, plus those whose archive could not even be listed (their
    stage run records the archive's error instead of silently leaving them out)."""
    entries = data.entries()
    return [n for n in names if n not in entries or entries[n].problem or entries[n].inventory.production_files]


def input_notes(compound) -> dict[str, Any]:
    """What was wrong with the input files but still usable, kept in each result's JSON (provenance):
    production files cut off mid-step (their complete steps were used) and files with no frames left."""
    provenance = compound.provenance or {}
    return {
        "truncated_production_files": dict(provenance.get("truncated_production_files", {})),
        "skipped_production_files": dict(provenance.get("skipped_production_files", {})),
    }


class UpstreamFailedError(RuntimeError):
    """A stage this one reads has no result for the compound (it failed there; its error and file are quoted)."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


def require_upstream(upstream: StageResults, name: str) -> None:
    if upstream.is_done(name):
        return
    failure = upstream.failures([name]).get(name)
    if failure is None:
        raise UpstreamFailedError(f"the {upstream.manifest.stage} stage has no result for {name}")
    raise UpstreamFailedError(
        f"the {upstream.manifest.stage} stage failed for {name}: {failure['error_type']}: {failure['error']}", failure.get("file")
    )


def run_phonons(
    dataset,
    model,
    *,
    compounds: Sequence[str] | None = None,
    settings: PhononSettings = PhononSettings(),
    device: str = "cpu",
    results_root=None,
    progress: bool = True,
    errors: str = "raise",
) -> StageResults:
    from .phonons import band_arrays, compare, model_force_constants, save_phonopy_yaml

    data, loaded = _dataset_and_model(dataset, model, device, settings.dtype, compounds)
    stage = stage_store(data, loaded, "phonons", settings, results_root)
    evaluator = loaded.evaluator(progress=False)

    def compute(name: str) -> dict[str, Any]:
        compound = data.load(name, trajectories=False)
        phonon = model_force_constants(
            compound.unitcell,
            loaded,
            supercell_matrix=settings.supercell,
            displacement=settings.displacement,
            symmetrize=settings.symmetrize,
            evaluator=evaluator,
        )
        metrics, reference_bands, model_bands = compare(
            compound.unitcell,
            compound.force_constants,
            phonon.force_constants,
            supercell_matrix=settings.supercell,
            npoints=settings.points_per_segment,
            unstable_below=settings.unstable_below_thz,
        )
        metrics.update({"compound": name, "halide": compound.halide, "sigma_reference_db": compound.summary.get("sigma_reference")})
        return {
            "json_data": metrics,
            "arrays": band_arrays(reference_bands, model_bands),
            "files": {".phonopy.yaml": lambda path: save_phonopy_yaml(phonon, path)},
        }

    stage.run(list(compounds) if compounds is not None else data.compounds(), compute, progress=progress, errors=errors)
    return stage


def run_sigma_reference_frames(
    dataset,
    model,
    *,
    compounds: Sequence[str] | None = None,
    settings: SigmaSettings = SigmaSettings(),
    phonon_settings: PhononSettings | None = None,
    device: str = "cpu",
    results_root=None,
    progress: bool = True,
    errors: str = "raise",
) -> StageResults:
    """σ on the reference trajectories with model forces (needs the phonons stage for Φ_model; runs it if missing)."""
    from .anharmonicity import sigma
    from .io.force_constants import read_force_constants

    data, loaded = _dataset_and_model(dataset, model, device, settings.dtype, compounds)
    phonon_settings = (phonon_settings or PhononSettings(dtype=settings.dtype)).for_sigma()
    names = list(compounds) if compounds is not None else data.compounds()
    with_md = with_production_md(data, names)
    phonon_stage = run_phonons(
        data, loaded, compounds=with_md, settings=phonon_settings, results_root=results_root, progress=progress, errors="record"
    )
    stage = stage_store(data, loaded, "sigma-reference-frames", settings, results_root, phonons=phonon_settings)
    evaluator = loaded.evaluator(progress=progress)

    def compute(name: str) -> dict[str, Any]:
        require_upstream(phonon_stage, name)
        compound = data.load(name, discard=settings.discard, frames=settings.frames)
        trajectory = require_frames(compound, settings.frames, settings.discard)
        if settings.max_frames and len(trajectory) > settings.max_frames:
            trajectory = trajectory.select(np.linspace(0, len(trajectory) - 1, settings.max_frames).round().astype(int))
        model_forces = evaluator.evaluate(trajectory.to_atoms_list()).forces_array()
        fc_model = read_force_constants(phonon_stage.path(name, ".phonopy.yaml"))
        reference = compound.reference_supercell
        results = {
            "reference": sigma(trajectory, reference, compound.force_constants),
            "model_fc_reference": sigma(trajectory, reference, compound.force_constants, forces=model_forces),
            "model_fc_model": sigma(trajectory, reference, fc_model, forces=model_forces),
        }
        force_error = model_forces - trajectory.forces
        summary = {
            "compound": name,
            "halide": compound.halide,
            "n_frames": len(trajectory),
            "frame_set": settings.frames,
            "production_files": [Path(t.source_files[0]).name for t in compound.trajectories],
            "sigma_reference_db": compound.summary.get("sigma_reference"),
            "force_mae_ev_ang": float(np.abs(force_error).mean()),
            "force_rmse_ev_ang": float(np.sqrt((force_error**2).mean())),
            **input_notes(compound),
        }
        for key, result in results.items():
            summary[f"sigma_{key}"] = result.sigma_mean_per_frame
            summary[f"sigma_pooled_{key}"] = result.sigma_pooled
            summary[f"sigma_per_species_{key}"] = result.sigma_per_species
        arrays = {f"sigma_per_frame_{key}": r.sigma_per_frame for key, r in results.items()}
        arrays.update({"frame_source": trajectory.frame_source, "frame_index": trajectory.frame_index})
        return {"json_data": summary, "arrays": arrays}

    stage.run(with_md, compute, progress=progress, errors=errors)
    return stage


def require_frames(compound, frames: str, discard: int):
    """All frames of ``compound``'s production files of the frame set, or a clear error saying which
    files the set needs (the stage records it for that compound)."""
    from .io.authors import frame_set

    if compound.trajectory is None:
        skipped = compound.provenance.get("skipped_production_files")
        why = f"files too short: {skipped}" if skipped else "the compound has none of these files"
        raise ValueError(
            f"{compound.formula}: no frames of frame set {frames!r} ({frame_set(frames).describe()}) "
            f"left after dropping {discard} per file ({why})"
        )
    return compound.trajectory


def collect(stage: StageResults, compounds: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The JSON results of every done compound (for tables and figures)."""
    names = stage.done() if compounds is None else [c for c in compounds if stage.is_done(c)]
    return [stage.load_json(name) for name in names]


@dataclass(frozen=True)
class ModelMDSettings:
    runs_per_compound: int = 2
    steps: int = 2000
    temperature_K: float = 300.0
    timestep_fs: float = 1.0
    andersen_prob: float = 0.5
    start_frames: str = "md-start"  # the AIMD file runs start from (io.authors.FrameSet): _2, else _1
    start_frame_max: int = 700  # start from a random step 0..700 of it (no step dropped, as the authors)
    write_every: int = 1
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self):
        for name in ("runs_per_compound", "steps", "write_every"):
            require_positive_int(f"md setting {name}", getattr(self, name))
        _check_frames("md", self.start_frames, ("md-start", "paper", "all"))
        for name in ("start_frame_max", "seed"):
            require_positive_int(f"md setting {name}", getattr(self, name), allow_zero=True)
        for name in ("temperature_K", "timestep_fs"):
            require_positive(f"md setting {name}", getattr(self, name))
        require_probability("md setting andersen_prob", self.andersen_prob)
        _check_dtype("md", self.dtype)


@dataclass(frozen=True)
class SigmaMDSettings:
    """σ of model MD has no settings of its own (all frames are used); kept so every stage has a record."""

    frames: str = "all"


def run_model_md(
    dataset,
    model,
    *,
    compounds: Sequence[str] | None = None,
    settings: ModelMDSettings = ModelMDSettings(),
    device: str = "cpu",
    results_root=None,
    progress: bool = True,
    errors: str = "raise",
) -> StageResults:
    """Model-only MD (paper §3.3): the replicas of all ``compounds`` advance together in one batch.

    Stores each compound's frames (extxyz), temperatures and stopped runs; σ of these frames is the
    ``sigma-md`` stage. If any compound of the list is pending, the whole list's batch is (re)built and
    its checkpoint resumed, so an interruption at any point (even between two compounds' saves) gives
    the same trajectories as an uninterrupted run: batch composition changes floating-point results.
    """
    import ase.io
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    from .md import BatchedAndersen, MDSettings, model_forces

    data, loaded = _dataset_and_model(dataset, model, device, settings.dtype, compounds)
    names = list(compounds) if compounds is not None else data.compounds()
    with_md = with_production_md(data, names)
    stage = stage_store(data, loaded, "md", settings, results_root)
    pending = stage.pending(with_md)
    if not pending:
        return stage
    replicas, owners, starts, start_files, halides, notes = [], [], {}, {}, {}, {}
    unloadable: dict[str, BaseException] = {}
    for name in with_md:
        try:
            compound = data.load(name, discard=0, frames=settings.start_frames)
            require_frames(compound, settings.start_frames, 0)
        except Exception as error:  # one bad archive must not stop the batch: recorded below
            unloadable[name] = error
            continue
        halides[name] = compound.halide
        notes[name] = input_notes(compound)
        trajectory = compound.trajectory
        rng = np.random.default_rng([settings.seed, zlib_crc(name)])
        last = min(settings.start_frame_max, len(trajectory) - 1)
        starts[name] = rng.integers(0, last + 1, size=settings.runs_per_compound).tolist()
        start_files[name] = [f"{Path(trajectory.frame_file(k)).name} step {int(trajectory.frame_index[k])}" for k in starts[name]]
        for run, frame in enumerate(starts[name]):
            atoms = trajectory.atoms(frame)
            atoms.calc = None
            MaxwellBoltzmannDistribution(atoms, temperature_K=settings.temperature_K, rng=np.random.default_rng([settings.seed, zlib_crc(name), run]))
            Stationary(atoms)
            replicas.append(atoms)
            owners.append(name)
    with_md = [n for n in with_md if n not in unloadable]
    if not replicas:
        stage.run(pending, lambda name: _raise(unloadable[name]), progress=False, errors=errors)
        return stage
    # The same list → the same folder, so a killed run resumes from its checkpoint.
    work = stage.directory / "_md_work" / f"{stage.key}-{zlib_crc(','.join(with_md)):08x}"
    md = BatchedAndersen(
        replicas,
        model_forces(loaded),
        MDSettings(
            temperature_K=settings.temperature_K,
            timestep_fs=settings.timestep_fs,
            andersen_prob=settings.andersen_prob,
            steps=settings.steps,
            write_every=settings.write_every,
            seed=settings.seed,
        ),
        device=device,
        output_dir=work,
    )
    md.run(progress=progress)

    def compute(name: str) -> dict[str, Any]:
        if name in unloadable:
            raise unloadable[name]
        runs = [r for r, owner in enumerate(owners) if owner == name]
        per_run = [ase.io.read(md.trajectory_file(r), index=":") for r in runs]
        frames = [atoms for run_frames in per_run for atoms in run_frames]
        run_of_frame = np.concatenate([np.full(len(run_frames), k) for k, run_frames in enumerate(per_run)])
        summary = {
            "compound": name,
            "halide": halides[name],
            "start_frames": starts[name],
            "start_from": start_files[name],  # AIMD file and step of each run's first frame
            "mean_temperature_per_run": [float(np.mean(md.status[r].temperatures)) if md.status[r].temperatures else None for r in runs],
            "steps_per_run": [md.status[r].steps_done for r in runs],
            "stopped_runs": {str(k): md.status[r].stopped for k, r in enumerate(runs) if md.status[r].stopped},
            "n_frames": len(frames),
            **notes[name],
        }
        longest = max(len(md.status[r].temperatures) for r in runs)
        temperatures = np.full((len(runs), longest), np.nan)  # NaN after a run was stopped
        for k, r in enumerate(runs):
            temperatures[k, : len(md.status[r].temperatures)] = md.status[r].temperatures

        def write_frames(path):
            ase.io.write(path, frames, format="extxyz")

        return {
            "json_data": summary,
            "arrays": {"temperatures": temperatures, "run_of_frame": run_of_frame},
            "files": {".md.extxyz": write_frames},
        }

    stage.run(pending, compute, progress=progress, errors=errors)
    return stage


def _raise(error: BaseException):
    raise error


def run_sigma_model_md(
    dataset,
    model,
    *,
    compounds: Sequence[str] | None = None,
    md_settings: ModelMDSettings = ModelMDSettings(),
    phonon_settings: PhononSettings | None = None,
    device: str = "cpu",
    results_root=None,
    progress: bool = True,
    errors: str = "raise",
) -> StageResults:
    """σ of the model-only MD frames: with the model's own Φ (the paper's σ_MACE-only) and, as a
    cross-check the paper does not show, with Φ_ref. Runs the phonons and md stages where missing."""
    import ase.io

    from .anharmonicity import sigma
    from .compound import Trajectory
    from .io.force_constants import read_force_constants

    data, loaded = _dataset_and_model(dataset, model, device, md_settings.dtype, compounds)
    phonon_settings = (phonon_settings or PhononSettings(dtype=md_settings.dtype)).for_sigma()
    names = list(compounds) if compounds is not None else data.compounds()
    with_md = with_production_md(data, names)
    phonon_stage = run_phonons(
        data, loaded, compounds=with_md, settings=phonon_settings, results_root=results_root, progress=progress, errors="record"
    )
    md_stage = run_model_md(
        data, loaded, compounds=with_md, settings=md_settings, device=device, results_root=results_root, progress=progress, errors="record"
    )
    stage = stage_store(data, loaded, "sigma-md", SigmaMDSettings(), results_root, md=md_settings, phonons=phonon_settings)

    def compute(name: str) -> dict[str, Any]:
        require_upstream(phonon_stage, name)
        require_upstream(md_stage, name)
        compound = data.load(name, trajectories=False)
        md_row = md_stage.load_json(name)
        trajectory = Trajectory.from_atoms_list(ase.io.read(md_stage.path(name, ".md.extxyz"), index=":"), source=f"model MD of {name}")
        fc_model = read_force_constants(phonon_stage.path(name, ".phonopy.yaml"))
        with_model_fc = sigma(trajectory, compound.reference_supercell, fc_model)
        with_reference_fc = sigma(trajectory, compound.reference_supercell, compound.force_constants)
        summary = {
            "compound": name,
            "halide": compound.halide,
            "sigma_model_only": with_model_fc.sigma_mean_per_frame,
            "sigma_pooled_model_only": with_model_fc.sigma_pooled,
            "sigma_per_species_model_only": with_model_fc.sigma_per_species,
            "sigma_model_md_fc_reference": with_reference_fc.sigma_mean_per_frame,
            "sigma_reference_db": compound.summary.get("sigma_reference"),
            "n_frames": len(trajectory),
            "stopped_runs": md_row["stopped_runs"],
            "start_from": md_row.get("start_from"),
            "mean_temperature_per_run": md_row["mean_temperature_per_run"],
        }
        arrays = {
            "sigma_per_frame": with_model_fc.sigma_per_frame,
            "sigma_per_frame_fc_reference": with_reference_fc.sigma_per_frame,
        }
        return {"json_data": summary, "arrays": arrays}

    stage.run(with_md, compute, progress=progress, errors=errors)
    return stage


def zlib_crc(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode())


@dataclass(frozen=True)
class KPCASettings:
    max_frames_per_set: int = 100  # REMatch is O(frames²): reference and model frames are subsampled evenly
    frames: str = "paper"  # AIMD files of the map (io.authors.FrameSet); "all" adds the extended AIMD of Fig. S11
    discard: int = 100
    dtype: str = "float32"

    def __post_init__(self):
        _check_frames("kpca", self.frames, ("paper", "all"))
        require_positive_int("kpca setting max_frames_per_set", self.max_frames_per_set)
        require_positive_int("kpca setting discard", self.discard, allow_zero=True)
        _check_dtype("kpca", self.dtype)


def run_kpca(
    dataset,
    model,
    *,
    compounds: Sequence[str] | None = None,
    settings: KPCASettings = KPCASettings(),
    md_settings: ModelMDSettings | None = None,
    phonon_settings: PhononSettings | None = None,
    device: str = "cpu",
    results_root=None,
    progress: bool = True,
    errors: str = "raise",
) -> StageResults:
    """KPCA maps of reference (AIMD) and model-MD frames per compound; kernel, coordinates, labels and
    per-frame σ (Φ_ref for reference frames, Φ_model for model frames) stored for the figures."""
    import ase.io

    from .anharmonicity import sigma
    from .kpca import configuration_map

    data, loaded = _dataset_and_model(dataset, model, device, settings.dtype, compounds)
    md_settings = md_settings or ModelMDSettings(dtype=settings.dtype)
    phonon_settings = phonon_settings or PhononSettings(dtype=settings.dtype)
    sigma_md_stage = run_sigma_model_md(
        data, loaded, compounds=compounds, md_settings=md_settings, phonon_settings=phonon_settings,
        device=device, results_root=results_root, progress=progress, errors="record",
    )
    md_stage = stage_store(data, loaded, "md", md_settings, results_root)  # run by the sigma-md stage above
    stage = stage_store(data, loaded, "kpca", settings, results_root, md=md_settings, phonons=phonon_settings)
    names = with_production_md(data, list(compounds) if compounds is not None else data.compounds())

    def compute(name: str) -> dict[str, Any]:
        require_upstream(sigma_md_stage, name)
        compound = data.load(name, discard=settings.discard, frames=settings.frames)
        reference = require_frames(compound, settings.frames, settings.discard)
        model_frames = ase.io.read(md_stage.path(name, ".md.extxyz"), index=":")
        result = configuration_map(
            reference.to_atoms_list(),
            model_frames,
            max_frames_per_set=settings.max_frames_per_set,
            reference_sigma=sigma(reference, compound.reference_supercell, compound.force_constants).sigma_per_frame,
            model_sigma=sigma_md_stage.load_arrays(name)["sigma_per_frame"],
            progress=progress,
        )
        return {
            "json_data": {
                "compound": name,
                "halide": compound.halide,
                "overlap": result.overlap,
                "n_reference_frames": int((result.labels == 0).sum()),
                "n_model_frames": int((result.labels == 1).sum()),
                "subsampled_from": {"reference": len(reference), "model": len(model_frames)},
                "frame_set": settings.frames,
                "production_files": [Path(t.source_files[0]).name for t in compound.trajectories],
                **input_notes(compound),
            },
            "arrays": {
                "coordinates": result.coordinates,
                "labels": result.labels,
                "kernel": result.kernel,
                "sigma_per_frame": result.sigma_per_frame,
                "reference_frame_index": result.frame_indices["reference"],
                "model_frame_index": result.frame_indices["model"],
            },
        }

    stage.run(names, compute, progress=progress, errors=errors)
    return stage
