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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from hdpbench import __version__

HDP_FRAMES = [("Cs", "Ag", "Bi", "Br", 11.25), ("Cs", "Na", "In", "Cl", 10.5), ("Rb", "Ni", "Ag", "F", 8.6), ("Cs", "Na", "Bi", "I", 12.3)]


def hardware(device: str) -> str:
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"
    model_name = _cpu_model_name()
    cpu = f"{model_name}, {cpu}" if model_name else cpu
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(0)} ({cpu})"
    return cpu


def _cpu_model_name() -> str | None:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), None)
    except OSError:  # not Linux
        return None


def cpu_counters() -> tuple[int, int] | None:
    """(steal, total) time of all CPUs since boot from ``/proc/stat`` (Linux; None elsewhere), in clock ticks."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice]: guests are inside user time
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def contention_since(start: tuple[int, int] | None) -> dict[str, Any]:
    """How much of the machine other work took while a benchmark ran (from ``start = cpu_counters()``):
    the load average after it and the share of CPU time the hypervisor gave to other virtual machines
    (steal). Timings taken at a steal share above a few per cent are slower than the hardware, and not
    all methods of one run lose alike, so ratios from such runs are not comparable to quiet ones."""
    report: dict[str, Any] = {"load_average_1min_after": os.getloadavg()[0]}
    end = cpu_counters()
    if start is not None and end is not None and end[1] > start[1]:
        report["cpu_steal_share"] = (end[0] - start[0]) / (end[1] - start[1])
    return report


def hdp_frames(n_frames: int, seed: int = 0):
    """80-atom 2x2x2 supercells of four HDPs (one per halide), rattled by 0.05 Å."""
    from hdpbench.core.structures import double_perovskite, make_supercell

    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n_frames):
        a_site, b, b_prime, x, a = HDP_FRAMES[k % len(HDP_FRAMES)]
        atoms = make_supercell(double_perovskite(a_site, b, b_prime, x, a, 0.25), np.diag([2, 2, 2]))
        atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
        frames.append(atoms)
    return frames


def random_mace_label(channels: int) -> str:
    """How a benchmark report names the random-weight MACE it timed (the cost model selects by it)."""
    return f"ScaleShiftMACE {channels} channels, L=1, 2 layers, r_cut 6 A, random weights"


def evaluation_benchmark(
    *, n_frames: int = 32, repeats: int = 3, device: str = "cpu", dtype: str = "float32", channels: int = 128
) -> dict[str, Any]:
    """Forces of ``n_frames`` 80-atom HDP frames with a random-weight MACE of ``channels`` channels:
    the ASE ``MACECalculator`` loop against the batched evaluator (and cuEquivariance, TorchSim where
    installed), methods alternated in every repeat, best kept."""
    counters = cpu_counters()
    from hdpbench.core.torch_setup import prepare_torch
    from hdpbench.models.evaluate import BatchedEvaluator, load_model
    from hdpbench.models.mace import build_mace, save_model

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
    cueq_note = None
    try:  # the same model on cuEquivariance (its PyTorch fallback on a CPU, its kernels on CUDA)
        cueq_loaded = load_model(str(model_file), device=device, dtype=dtype, accelerator="cueq")
        cueq_evaluator = BatchedEvaluator(cueq_loaded, batch_size=evaluator.cached_batch_size(len(frames[0])) or 1, progress=False)
        methods["cueq"] = lambda: cueq_evaluator.evaluate(frames).forces_array()
    except Exception as error:  # optional extra: record why it was not measured
        cueq_note = f"{type(error).__name__}: {error}"
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
        "model": random_mace_label(channels),
        "frames": n_frames,
        "atoms_per_frame": len(frames[0]),
        "repeats": repeats,
        "batch_size": evaluator.batch_size if isinstance(evaluator.batch_size, int) else evaluator.cached_batch_size(80),
        "ase_frames_per_s": n_frames / best["ase"],
        "batched_frames_per_s": n_frames / best["batched"],
        "ratio_batched_vs_ase": best["ase"] / best["batched"],
        "batched_atoms_per_s": n_frames * len(frames[0]) / best["batched"],
        "max_abs_force_diff": float(np.abs(forces["batched"] - forces["ase"]).max()),
        "neighbor_list_share_of_batched_time": graph_s / (graph_s + model_s),
        "all_times_s": times,
        **contention_since(counters),
    }
    if "cueq" in methods:
        report["cueq_frames_per_s"] = n_frames / best["cueq"]
        report["ratio_cueq_vs_batched"] = best["batched"] / best["cueq"]
        report["max_abs_force_diff_cueq_vs_batched"] = float(np.abs(forces["cueq"] - forces["batched"]).max())
    else:
        report["cueq_not_measured"] = cueq_note
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
    counters = cpu_counters()
    import dataclasses

    from hdpbench.models.evaluate import load_model
    from hdpbench.models.interface import Capability

    loaded = load_model(model, device=device)
    if Capability.BATCHED not in loaded.capabilities or not hasattr(loaded, "batched"):
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
        **contention_since(counters),
    }


def isolation_benchmark(*, n_frames: int = 16, repeats: int = 3, device: str = "cpu") -> dict[str, Any]:
    """The cost of running a model in its own environment: CHGNet 0.3.0's calculator in this process
    (the registered ``chgnet-0.3.0`` without its batched path, one structure at a time) against the
    same calculator, at the same package versions, in an environment of its own behind a worker
    (one request per force call of ``n_frames`` 80-atom HDP frames). Methods alternated in every
    repeat, best kept; the forces of the two must be identical."""
    import dataclasses
    from importlib import metadata

    from hdpbench.models.environments import EnvironmentSpec, IsolatedSpec
    from hdpbench.models.evaluate import load_model
    from hdpbench.models.isolated import IsolatedModel

    in_process = load_model("chgnet-0.3.0", device=device)
    in_process = dataclasses.replace(in_process, batched=None)  # its calculator, one structure at a time
    pins = [f"{package}=={metadata.version(package)}" for package in ("torch", "chgnet", "pymatgen", "ase", "numpy")]
    pins = [pin.split("+")[0] for pin in pins]  # torch 2.13.0+cpu → the local wheel of 2.13.0
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    spec = IsolatedSpec(
        environment=EnvironmentSpec(tuple(pins), version), calculator="chgnet.model.dynamics:CHGNetCalculator",
        calculator_kwargs={"use_device": device}, batch_size=n_frames,
    )  # fmt: skip
    isolated = IsolatedModel(name="chgnet-0.3.0-isolated", spec=spec, device=device, dtype="float32", atomic_numbers=in_process.atomic_numbers)
    build_start = time.perf_counter()
    environment = isolated.environment
    build_s = time.perf_counter() - build_start
    frames = hdp_frames(n_frames)
    counters = cpu_counters()
    start = time.perf_counter()
    isolated.worker.start()
    worker_start_s = time.perf_counter() - start
    evaluators = {"in_process": in_process.evaluator(), "isolated": isolated.evaluator(batch_size=n_frames)}
    methods = {name: (lambda e=e: e.evaluate(frames).forces_array()) for name, e in evaluators.items()}
    forces = {name: method() for name, method in methods.items()}  # warm-up, not timed
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, method in methods.items():
            t0 = time.perf_counter()
            method()
            times[name].append(time.perf_counter() - t0)
    isolated.close()
    best = {name: min(values) for name, values in times.items()}
    return {
        "benchmark": "isolation",
        "hdpbench_version": __version__,
        "hardware": hardware(device),
        "device": device,
        "model": "chgnet-0.3.0 (CHGNetCalculator, one structure at a time on both sides)",
        "environment_pins": pins,
        "environment_build_s": round(build_s, 1) if build_s > 1 else "already built",
        "environment_record_build_s": environment.record.get("build_seconds"),
        "worker_start_s": worker_start_s,
        "frames_per_call": n_frames,
        "atoms_per_frame": len(frames[0]),
        "repeats": repeats,
        "in_process_call_s": best["in_process"],
        "isolated_call_s": best["isolated"],
        "overhead_share": best["isolated"] / best["in_process"] - 1.0,
        "max_abs_force_diff": float(np.abs(forces["isolated"] - forces["in_process"]).max()),
        "all_times_s": times,
        **contention_since(counters),
    }


def rematch_benchmark(
    *, n_frames: int = 60, repeats: int = 3, dataset: str = "demo", compound: str | None = None, device: str = "cpu"
) -> dict[str, Any]:
    """The KPCA stage's REMatch kernel, batched, against dscribe's ``REMatchKernel``, on real AIMD frames
    of one compound (the embedded demo by default), methods alternated in every repeat, best kept; the
    SOAP time of the same frames for scale. ``ours`` is the stage's precision of the atom-pair products
    (``KPCASettings.gram_precision``); float64 (dscribe's arithmetic) and plain float32 are reported too.
    On ``device="cpu"`` ours solves blocks on the process's threads (``ours_threads``, each with
    single-threaded BLAS; dscribe runs with BLAS's own threads); on a GPU (``"cuda"``) all three
    precisions run the torch path there (``rematch_kernel(device=...)``), against dscribe on the CPU."""
    counters = cpu_counters()
    from hdpbench.core.torch_setup import default_threads, pinned_threads
    from hdpbench.data.datasets import get_dataset
    from hdpbench.physics.kpca import (
        KPCASettings,
        rematch_kernel,
        rematch_kernel_dscribe,
        soap_descriptors,
        subsample,
    )

    data = get_dataset(dataset)
    compound = compound or data.compounds()[0]
    reference = data.load(compound, discard=100).trajectory
    if reference is None or len(reference) < n_frames:
        raise ValueError(f"{dataset}/{compound} has {0 if reference is None else len(reference)} frames after the discard; asked for {n_frames}")
    frames = reference.to_atoms_list()
    frames = [frames[i] for i in subsample(len(frames), n_frames)]
    start = time.perf_counter()
    descriptors = soap_descriptors(frames)
    soap_s = time.perf_counter() - start
    precision = KPCASettings().gram_precision
    on = None if device == "cpu" else device  # the CPU's numpy path, else the torch path on the device
    methods = {
        "dscribe": lambda: rematch_kernel_dscribe(descriptors),
        "ours": lambda: rematch_kernel(descriptors, gram_dtype=precision, device=on),
        "ours_float64": lambda: rematch_kernel(descriptors, gram_dtype="float64", device=on),
        "ours_float32": lambda: rematch_kernel(descriptors, gram_dtype="float32", device=on),
    }
    if on is not None:
        rematch_kernel(descriptors[:2], gram_dtype=precision, device=on)  # device start-up outside the timings
    times: dict[str, list[float]] = {name: [] for name in methods}
    kernels = {}
    for _ in range(repeats):
        for name, method in methods.items():
            start = time.perf_counter()
            kernels[name] = method()
            times[name].append(time.perf_counter() - start)
    best = {name: min(values) for name, values in times.items()}
    off_diagonal = kernels["dscribe"][~np.eye(n_frames, dtype=bool)]
    ceiling = _rematch_product_ceiling(descriptors, best["dscribe"]) if on is None else {}
    return {
        "benchmark": "rematch",
        "hdpbench_version": __version__,
        "hardware": hardware(device),
        "device": device,
        "dataset": dataset,
        "compound": compound,
        "frames": n_frames,
        "atoms_per_frame": len(frames[0]),
        "features_per_atom": int(descriptors[0].shape[1]),
        "repeats": repeats,
        "soap_s": soap_s,
        "dscribe_s": best["dscribe"],
        "ours_precision": precision,
        "ours_threads": (pinned_threads() or default_threads()) if on is None else None,
        "ours_s": best["ours"],
        "ratio_vs_dscribe": best["dscribe"] / best["ours"],
        "max_abs_diff": float(np.abs(kernels["ours"] - kernels["dscribe"]).max()),
        "ours_float64_s": best["ours_float64"],
        "ratio_float64_vs_dscribe": best["dscribe"] / best["ours_float64"],
        "max_abs_diff_float64": float(np.abs(kernels["ours_float64"] - kernels["dscribe"]).max()),
        "ours_float32_s": best["ours_float32"],
        "ratio_float32_vs_dscribe": best["dscribe"] / best["ours_float32"],
        "max_abs_diff_float32": float(np.abs(kernels["ours_float32"] - kernels["dscribe"]).max()),
        "kernel_off_diagonal_range": [float(off_diagonal.min()), float(off_diagonal.max())],
        "rematch_pairs_per_s": n_frames**2 / best["ours"],
        **ceiling,
        "all_times_s": times,
        **contention_since(counters),
    }


def _rematch_product_ceiling(descriptors, dscribe_s: float) -> dict[str, Any]:
    """What the atom-pair products alone cost on this machine: their arithmetic for this symmetric
    kernel (:func:`~hdpbench.physics.kpca.rematch_product_flops`), the float32 matrix-product rate
    measured now on one block's shape (each of the kernel's threads running its own product, as the
    kernel runs them), and the speed-up over dscribe that exact float32 products could reach if
    everything else (Sinkhorn, copies) took no time."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    from hdpbench.core.torch_setup import default_threads, pinned_threads
    from hdpbench.physics.kpca import DEFAULT_CPU_BLOCK, rematch_product_flops

    sizes = [len(x) for x in descriptors]
    features = int(descriptors[0].shape[1])
    flops = rematch_product_flops(sizes, features)
    threads = pinned_threads() or default_threads()
    n = DEFAULT_CPU_BLOCK * sizes[0]
    rng = np.random.default_rng(0)
    blocks = [(rng.random((n, features), dtype=np.float32), rng.random((n, features), dtype=np.float32)) for _ in range(threads)]
    repeats = 5
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda ab: ab[0] @ ab[1].T, blocks))  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            list(pool.map(lambda ab: ab[0] @ ab[1].T, blocks))
        rate = repeats * threads * 2 * n * n * features / (time.perf_counter() - start)
    floor_s = flops / rate
    return {
        "products_gflop_float32": flops / 1e9,
        "matmul_gflop_per_s_float32": rate / 1e9,
        "products_floor_s_float32": floor_s,
        "ratio_ceiling_float32_products_vs_dscribe": dscribe_s / floor_s,
    }


