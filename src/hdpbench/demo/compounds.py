"""The demo compounds: Fm-3m A2BB'X6 with site assignment, a starting lattice constant and literature values.

``a_start`` only seeds the GFN1-xTB relaxation. ``a_literature`` is recorded beside the relaxed value
only where an experimental value is known to us (otherwise None). For every compound,
:func:`ionic_radius_lattice_constant` gives a crude geometric scale from Shannon radii, so a
relaxation that collapses the cell shows even where no experiment is known.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoCompound:
    formula: str
    a_site: str
    b_site: str
    b_prime_site: str
    halide: str
    a_start: float  # Å, conventional cubic cell
    a_literature: float | None = None
    literature_source: str | None = None
    in_paper_table2: bool = False


# Order = generation order: the cheap fluoride first, then one of each other halide, so a partial
# run already spans the halides.
DEMO_COMPOUNDS = [
    DemoCompound("Rb3AlF6", "Rb", "Rb", "Al", "F", 8.5, in_paper_table2=True),
    DemoCompound(
        "Cs2NaInCl6", "Cs", "Na", "In", "Cl", 10.5, a_literature=10.53, literature_source="experiment (elpasolite, room T)"
    ),
    DemoCompound("Rb2NiAgF6", "Rb", "Ni", "Ag", "F", 8.7, in_paper_table2=True),
    DemoCompound(
        "Cs2AgBiBr6", "Cs", "Ag", "Bi", "Br", 11.25, a_literature=11.25, literature_source="experiment (single crystal, room T)"
    ),
    DemoCompound("Cs2NaRuF6", "Cs", "Na", "Ru", "F", 9.0, in_paper_table2=True),
    DemoCompound("Cs2NaBiI6", "Cs", "Na", "Bi", "I", 12.3),
    DemoCompound("K2RbSbF6", "K", "Rb", "Sb", "F", 8.9, in_paper_table2=True),
    DemoCompound("K2InAgF6", "K", "In", "Ag", "F", 8.6, in_paper_table2=True),
]

# Tried in order when a compound of that halide fails validation (SCF not converging).
REPLACEMENTS = {
    "F": [DemoCompound("K2NaAlF6", "K", "Na", "Al", "F", 8.1), DemoCompound("Cs2KScF6", "Cs", "K", "Sc", "F", 9.0)],
    "Cl": [DemoCompound("Cs2AgBiCl6", "Cs", "Ag", "Bi", "Cl", 10.8)],
    "Br": [DemoCompound("Cs2NaBiBr6", "Cs", "Na", "Bi", "Br", 11.4)],
    "I": [DemoCompound("Cs2AgBiI6", "Cs", "Ag", "Bi", "I", 12.2)],
}


# Shannon (1976) effective ionic radii for six-fold coordination, Å (Acta Cryst. A32, 751);
# Ni3+ is the low-spin value. Oxidation states follow the charge balance of A(+1)2 B B' X(-1)6:
# alkali metals and Ag are +1, every other B/B' cation +3.
SHANNON_RADIUS_CN6 = {
    ("Na", 1): 1.02, ("K", 1): 1.38, ("Rb", 1): 1.52, ("Cs", 1): 1.67, ("Ag", 1): 1.15,
    ("Al", 3): 0.535, ("Sc", 3): 0.745, ("In", 3): 0.80, ("Bi", 3): 1.03, ("Sb", 3): 0.76,
    ("Ru", 3): 0.68, ("Ni", 3): 0.56,
    ("F", -1): 1.33, ("Cl", -1): 1.81, ("Br", -1): 1.96, ("I", -1): 2.20,
}  # fmt: skip
_MONOVALENT = {"Na", "K", "Rb", "Cs", "Ag"}


def ionic_radius_lattice_constant(compound: DemoCompound) -> float:
    """Conventional a (Å) if both octahedral bonds were sums of ionic radii: a = 2(r_B + r_X) + 2(r_B' + r_X).

    A sanity scale only: it overestimates the experimental cells it is tested against by less than
    10 %, most for the covalent Ag/Bi halides.
    """
    charges = {site: (1 if site in _MONOVALENT else 3) for site in (compound.b_site, compound.b_prime_site)}
    if sum(charges.values()) != 4:
        raise ValueError(f"{compound.formula}: B and B' charges {charges} do not balance A2 X6")
    r_x = SHANNON_RADIUS_CN6[(compound.halide, -1)]
    return sum(2 * (SHANNON_RADIUS_CN6[(site, charge)] + r_x) for site, charge in charges.items())


def by_formula(formula: str) -> DemoCompound:
    for compound in DEMO_COMPOUNDS + [c for cs in REPLACEMENTS.values() for c in cs]:
        if compound.formula == formula:
            return compound
    raise KeyError(f"no demo compound {formula!r}")


def outcomes() -> dict[str, str]:
    """``{formula: "done" | "failed: reason"}`` for every compound a generator has finished.

    One file per compound, so several generator processes never overwrite each other's records.
    """
    import json

    from hdpbench.core import paths

    found = {}
    for path in sorted(paths.demo_work_dir().glob("*/outcome.json")):
        found[path.parent.name] = json.loads(path.read_text())["outcome"]
    return found
