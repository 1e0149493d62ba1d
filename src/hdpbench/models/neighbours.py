"""Periodic neighbour lists from position tensors, on the tensors' own device (CPU or GPU).

The batched MD keeps its state in torch tensors; building mace-torch graphs from ASE ``Atoms`` every
step would copy everything to the CPU and back. :func:`neighbour_list` finds the same edges as
mace-torch's ``get_neighborhood`` (matscipy): every pair (sender i, receiver j, integer cell shift S)
with |x_j - x_i + S·cell| < cutoff, except an atom with itself in its own cell, in the convention
``vector = x[receiver] - x[sender] + S @ cell``.

Method: positions are wrapped into the cell (the wrap is folded back into S, so unwrapped MD
positions give the same vectors), and all atom pairs of a structure are tested against the periodic
images within reach of the cutoff. That is O(n_atoms² x images) per structure: for the 40–160-atom
supercells of this benchmark it is a few tensor operations, cheaper than a cell list; structures of
the same size are processed together. Use a cell-list library (vesin, matscipy) for large cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hdpbench.core.torch_setup import prepare_torch

torch = prepare_torch()


@dataclass
class Edges:
    """Edges of a batch of structures, atoms indexed across the batch."""

    sender: torch.Tensor  # (E,) int64
    receiver: torch.Tensor  # (E,) int64
    unit_shifts: torch.Tensor  # (E, 3) int64: image of the receiver, in cell vectors
    shifts: torch.Tensor  # (E, 3) Å, unit_shifts @ cell of the structure (positions' dtype)


def image_range(cells: torch.Tensor, cutoff: float, pbc: tuple[bool, bool, bool]) -> list[int]:
    """How many cell images along each vector a sphere of radius ``cutoff`` can reach (0 if not
    periodic) in the thinnest of ``cells`` ((G, 3, 3) or (3, 3), rows are cell vectors): the distance
    between lattice planes is volume / |a_k+1 x a_k+2|. One batched computation and one copy to the
    host for all cells (on a GPU a loop over cells would wait for the device once per cell)."""
    cells = cells.reshape(-1, 3, 3)
    volume = torch.abs(torch.linalg.det(cells))
    areas = torch.stack([torch.linalg.norm(torch.linalg.cross(cells[:, (k + 1) % 3], cells[:, (k + 2) % 3]), dim=-1) for k in range(3)], dim=1)
    thinnest = (volume[:, None] / areas).min(dim=0).values.tolist()
    return [int(math.ceil(cutoff / height)) if periodic else 0 for height, periodic in zip(thinnest, pbc, strict=True)]


def neighbour_list(
    positions: torch.Tensor,
    cells: torch.Tensor,
    structure_of_atom: torch.Tensor,
    cutoff: float,
    pbc: tuple[bool, bool, bool] = (True, True, True),
) -> Edges:
    """Edges within ``cutoff`` (Å) of every structure of a batch.

    ``positions``: (N, 3) Å, atoms of all structures, each structure's atoms contiguous;
    ``cells``: (S, 3, 3) Å, rows are cell vectors; ``structure_of_atom``: (N,) int64, non-decreasing.
    Returns edges sorted by sender, then receiver, then image.
    """
    device = positions.device
    counts = torch.bincount(structure_of_atom, minlength=len(cells)).tolist()
    offsets = [0]
    for count in counts:
        offsets.append(offsets[-1] + count)
    by_size: dict[int, list[int]] = {}
    for s, count in enumerate(counts):
        if count:
            by_size.setdefault(count, []).append(s)
    parts = []
    for n, members in by_size.items():
        index = torch.tensor(members, device=device)
        starts = torch.tensor([offsets[s] for s in members], device=device)
        atoms = (starts[:, None] + torch.arange(n, device=device)).reshape(-1)
        parts.append(_same_size(positions[atoms].reshape(len(members), n, 3), cells[index], starts, cutoff, pbc))
    if not parts:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return Edges(empty, empty, torch.zeros((0, 3), dtype=torch.int64, device=device), torch.zeros((0, 3), dtype=positions.dtype, device=device))
    sender, receiver, unit_shifts, shifts = (torch.cat(items) for items in zip(*parts, strict=True))
    order = torch.argsort(sender * (len(positions) + 1) + receiver, stable=True)
    return Edges(sender[order], receiver[order], unit_shifts[order], shifts[order])


def _same_size(positions, cells, starts, cutoff: float, pbc):
    """Edges of G structures of n atoms each: positions (G, n, 3), cells (G, 3, 3), first atom indices (G,)."""
    groups, n, _ = positions.shape
    device, dtype = positions.device, positions.dtype
    fractional = torch.linalg.solve(cells.transpose(1, 2), positions.transpose(1, 2)).transpose(1, 2)  # x = f @ cell
    periodic = torch.tensor(pbc, device=device)
    wrap = torch.where(periodic, torch.floor(fractional), torch.zeros_like(fractional))  # (G, n, 3)
    wrapped = positions - torch.bmm(wrap, cells)
    reach = image_range(cells, cutoff, pbc)
    axes = [torch.arange(-r, r + 1, device=device, dtype=dtype) for r in reach]
    images = torch.cartesian_prod(*axes).reshape(-1, 3)  # (K, 3)
    image_vectors = torch.einsum("kc,gcd->gkd", images, cells)  # (G, K, 3)
    difference = wrapped[:, None, :, :] - wrapped[:, :, None, :]  # (G, i, j, 3): x_j - x_i
    # |d + s|² = |d|² + 2 d·s + |s|² for every image s: one matrix product, candidates with a margin,
    # then the exact vectors of the candidates decide.
    squared = (
        (difference**2).sum(-1)[..., None]
        + 2 * torch.einsum("gijc,gkc->gijk", difference, image_vectors)
        + (image_vectors**2).sum(-1)[:, None, None, :]
    )
    g, i, j, k = torch.nonzero(squared < (cutoff + 1e-6) ** 2, as_tuple=True)
    vectors = difference[g, i, j] + image_vectors[g, k]
    zero_image = (images == 0).all(dim=1)
    keep = ((vectors**2).sum(-1) < cutoff**2) & ~((i == j) & zero_image[k])
    g, i, j, k = g[keep], i[keep], j[keep], k[keep]
    unit_shifts = (images[k] - wrap[g, j] + wrap[g, i]).round().to(torch.int64)
    shifts = torch.bmm(unit_shifts.to(dtype)[:, None, :], cells[g])[:, 0]
    return starts[g] + i, starts[g] + j, unit_shifts, shifts
