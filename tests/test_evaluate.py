"""The batched evaluator equals mace-torch's MACECalculator, structure by structure."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from hdpbench.core.structures import double_perovskite
from hdpbench.models.evaluate import BatchedEvaluator, UnknownElementError, evaluate, load_model
from hdpbench.models.mace import build_mace, save_model

ELEMENTS = [55, 47, 83, 35, 11, 49, 17, 37, 28, 9]  # Cs Ag Bi Br Na In Cl Rb Ni F


def mixed_structures(seed: int = 0):
    """Different compounds and sizes, rattled, in one list."""
    rng = np.random.default_rng(seed)
    structures = [
        double_perovskite("Cs", "Ag", "Bi", "Br", 11.25, 0.245),
        double_perovskite("Cs", "Na", "In", "Cl", 10.5, 0.25).repeat((2, 1, 1)),
        double_perovskite("Rb", "Ni", "Ag", "F", 8.6, 0.24),
        bulk("NaCl", "rocksalt", a=5.64, cubic=True),
        double_perovskite("Cs", "Ag", "Bi", "Br", 11.0, 0.25).repeat((1, 2, 1)),
    ]
    for atoms in structures:
        atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
    return structures


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory):
    model = build_mace(ELEMENTS, channels=8, max_L=1, r_max=5.0, seed=3, dtype="float64")
    return save_model(model, tmp_path_factory.mktemp("models") / "tiny.model")


@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-6), ("float32", 1e-3)])
@pytest.mark.parametrize("batch_size", [1, 3, "auto"])
def test_batched_equals_mace_calculator(tiny_model_file, dtype, tolerance, batch_size):
    from mace.calculators import MACECalculator

    structures = mixed_structures()
    calculator = MACECalculator(model_paths=str(tiny_model_file), device="cpu", default_dtype=dtype)
    expected_forces, expected_energies, expected_stress = [], [], []
    for atoms in structures:
        atoms = atoms.copy()
        atoms.calc = calculator
        expected_forces.append(atoms.get_forces())
        expected_energies.append(atoms.get_potential_energy())
        expected_stress.append(atoms.get_stress(voigt=False))
    model = load_model(str(tiny_model_file), dtype=dtype)
    result = BatchedEvaluator(model, batch_size=batch_size, progress=False).evaluate(structures, stress=True)
    assert len(result.forces) == len(structures)
    for k, forces in enumerate(result.forces):
        assert forces.shape == expected_forces[k].shape
        assert np.abs(forces - expected_forces[k]).max() <= tolerance
    np.testing.assert_allclose(result.energies, expected_energies, rtol=0, atol=tolerance * 10)
    np.testing.assert_allclose(result.stresses, expected_stress, rtol=0, atol=tolerance)
    assert np.abs(np.concatenate(result.forces)).max() > 1e-3  # a non-trivial model


def test_batches_do_not_leak_between_structures(tiny_model_file):
    """A structure's forces do not depend on what else is in its batch."""
    structures = mixed_structures()
    model = load_model(str(tiny_model_file), dtype="float64")
    together = BatchedEvaluator(model, batch_size=5, progress=False).evaluate(structures)
    reversed_order = BatchedEvaluator(model, batch_size=5, progress=False).evaluate(structures[::-1])
    for a, b in zip(together.forces, reversed_order.forces[::-1], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_unknown_element_is_refused_before_compute(tiny_model_file):
    model = load_model(str(tiny_model_file))
    structures = mixed_structures() + [bulk("Si", "diamond", a=5.43)]
    evaluator = BatchedEvaluator(model, batch_size=2, progress=False)
    with pytest.raises(UnknownElementError, match=r"structure 5 \(Si2\) contains \['Si'\]"):
        evaluator.evaluate(structures)
    assert evaluator.timings["model_s"] == 0.0


def test_auto_batch_size_is_cached(tiny_model_file, monkeypatch):
    model = load_model(str(tiny_model_file))
    structures = [double_perovskite("Cs", "Ag", "Bi", "Br", 11.25, 0.25)] * 8
    first = BatchedEvaluator(model, batch_size="auto", progress=False)
    chosen = first.evaluate(structures).batch_size
    second = BatchedEvaluator(model, batch_size="auto", progress=False)
    probed = []
    monkeypatch.setattr(second, "_candidate_sizes", lambda *a: probed.append(a) or [1])
    assert second.evaluate(structures).batch_size == chosen and not probed


def test_out_of_memory_halves_the_batch_and_retries(tiny_model_file, monkeypatch):
    model = load_model(str(tiny_model_file), dtype="float64")
    structures = mixed_structures()
    evaluator = BatchedEvaluator(model, batch_size=4, progress=False)
    real_forward = evaluator._forward

    def forward(graphs, stress):
        if len(graphs) > 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(graphs, stress)

    monkeypatch.setattr(evaluator, "_forward", forward)
    result = evaluator.evaluate(structures)
    assert result.batch_size == 1 and evaluator.oom_halvings == 2
    reference = BatchedEvaluator(model, batch_size=1, progress=False).evaluate(structures)
    for a, b in zip(result.forces, reference.forces, strict=True):
        np.testing.assert_array_equal(a, b)


def test_any_ase_calculator_is_the_slow_path():
    from ase.calculators.lj import LennardJones

    structures = mixed_structures()
    result = evaluate(LennardJones(sigma=3.0, rc=6.0), structures)
    atoms = structures[2].copy()
    atoms.calc = LennardJones(sigma=3.0, rc=6.0)
    np.testing.assert_array_equal(result.forces[2], atoms.get_forces())


# ---- tensor-product backends ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-7), ("float32", 2e-6)])
def test_the_cueq_accelerator_gives_the_e3nn_forces_energies_and_stresses(dtype, tolerance):
    """cuEquivariance's rebuilt module (its PyTorch fallback here) against the e3nn module it came from,
    on a trained demo model. float64 agrees to ~2e-8 eV/Å only (measured): cuEquivariance's own
    coefficients, not the dtype, bound it, hence 1e-7."""
    pytest.importorskip("cuequivariance_torch", reason="the cueq extra (pip install cuequivariance-torch)")
    import torch

    structures = mixed_structures()[:3]
    default_dtype = torch.get_default_dtype()
    plain = load_model("demo-small-data", dtype=dtype, accelerator="e3nn")
    accelerated = load_model("demo-small-data", dtype=dtype, accelerator="cueq")
    assert torch.get_default_dtype() == default_dtype  # the converter's global change is undone
    assert (plain.accelerator, accelerated.accelerator) == ("e3nn", "cueq")
    assert type(accelerated.module.interactions[0].conv_tp).__module__.startswith("cuequivariance_torch")
    a = plain.evaluator(batch_size=3, progress=False).evaluate(structures, stress=True)
    b = accelerated.evaluator(batch_size=3, progress=False).evaluate(structures, stress=True)
    for fa, fb in zip(a.forces, b.forces, strict=True):
        np.testing.assert_allclose(fb, fa, rtol=0, atol=tolerance)
    np.testing.assert_allclose(b.energies, a.energies, rtol=0, atol=50 * tolerance)
    np.testing.assert_allclose(b.stresses, a.stresses, rtol=0, atol=tolerance)
    assert max(np.abs(f).max() for f in a.forces) > 0.1  # the comparison is not between zeros


def test_accelerator_choices_are_checked(monkeypatch):
    from hdpbench.core.errors import HdpbenchError
    from hdpbench.models.evaluate import default_accelerator

    with pytest.raises(HdpbenchError, match="accelerator=.triton."):
        load_model("demo-small-data", accelerator="triton")
    with pytest.raises(HdpbenchError, match="chgnet-0.3.0 \\(kind: ase\\).*MACE models only"):
        load_model("chgnet-0.3.0", accelerator="cueq")
    monkeypatch.setenv("HDPBENCH_ACCELERATOR", "cuda")
    with pytest.raises(HdpbenchError, match="HDPBENCH_ACCELERATOR='cuda'"):
        default_accelerator()
    monkeypatch.setenv("HDPBENCH_ACCELERATOR", "e3nn")
    assert load_model("demo-small-data").accelerator == "e3nn"


def test_torch_compile_gives_the_plain_forces(tiny_model_file, monkeypatch):
    """``torch_compile=True`` (mace-torch's rebuilt module under torch.compile): the evaluator's forces
    and the MD's tensor path equal the plain module's within float64 rounding; the switch also comes
    from ``HDPBENCH_TORCH_COMPILE``, and refuses the cueq backend. Forces only: each other output
    (stress) is one more compilation, over a minute on 2 cores."""
    import torch

    from hdpbench.core.errors import HdpbenchError
    from hdpbench.models.evaluate import ReplicaForces

    structures = mixed_structures()[:3]
    plain = load_model(str(tiny_model_file), dtype="float64", torch_compile=False)
    monkeypatch.setenv("HDPBENCH_TORCH_COMPILE", "1")
    compiled = load_model(str(tiny_model_file), dtype="float64")
    assert (plain.compiled, compiled.compiled) == (False, True) and hasattr(compiled.module, "_orig_mod")
    a = plain.evaluator(batch_size=3, progress=False).evaluate(structures)
    b = compiled.evaluator(batch_size=3, progress=False).evaluate(structures)
    for fa, fb in zip(a.forces, b.forces, strict=True):
        np.testing.assert_allclose(fb, fa, rtol=0, atol=1e-10)
    assert max(np.abs(f).max() for f in a.forces) > 0.01  # the comparison is not between zeros
    positions = torch.as_tensor(np.concatenate([atoms.positions for atoms in structures]))
    np.testing.assert_allclose(ReplicaForces(compiled, structures)(positions), ReplicaForces(plain, structures)(positions), rtol=0, atol=1e-10)
    with pytest.raises(HdpbenchError, match="torch_compile applies to the e3nn backend"):
        load_model(str(tiny_model_file), accelerator="cueq")
    monkeypatch.setenv("HDPBENCH_TORCH_COMPILE", "yes")
    with pytest.raises(HdpbenchError, match="HDPBENCH_TORCH_COMPILE='yes': expected 0 or 1"):
        load_model(str(tiny_model_file))
