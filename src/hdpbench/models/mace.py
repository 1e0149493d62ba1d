"""MACE modules: built from a few sizes (random weights) for tests, timing benchmarks and demo
training configs, and converted to another tensor-product backend (:func:`accelerate`).

Nothing built here is a trained potential: ``build_mace`` gives a correctly shaped ScaleShiftMACE whose
weights come from a seed, which is what equality tests and throughput measurements need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hdpbench.core.errors import HdpbenchError
from hdpbench.core.torch_setup import import_mace, prepare_torch

# Tensor-product backends of a MACE module: e3nn (as trained and saved) or NVIDIA cuEquivariance.
ACCELERATORS = ("e3nn", "cueq")


def build_mace(
    atomic_numbers: list[int],
    *,
    channels: int = 16,
    max_L: int = 1,
    num_interactions: int = 2,
    correlation: int = 3,
    r_max: float = 6.0,
    max_ell: int = 3,
    num_bessel: int = 8,
    avg_num_neighbors: float = 30.0,
    seed: int = 0,
    dtype: str = "float64",
):
    """A ScaleShiftMACE with ``channels`` x (0e, 1o, ... up to L) hidden irreps and seeded random weights."""
    torch = prepare_torch()
    import_mace()
    from e3nn import o3
    from mace import modules

    torch.manual_seed(seed)
    parities = ["e", "o"]
    hidden = "+".join(f"{channels}x{ell}{parities[ell % 2]}" for ell in range(max_L + 1))
    z = sorted(set(int(n) for n in atomic_numbers))
    rng = np.random.default_rng(seed)
    interaction = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    model = modules.ScaleShiftMACE(
        r_max=r_max,
        num_bessel=num_bessel,
        num_polynomial_cutoff=5,
        max_ell=max_ell,
        interaction_cls=interaction,
        interaction_cls_first=interaction,
        num_interactions=num_interactions,
        num_elements=len(z),
        hidden_irreps=o3.Irreps(hidden),
        MLP_irreps=o3.Irreps("16x0e"),
        gate=torch.nn.functional.silu,
        atomic_energies=rng.uniform(-5.0, -1.0, len(z)),
        avg_num_neighbors=avg_num_neighbors,
        atomic_numbers=z,
        correlation=correlation,
        atomic_inter_scale=1.0,
        atomic_inter_shift=0.0,
        # mace-torch switches to a reduced Clebsch-Gordan basis whenever cuEquivariance is installed:
        # pin the full basis (that of the trained checkpoints) so the same seed builds the same model
        # whatever is installed
        use_reduced_cg=False,
    )
    return model.to(getattr(torch, dtype))


def save_model(model, path: str | Path) -> Path:
    """Save as a mace-torch ``.model`` file (a pickled module, as MACECalculator and mace_mp load it)."""
    torch = prepare_torch()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model, path)
    return path


def accelerate(module, accelerator: str, device: str):
    """``module`` with its tensor products, linear layers and symmetric contractions on ``accelerator``.

    ``"e3nn"`` returns the module unchanged. ``"cueq"`` rebuilds it with cuEquivariance
    (``mace.cli.convert_e3nn_cueq``, the conversion mace-torch's ``MACECalculator(enable_cueq=True)``
    uses, with the fused convolution on CUDA); the same weights, equal forces within the dtype's
    rounding (tested on CPU, where cuEquivariance runs its PyTorch fallback: slower than e3nn there,
    measured by ``hdpbench bench evaluate``; its CUDA kernels come with ``cuequivariance-ops-torch-cu12``).
    The module must already be in its final dtype.
    """
    from hdpbench.core.validation import require_choice

    require_choice("accelerator", accelerator, ACCELERATORS)
    if accelerator == "e3nn":
        return module
    try:
        import cuequivariance_torch  # noqa: F401
    except ImportError as error:
        raise HdpbenchError(
            "accelerator 'cueq' needs cuEquivariance: pip install cuequivariance-torch "
            "(and cuequivariance-ops-torch-cu12 for its CUDA kernels)"
        ) from error
    torch = prepare_torch()
    import_mace()
    from mace.cli.convert_e3nn_cueq import run as convert_to_cueq

    default_dtype = torch.get_default_dtype()
    try:  # the converter sets torch's default dtype to the module's for the process: put it back
        # "cuda", not "cuda:1": the converter turns the fused convolution on for exactly "cuda"
        converted = convert_to_cueq(module, device="cuda" if str(device).startswith("cuda") else "cpu", return_model=True)
    finally:
        torch.set_default_dtype(default_dtype)
    converted = converted.to(device).eval()
    for parameter in converted.parameters():
        parameter.requires_grad_(False)
    return converted


def compile_mace(module, device: str):
    """``module`` compiled with ``torch.compile`` the way mace-torch's ``MACECalculator(compile_mode=
    "default")`` does: rebuilt from its configuration with e3nn's generated code left as Python
    (``mace.tools.compile.prepare``), the same weights, dynamic shapes (the edge count changes every
    MD step). Call it with ``training=True`` and positions that require grad (dynamo traces the force
    gradient only then; :meth:`hdpbench.models.evaluate.LoadedModel.forward` does both).

    Measured on the 2-core CPU (``demo-small-data``, 4 x 80 atoms, float32): the first call compiles
    for ~120 s, later calls took 0.19–0.29 s (settling at 0.19) against 0.10–0.14 s uncompiled; forces within 7e-6 eV/Å.
    So it is off by default; it is there for GPUs, where it is not measured yet.
    """
    torch = prepare_torch()
    import_mace()
    from mace.tools.compile import prepare
    from mace.tools.scripts_utils import extract_model

    dtype = next(module.parameters()).dtype
    default_dtype = torch.get_default_dtype()
    try:  # the rebuilt model's parameters take the default dtype before the weights are copied in
        torch.set_default_dtype(dtype)
        rebuilt = prepare(extract_model)(model=module, map_location=device)
    finally:
        torch.set_default_dtype(default_dtype)
    rebuilt = rebuilt.to(device=device, dtype=dtype).eval()
    for parameter in rebuilt.parameters():
        parameter.requires_grad_(False)
    return torch.compile(rebuilt, mode="default", dynamic=True)
