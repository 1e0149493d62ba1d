# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Data and models on this machine
#
# Which registered datasets and models are present, what each compound of the selected dataset has
# and, for the demo dataset, how well its reference method does.

# %% tags=["parameters"]
dataset = "demo"
models = []
compounds = None
device = "cpu"
dtype = "float32"

# %%
import pandas as pd
from myst_nb import glue

from hdpbench.datasets import dataset_status, get_dataset, registered_datasets

statuses = pd.DataFrame([dataset_status(spec) for spec in registered_datasets().values()])
glue("n_registered_datasets", len(statuses), display=False)
glue("n_available_datasets", int(statuses["available"].sum()), display=False)
statuses[["name", "available", "title", "doi"]]

# %% [markdown]
# {glue:text}`n_registered_datasets` datasets are registered and {glue:text}`n_available_datasets`
# of them are on this machine.

# %%
from hdpbench.errors import DatasetUnavailableError

try:
    data = get_dataset(dataset, download=False)
except DatasetUnavailableError as unavailable:
    data = None
    print(unavailable)
if data is not None:
    table = pd.DataFrame([{"compound": e.formula, "halide": e.halide, **e.has()} for e in data.entries().values()])
    glue("n_compounds", len(table), display=False)
    display(table)

# %% [markdown]
# ## The reference method of a generated dataset
#
# A dataset this project generated carries its own record (``provenance.json`` in every archive):
# the method, every setting, the seed rule and the versions of the codes.

# %%
from hdpbench.analysis import demo_validation_table, generation_record, heldout_force_table, model_registry_table, prose

record = generation_record(dataset) if data is not None else None
if record is not None:
    settings = record["settings"]
    glue("reference_method", prose(record["reference_method"]), display=False)
    glue("not_dft", prose(record["not_dft"]), display=False)
    glue(
        "md_protocol",
        prose(
            f"{settings['md_temperature_K']:.0f} K, {settings['md_timestep_fs']:g} fs, Andersen collision probability "
            f"{settings['andersen_prob']:g}, {settings['equilibration_steps']} equilibration steps, then "
            f"{settings['production_segments']} production files of {settings['production_steps']} steps"
        ),
        display=False,
    )
    display(pd.Series({**settings, **{f"version of {k}": v for k, v in record["versions"].items()}}, name="value").to_frame())
else:
    glue("reference_method", prose("DFT (the authors' own calculations)"), display=False)
    glue("not_dft", prose(""), display=False)
    glue("md_protocol", prose("as published by the authors"), display=False)

# %% [markdown]
# Reference method: {glue:md}`reference_method`. Molecular dynamics: {glue:md}`md_protocol`.
# {glue:md}`not_dft`

# %%
validation = demo_validation_table(dataset) if data is not None else None
if validation is not None:
    glue("n_validated", len(validation), display=False)
    glue("n_sigma_classes", validation["class"].nunique(), display=False)
    deviations = validation["Δa (%)"].dropna()
    glue("worst_a_deviation", prose(f"{deviations.abs().max():.1f} %" if len(deviations) else "n/a"), display=False)
    ionic = validation["Δa vs ionic (%)"].dropna()
    glue("ionic_deviation_range", prose(f"{ionic.min():+.1f} % to {ionic.max():+.1f} %" if len(ionic) else "n/a"), display=False)
    known = validation.dropna(subset=["a literature (Å)", "a ionic radii (Å)"])
    ionic_overestimate = 100 * (known["a ionic radii (Å)"] / known["a literature (Å)"] - 1)
    glue(
        "ionic_vs_experiment",
        prose(f"{ionic_overestimate.min():+.0f} % to {ionic_overestimate.max():+.0f} %" if len(known) else "n/a"),
        display=False,
    )
    most_compressed = validation.loc[validation["Δa vs ionic (%)"].idxmin(), "compound"] if len(ionic) else "n/a"
    glue("most_compressed", prose(most_compressed), display=False)
    glue("lowest_gamma", prose(f"{validation['min Γ frequency (THz)'].min():.1f} THz"), display=False)
    rejected = validation.attrs["rejected"]
    glue(
        "rejected",
        prose("; ".join(f"{k} ({v})" for k, v in rejected.items()) if rejected else "none"),
        display=False,
    )
    display(validation.style.format(precision=3, na_rep="—").hide(axis="index"))
else:
    for key in ("n_validated", "n_sigma_classes", "worst_a_deviation", "ionic_deviation_range", "ionic_vs_experiment", "most_compressed", "lowest_gamma", "rejected"):
        glue(key, prose("n/a (no generator report for this dataset)"), display=False)

# %% [markdown]
# The generator's report covers {glue:text}`n_validated` compounds; their σ_ref span
# {glue:text}`n_sigma_classes` of the three classes. The relaxed lattice constants deviate from the
# literature by up to {glue:md}`worst_a_deviation` where an experiment is known. For every compound
# the table also gives a crude scale, the sum of Shannon ionic radii 2(r_B + r_X) + 2(r_B' + r_X);
# it is off by {glue:md}`ionic_vs_experiment` for the compounds here with a known experimental cell.
# The relaxed cells lie {glue:md}`ionic_deviation_range` from it. The most compressed,
# {glue:md}`most_compressed`, is the likeliest case of a GFN1-xTB cell collapse, so read its phonons
# with care. The lowest harmonic Γ frequency is {glue:md}`lowest_gamma` (negative = imaginary, a
# dynamically unstable cubic structure at this
# level of theory). Compounds rejected because the reference SCF failed: {glue:md}`rejected`.

# %% [markdown]
# ## Models
#
# One YAML file per model in ``models/`` (name, paper label, kind, checkpoint source, licence, dtype,
# sha256). Kind ``mace`` is a MACE checkpoint; kind ``ase`` is any ASE calculator built by an importable
# factory. The MACE foundation models are fetched from their published URLs where the network allows.
# The demo models are trained by this project (``make demo-model``) and committed. The CHGNet models
# ship inside the ``chgnet`` package and are used by the [real test](real_test) page.

# %%
registry = model_registry_table()
glue("n_models", len(registry), display=False)
glue("n_models_here", int((registry["weights here"] == "yes").sum()), display=False)
display(registry.style.format(precision=3, na_rep="—").hide(axis="index"))

# %% [markdown]
# {glue:text}`n_models` models are registered; the weights of {glue:text}`n_models_here` are on
# this machine.

# %%
heldout = heldout_force_table([m for m in registry["model"] if m.startswith("demo-")])
if len(heldout):
    display(
        heldout.pivot(index="compound", columns="model", values="force_mae_ev_ang")
        .style.format(precision=3)
        .set_caption("Force MAE (eV/Å) on the held-out production frames")
    )
