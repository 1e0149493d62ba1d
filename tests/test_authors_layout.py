"""Reading compounds in the authors' raw layout, from tarballs and from extracted folders."""

from __future__ import annotations

import numpy as np
import pytest

from hdpbench.data.datasets import get_dataset
from hdpbench.io.archive import CompoundFiles
from hdpbench.io.authors import load_compound, read_summary_db

from .builders import production_name, write_folder, write_tarball


def test_tarball_is_read_in_full(authors_dataset):
    root, built = authors_dataset
    expected = built["Cs2AgBiBr6"]
    compound = load_compound(expected.path, discard=2)
    assert compound.formula == "Cs2AgBiBr6" and compound.halide == "Br"
    assert len(compound.unitcell) == 10 and compound.n_atoms == 80
    np.testing.assert_array_equal(compound.supercell_matrix, np.diag([2, 2, 2]))
    np.testing.assert_allclose(compound.reference_supercell.positions, expected.supercell.positions, atol=1e-6)
    np.testing.assert_allclose(compound.force_constants, expected.force_constants, atol=1e-12)
    assert compound.provenance["force_constants_from"] == "force_constants.hdf5"
    # Two production files (the equilibration file is ignored), first 2 of 6 frames dropped from each.
    assert [len(t) for t in compound.trajectories] == [4, 4]
    for k, trajectory in enumerate(compound.trajectories):
        assert trajectory.source_files == [f"{expected.path}:{production_name(k)}"]
        np.testing.assert_array_equal(trajectory.frame_index, [2, 3, 4, 5])
        np.testing.assert_allclose(trajectory.positions, expected.frames[k].positions[2:], atol=1e-6)
        np.testing.assert_allclose(trajectory.forces, expected.frames[k].forces[2:], atol=1e-7)
    joined = compound.trajectory
    assert len(joined) == 8 and joined.frame_file(5) == f"{expected.path}:{production_name(1)}"


