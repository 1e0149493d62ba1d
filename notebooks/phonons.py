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
# # 1. Harmonic phonons: is the model's Hessian the reference's?
#
# **What you will learn.** How finite displacements turn a force field into force constants Φ, how
# two sets of phonon bands are compared on the same q-points, and why errors in ω² and in group
# velocities tell different stories.
#
# **The physics in a few lines.** Displacing each symmetry-inequivalent atom by 0.01 Å in the 80-atom
# supercell and recording the forces gives $\Phi_{i\alpha,j\beta}=-\partial F_{i\alpha}/\partial u_{j\beta}$
# (phonopy {cite:p}`togo2015phonopy`). Diagonalising the dynamical matrix $D(\mathbf q)$ gives
# $\omega^2(\mathbf q)$; imaginary modes appear as negative $\omega^2$, so the comparison uses the
# *signed* square, $\omega^2=\mathrm{sign}(f)\,f^2$. On the seekpath path (50 points per segment),
# with $n$ the band index,
#
# $$\mathrm{RMSE}(\omega^2)=\sqrt{\tfrac{1}{N_qN_b}\sum_{q,n}\big(\omega^2_{\rm model}-\omega^2_{\rm ref}\big)^2},$$
#
# $$\mathrm{RMSE}(v_g)=\sqrt{\tfrac{1}{3N_qN_b}\sum_{q,n,\alpha}\big(v_{\rm model}-v_{\rm ref}\big)^2},\qquad v_g=\partial\omega/\partial q .$$
#
# A compound counts as dynamically unstable if any frequency lies below −0.5 THz
# {cite:p}`lee2024mlip_phonons`.

# %% tags=["parameters"]
dataset = "demo"  # registered dataset name or a folder in the authors' layout
models = ["demo-small-data", "demo-more-data"]  # registry names or checkpoint paths
# None = every compound of the dataset
compounds = None
device = "cpu"
dtype = "float32"
# results folder; None = HDPBENCH_RESULTS or results/
results = None
# stage sizes, the same on every section page so that pages share each other's results
# (None = the paper's): σ frames per compound, MD steps and runs per compound, KPCA frames per set,
# frames dropped from the start of each production file
n_frames = None
md_steps = None
md_runs = None
kpca_frames = None
discard = None
dry_run = False  # tiny settings (smoke tests)

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from hdpbench import analysis, book, figures, page, published

figures.use_book_style()
settings = analysis.book_settings(
    dtype=dtype, n_frames=n_frames, md_steps=md_steps, md_runs=md_runs, kpca_frames=kpca_frames, discard=discard, dry_run=dry_run
)
label = analysis.dataset_label(dataset)
common = {"compounds": compounds, "settings": settings, "device": device, "results_root": results}
phonons = analysis.phonon_table(dataset, models, **common)
best_model = phonons.groupby("model")["rmse_omega2_thz2"].median().idxmin()
focus = phonons[phonons["model"] == best_model]
best, worst = focus.loc[focus["rmse_omega2_thz2"].idxmin()], focus.loc[focus["rmse_omega2_thz2"].idxmax()]
glue("ph_dataset", analysis.prose(label), display=False)
glue("ph_n_compounds", int(phonons["compound"].nunique()), display=False)
glue("ph_models", analysis.prose(", ".join(models)), display=False)
glue("ph_best_model", analysis.prose(best_model), display=False)
glue("ph_best_compound", analysis.prose(best["compound"]), display=False)
glue("ph_worst_compound", analysis.prose(worst["compound"]), display=False)
glue("ph_best_rmse", float(best["rmse_omega2_thz2"]), display=False)
glue("ph_worst_rmse", float(worst["rmse_omega2_thz2"]), display=False)
medians = phonons.groupby("model", sort=False)["rmse_omega2_thz2"].median()
glue("ph_median_ratio", float(medians.max() / medians.min()), display=False)
glue("ph_gamma_acoustic", float(focus["gamma_acoustic_max_thz_model"].median()), display=False)
glue("ph_gamma_acoustic_reference", float(focus["gamma_acoustic_max_thz_reference"].median()), display=False)
glue("ph_paper_finding", analysis.prose(published.FINDINGS["phonons"]), display=False)

