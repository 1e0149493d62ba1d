"""What each stage computes, given its :class:`~hdpbench.pipeline.stages.StageRun` (the store opened
with its key, the dataset, the loaded model, the compounds, the settings and the results of the
stages it needs). The stage table (:mod:`hdpbench.pipeline.stages`) names these functions, opens the
stores and runs the needs first; nothing here calls another stage.

Each compound's result is written atomically as it finishes and skipped when already done with the
same key (see :mod:`hdpbench.pipeline.store`).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hdpbench.pipeline.names import StageName
from hdpbench.pipeline.store import StageResults

if TYPE_CHECKING:
    from hdpbench.pipeline.stages import StageRun


def require_elements(loaded, formulas: Sequence[str]) -> None:
    """Raise :class:`~hdpbench.models.evaluate.UnknownElementError` for the first formula with an element the model lacks."""
    from ase.data import atomic_numbers
    from ase.formula import Formula

    from hdpbench.models.evaluate import UnknownElementError

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


def split_applicable(data, names: Sequence[str], needs) -> tuple[list[str], dict[str, str]]:
    """(the compounds a stage needing ``needs`` (capabilities) can run on, {compound: why not} for the
    rest: "not applicable: no AIMD frames"). A compound the source cannot even list, or does not know,
    counts as applicable: its stage run then records the error instead of silently leaving it out."""
    from hdpbench.data.interface import missing

    applicable, not_applicable = [], {}
    for name in names:
        try:
            info = data.info(name)
        except Exception:  # unknown or unlistable: the stage's load names the problem
            applicable.append(name)
            continue
        reason = missing(info, needs)
        if reason is None:
            applicable.append(name)
        else:
            not_applicable[name] = reason
    return applicable, not_applicable


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


def compute_phonons(run: StageRun) -> None:
    """Φ_model by batched finite displacements on the reference unit cell, all phonon metrics against
    Φ_ref, the bands of both on the same q-points, Φ_model as a phonopy yaml."""
    from hdpbench.physics.phonons import (
        band_arrays,
        compare,
        model_force_constants,
        save_phonopy_yaml,
    )

    data, loaded, settings = run.data, run.loaded, run.settings.phonons
    evaluator = loaded.evaluator(progress=False)

    def compute(name: str) -> dict[str, Any]:
        compound = data.load(name, trajectories=False)
        supercell = reference_supercell_matrix(compound, settings.supercell)
        phonon = model_force_constants(
            compound.unitcell,
            loaded,
            supercell_matrix=supercell,
            displacement=settings.displacement,
            symmetrize=settings.symmetrize,
            evaluator=evaluator,
            primitive_matrix=compound.primitive_matrix,
        )
        metrics, reference_bands, model_bands = compare(
            compound.unitcell,
            compound.force_constants,
            phonon.force_constants,
            supercell_matrix=supercell,
            npoints=settings.points_per_segment,
            unstable_below=settings.unstable_below_thz,
            group_velocities=settings.group_velocities,
            primitive_matrix=compound.primitive_matrix,
        )
        metrics.update({
            "compound": name, "halide": compound.halide, "sigma_reference_db": compound.summary.get("sigma_reference"),
            "unitcell_atoms": len(compound.unitcell), "supercell_atoms": compound.n_atoms,
            "primitive_atoms": metrics["n_bands"] // 3, "supercell_matrix": compound.supercell_matrix.tolist(),
        })  # fmt: skip
        return {
            "json_data": metrics,
            "arrays": band_arrays(reference_bands, model_bands),
            "files": {".phonopy.yaml": lambda path: save_phonopy_yaml(phonon, path)},
        }

    run.store.run(run.compounds, compute, progress=run.progress, errors=run.errors)


def reference_supercell_matrix(compound, requested) -> np.ndarray:
    """The supercell Φ_model is computed in: the reference's own (its Φ is comparable in no other);
    ``requested`` (``phonons.supercell``), where given, must be that one."""
    from hdpbench.core.errors import DataError

    supercell = compound.supercell_matrix
    if requested is not None and not np.array_equal(np.diag(requested), supercell):
        raise DataError(
            compound.source,
            f"phonons.supercell={list(requested)}, but the reference force constants of {compound.formula} are in supercell "
            f"{supercell.tolist()}: the model is compared in the reference's supercell; leave phonons.supercell unset",
        )
    return supercell


def compute_sigma_reference_frames(run: StageRun) -> None:
    """Model forces on the reference (AIMD) frames, batched; σ_ref (reference forces, Φ_ref),
    σ_model(Φ_ref) and σ_model(Φ_model), per frame and per compound."""
    from hdpbench.io.force_constants import read_force_constants
    from hdpbench.physics.anharmonicity import sigma

    data, loaded, settings = run.data, run.loaded, run.settings.sigma
    phonon_stage = run.upstream[StageName.PHONONS]
    evaluator = loaded.evaluator(progress=run.progress)

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

    run.store.run(run.compounds, compute, progress=run.progress, errors=run.errors)


def require_frames(compound, frames: str, discard: int):
    """All frames of ``compound``'s production files of the frame set, or a clear error saying which
    files the set needs (the stage records it for that compound)."""
    from hdpbench.io.authors import frame_set

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


def compute_model_md(run: StageRun) -> None:
    """Model-only MD (paper §3.3): the replicas of all ``compounds`` advance together in one batch.

    Stores each compound's frames (extxyz), temperatures and stopped runs; σ of these frames is the
    ``sigma-md`` stage. If any compound of the list is pending, the whole list's batch is (re)built and
    its checkpoint resumed, so an interruption at any point (even between two compounds' saves) gives
    the same trajectories as an uninterrupted run: batch composition changes floating-point results.
    The pending compounds stay locked (:meth:`StageResults.locked`) until the batch is saved: a second
    run of the stage on the same results folder waits, then finds them done, instead of appending its
    frames to the same files.
    """
    pending = run.store.pending(run.compounds)
    if not pending:
        return
    with run.store.locked(pending):
        _model_md_batch(run)


def _model_md_batch(run: StageRun) -> None:
    import shutil

    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    from hdpbench.io.trajectories import count_extxyz_frames
    from hdpbench.physics.md import BatchedAndersen, model_forces

    data, loaded, settings, stage, with_md = run.data, run.loaded, run.settings.md, run.store, run.compounds
    pending = stage.pending(with_md)
    if not pending:
        return
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
        for run_index, frame in enumerate(starts[name]):
            atoms = trajectory.atoms(frame)
            atoms.calc = None
            MaxwellBoltzmannDistribution(atoms, temperature_K=settings.temperature_K, rng=np.random.default_rng([settings.seed, zlib_crc(name), run_index]))
            Stationary(atoms)
            replicas.append(atoms)
            owners.append(name)
    with_md = [n for n in with_md if n not in unloadable]
    if not replicas:
        stage.run(pending, lambda name: _raise(unloadable[name]), progress=False, errors=run.errors)
        return
    # The same list → the same folder, so a killed run resumes from its checkpoint.
    work = stage.directory / "_md_work" / f"{stage.key}-{zlib_crc(','.join(with_md)):08x}"
    md = BatchedAndersen(
        replicas,
        model_forces(loaded),
        settings,
        device=run.device,
        output_dir=work,
    )
    md.run(progress=run.progress)

    def compute(name: str) -> dict[str, Any]:
        if name in unloadable:
            raise unloadable[name]
        runs = [r for r, owner in enumerate(owners) if owner == name]
        frames_per_run = [count_extxyz_frames(md.trajectory_file(r), len(replicas[r])) for r in runs]
        run_of_frame = np.concatenate([np.full(count, k) for k, count in enumerate(frames_per_run)])
        summary = {
            "compound": name,
            "halide": halides[name],
            "start_frames": starts[name],
            "start_from": start_files[name],  # AIMD file and step of each run's first frame
            "mean_temperature_per_run": [float(np.mean(md.status[r].temperatures)) if md.status[r].temperatures else None for r in runs],
            "steps_per_run": [md.status[r].steps_done for r in runs],
            "stopped_runs": {str(k): md.status[r].stopped for k, r in enumerate(runs) if md.status[r].stopped},
            "n_frames": int(sum(frames_per_run)),
            **notes[name],
        }
        longest = max(len(md.status[r].temperatures) for r in runs)
        temperatures = np.full((len(runs), longest), np.nan)  # NaN after a run was stopped
        for k, r in enumerate(runs):
            temperatures[k, : len(md.status[r].temperatures)] = md.status[r].temperatures

        def write_frames(path):  # the runs' files one after the other: ASE wrote each frame, nothing to parse again
            with open(path, "wb") as output:
                for r, count in zip(runs, frames_per_run, strict=True):
                    if count:  # a run stopped before its first frame has no file
                        with open(md.trajectory_file(r), "rb") as run_file:
                            shutil.copyfileobj(run_file, output)

        return {
            "json_data": summary,
            "arrays": {"temperatures": temperatures, "run_of_frame": run_of_frame},
            "files": {".md.extxyz": write_frames},
        }

    stage.run(pending, compute, progress=run.progress, errors=run.errors)


def _raise(error: BaseException):
    raise error


def compute_sigma_model_md(run: StageRun) -> None:
    """σ of the model-only MD frames: with the model's own Φ (the paper's σ_MACE-only) and, as a
    cross-check the paper does not show, with Φ_ref."""
    from hdpbench.io.force_constants import read_force_constants
    from hdpbench.io.trajectories import read_ase_frames
    from hdpbench.physics.anharmonicity import sigma

    data = run.data
    phonon_stage, md_stage = run.upstream[StageName.PHONONS], run.upstream[StageName.MD]

    def compute(name: str) -> dict[str, Any]:
        require_upstream(phonon_stage, name)
        require_upstream(md_stage, name)
        compound = data.load(name, trajectories=False)
        md_row = md_stage.load_json(name)
        trajectory = read_ase_frames(md_stage.path(name, ".md.extxyz"), source=f"model MD of {name}")
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

    run.store.run(run.compounds, compute, progress=run.progress, errors=run.errors)


def zlib_crc(text: str) -> int:
    return zlib.crc32(text.encode())


def compute_kpca(run: StageRun) -> None:
    """KPCA maps of reference (AIMD) and model-MD frames per compound; kernel, coordinates, labels and
    per-frame σ (Φ_ref for reference frames, Φ_model for model frames) stored for the figures."""
    from hdpbench.io.trajectories import read_ase_frames
    from hdpbench.physics.anharmonicity import sigma
    from hdpbench.physics.kpca import configuration_map

    data, settings = run.data, run.settings.kpca
    sigma_md_stage, md_stage = run.upstream[StageName.SIGMA_MD], run.upstream[StageName.MD]

    def compute(name: str) -> dict[str, Any]:
        require_upstream(sigma_md_stage, name)
        compound = data.load(name, discard=settings.discard, frames=settings.frames)
        reference = require_frames(compound, settings.frames, settings.discard)
        model_frames = read_ase_frames(md_stage.path(name, ".md.extxyz")).to_atoms_list()
        result = configuration_map(
            reference.to_atoms_list(),
            model_frames,
            max_frames_per_set=settings.max_frames_per_set,
            reference_sigma=sigma(reference, compound.reference_supercell, compound.force_constants).sigma_per_frame,
            model_sigma=sigma_md_stage.load_arrays(name)["sigma_per_frame"],
            progress=run.progress,
            gram_precision=settings.gram_precision,
            device=run.device if str(run.device).startswith("cuda") else None,  # REMatch on the run's GPU
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

    run.store.run(run.compounds, compute, progress=run.progress, errors=run.errors)
