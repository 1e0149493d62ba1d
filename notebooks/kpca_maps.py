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
# # 4. Configuration-space maps
#
# **What you will learn.** How to compare *where* two dynamics go rather than how the forces differ:
# a kernel between whole structures, and a two-dimensional map in which reference and model frames
# either overlap or part ways.
#
# **The physics in a few lines.** Each atom's neighbourhood becomes a SOAP vector p_i (r_cut 5 Å,
# Gaussian width 0.1 Å, n_max 7, l_max 6, normalised). Two frames A, B are compared by REMatch, an
# entropy-regularised best matching of their atoms, K(A, B) = Tr(P^T C) with C_ij = p_i^A · p_j^B,
# normalised so K(A, A) = 1. Kernel PCA on K places every frame on a plane. The overlap score is the
# fraction of model frames whose most similar frame is a reference frame.

# %% tags=["parameters"]
dataset = "demo"
models = ["demo-small-data", "demo-more-data"]
# None = the paper's Table 2 compounds that the dataset has, else all
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
import pandas as pd
from myst_nb import glue

from hdpbench import analysis, figures, published

settings = analysis.book_settings(
    dtype=dtype, n_frames=n_frames, md_steps=md_steps, md_runs=md_runs, kpca_frames=kpca_frames, discard=discard, dry_run=dry_run
)
label = analysis.dataset_label(dataset)
available = analysis.dataset_compounds(dataset)
table2 = [row["compound"] for row in published.TABLE2 if row["compound"] in available]
chosen = list(compounds) if compounds is not None else (table2 or available)
common = {"compounds": chosen, "settings": settings, "device": device, "results_root": results}
last = models[-1]
maps = analysis.stage_results("kpca", dataset, last, **common)
md = analysis.md_table(dataset, [last], **common)
glue("kp_dataset", analysis.prose(label), display=False)
glue("kp_model", analysis.prose(last), display=False)
glue("kp_compounds", analysis.prose(", ".join(chosen)), display=False)
glue("kp_frames", settings.kpca.max_frames_per_set, display=False)

# %% [markdown]
# {glue:md}`kp_dataset`. Model: {glue:md}`kp_model`; compounds: {glue:md}`kp_compounds`. Each map uses
# at most {glue:text}`kp_frames` evenly spaced frames per set (REMatch costs O(frames²)).
#
# ## Fig. 6 — reference and model MD in one map

# %%
for compound in chosen:
    fig = figures.kpca_map(maps.load_arrays(compound), compound, last, label)
    plt.show()

# %% [markdown]
# ## Figs. S10/S12 — the same maps coloured by σ(t)
#
# Reference frames use Φ_ref, model frames the model's Φ.

# %%
for compound in chosen:
    fig = figures.kpca_map(maps.load_arrays(compound), compound, last, label, colour_by_sigma=True)
    plt.show()

# %% [markdown]
# ## Table 2 — recomputed beside the published one
#
# The published columns are the paper's DFT and omat-0-medium values; the recomputed ones come from
# this dataset and model, so they agree only if both are the paper's.

# %%
recomputed = md.set_index("compound").loc[chosen, ["sigma_reference", "sigma_model_only", "abs_delta_sigma"]]
recomputed["overlap"] = [maps.load_json(c)["overlap"] for c in chosen]
recomputed["class_ref"] = [published.CLASS_LABELS[int(k)] for k in analysis.classes(recomputed["sigma_reference"])]
recomputed["class_model"] = [published.CLASS_LABELS[int(k)] for k in analysis.classes(recomputed["sigma_model_only"])]
paper = pd.DataFrame(published.TABLE2).set_index("compound").add_prefix("paper: ")
recomputed.join(paper, how="left").round(4)

# %% [markdown]
# ## Exercises
#
# 1. Where the model over-stabilises (σ_model-only < σ_ref), predict whether its frames sit inside
#    or beside the reference cloud, then look.
# 2. Double `kpca_frames`. Which changes more, the map or the overlap score? Why is the overlap score
#    more robust than the picture?
# 3. REMatch with a very small regularisation approaches the best one-to-one matching of atoms; with a
#    very large one, the average kernel. Which would separate two dynamics that differ only in a few
#    soft modes?
