"""The phonondb layout, the one dataset interface, primitive cells and band paths, input digests.

The phonondb archives (CC BY 4.0) and phonopy's NaCl, KCl and CaTiO3 are committed under
data/external, so these tests need no fixture path.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from ase.calculators.lj import LennardJones

from hdpbench.core import paths
from hdpbench.core.errors import DataError
from hdpbench.data.datasets import Dataset, get_dataset
from hdpbench.data.interface import Capability, ReferenceSource
from hdpbench.data.phonondb import PhonondbSource
from hdpbench.data.reference_systems import ReferenceSystems
from hdpbench.physics.phonons import band_path, gamma_acoustic_free_minimum, primitive_cell
from hdpbench.pipeline.stages import run_stage

from .builders import (
    phonondb_members,
    write_phonondb_archive,
    write_tarball,
)

PHONONDB = paths.project_root() / "data" / "external" / "phonondb"
ELPASOLITE = "materials-id-13190-krb2gaf6-fm-3m-225.tar.lzma"  # KRb2GaF6
ELPASOLITE_2 = "materials-id-13687-cs2kagf6-fm-3m-225.tar.lzma"  # Cs2KAgF6
PEROVSKITE = "materials-id-10175-kcdf3-pm-3m-221.tar.lzma"  # KCdF3, with BORN


def lj():
    return LennardJones(sigma=2.9, epsilon=0.02, rc=6.0, smooth=True)


# -- the layout --------------------------------------------------------------------------------
def test_registered_phonondb_lists_every_archive_by_formula():
    data = get_dataset("phonondb")
    assert isinstance(data, PhonondbSource) and isinstance(data, ReferenceSource)
    index = json.loads((PHONONDB / "index.json").read_text())
    assert len(data) == len(index) == 106
    by_type = {}
    for entry in index:
        by_type.setdefault((entry["type"], entry["halide"]), 0)
        by_type[(entry["type"], entry["halide"])] += 1
    infos = [data.info(name) for name in data.compounds()]
    assert all(info.problem is None and info.capabilities == {Capability.FORCE_CONSTANTS} for info in infos)
    elpasolites = [i for i in infos if i.details["unitcell_atoms"] == 40]
    for halide in ("F", "Cl", "Br"):  # the README's 54 F, 20 Cl, 2 Br elpasolites
        assert sum(i.halide == halide for i in elpasolites) == by_type[("A2BBX6", halide)]
    # names: the archive's formula with the cell's element symbols
    assert "KRb2GaF6" in data.compounds() and "CsGeBr3" in data.compounds() and "Cs2NaAsCl6" in data.compounds()
    assert data.info("KCdF3").details["born"] and not data.info("KRb2GaF6").details["born"]


@pytest.mark.parametrize("archive", [ELPASOLITE, PEROVSKITE])
def test_phonondb_record_matches_phonopy_on_the_extracted_files(tmp_path, archive):
    """Φ, cells and matrices as phonopy itself reads the extracted archive (phonopy.load with its conf)."""
    import phonopy

    folder, members = phonondb_members(PHONONDB / archive)
    for name, content in members.items():
        (tmp_path / name).write_bytes(content)
    conf = {k.strip(): v for k, v in (line.split("=", 1) for line in members["phonopy.conf"].decode().splitlines() if "=" in line)}
    dim = [int(x) for x in conf["DIM"].split()]
    primitive = "P" if "PRIMITIVE_AXIS" not in conf else np.array([float(Fraction(x)) for x in conf["PRIMITIVE_AXIS"].split()]).reshape(3, 3)
    reference = phonopy.load(
        supercell_matrix=np.reshape(dim, (3, 3)) if len(dim) == 9 else dim, primitive_matrix=primitive,
        unitcell_filename=str(tmp_path / "POSCAR-unitcell"), force_sets_filename=str(tmp_path / "FORCE_SETS"),
        is_nac=False, symmetrize_fc=False, is_compact_fc=False, log_level=0,
    )  # fmt: skip
    data = PhonondbSource(get_dataset("phonondb").spec, PHONONDB)
    name = next(n for n in data.compounds() if data.info(n).details["archive"] == archive)
    compound = data.load(name)
    np.testing.assert_allclose(compound.force_constants, reference.force_constants, atol=1e-12)
    np.testing.assert_allclose(compound.reference_supercell.cell.array, reference.supercell.cell, atol=1e-12)
    assert compound.n_atoms == len(reference.supercell)
    assert len(primitive_cell(compound.unitcell, compound.primitive_matrix)) == len(reference.primitive)
    assert compound.provenance["born_present"] == ("BORN" in members)


def test_folder_layout_is_recognised_and_a_copied_archive_is_picked_up(tmp_path):
    folder = tmp_path / "my-phonons"
    folder.mkdir()
    shutil.copy(PHONONDB / ELPASOLITE, folder)
    data = get_dataset(folder)
    assert isinstance(data, PhonondbSource) and data.compounds() == ["KRb2GaF6"]
    shutil.copy(PHONONDB / PEROVSKITE, folder)  # adding a material: copying its archive, nothing else
    assert sorted(get_dataset(folder).compounds()) == ["KCdF3", "KRb2GaF6"]
    # two archives of one formula keep both, named apart by their materials-project id
    folder_id, members = phonondb_members(PHONONDB / PEROVSKITE)
    write_phonondb_archive(folder / "materials-id-99-kcdf3-pm-3m-221.tar.lzma", "mp-99-20180417", members)
    assert sorted(get_dataset(folder).compounds()) == ["KCdF3-mp-10175", "KCdF3-mp-99", "KRb2GaF6"]


def test_every_layout_implements_the_interface(authors_dataset):
    root, _ = authors_dataset
    sources = [get_dataset(root), get_dataset("external"), get_dataset("phonondb")]
    assert [type(s) for s in sources] == [Dataset, ReferenceSystems, PhonondbSource]
    for source in sources:
        assert isinstance(source, ReferenceSource)
        name = source.compounds()[0]
        assert len(source.input_digest(name)) == 64
        assert source.info(name).name == name
    authors = sources[0].info("Cs2AgBiBr6")
    assert {Capability.FORCE_CONSTANTS, Capability.AIMD_FRAMES, Capability.REFERENCE_FRAMES} <= authors.capabilities
    external = sources[1]
    assert external.info("CsPbI3").has(Capability.AIMD_FRAMES) and external.info("CsPbI3").temperature_K == 700
    assert external.info("KCl").has(Capability.DISPLACED_SETS) and not external.info("KCl").has(Capability.AIMD_FRAMES)
    assert not external.info("NaCl").has(Capability.REFERENCE_FRAMES)


# -- primitive cells and band paths ------------------------------------------------------------
FCC_POINTS = {"GAMMA": (0, 0, 0), "X": (0, 1, 0), "L": (0.5, 0.5, 0.5), "W": (0.5, 1, 0), "K": (0.75, 0.75, 0), "U": (0.25, 1, 0.25)}
SC_POINTS = {"GAMMA": (0, 0, 0), "X": (0, 0.5, 0), "M": (0.5, 0.5, 0), "R": (0.5, 0.5, 0.5)}
CUBIC_OPERATIONS = [
    np.array([[sign[i] if j == perm[i] else 0 for j in range(3)] for i in range(3)])
    for perm in itertools.permutations(range(3)) for sign in itertools.product((1, -1), repeat=3)
]  # fmt: skip


def label_name(label: str) -> str:
    """'$\\mathrm{X}$' -> 'X', '$\\Gamma$' -> 'GAMMA', 'W_2' -> 'W'."""
    text = re.sub(r"\$|\\mathrm\{|\}", "", label).replace("\\Gamma", "GAMMA")
    return text.split("_")[0]


def labelled_end_points(path) -> list[tuple[str, np.ndarray]]:
    """(label, fractional q) of every end of every segment, as phonopy's labels and connections name them."""
    segments, labels, connections = path
    named, k = [], 0
    for segment, connected in zip(segments, connections, strict=True):
        named += [(label_name(labels[k]), np.asarray(segment[0])), (label_name(labels[k + 1]), np.asarray(segment[-1]))]
        k += 1 if connected else 2
    return named


