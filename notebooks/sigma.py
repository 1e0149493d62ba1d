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
# # 2. The anharmonicity score σ on reference trajectories
#
# **What you will learn.** How far the real forces along a 300 K trajectory are from the harmonic
# ones, and whether a model reproduces that distance, first with the reference Hessian and then with
# its own.
#
# **The physics in a few lines.** With $u$ the displacement of every atom from the reference supercell
# (minimum image), the harmonic force is $F^{(2)}_{i\alpha}=-\sum_{j\beta}\Phi_{i\alpha,j\beta}\,u_{j\beta}$.
# The anharmonicity score {cite:p}`knoop2020anharmonicity` compares what is left over to the force itself,
#
# $$\sigma(t)=\sqrt{\frac{\sum_{i\alpha}\big(F_{i\alpha}(t)-F^{(2)}_{i\alpha}(t)\big)^2}{\sum_{i\alpha}F_{i\alpha}(t)^2}},\qquad \sigma=\langle\sigma(t)\rangle_t ,$$
#
# $\sigma<0.5$: weakly anharmonic; $0.5\le\sigma\le 1$: strongly anharmonic; $\sigma>1$: dynamically
# unstable at $T$. Three scores per compound: σ_ref (reference forces, Φ_ref), σ_model(Φ_ref) (model
# forces on the same frames, reference Φ: a strict test of the forces) and σ_model(Φ_model)
# (everything from the model). Pooling the sums over all frames before the ratio gives the pooled σ
# of FHI-vibes, shown beside the time average below.

# %% tags=["parameters"]
dataset = "demo"
models = ["demo-small-data", "demo-more-data"]
compounds = None
device = "cpu"
dtype = "float32"
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
sigma = analysis.sigma_table(dataset, models, **common)
panels = analysis.sigma_confusion_panels(sigma, models)
accuracy = {(panel["model"], panel["approach_key"]): panel["accuracy"] for panel in panels}
glue("sg_paper_finding", analysis.prose(published.FINDINGS["sigma_model_fc"]), display=False)
glue("sg_dataset", analysis.prose(label), display=False)
glue("sg_n_compounds", int(sigma["compound"].nunique()), display=False)
glue("sg_frames", int(sigma["n_frames"].median()), display=False)
last = models[-1]
glue("sg_last_model", analysis.prose(last), display=False)
glue("sg_accuracy_ref_fc", 100 * accuracy[(last, "reference_fc")], display=False)
glue("sg_accuracy_model_fc", 100 * accuracy[(last, "model_fc")], display=False)
glue("sg_mean_shift_model_fc", float(sigma[sigma["model"] == last]["delta_sigma_model_fc"].mean()), display=False)
# the paper's Fig. 3 as printed, one row of panels per paper model (Φ_DFT left, Φ_MACE right)
published_panels = [
    {"counts": published.fig3_counts(model, approach), "title": f"{published.PAPER_LABELS[model]}\n{name}"}
    for model in published.PAPER_MODELS for approach, name in (("reference_fc", "Φ_DFT"), ("model_fc", "Φ_MACE"))
]
totals = published.fig3_totals()["reference_fc"]
for k, model in enumerate(published.PAPER_MODELS):
    glue(f"sg_pub_total_{k}", totals[model], display=False)
    glue(f"sg_pub_label_{k}", analysis.prose(published.PAPER_LABELS[model]), display=False)
reconciliation = pd.DataFrame(published.fig3_reconciliation())
class_columns = [c for c in reconciliation.columns if c.startswith("DFT class")]
glue("sg_pub_n_valid", published.N_VALID_AIMD, display=False)
glue("sg_pub_excess_max", int(reconciliation[f"minus {published.N_VALID_AIMD} valid AIMD"].max()), display=False)
glue("sg_pub_row_spread", int((reconciliation[class_columns].max() - reconciliation[class_columns].min()).max()), display=False)
glue("sg_pub_same_totals", analysis.prose(
    "the same" if reconciliation.groupby("model")["total"].nunique().eq(1).all() else "not the same"), display=False)
