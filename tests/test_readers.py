"""Users' own data: force constants in every phonopy format, FHI-vibes and ASE trajectories."""

from __future__ import annotations

import lzma
import re

import ase.io
import numpy as np
import phonopy
import pytest
from phonopy.file_IO import write_FORCE_CONSTANTS, write_force_constants_to_hdf5

from hdpbench.core.compound import Trajectory
from hdpbench.core.errors import DataError
from hdpbench.core.structures import (
    double_perovskite,
    make_supercell,
    supercell_matrix_between,
    to_phonopy_atoms,
)
from hdpbench.io.force_constants import read_force_constants, read_phonopy_yaml
from hdpbench.io.trajectories import (
    ExtxyzFrameText,
    count_extxyz_frames,
    read_ase_frames,
    read_fhi_vibes,
    read_trajectory,
)


def test_full_and_compact_hdf5_and_text_give_the_same_full_fc(tmp_path, members_of):
    _, built = members_of()
    full = built.force_constants
    phonon = phonopy.Phonopy(to_phonopy_atoms(built.unitcell), supercell_matrix=np.diag([2, 2, 2]), primitive_matrix="P")
    compact = full[phonon.primitive.p2s_map]
    write_force_constants_to_hdf5(full, filename=str(tmp_path / "full.hdf5"))
    write_force_constants_to_hdf5(compact, filename=str(tmp_path / "compact.hdf5"), p2s_map=phonon.primitive.p2s_map)
    write_FORCE_CONSTANTS(full, filename=tmp_path / "FORCE_CONSTANTS")
    context = {"unitcell": built.unitcell, "supercell_matrix": np.diag([2, 2, 2]), "n_atoms": 80}
    np.testing.assert_array_equal(read_force_constants(tmp_path / "full.hdf5", **context), full)
    np.testing.assert_allclose(read_force_constants(tmp_path / "compact.hdf5", **context), full, atol=1e-14)
    np.testing.assert_allclose(read_force_constants(tmp_path / "FORCE_CONSTANTS", **context), full, atol=1e-12)
    with pytest.raises(DataError, match="needs the unit cell and the supercell matrix"):
        read_force_constants(tmp_path / "compact.hdf5")


def test_force_sets_of_real_nacl_equal_phonopy_load(fixtures):
    nacl = fixtures / "phonopy" / "NaCl"
    reference = phonopy.load(
        supercell_matrix=[2, 2, 2],
        unitcell_filename=str(nacl / "POSCAR-unitcell"),
        force_sets_filename=str(nacl / "FORCE_SETS"),
        primitive_matrix="P",
        is_nac=False,
        symmetrize_fc=False,
        is_compact_fc=False,
    )
    unitcell = ase.io.read(nacl / "POSCAR-unitcell", format="vasp")
    fc = read_force_constants(nacl / "FORCE_SETS", unitcell=unitcell, supercell_matrix=np.diag([2, 2, 2]))
    np.testing.assert_allclose(fc, reference.force_constants, atol=1e-12)


def test_phonopy_yaml_xz_of_real_kcl(fixtures, tmp_path):
    path = fixtures / "phonopy" / "KCl" / "phonopy_fc222_JPCM2022.yaml.xz"
    fc, unitcell, matrix = read_phonopy_yaml(path)
    assert fc.shape == (64, 64, 3, 3)
    np.testing.assert_array_equal(matrix, np.diag([2, 2, 2]))
    assert unitcell.get_chemical_formula() == "Cl4K4"
    # Independent reference: phonopy's own loader on the decompressed file.
    plain = tmp_path / "phonopy.yaml"
    plain.write_bytes(lzma.decompress(path.read_bytes()))
    expected = phonopy.load(str(plain), is_compact_fc=False, log_level=0).force_constants
    np.testing.assert_array_equal(read_force_constants(path), expected)
    # Acoustic sum rule holds for real force constants: Σ_j Φ_ij = 0.
    assert np.abs(fc.sum(axis=1)).max() < 1e-3


