"""SOAP descriptors and the REMatch kernel for 80-atom HDP frames: the KPCA stage's cost, one run.

    python benchmarks/bench_kpca.py [--frames 24] [--json OUT]

Prints frames/s for SOAP and kernel entries/s for REMatch (dscribe, paper settings); the cost model
(`hdpbench run kpca --estimate`) reads ``rematch_pairs_per_s`` from the JSON.
"""

import argparse
import time

from hdpbench import __version__
from hdpbench.core.storage import atomic_write_json
from hdpbench.physics.kpca import rematch_kernel, soap_descriptors
from hdpbench.pipeline.benchmarking import contention_since, cpu_counters, hardware, hdp_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=32, help="more than one block (16), as in the stage")
    parser.add_argument("--json")
    parser.add_argument("--conditions", default="", help="what else ran on the machine, recorded in the JSON")
    args = parser.parse_args()
    counters = cpu_counters()
    frames = [f for f in hdp_frames(4 * args.frames) if f.get_chemical_symbols()[0] == "Cs" and "Br" in f.get_chemical_symbols()]
    frames = frames[: args.frames]  # one compound, as in a KPCA map
    start = time.perf_counter()
    descriptors = soap_descriptors(frames)
    soap_s = time.perf_counter() - start
    start = time.perf_counter()
    rematch_kernel(descriptors)
    rematch_s = time.perf_counter() - start
    pairs = len(frames) ** 2  # the stage's kernels exceed one block and are computed row block by row block
    report = {
        "benchmark": "kpca",
        "hdpbench_version": __version__,
        "device": "cpu",
        "hardware": hardware("cpu"),
        "frames": len(frames),
        "atoms_per_frame": len(frames[0]),
        "soap_frames_per_s": len(frames) / soap_s,
        "rematch_s": rematch_s,
        "rematch_pairs_per_s": pairs / rematch_s,
        **contention_since(counters),
        "conditions": args.conditions,
    }
    print(f"SOAP: {report['soap_frames_per_s']:.1f} frames/s; REMatch: {report['rematch_pairs_per_s']:.1f} pairs/s ({len(frames)} frames, {rematch_s:.1f} s)")
    if args.json:
        atomic_write_json(args.json, report)


if __name__ == "__main__":
    main()
