"""σ for 2000 frames x 80 atoms with a 240x240 Φ (the size of one AIMD production file), one run.

    python benchmarks/bench_sigma.py [--frames 2000] [--repeats 5] [--json OUT]

Prints the best time of the vectorised σ and, for scale, of a per-frame Python loop with
ase.geometry.find_mic (the straightforward implementation).
"""

import argparse
import os
import platform
import time

import numpy as np
from ase.geometry import find_mic

from hdpbench import __version__
from hdpbench.core.compound import Trajectory
from hdpbench.core.storage import atomic_write_json
from hdpbench.core.structures import double_perovskite, make_supercell
from hdpbench.physics.anharmonicity import sigma


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    reference = make_supercell(double_perovskite("Cs", "Ag", "Bi", "Br", 11.25, 0.25), np.diag([2, 2, 2]))
    rng = np.random.default_rng(0)
    n = len(reference)
    a = rng.normal(size=(3 * n, 3 * n))
    fc = (a @ a.T / (3 * n)).reshape(n, 3, n, 3).transpose(0, 2, 1, 3)
    positions = reference.positions + rng.normal(0, 0.1, (args.frames, n, 3))
    fractional = positions @ np.linalg.inv(reference.cell.array)
    positions = (fractional - np.floor(fractional)) @ reference.cell.array  # wrapped, as VASP writes them
    trajectory = Trajectory(reference.numbers, positions, reference.cell.array, rng.normal(size=positions.shape))

    def vectorised():
        return sigma(trajectory, reference, fc).sigma_per_frame

    def loop():
        matrix = fc.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)
        values = []
        for positions_k, forces_k in zip(trajectory.positions, trajectory.forces, strict=True):
            u, _ = find_mic(positions_k - reference.positions, reference.cell)
            harmonic = -(matrix @ u.reshape(-1)).reshape(n, 3)
            values.append(np.sqrt(((forces_k - harmonic) ** 2).sum() / (forces_k**2).sum()))
        return np.array(values)

    times = {"vectorised": [], "loop_find_mic": []}
    results = {}
    for _ in range(args.repeats):
        for name, function in (("vectorised", vectorised), ("loop_find_mic", loop)):
            start = time.perf_counter()
            results[name] = function()
            times[name].append(time.perf_counter() - start)
    assert np.allclose(results["vectorised"], results["loop_find_mic"], atol=1e-10)
    best = {k: min(v) for k, v in times.items()}
    report = {
        "benchmark": "sigma",
        "hdpbench_version": __version__,
        "hardware": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
        "frames": args.frames,
        "atoms": n,
        "vectorised_s": best["vectorised"],
        "loop_find_mic_s": best["loop_find_mic"],
        "speedup": best["loop_find_mic"] / best["vectorised"],
    }
    print(
        f"σ of {args.frames} frames x {n} atoms: vectorised {best['vectorised']:.3f} s, "
        f"per-frame loop with find_mic {best['loop_find_mic']:.3f} s ({report['speedup']:.1f}x)"
    )
    if args.json:
        atomic_write_json(args.json, report)


if __name__ == "__main__":
    main()