def test_fhi_vibes_trajectory(fixtures):
    vibes = read_fhi_vibes(fixtures / "fhi-vibes" / "CsPbI3_aims_pbesol_700K_trajectory.nc")
    assert len(vibes.trajectory) == 9 and vibes.trajectory.n_atoms == 135
    assert vibes.reference.get_chemical_formula() == "Cs27I81Pb27"
    assert vibes.force_constants.shape == (135, 135, 3, 3)
    assert vibes.sigma == pytest.approx(0.6594, abs=1e-4) and vibes.sigma_per_sample.shape == (9,)
    # (3N, 3N) → (N, N, 3, 3): the block Φ_ij is rows 3i..3i+2, columns 3j..3j+2 of the file's matrix.
    import h5py

    with h5py.File(fixtures / "fhi-vibes" / "CsPbI3_aims_pbesol_700K_trajectory.nc") as f:
        matrix = f["force_constants_remapped"][()]
    np.testing.assert_array_equal(vibes.force_constants[5, 17], matrix[15:18, 51:54])
    assert read_trajectory(fixtures / "fhi-vibes" / "CsPbI3_aims_pbesol_700K_trajectory.nc").n_atoms == 135


def test_extxyz_and_traj_with_forces(tmp_path, members_of):
    _, built = members_of()
    frames = built.frames[0].to_atoms_list()
    ase.io.write(tmp_path / "md.extxyz", frames)
    ase.io.write(tmp_path / "md.traj", frames)
    for name in ("md.extxyz", "md.traj"):
        trajectory = read_trajectory(tmp_path / name, discard=2)
        assert len(trajectory) == 4
        # extxyz stores 8 decimals; ASE's .traj is binary and exact.
        np.testing.assert_allclose(trajectory.forces, built.frames[0].forces[2:], atol=1e-7)
        np.testing.assert_allclose(trajectory.positions, built.frames[0].positions[2:], atol=1e-7)


def test_trajectory_without_forces_is_refused(tmp_path):
    ase.io.write(tmp_path / "plain.extxyz", [double_perovskite("Cs", "Ag", "Bi", "Br", 11.2)])
    with pytest.raises(DataError, match="plain.extxyz: frames carry no forces"):
        read_trajectory(tmp_path / "plain.extxyz")
    with pytest.raises(DataError, match="no such trajectory file"):
        read_trajectory(tmp_path / "missing.extxyz")


def test_supercell_matrix_detection(members_of):
    _, built = members_of()
    np.testing.assert_array_equal(supercell_matrix_between(built.unitcell, built.supercell), np.diag([2, 2, 2]))
    with pytest.raises(DataError, match="not an integer supercell"):
        supercell_matrix_between(built.unitcell, built.supercell[:79])


def test_generated_double_perovskite_is_fm3m_with_wyckoff_sites():
    import spglib

    atoms = double_perovskite("Rb", "Ni", "Ag", "F", a=8.6, x=0.23)
    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    dataset = spglib.get_symmetry_dataset(cell)
    assert dataset.number == 225
    assert list(dataset.wyckoffs) == ["c", "c", "a", "b"] + ["e"] * 6


def test_compound_from_a_users_own_files(tmp_path, members_of):
    from phonopy.file_IO import write_FORCE_CONSTANTS

    from hdpbench.core.errors import TrajectoryMismatchError
    from hdpbench.data.datasets import compound_from_files

    _, built = members_of()
    ase.io.write(tmp_path / "POSCAR", built.unitcell, format="vasp", direct=True)
    write_FORCE_CONSTANTS(built.force_constants, filename=tmp_path / "FORCE_CONSTANTS")
    ase.io.write(tmp_path / "md.extxyz", built.frames[0].to_atoms_list())
    compound = compound_from_files(tmp_path / "POSCAR", tmp_path / "FORCE_CONSTANTS", [tmp_path / "md.extxyz"], discard=1)
    assert compound.halide == "Br" and compound.n_atoms == 80 and compound.n_frames == 5
    np.testing.assert_allclose(compound.force_constants, built.force_constants, atol=1e-12)
    np.testing.assert_allclose(compound.reference_supercell.positions, built.supercell.positions, atol=1e-6)
    # A trajectory of another supercell size is refused by the same checks as the authors' data.
    frames = built.frames[0]
    half = Trajectory(frames.numbers[:40], frames.positions[:, :40], frames.cells, frames.forces[:, :40])
    ase.io.write(tmp_path / "small.extxyz", half.to_atoms_list())
    with pytest.raises(TrajectoryMismatchError, match="40 atoms per frame"):
        compound_from_files(tmp_path / "POSCAR", None, [tmp_path / "small.extxyz"])


