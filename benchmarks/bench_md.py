"""K replicas of 80-atom HDPs: batched Andersen MD vs the ASE Andersen loop (one replica after another).

    python benchmarks/bench_md.py [--replicas 4] [--steps 10] [--channels 128] [--device cpu] [--json OUT]

Both use the same MACE model (random weights; timing does not depend on training) and float32.
Prints atoms·steps/s of each and their ratio, measured in one run (ASE first, then batched).
"""

import argparse
import time

import numpy as np
import torch
from ase import units
from ase.md.andersen import Andersen
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

from hdpbench.core.storage import atomic_write_json
from hdpbench.models.evaluate import load_model
from hdpbench.models.mace import build_mace, save_model
from hdpbench.physics.md import BatchedAndersen, MDSettings, model_forces
from hdpbench.pipeline.benchmarking import contention_since, cpu_counters, hardware, hdp_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json")
    args = parser.parse_args()
    counters = cpu_counters()
    import tempfile
    from pathlib import Path

    from mace.calculators import MACECalculator

    frames = hdp_frames(args.replicas)
    for k, atoms in enumerate(frames):
        MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(k))
    elements = sorted({int(z) for a in frames for z in a.numbers})
    path = save_model(build_mace(elements, channels=args.channels, r_max=6.0), Path(tempfile.mkdtemp()) / "m.model")
    calculator = MACECalculator(model_paths=str(path), device=args.device, default_dtype="float32")

    start = time.perf_counter()
    ase_final = []
    for k, atoms in enumerate(frames):
        atoms = atoms.copy()
        atoms.calc = calculator
        Andersen(atoms, units.fs, temperature_K=300, andersen_prob=0.5, rng=np.random.default_rng(k)).run(args.steps)
        ase_final.append(atoms.positions.copy())
    ase_s = time.perf_counter() - start

    # Same random draws as the ASE loop (one generator per replica), so the trajectories can be compared.
    md = BatchedAndersen(
        frames,
        model_forces(load_model(str(path), device=args.device, dtype="float32")),
        MDSettings(steps=args.steps),
        rngs=[np.random.default_rng(k) for k in range(len(frames))],
        device=args.device,
    )
    start = time.perf_counter()
    md.run(progress=False)
    batched_s = time.perf_counter() - start

    atom_steps = args.replicas * len(frames[0]) * args.steps
    report = {
        "benchmark": "md",
        "hardware": hardware(args.device),
        "device": args.device,
        "dtype": "float32",
        "model": f"ScaleShiftMACE {args.channels} channels, L=1, 2 layers, r_cut 6 A, random weights",
        "replicas": args.replicas,
        "atoms_per_replica": len(frames[0]),
        "steps": args.steps,
        "ase_atom_steps_per_s": atom_steps / ase_s,
        "batched_atom_steps_per_s": atom_steps / batched_s,
        "ratio_batched_vs_ase": ase_s / batched_s,
        "max_abs_position_diff": float(np.abs(np.concatenate(ase_final) - md.positions.cpu().numpy()).max()),
        "torch_version": torch.__version__,
        **contention_since(counters),
    }
    print(
        f"{args.replicas} replicas x {len(frames[0])} atoms x {args.steps} steps on {report['hardware']}: ASE loop "
        f"{report['ase_atom_steps_per_s']:.0f} atom-steps/s, batched {report['batched_atom_steps_per_s']:.0f} -> "
        f"{report['ratio_batched_vs_ase']:.2f}x"
    )
    if args.json:
        atomic_write_json(args.json, report)


if __name__ == "__main__":
    main()
