"""Batched NVT molecular dynamics with an Andersen thermostat: many replicas, one force call per step.

The integrator reproduces ``ase.md.andersen.Andersen`` (which the authors ran) step for step:
velocity Verlet; after the first half-kick every Cartesian velocity component is replaced, with
probability p, by a Maxwell–Boltzmann draw at T; with ``fix_com`` (ASE's default) a random
centre-of-mass velocity is added before the kick, the centre-of-mass velocity is removed before the
drift and after the second kick, and the centre of mass is kept in place. Random numbers are drawn
from one ``numpy.random.Generator`` per replica in exactly ASE's order, so a replica fed the same
generator as ASE's ``Andersen`` follows the same trajectory, and every run is reproducible from its
seed. State lives in torch tensors (float64) on the model's device; replicas of different compounds
and sizes advance together, their forces evaluated in one batched call per step. For MACE models the
forces come from position tensors directly (graphs and neighbour lists built on the device, no ASE
``Atoms`` per step); other models (``kind: ase``) get ``Atoms`` built from the state each step.

A replica whose temperature exceeds ``max_temperature_factor`` x T, or whose largest force exceeds
``max_force``, or that produces non-finite numbers, is stopped and the reason recorded; the others
continue. Frames are written every ``write_every`` steps to one extxyz file per replica (with forces).

Crash safety: every ``checkpoint_every`` steps (and at the end) the trajectory files are fsynced and
then a checkpoint is written atomically holding the state (positions, velocities, forces, random
generator states, per-step temperatures) *and the byte length of every trajectory file*. A resumed
run truncates each file to that length (frames written after the last checkpoint, or half-written
when the run was killed, go) and continues from the saved state; a run killed before its first
checkpoint starts afresh. Because the state and the random draws are restored exactly and the force
call gives the same bits in every process (:mod:`hdpbench.core.torch_setup`), the resumed run writes the
same bytes an uninterrupted one does (tested by killing real runs, ``tests/test_faults.py``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units

from hdpbench.core.torch_setup import prepare_torch
from hdpbench.io.trajectories import ExtxyzFrameText

ForceFunction = Callable[[list[Atoms]], list[np.ndarray]]


class ModelForces:
    """Forces of any model :func:`hdpbench.models.evaluate.load_model` takes (a registry name of any kind, a
    checkpoint, a loaded model, an ASE calculator).

    Called with a list of ``Atoms`` it goes through the model's own evaluator (any kind). For MACE
    models :meth:`on_replicas` also gives the device-resident path the MD uses: position tensors in,
    force tensors out, graphs built on the model's device (:class:`hdpbench.models.evaluate.ReplicaForces`).
    """

    def __init__(
        self, model, *, device: str = "cpu", dtype: str = "float32", replicas_per_call: int | str | None = "auto",
        accelerator: str | None = None, torch_compile: bool | None = None,
    ):  # fmt: skip
        from hdpbench.models.evaluate import load_model

        self.model = load_model(model, device=device, dtype=dtype, accelerator=accelerator, torch_compile=torch_compile)
        self.device = self.model.device
        self.replicas_per_call = replicas_per_call
        self._evaluator = self.model.evaluator(batch_size="auto", progress=False)

    def __call__(self, structures: list[Atoms]) -> list[np.ndarray]:
        return self._evaluator.evaluate(structures).forces

    @property
    def identity(self) -> dict[str, Any]:
        """What a resumed MD run must have been computed with: the model's name, weights and dtype."""
        model = self.model
        return {"name": getattr(model, "name", None), "weights": getattr(model, "identity", None), "dtype": getattr(model, "dtype", None)}

    def on_replicas(self, structures: Sequence[Atoms]):
        """A tensor force function for these structures, or None for a model without the
        ``replica_forces`` capability (evaluated through ``__call__`` instead)."""
        from hdpbench.models.interface import Capability

        if Capability.REPLICA_FORCES not in self.model.capabilities:
            return None
        return self.model.replica_forces(structures, replicas_per_call=self.replicas_per_call)


