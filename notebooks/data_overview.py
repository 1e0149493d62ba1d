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
from IPython.display import Markdown, display
from myst_nb import glue

from hdpbench.book import build as book
from hdpbench.book import figures, page
from hdpbench.data.datasets import dataset_status, get_dataset, registered_datasets

figures.use_book_style()

statuses = pd.DataFrame([dataset_status(spec) for spec in registered_datasets().values()])
glue("n_registered_datasets", len(statuses), display=False)
glue("n_available_datasets", int(statuses["available"].sum()), display=False)
display(page.readable(statuses[["name", "available", "title", "doi"]].assign(
    available=statuses["available"].map({True: "yes", False: "no"}), doi=statuses["doi"].fillna("none (made here)"))))

# %% [markdown]
# {glue:text}`n_registered_datasets` datasets are registered and {glue:text}`n_available_datasets`
# of them are on this machine.

# %%
from hdpbench.core.errors import DatasetUnavailableError

try:
    data = get_dataset(dataset, download=False)
except DatasetUnavailableError as unavailable:
    data = None
    print(unavailable)
if data is not None and data.entries():
    # an archive that listed cleanly has no problem ("none"), not a missing one
    table = pd.DataFrame([{"compound": e.formula, "halide": e.halide, **e.has(), "problem": e.problem or "none"} for e in data.entries().values()])
    glue("n_compounds", len(table), display=False)
    shown = table.replace({True: "yes", False: "no", "force_constants.hdf5": "hdf5"})
    # two narrower tables fit the page: the inputs every stage reads, then everything else
    inputs = ["compound", "halide", "unitcell", "reference_supercell", "force_constants", "production_md_files"]
    display(Markdown("The inputs every stage reads:"), page.readable(shown[inputs], labels=page.INVENTORY_LABELS))
    display(Markdown("And what else each archive holds (σ_ref: the dataset's own summary value):"))
    display(page.readable(shown[["compound", *(c for c in shown.columns if c not in inputs)]], labels=page.INVENTORY_LABELS))

# %% [markdown]
# ## The reference method of a generated dataset
#
# A dataset this project generated carries its own record (``provenance.json`` in every archive):
# the method, every setting, the seed rule and the versions of the codes.

# %%
from hdpbench.book.analysis import (
    demo_validation_table,
    generation_record,
    heldout_force_table,
    model_registry_table,
    prose,
    readable_failure,
    table1,
)

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
    display(page.readable(pd.Series({**settings, **{f"version of {k}": v for k, v in record["versions"].items()}}, name="value").to_frame(), index=True))
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
        prose("; ".join(f"{k}: {readable_failure(v)}" for k, v in rejected.items()) if rejected else "none"),
        display=False,
    )
    # two tables, so that each fits the page: the cell, then Φ_ref and σ_ref
    lattice = ["compound", "halide", "a relaxed (Å)", "a literature (Å)", "Δa (%)", "a ionic radii (Å)", "Δa vs ionic (%)"]
    display(page.readable(validation[lattice], missing="none known"))
    dynamics = ["compound", "min Γ frequency (THz)", "largest Γ acoustic |f| (THz)", "Φ_ref symmetrised", "σ_ref", "class"]
    display(page.readable(validation[dynamics]))
    acoustic = validation["largest Γ acoustic |f| (THz)"]
    symmetrised = validation.loc[validation["Φ_ref symmetrised"] == "yes", "compound"].tolist()
    glue("gamma_acoustic_worst", prose(f"{acoustic.max():.2g} THz"), display=False)
    glue("symmetrised_compounds", prose(", ".join(symmetrised) if symmetrised else "none"), display=False)
    glue("n_symmetrised", len(symmetrised), display=False)
    fc_settings = record["settings"] if record is not None else {}
    glue("fc_scf_accuracy", prose(f"{fc_settings.get('phonon_scf_accuracy', float('nan')):g}"), display=False)
    glue("md_scf_accuracy", prose(f"{fc_settings.get('scf_accuracy', float('nan')):g}"), display=False)
else:
    glue("n_symmetrised", 0, display=False)
    for key in ("n_validated", "n_sigma_classes", "worst_a_deviation", "ionic_deviation_range", "ionic_vs_experiment", "most_compressed",
                "lowest_gamma", "rejected", "symmetrised_compounds", "gamma_acoustic_worst", "fc_scf_accuracy", "md_scf_accuracy"):
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
#
# ### How clean is Φ_ref?
#
# An exact Hessian puts the three acoustic modes at Γ at zero (translational invariance). Finite
# displacements break that through noise in the forces, and the first demo release was noisy: its Γ
# acoustic modes reached −3.5 THz, so its "reference" bands had imaginary acoustic branches. Φ_ref is
# now computed from ± displacement pairs with the SCF converged to tblite accuracy
# {glue:md}`fc_scf_accuracy` (MD frames: {glue:md}`md_scf_accuracy`), and phonopy's symmetrisation of Φ
# (translational and permutation symmetry) is applied only where a Γ acoustic mode would still exceed
# 0.1 THz: {glue:text}`n_symmetrised` compound(s), {glue:md}`symmetrised_compounds`. The largest Γ
# acoustic frequency of any shipped Φ_ref, measured on the archives (column "largest Γ acoustic |f|",
# also `hdpbench data show FORMULA --json`, key `gamma_acoustic_max_thz`), is
# {glue:md}`gamma_acoustic_worst`. σ_ref and everything downstream are computed from these Φ_ref.

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
display(page.readable(registry.drop(columns=["source"])))  # where each checkpoint comes from: `hdpbench models list`

# %% [markdown]
# {glue:text}`n_models` models are registered; the weights of {glue:text}`n_models_here` are on
# this machine.
#
# ### Table 1 — the models
#
# The paper's Table 1, with its columns, for every registered model. The first
# {glue:text}`n_paper_models` rows are the paper's Table 1 as printed (the four MACE foundation
# models benchmarked there); the weights of {glue:text}`n_paper_models_here` of them are on this
# machine (the book's numbers come only from models whose weights are here). The other rows are the models this project
# adds; their values come from each model's registry file (``models/*.yaml``): for the demo models the
# element count is read from the checkpoint, for CHGNet it is the size of its atom embedding (H–Pu,
# from the chgnet package), and a fine-tuned model ("PFT", see the fine-tuning page) shares its base's.

# %%
paper_rows = registry[registry["paper label"] != ""]
glue("n_paper_models", len(paper_rows), display=False)
glue("n_paper_models_here", int((paper_rows["weights here"] == "yes").sum()), display=False)
display(
    page.readable(table1(), index=False, missing="not stated")
    .set_caption("Table 1: models, training data and level of theory")
    .set_table_styles([{"selector": "td", "props": "border-bottom: 1px solid #ddd; vertical-align: top; padding-right: 0.8em;"},
                       {"selector": "td.col0", "props": "white-space: nowrap;"}], overwrite=False)
)

# %%
heldout = heldout_force_table([m for m in registry["model"] if m.startswith("demo-")])
if len(heldout):
    display(
        heldout.pivot(index="compound", columns="model", values="force_mae_ev_ang")
        .pipe(page.readable, index=True)
        .set_caption("Force MAE (eV/Å) on the held-out production frames")
    )

# %% [markdown]
# ## Rerun this page

# %%
display(Markdown(book.rerun_instructions("data_overview")))
