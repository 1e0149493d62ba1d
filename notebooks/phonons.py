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
# **The physics in a few lines.** Displacing each symmetry-inequivalent atom by a small step $\Delta$ in the 80-atom
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
# The paper's printed eq. 2 puts the absolute difference $|\omega^2_{\rm MACE}-\omega^2_{\rm DFT}|$
# under the root, without a square; the authors' analysis code squares the signed difference. This
# book follows the code (the formula above): it is what the published numbers were computed with,
# and only the squared form is a root-mean-square error in THz² (the printed one would be in THz).
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
smoke = False  # tiny settings: every code path runs, the numbers mean nothing (tests)
# this page only (they choose what Fig. 1a shows, no stage result): the paper's chlorides with omat-0-medium
fig1a_halide = "Cl"
fig1a_model = "medium-omat-0"

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from hdpbench.book import analysis, figures, page
from hdpbench.pipeline.names import StageName
from hdpbench.book import build as book
from hdpbench.data import published

figures.use_book_style()
settings = analysis.book_settings(
    dtype=dtype, n_frames=n_frames, md_steps=md_steps, md_runs=md_runs, kpca_frames=kpca_frames, discard=discard, smoke=smoke
)
label = analysis.dataset_label(dataset)
common = {"compounds": compounds, "settings": settings, "device": device, "results_root": results}
phonons = analysis.phonon_table(dataset, models, **common)
best_model = analysis.lowest_median_model(phonons)
best_rows = analysis.selected_rows(phonons, best_model)
# Fig. 1a and Fig. S2: the paper's halide and model where this dataset and these models have them
selection = analysis.fig1a_selection(phonons, fig1a_halide, fig1a_model)
focus = analysis.selected_rows(phonons, selection["model"], selection["halide"])
best, worst = focus.loc[focus["rmse_omega2_thz2"].idxmin()], focus.loc[focus["rmse_omega2_thz2"].idxmax()]
glue("ph_dataset", analysis.prose(label), display=False)
glue("ph_n_compounds", int(phonons["compound"].nunique()), display=False)
glue("ph_models", analysis.prose(", ".join(models)), display=False)
glue("ph_best_model", analysis.prose(best_model), display=False)
glue("ph_fig1a_shown", analysis.prose(selection["sentence"]), display=False)
glue("ph_fig1a_model", analysis.prose(selection["label"]), display=False)
glue("ph_best_compound", analysis.prose(best["compound"]), display=False)
glue("ph_worst_compound", analysis.prose(worst["compound"]), display=False)
glue("ph_best_rmse", float(best["rmse_omega2_thz2"]), display=False)
glue("ph_worst_rmse", float(worst["rmse_omega2_thz2"]), display=False)
medians = phonons.groupby("model", sort=False)["rmse_omega2_thz2"].median()
glue("ph_median_ratio", float(medians.max() / medians.min()), display=False)
glue("ph_gamma_acoustic", float(best_rows["gamma_acoustic_max_thz_model"].median()), display=False)
glue("ph_gamma_acoustic_reference", float(best_rows["gamma_acoustic_max_thz_reference"].median()), display=False)
glue("ph_paper_finding", analysis.prose(published.FINDINGS["phonons"]), display=False)
glue("ph_displacement", settings.phonons.displacement, display=False)
glue("ph_sigma_displacement", settings.phonons.sigma_displacement, display=False)
glue("ph_points", settings.phonons.points_per_segment, display=False)

# %% [markdown]
# {glue:md}`ph_dataset`. Models: {glue:md}`ph_models`; {glue:text}`ph_n_compounds` compounds.
#
# **Settings, as the authors ran them.** Φ_model of these bands: $\Delta$ = {glue:text}`ph_displacement` Å,
# the authors' phonon-band script (`phonon_plotter.py`); the Φ_model that the σ pages read is a second
# one at $\Delta$ = {glue:text}`ph_sigma_displacement` Å, their `PhonopyWorker` default (settings
# `phonons.displacement` and `phonons.sigma_displacement`). Φ_model is computed on the reference's
# relaxed cell, not re-relaxed with the model, and compared on {glue:text}`ph_points` q-points per
# segment of the seekpath path, as published.
#
# ## Fig. 1a — the two errors per compound
#
# {glue:md}`ph_fig1a_shown`
#
# Among the compounds shown, the closest is {glue:md}`ph_best_compound` (RMSE(ω²) =
# {glue:text}`ph_best_rmse:.3g` THz²) and the farthest is {glue:md}`ph_worst_compound`
# ({glue:text}`ph_worst_rmse:.3g` THz²). The paper's chlorides span Cs2KDyCl6 (best) to Na2CuAuCl6
# (worst, imaginary modes under-estimated).

# %%
fig = figures.phonon_error_scatter(phonons, selection["model"], label, halide=selection["halide"])
plt.show()
scatter_columns = ["model", "compound", "halide", "rmse_omega2_thz2", "rmse_vg_thz_ang", "sigma_reference_db"]
page.figure_data(phonons[scatter_columns], "phonons", "fig1a")

# %% [markdown]
# {download}`Data of this figure (CSV) <phonons_data/fig1a.csv>` (all models and halides; the figure shows one selection).

