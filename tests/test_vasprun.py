"""The streaming vasprun.xml reader returns exactly what ase.io.read(..., index=':') returns."""

from __future__ import annotations

import re
import tracemalloc

import ase.io
import numpy as np
import pytest

from hdpbench.core.compound import Trajectory
from hdpbench.core.errors import DataError
from hdpbench.io.vasprun import iter_vasprun, read_vasprun, write_vasprun

REAL_FILES = ["vasp_md/Si64_vasp6_gamma_md_vasprun.xml", "phonopy/NaCl/vasprun.xml-001", "phonopy/NaCl/vasprun.xml-002"]


def assert_same_as_ase(path):
    expected = ase.io.read(path, index=":", format="vasp-xml")
    steps = list(iter_vasprun(path))
    assert len(steps) == len(expected)
    for step, atoms in zip(steps, expected, strict=True):
        assert step.symbols == atoms.get_chemical_symbols()
        np.testing.assert_array_equal(step.positions, atoms.positions)
        np.testing.assert_array_equal(step.cell, atoms.cell.array)
        np.testing.assert_array_equal(step.forces, atoms.get_forces())
        assert step.energy == atoms.get_potential_energy()
        assert step.free_energy == atoms.get_potential_energy(force_consistent=True)
        expected_stress = atoms.calc.results.get("stress")
        if expected_stress is None:
            assert step.stress is None
        else:
            np.testing.assert_array_equal(step.stress, expected_stress)
    return expected


@pytest.mark.parametrize("relative", REAL_FILES)
def test_real_vasp_files_match_ase(fixtures, relative):
    expected = assert_same_as_ase(fixtures / relative)
    trajectory = read_vasprun(fixtures / relative)
    assert len(trajectory) == len(expected)
    np.testing.assert_array_equal(trajectory.numbers, expected[0].numbers)
    np.testing.assert_array_equal(trajectory.positions[-1], expected[-1].positions)


def test_reads_from_a_binary_stream_and_discards_leading_steps(fixtures):
    path = fixtures / REAL_FILES[0]
    with open(path, "rb") as stream:
        trajectory = read_vasprun(stream, discard=3, name="md.xml")
    full = read_vasprun(path)
    assert len(trajectory) == len(full) - 3
    np.testing.assert_array_equal(trajectory.frame_index, np.arange(3, len(full)))
    np.testing.assert_array_equal(trajectory.forces, full.forces[3:])
    assert trajectory.source_files == ["md.xml"]


def test_truncated_file_keeps_complete_steps_like_ase(fixtures, tmp_path):
    text = (fixtures / REAL_FILES[0]).read_text(encoding="iso-8859-1")
    starts = [m.start() for m in re.finditer("<calculation>", text)]
    cut = tmp_path / "vasprun.xml"
    cut.write_text(text[: starts[4] + 300], encoding="iso-8859-1")  # inside the fifth step
    with pytest.warns(UserWarning, match="truncated XML, using its 4 complete ionic steps"):
        assert len(read_vasprun(cut)) == 4
    with pytest.warns(UserWarning):
        assert_same_as_ase(cut)


def test_not_a_vasprun_names_the_file(tmp_path):
    bad = tmp_path / "vasprun.xml"
    bad.write_text("this is not xml")
    with pytest.raises(DataError, match=str(bad)):
        read_vasprun(bad)


def test_too_many_discarded_frames_is_an_error(fixtures):
    with pytest.raises(DataError, match="no ionic steps left after discarding the first 100"):
        read_vasprun(fixtures / REAL_FILES[0], discard=100)


def test_writer_round_trip_through_ase_and_ours(tmp_path):
    rng = np.random.default_rng(1)
    cell = np.diag([5.0, 5.5, 6.0])
    trajectory = Trajectory(
        numbers=[55, 55, 47, 83, 35],
        positions=rng.uniform(0, 5, (4, 5, 3)),
        cells=np.broadcast_to(cell, (4, 3, 3)),
        forces=rng.normal(size=(4, 5, 3)),
        energies=rng.normal(size=4),
    )
    path = tmp_path / "vasprun.xml"
    write_vasprun(path, trajectory)
    ours = read_vasprun(path)
    np.testing.assert_allclose(ours.positions, trajectory.positions, atol=1e-6)
    np.testing.assert_allclose(ours.forces, trajectory.forces, atol=1e-7)
    np.testing.assert_allclose(ours.energies, trajectory.energies, atol=1e-7)
    assert_same_as_ase(path)


def _replicated(fixtures, tmp_path, n_steps: int):
    """A long MD file made by repeating the real VASP 6 steps (test scratch only, never committed)."""
    text = (fixtures / REAL_FILES[0]).read_text(encoding="iso-8859-1")
    first = text.index("<calculation>")
    last = text.rindex("</calculation>") + len("</calculation>")
    blocks = re.findall(r"<calculation>.*?</calculation>", text[first:last], flags=re.S)
    body = "\n ".join(blocks[k % len(blocks)] for k in range(n_steps))
    path = tmp_path / f"vasprun_{n_steps}.xml"
    path.write_text(text[:first] + body + text[last:], encoding="iso-8859-1")
    return path


def test_parser_memory_is_flat_in_the_number_of_steps(fixtures, tmp_path):
    def peak_bytes(path):
        tracemalloc.start()
        for _ in iter_vasprun(path):
            pass
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    short, long = _replicated(fixtures, tmp_path, 20), _replicated(fixtures, tmp_path, 200)
    assert long.stat().st_size > 8 * short.stat().st_size
    # Ten times the steps may not cost more than a fraction more memory (ASE's tree would be ~10x).
    assert peak_bytes(long) < 1.5 * peak_bytes(short)
