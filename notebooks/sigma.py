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
dry_run = False  # tiny settings (smoke tests)

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from myst_nb import glue

from hdpbench import analysis, book, figures, page, published

figures.use_book_style()
settings = analysis.book_settings(
    dtype=dtype, n_frames=n_frames, md_steps=md_steps, md_runs=md_runs, kpca_frames=kpca_frames, discard=discard, dry_run=dry_run
)
label = analysis.dataset_label(dataset)
common = {"compounds": compounds, "settings": settings, "device": device, "results_root": results}
sigma = analysis.sigma_table(dataset, models, **common)
panels, accuracy = [], {}
for approach, column, name in (("reference_fc", "sigma_model_fc_reference", "Φ_ref"), ("model_fc", "sigma_model_fc_model", "Φ_model")):
    for model in models:
        rows = sigma[sigma["model"] == model]
        result = analysis.confusion(rows["sigma_reference"], rows[column])
        accuracy[(model, approach)] = result["accuracy"]
        panels.append({"counts": result["counts"], "title": f"{figures.display_name(model)}\n{name}", "published": published.fig3_counts(model, approach)})
glue("sg_paper_finding", analysis.prose(published.FINDINGS["sigma_model_fc"]), display=False)
glue("sg_dataset", analysis.prose(label), display=False)
glue("sg_n_compounds", int(sigma["compound"].nunique()), display=False)
glue("sg_frames", int(sigma["n_frames"].median()), display=False)
last = models[-1]
glue("sg_last_model", analysis.prose(last), display=False)
glue("sg_accuracy_ref_fc", 100 * accuracy[(last, "reference_fc")], display=False)
glue("sg_accuracy_model_fc", 100 * accuracy[(last, "model_fc")], display=False)
glue("sg_mean_shift_model_fc", float(sigma[sigma["model"] == last]["delta_sigma_model_fc"].mean()), display=False)

# %% [markdown]
# {glue:md}`sg_dataset`. {glue:text}`sg_n_compounds` compounds, a median of {glue:text}`sg_frames`
# frames each.
#
# ## Fig. 3 — confusion matrices
#
# Rows: the reference class; columns: the model's. With Φ_ref, {glue:md}`sg_last_model` puts
# {glue:text}`sg_accuracy_ref_fc:.0f` % of the compounds in the reference class; with its own Φ,
# {glue:text}`sg_accuracy_model_fc:.0f` %. For the paper's four models the published counts are shown
# in brackets (only where a panel's model is one of them).

# %%
fig = figures.confusion_grid(panels, label)
plt.show()
page.figure_data(analysis.confusion_table(panels), "sigma", "fig3")

# %% [markdown]
# {download}`Data of this figure (CSV) <sigma_data/fig3.csv>`

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