# %% [markdown]
# ### Does the error track σ_ref?
#
# The paper reads Fig. 1a as "the more anharmonic, the larger the error", in every halide (Figs.
# S3–S6). As a number: the Spearman rank correlation ρ of each RMSE with σ_ref (summary database),
# per model, over all halides and within each halide that has at least
# {glue:text}`ph_min_correlation_n` compounds with σ_ref (ρ = 1: the ranks agree perfectly; p:
# two-sided, against no correlation; exact, over every ordering, below
# {glue:text}`ph_small_correlation_n` compounds). {glue:md}`ph_correlation`

# %%
correlations = analysis.sigma_rank_correlations(phonons)
glue("ph_min_correlation_n", analysis.MIN_COMPOUNDS_FOR_CORRELATION, display=False)
glue("ph_small_correlation_n", analysis.SMALL_N_FOR_CORRELATION, display=False)
glue("ph_correlation", analysis.prose(analysis.correlation_sentence(correlations, selection["model"], selection["halide"] or "all halides")), display=False)
page.readable(
    correlations,
    labels={"scope": "compounds", "n": "n", "rho_omega2": "ρ(RMSE(ω²), σ_ref)", "p_omega2": "p (ω²)", "rho_vg": "ρ(RMSE(v_g), σ_ref)",
            "p_vg": "p (v_g)"},
    digits=2,
    missing="undefined",
).set_table_styles([{"selector": "td.col0", "props": "white-space: nowrap;"}], overwrite=False)

# %% [markdown]
# ## Figs. S3–S6 — the same, one figure per halide and one panel per model
#
# As Fig. 1a, for every model, one figure per halide; one colour scale for σ_ref per figure.

# %%
fig = figures.halide_error_panels(phonons, "F", models, label)
plt.show()
page.figure_data(phonons[phonons["halide"] == "F"][scatter_columns], "phonons", "figS3to6_F")

# %% [markdown]
# {download}`Data of this figure (CSV) <phonons_data/figS3to6_F.csv>`

# %%
fig = figures.halide_error_panels(phonons, "Cl", models, label)
plt.show()
page.figure_data(phonons[phonons["halide"] == "Cl"][scatter_columns], "phonons", "figS3to6_Cl")

# %% [markdown]
# {download}`Data of this figure (CSV) <phonons_data/figS3to6_Cl.csv>`

# %%
fig = figures.halide_error_panels(phonons, "Br", models, label)
plt.show()
page.figure_data(phonons[phonons["halide"] == "Br"][scatter_columns], "phonons", "figS3to6_Br")

# %% [markdown]
# {download}`Data of this figure (CSV) <phonons_data/figS3to6_Br.csv>`

# %%
fig = figures.halide_error_panels(phonons, "I", models, label)
plt.show()
page.figure_data(phonons[phonons["halide"] == "I"][scatter_columns], "phonons", "figS3to6_I")

# %% [markdown]
# {download}`Data of this figure (CSV) <phonons_data/figS3to6_I.csv>`

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
# ## Fig. S1 — the halide trend behind it
#
# The paper explains the falling error from fluorides to iodides with two properties of the
# reference: the anharmonicity, which falls from light to heavy halides (Fig. S1a), and the mean
# phonon frequency ⟨ω⟩, which rises from iodides to fluorides (Fig. S1b, a steeper potential-energy
# surface being harder to learn). Here σ_ref is the summary-database value of each compound (σ ≥ 2
# counts as missing) and ⟨ω⟩ is the mean of the reference frequencies over {glue:md}`ph_band_grid`
# of the seekpath path (imaginary modes negative): a path average, not the Brillouin-zone mesh
# average of the authors' earlier study. Medians by halide: σ_ref {glue:md}`ph_sigma_by_halide`; ⟨ω⟩ {glue:md}`ph_omega_by_halide`.

# %%
reference_arrays = analysis.reference_band_arrays(dataset, models, list(phonons["compound"].unique()), **common)
halide_table = analysis.halide_reference_table(phonons, reference_arrays)
glue("ph_band_grid", analysis.prose(analysis.band_grid_sentence(reference_arrays)), display=False)
glue("ph_sigma_by_halide", analysis.prose(analysis.halide_medians_sentence(halide_table, "sigma_reference_db")), display=False)
glue("ph_omega_by_halide", analysis.prose(analysis.halide_medians_sentence(halide_table, "mean_frequency_thz", "THz")), display=False)
fig = figures.halide_reference_distributions(halide_table, label)
plt.show()
page.figure_data(halide_table, "phonons", "figS1")

# %% [markdown]
# {download}`Data of this figure (CSV) <phonons_data/figS1.csv>`

# %% [markdown]
# Medians per model over the same compounds (the paper's first finding is that more training data
# helps; for the demo models this is the same question at toy scale):

# %%
page.readable(phonons.groupby("model", sort=False)[["rmse_omega2_thz2", "rmse_vg_thz_ang", "mae_freq_thz"]].median(), index=True)

# %% [markdown]
# ## Fig. S2 — bands of the best and the worst compound
#
# The two extremes of Fig. 1a: reference (black) and {glue:md}`ph_fig1a_model` (dashed) on the same
# q-points of the seekpath path.

# %%
stage = analysis.stage_results(StageName.PHONONS, dataset, selection["model"], **common)
band_panels = [(f"{row['compound']} ({which})", stage.load_arrays(row["compound"])) for which, row in (("best", best), ("worst", worst))]
fig = figures.band_comparison(band_panels, selection["model"], label)
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
page.readable(metrics.astype(object).T, index=True)  # object: the counts stay integers

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
