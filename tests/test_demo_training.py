"""Demo-model training inputs: the training pool read from a demo archive, its selection, and E0s."""

import io
import json

import ase.io
import numpy as np
import pytest

from hdpbench.core.errors import MissingMemberError
from hdpbench.data.datasets import get_dataset
from hdpbench.demo.generate import staged_pool_dir
from hdpbench.demo.train import fitted_e0s, select_training_structures, training_pool_sources
from hdpbench.io.authors import read_provenance

from .builders import calculator, write_tarball


def demo_archive(root, members_of, formula, n_rattled=3):
    members, built = members_of(formula)
    pool = []
    rng = np.random.default_rng(1)
    for _ in range(n_rattled):
        atoms = built.supercell.copy()
        atoms.positions += rng.normal(0, 0.03, atoms.positions.shape)
        atoms.calc = calculator()
        atoms.get_forces()
        pool.append(atoms)
    buffer = io.StringIO()
    ase.io.write(buffer, pool, format="extxyz")
    members["training/rattled.extxyz"] = buffer.getvalue().encode()
    members["provenance.json"] = json.dumps({"reference_method": "LJ (test)", "compound": formula}).encode()
    folder = {"Cs2AgBiBr6": "bromides", "Cs2NaInCl6": "chlorides"}[formula]
    return write_tarball(root / folder / f"dpv_{formula}.tar.xz", members, f"dpv_{formula}"), pool, built


def test_training_pool_selection_and_e0s(tmp_path, members_of):
    path, pool, built = demo_archive(tmp_path, members_of, "Cs2AgBiBr6")
    demo_archive(tmp_path, members_of, "Cs2NaInCl6")
    dataset = get_dataset(tmp_path)
    assert dataset.entries()["Cs2AgBiBr6"].has()["training_pool"]
    assert dataset.generation_record("Cs2AgBiBr6")["reference_method"] == "LJ (test)"

    structures = dataset.training_structures("Cs2AgBiBr6")
    rattled = [a for a in structures if a.info["config_type"] == "rattled"]
    displaced = [a for a in structures if a.info["config_type"] == "displaced"]
    assert len(rattled) == 3 and len(displaced) >= 1
    np.testing.assert_allclose(rattled[1].arrays["REF_forces"], pool[1].get_forces(), atol=1e-7)  # extxyz precision
    # a displaced supercell carries the force phonopy recorded for it, computed here independently
    check = displaced[0].copy()
    check.calc = calculator()
    np.testing.assert_allclose(displaced[0].arrays["REF_forces"], check.get_forces(), atol=1e-6)
    assert "REF_energy" not in displaced[0].info

    sources = training_pool_sources(dataset)
    chosen, record = select_training_structures(sources, 2, include_displaced=False)
    assert len(chosen) == 4 and {r["compound"] for r in record} == {"Cs2AgBiBr6", "Cs2NaInCl6"}
    everything, _ = select_training_structures(sources, None, include_displaced=True)
    assert len(everything) == 2 * len(structures)

    # E0s reproduce energies that are exactly linear in the composition
    e0 = {55: -1.0, 47: -2.0, 83: -3.0, 35: -4.0, 11: -5.0, 49: -6.0, 17: -7.0}
    for atoms in everything:
        if atoms.info["config_type"] == "rattled":
            atoms.info["REF_energy"] = sum(e0[int(z)] for z in atoms.numbers)
    fitted = fitted_e0s(everything)
    predicted = [sum(fitted[int(z)] for z in a.numbers) for a in everything if "REF_energy" in a.info]
    np.testing.assert_allclose(predicted, [a.info["REF_energy"] for a in everything if "REF_energy" in a.info])


def test_authors_archives_have_no_training_pool(authors_dataset):
    root, built = authors_dataset
    dataset = get_dataset(root)
    assert read_provenance(built["Cs2AgBiBr6"].path) == {}
    with pytest.raises(MissingMemberError, match="training/rattled.extxyz"):
        dataset.training_structures("Cs2AgBiBr6")


def test_a_planned_compound_without_a_pool_stops_training(tmp_path, members_of):
    demo_archive(tmp_path, members_of, "Cs2AgBiBr6")
    dataset = get_dataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="no training pool yet for Cs2NaInCl6"):
        training_pool_sources(dataset, ["Cs2AgBiBr6", "Cs2NaInCl6"])
    # a pool the generator staged (MD still running) is used in the archive's place
    path, _, _ = demo_archive(tmp_path / "elsewhere", members_of, "Cs2NaInCl6")
    staged = staged_pool_dir("Cs2NaInCl6")
    staged.parent.mkdir(parents=True)
    import tarfile

    with tarfile.open(path) as tar:
        tar.extractall(staged.parent, filter="data")
    sources = training_pool_sources(dataset, ["Cs2AgBiBr6", "Cs2NaInCl6"])
    assert sources == {"Cs2AgBiBr6": dataset.entries()["Cs2AgBiBr6"].path, "Cs2NaInCl6": staged}
    structures, record = select_training_structures(sources, None, include_displaced=True)
    assert {r["compound"] for r in record} == {"Cs2AgBiBr6", "Cs2NaInCl6"}


def test_validation_split_holds_only_structures_with_an_energy():
    from ase import Atoms

    from hdpbench.demo.train import split_validation

    structures = []
    for k in range(30):
        atoms = Atoms("H", positions=[[0, 0, k]])
        if k % 3 == 0:  # rattled: energy and forces; the others are displaced: forces only
            atoms.info["REF_energy"] = -1.0
        structures.append(atoms)
    train, valid = split_validation(structures, 0.2, seed=7)
    assert len(valid) == 2 and all("REF_energy" in structures[i].info for i in valid)
    assert sorted(train + valid) == list(range(30))
    assert split_validation(structures, 0.2, seed=7) == (train, valid)  # seeded
