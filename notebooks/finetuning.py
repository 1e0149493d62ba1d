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
# # 5. Beyond the paper: can Hessian supervision fix it?
#
# **Why this page.** The paper ends with a diagnosis: a model's force errors are amplified in its
# Hessian Φ_model, and that is what turns a right structure into a wrong stability verdict. It asks
# for physics-inspired remedies. One has been proposed since: *phonon fine-tuning* (PFT)
# {cite:p}`pft2026`, which trains the model's energy Hessian directly on DFT force constants.
# This page runs that experiment on the demo and on real DFT data, and reports whatever it shows.
#
# **The method in a few lines** (`hdpbench.training.finetune`, `hdpbench finetune --help`).
# - At every step random columns j of Φ_ref are drawn per structure (PFT: one; here
#   {glue:text}`ft_columns` for the demo models). Each model column is one Hessian-vector product,
#   $H e_j = \partial(\nabla E\cdot e_j)/\partial x$, by double backpropagation through the MACE
#   energy (a test checks it against finite differences of forces and against mace-torch's own
#   Hessian).
# - The Φ loss is the mean absolute error of those columns (eV/Å²).
# - After every Φ step comes one step on the base model's own training data (energy MAE per atom,
#   mean force-error norm). This co-training keeps the model from forgetting that data.
# - Weights as in the PFT trainer: Φ {glue:text}`ft_w_phi`, energy {glue:text}`ft_w_e`, forces
#   {glue:text}`ft_w_f`. Adam, gradient norm clipped at {glue:text}`ft_clip`. The last epoch's
#   weights are kept: the held-out compounds never choose anything.
#
# **What differs from PFT, and why.** PFT fine-tunes foundation models on thousands of materials on
# GPUs. Here the base models are the demo's small MACEs and a small MACE trained on
# {glue:text}`ft_kcl_train` KCl supercells, fine-tuned for {glue:text}`ft_epochs` epochs on two CPU
# cores. The demo's force
# constants are GFN1-xTB, not DFT. And the demo base models already saw the forces of the
# finite-displacement supercells of all eight compounds (their registry entries say so). *Held-out*
# below therefore means held out from the Hessian loss. The compounds are not unknown to the model.

# %% tags=["parameters"]
finetuned = ["demo-small-data-pft", "demo-more-data-pft"]  # fine-tuned registry models (their base is in the entry)
kcl_models = ["kcl-small", "kcl-small-pft"]  # the real-data base model and its fine-tuned version
device = "cpu"
dtype = "float32"
results = None
# stage sizes, as on the section pages (None = the paper's): σ frames per compound, MD steps and runs
n_frames = None
md_steps = None
md_runs = None
discard = None
smoke = False  # tiny settings: every code path runs, the numbers mean nothing (tests)

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from hdpbench.book import analysis, figures, finetune_report, page
from hdpbench.pipeline.names import StageName
from hdpbench.book import build as book
from hdpbench.data.datasets import get_dataset
from hdpbench.models.registry import display_name
from hdpbench.pipeline import realdata

if isinstance(finetuned, str):
    finetuned = finetuned.split()
figures.use_book_style()
dataset = "demo"  # the fine-tuned demo models know the demo's elements only
settings = analysis.book_settings(dtype=dtype, n_frames=n_frames, md_steps=md_steps, md_runs=md_runs, discard=discard, smoke=smoke)
label = analysis.dataset_label(dataset)
records = {name: finetune_report.finetune_record(name) for name in finetuned}
pairs = {name: record["base"] for name, record in records.items()}
bases = list(dict.fromkeys(pairs.values()))
held_out = list(records[finetuned[0]]["validation_compounds"])
trained_on = list(records[finetuned[0]]["train_compounds"])
common = {"settings": settings, "device": device, "results_root": results}
phonons = analysis.phonon_table(dataset, [*bases, *finetuned], **common)
sigma = analysis.sigma_table(dataset, [*bases, *finetuned], **common)
md = analysis.md_table(dataset, [*bases, *finetuned], compounds=held_out, **common)
table = finetune_report.comparison(phonons, sigma, md, pairs)
first = records[finetuned[0]]
glue("ft_epochs", first["epochs"], display=False)
glue("ft_held_out", analysis.prose(", ".join(held_out)), display=False)
glue("ft_trained_on", analysis.prose(", ".join(trained_on)), display=False)
glue("ft_md_steps", settings.md.steps, display=False)
glue("ft_n_trained", len(trained_on), display=False)
glue("ft_n_held_out", len(held_out), display=False)
glue("ft_eval_columns", first["settings"]["eval_columns"], display=False)
glue("ft_columns", first["settings"]["columns_per_structure"], display=False)
for key, field in (("ft_w_phi", "phi_weight"), ("ft_w_e", "energy_weight"), ("ft_w_f", "force_weight"), ("ft_clip", "grad_clip")):
    glue(key, f"{first['settings'][field]:g}", display=False)
