"""The demo generator's queue logic (the xTB stages themselves need tblite and run in `make demo-data`)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from hdpbench.core import paths
from hdpbench.demo.compounds import (
    DEMO_COMPOUNDS,
    REPLACEMENTS,
    DemoCompound,
    by_formula,
    ionic_radius_lattice_constant,
)
from hdpbench.demo.generate import CompoundLock, outcomes, planned_compounds


def test_failed_compound_is_replaced_by_the_next_of_its_halide():
    k2inagf6 = next(c for c in DEMO_COMPOUNDS if c.formula == "K2InAgF6")
    first, second = REPLACEMENTS["F"][:2]
    plan = [c.formula for c in planned_compounds(None, {"K2InAgF6": "failed: sygvd"})]
    assert plan.index(first.formula) == plan.index(k2inagf6.formula) + 1
    plan = [c.formula for c in planned_compounds(None, {"K2InAgF6": "failed", first.formula: "failed"})]
    assert second.formula in plan and len([f for f in plan if f not in ("K2InAgF6", first.formula)]) == 8
    # an explicit list is taken literally
    assert [c.formula for c in planned_compounds(["K2InAgF6"], {"K2InAgF6": "failed"})] == ["K2InAgF6"]


def test_outcomes_are_read_one_file_per_compound():
    work = paths.demo_work_dir()
    for formula, outcome in [("Rb3AlF6", "done"), ("K2InAgF6", "failed: scf")]:
        (work / formula).mkdir(parents=True)
        (work / formula / "outcome.json").write_text(json.dumps({"outcome": outcome}))
    assert outcomes() == {"K2InAgF6": "failed: scf", "Rb3AlF6": "done"}


def test_lock_is_exclusive_and_a_dead_owner_is_taken_over():
    first, second = CompoundLock("Rb3AlF6"), CompoundLock("Rb3AlF6")
    assert first.acquire()
    assert not second.acquire()  # held by this (live) process
    first.release()
    assert second.acquire()
    second.release()
    # another process holds the claim until it is killed, then it is free
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); print('held', flush=True); time.sleep(60)", str(first.path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not CompoundLock("Rb3AlF6").acquire()
    finally:
        holder.kill()
        holder.wait()
    taken = CompoundLock("Rb3AlF6")
    assert taken.acquire()
    taken.release()


def test_staged_training_pool_holds_the_archive_bytes(tmp_path, monkeypatch):
    """The pool-first pass stages exactly the members the final archive will hold, so models trained
    on a staged pool are trained on the committed data. A Lennard-Jones calculator stands in for xTB."""
    from ase.calculators.lj import LennardJones

    from hdpbench.demo import generate as generator
    from hdpbench.io.archive import CompoundFiles
    from hdpbench.io.authors import read_training_structures

    monkeypatch.setattr(generator, "make_calculator", lambda settings, accuracy=None: LennardJones(sigma=2.6, epsilon=0.02, rc=6.0, smooth=True))
    settings = generator.GenerationSettings.dry_run()
    root = tmp_path / "dataset"
    generator.generate(["Rb3AlF6"], settings, root, pools_only=True)
    staged = generator.staged_pool_dir("Rb3AlF6")
    assert staged.is_dir()
    assert not list(staged.parent.glob("md*.npz")) and outcomes() == {}  # no MD yet, nothing finished
    status = generator.generate(["Rb3AlF6"], settings, root)
    assert status == {"Rb3AlF6": "done"}
    archive = root / "fluorides" / "dpv_Rb3AlF6.tar.xz"
    names = {"SPOSCAR", "FORCE_SETS", "training/rattled.extxyz"}
    packed = CompoundFiles(archive).read_members(names)
    for name in names:
        assert (staged / name).read_bytes() == packed[name], name
    from_staged, from_archive = read_training_structures(staged), read_training_structures(archive)
    # rattled (dry run) + displaced supercells: 4 symmetry-distinct steps, each with its mirror (±)
    assert len(from_staged) == len(from_archive) == 2 + 8
    for a, b in zip(from_staged, from_archive, strict=True):
        assert a.info["config_type"] == b.info["config_type"]
        assert (a.positions == b.positions).all() and (a.arrays["REF_forces"] == b.arrays["REF_forces"]).all()


@pytest.mark.parametrize(
    "compound, a_experiment",
    [
        # Rb2NaAlF6: Yakubovich et al., Kristallografiya 58, 400 (2013); the other two as in compounds.py
        (DemoCompound("Rb2NaAlF6", "Rb", "Na", "Al", "F", 8.3), 8.3087),
        (by_formula("Cs2NaInCl6"), 10.53),
        (by_formula("Cs2AgBiBr6"), 11.25),
    ],
)
def test_ionic_radius_estimate_overestimates_experiment_by_under_ten_percent(compound, a_experiment):
    estimate = ionic_radius_lattice_constant(compound)
    assert 0 < (estimate - a_experiment) / a_experiment < 0.10


def test_ionic_radius_estimate_covers_every_demo_compound_and_rejects_unbalanced_charges():
    for compound in DEMO_COMPOUNDS + [c for cs in REPLACEMENTS.values() for c in cs]:
        assert 7.0 < ionic_radius_lattice_constant(compound) < 13.5
    with pytest.raises(ValueError, match="do not balance"):
        ionic_radius_lattice_constant(DemoCompound("Cs2NaKF6", "Cs", "Na", "K", "F", 9.0))


# ---- Φ_ref: ± displacements, symmetrisation only above the tolerance, refresh of packed archives ----

class NoisyLennardJones:
    """A Lennard-Jones calculator whose forces carry seeded noise, like a loosely converged SCF:
    Φ from it breaks translational invariance."""

    def __new__(cls, noise: float, seed: int = 0):
        from ase.calculators.lj import LennardJones

        class Noisy(LennardJones):
            def calculate(self, atoms=None, properties=("energy",), system_changes=()):
                super().calculate(atoms, properties, system_changes)
                if "forces" in self.results:
                    self.results["forces"] = self.results["forces"] + rng.normal(0, noise, self.results["forces"].shape)

        rng = np.random.default_rng(seed)
        return Noisy(sigma=3.0, epsilon=0.05, rc=6.0)


def _primitive():
    from hdpbench.core.structures import double_perovskite

    return double_perovskite("Cs", "Ag", "Bi", "Br", a=11.0, x=0.25)


def test_force_constants_are_symmetrised_only_when_gamma_acoustic_modes_exceed_the_tolerance():
    from hdpbench.demo.generate import GenerationSettings, finite_displacement_force_constants

    settings = GenerationSettings()
    clean_phonon, clean = finite_displacement_force_constants(_primitive(), settings, NoisyLennardJones(0.0))
    steps = [(d["number"], tuple(np.round(d["displacement"], 6))) for d in clean_phonon.dataset["first_atoms"]]
    assert clean["plusminus"] and clean["displaced_supercells"] == len(steps)
    assert all((atom, tuple(-np.array(step) + 0.0)) in steps for atom, step in steps)  # every step has its mirror
    assert not clean["symmetrized"] and clean["gamma_acoustic_max_thz"] < 0.01  # pair forces: invariant already
    _, noisy = finite_displacement_force_constants(_primitive(), settings, NoisyLennardJones(2e-3))
    assert noisy["gamma_acoustic_max_thz_raw"] > settings.gamma_acoustic_tolerance_thz
    assert noisy["symmetrized"] and noisy["gamma_acoustic_max_thz"] < 1e-3


def test_refresh_rewrites_force_constants_and_keeps_every_other_member(tmp_path):
    import io
    import tarfile

    import ase.io
    import h5py

    from hdpbench.demo.generate import (
        GenerationSettings,
        _read_archive,
        _write_archive,
        refresh_force_constants,
    )

    buffer = io.StringIO()
    ase.io.write(buffer, _primitive(), format="vasp", direct=True)
    archive = tmp_path / "dpv_Cs2AgBiBr6.tar.xz"
    before = {
        "dpv_Cs2AgBiBr6/CONTCAR": buffer.getvalue().encode(),
        "dpv_Cs2AgBiBr6/MD/vasprun_prod.xml": b"<modeling>frames</modeling>",
        "dpv_Cs2AgBiBr6/FORCE_SETS": b"old",
        "dpv_Cs2AgBiBr6/provenance.json": json.dumps({"compound": "Cs2AgBiBr6", "relaxation": {"a_relaxed": 11.0}}).encode(),
    }
    _write_archive(archive, before)
    record = refresh_force_constants(archive, GenerationSettings(), NoisyLennardJones(0.0))
    after = _read_archive(archive)
    assert after["dpv_Cs2AgBiBr6/MD/vasprun_prod.xml"] == before["dpv_Cs2AgBiBr6/MD/vasprun_prod.xml"]
    assert after["dpv_Cs2AgBiBr6/CONTCAR"] == before["dpv_Cs2AgBiBr6/CONTCAR"]
    assert after["dpv_Cs2AgBiBr6/FORCE_SETS"] != b"old"
    provenance = json.loads(after["dpv_Cs2AgBiBr6/provenance.json"])
    assert provenance["relaxation"] == {"a_relaxed": 11.0}  # kept
    assert provenance["force_constants"]["displaced_supercells"] == record["displaced_supercells"]
    assert provenance["settings"]["displacement_plusminus"] is True
    with tarfile.open(archive) as tar, h5py.File(tar.extractfile("dpv_Cs2AgBiBr6/force_constants.hdf5"), "r") as fc:
        assert fc["force_constants"].shape == (80, 80, 3, 3)