# %% [markdown]
# {glue:md}`ph_dataset`. Models: {glue:md}`ph_models`; {glue:text}`ph_n_compounds` compounds.
#
# ## Fig. 1a — the two errors per compound
#
# With the model of lowest median RMSE(ω²), **{glue:md}`ph_best_model`**, the closest compound is
# {glue:md}`ph_best_compound` (RMSE(ω²) = {glue:text}`ph_best_rmse:.3g` THz²) and the farthest is
# {glue:md}`ph_worst_compound` ({glue:text}`ph_worst_rmse:.3g` THz²). The paper's chlorides span
# Cs2KDyCl6 (best) to Na2CuAuCl6 (worst, imaginary modes under-estimated).

# %%
fig = figures.phonon_error_scatter(phonons, best_model, label)
plt.show()
scatter_columns = ["model", "compound", "halide", "rmse_omega2_thz2", "rmse_vg_thz_ang", "sigma_reference_db"]
page.figure_data(phonons[scatter_columns], "phonons", "fig1a")

# %% [markdown]
# {download}`Data of this figure (CSV) <phonons_data/fig1a.csv>` (all models; the figure shows one).

# %% [markdown]
# ## Fig. 1b,c — by halide and model
#
# The median RMSE(ω²) of the worst model is {glue:text}`ph_median_ratio:.2f` times that of the best.
# Paper: {glue:md}`ph_paper_finding`

# %%
fig = figures.phonon_error_boxes(phonons, models, label)
plt.show()
page.figure_data(phonons[["model", "compound", "halide", "rmse_omega2_thz2", "rmse_vg_thz_ang"]], "phonons", "fig1bc")

# %% [markdown]
# {download}`Data of this figure (CSV) <phonons_data/fig1bc.csv>`

# %% [markdown]
# Medians per model over the same compounds (the paper's first finding is that more training data
# helps; for the demo models this is the same question at toy scale):

# %%
page.readable(phonons.groupby("model", sort=False)[["rmse_omega2_thz2", "rmse_vg_thz_ang", "mae_freq_thz"]].median(), index=True)

# %% [markdown]
# ## Fig. S2 — bands of the best and the worst compound
#
# Reference (black) and {glue:md}`ph_best_model` (dashed) on the same q-points of the seekpath path.

# %%
stage = analysis.stage_results("phonons", dataset, best_model, **common)
band_panels = [(f"{row['compound']} ({which})", stage.load_arrays(row["compound"])) for which, row in (("best", best), ("worst", worst))]
fig = figures.band_comparison(band_panels, best_model, label)
plt.show()
page.figure_data(
    pd.concat([analysis.band_table(arrays, title.split()[0]) for title, arrays in band_panels], ignore_index=True), "phonons", "figS2"
)

# %% [markdown]
# {download}`Data of this figure (CSV) <phonons_data/figS2.csv>`

# %% [markdown]
# ## Lee & Xia metrics
#
# The metrics of {cite:t}`lee2024mlip_phonons`:
# mean absolute errors of the frequencies along the path, of the Helmholtz free energy F (kJ/mol),
# heat capacity C_v and entropy S (J/K/mol) per unit cell at 300 and 1000 K (phonopy, q-mesh length
# 75, modes below 0.1 THz and the three Γ acoustic modes left out), and the fraction of compounds whose
# stability class (−0.5 THz threshold) the model gets right.
#
# The last columns measure how far each Φ is from translational invariance: the largest of the three
# Γ acoustic frequencies, which an exact Hessian puts at zero. Finite displacements break it through
# noise in the forces (an SCF converged to a finite tolerance, float32 arithmetic) and cutoffs; the
# paper's workflow, followed here, symmetrises neither Φ_ref nor Φ_model, so this error is part of what
# RMSE(ω²) measures near Γ. Median over compounds: {glue:text}`ph_gamma_acoustic:.3f` THz for
# {glue:md}`ph_best_model`'s Φ, {glue:text}`ph_gamma_acoustic_reference:.3f` THz for Φ_ref.

# %%
metrics = analysis.lee_xia_metrics(phonons)
page.readable(metrics.T, index=True)

# %% [markdown]
# ## Exercises
#
# 1. Rerun with `dtype = "float64"`. Predict first: does RMSE(ω²) change more for soft (low-frequency)
#    or stiff compounds? (Finite differences of float32 forces lose digits where forces are small.)
# 2. Change the displacement with `settings.with_overrides(["phonons.displacement=0.02"])` (the
#    authors' other script). Which compounds move most, and why would anharmonic ones?
# 3. Colour Fig. 1a by halide instead of σ_ref: is the halide or the anharmonicity the better
#    predictor of the error?

# %% [markdown]
# ## Rerun this page

# %%
display(Markdown(book.rerun_instructions("phonons")))
