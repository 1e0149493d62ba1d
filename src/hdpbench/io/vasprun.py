"""Streaming reader for VASP ``vasprun.xml`` (relaxations, single points, MD).

A 2000-step production MD file of 80 atoms is tens of MB of XML. ``ase.io.read`` keeps every
``<calculation>`` element in memory and builds an Atoms object per step; here each step is turned
into arrays as soon as its closing tag is parsed and then dropped from the tree, so the parser's
memory does not grow with the number of steps. Values follow ``ase.io.read(path, index=":")``
exactly: same positions (fractional @ cell, not wrapped), cell, forces, ``energy`` (VASP's
e_0_energy workaround), ``free_energy`` (e_fr_energy minus the PSTRESS·V term) and stress (Voigt,
eV/Å³).
"""

from __future__ import annotations

import io
import os
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np
from ase.data import atomic_numbers
from ase.units import GPa

from hdpbench.core.compound import Trajectory
from hdpbench.core.errors import DataError, EmptyTrajectoryError

_EV_PER_J = 1.0 / 1.602176634e-19  # ASE's EVTOJ convention (kbar → eV/Å³ for PSTRESS)


@dataclass
class VasprunStep:
    """One ionic step, in ASE's conventions."""

    index: int
    cell: np.ndarray  # (3, 3) Å
    positions: np.ndarray  # (n_atoms, 3) Å, Cartesian
    forces: np.ndarray | None  # (n_atoms, 3) eV/Å
    energy: float
    free_energy: float
    stress: np.ndarray | None  # (6,) Voigt xx yy zz yz xz xy, eV/Å³ (ASE sign convention)
    symbols: list[str]  # shared by all steps of a file


def _vectors(varray: ET.Element | None) -> np.ndarray | None:
    """A ``<varray>`` of ``<v>`` rows as a 2-D float array (one C-level parse for all rows)."""
    if varray is None:
        return None
    rows = [v.text for v in varray]
    values = np.array(" ".join(rows).split(), dtype=float)
    return values.reshape(len(rows), -1)