def model_forces(
    model, *, device: str = "cpu", dtype: str = "float32", replicas_per_call: int | str | None = "auto", accelerator: str | None = None,
    torch_compile: bool | None = None,
) -> ModelForces:  # fmt: skip
    """:class:`ModelForces` of ``model`` (kept as the short name the stages and tests use)."""
    return ModelForces(model, device=device, dtype=dtype, replicas_per_call=replicas_per_call, accelerator=accelerator, torch_compile=torch_compile)


@dataclass(frozen=True)
class MDSettings:
    """Model-only Andersen NVT MD (paper §3.3; ASE ``Andersen`` semantics), one record for the
    integrator and for the ``md`` stage that starts it from the AIMD frames. The defaults are the
    authors' (``mace/mace_benchmarking.py``): 300 K, 1 fs, Andersen probability 0.5, 2 runs of 2000
    steps per compound, each from a random step 0–700 of ``vasprun_prod_2.xml`` (else ``_1``)."""

    temperature_K: float = 300.0
    timestep_fs: float = 1.0
    andersen_prob: float = 0.5
    steps: int = 2000
    runs_per_compound: int = 2  # the md stage: independent runs per compound
    start_frames: str = "md-start"  # the md stage: AIMD files the runs start from (io.authors.FrameSet)
    start_frame_max: int = 700  # the md stage: a random start step 0..700 of them (no step dropped)
    write_every: int = 1
    seed: int = 0
    fix_com: bool = True
    max_temperature_factor: float = 5.0  # a replica hotter than this × the temperature is stopped
    max_force: float = 50.0  # eV/Å; a replica with a larger force is stopped
    checkpoint_every: int = 20  # steps; frames after the last checkpoint are recomputed on resume
    dtype: str = "float32"

    def __post_init__(self):
        from hdpbench.core.validation import (
            require_choice,
            require_dtype,
            require_positive,
            require_positive_int,
            require_probability,
        )

        for name in ("steps", "start_frame_max", "seed"):
            require_positive_int(f"md setting {name}", getattr(self, name), allow_zero=True)
        for name in ("runs_per_compound", "write_every", "checkpoint_every"):
            require_positive_int(f"md setting {name}", getattr(self, name))
        for name in ("temperature_K", "timestep_fs", "max_temperature_factor", "max_force"):
            require_positive(f"md setting {name}", getattr(self, name))
        require_probability("md setting andersen_prob", self.andersen_prob)
        require_choice("md setting start_frames", self.start_frames, ("md-start", "paper", "all"))
        require_dtype("md setting dtype", self.dtype)


# MD settings a resumed run must share with its checkpoint (steps may grow; checkpoint_every changes no frame)
_RESUME_SETTINGS = ("temperature_K", "timestep_fs", "andersen_prob", "seed", "fix_com", "write_every", "max_temperature_factor", "max_force")


@dataclass
class ReplicaStatus:
    steps_done: int = 0
    stopped: str | None = None  # reason, when the blow-up guard stopped it
    temperatures: list[float] = field(default_factory=list)


