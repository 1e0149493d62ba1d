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
# # Data on this machine
#
# Which registered datasets are present, and for the selected dataset what each compound has.

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
