"""What every model kind returns and checks, shared by the MACE evaluator and the ASE calculators."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

from hdpbench.core.errors import HdpbenchError
from hdpbench.core.validation import DTYPES  # noqa: F401 (the types a model computes in)


class UnknownElementError(HdpbenchError, ValueError):
    """A structure contains an element the model was not trained on."""


@dataclass
class Evaluation:
    """Per-structure results in input order (forces as a list: sizes may differ)."""

    energies: np.ndarray  # (n,) eV
    forces: list[np.ndarray]  # n arrays (n_atoms_i, 3) eV/Å
    stresses: np.ndarray | None = None  # (n, 3, 3) eV/Å³ (ASE sign convention)
    timings: dict[str, float] = field(default_factory=dict)
    batch_size: int | None = None

    def forces_array(self) -> np.ndarray:
        """Forces stacked to (n, n_atoms, 3); all structures must have the same size."""
        sizes = {len(f) for f in self.forces}
        if len(sizes) != 1:
            raise ValueError(f"structures have different sizes {sorted(sizes)}; use .forces")
        return np.stack(self.forces)


def check_elements(structures: Sequence[Atoms], model) -> None:
    """Refuse, before any compute, a structure with an element the model does not know (names both)."""
    if model.atomic_numbers is None:  # a calculator object: its elements are not declared
        return
    known = set(model.atomic_numbers)
    for index, atoms in enumerate(structures):
        unknown = sorted(set(atoms.numbers.tolist()) - known)
        if unknown:
            from ase.data import chemical_symbols

            raise UnknownElementError(
                f"structure {index} ({atoms.get_chemical_formula()}) contains "
                f"{[chemical_symbols[z] for z in unknown]}, which model {model.name} does not know "
                f"(it knows {[chemical_symbols[z] for z in sorted(known)]})"
            )
