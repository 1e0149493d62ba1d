# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A real test: foundation models against first-principles data
#
# **Why this page.** Every other page runs on the embedded demo, whose reference is GFN1-xTB and
# whose models were trained here. This page runs the paper's method, unchanged, on *real* DFT data
# with *real* pretrained universal potentials. The authors' DFT data and the MACE foundation weights
# cannot be downloaded on the machine that builds this book. So the page uses what ships offline:
# four small DFT references published by FHI-vibes {cite:p}`knoop2020vibes` and phonopy
# {cite:p}`togo2023phonopy`, the three CHGNet models {cite:p}`deng2023chgnet` in the `chgnet` wheel,
# and SevenNet models {cite:p}`park2024sevennet` shipped in the `sevenn` wheel, which run in an environment of
# their own. Any registered model can take their place (see *Rerun it* below).
#
# **What is computed, as in the paper.**
# - Φ_model from finite displacements, no relaxation, the reference cell: 0.01 Å for the bands (the
#   authors' phonon script) and 0.02 Å for the Φ that σ reads (their σ scripts), as on the demo pages.
# - Bands on the seekpath path, 50 points per segment.
# - RMSE(ω²), RMSE(v_g) and the stability class (−0.5 THz).
# - σ of the DFT frames with model forces, once with Φ_DFT and once with the model's own Φ.
# - Model-only Andersen MD (p = 0.5, 1 fs) at the temperature of the AIMD, and its σ.
# - A SOAP–REMatch kernel-PCA map of AIMD against model frames.
#
# **What differs from the paper, and why.** The systems are not halide double perovskites. The
# CsPbI3 AIMD runs at {glue:text}`rt_aimd_T` K (the paper's at 300 K) and has {glue:text}`rt_aimd_frames`
# frames. The model MD is one run of
# {glue:text}`rt_md_steps` steps, not 2 × 2000. The KPCA map holds {glue:text}`rt_kpca_frames` model
# frames. All three cuts keep the page within a few minutes on two CPU cores.

# %% tags=["parameters"]
real_models = ["chgnet-0.3.0", "chgnet-0.2.0", "chgnet-r2scan"]  # registry names (any kind) or checkpoint paths
# models scored on the phonons and CsPbI3's σ only (no model MD, no KCl): the SevenNet models run in
# their own environment, built on first use, and cost more per force call here than CHGNet (README)
isolated_models = ["sevennet-0", "sevennet-mf-0"]
device = "cpu"
dtype = "float32"
# results folder; None = HDPBENCH_RESULTS or results/
results = None
real_md_steps = 500  # model-only MD steps (the paper: 2 runs x 2000)
real_md_discard = 100  # MD frames dropped as equilibration
real_kpca_frames = 30  # model-MD frames in the KPCA map
# where the CSV files behind the figures go; None = beside this page in the built book
csv_dir = None

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from hdpbench.book import analysis, figures, page
from hdpbench.core import paths
from hdpbench.data.datasets import get_dataset
from hdpbench.models.registry import display_name, get_model_spec
from hdpbench.pipeline import realdata

if isinstance(real_models, str):  # one name or a space-separated list from BOOK_PARAMS
    real_models = real_models.split()
if isinstance(isolated_models, str):  # names separated by commas or spaces (BOOK_PARAMS splits at spaces: use commas there)
    isolated_models = isolated_models.replace(",", " ").split()
isolated_models = [m for m in (isolated_models or []) if m not in real_models]
figures.use_book_style()


def show(table):
    """A table as readers should see it: human column names, three significant digits, no row numbers."""
    display(page.readable(table))


