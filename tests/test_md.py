"""Batched Andersen MD: equal to ASE's Andersen and VelocityVerlet, thermostatted, guarded, resumable."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.calculators.lj import LennardJones
from ase.md.andersen import Andersen
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.md.verlet import VelocityVerlet
from scipy import stats

from hdpbench.core.structures import double_perovskite, make_supercell
from hdpbench.physics.md import BatchedAndersen, MDSettings, model_forces


def lj():
    return LennardJones(sigma=2.9, epsilon=0.02, rc=6.0, smooth=True)


def hdp(a_site="Cs", b="Ag", b_prime="Bi", x="Br", a=11.25, seed=5):
    atoms = make_supercell(double_perovskite(a_site, b, b_prime, x, a, 0.25), np.diag([2, 2, 2]))
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(seed))
    Stationary(atoms)
    return atoms


def test_one_replica_reproduces_ase_andersen_for_200_steps():
    atoms = hdp()
    other = hdp("Cs", "Na", "In", "Cl", 10.5, seed=6)  # a second compound in the same batch
    reference = atoms.copy()
    reference.calc = lj()
    ase_md = Andersen(reference, 1 * units.fs, temperature_K=300, andersen_prob=0.5, rng=np.random.default_rng(7))
    ours = BatchedAndersen(
        [atoms, other], model_forces(lj()), MDSettings(andersen_prob=0.5), rngs=[np.random.default_rng(7), np.random.default_rng(8)]
    )
    for _ in range(200):
        ase_md.run(1)
        ours.step()
    assert np.abs(ours.atoms(0).positions - reference.positions).max() < 1e-8
    assert np.abs(ours.atoms(0).get_velocities() - reference.get_velocities()).max() < 1e-8


@pytest.mark.parametrize("fix_com", [False, True])
def test_zero_collision_probability_is_velocity_verlet(fix_com):
    atoms = hdp()
    reference = atoms.copy()
    reference.calc = lj()
    verlet = VelocityVerlet(reference, 1 * units.fs)
    ours = BatchedAndersen([atoms], model_forces(lj()), MDSettings(andersen_prob=0.0, fix_com=fix_com))
    for _ in range(100):
        verlet.run(1)
        ours.step()
    assert np.abs(ours.atoms(0).positions - reference.positions).max() < 1e-8


def test_temperature_and_maxwell_boltzmann_velocities():
    structures = [hdp(seed=s) for s in range(3)]
    md = BatchedAndersen(structures, model_forces(lj()), MDSettings(andersen_prob=0.5, seed=11))
    velocities = []
    for step in range(2000):
        md.step()
        if step >= 200 and step % 20 == 0:
            velocities.append([md.atoms(r).get_velocities() * np.sqrt(md.atoms(r).get_masses()[:, None]) for r in range(3)])
    for status in md.status:
        mean_temperature = np.mean(status.temperatures[200:])
        assert abs(mean_temperature - 300.0) < 0.03 * 300.0
    # sqrt(m)·v of every component is normal with variance kT.
    scaled = np.array(velocities).ravel() / np.sqrt(units.kB * 300.0)
    assert stats.kstest(scaled, "norm").pvalue > 1e-3
    assert abs(np.var(scaled) - 1.0) < 0.03


def test_seeds_make_runs_reproducible():
    def run(seed):
        md = BatchedAndersen([hdp(), hdp(seed=9)], model_forces(lj()), MDSettings(seed=seed))
        for _ in range(20):
            md.step()
        return md.positions.numpy().copy()

    np.testing.assert_array_equal(run(1), run(1))
    assert np.abs(run(1) - run(2)).max() > 1e-6


def test_blow_up_guard_stops_one_replica_and_the_others_continue():
    unstable = hdp()
    unstable.positions[1] = unstable.positions[0] + [0.6, 0.0, 0.0]  # two atoms almost on top of each other
    md = BatchedAndersen([hdp(), unstable], model_forces(lj()), MDSettings(steps=30, max_force=50.0))
    md.run(progress=False)
    assert md.status[0].stopped is None and md.status[0].steps_done == 30
    assert md.status[1].stopped is not None
    assert "eV/Å" in md.status[1].stopped or "temperature" in md.status[1].stopped
    assert md.status[1].steps_done < 30
    assert md.summary()["stopped_replicas"].keys() == {1}


def test_interrupted_run_resumes_to_the_same_trajectory(tmp_path):
    import ase.io

    settings = MDSettings(steps=12, write_every=3, seed=4)
    whole = BatchedAndersen([hdp(), hdp(seed=2)], model_forces(lj()), settings, output_dir=tmp_path / "whole")
    whole.run(progress=False)
    first = BatchedAndersen([hdp(), hdp(seed=2)], model_forces(lj()), settings, output_dir=tmp_path / "split")
    first.run(7, progress=False)  # "killed" after step 7: last checkpoint at step 6
    second = BatchedAndersen([hdp(), hdp(seed=2)], model_forces(lj()), settings, output_dir=tmp_path / "split")
    second.run(progress=False)
    np.testing.assert_array_equal(second.positions.numpy(), whole.positions.numpy())
    frames = ase.io.read(tmp_path / "split" / "replica_001.extxyz", index=":")
    assert [a.info["step"] for a in frames] == [3, 6, 9, 12]
    expected = ase.io.read(tmp_path / "whole" / "replica_001.extxyz", index=":")
    np.testing.assert_allclose(frames[-1].get_forces(), expected[-1].get_forces())


def test_trajectory_files_hold_what_ase_writes_for_their_frames(tmp_path):
    """The MD formats its frames itself (ExtxyzFrameText); ASE reading them back and writing them
    again gives the same bytes (8 decimals round-trip), for a template with and without masses."""
    import io

    import ase.io

    bare = hdp(seed=3)
    del bare.arrays["masses"]
    md = BatchedAndersen([hdp(), bare], model_forces(lj()), MDSettings(steps=4, write_every=2, seed=1), output_dir=tmp_path)
    md.run(progress=False)
    for r in range(2):
        written = md.trajectory_file(r).read_text()
        frames = ase.io.read(md.trajectory_file(r), index=":")
        assert [a.info["step"] for a in frames] == [2, 4] and ("masses:R:1" in written) == (r == 0)
        again = io.StringIO()
        ase.io.write(again, frames, format="extxyz")
        assert again.getvalue() == written
        np.testing.assert_allclose(frames[-1].get_velocities(), md.atoms(r).get_velocities(), atol=1e-7)


def test_mace_forces_through_the_batched_evaluator_match_ase_with_mace_calculator(tmp_path):
    from mace.calculators import MACECalculator

    from hdpbench.models.mace import build_mace, save_model

    path = save_model(build_mace([55, 47, 83, 35], channels=8, r_max=5.0, seed=5), tmp_path / "tiny.model")
    atoms = hdp()
    reference = atoms.copy()
    reference.calc = MACECalculator(model_paths=str(path), default_dtype="float64")
    ase_md = Andersen(reference, 1 * units.fs, temperature_K=300, andersen_prob=0.5, rng=np.random.default_rng(3))
    ours = BatchedAndersen([atoms, hdp(seed=8)], model_forces(str(path), dtype="float64"), MDSettings(), rngs=[np.random.default_rng(3), np.random.default_rng(4)])
    for _ in range(10):
        ase_md.run(1)
        ours.step()
    assert np.abs(ours.atoms(0).positions - reference.positions).max() < 1e-8


def test_md_cli(tmp_path, capsys):
    import json

    import ase.io

    from hdpbench import cli
    from hdpbench.models.mace import build_mace, save_model

    model = save_model(build_mace([37, 28, 47, 9], channels=8, r_max=4.0, seed=1), tmp_path / "tiny.model")
    ase.io.write(tmp_path / "POSCAR", double_perovskite("Rb", "Ni", "Ag", "F", 8.6, 0.24), format="vasp")
    code = cli.main(
        ["md", "--structure", str(tmp_path / "POSCAR"), "--model", str(model), "--steps", "5", "--replicas", "2",
         "--output", str(tmp_path / "md"), "--json"]
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["replicas"] == 2 and summary["steps"] == 5
    assert len(summary["mean_temperature_per_replica"]) == 2 and summary["stopped_replicas"] == {}
    assert len(ase.io.read(tmp_path / "md" / "replica_001.extxyz", index=":")) == 5
    # any other field of the MD settings record through --set: a force guard that every step trips
    base = ["md", "--structure", str(tmp_path / "POSCAR"), "--model", str(model), "--steps", "5", "--json"]
    assert cli.main([*base, "--set", "md.max_force=1e-6"]) == 0
    stopped = json.loads(capsys.readouterr().out)["stopped_replicas"]
    assert len(stopped) == 2 and all("force" in reason for reason in stopped.values())
    assert cli.main([*base, "--set", "sigma.discard=3"]) == 2
    assert "md.FIELD=VALUE only" in capsys.readouterr().err
    assert cli.main([*base, "--set", "md.max_force=strong"]) == 2
    assert "md.max_force='strong': expected a number" in capsys.readouterr().err


def test_device_resident_md_equals_the_atoms_path_for_200_steps_in_float64(tmp_path):
    """Graphs built from tensors on the device (no ASE Atoms per step) give the same trajectories as
    graphs built from Atoms by mace-torch, to 1e-8 Å over 200 steps, for replicas of two sizes."""
    from hdpbench.models.mace import build_mace, save_model

    path = save_model(build_mace([55, 47, 83, 35, 11, 49, 17], channels=8, r_max=5.0, seed=5), tmp_path / "tiny.model")
    forces = model_forces(str(path), dtype="float64")
    small = hdp(a_site="Cs", b="Na", b_prime="In", x="Cl", a=10.5, seed=3)[:40]
    runs = {}
    for resident in (True, False):
        md = BatchedAndersen(
            [hdp(), small], forces, MDSettings(), rngs=[np.random.default_rng(3), np.random.default_rng(4)], resident=resident
        )
        assert (md.replica_forces is not None) == resident
        md.run(200, progress=False)
        runs[resident] = md.positions.cpu().numpy()
    assert np.abs(runs[True] - runs[False]).max() < 1e-8
    assert np.abs(runs[True] - np.concatenate([hdp().positions, small.positions])).max() > 0.05  # the atoms moved


def test_device_resident_forces_skip_stopped_replicas_and_need_no_atoms():
    from hdpbench.models.evaluate import ReplicaForces, load_model
    from hdpbench.models.mace import build_mace

    model = load_model(build_mace([55, 47, 83, 35], channels=8, r_max=5.0, seed=2), dtype="float64")
    structures = [hdp(seed=1), hdp(seed=2)]
    replica_forces = ReplicaForces(model, structures)
    torch = pytest.importorskip("torch")
    positions = torch.as_tensor(np.concatenate([a.positions for a in structures]))
    expected = model.evaluator(batch_size=2).evaluate(structures).forces
    both = replica_forces(positions).numpy()
    np.testing.assert_allclose(both, np.concatenate(expected), rtol=0, atol=1e-12)
    only_second = replica_forces(positions, [1]).numpy()
    assert not only_second[:80].any()
    np.testing.assert_allclose(only_second[80:], expected[1], rtol=0, atol=1e-12)
    split = ReplicaForces(model, structures, replicas_per_call=1)(positions).numpy()
    np.testing.assert_allclose(split, both, rtol=0, atol=1e-12)


def test_device_resident_forces_equal_torchsims_mace_model():
    """An independent reference for the tensor graphs and neighbour lists: TorchSim's ``MaceModel``
    (its own state, vesin neighbour lists) on the same module and structures of two compounds."""
    torch_sim = pytest.importorskip("torch_sim")
    from torch_sim.models.mace import MaceModel

    from hdpbench.models.evaluate import ReplicaForces, load_model
    from hdpbench.models.mace import build_mace

    torch = pytest.importorskip("torch")
    structures = [hdp(seed=1), hdp("Cs", "Na", "In", "Cl", 10.5, seed=3), hdp(seed=4)]
    elements = sorted({int(z) for atoms in structures for z in atoms.numbers})
    model = load_model(build_mace(elements, channels=8, r_max=5.0, seed=2), dtype="float64")
    positions = torch.as_tensor(np.concatenate([a.positions for a in structures]))
    ours = ReplicaForces(model, structures)(positions).numpy()
    reference = MaceModel(model=model.module, device=torch.device("cpu"), dtype=torch.float64, compute_stress=False)
    theirs = reference(torch_sim.io.atoms_to_state(structures, torch.device("cpu"), torch.float64))["forces"].detach().numpy()
    assert np.abs(ours).max() > 1e-3  # a random model still gives forces worth comparing
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-10)


def test_benchmarks_report_the_cpu_steal_share_of_their_run(monkeypatch):
    from hdpbench.pipeline import benchmarking

    monkeypatch.setattr(benchmarking, "cpu_counters", lambda: (130, 1100))
    assert benchmarking.contention_since((100, 500))["cpu_steal_share"] == pytest.approx(30 / 600)
    assert "cpu_steal_share" not in benchmarking.contention_since(None)  # no /proc/stat: not reported
    monkeypatch.undo()
    now = benchmarking.cpu_counters()
    if now is not None:  # Linux
        assert 0 <= now[0] <= now[1]


def test_bench_md_cli_compares_with_the_ase_loop_on_the_same_draws(capsys):
    import json

    from hdpbench import cli

    assert cli.main(["bench", "md", "--replicas", "3", "--steps", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    keys = {"replicas", "atoms_per_replica", "steps", "device", "dtype", "ase_steps_per_s", "batched_steps_per_s", "ratio_batched_vs_ase", "max_abs_position_diff"}
    assert keys <= set(report)
    assert report["replicas"] == 3 and report["steps"] == 2 and report["atoms_per_replica"] == 80
    assert report["max_abs_position_diff"] < 1e-5  # float32 forces, same random draws as ASE's Andersen
    assert ("torchsim_steps_per_s" in report) != ("torchsim_not_measured" in report)
    assert report["batched_atom_steps_per_s"] == pytest.approx(report["batched_steps_per_s"] * 3 * 80)
    # where a step's time goes: the model's force call on all replicas, and what a second thread buys
    assert report["force_share_of_batched_run"] == pytest.approx(3 * report["force_call_s"] / report["seconds"]["batched"])
    if report["force_call_threads"] > 1:
        assert report["force_call_thread_speedup"] == pytest.approx(report["force_call_one_thread_s"] / report["force_call_s"])
    # one step's frame texts, ASE's writer against ours, the same bytes
    assert report["frame_text_equal_to_ase"] is True
    assert report["ratio_frame_text_vs_ase"] == pytest.approx(report["frame_text_per_step_ase_s"] / report["frame_text_per_step_s"])
    assert "load_average_1min_after" in report and 0.0 <= report.get("cpu_steal_share", 0.0) <= 1.0
    assert cli.main(["bench", "md", "--replicas-per-call", "many"]) == 2
    # a random MACE of a given width (what the cost model prices), named as the cost model selects it
    assert cli.main(["bench", "md", "--channels", "8", "--replicas", "2", "--steps", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"].startswith("ScaleShiftMACE 8 channels") and report["max_abs_position_diff"] < 1e-5
    with pytest.raises(SystemExit) as stop:  # argparse: one model or one width
        cli.main(["bench", "md", "--channels", "8", "--model", "demo-small-data"])
    assert stop.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_cpu_replicas_per_call_keeps_the_widest_edge_tensor_within_the_budget(tmp_path, monkeypatch):
    """The CPU rule: at most CPU_ATOMS_PER_CALL atoms per pass, and no more replicas than keep
    (edges x widest convolution output) within CPU_EDGE_TENSOR_BYTES; GPUs take all in one pass."""
    import torch

    from hdpbench.models.evaluate import ReplicaForces, load_model
    from hdpbench.models.mace import build_mace, save_model
    from hdpbench.models.neighbours import neighbour_list
    from hdpbench.pipeline.benchmarking import md_starting_frames

    frames = md_starting_frames(6)
    elements = sorted({int(z) for atoms in frames for z in atoms.numbers})
    model = load_model(str(save_model(build_mace(elements, channels=8, r_max=5.0, seed=1), tmp_path / "tiny.model")))
    assert ReplicaForces(model, frames).replicas_per_call == ReplicaForces.CPU_ATOMS_PER_CALL // 80  # small tensors: the atom rule
    edges = max(
        len(neighbour_list(torch.as_tensor(a.positions), torch.as_tensor(a.cell[:])[None], torch.zeros(80, dtype=torch.int64), 5.0).sender)
        for a in frames
    )
    width = max(block.conv_tp.irreps_out.dim for block in model.module.interactions)
    monkeypatch.setattr(ReplicaForces, "CPU_EDGE_TENSOR_BYTES", 2 * edges * width * 4 + 1)  # float32: two replicas fit
    assert ReplicaForces(model, frames).replicas_per_call == 2
    monkeypatch.setattr(ReplicaForces, "CPU_EDGE_TENSOR_BYTES", 1)  # nothing fits: still one replica per pass
    assert ReplicaForces(model, frames).replicas_per_call == 1
