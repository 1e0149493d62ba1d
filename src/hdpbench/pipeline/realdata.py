"""The real test: any model against first-principles references (the ``external`` dataset).

The paper's method, unchanged, on real DFT instead of the demo's xTB stand-in, computed once into
the results store (``results/external/<model>/real-*``) and read by ``notebooks/real_test.py``:

* ``real-phonons`` — Φ_model by batched finite displacements on each system's unit cell and
  supercell; bands, RMSE(ω²), RMSE(v_g), frequency MAE and stability against Φ_DFT (CsPbI3, NaCl,
  CaTiO3, KCl);
* ``real-sigma`` — model forces on the DFT frames (CsPbI3 AIMD at 700 K, KCl's 120 random
  displacements): σ_DFT, σ_model(Φ_DFT), σ_model(Φ_model) with Φ_model from the model's own finite
  displacements of the reference supercell, per species and per frame, force errors;
* ``real-md`` — model-only Andersen MD of CsPbI3 at the AIMD's temperature (the paper's thermostat
  and time step), σ of its frames with Φ_model (σ_model-only) and Φ_DFT, and a SOAP–REMatch KPCA map
  of the AIMD frames against the model's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hdpbench.pipeline.store import StageResults

DATASET = "external"
PHONON_SYSTEMS = ("CsPbI3", "NaCl", "CaTiO3", "KCl")
SIGMA_SYSTEMS = ("CsPbI3", "KCl")
MD_SYSTEM = "CsPbI3"
CHGNET_MODELS = ("chgnet-0.3.0", "chgnet-0.2.0", "chgnet-r2scan")


@dataclass(frozen=True)
class RealPhononSettings:
    displacement: float = 0.01  # Å, the authors' phonon script
    points_per_segment: int = 50
    unstable_below_thz: float = -0.5
    dtype: str = "float32"


@dataclass(frozen=True)
class RealSigmaSettings:
    displacement: float = 0.02  # Å, Φ_model of the reference supercell: the authors' σ displacement (PhononSettings.sigma_displacement)
    dtype: str = "float32"


@dataclass(frozen=True)
class RealMDSettings:
    steps: int = 500
    runs: int = 1
    discard: int = 100  # model-MD frames dropped as equilibration before σ and the map
    timestep_fs: float = 1.0  # the paper's
    andersen_prob: float = 0.5  # the paper's
    kpca_frames: int = 30  # model frames in the map (the 9 AIMD frames are all used); REMatch is O(frames²)
    seed: int = 0
    dtype: str = "float32"


def _open(model, stage: str, settings, device: str, results_root, systems: Sequence[str], **upstream):
    from hdpbench.data.datasets import get_dataset
    from hdpbench.models.evaluate import load_model
    from hdpbench.pipeline.compute import require_elements
    from hdpbench.pipeline.stages import results_store

    data = get_dataset(DATASET)
    loaded = load_model(model, device=device, dtype=settings.dtype)
    require_elements(loaded, [data.formula(name) for name in systems])  # declared: no file is read
    key = {**dataclasses.asdict(settings), **{name: dataclasses.asdict(value) for name, value in upstream.items()}}
    return data, loaded, results_store(stage, key, data, loaded, results_root)


def _per_system(model, stage: str, settings, systems: Sequence[str], result, *, device: str, results_root, progress: bool) -> StageResults:
    """Open ``stage``'s store and compute ``result(system, loaded, evaluator, settings, name)`` for every
    system not done yet (the skeleton shared by the per-system real-data stages)."""
    data, loaded, stage_results = _open(model, stage, settings, device, results_root, systems)
    evaluator = loaded.evaluator(progress=False)
    stage_results.run(list(systems), lambda name: result(data.load(name), loaded, evaluator, settings, name), progress=progress)
    return stage_results


def _phonon_result(system, loaded, evaluator, settings: RealPhononSettings, name: str) -> dict[str, Any]:
    from hdpbench.physics.phonons import band_arrays, compare, model_force_constants

    phonon = model_force_constants(
        system.unitcell, loaded, supercell_matrix=system.supercell_matrix, displacement=settings.displacement, evaluator=evaluator
    )
    metrics, reference_bands, model_bands = compare(
        system.unitcell, system.force_constants, phonon.force_constants, supercell_matrix=system.supercell_matrix,
        npoints=settings.points_per_segment, unstable_below=settings.unstable_below_thz,
    )
    metrics.update(
        {
            "system": name, "code": system.code, "functional": system.functional,
            "band_labels": [str(label) for label in reference_bands.labels], "band_connections": reference_bands.connections,
        }
    )
    return {"json_data": metrics, "arrays": band_arrays(reference_bands, model_bands)}


def _sigma_result(system, loaded, evaluator, settings: RealSigmaSettings, name: str) -> dict[str, Any]:
    from hdpbench.physics.anharmonicity import displacements, model_sigma_report, sigma
    from hdpbench.physics.phonons import model_force_constants

    trajectory, reference = system.trajectory, system.reference_supercell
    model_forces = evaluator.evaluate(trajectory.to_atoms_list()).forces_array()
    phi_model = model_force_constants(
        reference, loaded, supercell_matrix=(1, 1, 1), displacement=settings.displacement, evaluator=evaluator
    ).force_constants
    dft = sigma(trajectory, reference, system.force_constants)
    report = model_sigma_report(trajectory, reference, system.force_constants, model_forces, phi_model)
    per_frame = {k: np.asarray(report.pop(k)) for k in list(report) if k.startswith("sigma_per_frame_")}
    summary = {
        "system": name,
        "n_frames": len(trajectory),
        "n_atoms": trajectory.n_atoms,
        "sigma_reference": dft.sigma_mean_per_frame,
        "sigma_pooled_reference": dft.sigma_pooled,
        "sigma_per_species_reference": dft.sigma_per_species,
        "sigma_reference_fhi_vibes": system.extra.get("sigma_fhi_vibes"),
        **report,
    }
    error = np.abs(model_forces - trajectory.forces)
    arrays = {
        # per frame: RMS displacement from the reference (Å) and force MAE (eV/Å), for errors vs amplitude
        "displacement_rms_per_frame": np.sqrt((displacements(trajectory.positions, reference) ** 2).sum(axis=2).mean(axis=1)),
        "force_mae_per_frame": error.mean(axis=(1, 2)),
        "forces_reference": trajectory.forces,
        "forces_model": model_forces,
        "sigma_per_frame_reference": dft.sigma_per_frame,
        "force_constants_model": phi_model,
        **per_frame,
    }
    return {"json_data": summary, "arrays": arrays}


def run_phonons(
    model, *, systems: Sequence[str] = PHONON_SYSTEMS, settings: RealPhononSettings = RealPhononSettings(),
    device: str = "cpu", results_root=None, progress: bool = False,
) -> StageResults:
    """Φ_model by finite displacements on each system's own unit cell and supercell; bands and phonon
    errors against Φ_DFT."""
    return _per_system(model, "real-phonons", settings, systems, _phonon_result, device=device, results_root=results_root, progress=progress)


def run_sigma(
    model, *, systems: Sequence[str] = SIGMA_SYSTEMS, settings: RealSigmaSettings = RealSigmaSettings(),
    device: str = "cpu", results_root=None, progress: bool = False,
) -> StageResults:
    """Model forces on the DFT frames: σ_DFT, σ_model(Φ_DFT), σ_model(Φ_model) per species and frame, force errors."""
    return _per_system(model, "real-sigma", settings, systems, _sigma_result, device=device, results_root=results_root, progress=progress)


def run_md(
    model, *, settings: RealMDSettings = RealMDSettings(), sigma_settings: RealSigmaSettings | None = None,
    device: str = "cpu", results_root=None, progress: bool = False,
) -> StageResults:
    """Model-only MD of CsPbI3 from a random AIMD frame, then σ and the KPCA map (needs ``real-sigma`` for Φ_model)."""
    import ase.io
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    from hdpbench.core.compound import Trajectory
    from hdpbench.physics.anharmonicity import sigma
    from hdpbench.physics.kpca import configuration_map
    from hdpbench.physics.md import BatchedAndersen, MDSettings, model_forces

    sigma_settings = sigma_settings or RealSigmaSettings(dtype=settings.dtype)
    sigma_stage = run_sigma(model, systems=(MD_SYSTEM,), settings=sigma_settings, device=device, results_root=results_root)
    data, loaded, stage = _open(model, "real-md", settings, device, results_root, (MD_SYSTEM,), sigma=sigma_settings)
    if stage.is_done(MD_SYSTEM):
        return stage
    system = data.load(MD_SYSTEM)
    rng = np.random.default_rng(settings.seed)
    starts = rng.integers(0, len(system.trajectory), size=settings.runs).tolist()
    replicas = []
    for run, frame in enumerate(starts):
        atoms = system.trajectory.atoms(frame)
        atoms.calc = None
        MaxwellBoltzmannDistribution(atoms, temperature_K=system.temperature_K, rng=np.random.default_rng([settings.seed, run]))
        Stationary(atoms)
        replicas.append(atoms)
    md = BatchedAndersen(
        replicas,
        model_forces(loaded),
        MDSettings(
            temperature_K=system.temperature_K, timestep_fs=settings.timestep_fs, andersen_prob=settings.andersen_prob,
            steps=settings.steps, seed=settings.seed,
        ),
        device=device,
        output_dir=stage.directory / "_md_work" / stage.key,  # a killed run resumes from its checkpoint
    )
    md.run(progress=progress)

    def compute(name: str) -> dict[str, Any]:
        frames = []
        for r in range(len(replicas)):
            frames += ase.io.read(md.trajectory_file(r), index=":")[settings.discard :]
        if not frames:
            raise ValueError(f"{name}: no model-MD frames left after discarding {settings.discard} (steps {settings.steps})")
        trajectory = Trajectory.from_atoms_list(frames, source=f"model MD of {name}")
        phi_model = sigma_stage.load_arrays(name)["force_constants_model"]
        own = sigma(trajectory, system.reference_supercell, phi_model)
        with_dft_phi = sigma(trajectory, system.reference_supercell, system.force_constants)
        reference_sigma = sigma(system.trajectory, system.reference_supercell, system.force_constants).sigma_per_frame
        kpca = configuration_map(
            system.trajectory.to_atoms_list(), frames, max_frames_per_set=settings.kpca_frames,
            reference_sigma=reference_sigma, model_sigma=own.sigma_per_frame,
        )
        temperatures = np.array([s.temperatures for s in md.status], dtype=float)
        summary = {
            "system": name,
            "temperature_K": system.temperature_K,
            "start_frames": starts,
            "steps_per_run": [s.steps_done for s in md.status],
            "stopped_runs": {str(r): s.stopped for r, s in enumerate(md.status) if s.stopped},
            "mean_temperature_K": float(np.mean(temperatures[:, settings.discard :])),
            "n_frames": len(frames),
            "sigma_model_only": own.sigma_mean_per_frame,
            "sigma_per_species_model_only": own.sigma_per_species,
            "sigma_model_md_phi_reference": with_dft_phi.sigma_mean_per_frame,
            "kpca_overlap": kpca.overlap,
            "kpca_frames": {"reference": int((kpca.labels == 0).sum()), "model": int((kpca.labels == 1).sum())},
        }
        return {
            "json_data": summary,
            "arrays": {
                "temperatures": temperatures,
                "sigma_per_frame": own.sigma_per_frame,
                "kpca_coordinates": kpca.coordinates,
                "kpca_labels": kpca.labels,
                "kpca_sigma": kpca.sigma_per_frame,
            },
        }

    stage.run([MD_SYSTEM], compute, progress=progress)
    return stage


def run_all(models: Sequence[str], *, md_settings: RealMDSettings = RealMDSettings(), device: str = "cpu", results_root=None) -> dict[str, dict[str, StageResults]]:
    """Every real-data stage for every model: ``{model: {"phonons": ..., "sigma": ..., "md": ...}}``."""
    out = {}
    for model in models:
        out[model] = {
            "phonons": run_phonons(model, device=device, results_root=results_root),
            "sigma": run_sigma(model, device=device, results_root=results_root),
            "md": run_md(model, settings=md_settings, device=device, results_root=results_root),
        }
    return out


def run_phonons_and_sigma(
    models: Sequence[str], *, sigma_systems: Sequence[str] = (MD_SYSTEM,), device: str = "cpu", results_root=None
) -> dict[str, dict[str, StageResults]]:
    """The phonons on every system and σ on ``sigma_systems`` only, for models too slow here for
    the whole chapter (model MD and KCl's 120 frames): ``{model: {"phonons": ..., "sigma": ...}}``.
    The results are the same entries :func:`run_all` computes and reuses."""
    return {
        model: {
            "phonons": run_phonons(model, device=device, results_root=results_root),
            "sigma": run_sigma(model, systems=tuple(sigma_systems), device=device, results_root=results_root),
        }
        for model in models
    }


def comparison_table(stages: dict[str, dict[str, StageResults]]):
    """One row per model from its phonons on every system and its σ of CsPbI3: what every model of
    the chapter has, whether or not it ran the MD and KCl stages."""
    import pandas as pd

    from hdpbench.models.registry import display_name, get_model_spec

    rows = []
    for model, by_stage in stages.items():
        phonons = {name: by_stage["phonons"].load_json(name) for name in PHONON_SYSTEMS}
        cspbi3 = by_stage["sigma"].load_json(MD_SYSTEM)
        row = {"model": display_name(model), "kind": get_model_spec(model).kind}
        for name, metrics in phonons.items():
            row[f"RMSE(ω²) {name} (THz²)"] = metrics["rmse_omega2_thz2"]
        row["CaTiO3 unstable (DFT: yes)" if not phonons["CaTiO3"]["stable_reference"] else "CaTiO3 unstable (DFT: no)"] = (
            "yes" if not phonons["CaTiO3"]["stable_model"] else "no"
        )
        row["CsPbI3 force MAE (eV/Å)"] = cspbi3["force_mae_ev_ang"]
        row["σ DFT CsPbI3"] = cspbi3["sigma_reference"]
        row["σ_model(Φ_DFT) CsPbI3"] = cspbi3["sigma_model_phi_reference"]
        row["σ_model(Φ_model) CsPbI3"] = cspbi3["sigma_model_phi_model"]
        rows.append(row)
    return pd.DataFrame(rows)


def summary_table(stages: dict[str, dict[str, StageResults]]):
    """One row per model: the numbers the chapter's verdicts are built from."""
    import pandas as pd

    from hdpbench.models.registry import display_name

    rows = []
    for model, by_stage in stages.items():
        phonons = {name: by_stage["phonons"].load_json(name) for name in PHONON_SYSTEMS}
        cspbi3 = by_stage["sigma"].load_json("CsPbI3")
        kcl = by_stage["sigma"].load_json("KCl")
        md = by_stage["md"].load_json(MD_SYSTEM)
        row = {"model": display_name(model)}
        for name, metrics in phonons.items():
            row[f"RMSE(ω²) {name} (THz²)"] = metrics["rmse_omega2_thz2"]
        for name in ("CaTiO3", "CsPbI3"):
            dft = "yes" if not phonons[name]["stable_reference"] else "no"
            row[f"{name} unstable (DFT: {dft})"] = "yes" if not phonons[name]["stable_model"] else "no"
        row["CsPbI3 force MAE (eV/Å)"] = cspbi3["force_mae_ev_ang"]
        row["σ_model(Φ_DFT) CsPbI3"] = cspbi3["sigma_model_phi_reference"]
        row["σ_model(Φ_model) CsPbI3"] = cspbi3["sigma_model_phi_model"]
        row["σ_model-only CsPbI3"] = md["sigma_model_only"]
        row["KCl force MAE, median frame (eV/Å)"] = float(np.median(by_stage["sigma"].load_arrays("KCl")["force_mae_per_frame"]))
        row["σ_model(Φ_model) KCl"] = kcl["sigma_model_phi_model"]
        rows.append(row)
    return pd.DataFrame(rows)


def verdict(model: str, by_stage: dict[str, StageResults]) -> str:
    """One sentence per model, built from its numbers (never typed)."""
    from hdpbench.models.registry import display_name

    cspbi3 = by_stage["sigma"].load_json("CsPbI3")
    catio3 = by_stage["phonons"].load_json("CaTiO3")
    cspbi3_phonons = by_stage["phonons"].load_json("CsPbI3")
    md = by_stage["md"].load_json(MD_SYSTEM)
    dft = cspbi3["sigma_reference"]
    own = cspbi3["sigma_model_phi_model"]
    direction = "under" if own < dft else "over"
    parts = [
        f"{display_name(model)}: forces on the CsPbI3 AIMD frames are off by {cspbi3['force_mae_ev_ang']:.3f} eV/Å (MAE)",
        f"with its own Φ it {direction}-estimates σ ({own:.2f} vs {dft:.2f} from DFT; {cspbi3['sigma_model_phi_reference']:.2f} with Φ_DFT)",
        f"its own MD gives σ = {md['sigma_model_only']:.2f}",
        "it reproduces the instability of cubic CaTiO3" if not catio3["stable_model"] else "it misses the instability of cubic CaTiO3",
        (
            f"for cubic CsPbI3 its lowest frequency is {_signed(cspbi3_phonons['min_freq_model_thz'])} THz against "
            f"{_signed(cspbi3_phonons['min_freq_reference_thz'])} THz from the DFT Φ, so the stability class "
            + ("agrees" if cspbi3_phonons["stability_agrees"] else "differs")
            + f" (its Γ acoustic modes, zero for an exact Hessian, come out at {cspbi3_phonons['gamma_acoustic_max_thz_model']:.2f} THz)"
        ),
    ]
    return "; ".join(parts) + "."


# ---- tables the chapter plots and prints (and offers as CSV) ----------------------------------------


def phonon_metrics_table(stages: dict[str, dict[str, StageResults]]):
    """One row per (model, system): the paper's and Lee & Xia's phonon errors against Φ_DFT."""
    import pandas as pd

    from hdpbench.models.registry import display_name

    rows = []
    for model, by_stage in stages.items():
        for name in PHONON_SYSTEMS:
            m = by_stage["phonons"].load_json(name)
            rows.append(
                {
                    "model": display_name(model),
                    "system": name,
                    "RMSE(ω²) (THz²)": m["rmse_omega2_thz2"],
                    "RMSE(v_g) (THz·Å)": m["rmse_vg_thz_ang"],
                    "MAE(f) (THz)": m["mae_freq_thz"],
                    "min f DFT (THz)": m["min_freq_reference_thz"],
                    "min f model (THz)": m["min_freq_model_thz"],
                    "Γ acoustic |f| model (THz)": m["gamma_acoustic_max_thz_model"],
                    "stable DFT": "yes" if m["stable_reference"] else "no",
                    "stable model": "yes" if m["stable_model"] else "no",
                }
            )
    return pd.DataFrame(rows)


def sigma_table(stages: dict[str, dict[str, StageResults]], system: str):
    """One row per model: σ_DFT, σ_model(Φ_DFT), σ_model(Φ_model), σ_model-only (CsPbI3) and force errors."""
    import pandas as pd

    from hdpbench.models.registry import display_name

    rows = []
    for model, by_stage in stages.items():
        s = by_stage["sigma"].load_json(system)
        row = {
            "model": display_name(model),
            "σ DFT": s["sigma_reference"],
            "σ model forces, Φ_DFT": s["sigma_model_phi_reference"],
            "σ model forces, own Φ": s["sigma_model_phi_model"],
        }
        if system == MD_SYSTEM and "md" in by_stage:
            row["σ model-only MD"] = by_stage["md"].load_json(system)["sigma_model_only"]
        row["force MAE (eV/Å)"] = s["force_mae_ev_ang"]
        row["force RMSE (eV/Å)"] = s["force_rmse_ev_ang"]
        rows.append(row)
    return pd.DataFrame(rows)


def per_species_table(stages: dict[str, dict[str, StageResults]], system: str):
    """σ per species: DFT, and per model with Φ_DFT and with its own Φ."""
    import pandas as pd

    from hdpbench.models.registry import display_name

    first = next(iter(stages.values()))["sigma"].load_json(system)
    rows = [{"forces, Φ": "DFT, Φ_DFT", **first["sigma_per_species_reference"]}]
    for model, by_stage in stages.items():
        s = by_stage["sigma"].load_json(system)
        rows.append({"forces, Φ": f"{display_name(model)}, Φ_DFT", **s["sigma_per_species_model_phi_reference"]})
        rows.append({"forces, Φ": f"{display_name(model)}, own Φ", **s["sigma_per_species_model_phi_model"]})
    return pd.DataFrame(rows)


def frames_table(stages: dict[str, dict[str, StageResults]], system: str):
    """One row per (model, frame): σ(t) three ways, RMS displacement and force MAE of the frame."""
    import pandas as pd

    from hdpbench.models.registry import display_name

    rows = []
    for model, by_stage in stages.items():
        a = by_stage["sigma"].load_arrays(system)
        for k in range(len(a["sigma_per_frame_reference"])):
            rows.append(
                {
                    "model": display_name(model),
                    "frame": k,
                    "sigma_dft": float(a["sigma_per_frame_reference"][k]),
                    "sigma_model_phi_dft": float(a["sigma_per_frame_model_phi_reference"][k]),
                    "sigma_model_phi_model": float(a["sigma_per_frame_model_phi_model"][k]),
                    "displacement_rms_ang": float(a["displacement_rms_per_frame"][k]),
                    "force_mae_ev_ang": float(a["force_mae_per_frame"][k]),
                }
            )
    return pd.DataFrame(rows)


def bands_table(stages: dict[str, dict[str, StageResults]], system: str):
    """Long table of the bands behind a band figure: model, q index, path distance, band, f_DFT, f_model."""
    import pandas as pd

    from hdpbench.models.registry import display_name

    parts = []
    for model, by_stage in stages.items():
        a = by_stage["phonons"].load_arrays(system)
        nq, nb = a["frequencies_reference"].shape
        parts.append(
            pd.DataFrame(
                {
                    "model": display_name(model),
                    "q_index": np.repeat(np.arange(nq), nb),
                    "distance": np.repeat(a["distances"], nb),
                    "band": np.tile(np.arange(nb), nq),
                    "frequency_dft_thz": a["frequencies_reference"].ravel(),
                    "frequency_model_thz": a["frequencies_model"].ravel(),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _signed(value: float) -> str:
    """Two decimals with a typographic minus, for prose."""
    return f"{value:.2f}".replace("-", "−")