kcl_system = get_dataset("external").load("KCl")  # loaded once: the split, σ and the table read it
kcl_train, kcl_test = finetune_report.kcl_split(kcl_models[0], len(kcl_system.trajectory))
glue("ft_kcl_train", len(kcl_train), display=False)
glue("ft_kcl_test", len(kcl_test), display=False)
glue("ft_kcl_all", len(kcl_train) + len(kcl_test), display=False)

# %% [markdown]
# ## The experiment
#
# Both demo models are fine-tuned on Φ_ref of {glue:text}`ft_n_trained` compounds
# ({glue:md}`ft_trained_on`). {glue:text}`ft_n_held_out` compounds never enter the Hessian loss
# ({glue:md}`ft_held_out`): one fluoride, the only chloride and the only iodide. Every number below comes from the same stages as sections 1–3, for the base
# model and for its fine-tuned version, with the same settings. Model-only MD
# ({glue:text}`ft_md_steps` steps) runs for the held-out compounds only, to keep the book's build
# time. The training runs, from the registry:

# %%
all_records = {**records, kcl_models[1]: finetune_report.finetune_record(kcl_models[1])}
setup = pd.DataFrame(
    {
        name: {
            "base": record["base"],
            "compounds with Φ in the loss": str(len(record["train_compounds"])),
            "compounds held out": str(len(record["validation_compounds"])),
            "co-training structures": str(record["cotrain"]["structures"]),
            "epochs": str(record["epochs"]),
            "weights Φ / energy / forces": f"{record['settings']['phi_weight']:g} / {record['settings']['energy_weight']:g} / {record['settings']['force_weight']:g}",
            "Adam learning rate": f"{record['settings']['learning_rate']:g}",
            "training time (min)": f"{record['training_seconds'] / 60:.1f}",
        }
        for name, record in all_records.items()
    }
)
display(page.readable(setup, index=True))

# %% [markdown]
# ## The Φ error during training
#
# Mean |Φ_model − Φ_ref| over {glue:text}`ft_eval_columns` fixed columns per compound (the same columns at every epoch;
# epoch 0 is the base model). Only the solid curves are in the loss.

# %%
log = finetune_report.training_log(finetuned)
fig = figures.finetune_training_curves(log, label)
plt.show()
page.figure_data(log, "finetuning", "training_curves")

# %% [markdown]
# {download}`Data of this figure (CSV) <finetuning_data/training_curves.csv>`
#
# ## What changed, in the paper's metrics
#
# Medians over the compounds of each group; `k/n` counts the compounds whose class is right. The
# force MAE is on production MD frames, which neither training saw: it is the forgetting check.

# %%
summary = finetune_report.summary(table)
summary.index = summary["model"] + ", " + summary["split"]
display(page.readable(summary.drop(columns=["model", "split"]).T, index=True))
page.figure_data(table, "finetuning", "per_compound")

# %% [markdown]
# {download}`Every compound, before and after (CSV) <finetuning_data/per_compound.csv>`
#
# **Verdict, from the numbers above.**

# %%
display(Markdown(finetune_report.verdict(table)))

# %% [markdown]
# ## RMSE(ω²) and RMSE(v_g), compound by compound
#
# The paper's two phonon errors (Fig. 1), before (x) and after (y). Points below the diagonal
# improved.

# %%
fig = figures.before_after(table, "rmse_omega2_thz2", "RMSE(ω²) (THz²)", label)
plt.show()
page.figure_data(table[["model", "base", "compound", "split", "rmse_omega2_thz2_before", "rmse_omega2_thz2_after"]], "finetuning", "rmse_omega2")

# %% [markdown]
# {download}`Data of this figure (CSV) <finetuning_data/rmse_omega2.csv>`

# %%
fig = figures.before_after(table, "rmse_vg_thz_ang", "RMSE(v_g) (THz·Å)", label)
plt.show()
page.figure_data(table[["model", "base", "compound", "split", "rmse_vg_thz_ang_before", "rmse_vg_thz_ang_after"]], "finetuning", "rmse_vg")

# %% [markdown]
# {download}`Data of this figure (CSV) <finetuning_data/rmse_vg.csv>`
#
# ## Bands of the held-out compounds
#
# Reference Φ_ref (black), the base model (dotted) and the fine-tuned model (dashed), on the
# seekpath path used in section 1.

# %%
last = finetuned[-1]
band_panels, band_rows = [], []
for compound in held_out:
    before = analysis.stage_results(StageName.PHONONS, dataset, pairs[last], compounds=[compound], **common).load_arrays(compound)
    after = analysis.stage_results(StageName.PHONONS, dataset, last, compounds=[compound], **common).load_arrays(compound)
    band_panels.append((compound, before, after))
    rows = analysis.band_table(before, compound).rename(columns={"frequency_model_thz": "frequency_base_thz"})
    rows["frequency_finetuned_thz"] = analysis.band_table(after, compound)["frequency_model_thz"].to_numpy()
    band_rows.append(rows)