def test_folder_and_tarball_give_the_same_record(tmp_path, members_of):
    members, _ = members_of("Cs2AgBiBr6")
    packed = load_compound(write_tarball(tmp_path / "a" / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6"), discard=0)
    unpacked = load_compound(write_folder(tmp_path / "b" / "dpv_Cs2AgBiBr6", members), discard=0)
    assert packed.n_frames == unpacked.n_frames == 12
    np.testing.assert_array_equal(packed.force_constants, unpacked.force_constants)
    for a, b in zip(packed.trajectories, unpacked.trajectories, strict=True):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.forces, b.forces)


def test_members_without_folder_prefix_are_found(tmp_path, members_of):
    members, _ = members_of("Cs2AgBiBr6")
    compound = load_compound(write_tarball(tmp_path / "dpv_Cs2AgBiBr6.tar.gz", members, prefix=None), discard=0)
    assert compound.n_frames == 12


def test_production_file_shorter_than_its_equilibration_is_skipped_and_recorded(tmp_path, members_of):
    members, _ = members_of("Cs2AgBiBr6")
    compound = load_compound(write_tarball(tmp_path / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6"))  # 100 > 6
    assert compound.trajectories == []
    skipped = compound.provenance["skipped_production_files"]
    assert len(skipped) == 2 and all("no ionic steps left after discarding the first 100" in v for v in skipped.values())


def test_force_sets_fallback_equals_phonopy_hdf5(tmp_path, members_of):
    members, built = members_of("Cs2AgBiBr6")
    del members["force_constants.hdf5"]
    compound = load_compound(write_tarball(tmp_path / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6"), trajectories=False)
    assert compound.provenance["force_constants_from"] == "FORCE_SETS"
    # FORCE_SETS stores forces as text (about 1e-10 eV/Å), so Φ agrees to ~1e-8 eV/Å².
    np.testing.assert_allclose(compound.force_constants, built.force_constants, rtol=0, atol=1e-7)
    assert compound.trajectories == []


def test_tarball_is_not_extracted_to_disk(authors_dataset):
    root, built = authors_dataset
    before = sorted(p for p in root.rglob("*"))
    load_compound(built["Cs2AgBiBr6"].path)
    assert sorted(p for p in root.rglob("*")) == before


def test_summary_database(authors_dataset):
    root, _ = authors_dataset
    summary = read_summary_db(root / "double_halide_pv.db")
    assert set(summary) == {"Cs2AgBiBr6", "Cs2NaInCl6"}  # element rows skipped
    assert summary["Cs2AgBiBr6"]["sigma_reference"] == pytest.approx(0.41)
    assert summary["Cs2AgBiBr6"]["min_phonon_freq_thz"] == {"G": pytest.approx(-0.3)}
    # The authors treat σ ≥ 2 as missing; the raw value is kept.
    assert summary["Cs2NaInCl6"]["sigma_reference"] is None
    assert summary["Cs2NaInCl6"]["raw"]["sigma_300K_single"] == pytest.approx(2.5)


def test_dataset_by_path_lists_and_loads(authors_dataset):
    root, built = authors_dataset
    dataset = get_dataset(root)
    assert dataset.compounds() == ["Cs2NaInCl6", "Cs2AgBiBr6"]  # halide folders in order F, Cl, Br, I
    entry = dataset.entries()["Cs2AgBiBr6"]
    assert entry.halide == "Br"
    assert entry.has() == {
        "problem": None,
        "unitcell": True,
        "reference_supercell": True,
        "force_constants": "force_constants.hdf5",
        "production_md_files": 2,
        "training_pool": False,
        "provenance": False,
        "sigma_reference": pytest.approx(0.41),
    }
    compound = dataset.load("Cs2NaInCl6", discard=0)
    assert compound.halide == "Cl" and compound.n_frames == 12
    assert compound.summary["sigma_reference"] is None


def test_member_inventory_is_cached(authors_dataset, monkeypatch):
    root, _ = authors_dataset
    get_dataset(root).entries()
    calls = []
    original = CompoundFiles.member_names

    def counting(self):
        calls.append(self.path)
        return original(self)

    monkeypatch.setattr(CompoundFiles, "member_names", counting)
    get_dataset(root).entries()
    assert all(path.is_dir() for path in calls)  # archives were not re-read


def test_real_vasp_md_file_streamed_from_a_tarball(fixtures, tmp_path):
    """The archive path must hand the XML parser a stream it reads exactly like the file on disk."""
    import ase.io

    from hdpbench.io.vasprun import read_vasprun

    real = fixtures / "vasp_md" / "Si64_vasp6_gamma_md_vasprun.xml"
    archive = write_tarball(tmp_path / "dpv_Si.tar.gz", {"MD/vasprun_prod_1.xml": real.read_bytes()}, "dpv_Si")
    [(name, trajectory)] = [
        (name, read_vasprun(stream, discard=2, name=name)) for name, stream in CompoundFiles(archive).iter_members()
    ]
    expected = ase.io.read(real, index="2:", format="vasp-xml")
    assert name == "MD/vasprun_prod_1.xml" and len(trajectory) == len(expected)
    for k, atoms in enumerate(expected):
        np.testing.assert_array_equal(trajectory.positions[k], atoms.positions)
        np.testing.assert_array_equal(trajectory.forces[k], atoms.get_forces())
        assert trajectory.energies[k] == atoms.get_potential_energy()


def test_a_corrupt_archive_is_listed_with_its_problem(authors_dataset):
    from hdpbench.core.errors import ArchiveError

    root, _ = authors_dataset
    (root / "iodides").mkdir()
    (root / "iodides" / "dpv_Cs2NaBiI6.tar.gz").write_bytes(b"\x1f\x8b broken")
    dataset = get_dataset(root)
    assert dataset.compounds() == ["Cs2NaInCl6", "Cs2AgBiBr6", "Cs2NaBiI6"]
    assert "corrupt" in dataset.entries()["Cs2NaBiI6"].has()["problem"]
    assert dataset.entries()["Cs2AgBiBr6"].has()["problem"] is None
    with pytest.raises(ArchiveError, match="dpv_Cs2NaBiI6.tar.gz"):
        dataset.load("Cs2NaBiI6")


def test_frame_sets_follow_the_authors_scripts(tmp_path, members_of):
    """vasprun_prod.xml, _1, _2, _3: σ reads _1 then _2 (100 steps dropped from each in the stages),
    the extended set every file in order, and model MD starts from _2 (else _1)."""
    from hdpbench.io.authors import FrameSet

    members, built = members_of("Cs2AgBiBr6", n_files=4, frames_per_file=5)
    members = dict(members)  # the fixture caches it
    path = write_tarball(tmp_path / "chlorides" / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6")

    def files(compound):
        return [t.source_files[0].rsplit(":", 1)[1] for t in compound.trajectories]

    paper = load_compound(path, discard=1)  # the loader's default is every file
    assert files(paper) == [production_name(k) for k in range(4)]
    paper = load_compound(path, discard=1, frames=FrameSet.PAPER)
    assert files(paper) == ["MD/vasprun_prod_1.xml", "MD/vasprun_prod_2.xml"]
    assert paper.n_frames == 2 * 4 and paper.provenance["frame_set"] == "paper"
    np.testing.assert_allclose(paper.trajectory.positions[:4], built.frames[1].positions[1:], atol=1e-6)
    np.testing.assert_allclose(paper.trajectory.forces[4:], built.frames[2].forces[1:], atol=1e-7)
    assert files(load_compound(path, discard=0, frames="all")) == [production_name(k) for k in range(4)]
    start = load_compound(path, discard=0, frames="md-start")
    assert files(start) == ["MD/vasprun_prod_2.xml"] and start.n_frames == 5

    # Without _2 the runs start from _1; without _1 and _2 the paper's set is empty.
    del members["MD/vasprun_prod_2.xml"]
    only_one = write_tarball(tmp_path / "b" / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6")
    assert files(load_compound(only_one, discard=0, frames="md-start")) == ["MD/vasprun_prod_1.xml"]
    del members["MD/vasprun_prod_1.xml"]
    neither = write_tarball(tmp_path / "c" / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6")
    assert load_compound(neither, discard=0, frames="paper").trajectories == []
    assert FrameSet.PAPER.select(["MD/vasprun_prod_3.xml", "MD/vasprun_prod.xml"]) == []


def test_data_show_reports_the_frames_the_sigma_stages_read(tmp_path, members_of, capsys):
    import json

    from hdpbench.cli import main

    members, _ = members_of("Cs2AgBiBr6", n_files=4, frames_per_file=5)
    write_tarball(tmp_path / "bromides" / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6")
    assert main(["data", "show", "Cs2AgBiBr6", "--dataset", str(tmp_path), "--discard", "2", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [f.rsplit(":", 1)[1] for f in shown["sigma_files"]] == ["MD/vasprun_prod_1.xml", "MD/vasprun_prod_2.xml"]
    assert shown["sigma_frames"] == 2 * 3 and shown["frames_per_file"] == [3, 3, 3, 3]
    assert shown["md_start_file"].endswith(":MD/vasprun_prod_2.xml") and len(shown["extended_files"]) == 4
    assert main(["data", "show", "Cs2AgBiBr6", "--dataset", str(tmp_path), "--no-md", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sigma_frames"] is None


def test_an_unknown_frame_set_is_refused_with_the_choices():
    from hdpbench.core.errors import UsageError
    from hdpbench.io.authors import frame_set

    with pytest.raises(UsageError, match="'paper', 'all', 'md-start'"):
        frame_set("first-two")


def test_sigma_db_check_recomputes_the_stored_value_like_for_like(tmp_path, members_of):
    """The database's σ is one pooled ratio of standard deviations over every production file with no
    frame dropped (the authors' collect_data.py); the paper's σ is ⟨σ(t)⟩ over _1 and _2 after the
    discard. Both recomputed here by hand with numpy, independently of hdpbench.physics.anharmonicity."""
    from hdpbench.book import analysis
    from hdpbench.pipeline.runner import cached_dataset

    from .builders import write_summary_db

    members, built = members_of("Cs2AgBiBr6", n_files=3, frames_per_file=5)
    root = tmp_path / "hdp"
    write_tarball(root / "bromides" / "dpv_Cs2AgBiBr6.tar.gz", members, "dpv_Cs2AgBiBr6")
    reference = built.supercell
    phi = built.force_constants.transpose(0, 2, 1, 3).reshape(240, 240)

    def residuals(frames):
        fractional = (frames.positions - reference.positions) @ np.linalg.inv(reference.cell.array)
        u = (fractional - np.round(fractional)) @ reference.cell.array
        harmonic = -(u.reshape(len(u), -1) @ phi.T).reshape(u.shape)
        return frames.forces, frames.forces - harmonic

    pairs = [residuals(f) for f in built.frames]
    forces = np.concatenate([f for f, _ in pairs])
    residual = np.concatenate([r for _, r in pairs])
    stored = residual.std() / forces.std()
    write_summary_db(root / "double_halide_pv.db", {"Cs2AgBiBr6": {"sigma_300K_single": float(stored)}})
    kept = [(f[1:], r[1:]) for f, r in pairs[1:3]]  # _1 and _2, one step dropped from each
    paper = np.mean(np.concatenate([np.sqrt((r**2).sum(axis=(1, 2)) / (f**2).sum(axis=(1, 2))) for f, r in kept]))

    cached_dataset.cache_clear()
    table = analysis.sigma_db_check(str(root), discard=1)
    row = table.set_index("compound").loc["Cs2AgBiBr6"]
    assert row["sigma_db_recomputed"] == pytest.approx(stored, rel=1e-6) and row["sigma_db"] == pytest.approx(stored)
    assert row["sigma_paper"] == pytest.approx(paper, rel=1e-6)
    assert row["frames_db"] == 15 and row["frames_paper"] == 8
    assert "segment before `_1`" in analysis.extended_aimd_note(str(root), "Cs2AgBiBr6")
    cached_dataset.cache_clear()


def _assert_same_compound(loaded, parsed):
    assert (loaded.formula, loaded.halide, loaded.summary, loaded.provenance) == (parsed.formula, parsed.halide, parsed.summary, parsed.provenance)
    for key in ("unitcell", "reference_supercell"):
        for get in ("get_atomic_numbers", "get_positions", "get_cell", "get_pbc", "get_masses"):
            np.testing.assert_array_equal(getattr(getattr(loaded, key), get)(), getattr(getattr(parsed, key), get)())
    np.testing.assert_array_equal(loaded.supercell_matrix, parsed.supercell_matrix)
    np.testing.assert_array_equal(loaded.force_constants, parsed.force_constants)
    assert len(loaded.trajectories) == len(parsed.trajectories)
    for mine, theirs in zip(loaded.trajectories, parsed.trajectories, strict=True):
        for name in ("numbers", "positions", "cells", "forces", "energies", "frame_source", "frame_index"):
            np.testing.assert_array_equal(getattr(mine, name), getattr(theirs, name))
        assert (mine.source_files, mine.pbc) == (theirs.source_files, theirs.pbc)


def test_an_archive_is_parsed_once_per_content_and_options(authors_dataset, members_of, monkeypatch):
    """A second load of an archive with the same options comes from the parse cache, equal in every
    array and record to the parse; other options, an archive with other content and a folder are
    parsed."""
    from hdpbench.io import authors

    root, built = authors_dataset
    archive, folder = built["Cs2AgBiBr6"].path, built["Cs2NaInCl6"].path
    options = [{"discard": 2}, {"frames": "paper"}, {"frames": "md-start", "discard": 0}, {"trajectories": False}]
    parsed = [load_compound(archive, summary={"sigma_reference": 0.4}, **kw) for kw in options]
    calls = []
    parse = authors._parse_compound
    monkeypatch.setattr(authors, "_parse_compound", lambda *a, **k: calls.append(k) or parse(*a, **k))
    for kw, first in zip(options, parsed, strict=True):
        _assert_same_compound(load_compound(archive, summary={"sigma_reference": 0.4}, **kw), first)
    assert calls == [] and parsed[0].n_frames == 8 and parsed[3].trajectories == []
    load_compound(archive, discard=3)
    load_compound(folder)
    load_compound(folder)
    assert len(calls) == 3
    # another compound's content under this name: parsed again, not the cached one
    members, other = members_of("Cs2AgBiBr6", n_files=1, frames_per_file=5)
    write_tarball(archive, members, "dpv_Cs2AgBiBr6")
    changed = load_compound(archive, discard=2)
    assert len(calls) == 4 and changed.n_frames == 3
    np.testing.assert_allclose(changed.trajectories[0].positions, other.frames[0].positions[2:], atol=1e-6)


def test_the_parse_cache_can_be_switched_off(authors_dataset, monkeypatch, tmp_path):
    from hdpbench.core.storage import content_cache_file
    from hdpbench.io import authors

    root, built = authors_dataset
    monkeypatch.setenv("HDPBENCH_PARSE_CACHE", "0")
    calls = []
    parse = authors._parse_compound
    monkeypatch.setattr(authors, "_parse_compound", lambda *a, **k: calls.append(k) or parse(*a, **k))
    load_compound(built["Cs2AgBiBr6"].path)
    load_compound(built["Cs2AgBiBr6"].path)
    assert len(calls) == 2 and content_cache_file(built["Cs2AgBiBr6"].path, "compounds", "x") is None
    monkeypatch.setenv("HDPBENCH_PARSE_CACHE", "1")
    assert content_cache_file(built["Cs2AgBiBr6"].path, "compounds", "x") is not None
