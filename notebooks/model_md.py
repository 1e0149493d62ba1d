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
# # 3. Model-only molecular dynamics
#
# **What you will learn.** Whether a model, left to move the atoms by itself at 300 K, produces the
# same degree of anharmonicity as the reference dynamics, and which errors of the Hessian predict when
# it does not.
#
# **The physics in a few lines.** Each run (the paper: two per compound; this build's count is
# below) starts from a random step of a reference (AIMD) production file with
# Maxwell–Boltzmann velocities at 300 K and follows velocity Verlet (1 fs) with ASE's Andersen
# thermostat {cite:p}`andersen1980`: after each step every velocity component is redrawn with
# probability p = 0.5.
# σ_model-only = ⟨σ(t)⟩ over all frames of the runs, with the model's own Φ. A
# run whose energy or forces blow up is stopped and reported, never silently dropped.

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
md = analysis.md_table(dataset, models, **common)
phonons = analysis.phonon_table(dataset, models, **common)
merged = md.merge(phonons[["model", "compound", "rmse_omega2_thz2", "rmse_vg_thz_ang"]], on=["model", "compound"])
last = models[-1]
overall = analysis.confusion(md[md["model"] == last]["sigma_reference"], md[md["model"] == last]["sigma_model_only"])
stopped_total = int(md["stopped"].sum())
glue("md_dataset", analysis.prose(label), display=False)
glue("md_last_model", analysis.prose(last), display=False)
glue("md_steps", settings.md.steps, display=False)
glue("md_runs", settings.md.runs_per_compound, display=False)
glue("md_start_rule", analysis.prose(analysis.md_start_sentence(dataset, md, settings.md)), display=False)
glue("md_sigma_displacement", settings.phonons.sigma_displacement, display=False)
glue("md_more_stable", 100 * overall["more_stable_fraction"], display=False)
glue("md_less_stable", 100 * overall["less_stable_fraction"], display=False)
glue("md_stopped", stopped_total, display=False)
glue("md_runs_total", len(md) * settings.md.runs_per_compound, display=False)
glue("md_more_stable_count", overall["more_stable_count"], display=False)
glue("md_more_stable_of", overall["more_stable_denominator"], display=False)
glue("md_less_stable_count", overall["less_stable_count"], display=False)
glue("md_less_stable_of", overall["less_stable_denominator"], display=False)
glue("md_paper_more_stable", 100 * published.FINDINGS["md_lower_triangle"], display=False)
glue("md_paper_less_stable", 100 * published.FINDINGS["md_upper_triangle"], display=False)
triangles = analysis.md_triangles(md, models)
halides = analysis.halide_triangles(md, models)
share = "share of the model's less-stable compounds (%)"
glue("md_less_stable_by_halide", analysis.prose(analysis.less_stable_by_halide(halides)), display=False)
correlations = analysis.rank_correlations(merged, models)
last_rank = correlations.set_index("model").loc[last]
# ρ as text: undefined (n < 3) reads as a word, not as NaN
glue("md_spearman", analysis.prose(page.significant(float(last_rank["rho (rmse_omega2_thz2)"]), 2, "undefined")), display=False)
glue("md_spearman_n", int(last_rank["n (rmse_omega2_thz2)"]), display=False)
glue("md_spearman_vg", analysis.prose(page.significant(float(last_rank["rho (rmse_vg_thz_ang)"]), 2, "undefined")), display=False)
glue("md_spearman_vg_n", int(last_rank["n (rmse_vg_thz_ang)"]), display=False)

# %% [markdown]
# {glue:md}`md_dataset`. Runs per compound and model: {glue:text}`md_runs`, of {glue:text}`md_steps` steps each.
#
# **Settings, as the authors ran them** (their `mace/mace_benchmarking.py`). {glue:md}`md_start_rule`
# σ_model-only uses every frame of the runs, none dropped, and the model's Φ at
# {glue:text}`md_sigma_displacement` Å (the authors' `PhonopyWorker` default); the paper ran 2 runs of
# 2000 steps per compound (their script's default is 10000).
# Runs stopped because they blew up: {glue:text}`md_stopped` of {glue:text}`md_runs_total`.
#
# ## Fig. 4a — σ_model-only against σ_ref
#
# With {glue:md}`md_last_model`, {glue:text}`md_more_stable:.0f` % of the compounds outside the most
# stable class ({glue:text}`md_more_stable_count` of {glue:text}`md_more_stable_of`) land in a more
# stable class (lower triangle) and {glue:text}`md_less_stable:.0f` % of those outside the least
# stable class ({glue:text}`md_less_stable_count` of {glue:text}`md_less_stable_of`) in a less stable
# one (upper triangle). Paper (omat-0-medium, DFT): {glue:text}`md_paper_more_stable:.0f` % and
# {glue:text}`md_paper_less_stable:.0f` %. Every model is in the table below the figure.

# %%
panels = []
for model in models:
    rows = md[md["model"] == model]
    panels.append({"counts": analysis.confusion(rows["sigma_reference"], rows["sigma_model_only"])["counts"], "title": figures.display_name(model)})
fig = figures.confusion_grid(panels, label)
plt.show()
page.figure_data(analysis.confusion_table(panels), "model_md", "fig4a")

# %% [markdown]
# {download}`Data of this figure (CSV) <model_md_data/fig4a.csv>`
#
# Per model: compounds in the reference class, the lower triangle (more stable than the reference)
# out of the compounds outside the most stable reference class, and the upper triangle (less stable)
# out of those outside the least stable one. The paper prints only the two percentages for Fig. 4a;
# {download}`the numbers as CSV <model_md_data/fig4a_fractions.csv>`.

