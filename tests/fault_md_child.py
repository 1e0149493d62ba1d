"""A real batched MD run that tests/test_faults.py kills and resumes (run as a script).

    python tests/fault_md_child.py OUTPUT_DIR [--model CHECKPOINT] [--steps N]

Forces: ASE's EMT on two copper replicas of different sizes (float64, fast), or a MACE model
(``--model``, registry name or checkpoint, float32) on two copies of ``HDPBENCH_TEST_STRUCTURE``. ``HDPBENCH_TEST_FAULT`` makes the process SIGKILL itself at
a chosen instruction, so every window of the write protocol is hit deterministically:

* ``step:K``        before the force call of step K (between two steps);
* ``append:K``      in the K-th frame append, after half of the frame's bytes are written;
* ``fsync:K``       at the K-th fsync of a trajectory file (frames written, checkpoint not yet);
* ``replace:K``     just before the K-th checkpoint is renamed into place (its temporary written).

``HDPBENCH_TEST_STEP_DELAY`` (seconds) slows each step so that a kill at a random moment lands inside
a run.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("--model")
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()

    import numpy as np
    from ase.build import bulk

    from hdpbench.physics import md as md_module
    from hdpbench.physics.md import BatchedAndersen, MDSettings

    kind, _, count = os.environ.get("HDPBENCH_TEST_FAULT", "").partition(":")
    target = int(count) if count else 0
    calls = {"step": 0, "append": 0, "fsync": 0, "replace": 0}
    delay = float(os.environ.get("HDPBENCH_TEST_STEP_DELAY", "0"))

    def counted(name: str) -> bool:
        calls[name] += 1
        return kind == name and calls[name] == target

    if args.model:
        from ase.io import read

        cell = read(os.environ["HDPBENCH_TEST_STRUCTURE"])
        structures = [cell.copy(), cell.copy()]
        force_function = md_module.model_forces(args.model, dtype="float32")
    else:
        from ase.calculators.emt import EMT

        structures = [bulk("Cu", "fcc", a=3.61, cubic=True), bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))]

        def force_function(batch):
            out = []
            for atoms in batch:
                atoms = atoms.copy()
                atoms.calc = EMT()
                out.append(atoms.get_forces())
            return out

    rng = np.random.default_rng(7)
    for atoms in structures:
        atoms.rattle(0.05, rng=rng)

    original_step = BatchedAndersen.step

    def step(self):
        if counted("step"):
            die()
        if delay:
            time.sleep(delay)
        original_step(self)

    original_append = BatchedAndersen._append

    def append(path, data):
        if counted("append"):
            with open(path, "ab") as handle:
                handle.write(data[: len(data) // 2])
                handle.flush()
                os.fsync(handle.fileno())
            die()
        original_append(path, data)

    original_fsync = os.fsync

    def fsync(fd):
        original_fsync(fd)
        name = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        if name.endswith(".extxyz") and counted("fsync"):
            die()

    original_replace = os.replace

    def replace(source, destination, *rest, **kwargs):
        if str(destination).endswith("checkpoint.npz") and counted("replace"):
            die()
        return original_replace(source, destination, *rest, **kwargs)

    BatchedAndersen.step = step
    BatchedAndersen._append = staticmethod(append)
    os.fsync = fsync
    os.replace = replace

    settings = MDSettings(steps=args.steps, write_every=1, checkpoint_every=7, seed=3)
    run = BatchedAndersen(structures, force_function, settings, output_dir=args.output)
    run.run(progress=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
