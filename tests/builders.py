"""Build small compounds in the authors' exact layout for tests.

A generated Fm-3m double perovskite with a Lennard-Jones stand-in for DFT: phonopy finite
displacements give FORCE_SETS and a phonopy-written force_constants.hdf5, rattled supercells give
MD production files written as vasprun.xml.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import phonopy
from ase.calculators.lj import LennardJones
from ase.io import write
from phonopy.file_IO import write_force_constants_to_hdf5, write_FORCE_SETS

from hdpbench.core.compound import Trajectory
from hdpbench.core.structures import double_perovskite, from_phonopy_atoms, to_phonopy_atoms
from hdpbench.io.vasprun import write_vasprun

SITES = {
    "Cs2AgBiBr6": ("Cs", "Ag", "Bi", "Br", 11.25),
    "Cs2NaInCl6": ("Cs", "Na", "In", "Cl", 10.5),
    "Rb2NiAgF6": ("Rb", "Ni", "Ag", "F", 8.6),
}


def calculator():
    return LennardJones(sigma=2.9, epsilon=0.02, rc=6.0, smooth=True)


@dataclass
class BuiltCompound:
    formula: str
    path: Path
    unitcell: object
    supercell: object
    force_constants: np.ndarray
    frames: list[Trajectory] = field(default_factory=list)  # per production file, all frames


def production_name(k: int) -> str:
    return "MD/vasprun_prod.xml" if k == 0 else f"MD/vasprun_prod_{k}.xml"


def compound_members(formula: str, *, n_files: int = 2, frames_per_file: int = 6, seed: int = 0):
    """(members {name: bytes}, BuiltCompound without path) for one compound."""
    a_site, b_site, b_prime, halide, a = SITES[formula]
    unitcell = double_perovskite(a_site, b_site, b_prime, halide, a=a, x=0.245)
    phonon = phonopy.Phonopy(to_phonopy_atoms(unitcell), supercell_matrix=np.diag([2, 2, 2]), primitive_matrix="P")
    phonon.generate_displacements(distance=0.01)
    forces = []
    for displaced in phonon.supercells_with_displacements:
        atoms = from_phonopy_atoms(displaced)
        atoms.calc = calculator()
        forces.append(atoms.get_forces())
    phonon.forces = np.array(forces)
    phonon.produce_force_constants()
    supercell = from_phonopy_atoms(phonon.supercell)

    members: dict[str, bytes] = {}
    buffer = io.StringIO()
    write(buffer, unitcell, format="vasp", direct=True)
    members["POSCAR"] = members["CONTCAR"] = buffer.getvalue().encode()
    buffer = io.StringIO()
    write(buffer, supercell, format="vasp", direct=True)
    members["SPOSCAR"] = buffer.getvalue().encode()

    scratch = Path(__import__("tempfile").mkdtemp())
    write_force_constants_to_hdf5(phonon.force_constants, filename=str(scratch / "fc.hdf5"))
    members["force_constants.hdf5"] = (scratch / "fc.hdf5").read_bytes()
    write_FORCE_SETS(phonon.dataset, filename=scratch / "FORCE_SETS")
    members["FORCE_SETS"] = (scratch / "FORCE_SETS").read_bytes()

    rng = np.random.default_rng(seed)
    trajectories = []
    for k in range(n_files):
        frames = []
        for _ in range(frames_per_file):
            atoms = supercell.copy()
            atoms.positions += rng.normal(0.0, 0.04, atoms.positions.shape)
            atoms.wrap()  # VASP writes wrapped positions
            atoms.calc = calculator()
            atoms.get_forces()
            frames.append(atoms)
        trajectory = Trajectory.from_atoms_list(frames, source=production_name(k))
        write_vasprun(scratch / "v.xml", trajectory)
        members[production_name(k)] = (scratch / "v.xml").read_bytes()
        trajectories.append(trajectory)
    members["MD/vasprun_equ.xml"] = members[production_name(0)]  # equilibration: must be ignored
    built = BuiltCompound(formula, Path(), unitcell, supercell, np.asarray(phonon.force_constants), trajectories)
    return members, built


def write_tarball(path: Path, members: dict[str, bytes], prefix: str | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{prefix}/{name}" if prefix else name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_folder(path: Path, members: dict[str, bytes]) -> Path:
    for name, data in members.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return path


def write_summary_db(path: Path, rows: dict[str, dict]) -> None:
    import ase.db
    from ase import Atoms

    with ase.db.connect(str(path), type="db") as db:
        db.write(Atoms("F"), uid="element_F", total_energy=-1.0)
        for formula, values in rows.items():
            db.write(Atoms("H"), uid=f"dpv_{formula}", **values)


def phonondb_members(archive: Path) -> tuple[str, dict[str, bytes]]:
    """(folder, {member: bytes}) of a phonondb archive (an xz tar holding one ``mp-<id>-<date>/``)."""
    members = {}
    with tarfile.open(archive, "r:xz") as tar:
        for info in tar.getmembers():
            if info.isfile():
                members[info.name] = tar.extractfile(info).read()
    folder = next(iter(members)).split("/", 1)[0]
    return folder, {name.split("/", 1)[1]: data for name, data in members.items()}


def write_phonondb_archive(path: Path, folder: str, members: dict[str, bytes]) -> Path:
    """An archive as phonondb publishes them: xz-compressed tar of ``folder/<member>`` (named .tar.lzma)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:xz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def scale_force_sets(text: str, factor: float) -> str:
    """FORCE_SETS text with every force multiplied by ``factor`` (so Φ is multiplied by it): the lines
    of three numbers after each displacement line are forces."""
    lines = text.splitlines()
    natom = int(lines[0].split()[0])
    out, k = lines[:3], 3
    while k < len(lines):
        if not lines[k].strip():
            out.append(lines[k])
            k += 1
            continue
        out += lines[k : k + 2]  # atom index, displacement
        for line in lines[k + 2 : k + 2 + natom]:
            out.append("  ".join(f"{factor * float(x):.10f}" for x in line.split()))
        k += 2 + natom
    return "\n".join(out) + "\n"