def test_phonopy_yaml_is_parsed_once_per_content(fixtures, tmp_path, monkeypatch):
    """The parsed arrays are cached by the file's sha256: a second read gives the same bytes without
    parsing, an edited file is parsed again, a damaged cache entry is parsed again."""
    import hdpbench.io.force_constants as module

    path = tmp_path / "phonopy.yaml"
    path.write_bytes(lzma.decompress((fixtures / "phonopy" / "KCl" / "phonopy_fc222_JPCM2022.yaml.xz").read_bytes()))
    parsed = read_phonopy_yaml(path)
    calls = []
    parse = module._parse_phonopy_yaml
    monkeypatch.setattr(module, "_parse_phonopy_yaml", lambda p: calls.append(p) or parse(p))
    fc, unitcell, matrix = read_phonopy_yaml(path)
    assert calls == []
    np.testing.assert_array_equal(fc, parsed[0])
    np.testing.assert_array_equal(matrix, parsed[2])
    for get in ("get_positions", "get_cell", "get_masses", "get_atomic_numbers", "get_pbc"):
        np.testing.assert_array_equal(getattr(unitcell, get)(), getattr(parsed[1], get)())
    # an edited file (here: one force constant changed) is a new key
    text = path.read_text()
    first = text.index("force_constants:")
    number = re.search(r"-?\d+\.\d+", text[first:])
    edited = text[: first + number.start()] + "1234.5" + text[first + number.end() :]
    path.write_text(edited)
    changed = read_phonopy_yaml(path)[0]
    assert len(calls) == 1 and not np.array_equal(changed, parsed[0])
    np.testing.assert_array_equal(changed, parse(path)[0])
    # a damaged entry is parsed again and rewritten
    module._parsed_yaml_file(path).write_bytes(b"not an npz")
    np.testing.assert_array_equal(read_phonopy_yaml(path)[0], changed)
    assert len(calls) == 2
    np.testing.assert_array_equal(read_phonopy_yaml(path)[0], changed)
    assert len(calls) == 2
    # a changed reader (another source digest) is parsed again
    from hdpbench.core import storage

    monkeypatch.setattr(storage, "source_digest", lambda *patterns: "another reader")
    np.testing.assert_array_equal(read_phonopy_yaml(path)[0], changed)
    assert len(calls) == 3


def test_source_digest_changes_with_any_matching_source_file(tmp_path, monkeypatch):
    import hdpbench
    from hdpbench.core.storage import READER_SOURCES, source_digest

    package = tmp_path / "hdpbench"
    (package / "io").mkdir(parents=True)
    (package / "core").mkdir()
    (package / "__init__.py").write_text("")
    (package / "io" / "reader.py").write_text("x = 1\n")
    (package / "core" / "compound.py").write_text("y = 1\n")
    (package / "core" / "other.py").write_text("z = 1\n")
    monkeypatch.setattr(hdpbench, "__file__", str(package / "__init__.py"))

    def digest():
        source_digest.cache_clear()
        return source_digest(*READER_SOURCES)

    first = digest()
    (package / "core" / "other.py").write_text("z = 2\n")  # not a reader
    assert digest() == first
    (package / "io" / "reader.py").write_text("x = 2\n")
    second = digest()
    assert second != first
    (package / "io" / "new_reader.py").write_text("")  # a new reader module counts too
    assert digest() != second
    source_digest.cache_clear()


def test_ase_frames_are_parsed_once_per_content(tmp_path, members_of, monkeypatch):
    """``read_ase_frames`` caches the parsed arrays under the file's sha256: a second read equals
    ``ase.io.read`` bit for bit without calling it, an edited file is parsed again."""
    _, built = members_of()
    frames = built.frames[0].to_atoms_list()
    path = tmp_path / "md.extxyz"
    ase.io.write(path, frames)
    direct = Trajectory.from_atoms_list(ase.io.read(path, index=":"), source="md of X")
    first = read_ase_frames(path, source="md of X")
    calls = []
    real_read = ase.io.read
    monkeypatch.setattr(ase.io, "read", lambda *a, **k: calls.append(a) or real_read(*a, **k))
    for trajectory in (first, read_ase_frames(path, source="md of X")):
        for name in ("numbers", "positions", "cells", "forces", "frame_source", "frame_index"):
            np.testing.assert_array_equal(getattr(trajectory, name), getattr(direct, name))
        np.testing.assert_array_equal(trajectory.energies, direct.energies)
        assert trajectory.pbc == direct.pbc and trajectory.source_files == ["md of X"]
    assert calls == []
    ase.io.write(path, frames[:3])  # another content: parsed again
    assert len(read_ase_frames(path)) == 3 and len(calls) == 1


