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
# **The physics in a few lines.** Each atom's neighbourhood becomes a SOAP vector $\mathbf p_i$
# {cite:p}`bartok2013soap` ($r_\mathrm{cut}$ = 5 Å, Gaussian width 0.1 Å, $n_\max$ = 7, $l_\max$ = 6,
# normalised). Two frames A, B are compared by REMatch {cite:p}`de2016rematch`, an entropy-regularised
# best matching of their atoms, $K(A,B)=\mathrm{Tr}(P^\top C)$ with $C_{ij}=\mathbf p^A_i\cdot\mathbf p^B_j$,
# normalised so $K(A,A)=1$ (DScribe {cite:p}`himanen2020dscribe`). Kernel PCA
# {cite:p}`pedregosa2011sklearn` on $K$ places every frame on a plane. The overlap score is the
# fraction of model frames whose most similar frame is a reference frame.

# %% tags=["parameters"]
dataset = "demo"
models = ["demo-small-data", "demo-more-data"]
# None = the paper's Table 2 compounds that the dataset has, else all
compounds = None
# Fig. S11: the maps redone with the extended AIMD, for the paper's two compounds where present
extended_compounds = ["K2RbSbF6", "Rb2NiAgF6"]
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
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from hdpbench.book import analysis, figures, page
from hdpbench.book import build as book
from hdpbench.data import published
from hdpbench.physics import kpca
from hdpbench.pipeline.names import StageName

figures.use_book_style()
settings = analysis.book_settings(
    dtype=dtype, n_frames=n_frames, md_steps=md_steps, md_runs=md_runs, kpca_frames=kpca_frames, discard=discard, smoke=smoke
)
label = analysis.dataset_label(dataset)
available = analysis.dataset_compounds(dataset)
table2 = [row["compound"] for row in published.TABLE2 if row["compound"] in available]
chosen = list(compounds) if compounds is not None else (table2 or available)
common = {"compounds": chosen, "settings": settings, "device": device, "results_root": results}
last = models[-1]
maps = analysis.stage_results(StageName.KPCA, dataset, last, **common)
md = analysis.md_table(dataset, [last], **common)
glue("kp_dataset", analysis.prose(label), display=False)
glue("kp_model", analysis.prose(last), display=False)
glue("kp_compounds", analysis.prose(", ".join(chosen)), display=False)
glue("kp_frames", settings.kpca.max_frames_per_set, display=False)
paper_files = analysis.frame_set_files(dataset, chosen[0], settings.kpca.frames)
glue("kp_compounds_first", analysis.prose(chosen[0]), display=False)
glue("kp_paper_files", analysis.prose(" and ".join(f"`{name}`" for name in paper_files) or "none"), display=False)
arrays = {compound: maps.load_arrays(compound) for compound in chosen}
overlaps = pd.DataFrame(
    {
        "compound": chosen,
        "overlap": [maps.load_json(c)["overlap"] for c in chosen],
        "reference_split": [kpca.reference_split_overlap(arrays[c]["kernel"], arrays[c]["labels"]) for c in chosen],
    }
)
glue("kp_overlap_range", analysis.prose(analysis.range_text(overlaps["overlap"])), display=False)
glue("kp_split_range", analysis.prose(analysis.range_text(overlaps["reference_split"])), display=False)

# %% [markdown]
# {glue:md}`kp_dataset`. Model: {glue:md}`kp_model`; compounds: {glue:md}`kp_compounds`. Each map uses
# at most {glue:text}`kp_frames` evenly spaced frames per set (REMatch costs O(frames²); the authors
# used every frame). The reference frames are those of the paper's σ (their `soap_kernel.py` reads the
# same `vasprun_prod_1.xml` and `_2.xml` with the first 100 steps of each dropped): here
# {glue:md}`kp_paper_files` of {glue:md}`kp_compounds_first`. One deviation, stated: the authors' script
# passes a list of atomic numbers as dscribe's SOAP `centers`, which dscribe reads as atom indices;
# this book follows the paper's text instead, every atom a centre. The kernel is dscribe's REMatch
# computed in bulk; its atom-pair products $C_{ij}$ are taken in mixed precision (float64 along a few
# reference directions, float32 for the small rest), which the tests hold within $10^{-10}$ of dscribe's
# float64 kernel on the demo AIMD, far below the $10^{-6}$–$10^{-4}$ by which frames differ.
#
# ## Fig. 6 — reference and model MD in one map
#
# **How to read a map.** Each point is one frame; nearby points are similar structures. The axes are
# the two leading kernel principal components of that compound's frames, so each map has its own
# axes (no units, no meaning across compounds). Where the model's triangles fall inside the cloud of
# reference circles, the model visits the configurations the reference visits; a separate lobe of
# triangles is a region only the model explores, and reference circles with no triangles nearby are
# configurations the model never reaches.
#
# **Why the overlap score can be small where the clouds mix.** The score asks whether a model frame's
# *single nearest* frame is a reference frame. Frames of one MD run close in time are each other's
# nearest neighbours, so even two stretches of the same reference trajectory score low: the later
# half of the reference frames against the earlier half scores {glue:md}`kp_split_range`, while the
# model against the reference scores {glue:md}`kp_overlap_range`. Read a model's score against that
# reference split (table below), not against 0.5 or 1.

