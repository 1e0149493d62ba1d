"""Generate the demo reference dataset with GFN1-xTB (tblite), resumable per compound and stage.

Per compound, mirroring the authors' data (Yang, Fan & Li 2022) at much lower cost:

1. relax the conventional lattice constant a and the halide coordinate x under Fm-3m symmetry
   (80-atom supercell, Γ-only, ASE FixSymmetry + FrechetCellFilter);
2. phonopy finite displacements (2x2x2 of the 10-atom primitive cell, ±0.01 Å, SCF converged 100x
   tighter than for MD) → Φ_ref; phonopy's symmetrisation only if a Γ acoustic mode stays above 0.1 THz;
3. a pool of rattled supercells with reference forces, for training the demo models only;
4. NVT MD at 300 K with ASE's Andersen thermostat (p = 0.5, 1 fs): an equilibration segment, then
   production segments written as ``MD/vasprun_prod*.xml`` like the authors' files;
5. pack everything as ``data/demo/<halide folder>/dpv_<formula>.tar.xz`` in the authors' layout.

Every stage writes its result into ``data/demo-work/<formula>/`` and is skipped when present; MD
checkpoints every few steps (positions, momenta, all recorded frames and the RNG state), so a killed
run resumes where it stopped and produces the same trajectory. An SCF failure at any geometry marks
the compound failed (recorded, with the reason) and generation moves on.

    python -m hdpbench.demo.generate [--compounds Rb3AlF6 ...] [--dry-run] [--threads N]
    python -m hdpbench.demo.generate --refresh-force-constants   # recompute Φ_ref of packed archives

Several generators may run at once (e.g. two with ``--threads 1`` on two cores): each claims the next
compound with a lock file in the work folder, and outcomes are kept one file per compound.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import platform
import sys
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from hdpbench import __version__
from hdpbench.core import paths
from hdpbench.core.compound import HALIDE_FOLDERS, Trajectory
from hdpbench.core.storage import atomic_path, atomic_write_json
from hdpbench.core.structures import (
    double_perovskite,
    from_phonopy_atoms,
    make_supercell,
    to_phonopy_atoms,
)
from hdpbench.demo.compounds import DEMO_COMPOUNDS, REPLACEMENTS, DemoCompound, by_formula, outcomes

SUPERCELL = np.diag([2, 2, 2])


@dataclass(frozen=True)
class GenerationSettings:
    method: str = "GFN1-xTB"
    electronic_temperature_K: float = 300.0
    scf_accuracy: float = 1.0
    scf_max_iterations: int = 250
    relax_fmax: float = 0.005  # eV/Å, and the same in eV/Å³·volume for the cell
    relax_max_steps: int = 100
    displacement: float = 0.01  # Å, phonopy finite displacements
    # Φ_ref needs forces far less noisy than MD does: at accuracy 1.0 and + displacements only, xTB's
    # SCF noise broke translational invariance (Γ acoustic modes down to -3.5 THz). Measured on
    # Cs2AgBiBr6: accuracy 0.01 with ± displacements gives 0.01 THz (8 supercells, 36 s on 2 cores).
    phonon_scf_accuracy: float = 0.01  # tblite accuracy for the displaced supercells (lower = tighter)
    displacement_plusminus: bool = True  # ± pairs cancel the leading (cubic-anharmonic) error of one-sided steps
    gamma_acoustic_tolerance_thz: float = 0.1  # above this, Φ_ref is symmetrised (and it is recorded)
    rattled_small: int = 16  # every atom displaced by 0.01–0.05 Å in a random direction
    rattled_large: int = 4  # every atom displaced by up to 0.1 Å
    md_temperature_K: float = 300.0
    md_timestep_fs: float = 1.0
    andersen_prob: float = 0.5
    equilibration_steps: int = 100
    production_segments: int = 2
    production_steps: int = 300
    checkpoint_every: int = 20
    seed: int = 2026

    @classmethod
    def dry_run(cls) -> GenerationSettings:
        """Tiny settings for smoke tests: every stage runs, nothing is meaningful."""
        return cls(
            relax_max_steps=2,
            rattled_small=1,
            rattled_large=1,
            equilibration_steps=2,
            production_segments=2,
            production_steps=3,
            checkpoint_every=2,
        )


class ReferenceFailure(RuntimeError):
    """The reference method failed at some geometry (e.g. the SCF did not converge)."""


def compound_seed(settings: GenerationSettings, formula: str) -> int:
    return settings.seed + zlib.crc32(formula.encode()) % 100_000


def make_calculator(settings: GenerationSettings, accuracy: float | None = None):
    from tblite.ase import TBLite

    return TBLite(
        method=settings.method,
        electronic_temperature=settings.electronic_temperature_K,
        accuracy=settings.scf_accuracy if accuracy is None else accuracy,
        max_iterations=settings.scf_max_iterations,
        verbosity=0,
    )


def reference_forces(atoms: Atoms, calc, where: str) -> tuple[float, np.ndarray]:
    """(energy, forces) from the reference method; any failure becomes a ReferenceFailure naming ``where``."""
    atoms = atoms.copy()
    atoms.calc = calc
    try:
        forces = atoms.get_forces()
        energy = atoms.get_potential_energy()
    except Exception as error:  # tblite raises on SCF failure (and LAPACK errors)
        raise ReferenceFailure(f"{where}: {type(error).__name__}: {error}") from error
    if not np.all(np.isfinite(forces)) or not np.isfinite(energy):
        raise ReferenceFailure(f"{where}: non-finite energy or forces")
    return float(energy), np.array(forces)


def gamma_acoustic_max_thz(phonon) -> float:
    """The largest |f| of the three Γ modes of smallest |f| (THz): zero for a translationally
    invariant Φ, so a direct measure of the noise in Φ."""
    phonon.run_qpoints([[0.0, 0.0, 0.0]])
    return float(np.sort(np.abs(phonon.qpoints.frequencies[0]))[:3].max())


def finite_displacement_force_constants(primitive: Atoms, settings: GenerationSettings, calc=None):
    """(phonon, record): Φ_ref of ``primitive`` by phonopy finite displacements (2x2x2 supercell,
    ``settings.displacement`` Å, ± pairs if ``settings.displacement_plusminus``) with reference forces
    at ``settings.phonon_scf_accuracy``. If a Γ acoustic mode is still above
    ``settings.gamma_acoustic_tolerance_thz``, Φ is symmetrised with phonopy
    (``symmetrize_force_constants``: translational and permutation symmetry); ``record`` says so."""
    import phonopy

    calc = calc or make_calculator(settings, accuracy=settings.phonon_scf_accuracy)
    phonon = phonopy.Phonopy(to_phonopy_atoms(primitive), supercell_matrix=SUPERCELL, primitive_matrix="P")
    phonon.generate_displacements(distance=settings.displacement, is_plusminus=settings.displacement_plusminus)
    forces = []
    for k, displaced in enumerate(phonon.supercells_with_displacements):
        _, f = reference_forces(from_phonopy_atoms(displaced), calc, f"displaced supercell {k}")
        forces.append(f)
    phonon.forces = np.array(forces)
    phonon.produce_force_constants()
    raw = gamma_acoustic_max_thz(phonon)
    symmetrized = raw > settings.gamma_acoustic_tolerance_thz
    if symmetrized:
        phonon.symmetrize_force_constants()
    record = {
        "displaced_supercells": len(forces),
        "displacement_angstrom": settings.displacement,
        "plusminus": settings.displacement_plusminus,
        "scf_accuracy": settings.phonon_scf_accuracy,
        "gamma_acoustic_max_thz_raw": raw,
        "symmetrized": bool(symmetrized),
        "gamma_acoustic_max_thz": gamma_acoustic_max_thz(phonon),
    }
    return phonon, record


class CompoundGenerator:
    def __init__(self, compound: DemoCompound, settings: GenerationSettings, work_root: Path | None = None):
        self.compound = compound
        self.settings = settings
        self.work = Path(work_root or paths.demo_work_dir()) / compound.formula
        self.work.mkdir(parents=True, exist_ok=True)
        self.seed = compound_seed(settings, compound.formula)
        self._calc = None
        self.timings: dict[str, float] = {}

    @property
    def calc(self):
        if self._calc is None:
            self._calc = make_calculator(self.settings)
        return self._calc

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {self.compound.formula}: {message}", flush=True)

    # ---- stage 1: relaxation under Fm-3m -------------------------------------------------
    def relax(self) -> dict[str, Any]:
        out = self.work / "relax.json"
        if out.is_file():
            return json.loads(out.read_text())
        from ase.constraints import FixSymmetry
        from ase.filters import FrechetCellFilter
        from ase.optimize import BFGS

        c = self.compound
        start = time.time()
        primitive = double_perovskite(c.a_site, c.b_site, c.b_prime_site, c.halide, a=c.a_start, x=0.25)
        supercell = primitive.repeat((2, 2, 2))
        supercell.calc = self.calc
        supercell.set_constraint(FixSymmetry(supercell, symprec=1e-4))
        optimizer = BFGS(FrechetCellFilter(supercell), logfile=None)
        try:
            converged = bool(optimizer.run(fmax=self.settings.relax_fmax, steps=self.settings.relax_max_steps))
        except Exception as error:
            raise ReferenceFailure(f"relaxation: {type(error).__name__}: {error}") from error
        a = float(np.linalg.norm(supercell.cell.array, axis=1).mean() / np.sqrt(2.0))
        x = self._halide_coordinate(supercell, a)
        relaxed = double_perovskite(c.a_site, c.b_site, c.b_prime_site, c.halide, a=a, x=x)
        energy, forces = reference_forces(relaxed.repeat((2, 2, 2)), self.calc, "relaxed supercell")
        result = {
            "a_relaxed": a,
            "x_relaxed": x,
            "a_start": c.a_start,
            "a_literature": c.a_literature,
            "literature_source": c.literature_source,
            "energy_supercell_eV": energy,
            "max_residual_force": float(np.abs(forces).max()),
            "optimizer_steps": int(optimizer.nsteps),
            "converged": converged,
            "seconds": time.time() - start,
        }
        atomic_write_json(out, result)
        self.log(f"relaxed a = {a:.4f} Å, x = {x:.4f} ({optimizer.nsteps} steps, converged={converged})")
        return result

    def _halide_coordinate(self, supercell: Atoms, a: float) -> float:
        symbols = np.array(supercell.get_chemical_symbols())
        halides = np.flatnonzero(symbols == self.compound.halide)
        b_sites = np.flatnonzero(symbols == self.compound.b_site)
        if self.compound.b_site == self.compound.a_site:  # e.g. Rb3AlF6: use B' at (1/2,1/2,1/2)
            b_sites = np.flatnonzero(symbols == self.compound.b_prime_site)
            distances = supercell.get_distances(b_sites[0], halides, mic=True)
            return float(0.5 - distances.min() / a)
        distances = supercell.get_distances(b_sites[0], halides, mic=True)
        return float(distances.min() / a)

    def primitive(self) -> Atoms:
        relaxed = self.relax()
        c = self.compound
        return double_perovskite(c.a_site, c.b_site, c.b_prime_site, c.halide, a=relaxed["a_relaxed"], x=relaxed["x_relaxed"])

    # ---- stage 2: finite-displacement force constants -----------------------------------
    def phonons(self):
        import phonopy

        out = self.work / "phonopy_params.yaml"
        if not out.is_file():
            start = time.time()
            phonon, record = finite_displacement_force_constants(self.primitive(), self.settings)
            with atomic_path(out) as tmp:
                phonon.save(filename=str(tmp), settings={"force_constants": True})
            atomic_write_json(self.work / "force_constants.json", record)
            self.log(f"{record['displaced_supercells']} displaced supercells in {time.time() - start:.0f} s")
        return phonopy.load(str(out), is_compact_fc=False, log_level=0)

    def force_constants_record(self) -> dict[str, Any]:
        path = self.work / "force_constants.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    # ---- stage 3: rattled training pool -------------------------------------------------
    def rattled_pool(self) -> Path:
        import ase.io
        from ase.calculators.singlepoint import SinglePointCalculator

        out = self.work / "rattled.extxyz"
        if out.is_file():
            return out
        start = time.time()
        rng = np.random.default_rng([self.seed, 3])
        supercell = self.primitive().repeat((2, 2, 2))
        frames = []
        amplitudes = [(0.01, 0.05)] * self.settings.rattled_small + [(0.0, 0.1)] * self.settings.rattled_large
        for k, (low, high) in enumerate(amplitudes):
            atoms = supercell.copy()
            directions = rng.normal(size=atoms.positions.shape)
            directions /= np.linalg.norm(directions, axis=1, keepdims=True)
            atoms.positions += directions * rng.uniform(low, high, size=(len(atoms), 1))
            energy, forces = reference_forces(atoms, self.calc, f"rattled supercell {k}")
            atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
            atoms.info["config_type"] = "rattled" if high <= 0.05 else "rattled_large"
            atoms.info["max_displacement"] = high
            frames.append(atoms)
        with atomic_path(out) as tmp:
            ase.io.write(tmp, frames, format="extxyz")
        self.log(f"{len(frames)} rattled supercells in {time.time() - start:.0f} s")
        return out

    # ---- stage 4: Andersen NVT MD, checkpointed ----------------------------------------
    def molecular_dynamics(self) -> Trajectory:
        from ase import units
        from ase.md.andersen import Andersen
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

        s = self.settings
        total = s.equilibration_steps + s.production_segments * s.production_steps
        final = self.work / "md.npz"
        checkpoint = self.work / "md_checkpoint.npz"
        if final.is_file():
            return self._load_md(final)
        atoms = make_supercell(self.primitive(), SUPERCELL)  # phonopy's atom order = SPOSCAR's
        rng = np.random.default_rng([self.seed, 4])
        frames = {"positions": [], "forces": [], "energies": []}
        if checkpoint.is_file():
            with np.load(checkpoint, allow_pickle=False) as state:
                atoms.positions = state["positions_now"]
                atoms.set_momenta(state["momenta_now"])
                rng.bit_generator.state = json.loads(str(state["rng_state"]))
                for key in frames:
                    frames[key] = list(state[key])
            self.log(f"MD resumes at step {len(frames['energies'])} of {total}")
        else:
            MaxwellBoltzmannDistribution(atoms, temperature_K=s.md_temperature_K, rng=rng)
            Stationary(atoms)
        atoms.calc = self.calc
        dynamics = Andersen(
            atoms,
            timestep=s.md_timestep_fs * units.fs,
            temperature_K=s.md_temperature_K,
            andersen_prob=s.andersen_prob,
            fixcm=True,
            rng=rng,
        )
        start = time.time()
        done_before = len(frames["energies"])
        try:
            forces = atoms.get_forces(md=True)
            while len(frames["energies"]) < total:
                forces = dynamics.step(forces)
                frames["positions"].append(atoms.get_positions())
                frames["forces"].append(np.array(forces))
                frames["energies"].append(atoms.get_potential_energy())
                n = len(frames["energies"])
                if not np.all(np.isfinite(forces)):
                    raise ReferenceFailure(f"MD step {n}: non-finite forces")
                if n % s.checkpoint_every == 0 or n == total:
                    self._save_checkpoint(checkpoint, atoms, rng, frames)
                    rate = (time.time() - start) / max(n - done_before, 1)
                    self.log(f"MD step {n}/{total}, T = {atoms.get_temperature():.0f} K, {rate:.2f} s/step")
        except ReferenceFailure:
            raise
        except Exception as error:
            raise ReferenceFailure(f"MD step {len(frames['energies']) + 1}: {type(error).__name__}: {error}") from error
        with atomic_path(final) as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(
                    handle,
                    numbers=atoms.numbers,
                    cell=atoms.cell.array,
                    positions=np.array(frames["positions"]),
                    forces=np.array(frames["forces"]),
                    energies=np.array(frames["energies"]),
                )
        checkpoint.unlink(missing_ok=True)
        return self._load_md(final)

    @staticmethod
    def _save_checkpoint(path: Path, atoms: Atoms, rng, frames) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(
                    handle,
                    positions_now=atoms.get_positions(),
                    momenta_now=atoms.get_momenta(),
                    rng_state=json.dumps(rng.bit_generator.state),
                    positions=np.array(frames["positions"]),
                    forces=np.array(frames["forces"]),
                    energies=np.array(frames["energies"]),
                )

    @staticmethod
    def _load_md(path: Path) -> Trajectory:
        with np.load(path) as data:
            n = len(data["energies"])
            return Trajectory(
                numbers=data["numbers"],
                positions=data["positions"],
                cells=np.broadcast_to(data["cell"], (n, 3, 3)),
                forces=data["forces"],
                energies=data["energies"],
            )

    # ---- stage 5: pack in the authors' layout -------------------------------------------
    def archive_path(self, dataset_root: Path) -> Path:
        return dataset_root / HALIDE_FOLDERS[self.compound.halide] / f"dpv_{self.compound.formula}.tar.xz"

    def run(self, dataset_root: Path) -> Path:
        target = self.archive_path(dataset_root)
        if target.is_file():
            self.log(f"already packed: {target}")
            return target
        relaxed = self.relax()
        phonon = self.phonons()
        rattled = self.rattled_pool()
        md = self.molecular_dynamics()
        self._pack(target, relaxed, phonon, rattled, md)
        self.log(f"packed {target} ({target.stat().st_size / 1e6:.2f} MB)")
        return target

    def training_pool(self) -> Path:
        """Stages 1–3 only, staged as a folder in the archive's layout (the same bytes the archive
        will hold), so the demo models can be trained before every compound's MD has finished."""
        folder = staged_pool_dir(self.compound.formula, self.work.parent)
        if folder.is_dir():
            return folder
        phonon = self.phonons()
        members = self._pool_members(phonon, self.rattled_pool())
        import shutil
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=self.work))
        for name, data in members.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        try:
            os.replace(tmp, folder)  # the folder appears complete or not at all
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.log(f"training pool staged in {folder}")
        return folder

    @staticmethod
    def _poscar(atoms: Atoms) -> bytes:
        import ase.io

        buffer = io.StringIO()
        ase.io.write(buffer, atoms, format="vasp", direct=True)
        return buffer.getvalue().encode()

    def _pool_members(self, phonon, rattled: Path) -> dict[str, bytes]:
        from phonopy.file_IO import get_FORCE_SETS_lines

        return {
            "SPOSCAR": self._poscar(from_phonopy_atoms(phonon.supercell)),
            "FORCE_SETS": ("\n".join(get_FORCE_SETS_lines(phonon.dataset)) + "\n").encode(),
            "training/rattled.extxyz": rattled.read_bytes(),
        }

    def _pack(self, target: Path, relaxed, phonon, rattled: Path, md: Trajectory) -> None:
        from hdpbench.io.vasprun import write_vasprun

        c, s = self.compound, self.settings
        members: dict[str, bytes] = {}
        start_cell = double_perovskite(c.a_site, c.b_site, c.b_prime_site, c.halide, a=c.a_start, x=0.25)
        members["POSCAR"] = self._poscar(start_cell)
        members["CONTCAR"] = self._poscar(self.primitive())
        pool = self._pool_members(phonon, rattled)
        members["SPOSCAR"] = pool.pop("SPOSCAR")
        members["FORCE_SETS"] = pool.pop("FORCE_SETS")
        members["phonopy_params.yaml"] = (self.work / "phonopy_params.yaml").read_bytes()
        scratch = self.work / "pack"
        scratch.mkdir(exist_ok=True)
        from phonopy.file_IO import write_force_constants_to_hdf5

        write_force_constants_to_hdf5(phonon.force_constants, filename=str(scratch / "fc.hdf5"), physical_unit="eV/angstrom^2")
        members["force_constants.hdf5"] = (scratch / "fc.hdf5").read_bytes()
        wrapped = md.positions.copy()
        cell = md.cells[0]
        fractional = wrapped @ np.linalg.inv(cell)
        wrapped = (fractional - np.floor(fractional)) @ cell  # VASP writes positions wrapped into the cell
        for k in range(s.production_segments):
            first = s.equilibration_steps + k * s.production_steps
            segment = Trajectory(
                numbers=md.numbers,
                positions=wrapped[first : first + s.production_steps],
                cells=md.cells[first : first + s.production_steps],
                forces=md.forces[first : first + s.production_steps],
                energies=md.energies[first : first + s.production_steps],
            )
            name = "MD/vasprun_prod.xml" if k == 0 else f"MD/vasprun_prod_{k}.xml"
            write_vasprun(scratch / "md.xml", segment, generator=f"hdpbench {__version__} demo ({s.method})")
            members[name] = (scratch / "md.xml").read_bytes()
        members.update(pool)
        members["provenance.json"] = json.dumps(self.provenance(relaxed, phonon), indent=2).encode()
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_archive(target, {f"dpv_{c.formula}/{name}": data for name, data in members.items()})

    def provenance(self, relaxed, phonon) -> dict[str, Any]:
        import ase
        import phonopy

        try:
            from importlib.metadata import version

            tblite_version = version("tblite")
        except Exception:
            tblite_version = "unknown"
        phonon.run_qpoints([[0.0, 0.0, 0.0]])
        frequencies = phonon.qpoints.frequencies[0]
        return {
            "dataset": "demo",
            "compound": self.compound.formula,
            "reference_method": f"{self.settings.method} (tblite {tblite_version}), Γ-only 80-atom supercell",
            "not_dft": "Demo data: GFN1-xTB is a rough model of these halides (lattice constants and phonons "
            "differ from DFT and experiment); never compare its numbers with the paper's DFT values.",
            "settings": dataclasses.asdict(self.settings),
            "compound_seed": self.seed,
            "relaxation": relaxed,
            "force_constants": self.force_constants_record(),
            "gamma_frequencies_thz": [float(f) for f in frequencies],
            "versions": {
                "hdpbench": __version__,
                "ase": ase.__version__,
                "phonopy": phonopy.__version__,
                "tblite": tblite_version,
                "numpy": np.__version__,
                "python": platform.python_version(),
            },
        }


