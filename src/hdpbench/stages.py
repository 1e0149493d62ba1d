"""Stages that compute once and store results for the notebooks: ``results/<dataset>/<model>/<stage>/``.

* ``phonons`` — Φ_model by batched finite displacements on the reference unit cell, all phonon
  metrics against Φ_ref, the bands of both on the same q-points, Φ_model as a phonopy yaml.
* ``sigma-reference-frames`` — model forces on the reference (AIMD) frames, batched; σ_ref
  (reference forces, Φ_ref), σ_model(Φ_ref) and σ_model(Φ_model), per frame and per compound.

Each stage skips compounds already done with the same settings and resumes after interruption
(see :mod:`hdpbench.results`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .results import StageManifest, StageResults


@dataclass(frozen=True)
class PhononSettings:
    supercell: tuple[int, int, int] = (2, 2, 2)
    displacement: float = 0.01
    symmetrize: bool = False
    points_per_segment: int = 50
    unstable_below_thz: float = -0.5
    dtype: str = "float32"


@dataclass(frozen=True)
class SigmaSettings:
    discard: int = 100  # frames dropped from the start of each production file
    max_frames: int | None = None  # evenly subsample the kept frames to at most this many
    dtype: str = "float32"


def _dataset_and_model(dataset, model, device: str, dtype: str):
    from .datasets import Dataset, get_dataset
    from .evaluate import LoadedModel, load_model

    data = dataset if isinstance(dataset, Dataset) else get_dataset(dataset, download=False)
    loaded = model if isinstance(model, LoadedModel) else load_model(model, device=device, dtype=dtype)
    return data, loaded


def _stage(data, loaded, stage: str, settings, results_root) -> StageResults:
    manifest = StageManifest(
        dataset=data.name,
        model=loaded.name,
        stage=stage,
        settings=asdict(settings),
        model_sha256=loaded.checkpoint_sha256 or loaded.identity,
        dataset_version=data.spec.version,
    )
    return StageResults(manifest, root=results_root)


def run_phonons(
    dataset,
    model,
    *,
    compounds: Sequence[str] | None = None,
    settings: PhononSettings = PhononSettings(),
    device: str = "cpu",
    results_root=None,
    progress: bool = True,
) -> StageResults:
    from .evaluate import BatchedEvaluator
    from .phonons import compare, model_force_constants, save_phonopy_yaml

    data, loaded = _dataset_and_model(dataset, model, device, settings.dtype)
    stage = _stage(data, loaded, "phonons", settings, results_root)
    evaluator = BatchedEvaluator(loaded, progress=False)

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
            "arrays": {
                "distances": reference_bands.distances,
                "segment_ends": reference_bands.segment_ends,
                "frequencies_reference": reference_bands.frequencies,
                "frequencies_model": model_bands.frequencies,
                "group_velocities_reference": reference_bands.group_velocities,
                "group_velocities_model": model_bands.group_velocities,
            },
            "files": {".phonopy.yaml": lambda path: save_phonopy_yaml(phonon, path)},
        }

    stage.run(list(compounds) if compounds is not None else data.compounds(), compute, progress=progress)
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
) -> StageResults:
    """σ on the reference trajectories with model forces (needs the phonons stage for Φ_model; runs it if missing)."""
    from .anharmonicity import sigma
    from .evaluate import BatchedEvaluator
    from .io.force_constants import read_force_constants

    data, loaded = _dataset_and_model(dataset, model, device, settings.dtype)
    phonon_settings = phonon_settings or PhononSettings(dtype=settings.dtype)
    names = list(compounds) if compounds is not None else data.compounds()
    with_md = [n for n in names if data.entries()[n].inventory.production_files]
    phonon_stage = run_phonons(data, loaded, compounds=with_md, settings=phonon_settings, results_root=results_root, progress=progress)
    stage = _stage(data, loaded, "sigma-reference-frames", settings, results_root)
    evaluator = BatchedEvaluator(loaded, progress=progress)

    def compute(name: str) -> dict[str, Any]:
        compound = data.load(name, discard=settings.discard)
        trajectory = compound.trajectory
        if trajectory is None:
            raise ValueError(f"{name} has no production trajectory")
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
            "sigma_reference_db": compound.summary.get("sigma_reference"),
            "force_mae_ev_ang": float(np.abs(force_error).mean()),
            "force_rmse_ev_ang": float(np.sqrt((force_error**2).mean())),
        }
        for key, result in results.items():
            summary[f"sigma_{key}"] = result.sigma_mean_per_frame
            summary[f"sigma_pooled_{key}"] = result.sigma_pooled
            summary[f"sigma_per_species_{key}"] = result.sigma_per_species
        arrays = {f"sigma_per_frame_{key}": r.sigma_per_frame for key, r in results.items()}
        arrays.update({"frame_source": trajectory.frame_source, "frame_index": trajectory.frame_index})
        return {"json_data": summary, "arrays": arrays}

    stage.run(with_md, compute, progress=progress)
    return stage


def collect(stage: StageResults, compounds: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The JSON results of every done compound (for tables and figures)."""
    names = stage.done() if compounds is None else [c for c in compounds if stage.is_done(c)]
    return [stage.load_json(name) for name in names]
