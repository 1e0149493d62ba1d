"""Streaming vasprun.xml reader vs ase.io.read on a 2000-step MD file (timed in one run, alternating).

The file is made in a temporary folder by repeating the ionic steps of a real VASP 6 MD file
(pymatgen's Si 64-atom test file in the shared fixtures, or any vasprun.xml given with --source)
and, with --atoms 80, by an 80-atom generated HDP trajectory written in the same format.

    python benchmarks/bench_vasprun.py [--steps 2000] [--repeats 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import tempfile
import time
import tracemalloc
from pathlib import Path

import ase.io
import numpy as np

from hdpbench import __version__
from hdpbench.io.vasprun import read_vasprun


def replicate(source: Path, steps: int, target: Path) -> Path:
    text = source.read_text(encoding="iso-8859-1")
    first = text.index("<calculation>")
    last = text.rindex("</calculation>") + len("</calculation>")
    blocks = re.findall(r"<calculation>.*?</calculation>", text[first:last], flags=re.S)
    with open(target, "w", encoding="iso-8859-1") as out:
        out.write(text[:first])
        for k in range(steps):
            out.write(blocks[k % len(blocks)])
            out.write("\n ")
        out.write(text[last:])
    return target


def hdp_trajectory(steps: int, target: Path) -> Path:
    """An 80-atom Cs2AgBiBr6 supercell with random displacements and forces (format timing only)."""
    from hdpbench.core.compound import Trajectory
    from hdpbench.core.structures import double_perovskite, make_supercell
    from hdpbench.io.vasprun import write_vasprun

    supercell = make_supercell(double_perovskite("Cs", "Ag", "Bi", "Br", 11.25, 0.245), np.diag([2, 2, 2]))
    rng = np.random.default_rng(0)
    positions = supercell.positions + rng.normal(0, 0.1, (steps, len(supercell), 3))
    write_vasprun(
        target,
        Trajectory(
            numbers=supercell.numbers,
            positions=positions,
            cells=np.broadcast_to(supercell.cell.array, (steps, 3, 3)),
            forces=rng.normal(0, 0.5, positions.shape),
            energies=rng.normal(-300, 1, steps),
        ),
    )
    return target


def timed(function, path):
    start = time.perf_counter()
    result = function(path)
    return time.perf_counter() - start, result


def peak_memory(function, path) -> int:
    """Peak Python-allocated bytes while reading (a separate, untimed run: tracing slows both)."""
    tracemalloc.start()
    function(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    fixtures = os.environ.get("HDPBENCH_FIXTURES", str(Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
    parser.add_argument("--source", default=str(Path(fixtures) / "vasp_md" / "Si64_vasp6_gamma_md_vasprun.xml"))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the results as JSON here")
    args = parser.parse_args()

    def ours(path):
        return read_vasprun(path).positions

    def ase_read(path):
        return np.array([atoms.positions for atoms in ase.io.read(path, index=":", format="vasp-xml")])

    report = {
        "hdpbench_version": __version__,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "steps": args.steps,
        "repeats": args.repeats,
        "cases": [],
    }
    with tempfile.TemporaryDirectory() as scratch:
        cases = []
        if Path(args.source).is_file():
            cases.append(("Si64 VASP 6 steps, replicated", replicate(Path(args.source), args.steps, Path(scratch) / "si.xml")))
        cases.append(("Cs2AgBiBr6 80 atoms, hdpbench writer", hdp_trajectory(args.steps, Path(scratch) / "hdp.xml")))
        for label, path in cases:
            times = {"hdpbench": [], "ase": []}
            readers = (("hdpbench", ours), ("ase", ase_read))
            for _ in range(args.repeats):  # alternate so drifts in machine load hit both
                for name, function in readers:
                    elapsed, positions = timed(function, path)
                    times[name].append(elapsed)
                    if name == "hdpbench":
                        reference = positions
                    else:
                        assert np.array_equal(positions, reference), "readers disagree"
            peaks = {name: peak_memory(function, path) for name, function in readers}
            best = {name: min(values) for name, values in times.items()}
            case = {
                "case": label,
                "file_mb": round(path.stat().st_size / 1e6, 1),
                "hdpbench_s": round(best["hdpbench"], 3),
                "ase_s": round(best["ase"], 3),
                "speedup_vs_ase": round(best["ase"] / best["hdpbench"], 2),
                "hdpbench_peak_mb": round(peaks["hdpbench"] / 1e6, 1),
                "ase_peak_mb": round(peaks["ase"] / 1e6, 1),
            }
            report["cases"].append(case)
            print(
                f"{label}: {case['file_mb']} MB, {args.steps} steps | hdpbench {case['hdpbench_s']} s, "
                f"ase {case['ase_s']} s -> {case['speedup_vs_ase']}x faster | peak traced memory "
                f"{case['hdpbench_peak_mb']} MB vs {case['ase_peak_mb']} MB"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