csv_folder = csv_dir or (page.page_dir() / "real_test_data")
md_settings = realdata.RealMDSettings(steps=real_md_steps, discard=real_md_discard, kpca_frames=real_kpca_frames, dtype=dtype)
stages = realdata.run_all(real_models, md_settings=md_settings, device=device, results_root=results)
isolated_stages = realdata.run_phonons_and_sigma(isolated_models, device=device, results_root=results)
systems = get_dataset(realdata.DATASET)
cspbi3 = systems.load("CsPbI3")
glue("rt_aimd_T", f"{cspbi3.temperature_K:g}", display=False)
glue("rt_aimd_frames", len(cspbi3.trajectory), display=False)
glue("rt_md_steps", real_md_steps, display=False)
glue("rt_kpca_frames", real_kpca_frames, display=False)
glue("rt_models", analysis.prose(", ".join(real_models + isolated_models)), display=False)

# %% [markdown]
# ## The data and the models
#
# Each file is an unchanged copy with its licence and a `provenance.json` (source project and path,
# code, functional, sha256) under `data/external/`.

# %%
show(pd.DataFrame(systems.table()).rename(columns=str.capitalize))

# %% [markdown]
# Models on this page ({glue:md}`rt_models`). The registry entry states the training data, the level of
# theory and the parameter count of each:

# %%
registry = analysis.model_registry_table(real_models + isolated_models)
show(registry[[c for c in ("model", "licence", "dtype", "weights here") if c in registry.columns]].merge(
    pd.DataFrame(
        [
            {"model": name, "training data": spec.training_data or "", "level of theory": spec.level_of_theory or "",
             "parameters": f"{spec.parameters:,}" if spec.parameters else ""}
            for name, spec in ((n, get_model_spec(n)) for n in real_models + isolated_models)
        ]
    ),
    on="model",
))

# %% [markdown]
# ## CsPbI3: the anharmonicity score of the AIMD frames with model forces
#
# The AIMD frames carry FHI-aims PBEsol forces, and the file also holds the FHI-vibes force constants.
# σ_DFT below is recomputed from positions, forces and Φ. It equals the σ that FHI-vibes stored in the
# same file, {glue:text}`rt_sigma_vibes:.4f` (pooled; a test checks this). Then every model's forces
# on the same frames are scored twice: against Φ_DFT (the paper's σ_MACE(Φ_DFT)) and against the
# model's own Φ (σ_MACE(Φ_MACE)). The last column is σ of the model's own MD.

# %%
sigma_cspbi3 = realdata.sigma_table(stages, "CsPbI3")
first_sigma = next(iter(stages.values()))["sigma"].load_json("CsPbI3")
glue("rt_sigma_vibes", float(first_sigma["sigma_reference_fhi_vibes"]), display=False)
glue("rt_sigma_dft", float(first_sigma["sigma_reference"]), display=False)
show(sigma_cspbi3)

# %% [markdown]
# Per species (Cs, Pb, I), σ with DFT forces and with each model's forces:

# %%
show(realdata.per_species_table(stages, "CsPbI3"))

# %%
frames = realdata.frames_table(stages, "CsPbI3")
dft_frames = frames[frames["model"] == frames["model"].iloc[0]]["sigma_dft"]
glue("rt_sigma_spread", float(100 * dft_frames.std() / dft_frames.mean()), display=False)
page.figure_data(frames, "real_test", "cspbi3_sigma_per_frame", folder=csv_folder)
fig = figures.real_sigma_traces(frames, f"CsPbI3 ({cspbi3.temperature_K:g} K AIMD)")
plt.show()

# %% [markdown]
# {download}`Data of this figure (CSV) <real_test_data/cspbi3_sigma_per_frame.csv>`
#
# Force parity on the same frames: every Cartesian component of every atom in every frame.

# %%
parity = {}
for model, by_stage in stages.items():
    arrays = by_stage["sigma"].load_arrays("CsPbI3")
    parity[model] = (arrays["forces_reference"], arrays["forces_model"])
parity_table = pd.concat(
    [pd.DataFrame({"model": m, "force_dft_ev_ang": r.ravel(), "force_model_ev_ang": p.ravel()}) for m, (r, p) in parity.items()]
)
page.figure_data(parity_table, "real_test", "cspbi3_force_parity", folder=csv_folder)
fig = figures.force_parity(parity, "CsPbI3: DFT (PBEsol) vs model forces")
plt.show()

