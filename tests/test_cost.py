"""The cost model: rates read from benchmark JSON, arithmetic per stage, no rate invented for a device."""

import json

import pytest

from hdpbench.cli import main
from hdpbench.pipeline.cost import COST_MODEL, Workload, estimate, measured_rates


def write(directory, name, report):
    (directory / name).write_text(json.dumps(report))


def test_estimate_from_measured_rates(tmp_path):
    wide = COST_MODEL + ", L=1, random weights"
    write(tmp_path, "evaluate.json", {"device": "cuda", "atoms_per_frame": 80, "batched_frames_per_s": 100.0, "model": wide})
    write(tmp_path, "a_slower.json", {"device": "cuda", "atoms_per_frame": 80, "batched_frames_per_s": 50.0, "model": wide})
    write(tmp_path, "small.json", {"device": "cuda", "atoms_per_frame": 80, "batched_frames_per_s": 900.0, "model": "demo-small-data"})
    write(tmp_path, "md.json", {"device": "cuda", "batched_atom_steps_per_s": 8000.0, "model": wide})
    write(tmp_path, "cpu.json", {"device": "cpu", "batched_atom_steps_per_s": 1e9, "model": wide})
    rates = measured_rates("cuda", tmp_path)
    # the fastest of the cost model's class; a faster, smaller model's rate is not the paper's cost
    assert rates.evaluate_frames_per_s == 100.0 and rates.md_atom_steps_per_s == 8000.0
    assert rates.sources == ("evaluate.json (" + wide + ")", "md.json (" + wide + ")")  # a_slower.json, read first and beaten: not a source
    assert measured_rates("cuda", tmp_path, model_class=None).evaluate_frames_per_s == 900.0
    assert rates.sigma_frames_per_s is None and rates.rematch_pairs_per_s is None
    work = Workload(compounds=10, displaced_supercells_per_compound=5, reference_frames_per_compound=300, md_steps_per_run=100)
    result = estimate(work, rates)
    seconds = result["seconds_per_stage"]
    assert seconds["phonons"] == pytest.approx(10 * 5 / 100)
    assert seconds["sigma-reference-frames"] == pytest.approx(10 * 300 / 100)
    assert seconds["md"] == pytest.approx(10 * 2 * 100 * 80 / 8000)
    assert seconds["sigma-md"] is None and seconds["kpca"] is None and not result["complete"]
    assert result["total_hours"] == pytest.approx((0.5 + 30 + 20) / 3600)


def test_estimate_command_prints_the_paper_workload(capsys):
    assert main(["run", "md", "--dataset", "hdp", "--model", "medium-omat-0", "medium-mpa-0", "--estimate", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "1682 compounds" in out and "for 2 model(s)" in out and "md_cpu_128ch.json (ScaleShiftMACE 128 channels" in out
    assert main(["run", "md", "--dataset", "hdp", "--model", "medium-omat-0", "--estimate", "--device", "rocm"]) == 0
    assert "not measured on this device" in capsys.readouterr().out
    # the estimate of a stage covers the stages it runs, needs first; an unknown model is refused
    assert main(["run", "sigma-md", "--dataset", "hdp", "--model", "medium-omat-0", "--estimate", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["seconds_per_stage"]) == ["phonons", "md", "sigma-md"] and result["workload"]["compounds"] == 1682
    assert main(["run", "md", "--dataset", "hdp", "--model", "medium-omat", "--estimate"]) == 2
    assert "did you mean medium-omat-0" in capsys.readouterr().err


def test_estimate_on_a_local_dataset_counts_its_frames(authors_dataset, capsys):
    root, _ = authors_dataset  # vasprun_prod.xml and _1.xml of 6 frames per compound: the paper's σ reads _1
    args = ["run", "sigma-reference-frames", "--dataset", str(root), "--model", "medium-omat-0", "--estimate", "--device", "cpu"]
    assert main([*args, "--set", "sigma.discard=2"]) == 0
    assert "2 compounds (4 reference frames each)" in capsys.readouterr().out
    assert main([*args, "--set", "sigma.discard=2", "--set", "sigma.frames=all"]) == 0
    assert "2 compounds (8 reference frames each)" in capsys.readouterr().out
    assert main([*args, "--set", "sigma.discard=2", "--set", "sigma.frames=all", "--set", "sigma.max_frames=5"]) == 0
    assert "(5 reference frames each)" in capsys.readouterr().out
    assert main([*args, "--frames-per-compound", "300"]) == 0
    assert "(300 reference frames each)" in capsys.readouterr().out
    # a stage whose cost does not depend on the AIMD frames neither counts nor quotes them
    assert main(["run", "md", "--dataset", str(root), "--model", "medium-omat-0", "--estimate", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "for 2 compounds, per model" in out and "reference frames" not in out
