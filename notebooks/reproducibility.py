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
# # Rerunning everything: with a new model, on a GPU, on the full data
#
# Every stage of this book is declared once in the stage table (`hdpbench.pipeline.stages`) and computed
# by the same function for the notebooks and the command line, and every result is stored once in `results/<dataset>/<model>/<stage>/<key>/` with a
# manifest (model, checkpoint sha256, settings, dataset and code versions). A rebuild reuses what is
# there; changing a setting or a checkpoint recomputes only what depends on it.
#
# ## A new model
#
# 1. Add `models/<name>.yaml` (name, label, `path` or `url`, licence, sha256, dtype), or pass a
#    checkpoint path wherever a model name is expected.
# 2. `make book DATASET=demo MODELS="demo-more-data <name>"` (or on the full data, below).
#
# ## The full paper, at scale
#
# ```bash
# hdpbench run kpca --dataset hdp --model medium-omat-0 --dry-run             # the plan and its cost; writes no results
# hdpbench run phonons --dataset hdp --model medium-omat-0 --device cuda       # one Dask worker per GPU
# hdpbench run sigma-reference-frames --dataset hdp --model medium-omat-0 --device cuda
# hdpbench run sigma-md --dataset hdp --model medium-omat-0 --device cuda      # runs phonons and md first
# hdpbench run kpca --dataset hdp --model medium-omat-0 --compounds Rb3AlF6 Rb2NiAgF6 Cs2NaRuF6 K2InAgF6 K2RbSbF6
# make book DATASET=hdp MODELS="mace-matpes-pbe-0 medium-mpa-0 medium-0b3 medium-omat-0" DEVICE=cuda
# ```
#
# Each stage is declared once in the stage table (`hdpbench.pipeline.stages`) with the stages it
# needs; a run walks the needs, and a stage's results key includes their settings. A run can be saved
# as a file (`--config run.yaml`, the same keys as `--set`). Compounds are split into fixed shards, so serial and distributed runs give byte-identical files
# (with the same torch thread count, recorded in each manifest), and a run killed at any moment,
# MD included, completes only what is missing when restarted. A compound whose input fails is
# recorded with its error and file, the others still run, and a rerun retries only it. On a SLURM
# cluster, start workers with dask-jobqueue and pass `--scheduler ADDRESS` (see the README).
#
# ## What it costs
#
# The table below multiplies the paper's workload (1682 compounds; ≈3400 AIMD frames and ≈10
# displaced supercells each; 2 × 2000 MD steps; KPCA maps of the five Table 2 compounds) by the
# throughput measured by the scripts in `benchmarks/` on each device. A device or stage without a
# measurement is reported as such, not extrapolated.

# %% tags=["parameters"]
dataset = "demo"
models = []
device = "cpu"
dtype = "float32"

# %%
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from hdpbench.book import analysis, figures, page
from hdpbench.book import build as book
from hdpbench.pipeline.cost import Workload, estimate, measured_rates
from hdpbench.pipeline.stages import STAGES

figures.use_book_style()

rows, notes = [], {}
for target in ("cpu", "cuda"):
    result = estimate(Workload.paper(), measured_rates(target))
    notes[target] = "; ".join(result["sources"]) or "no benchmark measured on this device yet"
    for stage, seconds in result["seconds_per_stage"].items():
        rows.append({"device": target, "stage": stage, "hours per model": None if seconds is None else seconds / 3600})
costs = pd.DataFrame(rows).pivot(index="stage", columns="device", values="hours per model").reindex(list(STAGES))  # table order
cpu_total = costs["cpu"].sum(min_count=1)
glue("cost_cpu_total_hours", float(cpu_total), display=False)
glue("cost_cpu_sources", analysis.prose(notes["cpu"]), display=False)
glue("cost_gpu_sources", analysis.prose(notes["cuda"]), display=False)
costs = costs.rename(columns={"cpu": "CPU (h per model)", "cuda": "GPU (h per model)"})
display(page.readable(costs.astype(object).where(costs.notna(), "not measured"), index=True))

# %% [markdown]
# On the 2-core CPU of the build machines, one model costs {glue:text}`cost_cpu_total_hours:.0f` hours
# for the stages that were measured (rates from {glue:md}`cost_cpu_sources`; each file records its
# hardware and whether other jobs shared the machine). Force calls and MD steps are priced with a MACE
# as wide as the paper's medium foundation models (128 channels), never with a smaller model that was
# timed too (the demo models, CHGNet). GPU rates: {glue:md}`cost_gpu_sources`. The goal
# for the full paper with four models is at most 8 H200-hours; it can be checked only once GPU
# throughput is measured (`hdpbench bench evaluate --device cuda --output …`, `hdpbench bench md
# --channels 128 --device cuda --replicas 64 --output …` and `hdpbench bench rematch --device cuda
# --output …`, results committed under `benchmarks/results/`).

# %% [markdown]
# ## What this build cost
#
# Seconds each page took to execute in the latest `make book` on this machine. On a first build they
# are the cost of computing every stage for the models and sizes of this build; on a rebuild that
# reuses the results store they are the cost of reading the results and drawing.

# %%
timings = analysis.book_execution_times()
if timings is None:
    glue("build_seconds", analysis.prose("not recorded"), display=False)
    glue("build_started", analysis.prose("no build recorded"), display=False)
    print("No `make book` run has recorded execution times on this machine.")
else:
    table, record = timings
    glue("build_seconds", analysis.prose(f"{table['seconds'].sum():.0f} s"), display=False)
    glue("build_started", analysis.prose(record["started_at"]), display=False)
    display(page.readable(table.reset_index(), labels={"seconds": "seconds (s)"}))

# %% [markdown]
# The pages before this one took {glue:md}`build_seconds` in total (build started
# {glue:md}`build_started`).

# %% [markdown]
# ## Rerun this page

# %%
display(Markdown(book.rerun_instructions("reproducibility")))