def md_starting_frames(n_replicas: int, dataset: str = "demo") -> list:
    """``n_replicas`` starting structures from a dataset's AIMD (compounds in turn, frames spread out),
    with 300 K Maxwell–Boltzmann velocities (seeded) and no centre-of-mass motion, as the MD stage."""
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    from hdpbench.data.datasets import get_dataset

    data = get_dataset(dataset)
    names = data.compounds()
    trajectories = {}
    frames = []
    for r in range(n_replicas):
        name = names[r % len(names)]
        if name not in trajectories:
            trajectories[name] = data.load(name, discard=100).trajectory
        trajectory = trajectories[name]
        atoms = trajectory.atoms((r // len(names)) * 37 % len(trajectory))
        atoms.calc = None
        MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(r))
        Stationary(atoms)
        frames.append(atoms)
    return frames


def md_benchmark(
    model: str = "demo-small-data",
    *,
    replicas: int = 16,
    steps: int = 10,
    device: str = "cpu",
    dtype: str = "float32",
    replicas_per_call: int | str | None = "auto",
    accelerator: str | None = None,
    channels: int | None = None,
    torch_compile: bool | None = None,
) -> dict[str, Any]:
    """Andersen NVT of ``replicas`` demo structures: the ASE loop the authors ran (``Andersen`` with
    ``MACECalculator``, one replica after another) against hdpbench's batched, device-resident MD with
    the same random draws (so the trajectories are compared), and the batched MD building graphs from
    ASE ``Atoms`` (the path before device residence). One run; each method warmed up untimed.

    ``channels``: instead of ``model``, a MACE of that width with random weights, the architecture
    ``evaluation_benchmark`` times (128: the paper's medium foundation models' width, which the cost
    model reads). Steps per second count ensemble steps: all replicas advanced by one time step.
    """
    counters = cpu_counters()
    from ase import units
    from ase.md.andersen import Andersen

    from hdpbench.core.torch_setup import import_mace, prepare_torch
    from hdpbench.models.registry import checkpoint_path, get_model_spec
    from hdpbench.physics.md import BatchedAndersen, MDSettings, model_forces

    torch = prepare_torch()
    import_mace()  # keeps mace-torch's import notices off stdout (JSON output)
    from mace.calculators import MACECalculator
    frames = md_starting_frames(replicas)
    if channels is not None:
        from hdpbench.models.mace import build_mace, save_model

        elements = sorted({int(z) for atoms in frames for z in atoms.numbers})
        module = build_mace(elements, channels=channels, max_L=1, num_interactions=2, r_max=6.0, seed=0, dtype="float64")
        model = str(save_model(module, Path(tempfile.mkdtemp()) / f"mace-{channels}ch.model"))
        model_label = random_mace_label(channels)
    else:
        model_label = model
    calculator = MACECalculator(model_paths=str(checkpoint_path(get_model_spec(model))), device=device, default_dtype=dtype)
    forces = model_forces(model, device=device, dtype=dtype, replicas_per_call=replicas_per_call, accelerator=accelerator, torch_compile=torch_compile)

    def synchronise():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def ase_loop() -> np.ndarray:
        final = []
        for k, atoms in enumerate(frames):
            atoms = atoms.copy()
            atoms.calc = calculator
            Andersen(atoms, units.fs, temperature_K=300, andersen_prob=0.5, rng=np.random.default_rng(k)).run(steps)
            final.append(atoms.positions.copy())
        return np.concatenate(final)

    def batched(resident: bool) -> np.ndarray:
        md = BatchedAndersen(
            frames, forces, MDSettings(steps=steps), rngs=[np.random.default_rng(k) for k in range(replicas)], device=device, resident=resident
        )
        md.run(progress=False)
        return md.positions.cpu().numpy()

    warm = frames[0].copy()
    warm.calc = calculator
    warm.get_forces()
    BatchedAndersen(frames, forces, MDSettings(steps=1)).step()  # warm-up of both batched paths
    BatchedAndersen(frames, forces, MDSettings(steps=1), resident=False).step()
    methods = {"ase": ase_loop, "batched": lambda: batched(True), "batched_atoms_path": lambda: batched(False)}
    seconds, positions = {}, {}
    for name, method in methods.items():
        synchronise()
        start = time.perf_counter()
        positions[name] = method()
        synchronise()
        seconds[name] = time.perf_counter() - start
    force_call = _force_call_seconds(forces, frames, device, synchronise)
    report: dict[str, Any] = {
        "benchmark": "md",
        "hdpbench_version": __version__,
        "torch_version": torch.__version__,
        "hardware": hardware(device),
        "device": device,
        "dtype": dtype,
        "model": model_label,
        "replicas": replicas,
        "atoms_per_replica": len(frames[0]),
        "steps": steps,
        "replicas_per_call": forces.on_replicas(frames).replicas_per_call,
        "accelerator": forces.model.accelerator,
        "torch_compile": forces.model.compiled,
        "ase_steps_per_s": steps / seconds["ase"],
        "batched_steps_per_s": steps / seconds["batched"],
        "batched_atom_steps_per_s": steps * sum(len(atoms) for atoms in frames) / seconds["batched"],
        "ratio_batched_vs_ase": seconds["ase"] / seconds["batched"],
        "max_abs_position_diff": float(np.abs(positions["batched"] - positions["ase"]).max()),
        "batched_atoms_path_steps_per_s": steps / seconds["batched_atoms_path"],
        "ratio_resident_vs_atoms_path": seconds["batched_atoms_path"] / seconds["batched"],
        **force_call,
        # a run of n steps makes n + 1 force calls (the first step's forces, then one per step)
        "force_share_of_batched_run": (steps + 1) * force_call["force_call_s"] / seconds["batched"],
        **_frame_writing_seconds(frames),
        "seconds": seconds,
        **contention_since(counters),
    }
    try:
        report["torchsim_steps_per_s"] = _torchsim_md_steps_per_s(forces.model, frames, steps, device, dtype, synchronise)
        report["torchsim_note"] = "TorchSim's NVT Langevin integrator (TorchSim has no Andersen thermostat): throughput only"
    except Exception as error:  # optional extra: record why it was not measured
        report["torchsim_not_measured"] = f"{type(error).__name__}: {error}"
    return report


def _force_call_seconds(forces, frames, device: str, synchronise, repeats: int = 3) -> dict[str, Any]:
    """Best-of-``repeats`` time of one batched force call on all replicas (the MD's per-step model
    cost) with the process's threads and, on a CPU, with one thread: how much the second core buys."""
    from hdpbench.core.torch_setup import prepare_torch

    torch = prepare_torch()
    replica_forces = forces.on_replicas(frames)
    positions = torch.as_tensor(np.concatenate([atoms.positions for atoms in frames]), dtype=torch.float64, device=device)

    def best() -> float:
        replica_forces(positions)  # warm-up at this thread count
        times = []
        for _ in range(repeats):
            synchronise()
            start = time.perf_counter()
            replica_forces(positions)
            synchronise()
            times.append(time.perf_counter() - start)
        return min(times)

    threads = torch.get_num_threads()
    result: dict[str, Any] = {"force_call_threads": threads, "force_call_s": best()}
    if not device.startswith("cuda") and threads > 1:
        torch.set_num_threads(1)
        try:
            result["force_call_one_thread_s"] = best()
        finally:
            torch.set_num_threads(threads)
        result["force_call_thread_speedup"] = result["force_call_one_thread_s"] / result["force_call_s"]
    return result


def _frame_writing_seconds(frames, repeats: int = 5) -> dict[str, Any]:
    """The text of one MD step's frames (every replica, extxyz with momenta and forces), best of
    ``repeats``: ASE's writer on an ``Atoms`` per replica (what the MD did before) against
    :class:`~hdpbench.io.trajectories.ExtxyzFrameText`, which gives the same bytes (checked here)."""
    import io

    import ase.io

    from hdpbench.io.trajectories import ExtxyzFrameText

    rng = np.random.default_rng(0)
    states = [(atoms.positions, rng.normal(scale=0.02, size=(len(atoms), 3)), rng.normal(size=(len(atoms), 3))) for atoms in frames]
    formats = [ExtxyzFrameText(atoms) for atoms in frames]

    def with_ase() -> list[str]:
        texts = []
        for frame, state in zip(formats, states, strict=True):
            buffer = io.StringIO()
            ase.io.write(buffer, frame.atoms(*state, 1), format="extxyz")
            texts.append(buffer.getvalue())
        return texts

    def ours() -> list[str]:
        return [frame.text(*state, 1) for frame, state in zip(formats, states, strict=True)]

    def best(method) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            method()
            times.append(time.perf_counter() - start)
        return min(times)

    ase_s, ours_s = best(with_ase), best(ours)
    return {
        "frame_text_per_step_ase_s": ase_s,
        "frame_text_per_step_s": ours_s,
        "ratio_frame_text_vs_ase": ase_s / ours_s,
        "frame_text_equal_to_ase": with_ase() == ours(),
    }


def _torchsim_md_steps_per_s(loaded, frames, steps: int, device: str, dtype: str, synchronise) -> float:
    import torch_sim
    from torch_sim.models.mace import MaceModel

    torch = __import__("torch")
    model = MaceModel(model=loaded.module, device=torch.device(device), dtype=getattr(torch, dtype), compute_stress=False)
    torch_sim.integrate(system=frames, model=model, integrator=torch_sim.nvt_langevin, n_steps=1, temperature=300, timestep=0.001)
    synchronise()
    start = time.perf_counter()
    torch_sim.integrate(system=frames, model=model, integrator=torch_sim.nvt_langevin, n_steps=steps, temperature=300, timestep=0.001)
    synchronise()
    return steps / (time.perf_counter() - start)
