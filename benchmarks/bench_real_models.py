"""Seconds per force call of the real models on the real CsPbI3 supercell (135 atoms), one run.

    python benchmarks/bench_real_models.py [--models chgnet-0.3.0 sevennet-0 ...] [--frames 4] [--json OUT]

For each model: the first call (for an isolated model: starting its worker, importing torch and its
package there, loading the checkpoint; its environment must be built, or is built first and timed
apart) and then the best of two calls on ``--frames`` rattled copies of the supercell, one request
each. What the real-data pages cost per model comes from these numbers.
"""

import argparse
import time

import numpy as np

from hdpbench import __version__
from hdpbench.core.storage import atomic_write_json
from hdpbench.data.datasets import get_dataset
from hdpbench.models.evaluate import load_model
from hdpbench.pipeline.benchmarking import contention_since, cpu_counters, hardware

DEFAULT_MODELS = ["chgnet-0.3.0", "chgnet-0.2.0", "chgnet-r2scan", "sevennet-0", "sevennet-0-22may2024", "sevennet-mf-0", "sevennet-l3i5"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--json")
    args = parser.parse_args()
    supercell = get_dataset("external").load("CsPbI3").reference_supercell
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(args.frames):
        atoms = supercell.copy()
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        frames.append(atoms)
    counters = cpu_counters()
    rows = {}
    for name in args.models:
        model = load_model(name)
        environment_s = None
        if hasattr(model, "environment"):  # an isolated model: its environment, built if it is not yet
            start = time.perf_counter()
            model.environment  # noqa: B018 (built here, timed apart from the worker)
            environment_s = time.perf_counter() - start
        evaluator = model.evaluator(batch_size=len(frames))
        start = time.perf_counter()
        evaluator.evaluate(frames[:1])
        first = time.perf_counter() - start
        calls = []
        for _ in range(2):
            start = time.perf_counter()
            evaluator.evaluate(frames)
            calls.append((time.perf_counter() - start) / len(frames))
        rows[name] = {
            "kind": model.kind,
            "environment_s": environment_s,
            "first_call_s": first,
            "per_structure_s": min(calls),
            "all_per_structure_s": calls,
        }
        print(f"{name:22s} {model.kind:9s} first call {first:6.1f} s, then {min(calls):6.3f} s per 135-atom structure", flush=True)
        if hasattr(model, "close"):
            model.close()
    report = {
        "benchmark": "real_models",
        "hdpbench_version": __version__,
        "hardware": hardware("cpu"),
        "structure": f"CsPbI3 3x3x3 supercell ({len(supercell)} atoms), rattled 0.05 Å",
        "frames_per_call": args.frames,
        "models": rows,
        **contention_since(counters),
    }
    if args.json:
        atomic_write_json(args.json, report)


if __name__ == "__main__":
    main()
