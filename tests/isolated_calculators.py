"""Calculators for the isolated-model tests, copied into the test's own environment (they run in the
worker, which imports nothing of hdpbench): EMT that can be slowed down, and one that returns NaN."""

import time

import numpy as np
from ase.calculators.emt import EMT


class SlowEMT(EMT):
    """EMT that sleeps ``delay`` seconds per structure (a batch long enough to kill or time out)."""

    def __init__(self, delay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.delay = delay

    def calculate(self, *args, **kwargs):
        time.sleep(self.delay)
        super().calculate(*args, **kwargs)


class NaNForces(EMT):
    """EMT whose forces come back NaN: a broken model the parent must refuse."""

    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        self.results["forces"] = np.full_like(self.results["forces"], np.nan)
