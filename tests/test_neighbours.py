"""Tensor neighbour lists: the same edges as mace-torch's get_neighborhood (matscipy)."""

from __future__ import annotations

import numpy as np
from ase.build import bulk

from hdpbench.pipeline.benchmarking import hdp_frames


def edge_set(sender, receiver, unit_shifts):
    return sorted(zip(np.asarray(sender).tolist(), np.asarray(receiver).tolist(), map(tuple, np.asarray(unit_shifts).tolist()), strict=True))


def test_tensor_neighbour_list_equals_mace_get_neighborhood():
    import torch
    from mace.data.neighborhood import get_neighborhood

    from hdpbench.models.neighbours import neighbour_list

    frames = hdp_frames(3)
    frames[0].positions[3] += [30.0, -12.0, 5.0]  # unwrapped MD positions far outside the cell
    small = bulk("NaCl", "rocksalt", a=5.6).repeat((2, 1, 1))  # non-orthogonal cell, several images in reach
    small.rattle(0.1, seed=1)
    small.positions += 7.3
    frames.append(small)
    cutoff = 5.0
    positions = torch.as_tensor(np.concatenate([a.positions for a in frames]))
    cells = torch.as_tensor(np.stack([np.asarray(a.cell[:]) for a in frames]))
    structure = torch.as_tensor(np.repeat(np.arange(len(frames)), [len(a) for a in frames]))
    edges = neighbour_list(positions, cells, structure, cutoff)
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in frames])])
    expected = []
    for k, atoms in enumerate(frames):
        edge_index, _, unit_shifts, _ = get_neighborhood(atoms.positions, cutoff, pbc=(True, True, True), cell=np.asarray(atoms.cell[:]))
        expected += edge_set(edge_index[0] + offsets[k], edge_index[1] + offsets[k], unit_shifts)
    assert len(expected) > 1000
    assert edge_set(edges.sender, edges.receiver, edges.unit_shifts) == sorted(expected)
    vectors = positions[edges.receiver] - positions[edges.sender] + edges.shifts
    assert float(vectors.norm(dim=1).max()) < cutoff
    assert not bool(((edges.sender == edges.receiver) & (edges.unit_shifts == 0).all(dim=1)).any())  # no self edge in its own cell


def test_image_range_of_a_batch_is_that_of_its_thinnest_cell():
    import torch

    from hdpbench.models.neighbours import image_range

    cubic = torch.eye(3, dtype=torch.float64) * 4.0  # planes 4 Å apart: a 5 Å sphere reaches 2 images
    slab = torch.diag(torch.tensor([11.0, 11.0, 2.4], dtype=torch.float64))
    fcc = torch.as_tensor(np.asarray(bulk("Cu", "fcc", a=3.6).cell[:]))  # planes a/sqrt(3) = 2.08 Å apart
    assert image_range(cubic, 5.0, (True, True, True)) == [2, 2, 2]
    assert image_range(slab, 5.0, (True, True, False)) == [1, 1, 0]
    assert image_range(fcc, 5.0, (True, True, True)) == [3, 3, 3]
    assert image_range(torch.stack([cubic, slab]), 5.0, (True, True, True)) == [2, 2, 3]