# %%
page.figure_data(triangles, "model_md", "fig4a_fractions")
display(page.readable(analysis.readable_triangles(triangles, ["source", "model"])))

# %% [markdown]
# ## Fig. 4b — by halide

# %%
rows = md[md["model"] == last]
panels = [
    {"counts": analysis.confusion(group["sigma_reference"], group["sigma_model_only"])["counts"], "title": f"{figures.display_name(last)}: {halide}"}
    for halide, group in rows.groupby("halide")
]
fig = figures.confusion_grid(panels, label)
plt.show()
page.figure_data(analysis.confusion_table(panels), "model_md", "fig4b")

# %% [markdown]
# {download}`Data of this figure (CSV) <model_md_data/fig4b.csv>`
#
# The paper's 6 % is "mostly fluorides". Per model and halide, the upper triangle (less stable than
# the reference) out of the compounds outside the least stable class, and each halide's share of the
# model's less-stable compounds. Here {glue:md}`md_less_stable_by_halide`;
# {download}`the numbers as CSV <model_md_data/fig4b_fractions.csv>`.

# %%
page.figure_data(halides, "model_md", "fig4b_fractions")
shown = analysis.readable_triangles(halides, ["model", "halide"])[["model", "halide", "n", "less stable (upper triangle)", "more stable (lower triangle)"]]
display(page.readable(shown.assign(**{share: halides[share]}), digits=2, missing="none is less stable"))

# %% [markdown]
# ## Fig. 5 — do Hessian errors predict σ errors?
#
# Spearman rank correlation between |σ_ref − σ_model-only| and RMSE(ω²) for {glue:md}`md_last_model`:
# {glue:md}`md_spearman` over {glue:text}`md_spearman_n` compounds; against RMSE(v_g),
# {glue:md}`md_spearman_vg` over {glue:text}`md_spearman_vg_n` (with a handful of compounds a
# rank correlation is a hint, not a finding). Paper: large Hessian errors go with large σ
# discrepancies. Every model is in the table below the figure.

# %%
fig = figures.delta_sigma_vs_phonon_errors(merged[merged["model"] == last], label)
plt.show()
page.figure_data(merged[["model", "compound", "halide", "sigma_reference", "sigma_model_only", "abs_delta_sigma", "rmse_omega2_thz2", "rmse_vg_thz_ang"]], "model_md", "fig5")

# %% [markdown]
# {download}`Data of this figure (CSV) <model_md_data/fig5.csv>` (every model; the figure shows the last).
#
# Spearman ρ of |σ_ref − σ_model-only| against each phonon error, per model, with the number of
# compounds n and the two-sided p-value; {download}`as CSV <model_md_data/fig5_correlations.csv>`.

# %%
page.figure_data(correlations, "model_md", "fig5_correlations")
correlation_labels = {}
for column, name in (("rmse_omega2_thz2", "RMSE(ω²)"), ("rmse_vg_thz_ang", "RMSE(v_g)")):
    correlation_labels.update({f"n ({column})": f"n, {name}", f"rho ({column})": f"ρ vs {name}", f"p ({column})": f"p, {name}"})
display(page.readable(correlations, digits=2, labels=correlation_labels, missing="undefined (n < 3 or constant values)"))

# %% [markdown]
# ## Temperature of every run
#
# One colour per compound. The traces lie on top of each other because the thermostat holds every
# run at the same target; what matters is their spread. For N atoms the canonical ensemble itself
# makes the instantaneous temperature fluctuate by $T\sqrt{2/(3N)}$, {glue:text}`md_t_expected:.0f` K
# here (N = {glue:text}`md_n_atoms`); the runs show a standard deviation of {glue:text}`md_t_measured:.0f` K
# after the first {glue:text}`md_t_skip` steps. A run heating far beyond that band would be blowing up.

# %%
traces = {}
for model in models:
    stage = analysis.stage_results(StageName.MD, dataset, model, **common)
    traces[model] = {compound: stage.load_arrays(compound)["temperatures"] for compound in md[md["model"] == model]["compound"]}
temperatures = analysis.temperature_table(traces)
n_atoms = analysis.supercell_atoms(dataset, md["compound"].iloc[0])
skip = max(1, settings.md.steps // 10)
glue("md_n_atoms", n_atoms, display=False)
glue("md_t_expected", analysis.canonical_temperature_spread(settings.md.temperature_K, n_atoms), display=False)
glue("md_t_measured", float(temperatures[temperatures["step"] >= skip]["temperature_K"].std()), display=False)
glue("md_t_skip", skip, display=False)

# %%
fig = figures.temperature_traces(traces, settings.md.temperature_K, label)
plt.show()
page.figure_data(temperatures, "model_md", "temperatures")

# %% [markdown]
# {download}`Data of this figure (CSV) <model_md_data/temperatures.csv>`

# %% [markdown]
# ## Exercises
#
# 1. The Andersen thermostat redraws velocities with probability 0.5 per step. Predict how the spread
#    of the temperature traces changes with `md.andersen_prob=0.05`, then run it.
# 2. Which compounds does the model make *more* stable than the reference? Compare their minimum
#    phonon frequencies (section 1): is the model's Hessian stiffer there?
# 3. This build runs {glue:text}`md_runs` run(s) per compound. Rebuild with `md_runs=3` (see below)
#    and compare σ_model-only between runs: is its run-to-run spread larger than the change when you
#    halve `md_steps`?

# %% [markdown]
# ## Rerun this page

# %%
display(Markdown(book.rerun_instructions("model_md")))
