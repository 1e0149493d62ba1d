"""Build MACE models from a few sizes (random weights), for tests, timing benchmarks and demo training configs.

Nothing here is a trained potential: ``build_mace`` gives a correctly shaped ScaleShiftMACE whose
weights come from a seed, which is what equality tests and throughput measurements need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hdpbench.core.torch_setup import import_mace, prepare_torch


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
    )
    return model.to(getattr(torch, dtype))


def save_model(model, path: str | Path) -> Path:
    """Save as a mace-torch ``.model`` file (a pickled module, as MACECalculator and mace_mp load it)."""
    torch = prepare_torch()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model, path)
    return path
