"""Batched MACE evaluation vs the ASE MACECalculator loop (and TorchSim where installed), one run.

    python benchmarks/bench_evaluate.py [--quick] [--device cpu|cuda] [--dtype float32|float64] [--json OUT]

Same as ``hdpbench bench evaluate``. Prints frames/s and the ratios measured in this run.
"""

import sys

from hdpbench.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "evaluate", *sys.argv[1:]]))