def is_point(q_fractional, primitive_lattice, conventional_a: float, point) -> bool:
    """Whether q (fractional in the primitive cell's reciprocal basis) is the textbook point (Cartesian,
    units of 1/a of the cubic cell) up to the cubic point group and a reciprocal lattice vector."""
    reciprocal = np.linalg.inv(primitive_lattice).T  # rows: b_i / 2π
    q = np.asarray(q_fractional) @ reciprocal
    for operation in CUBIC_OPERATIONS:
        difference = (q - operation @ np.asarray(point, dtype=float) / conventional_a) @ primitive_lattice.T
        if np.allclose(difference, np.round(difference), atol=1e-6):
            return True
    return False


def compound_of(dataset: str, name: str):
    return get_dataset(dataset).load(name, trajectories=False)


ELPASOLITE_NAME = "KRb2GaF6"


@pytest.mark.parametrize(
    "dataset, name, points",
    [("external", "NaCl", FCC_POINTS), ("external", "KCl", FCC_POINTS), ("external", "CaTiO3", SC_POINTS), ("phonondb", ELPASOLITE_NAME, FCC_POINTS)],
)
def test_every_labelled_qpoint_is_the_point_it_names(dataset, name, points):
    compound = compound_of(dataset, name)
    conventional_a = np.linalg.norm(compound.unitcell.cell.array[0])  # every one of these unit cells is cubic
    primitive = np.array(primitive_cell(compound.unitcell, compound.primitive_matrix).cell)
    named = labelled_end_points(band_path(compound.unitcell, 11, compound.primitive_matrix))
    assert {label for label, _ in named} <= set(points) and len({label for label, _ in named}) >= 4
    wrong = [(label, q.round(4).tolist()) for label, q in named if not is_point(q, primitive, conventional_a, points[label])]
    assert not wrong