fig = figures.bands_before_after(band_panels, pairs[last], last, label)
plt.show()
page.figure_data(pd.concat(band_rows, ignore_index=True), "finetuning", "bands")

# %% [markdown]
# {download}`Data of this figure (CSV) <finetuning_data/bands.csv>`
#
# ## Anharmonicity class of the held-out compounds
#
# As Fig. 3 and Fig. 4a, for the held-out compounds only: σ of the reference frames with the
# model's forces and its own Φ (upper two rows of panels), and σ of model-only MD (lower two rows);
# the base model on the left, its fine-tuned version on the right. Rows of each matrix are the
# reference classes, columns the model's. With three compounds these are counts, not statistics.

# %%
held = table[table["split"] == finetune_report.HELD_OUT]
panels = []
for column, what in (("sigma_model_fc_model", "σ_model(Φ_model)"), ("sigma_model_only", "σ_model-only")):
    for model in finetuned:
        rows = held[held["model"] == model]
        for when, who in (("before", pairs[model]), ("after", model)):
            counts = analysis.confusion(rows["sigma_reference"], rows[f"{column}_{when}"])["counts"]
            panels.append({"counts": counts, "title": f"{what}\n{display_name(who)}"})
fig = figures.confusion_grid(panels, label, columns=2)
plt.show()
page.figure_data(analysis.confusion_table(panels), "finetuning", "confusion_held_out")

# %% [markdown]
# {download}`Data of this figure (CSV) <finetuning_data/confusion_held_out.csv>`
#
# ## Real DFT: KCl
#
# The demo's force constants are xTB. Here the base model is trained on real DFT instead:
# `kcl-small`, a small MACE trained here on {glue:text}`ft_kcl_train` of phonopy's
# {glue:text}`ft_kcl_all` randomly displaced KCl supercells (VASP forces). The recipe is Lee & Xia's
# force-only loss; the other {glue:text}`ft_kcl_test` supercells are held out.
# It is then fine-tuned with the DFT force constants of the same example (fc222). The Φ comparison
# below is therefore **in-sample** for the fine-tuned model: it was trained on this Φ. The forces
# and σ on the {glue:text}`ft_kcl_test` held-out supercells are **out of sample** for both models.

# %%
kcl_phonons = {model: realdata.run_phonons(model, systems=("KCl",), device=device, results_root=results) for model in kcl_models}
kcl_sigma = {model: realdata.run_sigma(model, systems=("KCl",), device=device, results_root=results) for model in kcl_models}
kcl = finetune_report.kcl_table(kcl_phonons, kcl_sigma, kcl_system, kcl_train, kcl_test).set_index("model")
display(page.readable(kcl.T, index=True))
page.figure_data(kcl.reset_index(), "finetuning", "kcl")
before, after = kcl.iloc[0], kcl.iloc[1]
test_count = len(kcl_test)
force_column = f"force MAE, {test_count} held-out supercells (eV/Å)"
glue("ft_kcl_rmse_before", float(before["RMSE(ω²) vs DFT Φ (THz²)"]), display=False)
glue("ft_kcl_rmse_after", float(after["RMSE(ω²) vs DFT Φ (THz²)"]), display=False)
glue("ft_kcl_force_before", float(before[force_column]), display=False)
glue("ft_kcl_force_after", float(after[force_column]), display=False)

# %% [markdown]
# {download}`Data of this table (CSV) <finetuning_data/kcl.csv>`
#
# RMSE(ω²) against the DFT Φ: {glue:text}`ft_kcl_rmse_before:.3f` THz² for the base model and
# {glue:text}`ft_kcl_rmse_after:.3f` THz² after fine-tuning (in-sample). Force MAE on the
# {glue:text}`ft_kcl_test` held-out supercells: {glue:text}`ft_kcl_force_before:.3f` →
# {glue:text}`ft_kcl_force_after:.3f` eV/Å.

# %%
path = kcl_phonons[kcl_models[0]].load_json("KCl")
page.figure_data(realdata.bands_table({m: {"phonons": s} for m, s in kcl_phonons.items()}, "KCl"), "finetuning", "kcl_bands")
fig = figures.real_bands({m: s.load_arrays("KCl") for m, s in kcl_phonons.items()}, "KCl", path["band_labels"], path["band_connections"])
plt.show()

# %% [markdown]
# {download}`Data of this figure (CSV) <finetuning_data/kcl_bands.csv>`
#
# ## Exercises
#
# 1. Fine-tune with `--phi-weight 10` and `--phi-weight 1000` (`hdpbench finetune --help`). Which
#    moves the held-out RMSE(ω²) more, and what happens to the forces?
# 2. Set `--cotrain-steps 0`: how much faster do the held-out production forces degrade?
# 3. Swap the held-out set for three fluorides. Does the Hessian loss transfer better within a
#    halide family than across families?

# %% [markdown]
# ## Rerun this page

# %%
display(Markdown(book.rerun_instructions("finetuning")))