class BatchedAndersen:
    """R replicas (any mix of structures) under Andersen NVT, advanced together."""

    def __init__(
        self,
        structures: Sequence[Atoms],
        force_function: ForceFunction,
        settings: MDSettings | None = None,
        *,
        rngs: Sequence[np.random.Generator] | None = None,
        device: str | None = None,
        output_dir: str | Path | None = None,
        resident: bool = True,
    ):
        torch = prepare_torch()
        self.torch = torch
        settings = settings or MDSettings()
        self.settings = settings
        self.force_function = force_function
        # The state lives where the model runs unless told otherwise (no copies per step).
        self.device = device or getattr(force_function, "device", None) or "cpu"
        device = self.device
        self.templates = [atoms.copy() for atoms in structures]
        self._frame_text = [ExtxyzFrameText(atoms) for atoms in self.templates]
        # Device-resident forces (tensor in, tensor out) where the force function offers them.
        on_replicas = getattr(force_function, "on_replicas", None) if resident else None
        self.replica_forces = on_replicas(self.templates) if on_replicas else None
        self.n_replicas = len(self.templates)
        self.rngs = list(rngs) if rngs is not None else [np.random.default_rng([settings.seed, r]) for r in range(self.n_replicas)]
        sizes = [len(a) for a in self.templates]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        as_tensor = lambda array: torch.as_tensor(np.asarray(array), dtype=torch.float64, device=device)  # noqa: E731
        self.replica = torch.as_tensor(np.repeat(np.arange(self.n_replicas), sizes), device=device)
        self.masses = as_tensor(np.concatenate([a.get_masses() for a in self.templates]))[:, None]
        self.positions = as_tensor(np.concatenate([a.positions for a in self.templates]))
        self.velocities = as_tensor(np.concatenate([a.get_velocities() for a in self.templates]))
        self.total_mass = torch.zeros(self.n_replicas, dtype=torch.float64, device=device).index_add_(0, self.replica, self.masses[:, 0])
        self._masses_host = np.concatenate([a.get_masses() for a in self.templates])[:, None]  # the draws are made on the host
        self._total_mass_host = self.total_mass.cpu().numpy()
        self.dt = settings.timestep_fs * units.fs
        self.kT = units.kB * settings.temperature_K
        self.forces = None
        self.status = [ReplicaStatus() for _ in range(self.n_replicas)]
        self.output_dir = Path(output_dir) if output_dir else None
        self.identity = self._run_identity()

    def _run_identity(self) -> dict[str, Any]:
        """Everything a checkpoint must share with this run to be resumed by it: the settings that change
        the trajectory, each replica's species, cell and periodicity, a digest of the starting state
        and of the random generators (seed), and the model (name, weights, dtype)."""
        import hashlib

        start = hashlib.sha256()
        for atoms in self.templates:
            for array in (atoms.positions, atoms.get_velocities(), atoms.get_masses()):
                start.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
        start.update(json.dumps([rng.bit_generator.state for rng in self.rngs], sort_keys=True, default=str).encode())
        settings = self.settings
        model = getattr(self.force_function, "identity", None)
        return {
            **{name: getattr(settings, name) for name in _RESUME_SETTINGS},
            "species": [atoms.get_chemical_formula() + ":" + ",".join(map(str, atoms.numbers)) for atoms in self.templates],
            "cells": [np.asarray(atoms.cell.array, dtype=float).round(10).tolist() for atoms in self.templates],
            "pbc": [[bool(x) for x in atoms.pbc] for atoms in self.templates],
            "starting_state": start.hexdigest()[:16],
            "model": model if isinstance(model, dict) else None,
        }

    # ---- helpers -----------------------------------------------------------------------------
    @property
    def active(self) -> list[int]:
        return [r for r, s in enumerate(self.status) if s.stopped is None]

    def _slice(self, r: int) -> slice:
        return slice(int(self.offsets[r]), int(self.offsets[r + 1]))

    def _per_replica_mean_velocity(self, velocities):
        momentum = self.torch.zeros(self.n_replicas, 3, dtype=self.torch.float64, device=self.device)
        momentum.index_add_(0, self.replica, self.masses * velocities)
        return (momentum / self.total_mass[:, None])[self.replica]

    def _centre_of_mass(self, positions):
        weighted = self.torch.zeros(self.n_replicas, 3, dtype=self.torch.float64, device=self.device)
        weighted.index_add_(0, self.replica, self.masses * positions)
        return weighted / self.total_mass[:, None]

    @staticmethod
    def _boltzmann(rng: np.random.Generator, width, size) -> np.ndarray:
        """ASE's Box–Muller draw: two uniform arrays, in this order."""
        x = rng.random(size=size)
        y = rng.random(size=size)
        return width * np.cos(2 * np.pi * x) * (-2 * np.log(1 - y)) ** 0.5

    def _draws(self):
        """Per replica, in ASE's order: COM velocity, MB velocities, collision chances (moved to the device once)."""
        com, thermal, chance = [], [], []
        masses = self._masses_host
        for r in range(self.n_replicas):
            rng, part = self.rngs[r], self._slice(r)
            n = part.stop - part.start
            if self.status[r].stopped is not None:  # a stopped replica consumes no random numbers
                com.append(np.zeros((n, 3)))
                thermal.append(np.zeros((n, 3)))
                chance.append(np.ones((n, 3)) * 2.0)
                continue
            if self.settings.fix_com:
                width = (self.kT / float(self._total_mass_host[r])) ** 0.5
                com.append(np.ones((n, 3)) * self._boltzmann(rng, width, 3))
            else:
                com.append(np.zeros((n, 3)))
            width = (self.kT / np.repeat(masses[part], 3, axis=1)) ** 0.5
            thermal.append(self._boltzmann(rng, width, (n, 3)))
            chance.append(rng.random(size=(n, 3)))
        to = lambda parts: self.torch.as_tensor(np.concatenate(parts), dtype=self.torch.float64, device=self.device)  # noqa: E731
        return to(com), to(thermal), to(chance)

    def _compute_forces(self):
        active = self.active
        if self.replica_forces is not None:
            return self.replica_forces(self.positions, active).to(self.device)
        structures = []
        positions = self.positions.cpu().numpy()
        for r in active:
            atoms = self.templates[r].copy()
            atoms.positions = positions[self._slice(r)]
            structures.append(atoms)
        forces = np.zeros(tuple(self.positions.shape))
        for r, f in zip(active, self.force_function(structures) if structures else [], strict=True):
            forces[self._slice(r)] = f
        return self.torch.as_tensor(forces, dtype=self.torch.float64, device=self.device)

    def temperatures(self) -> np.ndarray:
        kinetic = self.torch.zeros(self.n_replicas, dtype=self.torch.float64, device=self.device)
        kinetic.index_add_(0, self.replica, 0.5 * (self.masses * self.velocities**2).sum(dim=1))
        dof = 3 * np.diff(self.offsets)
        return (2 * kinetic.cpu().numpy() / (dof * units.kB)).astype(float)

    # ---- the step ------------------------------------------------------------------------------
    def step(self) -> None:
        """One Andersen step for every active replica (ASE's ``Andersen.step``)."""
        torch = self.torch
        if self.forces is None:
            self.forces = self._compute_forces()
        running = torch.zeros(self.n_replicas, dtype=torch.bool, device=self.device)
        running[self.active] = True
        moving = running[self.replica][:, None]
        com_velocity, thermal, chance = self._draws()
        v = self.velocities + com_velocity
        v = v + 0.5 * self.forces / self.masses * self.dt
        v = torch.where(chance <= self.settings.andersen_prob, thermal, v)
        x = self.positions
        if self.settings.fix_com:
            old_com = self._centre_of_mass(x)
            v = v - self._per_replica_mean_velocity(v)
        new_positions = x + v * self.dt
        if self.settings.fix_com:
            new_positions = new_positions + (old_com - self._centre_of_mass(new_positions))[self.replica]
        v = (new_positions - x) / self.dt
        self.positions = torch.where(moving, new_positions, self.positions)
        self.forces = self._compute_forces()
        v = v + 0.5 * self.forces / self.masses * self.dt
        if self.settings.fix_com:
            v = v - self._per_replica_mean_velocity(v)
        self.velocities = torch.where(moving, v, self.velocities)
        self._guard()

    def _guard(self) -> None:
        temperatures = self.temperatures()
        max_force = self.torch.zeros(self.n_replicas, dtype=self.torch.float64, device=self.device)
        max_force.scatter_reduce_(0, self.replica, self.forces.abs().amax(dim=1), reduce="amax", include_self=False)
        max_force = max_force.cpu().numpy()
        finite = np.isfinite(temperatures) & np.isfinite(max_force)
        for r in self.active:
            status = self.status[r]
            status.steps_done += 1
            status.temperatures.append(float(temperatures[r]))
            if not finite[r]:
                status.stopped = f"non-finite positions, velocities or forces at step {status.steps_done}"
            elif temperatures[r] > self.settings.max_temperature_factor * self.settings.temperature_K:
                status.stopped = (
                    f"temperature {temperatures[r]:.0f} K > {self.settings.max_temperature_factor:g} x "
                    f"{self.settings.temperature_K:g} K at step {status.steps_done}"
                )
            elif max_force[r] > self.settings.max_force:
                status.stopped = f"force {max_force[r]:.1f} eV/Å > {self.settings.max_force:g} eV/Å at step {status.steps_done}"

    # ---- running, writing, resuming ---------------------------------------------------------------
    def atoms(self, r: int) -> Atoms:
        """Replica ``r`` now, with velocities and its current forces attached."""
        part = self._slice(r)
        forces = self.forces[part].cpu().numpy() if self.forces is not None else None
        return self._frame_text[r].atoms(self.positions[part].cpu().numpy(), self.velocities[part].cpu().numpy(), forces, self.status[r].steps_done)

    def run(self, steps: int | None = None, *, progress: bool = True) -> list[ReplicaStatus]:
        from tqdm.auto import tqdm

        total = steps if steps is not None else self.settings.steps
        if self.output_dir is not None:
            self._resume()
        # Active replicas step together; stopped ones keep the step count at which they stopped.
        start = max(s.steps_done for s in self.status)
        committed = start
        for _ in tqdm(range(start, total), desc=f"MD x{self.n_replicas}", unit="step", disable=not progress):
            if not self.active:
                break
            self.step()
            step = max(s.steps_done for s in self.status)
            if self.output_dir is None:
                continue
            if step % self.settings.write_every == 0:
                self._append_frames(step)
            if step % self.settings.checkpoint_every == 0:
                self._checkpoint()
                committed = step
        if self.output_dir is not None and max(s.steps_done for s in self.status) != committed:
            self._checkpoint()
        return self.status

    def trajectory_file(self, r: int) -> Path:
        return self.output_dir / f"replica_{r:03d}.extxyz"

    @property
    def checkpoint_file(self) -> Path:
        return self.output_dir / "checkpoint.npz"

    def _append_frames(self, step: int) -> None:
        """Append the frame of every replica that made ``step`` (stopped replicas write nothing more):
        the state copied to the host once for all replicas, each frame's text made by
        :class:`~hdpbench.io.trajectories.ExtxyzFrameText` (ASE's bytes, without an ``Atoms`` per frame)."""
        from hdpbench.core.errors import StoreWriteError

        self.output_dir.mkdir(parents=True, exist_ok=True)
        writing = [r for r in range(self.n_replicas) if self.status[r].steps_done == step]
        if not writing:
            return
        positions, velocities = self.positions.cpu().numpy(), self.velocities.cpu().numpy()
        forces = self.forces.cpu().numpy() if self.forces is not None else None
        for r in writing:
            part = self._slice(r)
            text = self._frame_text[r].text(positions[part], velocities[part], None if forces is None else forces[part], step)
            path = self.trajectory_file(r)
            try:
                self._append(path, text.encode())
            except OSError as error:  # e.g. a full disk: the next resume cuts the file back
                raise StoreWriteError(path, f"cannot append MD frame of step {step} ({error.strerror or error}); "
                                      "rerun to resume from the last checkpoint") from error

    @staticmethod
    def _append(path: Path, data: bytes) -> None:
        with open(path, "ab") as handle:
            handle.write(data)

    def _checkpoint(self) -> None:
        """Make the frames written so far durable, then record the state and the files' lengths."""
        from hdpbench.core.storage import atomic_path

        self.output_dir.mkdir(parents=True, exist_ok=True)
        lengths = []
        for r in range(self.n_replicas):
            path = self.trajectory_file(r)
            if path.is_file():
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
                lengths.append(path.stat().st_size)
            else:
                lengths.append(0)
        longest = max((len(s.temperatures) for s in self.status), default=0)
        temperatures = np.full((self.n_replicas, longest), np.nan)
        for r, status in enumerate(self.status):
            temperatures[r, : len(status.temperatures)] = status.temperatures
        with atomic_path(self.checkpoint_file) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                positions=self.positions.cpu().numpy(),
                velocities=self.velocities.cpu().numpy(),
                forces=self.forces.cpu().numpy(),
                temperatures=temperatures,
                status=json.dumps([{"steps_done": s.steps_done, "stopped": s.stopped} for s in self.status]),
                rng_states=json.dumps([rng.bit_generator.state for rng in self.rngs]),
                trajectory_bytes=np.asarray(lengths, dtype=np.int64),
                identity=json.dumps(self.identity, sort_keys=True),
            )

    def _resume(self) -> None:
        from hdpbench.core.errors import DataError
        from hdpbench.core.storage import remove_orphaned_temporaries

        if self.output_dir.is_dir():  # a checkpoint temporary of a killed run
            remove_orphaned_temporaries(self.output_dir)
        checkpoint = self.checkpoint_file
        if not checkpoint.is_file():  # killed before the first checkpoint: nothing was committed
            for r in range(self.n_replicas):
                self.trajectory_file(r).unlink(missing_ok=True)
            return
        torch = self.torch
        try:
            with np.load(checkpoint) as state:
                saved = {key: state[key] for key in state.files}
        except (OSError, ValueError, EOFError) as error:
            raise DataError(checkpoint, f"unreadable MD checkpoint ({error}); delete {self.output_dir} to start the run again") from error
        missing = {"positions", "velocities", "forces", "temperatures", "status", "rng_states", "trajectory_bytes", "identity"} - set(saved)
        if missing:
            raise DataError(checkpoint, f"MD checkpoint without {sorted(missing)} (an older format); delete {self.output_dir} to start again")
        if saved["positions"].shape != tuple(self.positions.shape) or len(saved["trajectory_bytes"]) != self.n_replicas:
            raise DataError(checkpoint, f"MD checkpoint of another system (positions {saved['positions'].shape}, expected {tuple(self.positions.shape)})")
        self._check_identity(json.loads(str(saved["identity"])), checkpoint)
        self.positions = torch.as_tensor(saved["positions"], device=self.device)
        self.velocities = torch.as_tensor(saved["velocities"], device=self.device)
        self.forces = torch.as_tensor(saved["forces"], device=self.device)
        self.status = []
        for record, temperatures in zip(json.loads(str(saved["status"])), saved["temperatures"], strict=True):
            kept = temperatures[: record["steps_done"]]
            self.status.append(ReplicaStatus(steps_done=record["steps_done"], stopped=record["stopped"], temperatures=[float(t) for t in kept]))
        for rng, state in zip(self.rngs, json.loads(str(saved["rng_states"])), strict=True):
            rng.bit_generator.state = state
        for r, committed in enumerate(saved["trajectory_bytes"].tolist()):
            path = self.trajectory_file(r)
            length = path.stat().st_size if path.is_file() else 0
            if length < committed:
                raise DataError(
                    path, f"holds {length} bytes but {checkpoint.name} committed {committed}: it was changed after the run "
                    f"wrote it; delete {self.output_dir} to start the run again"
                )
            if length > committed:  # frames after the checkpoint (maybe half-written): recomputed
                os.truncate(path, committed)

    def _check_identity(self, saved: dict[str, Any], checkpoint: Path) -> None:
        """Refuse a checkpoint of another run (settings, species, cell, start, seed or model): resuming it
        would continue one trajectory into another in the same files."""
        from hdpbench.core.errors import DataError

        differences = []
        for key in sorted(set(saved) | set(self.identity)):
            was, now = saved.get(key), self.identity.get(key)
            if key == "cells" and was is not None and now is not None and np.shape(was) == np.shape(now) and np.allclose(was, now, rtol=0, atol=1e-8):
                continue
            if was != now:
                what = "starting positions, velocities or random state (another structure or seed)" if key == "starting_state" else key
                differences.append(f"{what}: {_short(was)} in the checkpoint, {_short(now)} now")
        if differences:
            raise DataError(
                checkpoint, "MD checkpoint of another run, not resumed: " + "; ".join(differences)
                + f". Use another --output folder, or delete {self.output_dir} to start this run there",
            )

    def summary(self) -> dict[str, Any]:
        return {
            "replicas": self.n_replicas,
            "steps": self.settings.steps,
            "temperature_K": self.settings.temperature_K,
            "mean_temperature_per_replica": [float(np.mean(s.temperatures)) if s.temperatures else None for s in self.status],
            "steps_done_per_replica": [s.steps_done for s in self.status],
            "stopped_replicas": {r: s.stopped for r, s in enumerate(self.status) if s.stopped},
        }


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."