# %%
fig = figures.kpca_grid(arrays, last, label)
plt.show()
page.figure_data(analysis.kpca_table(arrays), "kpca_maps", "fig6")

# %% [markdown]
# {download}`Data of this figure (CSV) <kpca_maps_data/fig6.csv>` (coordinates, origin and σ(t) of every frame)

# %%
display(page.readable(overlaps, labels={"reference_split": "reference split (baseline)"}))

# %% [markdown]
# ## Figs. S10/S12 — the same maps coloured by σ(t)
#
# Reference frames (circles) use Φ_ref, model frames (triangles) the model's Φ. Each map has its own
# colour scale (σ differs by an order of magnitude between compounds): read the colours within a map.

# %%
fig = figures.kpca_grid(arrays, last, label, colour_by_sigma=True)
plt.show()

# %% [markdown]
# {download}`Data of this figure (CSV) <kpca_maps_data/fig6.csv>` (the same table: column `sigma_per_frame`)

# %% [markdown]
# ## Fig. S11 — the maps with the extended AIMD
#
# To check that the maps are not biased by the model's longer runs, the paper extended the AIMD of
# K2RbSbF6 and Rb2NiAgF6 to 4 ps (files `vasprun_prod_3.xml` … `_5.xml`) and redid the maps: the
# divergence shrank for K2RbSbF6 and grew for Rb2NiAgF6. Here the maps' reference frames are every
# production file (frame set `all`), for {glue:md}`kp_extended_compounds`:
# {glue:md}`kp_extended_files`. {glue:md}`kp_extended_note`

# %%
extended = [c for c in extended_compounds if c in available] or chosen[:2]
extended_settings = settings.with_overrides(["kpca.frames=all"])
extended_maps = analysis.stage_results(StageName.KPCA, dataset, last, compounds=extended, settings=extended_settings, device=device, results_root=results)
extended_arrays = {compound: extended_maps.load_arrays(compound) for compound in extended}
extended_files = analysis.frame_set_files(dataset, extended[0], "all")
glue("kp_extended_compounds", analysis.prose(", ".join(extended)), display=False)
glue("kp_extended_files", analysis.prose(f"{extended[0]} has " + ", ".join(f"`{name}`" for name in extended_files)), display=False)
glue("kp_extended_note", analysis.prose(analysis.extended_aimd_note(dataset, extended[0])), display=False)
fig = figures.kpca_grid(extended_arrays, last, label)
plt.show()
page.figure_data(analysis.kpca_table(extended_arrays), "kpca_maps", "figS11")

# %% [markdown]
# {download}`Data of this figure (CSV) <kpca_maps_data/figS11.csv>`

# %%
overlap_both = pd.DataFrame(
    {
        "compound": extended,
        "overlap (paper's AIMD frames)": [maps.load_json(c)["overlap"] if c in chosen else np.nan for c in extended],
        "overlap (extended AIMD)": [extended_maps.load_json(c)["overlap"] for c in extended],
        "AIMD frames (extended, before subsampling)": [extended_maps.load_json(c)["subsampled_from"]["reference"] for c in extended],
    }
)
display(page.readable(overlap_both, missing="not mapped above"))

# %% [markdown]
# ## Table 2 — recomputed beside the published one
#
# The published columns are the paper's DFT and omat-0-medium values; the recomputed ones come from
# this dataset and model, so they agree only if both are the paper's.

# %%
recomputed = md.set_index("compound").loc[chosen, ["sigma_reference", "sigma_model_only", "abs_delta_sigma"]]
recomputed["overlap"] = overlaps.set_index("compound")["overlap"]
recomputed["class_ref"] = [published.CLASS_LABELS[int(k)] for k in analysis.classes(recomputed["sigma_reference"])]
recomputed["class_model"] = [published.CLASS_LABELS[int(k)] for k in analysis.classes(recomputed["sigma_model_only"])]
paper = pd.DataFrame(published.TABLE2).set_index("compound").add_prefix("paper: ")
table2_labels = {"paper: sigma_dft_class": "paper: class (DFT)", "paper: sigma_mace_class": "paper: class (omat-0-medium)",
                 "paper: abs_delta_sigma": "paper: |σ_DFT − σ_MACE|"}
# one column per compound: ten quantities side by side would not fit the page
display(page.readable(recomputed.join(paper, how="left").T, index=True, labels=table2_labels))

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

# %% [markdown]
# ## Rerun this page

# %%
display(Markdown(book.rerun_instructions("kpca_maps")))