def _read_archive(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:xz") as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers() if member.isfile()}


def _write_archive(path: Path, members: dict[str, bytes]) -> None:
    with atomic_path(path) as tmp:
        with tarfile.open(tmp, "w:xz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = 0  # reproducible archives
                tar.addfile(info, io.BytesIO(data))


def refresh_force_constants(archive: Path, settings: GenerationSettings, calc=None) -> dict[str, Any]:
    """Recompute Φ_ref of a packed archive from its relaxed CONTCAR with ``settings`` and rewrite
    FORCE_SETS, phonopy_params.yaml, force_constants.hdf5 and provenance.json in place (atomically);
    every other member (structures, MD, training pool) keeps its bytes. Returns the Φ record."""
    import ase.io
    import phonopy
    from phonopy.file_IO import get_FORCE_SETS_lines, write_force_constants_to_hdf5

    members = _read_archive(archive)
    prefix = next(name.split("/")[0] for name in members)
    primitive = ase.io.read(io.StringIO(members[f"{prefix}/CONTCAR"].decode()), format="vasp")
    start = time.time()
    phonon, record = finite_displacement_force_constants(primitive, settings, calc)
    record["seconds"] = round(time.time() - start, 1)
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        phonon.save(filename=f"{scratch}/phonopy_params.yaml", settings={"force_constants": True})
        write_force_constants_to_hdf5(phonon.force_constants, filename=f"{scratch}/fc.hdf5", physical_unit="eV/angstrom^2")
        members[f"{prefix}/phonopy_params.yaml"] = Path(f"{scratch}/phonopy_params.yaml").read_bytes()
        members[f"{prefix}/force_constants.hdf5"] = Path(f"{scratch}/fc.hdf5").read_bytes()
    members[f"{prefix}/FORCE_SETS"] = ("\n".join(get_FORCE_SETS_lines(phonon.dataset)) + "\n").encode()
    provenance = json.loads(members[f"{prefix}/provenance.json"])
    phonon.run_qpoints([[0.0, 0.0, 0.0]])
    provenance["settings"] = dataclasses.asdict(settings)
    provenance["force_constants"] = {
        **record,
        "refreshed_by": f"hdpbench {__version__} (python -m hdpbench.demo.generate --refresh-force-constants), "
        f"phonopy {phonopy.__version__}",
        "training_pool_note": "FORCE_SETS now holds the refreshed displaced supercells; the demo models were "
        "trained on the earlier ones (+ displacements only, SCF accuracy 1.0), see models/demo-*.yaml",
    }
    provenance["gamma_frequencies_thz"] = [float(f) for f in phonon.qpoints.frequencies[0]]
    members[f"{prefix}/provenance.json"] = json.dumps(provenance, indent=2).encode()
    _write_archive(archive, members)
    return record


def staged_pool_dir(formula: str, work_root: Path | None = None) -> Path:
    """The staged training pool of a compound (``dpv_<formula>/`` in the archive's layout)."""
    return Path(work_root or paths.demo_work_dir()) / formula / f"dpv_{formula}"


def outcome_path(formula: str) -> Path:
    return paths.demo_work_dir() / formula / "outcome.json"


def planned_compounds(formulas: list[str] | None, known: dict[str, str]) -> list[DemoCompound]:
    """The compounds to generate: each failed one is replaced by the next untried one of its halide."""
    requested = [by_formula(f) for f in formulas] if formulas else list(DEMO_COMPOUNDS)
    spare = {halide: list(options) for halide, options in REPLACEMENTS.items()}
    plan: list[DemoCompound] = []
    for compound in requested:
        while compound is not None and known.get(compound.formula, "").startswith("failed"):
            plan.append(compound)  # kept so the failure is reported
            options = spare.get(compound.halide, []) if not formulas else []
            compound = options.pop(0) if options else None
        if compound is not None:
            plan.append(compound)
    return plan


class CompoundLock:
    """An exclusive claim on one compound, so parallel generators split the queue: an OS file lock
    (filelock), which the kernel releases when the holding process dies, so the claim of a killed
    generator is free at once."""

    def __init__(self, formula: str):
        self.path = paths.demo_work_dir() / f"{formula}.lock"
        self._lock = None

    def acquire(self) -> bool:
        from filelock import FileLock, Timeout

        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path, is_singleton=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return False
        self._lock = lock
        return True

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def generate(
    formulas: list[str] | None, settings: GenerationSettings, dataset_root: Path, *, pools_only: bool = False
) -> dict[str, str]:
    """Generate (or resume) the requested compounds; failures are recorded and replaced by halide.

    With ``pools_only``, stop each compound after its training pool (relaxation, Φ_ref, rattled
    supercells): the generator does this pass first so the models can be trained while MD runs.
    Safe to run in several processes at once: each claims the next unclaimed compound.
    """
    while True:
        known = outcomes()
        pending = [c for c in planned_compounds(formulas, known) if c.formula not in known]
        if pools_only:
            pending = [c for c in pending if not staged_pool_dir(c.formula).is_dir()]
        claimed = None
        for compound in pending:
            lock = CompoundLock(compound.formula)
            if lock.acquire():
                claimed = (compound, lock)
                break
        if claimed is None:
            return {c.formula: known.get(c.formula, "pending") for c in planned_compounds(formulas, outcomes())}
        compound, lock = claimed
        try:
            generator = CompoundGenerator(compound, settings)
            if pools_only:
                generator.training_pool()
                continue
            generator.run(dataset_root)
            outcome = "done"
        except ReferenceFailure as failure:
            outcome = f"failed: {failure}"
            print(f"{compound.formula} FAILED: {failure}", flush=True)
        finally:
            lock.release()
        atomic_write_json(outcome_path(compound.formula), {"outcome": outcome})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compounds", nargs="*", help="formulas (default: the demo set, with replacements)")
    parser.add_argument("--dry-run", action="store_true", help="tiny settings; writes to --output")
    parser.add_argument("--output", help="dataset folder (default: the demo dataset's folder)")
    parser.add_argument("--threads", type=int, help="OpenMP threads for tblite (default: all cores)")
    parser.add_argument(
        "--refresh-force-constants", action="store_true",
        help="recompute Φ_ref of the packed archives (or --compounds) with the current settings, then the summary",
    )
    args = parser.parse_args(argv)
    if args.threads:  # must be set before tblite's OpenMP runtime starts
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.dry_run:  # never mix tiny-settings scratch files with the real generation's
        if not args.output:
            parser.error("--dry-run needs --output")
        os.environ.setdefault("HDPBENCH_DEMO_WORK", str(Path(args.output) / "work"))
    from hdpbench.data.datasets import registered_datasets

    settings = GenerationSettings.dry_run() if args.dry_run else GenerationSettings()
    root = Path(args.output) if args.output else registered_datasets()["demo"].local_dir
    if args.refresh_force_constants:
        from hdpbench.demo.summary import build

        for archive in sorted(root.glob("*/dpv_*.tar.xz")):
            if args.compounds and archive.name[4:-7] not in args.compounds:
                continue
            record = refresh_force_constants(archive, settings)
            print(f"{archive.name}: {json.dumps(record)}", flush=True)
        build(root)
        return 0
    generate(args.compounds, settings, root, pools_only=True)  # training pools of every compound first
    status = generate(args.compounds, settings, root)
    print(json.dumps(status, indent=2))
    if not args.dry_run and all(outcome != "pending" for outcome in status.values()):
        from hdpbench.demo.summary import build

        build(root)  # the summary db (σ_ref) and validation report, from the packed archives
    return 0


if __name__ == "__main__":
    sys.exit(main())
