"""Notebooks execute through papermill with their parameters (the book's executor)."""

from __future__ import annotations

import json
import re

import pytest

from hdpbench.book.build import (
    FINETUNE_NOTEBOOK,
    NOTEBOOKS,
    REAL_DATA_NOTEBOOK,
    REAL_PHONONS_NOTEBOOK,
    SECTION_NOTEBOOKS,
    execute_notebook,
)
from hdpbench.core import paths


def check_page_output(output, page: str, csv_folder, *, figures: int, verdict: str) -> None:
    """A page executed cleanly: no error or stderr output, ``figures`` figures, its verdict sentence
    (built from numbers) present, and every {download} CSV it links written into ``csv_folder``."""
    notebook = json.loads(output.read_text())
    outputs = [o for c in notebook["cells"] for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert not [o for o in outputs if o.get("name") == "stderr"], f"{page} writes to stderr"
    assert sum("image/png" in o.get("data", {}) for o in outputs) == figures
    assert verdict in output.read_text()
    source = (paths.notebooks_dir() / f"{page}.py").read_text()
    linked = set(re.findall(rf"<{page}_data/([\w.]+\.csv)>", source))
    assert linked and linked <= {p.name for p in csv_folder.glob("*.csv")}


@pytest.mark.parametrize(
    "name", [n for n in NOTEBOOKS if n not in SECTION_NOTEBOOKS and n not in (REAL_DATA_NOTEBOOK, REAL_PHONONS_NOTEBOOK, FINETUNE_NOTEBOOK)]
)
def test_notebook_executes_with_parameters(tmp_path, name, authors_dataset):
    root, _ = authors_dataset
    output = execute_notebook(name, {"dataset": str(root), "models": []}, output_dir=tmp_path, timeout=300)
    notebook = json.loads(output.read_text())
    injected = [c for c in notebook["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and str(root) in "".join(injected[0]["source"])
    # readers see results first: parameter cells fold away whole, other code behind a toggle
    assert "hide-cell" in injected[0]["metadata"]["tags"]
    code = [c for c in notebook["cells"] if c["cell_type"] == "code" and c not in injected]
    assert code and all({"hide-cell", "hide-input"} & set(c["metadata"].get("tags", [])) for c in code)
    errors = [o for c in notebook["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    if name == "data_overview":
        assert "Cs2AgBiBr6" in output.read_text()


def test_failing_cell_fails_loudly(tmp_path, monkeypatch):
    import papermill

    from hdpbench.core import paths

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "broken.py").write_text('# %% tags=["parameters"]\nx = 1\n\n# %%\nraise RuntimeError("boom")\n')
    monkeypatch.setattr(paths, "notebooks_dir", lambda: notebooks)
    with pytest.raises(papermill.PapermillExecutionError, match="boom"):
        execute_notebook("broken", {}, output_dir=tmp_path, timeout=60)


@pytest.fixture(scope="module")
def section_inputs(tmp_path_factory):
    """Two compounds in the authors' layout and a tiny MACE checkpoint, shared by the section notebooks."""
    from hdpbench.models.mace import build_mace, save_model

    from .builders import compound_members, write_folder, write_summary_db, write_tarball

    root = tmp_path_factory.mktemp("sections") / "hdp"
    members, _ = compound_members("Cs2AgBiBr6", n_files=2, frames_per_file=6)
    write_tarball(root / "bromides" / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6")
    members, _ = compound_members("Cs2NaInCl6", n_files=2, frames_per_file=6)
    write_folder(root / "chlorides" / "dpv_Cs2NaInCl6", members)
    write_summary_db(root / "double_halide_pv.db", {"Cs2AgBiBr6": {"sigma_300K_single": 0.41}, "Cs2NaInCl6": {"sigma_300K_single": 0.7}})
    models = [
        str(save_model(build_mace([55, 47, 83, 35, 11, 49, 17], channels=8, r_max=5.0, seed=seed), root.parent / f"tiny-{seed}.model"))
        for seed in (1, 2)
    ]
    return str(root), models, str(root.parent / "results")


@pytest.mark.parametrize("name", SECTION_NOTEBOOKS)
def test_section_notebook_runs_with_tiny_parameters(tmp_path, name, section_inputs):
    root, models, results = section_inputs
    parameters = {"dataset": root, "models": models, "results": results, "dtype": "float64", "smoke": True}
    if name != "phonons":
        parameters["discard"] = 0
    output = execute_notebook(name, parameters, output_dir=tmp_path, timeout=600)
    notebook = json.loads(output.read_text())
    outputs = [o for c in notebook["cells"] for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert figures, f"{name} drew no figure"
    glued = [o for o in outputs if "application/papermill.record/text/plain" in o.get("data", {}) or o.get("metadata", {}).get("scrapbook")]
    assert glued, f"{name} glued no number into its prose"


def test_real_data_chapter_runs_with_tiny_sizes_and_writes_the_data_behind_its_figures(tmp_path):
    csv_dir = tmp_path / "csv"
    parameters = {
        "real_models": "chgnet-0.3.0", "isolated_models": "sevennet-0", "real_md_steps": 16, "real_md_discard": 4, "real_kpca_frames": 6,
        "results": str(tmp_path / "results"), "csv_dir": str(csv_dir),
    }
    output = execute_notebook(REAL_DATA_NOTEBOOK, parameters, output_dir=tmp_path, timeout=600)
    check_page_output(output, REAL_DATA_NOTEBOOK, csv_dir, figures=6, verdict="CHGNet 0.3.0: forces on the CsPbI3 AIMD frames are off by")


def test_real_phonons_chapter_runs_with_tiny_sizes_and_writes_the_data_behind_its_figures(tmp_path):
    """One elpasolite per halide (the DFT-stable one first in the seeded order), one ABX3, CHGNet only:
    the verdict sentence is built from the rank test and every CSV the page links is written."""
    csv_dir = tmp_path / "csv"
    parameters = {
        "phonondb_models": "chgnet-0.3.0", "phonondb_n_per_halide": 1, "abx3_compounds": "KMgF3",
        "results": str(tmp_path / "results"), "csv_dir": str(csv_dir),
    }
    output = execute_notebook(REAL_PHONONS_NOTEBOOK, parameters, output_dir=tmp_path, timeout=600)
    check_page_output(output, REAL_PHONONS_NOTEBOOK, csv_dir, figures=4, verdict="No iodides are in this database")
    text = output.read_text()
    assert "CHGNet 0.3.0: **not settled**" in text  # three points: no rank test reaches p < 0.05
    assert "3 of the 76 elpasolites (1 F, 1 Cl, 1 Br" in text


def test_stratified_choice_alternates_dft_classes_within_each_halide():
    from hdpbench.book.analysis import realphonons as rp

    order = {"F": {"stable": ["a", "b"], "unstable": ["c"]}, "Br": {"stable": [], "unstable": ["d", "e"]}}
    assert rp.stratified_choice(2, order) == ["a", "c", "d", "e"]
    assert rp.stratified_choice(4, order) == ["a", "c", "b", "d", "e"]
    # the committed order holds every elpasolite of the database once: 54 F, 20 Cl, 2 Br
    everything = rp.elpasolites()
    assert len(everything) == len(set(everything)) == 76
    assert {h: sum(len(v) for v in rp.STRATIFIED_ORDER[h].values()) for h in rp.STRATIFIED_ORDER} == {"F": 54, "Cl": 20, "Br": 2}
    assert sum(len(v) for h in rp.ABX3_ORDER.values() for v in h.values()) == 30


def test_halide_trend_verdict_follows_the_rank_test():
    import pandas as pd

    from hdpbench.book.analysis import realphonons as rp

    falling = pd.DataFrame({"model": "m", "compound": [f"c{i}" for i in range(12)], "halide": ["F"] * 4 + ["Cl"] * 4 + ["Br"] * 4,
                            "rmse_omega2_thz2": [9, 10, 11, 12, 5, 6, 7, 8, 1, 2, 3, 4]})
    tests = rp.halide_trend_tests(falling)
    assert tests.loc[0, "rho"] < 0 and tests.loc[0, "p"] < 0.05 and tests.loc[0, "n F"] == 4
    assert "**reproduced**" in rp.trend_sentence(tests, falling)
    rising = falling.assign(rmse_omega2_thz2=falling["rmse_omega2_thz2"][::-1].to_numpy())
    assert "**contradicted**" in rp.trend_sentence(rp.halide_trend_tests(rising), rising)
    assert rp.trend_verdict(-0.3, 0.4) == "not settled"


def test_finetuning_page_runs_with_tiny_sizes_from_the_committed_checkpoints(tmp_path):
    """The page reads the committed fine-tuned models (never trains) and writes every CSV it links."""
    parameters = {"results": str(tmp_path / "results"), "smoke": True, "discard": 0}
    output = execute_notebook(FINETUNE_NOTEBOOK, parameters, output_dir=tmp_path, timeout=900)
    check_page_output(output, FINETUNE_NOTEBOOK, tmp_path / "finetuning_data", figures=6, verdict="on the 3 held-out compounds fine-tuning")


def test_book_parameters_flow_to_each_notebook(monkeypatch, tmp_path):
    """`make book DATASET=... MODELS=... BOOK_PARAMS=...` reaches papermill; each notebook gets only
    the parameters its cell declares, the demo its reduced sizes unless overridden."""
    import subprocess

    from hdpbench.book import build as book

    calls = {}
    monkeypatch.setattr(book, "execute_notebook", lambda name, parameters: calls.setdefault(name, parameters))
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: None)
    monkeypatch.setattr(book, "NOTEBOOKS", ["data_overview", "sigma", "model_md"])
    monkeypatch.setattr(book, "generated_dir", lambda: tmp_path)
    book.main(["--dataset", "demo", "--param", "md_steps=1000", "--param", "n_frames=None", "--param", "smoke=True"])
    # each page's execution time is recorded for the reproducibility page, with the build's parameters
    record = json.loads(book.execution_times_path().read_text())
    assert [page["page"] for page in record["pages"]] == ["data_overview", "sigma", "model_md"] and record["parameters"]["md_steps"] == 1000
    assert calls["model_md"]["md_steps"] == 1000 and calls["model_md"]["md_runs"] == book.BOOK_SIZES["demo"]["md_runs"]
    assert calls["sigma"]["n_frames"] is None and calls["sigma"]["smoke"] is True
    # every section page gets the same stage sizes, so no page recomputes another's results
    assert calls["sigma"] == calls["model_md"]
    assert calls["sigma"]["models"] == book.default_models("demo")
    assert set(calls["data_overview"]) == {"dataset", "models", "device", "dtype"}
    calls.clear()
    book.main(["--dataset", "hdp", "--models", "medium-omat-0 medium-mpa-0", "--device", "cuda"])
    assert calls["model_md"]["models"] == ["medium-omat-0", "medium-mpa-0"] and calls["model_md"]["device"] == "cuda"
    assert "md_steps" not in calls["model_md"]  # the paper's settings
    assert calls["model_md"].get("real_models") is None  # only the real-data page declares it
    monkeypatch.setattr(book, "NOTEBOOKS", ["real_test"])
    calls.clear()
    book.main(["--dataset", "demo"])
    assert "real_models" not in calls["real_test"]  # the page's own default: the CHGNet models
    calls.clear()
    book.main(["--dataset", "demo", "--models", "chgnet-0.3.0"])
    assert calls["real_test"]["real_models"] == ["chgnet-0.3.0"]
    monkeypatch.setattr(book, "NOTEBOOKS", ["real_phonons"])
    calls.clear()
    book.main(["--dataset", "demo", "--param", "phonondb_n_per_halide=None"])
    assert calls["real_phonons"] == {"device": "cpu", "phonondb_n_per_halide": None}  # its own models and subset otherwise
    calls.clear()
    book.main(["--dataset", "demo", "--models", "chgnet-0.3.0"])
    assert calls["real_phonons"]["phonondb_models"] == ["chgnet-0.3.0"]


def test_section_pages_declare_the_same_parameters():
    """A page that read a stage with other sizes than the page that made it would recompute and
    overwrite it (one result set per stage): every section page must take every parameter that
    selects stage results (what ``analysis.book_settings`` turns into settings, and the data, models,
    device and results folder). A page may add its own (which halide or compounds a figure shows),
    as long as none of them is a stage setting or a size the book sets."""
    import inspect

    from hdpbench.book import analysis
    from hdpbench.book import build as book
    from hdpbench.book.build import declared_parameters

    stage_parameters = set(inspect.signature(analysis.book_settings).parameters) | {"dataset", "models", "compounds", "device", "results"}
    declared = {name: declared_parameters(name) for name in SECTION_NOTEBOOKS}
    for name, params in declared.items():
        assert stage_parameters <= params, (name, stage_parameters - params)
        own = params - stage_parameters
        assert not own & {key for sizes in book.BOOK_SIZES.values() for key in sizes}, (name, own)
    assert declared["phonons"] - stage_parameters == {"fig1a_halide", "fig1a_model"}


def test_demo_book_leaves_out_a_demo_model_not_trained_yet(monkeypatch, capsys):
    from hdpbench.book import build as book
    from hdpbench.models import registry as models

    monkeypatch.setattr(models, "is_available", lambda spec: spec.name == "demo-small-data")
    assert book.default_models("demo") == ["demo-small-data"]
    assert "demo-more-data" in capsys.readouterr().err
    monkeypatch.setattr(models, "is_available", lambda spec: True)
    assert book.default_models("demo") == ["demo-small-data", "demo-more-data"]
    from hdpbench.data.published import PAPER_MODELS

    assert book.default_models("hdp") == PAPER_MODELS


def test_phonon_scatter_keeps_compounds_without_sigma_reference():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from hdpbench.book.figures import phonon_error_scatter

    phonons = pd.DataFrame(
        {
            "model": ["m"] * 3,
            "compound": ["A", "B", "C"],
            "halide": ["F", "F", "Cl"],
            "rmse_vg_thz_ang": [0.1, 0.2, 0.3],
            "rmse_omega2_thz2": [1.0, 2.0, 3.0],
            "sigma_reference_db": [0.3, None, 0.7],  # B: σ ≥ 2, stored as missing
        }
    )
    fig = phonon_error_scatter(phonons, "m", "test data")
    drawn = [len(c.get_offsets()) for c in fig.axes[0].collections]
    assert sorted(drawn) == [1, 2]  # two coloured points and one grey marker: nobody vanishes
    assert "σ_ref missing" in fig.axes[0].get_legend().get_texts()[0].get_text()


def test_per_species_sigma_table_orders_elements_and_keeps_every_model():
    import pandas as pd

    from hdpbench.book.analysis import per_species_sigma_table

    per_species = {"Cs": 3.6, "Ag": 0.3, "Br": 0.2}
    sigma = pd.DataFrame(
        {
            "model": ["small", "small", "more", "more"],
            "compound": ["X", "Y", "X", "Y"],
            "halide": ["Br", "F"] * 2,
            "sigma_per_species_reference": [per_species, {"K": 0.2, "F": 0.4}] * 2,
            "force_mae_ev_ang": [0.1, 0.2, 0.05, 0.07],
        }
    )
    table = per_species_sigma_table(sigma)
    assert table.loc["X", "σ_ref by element"] == "Cs 3.60 · Ag 0.30 · Br 0.20"
    assert list(table["most anharmonic"]) == ["Cs", "F"] and table.loc["Y", "its σ_ref"] == 0.4
    assert list(table.columns[-2:]) == ["force MAE (eV/Å) small", "force MAE (eV/Å) more"]
    assert table.loc["Y", "force MAE (eV/Å) more"] == 0.07


def test_temperature_traces_one_panel_per_model_and_one_colour_per_compound():
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from hdpbench.book.figures import temperature_traces

    runs = np.full((2, 5), 300.0)
    traces = {"m1": {"A": runs, "B": runs}, "m2": {"B": runs}}
    fig = temperature_traces(traces, 300.0, "test data")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["m1", "m2"]
    # lines per panel: two runs per compound, then the target-temperature line; B keeps its colour
    colour_of = {ax.get_title(): [line.get_color() for line in ax.get_lines()[:-1]] for ax in panels}
    assert colour_of["m1"][2:] == colour_of["m2"] and colour_of["m1"][0] != colour_of["m2"][0]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["A", "B"]