recomputed_summary = analysis.confusion_summary(
    [{"source": "recomputed", "model": p["model"], "approach": p["approach"], "counts": p["counts"]} for p in panels]
)
fractions = pd.concat([recomputed_summary, analysis.published_fig3_summary()], ignore_index=True)
first = sigma["compound"].iloc[0]
glue("sg_frame_files", analysis.prose(" then ".join(f"`{f}`" for f in analysis.frame_set_files(dataset, first, settings.sigma.frames)) + f" for {first}"), display=False)
glue("sg_frame_set", analysis.prose(f"`{settings.sigma.frames}`"), display=False)
glue("sg_discard", settings.sigma.discard, display=False)
glue("sg_max_frames", analysis.prose(f"evenly subsampled to at most {settings.sigma.max_frames} frames per compound (the paper uses every frame)"
                                     if settings.sigma.max_frames else "every frame, as the paper"), display=False)
glue("sg_sigma_displacement", settings.phonons.sigma_displacement, display=False)

# %% [markdown]
# {glue:md}`sg_dataset`. {glue:text}`sg_n_compounds` compounds, a median of {glue:text}`sg_frames`
# frames each.
#
# **Settings, as the authors ran them** (their `mace/anharmonic_score_benchmarking.py`; the
# [data page](../data.md) has the table of which frames feed which number). Frames: frame set
# {glue:md}`sg_frame_set`, {glue:md}`sg_frame_files`, the first {glue:text}`sg_discard` steps of each
# file dropped, {glue:md}`sg_max_frames`; `vasprun_prod.xml` is not part of it. Φ_model of
# σ_model(Φ_model): finite displacements of {glue:text}`sg_sigma_displacement` Å, the authors'
# `PhonopyWorker` default (the bands of section 1 use 0.01 Å). The per-compound score is the time
# average ⟨σ(t)⟩, as the paper's notation ⟨σ_t⟩ and the authors' script (`sigma.mean()`).
#
# ## Fig. 3 — confusion matrices
#
# Rows: the reference class; columns: the model's. With Φ_ref, {glue:md}`sg_last_model` puts
# {glue:text}`sg_accuracy_ref_fc:.0f` % of the compounds in the reference class; with its own Φ,
# {glue:text}`sg_accuracy_model_fc:.0f` %. Where a panel's model is one of the paper's four, its
# published count is shown in brackets; the paper's own panels follow below.

# %%
fig = figures.confusion_grid(panels, label)
plt.show()
page.figure_data(analysis.confusion_table(panels), "sigma", "fig3")

# %% [markdown]
# {download}`Data of this figure (CSV) <sigma_data/fig3.csv>`
#
# ### Fig. 3 as published
#
# The paper's counts (DFT reference, its four foundation models), for comparison with the panels
# above. One row per model: Φ_DFT on the left, the model's own Φ (Φ_MACE) on the right.

# %%
fig = figures.confusion_grid(published_panels, "Published counts: Yang et al., PCCP 2026, Fig. 3 (reference = DFT)")
plt.show()
page.figure_data(analysis.confusion_table(published_panels).drop(columns="published_count"), "sigma", "fig3_published")

# %% [markdown]
# {download}`Data of this figure (CSV) <sigma_data/fig3_published.csv>`
#
# **The published totals differ.** The paper computes σ on {glue:text}`sg_pub_n_valid` trajectories
# with a valid AIMD run, but its panels add up to {glue:text}`sg_pub_total_0` ({glue:md}`sg_pub_label_0`),
# {glue:text}`sg_pub_total_1` ({glue:md}`sg_pub_label_1`), {glue:text}`sg_pub_total_2`
# ({glue:md}`sg_pub_label_2`) and {glue:text}`sg_pub_total_3` ({glue:md}`sg_pub_label_3`) compounds:
# up to {glue:text}`sg_pub_excess_max` more than that (the totals of a model's two panels are
# {glue:md}`sg_pub_same_totals`). The rows are σ_DFT classes, which do not depend on the model, yet the
# row sums differ between models by up to {glue:text}`sg_pub_row_spread` compounds per class: the
# panels were not all counted on the same set of compounds. The paper does not say why.