# %% [markdown]
# {download}`Data of this figure (CSV) <real_test_data/cspbi3_force_parity.csv>`
#
# ## CsPbI3: bands of Φ_DFT and Φ_model

# %%
path = next(iter(stages.values()))["phonons"].load_json("CsPbI3")
page.figure_data(realdata.bands_table(stages, "CsPbI3"), "real_test", "cspbi3_bands", folder=csv_folder)
fig = figures.real_bands(
    {m: s["phonons"].load_arrays("CsPbI3") for m, s in stages.items()}, "CsPbI3", path["band_labels"], path["band_connections"]
)
plt.show()

# %% [markdown]
# {download}`Data of this figure (CSV) <real_test_data/cspbi3_bands.csv>`
#
# ## CsPbI3: model-only MD and the configuration map
#
# Each model runs its own MD. The run starts from a random AIMD frame with Maxwell–Boltzmann
# velocities at the AIMD's temperature; {glue:text}`rt_md_discard` frames are dropped as equilibration. The
# model-only σ of those frames is scored with the model's own Φ, the paper's σ_MACE-only. The map
# places the {glue:text}`rt_aimd_frames` AIMD frames and the model frames in one SOAP–REMatch kernel-PCA plane per model. The
# overlap score is the one the KPCA page uses.

# %%
glue("rt_md_discard", real_md_discard, display=False)
glue("rt_aimd_dt", f"{cspbi3.timestep_fs:g}", display=False)
glue("rt_aimd_span", f"{cspbi3.timestep_fs * (len(cspbi3.trajectory) - 1):g}", display=False)
glue("rt_md_span", f"{md_settings.timestep_fs * (real_md_steps - real_md_discard):g}", display=False)
md_rows = []
for model, by_stage in stages.items():
    row = by_stage["md"].load_json("CsPbI3")
    md_rows.append(
        {"model": display_name(model), "mean T (K)": row["mean_temperature_K"], "frames": row["n_frames"],
         "σ model-only": row["sigma_model_only"], "σ model MD, Φ_DFT": row["sigma_model_md_phi_reference"],
         "KPCA overlap": row["kpca_overlap"], "stopped runs": len(row["stopped_runs"])}
    )
show(pd.DataFrame(md_rows))

# %%
kpca_arrays = {m: s["md"].load_arrays("CsPbI3") for m, s in stages.items()}
kpca_table = pd.concat(
    [pd.DataFrame({"model": m, "kpca1": a["kpca_coordinates"][:, 0], "kpca2": a["kpca_coordinates"][:, 1],
                   "set": ["AIMD" if label == 0 else "model MD" for label in a["kpca_labels"]]}) for m, a in kpca_arrays.items()]
)
page.figure_data(kpca_table, "real_test", "cspbi3_kpca", folder=csv_folder)
fig = figures.real_kpca_maps(kpca_arrays, f"CsPbI3 at {cspbi3.temperature_K:g} K: AIMD vs model MD")
plt.show()

# %% [markdown]
# {download}`Data of this figure (CSV) <real_test_data/cspbi3_kpca.csv>`
#
# **Reading the map.** The {glue:text}`rt_aimd_frames` AIMD frames are consecutive, {glue:text}`rt_aimd_dt` fs apart, so they
# trace one short path through configuration space ({glue:text}`rt_aimd_span` fs). The model frames
# are drawn from {glue:text}`rt_md_span` fs of the model's run. Two sets sampled over such different
# times need not overlap even if the model were exact, so here
# the map shows coverage, not model error. The overlap score is the fraction of model frames whose
# nearest frame is an AIMD frame. With {glue:text}`rt_kpca_frames` correlated model frames against
# {glue:text}`rt_aimd_frames`,
# that nearest frame is almost always another model frame, so the score is near zero by
# construction. A fair test needs AIMD as long as the model's run; the authors' 300 K trajectories
# (1.6 ps and more) are.
#
# ## NaCl, CaTiO3, KCl and CsPbI3: phonons against VASP and FHI-aims force constants
#
# Cubic CaTiO3 is dynamically unstable in DFT: its octahedra tilt. A model that reproduces the
# instability has imaginary modes of similar depth (the *min f* columns).

