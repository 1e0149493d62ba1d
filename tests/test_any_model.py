"""Any MLIP through the pipeline: registry kinds and validation, CHGNet batched = CHGNetCalculator,
ASE calculators in the stages, and the model-aware ``phonons compare`` / ``sigma`` commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase.calculators.lj import LennardJones

from hdpbench import cli
from hdpbench.core import paths
from hdpbench.core.errors import DataError, HdpbenchError
from hdpbench.models.calculators import CalculatorModel, parse_elements
from hdpbench.models.evaluate import UnknownElementError, load_model
from hdpbench.models.registry import get_model_spec, registered_models

CHGNET_MODELS = ["chgnet-0.3.0", "chgnet-0.2.0", "chgnet-r2scan"]
EXTERNAL = paths.project_root() / "data" / "external"


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A private model registry holding copies of the real entries; returns its folder."""
    folder = tmp_path / "models"
    folder.mkdir()
    for file in (paths.project_root() / "models").glob("*.yaml"):
        shutil.copy(file, folder)
    monkeypatch.setenv("HDPBENCH_MODELS", str(folder))
    return folder


# ---- registry -------------------------------------------------------------------------------


def test_chgnet_models_are_registered_with_their_facts_and_available_offline(capsys):
    specs = registered_models()
    for name in CHGNET_MODELS:
        spec = specs[name]
        assert spec.kind == "ase" and spec.dtypes == ["float32"] and spec.sha256
        assert spec.parameters and spec.training_data and spec.level_of_theory and spec.license
    code, out, _ = run_cli(capsys, "models", "list", "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0
    for name in CHGNET_MODELS:
        assert rows[name]["available"] is True and rows[name]["kind"] == "ase"
        assert Path(rows[name]["checkpoint"]).is_file()
    assert rows["chgnet-0.3.0"]["parameters"] == 412525


def test_misspelt_key_is_an_error_naming_file_and_key(registry):
    file = registry / "chgnet-0.3.0.yaml"
    file.write_text(file.read_text().replace("sha256:", "sha265:"))
    with pytest.raises(DataError) as error:
        registered_models()
    assert str(file) in str(error.value) and "'sha265'" in str(error.value) and "did you mean 'sha256'" in str(error.value)


def test_unknown_kind_is_an_error(registry):
    file = registry / "chgnet-0.3.0.yaml"
    file.write_text(file.read_text().replace("kind: ase", "kind: nequip"))
    with pytest.raises(DataError, match="kind 'nequip' is not one of"):
        registered_models()


def test_registered_sha256_is_enforced_before_the_factory_runs(registry):
    file = registry / "chgnet-0.3.0.yaml"
    text = file.read_text()
    registered = get_model_spec("chgnet-0.3.0").sha256
    file.write_text(text.replace(registered, "ab" * 32))
    with pytest.raises(DataError, match="does not match the registered"):
        load_model("chgnet-0.3.0")
    file.write_text(text.replace(registered, "0" * 64))  # YAML reads an unquoted run of digits as a number
    with pytest.raises(DataError, match="sha256 must be 64 lower-case hex digits"):
        load_model("chgnet-0.3.0")


def test_dtype_is_applied_or_refused_never_ignored(registry):
    with pytest.raises(HdpbenchError, match=r"computes in \['float32'\] only"):
        load_model("chgnet-0.3.0", dtype="float64")
    (registry / "lj.yaml").write_text(
        "name: lj\nkind: ase\nfactory: ase.calculators.lj:LennardJones\nfactory_kwargs: {sigma: 2.5}\n"
        "dtype: float64\nelements: H-Pu\nlicense: LGPL\n"
    )
    with pytest.raises(HdpbenchError, match=r"computes in \['float64'\] only"):
        load_model("lj", dtype="float32")
    with pytest.raises(HdpbenchError, match="runs on the CPU only"):
        load_model("lj", dtype="float64", device="cuda")
    model = load_model("lj", dtype="float64")
    assert model.dtype == "float64" and model.calculator.parameters["sigma"] == 2.5


def test_elements_ranges_and_symbols():
    assert parse_elements("H-Pu") == list(range(1, 95))
    assert parse_elements(["I", "Cs", "Pb"]) == [53, 55, 82]
    with pytest.raises(DataError, match="'Xx' is not an element"):
        parse_elements(["Xx"])


# ---- CHGNet batched path = CHGNetCalculator ---------------------------------------------------


@pytest.mark.parametrize("name", CHGNET_MODELS)
def test_chgnet_batched_equals_chgnet_calculator_per_structure(name):
    from chgnet.model.dynamics import CHGNetCalculator

    from hdpbench.pipeline.benchmarking import hdp_frames

    model = load_model(name)
    assert model.batched is not None and model.checkpoint_sha256 == get_model_spec(name).sha256
    structures = hdp_frames(3, seed=1)
    structures.append(structures[0][:20])  # another size in the same batch
    result = model.evaluator(batch_size=4).evaluate(structures, stress=True)
    # An independent calculator on the same weights, one structure at a time.
    calculator = CHGNetCalculator(model=model.calculator.model, use_device="cpu")
    # CHGNet computes in float32: a batch sums in another order than one structure alone, and
    # forces then differ by float32 round-off (9e-5 eV/A measured on the CI machine, 1e-6 here).
    # A wrong atom-to-structure assignment or unit would show as errors of 1e-2 or more.
    for k, atoms in enumerate(structures):
        atoms = atoms.copy()
        atoms.calc = calculator
        np.testing.assert_allclose(result.forces[k], atoms.get_forces(), atol=3e-4, rtol=0)
        np.testing.assert_allclose(result.energies[k], atoms.get_potential_energy(), atol=2e-4 * len(atoms), rtol=0)
        np.testing.assert_allclose(result.stresses[k], atoms.get_stress(voigt=False), atol=1e-6, rtol=0)


# ---- ASE calculators in the stages ----------------------------------------------------------------


def test_unknown_element_fails_before_any_compute_naming_compound_and_element(tmp_path):
    from hdpbench.pipeline.stages import run_stage

    restricted = CalculatorModel(name="lj-no-bi", calculator=LennardJones(), device="cpu", dtype="float64", atomic_numbers=[11, 17, 35, 47, 49, 55])
    with pytest.raises(UnknownElementError, match=r"Cs2AgBiBr6 contains \['Bi'\], which model lj-no-bi"):
        run_stage("phonons", "demo", restricted, compounds=["Cs2NaInCl6", "Cs2AgBiBr6"], results_root=tmp_path)
    assert not any(tmp_path.rglob("*.json"))  # nothing computed, not even the compound the model knows


def test_an_ase_calculator_object_runs_the_phonon_stage(tmp_path):
    from hdpbench.pipeline.stages import run_stage

    stage = run_stage("phonons", "demo", LennardJones(sigma=2.6, epsilon=0.01, rc=6.0), compounds=["Cs2NaInCl6"], results_root=tmp_path, progress=False)
    row = stage.load_json("Cs2NaInCl6")
    assert np.isfinite(row["rmse_omega2_thz2"]) and row["n_bands"] == 30
    assert stage.manifest.model == "LennardJones" and stage.manifest.model_sha256.startswith("calculator:")


# ---- Φ_model of a supercell and the real-data commands ----------------------------------------------


def test_force_constants_of_the_supercell_itself_equal_those_from_the_unit_cell(fixtures):
    """model_sigma takes Φ_model from displacements of the reference supercell (matrix 1): the same Φ
    as phonopy's unit cell x 2x2x2 route, for a smooth model (Lennard-Jones) on real NaCl."""
    from hdpbench.core.structures import from_phonopy_atoms, read_poscar
    from hdpbench.physics.phonons import model_force_constants

    unitcell = read_poscar(fixtures / "phonopy" / "NaCl" / "POSCAR-unitcell")
    calculator = LennardJones(sigma=2.8, epsilon=0.05, rc=5.5, smooth=True)
    from_unitcell = model_force_constants(unitcell, calculator, supercell_matrix=(2, 2, 2))
    supercell = from_phonopy_atoms(from_unitcell.supercell)
    from_supercell = model_force_constants(supercell, calculator, supercell_matrix=(1, 1, 1))
    scale = np.abs(from_unitcell.force_constants).max()
    np.testing.assert_allclose(from_supercell.force_constants, from_unitcell.force_constants, atol=1e-6 * scale)


# sevennet-0 runs in its own environment (kind: isolated): the first use builds it (~3 min, ~1.5 GB)
REAL_CLI_MODELS = ["chgnet-0.3.0", pytest.param("sevennet-0", marks=pytest.mark.slow)]


@pytest.mark.fixtures
@pytest.mark.parametrize("model", REAL_CLI_MODELS)
def test_sigma_cli_with_a_registry_model_on_real_fhi_vibes_data(fixtures, capsys, model):
    trajectory = fixtures / "fhi-vibes" / "CsPbI3_aims_pbesol_700K_trajectory.nc"
    code, out, _ = run_cli(capsys, "sigma", str(trajectory), "--model", model, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["model"] == model
    for key in ("sigma_model_phi_reference", "sigma_model_phi_model", "force_mae_ev_ang", "force_rmse_ev_ang"):
        assert np.isfinite(result[key])
    assert set(result["sigma_per_species_model_phi_model"]) == {"Cs", "Pb", "I"}
    assert len(result["sigma_per_frame_model_phi_reference"]) == 9
    assert 0 < result["force_mae_ev_ang"] < result["force_rmse_ev_ang"] < 1.0  # a real model, not noise
    assert abs(result["sigma_pooled"] - 0.6594) < 1e-3  # the DFT σ is unchanged by --model


@pytest.mark.fixtures
@pytest.mark.parametrize("model", REAL_CLI_MODELS)
def test_phonons_compare_cli_with_a_registry_model_on_real_vasp_data(fixtures, capsys, model):
    nacl = fixtures / "phonopy" / "NaCl"
    code, out, _ = run_cli(
        capsys, "phonons", "compare", "--unitcell", str(nacl / "POSCAR-unitcell"), "--reference", str(nacl / "FORCE_SETS"),
        "--model", model, "--json",
    )
    assert code == 0
    metrics = json.loads(out)
    assert metrics["model"] == model and metrics["n_bands"] == 24
    assert metrics["stable_reference"] and np.isfinite(metrics["rmse_omega2_thz2"]) and metrics["mae_freq_thz"] > 0
    # the same file as reference and model gives zero error: the keys compare like with like
    code, out, _ = run_cli(
        capsys, "phonons", "compare", "--unitcell", str(nacl / "POSCAR-unitcell"), "--reference", str(nacl / "FORCE_SETS"),
        "--model", str(nacl / "FORCE_SETS"), "--json",
    )
    assert json.loads(out)["rmse_omega2_thz2"] == 0.0


# ---- the real reference data copied into the project ---------------------------------------------


def test_external_copies_match_their_provenance_and_the_fixtures(fixtures):
    from hdpbench.core.storage import sha256_file

    for provenance in EXTERNAL.glob("*/provenance.json"):
        record = json.loads(provenance.read_text())
        assert (provenance.parent / "LICENSE").is_file()
        for name, entry in record["files"].items():
            copy = provenance.parent / name
            assert sha256_file(copy) == entry["sha256"]
            assert copy.read_bytes() == (fixtures / provenance.parent.name / name).read_bytes()
    committed = {p.relative_to(EXTERNAL).as_posix() for p in EXTERNAL.rglob("*") if p.is_file()}
    declared = {f"{p.parent.name}/{n}" for p in EXTERNAL.glob("*/provenance.json") for n in json.loads(p.read_text())["files"]}
    extras = {f"{p.parent.name}/{n}" for p in EXTERNAL.glob("*/provenance.json") for n in ("LICENSE", "provenance.json")}
    assert committed == declared | extras  # these files and only these


def test_reference_systems_load_and_reproduce_fhi_vibes_sigma():
    from hdpbench.data.datasets import get_dataset
    from hdpbench.physics.anharmonicity import sigma

    systems = get_dataset("external")
    assert systems.systems() == ["CsPbI3", "NaCl", "CaTiO3", "KCl"]
    cspbi3 = systems.load("CsPbI3")
    assert len(cspbi3.unitcell) == 5 and cspbi3.force_constants.shape == (135, 135, 3, 3)
    # Φ reordered to phonopy's supercell order: σ is unchanged and equals FHI-vibes' own value
    result = sigma(cspbi3.trajectory, cspbi3.reference_supercell, cspbi3.force_constants)
    assert result.sigma_pooled == pytest.approx(cspbi3.extra["sigma_fhi_vibes"], abs=1e-12)
    kcl = systems.load("KCl")
    assert len(kcl.trajectory) == 120 and kcl.force_constants.shape == (64, 64, 3, 3)


def test_bench_calculator_reports_ratio_and_force_difference_in_one_run(capsys):
    code, out, _ = run_cli(capsys, "bench", "calculator", "--model", "chgnet-0.3.0", "--quick", "--json")
    report = json.loads(out)
    assert code == 0 and report["frames"] == 8 and report["atoms_per_frame"] == 80
    assert {"ase_frames_per_s", "batched_frames_per_s", "ratio_batched_vs_ase", "hardware"} <= set(report)
    assert report["max_abs_force_diff"] <= 1e-5  # the same numbers either way
    assert run_cli(capsys, "bench", "calculator", "--model", "demo-small-data", "--quick")[0] == 2  # a MACE model has no calculator path here


def test_reference_system_whose_files_do_not_hold_the_declared_formula_is_refused():
    from hdpbench.data.datasets import get_dataset

    systems = get_dataset("external")
    systems.declared["NaCl"] = {**systems.declared["NaCl"], "formula": "KCl"}
    with pytest.raises(DataError, match="declared as KCl, its files hold"):
        systems.load("NaCl")
    assert systems.formula("CsPbI3") == "CsPbI3"  # what the stages check elements against, no file read