# %%
display(page.readable(reconciliation))

# %% [markdown]
# ### Correct and misplaced fractions
#
# Per panel: compounds in the reference class (diagonal) out of all; compounds put in a more stable
# class (lower triangle) out of those outside the most stable reference class; compounds put in a
# less stable class (upper triangle) out of those outside the least stable one. Recomputed panels
# first, then the paper's; {download}`the numbers as CSV <sigma_data/fig3_fractions.csv>`.

# %%
page.figure_data(fractions, "sigma", "fig3_fractions")
display(page.readable(analysis.readable_triangles(fractions, ["source", "model", "approach"])))

# %% [markdown]
# ## Fig. S9 — how σ shifts
#
# Mean σ_model(Φ_model) − σ_ref for {glue:md}`sg_last_model`: {glue:text}`sg_mean_shift_model_fc:+.3f`.
# Paper: {glue:md}`sg_paper_finding`

# %%
fig = figures.delta_sigma_distributions(sigma, models, label)
plt.show()
shift_columns = ["model", "compound", "halide", "sigma_reference", "sigma_model_fc_reference", "sigma_model_fc_model",
                 "delta_sigma_reference_fc", "delta_sigma_model_fc"]
page.figure_data(sigma[shift_columns], "sigma", "figS9")

# %% [markdown]
# {download}`Data of this figure (CSV) <sigma_data/figS9.csv>`
#
# ## Fig. S7 — σ(t) along the trajectory
#
# σ frame by frame for {glue:md}`sg_last_model`, for the compound it makes most stable with its own
# Φ (the lowest σ_model(Φ_model) − σ_ref, Δσ) and the one it gets closest: {glue:md}`sg_s7_compounds`.
# Time runs over the production files placed end to end (1 fs per step). The first
# {glue:text}`sg_discard` steps of each file are dropped as equilibration and the kept frames are
# spaced evenly (a median of {glue:text}`sg_frames` per compound in this build), so each file's line
# starts late and is drawn apart from the next.

# %%
chosen = analysis.trace_compounds(sigma, last)
frames_stage = analysis.stage_results(StageName.SIGMA_REFERENCE_FRAMES, dataset, last, **common)
traces = analysis.sigma_trace_table({compound: frames_stage.load_arrays(compound) for compound in chosen})
glue("sg_s7_compounds", analysis.prose(analysis.trace_summary(sigma, last, chosen)), display=False)
fig = figures.sigma_time_traces(traces, chosen, last, label)
plt.show()
page.figure_data(traces, "sigma", "figS7")

# %% [markdown]
# {download}`Data of this figure (CSV) <sigma_data/figS7.csv>`
#
# ## Self-check: σ_DFT stored in the authors' database
#
# The summary database `double_halide_pv.db` stores a σ_DFT per compound (`sigma_300K_single`). It is
# not the σ of Fig. 3: the authors' `collect_data.py` computes it over **every** production file,
# none dropped, as **one pooled ratio** of standard deviations. Recomputed that way from the archives
# (left), it should equal the stored value; the paper's ⟨σ(t)⟩ over its frame set (right) need not.
# {glue:md}`sg_db_note`

# %%
check = analysis.sigma_db_check(dataset, compounds, discard=settings.sigma.discard)
agreement = analysis.sigma_db_agreement(check)
glue("sg_db_n", agreement["n"], display=False)
glue("sg_db_recomputed", analysis.prose(analysis.sigma_db_sentence(agreement)), display=False)
glue("sg_db_median_conv", 100 * agreement["median_paper_vs_db"], display=False)
glue("sg_db_conv_range", analysis.prose("{:+.1f} % to {:+.1f} %".format(*(100 * v for v in agreement["paper_vs_db_range"]))), display=False)
glue("sg_db_same_class", agreement["same_class"], display=False)
glue("sg_db_note", analysis.prose(analysis.sigma_db_note(dataset)), display=False)
fig = figures.sigma_db_self_check(check, label)
plt.show()
page.figure_data(check, "sigma", "db_self_check")