# %%
phonon_metrics = realdata.phonon_metrics_table(stages)
glue("rt_gamma_max", float(phonon_metrics["Γ acoustic |f| model (THz)"].max()), display=False)
page.figure_data(phonon_metrics, "real_test", "phonon_metrics", folder=csv_folder)
# two tables, so that each fits the page (the CSV has every column in one)
show(phonon_metrics[["model", "system", "RMSE(ω²) (THz²)", "RMSE(v_g) (THz·Å)", "MAE(f) (THz)"]])
show(phonon_metrics[["model", "system", "min f DFT (THz)", "min f model (THz)", "Γ acoustic |f| model (THz)", "stable DFT", "stable model"]])

# %%
path = next(iter(stages.values()))["phonons"].load_json("CaTiO3")
page.figure_data(realdata.bands_table(stages, "CaTiO3"), "real_test", "catio3_bands", folder=csv_folder)
fig = figures.real_bands(
    {m: s["phonons"].load_arrays("CaTiO3") for m, s in stages.items()}, "CaTiO3", path["band_labels"], path["band_connections"]
)
plt.show()

# %% [markdown]
# {download}`Data of this figure (CSV) <real_test_data/catio3_bands.csv>`
#
# ## Equivariant models in their own environment: SevenNet beside CHGNet
#
# SevenNet {cite:p}`park2024sevennet` is an equivariant message-passing potential of the NequIP
# family trained on MPtrj, like MACE-MP-0; its pretrained models ship inside the `sevenn` wheel. It
# needs a newer e3nn than mace-torch allows, so it cannot be installed beside this book's packages: it
# runs in an environment of its own, built on first use, behind a worker process (README, *A model in
# its own environment*). The models of this section ({glue:md}`rt_isolated_models`) are scored on
# what every model above has: the phonons of the four systems and σ of the CsPbI3 AIMD frames (σ DFT =
# {glue:text}`rt_sigma_dft:.3f`).
# They skip the model MD and KCl's 120 frames, which cost several times more per force call with
# them here ({glue:md}`rt_cost_per_call`); `isolated_models` adds the other registered SevenNet models
# (`sevennet-0-22may2024`, `sevennet-l3i5`; *Rerun it* below). The page
# [The harmonic-phonon question on 76 real double perovskites](real_phonons) scores the models on
# the paper's own family of compounds.

# %%
comparison = realdata.comparison_table({**stages, **isolated_stages})
glue("rt_cost_per_call", analysis.prose(analysis.measured_call_costs(paths.project_root() / "benchmarks" / "results" / "real_models_cpu.json", ["sevennet-0", "chgnet-0.3.0"])), display=False)
glue("rt_isolated_models", analysis.prose(", ".join(display_name(m) for m in isolated_models)) if isolated_models else "no models", display=False)
page.figure_data(comparison, "real_test", "model_comparison", folder=csv_folder)
show(comparison[["model", "kind", *[c for c in comparison.columns if c.startswith("RMSE")]]])
show(comparison[["model", *[c for c in comparison.columns if c.startswith(("CaTiO3", "CsPbI3", "σ"))]]])

# %% [markdown]
# {download}`Data of these tables (CSV) <real_test_data/model_comparison.csv>`
#
# ## KCl: σ and force errors on 120 randomly displaced supercells
#
# The phonopy KCl example displaces every atom of each 64-atom supercell at random; the RMS displacement
# of a frame runs from {glue:text}`rt_kcl_u_min:.2f` to {glue:text}`rt_kcl_u_max:.2f` Å,
# and records VASP forces. This is far beyond thermal motion at the large end, where ions nearly touch.
# The force error of each frame against its displacement amplitude shows where a model stops being
# reliable.

# %%
show(realdata.sigma_table(stages, "KCl"))