def test_extxyz_frames_are_counted_without_parsing(tmp_path, members_of):
    _, built = members_of()
    frames = built.frames[0].to_atoms_list()
    path = tmp_path / "md.extxyz"
    ase.io.write(path, frames)
    assert count_extxyz_frames(path, len(frames[0])) == len(frames) == len(ase.io.read(path, index=":"))
    assert count_extxyz_frames(tmp_path / "absent.extxyz", 80) == 0
    with pytest.raises(DataError, match=r"md.extxyz: .* not whole frames of 79 atoms"):
        count_extxyz_frames(path, 79)


def _ase_extxyz_text(template, positions, velocities, forces, step):
    """The reference: ASE's own writer on an Atoms built the plain ASE way."""
    import io

    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = template.copy()
    atoms.positions = positions
    atoms.set_velocities(velocities)
    if forces is not None:
        atoms.calc = SinglePointCalculator(atoms, forces=forces)
    atoms.info["step"] = step
    buffer = io.StringIO()
    ase.io.write(buffer, atoms, format="extxyz")
    return buffer.getvalue()


def test_extxyz_frame_text_is_byte_for_byte_what_ase_writes():
    from ase.constraints import FixAtoms

    rng = np.random.default_rng(11)
    base = make_supercell(double_perovskite("Cs", "Ag", "Bi", "Br", 11.25, 0.25), np.diag([2, 2, 2]))
    slanted = base.copy()
    slanted.set_cell(base.cell[:] + [[0.0, 0.3, -0.1], [0.2, 0.0, 0.0], [0.0, -0.4, 0.0]], scale_atoms=True)
    slanted.pbc = [True, False, True]
    no_cell = base.copy()
    no_cell.set_cell(np.zeros((3, 3)))
    no_cell.pbc = False
    bare = base.copy()
    del bare.arrays["masses"]  # the supercell builder sets masses; a file reader does not
    with_momenta = base.copy()
    with_momenta.set_momenta(np.ones((len(base), 3)))  # before the masses: another column order
    with_momenta.set_array("charges", np.linspace(-1, 1, len(base)))
    with_momenta.set_array("masses", base.get_masses())
    with_tags, with_info, constrained = base.copy(), base.copy(), base.copy()
    with_tags.set_tags(np.arange(len(base)))
    with_info.info["source"] = "AIMD step 3"
    constrained.set_constraint(FixAtoms(indices=[0, 5]))
    templates = {
        "masses": base, "bare": bare, "slanted": slanted, "no cell": no_cell, "momenta, charges": with_momenta,
        "tags": with_tags, "info": with_info, "constrained": constrained,
    }  # fmt: skip
    for label, template in templates.items():
        frame = ExtxyzFrameText(template)
        assert frame.plain == (label not in {"tags", "info", "constrained"}), label
        n = len(template)
        for step in (0, 7, 12345):
            positions = template.positions + rng.normal(scale=0.3, size=(n, 3))
            velocities = rng.normal(scale=0.02, size=(n, 3))
            forces = rng.normal(scale=2.0, size=(n, 3)) * rng.choice([1e-9, 1.0, 1e3], size=(n, 1))
            forces[0] = [-0.0, 0.0, -1e-12]  # signed zeros and values that print as -0.00000000
            velocities[1] = [-0.0, 5e-10, -5e-10]
            ours = frame.text(positions, velocities, forces, step)
            assert ours == _ase_extxyz_text(template, positions, velocities, forces, step), (label, step)
        assert frame.text(positions, velocities, None, 3) == _ase_extxyz_text(template, positions, velocities, None, 3), label


def test_a_cache_entry_that_is_absent_damaged_or_incomplete_reads_as_a_miss(tmp_path):
    from hdpbench.core.storage import try_read_cache_arrays, try_write_cache_arrays

    path = tmp_path / "entry.npz"
    assert try_read_cache_arrays(path, lambda stored: stored["a"]) is None
    path.write_bytes(b"not an npz")
    assert try_read_cache_arrays(path, lambda stored: stored["a"]) is None
    assert try_write_cache_arrays(path, {"a": np.arange(3)})
    np.testing.assert_array_equal(try_read_cache_arrays(path, lambda stored: stored["a"]), np.arange(3))
    assert try_read_cache_arrays(path, lambda stored: stored["b"]) is None