# %% [markdown]
# {download}`Data of this figure (CSV) <sigma_data/db_self_check.csv>`
#
# {glue:md}`sg_db_recomputed` The paper's σ differs from the
# stored one by {glue:md}`sg_db_conv_range` (median {glue:text}`sg_db_median_conv:+.1f` %), and puts
# {glue:text}`sg_db_same_class` of {glue:text}`sg_db_n` compounds in the same class: which number a
# comparison uses matters near the class boundaries.
#
# ## Time-averaged and pooled σ
#
# The paper's σ is the time average ⟨σ(t)⟩; FHI-vibes reports the pooled ratio (sums over all frames
# first). Both for σ_ref and σ_model(Φ_model), per compound and model; the table behind it (also
# σ_model(Φ_ref)) is {download}`this CSV <sigma_data/pooled.csv>`.

# %%
pooled_labels = {
    "sigma_pooled_reference": "σ_ref pooled", "sigma_pooled_model_fc_reference": "σ_model(Φ_ref) pooled",
    "sigma_pooled_model_fc_model": "σ_model(Φ_model) pooled",
}
# each time average beside its pooled value
pooled_columns = ["model", "compound", "sigma_reference", "sigma_pooled_reference", "sigma_model_fc_reference",
                  "sigma_pooled_model_fc_reference", "sigma_model_fc_model", "sigma_pooled_model_fc_model"]
page.figure_data(sigma[pooled_columns], "sigma", "pooled")
shown = ["model", "compound", "sigma_reference", "sigma_pooled_reference", "sigma_model_fc_model", "sigma_pooled_model_fc_model"]
display(page.readable(sigma[shown], labels=pooled_labels))

# %% [markdown]
# ## Per-species σ and force errors
#
# σ restricted to the atoms of one element (reference forces, Φ_ref), beside each model's force error
# on the same frames.

# %%
species = analysis.per_species_sigma_table(sigma)
most_common = species["most anharmonic"].value_counts()
glue("sg_top_species", analysis.prose(most_common.index[0]), display=False)
glue("sg_top_species_count", int(most_common.iloc[0]), display=False)
glue("sg_n_species_compounds", len(species), display=False)
largest = species["its σ_ref"].idxmax()
glue("sg_max_species_sigma", float(species.loc[largest, "its σ_ref"]), display=False)
glue("sg_max_species", analysis.prose(f"{species.loc[largest, 'most anharmonic']} in {largest}"), display=False)
display(page.readable(species.reset_index()))

# %% [markdown]
# In {glue:text}`sg_top_species_count` of {glue:text}`sg_n_species_compounds` compounds the most anharmonic
# element is {glue:md}`sg_top_species`. A per-element σ divides by the forces on that element's atoms
# alone, so it can exceed the compound's σ: here the largest is {glue:text}`sg_max_species_sigma:.2f`
# ({glue:md}`sg_max_species`). It is large either because the element carries the soft or unstable
# modes, or because its forces are small and any error in Φ_ref shows in the ratio, which is why a
# noisy Φ_ref inflates the heavy A-site cations' σ first (the data page's check of Φ_ref). Compare with the formulas: is it the large A-site cation, held
# loosely in its cage of octahedra (the "rattler" picture of halide perovskites), or the halide?

# %% [markdown]
# ## Exercises
#
# 1. σ is a ratio of sums over a frame. Predict how σ_ref changes if you keep only every tenth frame
#    (`n_frames`), then check. Which compounds are most sensitive, and why?
# 2. σ_model(Φ_ref) mixes model forces with the reference Hessian. If a model's forces were the
#    reference forces plus uncorrelated noise of size ε, how would σ change? Test the idea on the
#    force-MAE column.
# 3. The table "Time-averaged and pooled σ" puts both definitions side by side. When do they differ
#    most: for compounds with a few frames of large σ(t), or with a steady one?

# %% [markdown]
# ## Rerun this page

# %%
display(Markdown(book.rerun_instructions("sigma")))