# %%
kcl_frames = realdata.frames_table(stages, "KCl")
glue("rt_kcl_u_min", float(kcl_frames["displacement_rms_ang"].min()), display=False)
glue("rt_kcl_u_max", float(kcl_frames["displacement_rms_ang"].max()), display=False)
page.figure_data(kcl_frames, "real_test", "kcl_force_error_vs_displacement", folder=csv_folder)
fig = figures.error_vs_amplitude(kcl_frames, "KCl")
plt.show()

# %% [markdown]
# {download}`Data of this figure (CSV) <real_test_data/kcl_force_error_vs_displacement.csv>`
#
# ## Summary and verdicts
#
# One row per model. The sentences below the table are built from these numbers when the page runs.

# %%
summary = realdata.summary_table(stages)
page.figure_data(summary, "real_test", "summary", folder=csv_folder)
show(summary.set_index("model").T.reset_index(names="quantity"))

# %%
display(Markdown("\n".join(f"- {realdata.verdict(model, by_stage)}" for model, by_stage in stages.items())))

# %% [markdown]
# **Caveats on the level of theory and on the numbers.**
# - CHGNet computes in float32 only. Finite differences of float32 forces at 0.01 Å break the
#   acoustic sum rule: the three Γ acoustic modes, zero for an exact Hessian, come out at up to
#   {glue:text}`rt_gamma_max:.2f` THz (column *Γ acoustic* above). A lowest frequency within that
#   distance of zero is noise, not an instability. The demo phonons page discusses the same effect.
# - The CsPbI3 reference is PBEsol. The CHGNet 0.x models learned PBE/PBE+U (Materials Project), and
#   the r2SCAN model learned a meta-GGA. Part of every difference is the functional, not the model:
#   PBE and PBEsol lattice constants and soft modes differ.
# - The models are evaluated at the reference cell, without relaxation, as in the paper. A model
#   whose equilibrium volume differs from the reference's then sees a strained crystal.
# - KCl's largest displacements probe short-range repulsion, which universal potentials learn from
#   few examples.
# - σ_DFT of CsPbI3 rests on {glue:text}`rt_aimd_frames` consecutive frames; σ(t) spreads over them by
#   {glue:text}`rt_sigma_spread:.1f` % (standard deviation over mean), and consecutive frames are not
#   independent, so differences of a few hundredths between models are within the sampling.
#
# ## Rerun it
#
# - Any registered model, of any kind (MACE checkpoint, ASE calculator, or a model in its own
#   environment): `make book MODELS="my-model"`. The README shows a registry YAML for each kind.
# - All four SevenNet models here: `make book PAGES="real_test" BOOK_PARAMS="isolated_models=sevennet-0,sevennet-0-22may2024,sevennet-l3i5,sevennet-mf-0"`.
# - One file at a time:
#   - `hdpbench sigma data/external/fhi-vibes/CsPbI3_aims_pbesol_700K_trajectory.nc --model M --json`
#   - `hdpbench phonons compare --unitcell data/external/phonopy/CaTiO3/POSCAR-unitcell --reference data/external/phonopy/CaTiO3/FORCE_SETS --model M --json`
# - Parameters of this page: `real_md_steps`, `real_md_discard`, `real_kpca_frames`, `real_models`, `isolated_models`,
#   e.g. `make book PAGES="real_test" BOOK_PARAMS="real_md_steps=2000"`.
# - As a notebook: `.venv/bin/jupytext --to ipynb notebooks/real_test.py -o real_test.ipynb`, then
#   `.venv/bin/jupyter lab real_test.ipynb` (both come with `make install`).
#
# ## Exercises
#
# 1. Which of the two σ's moves closer to σ_DFT: the model's forces with Φ_DFT, or with its own Φ? The
#    paper finds that the Hessian, not the force, carries most of the error. Does that hold here?
# 2. Plot σ(t) against the frame's RMS displacement for CsPbI3 (the CSV above has both). Is the
#    model's error in σ larger for the more displaced frames?
# 3. Rerun with `real_md_steps=2000`. Does σ model-only converge, and does the KPCA overlap change?