def _source_name(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return getattr(source, "name", "<vasprun.xml stream>")


class _Context:
    def __init__(self, name: str):
        self.name = name
        self.symbols: list[str] | None = None
        self.pstress_kbar = 0.0


def _read_step(elem: ET.Element, index: int, ctx: _Context) -> VasprunStep:
    basis = _vectors(elem.find("structure/crystal/varray[@name='basis']"))
    fractional = _vectors(elem.find("structure/varray[@name='positions']"))
    energy_block = elem.find("energy")
    if basis is None or fractional is None or energy_block is None:
        raise DataError(ctx.name, f"ionic step {index} has no structure or energy block")
    n_atoms = len(ctx.symbols) if ctx.symbols is not None else len(fractional)
    if fractional.shape != (n_atoms, 3):
        raise DataError(ctx.name, f"ionic step {index} has {len(fractional)} positions for {n_atoms} atoms")
    volume = np.linalg.det(basis)
    free_energy = float(energy_block.find("i[@name='e_fr_energy']").text)
    # calculation/energy's e_fr_energy is an enthalpy (includes PSTRESS·V), as ASE notes.
    free_energy -= ctx.pstress_kbar * 1e-22 * _EV_PER_J * volume
    # VASP writes a wrong e_0_energy in calculation/energy; take e_0 − e_fr from the last SC step.
    scf_energies = elem.findall("scstep/energy")
    correction = 0.0
    if scf_energies:
        last = scf_energies[-1]
        correction = float(last.find("i[@name='e_0_energy']").text) - float(
            last.find("i[@name='e_fr_energy']").text
        )
    forces = _vectors(elem.find("varray[@name='forces']"))
    if forces is not None and forces.shape != (n_atoms, 3):
        raise DataError(ctx.name, f"ionic step {index} has forces of shape {forces.shape}")
    stress = _vectors(elem.find("varray[@name='stress']"))
    if stress is not None:
        stress = (stress * (-0.1 * GPa)).reshape(9)[[0, 4, 8, 5, 2, 1]]
    return VasprunStep(
        index=index,
        cell=basis,
        positions=fractional @ basis,
        forces=forces,
        energy=free_energy + correction,
        free_energy=free_energy,
        stress=stress,
        symbols=ctx.symbols if ctx.symbols is not None else [],
    )


def iter_vasprun(
    source: str | os.PathLike | IO[bytes], *, name: str | None = None, report: dict | None = None
) -> Iterator[VasprunStep]:
    """Yield the ionic steps of a vasprun.xml one at a time.

    ``source`` is a path or a binary file object (e.g. a tar member). A file cut off in the middle
    of a step (an interrupted run) yields the complete steps before the cut, as ASE does, warns,
    and, when a ``report`` dict is given, sets ``report["truncated"]`` to what happened (results
    record it in their provenance).
    """
    ctx = _Context(name or _source_name(source))
    root: ET.Element | None = None
    index = 0
    try:
        for event, elem in ET.iterparse(source, events=("start", "end")):
            if event == "start":
                if root is None:
                    root = elem
                continue
            tag = elem.tag
            if tag == "calculation":
                step = _read_step(elem, index, ctx)
                # Drop the parsed step from the tree: memory stays flat in the number of steps.
                elem.clear()
                if root is not None:
                    root.remove(elem)
                index += 1
                yield step
            elif tag == "atominfo":
                ctx.symbols = [rc[0].text.strip() for rc in elem.find("array[@name='atoms']/set")]
            elif tag == "parameters":
                for item in elem.iter("i"):
                    if item.get("name", "").upper() == "PSTRESS":
                        ctx.pstress_kbar = float(item.text)
                elem.clear()
            elif tag in ("kpoints", "incar", "generator", "dos", "eigenvalues", "projected"):
                elem.clear()
    except ET.ParseError as error:
        if ctx.symbols is None:
            raise DataError(ctx.name, f"not a readable vasprun.xml ({error})") from error
        # Truncated after some complete steps (an interrupted run): keep those, but say so.
        message = f"truncated XML, using its {index} complete ionic steps ({error})"
        if report is not None:
            report["truncated"] = message
        warnings.warn(f"{ctx.name}: {message}", stacklevel=2)
    if ctx.symbols is None:
        raise DataError(ctx.name, "no <atominfo> block: not a vasprun.xml")


def read_vasprun(
    source: str | os.PathLike | IO[bytes] | bytes,
    *,
    discard: int = 0,
    name: str | None = None,
    require_forces: bool = True,
    report: dict | None = None,
) -> Trajectory:
    """Read all ionic steps into a :class:`~hdpbench.core.compound.Trajectory`.

    ``discard`` drops that many leading steps (equilibration); they are parsed but not stored.
    ``frame_index`` of the result counts steps from the start of the file. ``report``: see
    :func:`iter_vasprun`.
    """
    from hdpbench.core.validation import require_positive_int

    require_positive_int("discard", discard, allow_zero=True)
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    label = name or _source_name(source)
    symbols: list[str] = []
    cells, positions, forces, energies, kept = [], [], [], [], []
    n_steps = 0
    for step in iter_vasprun(source, name=label, report=report):
        n_steps += 1
        symbols = step.symbols
        if step.index < discard:
            continue
        if require_forces and step.forces is None:
            raise DataError(label, f"ionic step {step.index} has no forces")
        cells.append(step.cell)
        positions.append(step.positions)
        forces.append(step.forces)
        energies.append(step.energy)
        kept.append(step.index)
    if not kept:
        problem = f"no ionic steps left after discarding the first {discard}" if n_steps else "no ionic steps"
        raise EmptyTrajectoryError(label, f"{problem} (file has {n_steps})")
    unknown = sorted({s for s in symbols if s not in atomic_numbers})
    if unknown:
        raise DataError(label, f"unknown element symbol(s) {unknown} in <atominfo>")
    numbers = [atomic_numbers[s] for s in symbols]
    trajectory = Trajectory(
        numbers=numbers,
        positions=np.array(positions),
        cells=np.array(cells),
        forces=None if any(f is None for f in forces) else np.array(forces),
        energies=np.array(energies),
        source_files=[label],
        frame_index=np.array(kept),
    )
    trajectory.check_finite()
    return trajectory


def write_vasprun(path, trajectory: Trajectory, *, generator: str = "hdpbench") -> None:
    """Write frames as a minimal VASP-6-style ``vasprun.xml`` (atominfo + one calculation per step).

    Holds what trajectory readers use (cell, fractional positions, forces, energies) in VASP's
    element layout, so :func:`read_vasprun` and ``ase.io.read`` both read it back. Used for data this
    project generates in the authors' layout; it is not a complete VASP output.
    """
    from xml.sax.saxutils import escape

    from hdpbench.core.storage import atomic_path

    if trajectory.forces is None:
        raise DataError(trajectory.origin, "writing a vasprun.xml needs forces")
    symbols = trajectory.symbols
    species = list(dict.fromkeys(symbols))
    energies = trajectory.energies if trajectory.energies is not None else np.zeros(len(trajectory))

    def varray(name: str, rows: np.ndarray, indent: str) -> str:
        body = "".join(f"{indent} <v>{' '.join(f'{v:17.8f}' for v in row)} </v>\n" for row in rows)
        return f'{indent}<varray name="{name}" >\n{body}{indent}</varray>\n'

    def structure(cell, fractional, indent: str, attrs: str = "") -> str:
        return (
            f"{indent}<structure{attrs}>\n{indent} <crystal>\n"
            + varray("basis", cell, indent + "  ")
            + f"{indent} </crystal>\n"
            + varray("positions", fractional, indent + " ")
            + f"{indent}</structure>\n"
        )

    atom_rows = "".join(f"    <rc><c>{escape(s):>2}</c><c>{species.index(s) + 1:4d}</c></rc>\n" for s in symbols)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="ISO-8859-1") as out:
        out.write('<?xml version="1.0" encoding="ISO-8859-1"?>\n<modeling>\n <generator>\n')
        out.write(f'  <i name="program" type="string">{escape(generator)}</i>\n </generator>\n')
        # Γ-only, as the authors' MD; ASE's reader expects a k-point list.
        out.write(
            ' <kpoints>\n  <varray name="kpointlist" >\n   <v>       0.00000000       0.00000000       0.00000000 </v>\n'
            '  </varray>\n  <varray name="weights" >\n   <v>       1.00000000 </v>\n  </varray>\n </kpoints>\n'
        )
        out.write(
            f" <atominfo>\n  <atoms>{len(symbols):8d} </atoms>\n  <types>{len(species):8d} </types>\n"
            '  <array name="atoms" >\n   <dimension dim="1">ion</dimension>\n'
            '   <field type="string">element</field>\n   <field type="int">atomtype</field>\n'
            f"   <set>\n{atom_rows}   </set>\n  </array>\n </atominfo>\n"
        )
        fractional_all = np.linalg.solve(
            trajectory.cells.transpose(0, 2, 1), trajectory.positions.transpose(0, 2, 1)
        ).transpose(0, 2, 1)
        out.write(structure(trajectory.cells[0], fractional_all[0], " ", ' name="initialpos" '))
        for k in range(len(trajectory)):
            energy = f'   <i name="e_fr_energy">{energies[k]:16.8f} </i>\n   <i name="e_wo_entrp">{energies[k]:16.8f} </i>\n   <i name="e_0_energy">{energies[k]:16.8f} </i>\n'
            out.write(" <calculation>\n  <scstep>\n   <energy>\n" + energy.replace("   <i", "    <i") + "   </energy>\n  </scstep>\n")
            out.write(structure(trajectory.cells[k], fractional_all[k], "  "))
            out.write(varray("forces", trajectory.forces[k], "  "))
            out.write("  <energy>\n" + energy + "  </energy>\n </calculation>\n")
        out.write(structure(trajectory.cells[-1], fractional_all[-1], " ", ' name="finalpos" '))
        out.write("</modeling>\n")
