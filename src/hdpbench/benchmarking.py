"""Side-by-side throughput measurements (run from ``benchmarks/`` or ``hdpbench bench``), never timed tests.

``evaluation_benchmark`` evaluates the same 80-atom HDP frames with a medium-sized MACE (128
channels, L=1, 2 layers, r_cut 6 Å, random weights: timing does not depend on training) by
(a) the ASE ``MACECalculator`` loop the authors used, (b) hdpbench's batched evaluator and (c)
TorchSim's batched static evaluation where it is installed — alternating the methods in every
repeat so load drifts hit all of them, and keeping each method's best repeat.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__

HDP_FRAMES = [("Cs", "Ag", "Bi", "Br", 11.25), ("Cs", "Na", "In", "Cl", 10.5), ("Rb", "Ni", "Ag", "F", 8.6), ("Cs", "Na", "Bi", "I", 12.3)]


def hardware(device: str) -> str:
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(0)} ({cpu})"
    return cpu


def hdp_frames(n_frames: int, seed: int = 0):
    """80-atom 2x2x2 supercells of four HDPs (one per halide), rattled by 0.05 Å."""
    from .structures import double_perovskite, make_supercell

    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n_frames):
        a_site, b, b_prime, x, a = HDP_FRAMES[k % len(HDP_FRAMES)]
        atoms = make_supercell(double_perovskite(a_site, b, b_prime, x, a, 0.25), np.diag([2, 2, 2]))
        atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
        frames.append(atoms)
    return frames


def evaluation_benchmark(
    *, n_frames: int = 32, repeats: int = 3, device: str = "cpu", dtype: str = "float32", channels: int = 128
) -> dict[str, Any]:
    from .evaluate import BatchedEvaluator, load_model
    from .mace_models import build_mace, save_model
    from .torch_setup import prepare_torch

    torch = prepare_torch()
    frames = hdp_frames(n_frames)
    elements = sorted({int(z) for atoms in frames for z in atoms.numbers})
    module = build_mace(elements, channels=channels, max_L=1, num_interactions=2, r_max=6.0, seed=0, dtype="float64")
    scratch = Path(tempfile.mkdtemp())
    model_file = save_model(module, scratch / "medium.model")

    from mace.calculators import MACECalculator

    calculator = MACECalculator(model_paths=str(model_file), device=device, default_dtype=dtype)
    loaded = load_model(str(model_file), device=device, dtype=dtype)

    def synchronise():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def ase_loop():
        forces = []
        for atoms in frames:
            atoms = atoms.copy()
            atoms.calc = calculator
            forces.append(atoms.get_forces())
        return np.stack(forces)

    evaluator = BatchedEvaluator(loaded, batch_size="auto", progress=False)
    evaluator.evaluate(frames[: min(len(frames), 16)])  # measures and caches the batch size

    def batched():
        return evaluator.evaluate(frames).forces_array()

    methods = {"ase": ase_loop, "batched": batched}
    torchsim_note = None
    try:
        import torch_sim
        from torch_sim.models.mace import MaceModel

        torchsim_model = MaceModel(
            model=loaded.module, device=torch.device(device), dtype=getattr(torch, dtype), compute_stress=False
        )

        def torchsim():
            results = torch_sim.static(system=frames, model=torchsim_model)
            return np.stack([r["forces"].detach().cpu().numpy() for r in results])

        methods["torchsim"] = torchsim
    except Exception as error:  # optional extra: record why it was not measured
        torchsim_note = f"{type(error).__name__}: {error}"

    times: dict[str, list[float]] = {name: [] for name in methods}
    forces: dict[str, np.ndarray] = {}
    for name, method in methods.items():  # warm-up (JIT, allocator), not timed
        forces[name] = method()
    graph_s_before, model_s_before = evaluator.timings["graphs_s"], evaluator.timings["model_s"]
    for _ in range(repeats):
        for name, method in methods.items():
            synchronise()
            start = time.perf_counter()
            method()
            synchronise()
            times[name].append(time.perf_counter() - start)
    graph_s = evaluator.timings["graphs_s"] - graph_s_before
    model_s = evaluator.timings["model_s"] - model_s_before
    best = {name: min(values) for name, values in times.items()}
    report: dict[str, Any] = {
        "benchmark": "evaluate",
        "hdpbench_version": __version__,
        "torch_version": torch.__version__,
        "hardware": hardware(device),
        "device": device,
        "dtype": dtype,
        "model": f"ScaleShiftMACE {channels} channels, L=1, 2 layers, r_cut 6 A, random weights",
        "frames": n_frames,
        "atoms_per_frame": len(frames[0]),
        "repeats": repeats,
        "batch_size": evaluator.batch_size if isinstance(evaluator.batch_size, int) else evaluator._cached_batch_size(80),
        "ase_frames_per_s": n_frames / best["ase"],
        "batched_frames_per_s": n_frames / best["batched"],
        "ratio_batched_vs_ase": best["ase"] / best["batched"],
        "batched_atoms_per_s": n_frames * len(frames[0]) / best["batched"],
        "max_abs_force_diff": float(np.abs(forces["batched"] - forces["ase"]).max()),
        "neighbor_list_share_of_batched_time": graph_s / (graph_s + model_s),
        "all_times_s": times,
    }
    if "torchsim" in methods:
        report["torchsim_frames_per_s"] = n_frames / best["torchsim"]
        report["ratio_batched_vs_torchsim"] = best["torchsim"] / best["batched"]
        report["max_abs_force_diff_torchsim"] = float(np.abs(forces["torchsim"] - forces["ase"]).max())
    else:
        report["torchsim_not_measured"] = torchsim_note
    return report


def calculator_benchmark(model: str = "chgnet-0.3.0", *, n_frames: int = 32, repeats: int = 3, device: str = "cpu") -> dict[str, Any]:
    """A ``kind: ase`` model's batched inference against its own calculator one structure at a time
    (the ASE loop), on the same 80-atom HDP frames, methods alternated in every repeat, best kept."""
    import dataclasses

    from .calculators import CalculatorModel
    from .evaluate import load_model

    loaded = load_model(model, device=device)
    if not isinstance(loaded, CalculatorModel) or loaded.batched is None:
        raise ValueError(f"model {model} has no batched path to compare with its calculator (kind: ase with 'batched:')")
    frames = hdp_frames(n_frames)
    batched = loaded.evaluator()
    loop = dataclasses.replace(loaded, batched=None).evaluator()
    methods = {"ase_loop": lambda: loop.evaluate(frames).forces_array(), "batched": lambda: batched.evaluate(frames).forces_array()}
    forces = {name: method() for name, method in methods.items()}  # warm-up, not timed
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, method in methods.items():
            start = time.perf_counter()
            method()
            times[name].append(time.perf_counter() - start)
    best = {name: min(values) for name, values in times.items()}
    return {
        "benchmark": "calculator",
        "hdpbench_version": __version__,
        "hardware": hardware(device),
        "device": device,
        "model": model,
        "dtype": loaded.dtype,
        "batch_size": loaded.batch_size,
        "frames": n_frames,
        "atoms_per_frame": len(frames[0]),
        "repeats": repeats,
        "ase_frames_per_s": n_frames / best["ase_loop"],
        "batched_frames_per_s": n_frames / best["batched"],
        "ratio_batched_vs_ase": best["ase_loop"] / best["batched"],
        "max_abs_force_diff": float(np.abs(forces["batched"] - forces["ase_loop"]).max()),
        "all_times_s": times,
    }