def test_the_conventional_cell_as_primitive_misses_the_points():
    """What issue 35 found: NaCl's 8-atom cell passed to phonopy's seekpath helper as primitive puts X,
    U, K and W off their points (the check above catches it)."""
    from phonopy.phonon.band_structure import get_band_qpoints_by_seekpath

    from hdpbench.core.structures import to_phonopy_atoms

    compound = compound_of("external", "NaCl")
    a = np.linalg.norm(compound.unitcell.cell.array[0])
    named = labelled_end_points(get_band_qpoints_by_seekpath(to_phonopy_atoms(compound.unitcell), 11))
    wrong = {label for label, q in named if not is_point(q, compound.unitcell.cell.array, a, FCC_POINTS[label])}
    assert {"X", "U", "K", "W"} <= wrong


def test_primitive_matrices_of_the_sources():
    fcc = np.array([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    np.testing.assert_allclose(compound_of("external", "NaCl").primitive_matrix, fcc)  # found by symmetry
    np.testing.assert_allclose(compound_of("phonondb", ELPASOLITE_NAME).primitive_matrix, fcc)  # PRIMITIVE_AXIS
    assert compound_of("external", "CaTiO3").primitive_matrix is None
    elpasolite = compound_of("phonondb", ELPASOLITE_NAME)
    assert len(elpasolite.unitcell) == elpasolite.n_atoms == 40 and (elpasolite.supercell_matrix == np.eye(3)).all()


def test_stability_sets_aside_only_the_three_gamma_acoustic_modes():
    """At Γ (of any zone) the three modes of smallest |f| are the acoustic ones (phonopy's choice)."""
    noisy_acoustic = [-1.5, 0.2, 0.4, 3.0, 4.0]  # float32 noise: an acoustic mode at −1.5 THz
    soft_optical = [0.01, 0.02, -0.03, -2.0, 3.0]  # a real instability at Γ
    assert gamma_acoustic_free_minimum([noisy_acoustic], [[0, 0, 0]]) == 3.0
    assert gamma_acoustic_free_minimum([noisy_acoustic], [[1, 0, -1]]) == 3.0  # Γ of another zone
    assert gamma_acoustic_free_minimum([noisy_acoustic], [[0.5, 0, 0]]) == -1.5  # not Γ: every mode counts
    assert gamma_acoustic_free_minimum([soft_optical], [[0, 0, 0]]) == -2.0
    both = gamma_acoustic_free_minimum([noisy_acoustic, noisy_acoustic], [[0, 0, 0], [0.25, 0.25, 0]])
    assert both == -1.5


# -- bad input --------------------------------------------------------------------------------
def broken_archive(folder: Path, change) -> Path:
    """A copy of the KRb2GaF6 archive whose members ``change(members)`` altered, in ``folder``."""
    mp_folder, members = phonondb_members(PHONONDB / ELPASOLITE)
    change(members)
    return write_phonondb_archive(folder / ELPASOLITE, mp_folder, members)


def drop_force_sets(members):
    del members["FORCE_SETS"]


def garble_poscar(members):
    members["POSCAR-unitcell"] = b"not a structure\n1.0\nx y z\n"


def drop_dim(members):
    members["phonopy.conf"] = b"PRIMITIVE_AXIS = 0 1/2 1/2 1/2 0 1/2 1/2 1/2 0\n"


def double_dim(members):  # a 320-atom supercell for a FORCE_SETS of 40 atoms
    members["phonopy.conf"] = b"DIM = 2 2 2\nPRIMITIVE_AXIS = 0 1/2 1/2 1/2 0 1/2 1/2 1/2 0\n"


@pytest.mark.parametrize(
    "change, member, problem",
    [
        (drop_force_sets, "FORCE_SETS", "missing"),
        (garble_poscar, "POSCAR-unitcell", "not a readable VASP structure"),
        (drop_dim, "phonopy.conf", "no DIM line"),
        (double_dim, "FORCE_SETS", "forces on 40 atoms, but the supercell of POSCAR-unitcell and DIM has 320"),
    ],
)
def test_bad_archive_is_named_with_its_member_and_the_others_are_computed(tmp_path, change, member, problem):
    folder = tmp_path / "db"
    shutil.copy(PHONONDB / PEROVSKITE, folder.mkdir() or folder)
    shutil.copy(PHONONDB / ELPASOLITE_2, folder)
    first = run_stage("phonons", folder, lj(), results_root=tmp_path / "results", errors="record", progress=False)
    assert sorted(first.done()) == ["Cs2KAgF6", "KCdF3"]
    kept = {name: first.path(name, ".json").stat().st_mtime_ns for name in first.done()}

    bad = broken_archive(folder, change)
    data = get_dataset(folder)
    name = "KRb2GaF6" if member != "POSCAR-unitcell" else bad.name[: -len(".tar.lzma")]  # a cell that cannot be read names nothing
    with pytest.raises(DataError) as raised:
        data.load(name)
    assert raised.value.path == f"{bad}:mp-13190-20180417/{member}" and problem in str(raised.value)

    again = run_stage("phonons", folder, lj(), results_root=tmp_path / "results", errors="record", progress=False)
    failure = again.failures()[name]
    assert failure["file"] == f"{bad}:mp-13190-20180417/{member}" and problem in failure["error"]
    assert sorted(again.done()) == ["Cs2KAgF6", "KCdF3"]  # computed before, not lost, not recomputed
    assert {n: again.path(n, ".json").stat().st_mtime_ns for n in again.done()} == kept


# -- results keyed by their inputs (issue 40, item 3) -----------------------------------------------
def authors_folder(root: Path, members: dict[str, bytes], scale: float) -> Path:
    """``root/mydata`` with dpv_Cs2NaInCl6.tar.gz whose Φ_ref (force_constants.hdf5) is ``scale`` x the built one."""
    import h5py

    from hdpbench.io.force_constants import read_hdf5_force_constants

    fc = read_hdf5_force_constants(members["force_constants.hdf5"]) * scale
    scratch = root / "fc.hdf5"
    scratch.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(scratch, "w") as f:
        f.create_dataset("force_constants", data=fc)
    changed = {name: data for name, data in members.items() if name != "FORCE_SETS"}
    changed["force_constants.hdf5"] = scratch.read_bytes()
    write_tarball(root / "mydata" / "dpv_Cs2NaInCl6.tar.gz", changed, "dpv_Cs2NaInCl6")
    return root / "mydata"


def test_same_name_other_content_never_shares_results(tmp_path, members_of):
    members, _ = members_of("Cs2NaInCl6")
    a = authors_folder(tmp_path / "A", members, 1.0)
    b = authors_folder(tmp_path / "B", members, 1.5)
    results = tmp_path / "results"

    def rmse(folder) -> tuple[float, str]:
        store = run_stage("phonons", folder, lj(), results_root=results, progress=False)
        return store.load_json("Cs2NaInCl6")["rmse_omega2_thz2"], str(store.directory)

    rmse_a, directory_a = rmse(a)
    rmse_b, directory_b = rmse(b)
    assert directory_a == directory_b  # one results folder: same dataset name, model, settings
    assert rmse_b != rmse_a  # B's own Φ, not A's result served again
    # B alone in a fresh results folder gives the same number
    assert run_stage("phonons", b, lj(), results_root=tmp_path / "fresh", progress=False).load_json("Cs2NaInCl6")["rmse_omega2_thz2"] == rmse_b
    assert rmse(a)[0] == rmse_a  # and back: A recomputed, not B's

    # an archive corrected in place is recomputed
    authors_folder(tmp_path / "A", members, 1.5)
    assert rmse(a)[0] == rmse_b


# -- stages that do not apply ----------------------------------------------------------------
def test_stages_needing_frames_record_not_applicable_on_phonondb(tmp_path):
    from hdpbench.pipeline.export import export_rows

    folder = tmp_path / "db"
    folder.mkdir()
    shutil.copy(PHONONDB / PEROVSKITE, folder)
    for stage, reason in (("md", "not applicable: no AIMD frames"), ("sigma-reference-frames", "not applicable: no reference frames")):
        store = run_stage(stage, folder, lj(), results_root=tmp_path / "results", progress=False)
        assert store.not_applicable() == {"KCdF3": reason} and store.done() == [] and store.failures() == {}
    rows = export_rows(str(folder), "LennardJones", "md", results_root=tmp_path / "results")
    assert [(r["compound"], r["status"], r["error"]) for r in rows] == [("KCdF3", "not applicable", "not applicable: no AIMD frames")]


def test_commensurate_qpoints_of_the_conventional_elpasolite_cell_are_gamma_and_x():
    """The 40-atom cell is a supercell of the 10-atom fcc cell with volume ratio 4: Γ and the three X
    points (textbook coordinates, as above), where phonopy's dynamical matrix is Φ's exact transform."""
    from hdpbench.physics.phonons import commensurate_frequencies, make_phonopy

    compound = compound_of("phonondb", ELPASOLITE_NAME)
    phonon = make_phonopy(compound.unitcell, compound.supercell_matrix, compound.force_constants, primitive_matrix=compound.primitive_matrix)
    qpoints, frequencies = commensurate_frequencies(phonon)
    primitive = np.array(phonon.primitive.cell)
    a = np.linalg.norm(compound.unitcell.cell.array[0])
    assert len(qpoints) == 4 and frequencies.shape == (4, 30)
    assert sum(is_point(q, primitive, a, FCC_POINTS["GAMMA"]) for q in qpoints) == 1
    assert sum(is_point(q, primitive, a, FCC_POINTS["X"]) for q in qpoints) == 3
