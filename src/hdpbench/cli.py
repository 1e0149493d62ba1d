"""The ``hdpbench`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from hdpbench import __version__
from hdpbench.core.errors import HdpbenchError, UsageError


def _print_json(obj) -> None:
    from hdpbench.core.storage import json_default

    json.dump(obj, sys.stdout, indent=2, default=json_default)
    sys.stdout.write("\n")


def _count(lowest: int):
    """argparse type: an integer ≥ ``lowest`` (0 or 1); a bad value exits 2 naming the option."""
    from hdpbench.core.validation import require_positive_int

    def parse(text: str) -> int:
        try:
            return require_positive_int("value", int(text), allow_zero=lowest == 0)
        except ValueError:  # int() or the check (UsageError is a ValueError)
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer ≥ {lowest}") from None

    parse.__name__ = f"integer ≥ {lowest}"
    return parse


def _positive_float(text: str) -> float:
    from hdpbench.core.validation import require_positive

    try:
        return require_positive("value", float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number > 0") from None


def _finite_float(text: str) -> float:
    """argparse type: any finite number (``nan`` and ``inf`` are not)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _displacement(text: str) -> float:
    """argparse type: a finite-displacement amplitude in Å (1e-300 gave 1e147 THz, exit 0)."""
    value = _positive_float(text)
    from hdpbench.physics.phonons import (  # one bound for --displacement and --set
        MAX_DISPLACEMENT,
        MIN_DISPLACEMENT,
    )

    if not MIN_DISPLACEMENT <= value <= MAX_DISPLACEMENT:
        raise argparse.ArgumentTypeError(f"{text!r} is not a displacement between {MIN_DISPLACEMENT:g} and {MAX_DISPLACEMENT:g} Å")
    return value


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def cmd_data_list(args) -> int:
    from hdpbench.data.datasets import dataset_status, get_dataset, registered_datasets
    from hdpbench.io.authors import SIGMA_MISSING_AT

    if args.dataset is None:
        statuses = [dataset_status(spec) for spec in registered_datasets().values()]
        if args.json:
            _print_json(statuses)
            return 0
        rows = [[s["name"], "yes" if s["available"] else "no", s["local_dir"], s["title"]] for s in statuses]
        print(_table(rows, ["dataset", "on disk", "local folder", "title"]))
        print("\nList a dataset's compounds with: hdpbench data list --dataset NAME")
        return 0
    dataset = get_dataset(args.dataset, download=False)
    if not hasattr(dataset, "entries"):  # reference systems or phonondb archives: each layout's own table
        rows = [r for r in dataset.table() if args.halide is None or r.get("halide", args.halide) == args.halide]
        if args.json:
            _print_json(rows)
            return 0
        print(f"dataset {dataset.name!r} ({dataset.layout} layout) at {dataset.root}: {len(rows)} systems")
        columns = list(rows[0]) if rows else ["system"]
        print(_table([["" if r.get(c) is None else str(r.get(c)) for c in columns] for r in rows], columns))
        return 0
    entries = [e for e in dataset.entries().values() if args.halide is None or e.halide == args.halide]
    if args.json:
        _print_json([{"formula": e.formula, "halide": e.halide, "path": str(e.path), **e.has()} for e in entries])
        return 0
    rows = []
    for e in entries:
        has = e.has()
        sigma = has["sigma_reference"]
        rows.append(
            [
                e.formula,
                e.halide,
                has["force_constants"] or "-",
                str(has["production_md_files"]),
                "yes" if has["training_pool"] else "-",
                _format_sigma_reference(sigma, e.summary.get("raw", {}).get("sigma_300K_single")),
                has["problem"] or "",
            ]
        )
    print(f"dataset {dataset.name!r} at {dataset.root}: {len(entries)} compounds")
    print(_table(rows, ["compound", "halide", "force constants", "MD files", "training pool", "sigma_ref", "problem"]))
    if any(row[5].endswith("*") for row in rows):
        print(f"* σ ≥ {SIGMA_MISSING_AT:g}: stored, but treated as missing (the authors' convention)")
    return 0


def cmd_data_fetch(args) -> int:
    from hdpbench.data.datasets import fetch, registered_datasets

    specs = registered_datasets()
    if args.dataset not in specs:
        print(f"no registered dataset {args.dataset!r}; known: {sorted(specs)}", file=sys.stderr)
        return 2
    root = fetch(specs[args.dataset])
    print(f"dataset {args.dataset!r} is at {root}")
    return 0


def _gamma_acoustic_max_thz(compound) -> float:
    from hdpbench.physics.phonons import acoustic_sum_rule_violation, make_phonopy

    phonon = make_phonopy(compound.unitcell, compound.supercell_matrix, compound.force_constants)
    return acoustic_sum_rule_violation(phonon)["gamma_acoustic_max_thz"]


def _frame_sets(dataset, compound, md_read: bool) -> dict:
    """Which production files each stage reads (the authors' frame sets, io.authors.FrameSet) and how
    many frames the σ stages use after the discard (None when the MD was not read: ``--no-md``)."""
    from hdpbench.io.authors import FrameSet

    entry = dataset.entries()[compound.formula]
    frames = {Path(t.source_files[0]).name: len(t) for t in compound.trajectories}
    sigma_files = entry.production_files(FrameSet.PAPER)
    start = entry.production_files(FrameSet.MD_START)
    return {
        "sigma_files": [f"{entry.path}:{name}" for name in sigma_files],
        "sigma_frames": sum(frames.get(Path(name).name, 0) for name in sigma_files) if md_read else None,
        "md_start_file": f"{entry.path}:{start[0]}" if start else None,
        "extended_files": [f"{entry.path}:{name}" for name in entry.production_files(FrameSet.ALL)],
    }


def cmd_data_show(args) -> int:
    from hdpbench.data.datasets import get_dataset

    dataset = get_dataset(args.dataset, download=False)
    compound = dataset.load(args.compound, discard=args.discard, trajectories=not args.no_md)
    info = {
        "formula": compound.formula,
        "halide": compound.halide,
        "unitcell_atoms": len(compound.unitcell),
        "supercell_matrix": compound.supercell_matrix.tolist(),
        "supercell_atoms": compound.n_atoms,
        "force_constants_shape": list(compound.force_constants.shape),
        # 0 for a translationally invariant Φ: how much noise the reference force constants carry
        "gamma_acoustic_max_thz": _gamma_acoustic_max_thz(compound),
        "production_files": [t.source_files[0] for t in compound.trajectories],
        "frames_per_file": [len(t) for t in compound.trajectories],
        **_frame_sets(dataset, compound, md_read=not args.no_md),
        "summary": {k: v for k, v in compound.summary.items() if k != "raw"},
        "provenance": compound.provenance,
    }
    generation = dataset.generation_record(args.compound)
    if generation:  # demo data: method, settings, seeds and versions travel with the data
        info["generation"] = generation
    if args.json:
        _print_json(info)
    else:
        for key, value in info.items():
            print(f"{key:>22}: {value}")
    return 0


def cmd_models_list(args) -> int:
    from hdpbench.models.registry import model_table

    rows = model_table()
    if args.json:
        _print_json(rows)
        return 0
    print(
        _table(
            [[r["name"], r["label"], r["kind"], r["license"], "yes" if r["available"] else "no", r["environment"], r["checkpoint"]] for r in rows],
            ["model", "paper label", "kind", "licence", "ready here", "environment", "checkpoint"],
        )
    )
    return 0


def cmd_models_env(args) -> int:
    """Build (or find) the own environment of a ``kind: isolated`` model and say where it is."""
    from hdpbench.models.environments import IsolatedSpec, ensure_environment
    from hdpbench.models.registry import ModelKind, get_model_spec, registry_file

    spec = get_model_spec(args.name)
    if spec.kind != ModelKind.ISOLATED.value:
        raise UsageError(f"model {spec.name} is of kind {spec.kind!r}: it runs in hdpbench's own environment (only kind 'isolated' has its own)")
    environment = ensure_environment(spec.name, IsolatedSpec.from_mapping(spec.isolated, registry_file(spec)).environment)
    record = environment.record
    if args.json:
        _print_json({**record, "model": spec.name, "folder": str(environment.folder), "interpreter": str(environment.python)})
        return 0
    pinned = IsolatedSpec.from_mapping(spec.isolated, registry_file(spec)).environment.pinned()
    print(f"environment of {spec.name}: {environment.folder}")
    print(f"  python {record.get('python')} ({environment.python}); built in {record.get('build_seconds')} s on {record.get('built_at')}")
    packages = {name.lower().replace("_", "-"): version for name, version in record.get("packages", {}).items()}
    print("  pinned: " + ", ".join(f"{name}=={packages.get(name, '?')}" for name in pinned))
    print(f"  {len(packages)} packages in all: {environment.folder / 'environment.json'}")
    return 0


def cmd_results_export(args) -> int:
    from hdpbench.core.storage import output_path
    from hdpbench.pipeline.export import IDENTITY_COLUMNS, STATUS_COLUMNS, export_rows

    if not args.csv and not args.json:
        raise UsageError("results export: give --csv FILE, --json or both")
    rows = export_rows(args.dataset, args.model, args.stage, results_root=args.results, key=args.key)
    keys = sorted({row["settings_key"] for row in rows})
    failed = sum(row["status"] == "failed" for row in rows)
    if args.csv:
        import pandas as pd

        columns = list(rows[0]) if rows else [*IDENTITY_COLUMNS, *STATUS_COLUMNS]
        with output_path(Path(args.csv)) as target:  # atomic; a link, a device or a FIFO is written through
            pd.DataFrame(rows, columns=columns).to_csv(target, index=False)
    if args.json:
        _print_json(rows)
    summary = (
        f"{len(rows)} row(s) ({len(rows) - failed} done, {failed} failed) of {args.dataset}/{args.model}/{args.stage}, "
        f"{len(keys)} settings key(s){': ' + ', '.join(keys) if keys else ''}"
        + (f" → {args.csv}" if args.csv else "")
    )
    print(summary, file=sys.stderr if args.json else sys.stdout)  # --json: stdout is the rows alone
    return 0


def _write_bench_report(args, report: dict) -> bool:
    """``--output``: write the JSON report there; ``--json``: print it (True, the caller prints nothing more)."""
    if args.output:
        from hdpbench.core.storage import json_default, output_path

        with output_path(Path(args.output)) as target:  # atomic; a link, a device or a FIFO is written through
            target.write_text(json.dumps(report, indent=2, sort_keys=True, default=json_default) + "\n")
    if args.json:
        _print_json(report)
    return bool(args.json)


def cmd_bench_evaluate(args) -> int:
    from hdpbench.pipeline.benchmarking import evaluation_benchmark

    report = evaluation_benchmark(
        n_frames=8 if args.quick else args.frames,
        repeats=1 if args.quick else args.repeats,
        device=args.device,
        dtype=args.dtype,
        channels=32 if args.quick else 128,
    )
    if _write_bench_report(args, report):
        return 0
    line = (
        f"{report['frames']} frames x {report['atoms_per_frame']} atoms, {report['device']} {report['dtype']} "
        f"({report['hardware']}): ASE loop {report['ase_frames_per_s']:.2f} frames/s, batched "
        f"{report['batched_frames_per_s']:.2f} frames/s (batch {report['batch_size']}) -> "
        f"{report['ratio_batched_vs_ase']:.2f}x; max |dF| {report['max_abs_force_diff']:.2e} eV/A; "
        f"neighbour lists {100 * report['neighbor_list_share_of_batched_time']:.1f}% of batched time"
    )
    if "cueq_frames_per_s" in report:
        line += f"; cuEquivariance {report['cueq_frames_per_s']:.2f} frames/s (max |dF| {report['max_abs_force_diff_cueq_vs_batched']:.1e})"
    if "torchsim_frames_per_s" in report:
        line += f"; TorchSim {report['torchsim_frames_per_s']:.2f} frames/s"
    print(line)
    return 0


def cmd_bench_md(args) -> int:
    from hdpbench.pipeline.benchmarking import md_benchmark

    replicas_per_call = args.replicas_per_call
    if replicas_per_call not in (None, "auto"):
        try:
            replicas_per_call = int(replicas_per_call)
        except ValueError:
            print(f"hdpbench bench md: error: --replicas-per-call must be an integer or 'auto', not {replicas_per_call!r}", file=sys.stderr)
            return 2
    try:
        report = md_benchmark(
            args.model,
            replicas=16 if args.quick else args.replicas,
            steps=5 if args.quick else args.steps,
            device=args.device,
            dtype=args.dtype,
            replicas_per_call=replicas_per_call,
            accelerator=args.accelerator,
            channels=args.channels,
            torch_compile=True if args.compile else None,
        )
    except (ValueError, KeyError) as error:
        print(f"hdpbench bench md: error: {error}", file=sys.stderr)
        return 2
    if _write_bench_report(args, report):
        return 0
    line = (
        f"{report['replicas']} replicas x {report['atoms_per_replica']} atoms x {report['steps']} steps, {report['model']} "
        f"{report['device']} {report['dtype']} ({report['hardware']}): ASE Andersen loop {report['ase_steps_per_s']:.2f} steps/s, "
        f"batched {report['batched_steps_per_s']:.2f} steps/s -> {report['ratio_batched_vs_ase']:.2f}x "
        f"(max |dx| {report['max_abs_position_diff']:.1e} A, same draws); Atoms path {report['batched_atoms_path_steps_per_s']:.2f} steps/s"
    )
    if "torchsim_steps_per_s" in report:
        line += f"; TorchSim {report['torchsim_steps_per_s']:.2f} steps/s"
    print(line)
    return 0


def cmd_bench_rematch(args) -> int:
    from hdpbench.pipeline.benchmarking import rematch_benchmark

    try:
        report = rematch_benchmark(
            n_frames=20 if args.quick else args.frames, repeats=1 if args.quick else args.repeats, dataset=args.dataset,
            compound=args.compound, device=args.device,
        )  # fmt: skip
    except (ValueError, KeyError) as error:
        print(f"hdpbench bench rematch: error: {error}", file=sys.stderr)
        return 2
    if _write_bench_report(args, report):
        return 0
    print(
        f"REMatch {report['frames']} x {report['frames']} frames of {report['atoms_per_frame']} atoms ({report['compound']}, {report['device']}, "
        f"{report['hardware']}): dscribe {report['dscribe_s']:.2f} s, batched ({report['ours_precision']} products) {report['ours_s']:.2f} s -> "
        f"{report['ratio_vs_dscribe']:.1f}x (max |dK| {report['max_abs_diff']:.1e}); float64 products {report['ours_float64_s']:.2f} s -> "
        f"{report['ratio_float64_vs_dscribe']:.1f}x (max |dK| {report['max_abs_diff_float64']:.1e}); float32 products "
        f"{report['ours_float32_s']:.2f} s -> {report['ratio_float32_vs_dscribe']:.1f}x (max |dK| {report['max_abs_diff_float32']:.1e}); "
        f"SOAP {report['soap_s']:.2f} s"
    )
    return 0


def cmd_bench_calculator(args) -> int:
    from hdpbench.pipeline.benchmarking import calculator_benchmark

    try:
        report = calculator_benchmark(args.model, n_frames=8 if args.quick else args.frames, repeats=1 if args.quick else args.repeats, device=args.device)
    except ValueError as error:  # a model without a batched calculator path: a usage error
        print(f"hdpbench bench calculator: error: {error}", file=sys.stderr)
        return 2
    if _write_bench_report(args, report):
        return 0
    print(
        f"{report['model']}: {report['frames']} frames x {report['atoms_per_frame']} atoms, {report['device']} "
        f"({report['hardware']}): ASE loop {report['ase_frames_per_s']:.2f} frames/s, batched "
        f"{report['batched_frames_per_s']:.2f} frames/s (batch {report['batch_size']}) -> {report['ratio_batched_vs_ase']:.2f}x; "
        f"max |dF| {report['max_abs_force_diff']:.2e} eV/A"
    )
    return 0


def cmd_bench_isolation(args) -> int:
    from hdpbench.pipeline.benchmarking import isolation_benchmark

    report = isolation_benchmark(n_frames=4 if args.quick else args.frames, repeats=1 if args.quick else args.repeats, device=args.device)
    if _write_bench_report(args, report):
        return 0
    print(
        f"{report['model']}: {report['frames_per_call']} frames x {report['atoms_per_frame']} atoms per call, {report['device']} "
        f"({report['hardware']}): in process {report['in_process_call_s']:.3f} s, isolated {report['isolated_call_s']:.3f} s "
        f"-> overhead {100 * report['overhead_share']:+.1f} %; max |dF| {report['max_abs_force_diff']:.1e} eV/A; "
        f"worker start {report['worker_start_s']:.1f} s"
    )
    return 0


def _read_structure(path):
    """The structure in ``path``, checked (:func:`hdpbench.core.structures.check_structure`: finite,
    a cell with volume, no overlapping atoms)."""
    import ase.io

    from hdpbench.core.errors import DataError
    from hdpbench.core.structures import check_structure

    try:
        atoms = ase.io.read(path)
    except Exception as error:
        raise DataError(path, f"cannot read the structure ({type(error).__name__}: {error})") from error
    return check_structure(atoms, path)


def _is_force_constant_file(value: str) -> bool:
    from hdpbench.core.errors import DataError
    from hdpbench.io.force_constants import force_constants_format

    if not Path(value).is_file():
        return False
    try:
        force_constants_format(value)
    except DataError:
        return False  # a file of another kind: a MACE checkpoint
    return True


MAX_SUPERCELL_ATOMS = 20000  # a phonopy supercell beyond this is a typo (50 50 50), not a calculation


def _compare_supercell(args, unitcell):
    """The supercell matrix of ``phonons compare``: ``--supercell``, else a phonopy yaml's own (given as
    --reference or --model), else the default; a yaml whose own unit cell or supercell differs from
    --unitcell / --supercell is refused, naming both (KCl's Φ was compared on a NaCl cell, exit 0),
    and an absurd size is refused before phonopy builds it."""
    import numpy as np

    from hdpbench.core.errors import DataError
    from hdpbench.core.structures import supercell_matrix_3x3
    from hdpbench.io.force_constants import force_constants_format, read_phonopy_yaml
    from hdpbench.physics.phonons import DEFAULT_SUPERCELL

    supercell = None if args.supercell is None else supercell_matrix_3x3(args.supercell)
    for option, path in (("--reference", args.reference), ("--model", args.model)):
        if not _is_force_constant_file(path) or force_constants_format(path) != "phonopy-yaml":
            continue
        _, own_cell, own_matrix = read_phonopy_yaml(path)
        problem = _cell_difference(unitcell, own_cell)
        if problem:
            raise DataError(path, f"the {option} yaml's own unit cell is not --unitcell {args.unitcell}: {problem}")
        own_matrix = np.asarray(own_matrix, dtype=int)
        if supercell is None:
            supercell = own_matrix
        elif not np.array_equal(supercell, own_matrix):
            raise DataError(path, f"the {option} yaml's supercell matrix {own_matrix.tolist()} is not --supercell {supercell.tolist()}")
    if supercell is None:
        supercell = supercell_matrix_3x3(DEFAULT_SUPERCELL)
    atoms = len(unitcell) * round(abs(np.linalg.det(supercell)))
    if atoms == 0 or atoms > MAX_SUPERCELL_ATOMS:
        raise UsageError(f"--supercell {supercell.tolist()}: {atoms} atoms from the {len(unitcell)}-atom unit cell; expected 1 to {MAX_SUPERCELL_ATOMS}")
    return supercell


def _cell_difference(mine, theirs) -> str | None:
    """What differs between two unit cells (atom count, species order, lattice, positions), or None."""
    import numpy as np

    if len(mine) != len(theirs):
        return f"{len(mine)} atoms ({mine.get_chemical_formula()}) against {len(theirs)} ({theirs.get_chemical_formula()})"
    if mine.get_chemical_symbols() != theirs.get_chemical_symbols():
        return f"species {mine.get_chemical_symbols()} against {theirs.get_chemical_symbols()}"
    scale = float(np.linalg.norm(mine.cell.array, axis=1).max())
    if np.abs(mine.cell.array - theirs.cell.array).max() > 1e-3 * scale:
        return f"lattice {mine.cell.array.round(4).tolist()} against {theirs.cell.array.round(4).tolist()}"
    shift = mine.get_scaled_positions(wrap=False) - theirs.get_scaled_positions(wrap=False)
    if np.abs(shift - np.round(shift)).max() > 1e-3:
        return "the atom positions differ"
    return None


def cmd_phonons_compare(args) -> int:
    from hdpbench.io.force_constants import read_force_constants
    from hdpbench.physics.phonons import compare, model_force_constants

    unitcell = _read_structure(args.unitcell)
    args.supercell = _compare_supercell(args, unitcell)
    context = {"unitcell": unitcell, "supercell_matrix": args.supercell}
    reference = read_force_constants(args.reference, **context)
    if _is_force_constant_file(args.model):
        model = read_force_constants(args.model, **context)
        model_name = args.model
    else:  # a registry model or a checkpoint: Φ_model from its own finite displacements
        from hdpbench.models.evaluate import load_model

        loaded = load_model(args.model, device=args.device, dtype=args.dtype)
        phonon = model_force_constants(unitcell, loaded, supercell_matrix=args.supercell, displacement=args.displacement)
        model = phonon.force_constants
        model_name = loaded.name
    metrics, _, _ = compare(
        unitcell, reference, model, supercell_matrix=args.supercell, npoints=args.npoints, unstable_below=args.unstable_below
    )
    metrics["model"] = model_name
    if args.json:
        _print_json(metrics)
        return 0
    for key in ("rmse_omega2_thz2", "rmse_vg_thz_ang", "mae_freq_thz", "min_freq_reference_thz", "min_freq_model_thz"):
        print(f"{key:>24}: {metrics[key]:.6g}")
    print(f"{'stable (reference/model)':>24}: {metrics['stable_reference']}/{metrics['stable_model']}")
    return 0


def cmd_sigma(args) -> int:
    from hdpbench.core.errors import DataError
    from hdpbench.io.force_constants import read_force_constants
    from hdpbench.io.trajectories import (
        discard_frames,
        read_fhi_vibes,
        read_trajectory,
        trajectory_format,
    )
    from hdpbench.physics.anharmonicity import sigma

    reference = force_constants = None
    reference_name = "reference supercell"
    if trajectory_format(args.trajectory) == "fhi-vibes":
        vibes = read_fhi_vibes(args.trajectory)
        trajectory, reference, force_constants = discard_frames(vibes.trajectory, args.discard, args.trajectory), vibes.reference, vibes.force_constants
        reference_name = f"reference supercell of {args.trajectory} (positions_reference)"
    else:
        trajectory = read_trajectory(args.trajectory, discard=args.discard)
    if args.reference:
        reference = _read_structure(args.reference)
        reference_name = f"reference {args.reference}"
    if args.force_constants:
        force_constants = read_force_constants(args.force_constants, n_atoms=trajectory.n_atoms)
    if reference is None or force_constants is None:
        raise DataError(args.trajectory, "σ needs --reference (the undisplaced supercell) and --force-constants")
    result = sigma(trajectory, reference, force_constants, reference_name=reference_name).to_dict()
    if args.model:
        from hdpbench.physics.anharmonicity import model_sigma

        result.update(model_sigma(trajectory, reference, force_constants, args.model, displacement=args.displacement, device=args.device, dtype=args.dtype))
    if args.json:
        _print_json(result)
        return 0
    print(f"frames {result['n_frames']}, atoms {result['n_atoms']}")
    print(f"sigma (mean over frames) {result['sigma_mean_per_frame']:.4f}, pooled (FHI-vibes) {result['sigma_pooled']:.4f}")
    print("per species: " + ", ".join(f"{k} {v:.4f}" for k, v in result["sigma_per_species"].items()))
    if args.model:
        print(
            f"model {result['model']}: sigma(model forces, reference Phi) {result['sigma_model_phi_reference']:.4f}, "
            f"sigma(model forces, model Phi) {result['sigma_model_phi_model']:.4f}; force MAE "
            f"{result['force_mae_ev_ang']:.4f} eV/A, RMSE {result['force_rmse_ev_ang']:.4f} eV/A"
        )
    return 0


def cmd_md(args) -> int:
    import numpy as np
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    from hdpbench.physics.md import BatchedAndersen, MDSettings, model_forces

    structure = _read_structure(args.structure)
    replicas = []
    for r in range(args.replicas):
        atoms = structure.copy()
        MaxwellBoltzmannDistribution(atoms, temperature_K=args.temperature, rng=np.random.default_rng([args.seed, r, 1]))
        Stationary(atoms)
        replicas.append(atoms)
    settings = MDSettings(
        temperature_K=args.temperature,
        timestep_fs=args.timestep,
        andersen_prob=args.andersen_prob,
        steps=args.steps,
        write_every=args.write_every,
        seed=args.seed,
    )
    if args.set:  # any other field of the md settings record, e.g. md.max_force=20
        from hdpbench.pipeline.settings import RunSettings

        wrong = [item for item in args.set if not item.strip().startswith("md.")]
        if wrong:
            raise UsageError(f"--set {wrong[0]!r}: hdpbench md takes md.FIELD=VALUE only")
        settings = RunSettings(md=settings).with_overrides(args.set).md
    md = BatchedAndersen(
        replicas, model_forces(args.model, device=args.device, dtype=args.dtype, accelerator=args.accelerator), settings, output_dir=args.output
    )
    md.run(progress=not args.json)
    summary = md.summary()
    if args.json:
        _print_json(summary)
        return 0
    for r, temperature in enumerate(summary["mean_temperature_per_replica"]):
        stopped = summary["stopped_replicas"].get(r)
        print(f"replica {r}: mean T {temperature:.1f} K over {summary['steps_done_per_replica'][r]} steps" + (f", STOPPED: {stopped}" if stopped else ""))
    return 0


def cmd_finetune(args) -> int:
    from hdpbench.demo.train import cotrain_structures
    from hdpbench.training.finetune import FinetuneSettings, finetune_registered

    settings = FinetuneSettings(
        phi_weight=args.phi_weight, energy_weight=args.energy_weight, force_weight=args.force_weight,
        epochs=args.epochs, cotrain_steps=args.cotrain_steps, learning_rate=args.lr, seed=args.seed,
        phonon_batch=args.phonon_batch, columns_per_structure=args.columns,
    )  # fmt: skip
    run, registry = finetune_registered(
        args.model, dataset=args.dataset, train_compounds=args.train_compounds, output=args.output,
        validation_compounds=args.validation_compounds or [], settings=settings, cotrain_file=args.cotrain,
        cotrain_loader=cotrain_structures, device=args.device, progress=not args.quiet,
    )  # fmt: skip
    summary = {"name": args.output, "checkpoint": str(run.checkpoint), "registry": str(registry), "seconds": run.seconds, "epochs": len(run.log) - 1}
    if args.json:
        _print_json(summary | {"log": run.log})
    else:
        print(f"{args.output}: {summary['epochs']} epochs in {run.seconds / 60:.1f} min → {run.checkpoint}; registered in {registry}")
    return 0


RUN_DEFAULTS = {"dataset": "demo", "device": "cpu", "shard_size": 4}
RUN_CONFIG_KEYS = ("dataset", "models", "compounds", "device", "dtype", "accelerator", "results", "shard_size")


def _run_config(path: str) -> tuple[dict, dict]:
    """(run options, settings groups) of a ``--config`` YAML: ``GROUP: {FIELD: VALUE}`` as ``--set``,
    plus optional ``dataset``, ``models``, ``compounds``, ``device``, ``dtype``, ``accelerator``, ``results``, ``shard_size``."""
    import yaml

    from hdpbench.pipeline.settings import GROUPS

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--config {file}: no such file")
    try:
        content = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as error:
        raise UsageError(f"--config {file}: not valid YAML ({error})") from None
    if not isinstance(content, dict):
        raise UsageError(f"--config {file}: expected a mapping of keys, got {type(content).__name__}")
    unknown = sorted(set(content) - set(GROUPS) - set(RUN_CONFIG_KEYS))
    if unknown:
        raise UsageError(f"--config {file}: unknown key(s) {', '.join(unknown)}; expected {', '.join([*RUN_CONFIG_KEYS, *GROUPS])}")
    options = {key: content[key] for key in RUN_CONFIG_KEYS if key in content}
    for key in ("models", "compounds"):
        value = options.get(key)
        if isinstance(value, str):
            options[key] = [value]
        elif value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise UsageError(f"--config {file}: {key}={value!r}: expected a name or a list of names")
    for key in ("dataset", "device", "dtype", "accelerator", "results"):
        if key in options and not isinstance(options[key], str):
            raise UsageError(f"--config {file}: {key}={options[key]!r}: expected text")
    if "shard_size" in options and (isinstance(options["shard_size"], bool) or not isinstance(options["shard_size"], int) or options["shard_size"] < 1):
        raise UsageError(f"--config {file}: shard_size={options['shard_size']!r}: expected an integer ≥ 1")
    return options, {group: content[group] for group in GROUPS if group in content}


def _run_request(args):
    """The run's options and settings: defaults, then ``--config``, then the command line; every value
    type-checked and the models validated before any work (UsageError → exit 2). The dataset and the
    compounds are validated by the caller, which loads the dataset only when it needs it."""
    from hdpbench.pipeline.plan import require_models
    from hdpbench.pipeline.settings import RunSettings

    options, groups = _run_config(args.config) if args.config else ({}, {})
    source = f"--config {args.config}" if args.config else "settings"
    for key, value in {"dataset": args.dataset, "models": args.model, "compounds": args.compounds, "device": args.device,
                       "dtype": args.dtype, "accelerator": args.accelerator, "results": args.results,
                       "shard_size": args.shard_size}.items():  # fmt: skip
        if value is not None:
            options[key] = value  # the command line overrides the file
    for key, value in RUN_DEFAULTS.items():
        options.setdefault(key, value)
    if not options.get("models"):
        raise UsageError("no model: give --model NAME ... or `models:` in the --config file")
    if options.get("compounds") == []:
        raise UsageError("--compounds without names: give the formulas to run, or leave the option out for all of the dataset")
    if not isinstance(options.get("device"), str):
        raise UsageError(f"{source}: device={options.get('device')!r}: expected text such as cpu or cuda")
    _check_device(options["device"], f"{source}: device" if args.device is None and "device" in options else "--device",
                  available=not (args.estimate or args.dry_run))  # fmt: skip
    if options.get("dtype") not in (None, "float32", "float64"):
        raise UsageError(f"{source}: dtype={options['dtype']!r}: expected one of 'float32', 'float64'")
    from hdpbench.models.mace import ACCELERATORS

    if options.get("accelerator") not in (None, *ACCELERATORS):
        raise UsageError(f"{source}: accelerator={options['accelerator']!r}: expected one of {', '.join(map(repr, ACCELERATORS))}")
    settings = RunSettings.smoke() if args.smoke else RunSettings()
    if options.get("dtype"):
        settings = settings.with_dtype(options["dtype"])
    settings = settings.with_values(groups, source=source).with_overrides(args.set or [])
    require_models(options["models"])
    if args.smoke and options.get("results") is None:
        from hdpbench.core import paths

        options["results"] = str(paths.smoke_results_dir())  # smoke numbers never mix with real ones
    return options, settings


def cmd_run(args) -> int:
    from hdpbench.pipeline.plan import require_compounds, require_dataset
    from hdpbench.pipeline.runner import run

    options, settings = _run_request(args)
    if args.estimate:
        return _print_estimate(args, options, settings)
    data = require_dataset(options["dataset"])
    compounds = require_compounds(data, options.get("compounds"))
    if args.dry_run:
        from hdpbench.pipeline.plan import describe, format_plan

        described = describe(
            args.stage, data, options["models"], compounds, settings, results_root=options.get("results"),
            shard_size=options["shard_size"], device=options["device"], frames_per_compound=args.frames_per_compound,
        )  # fmt: skip
        if args.json:
            _print_json(described)
        else:
            print(format_plan(described))
        return 0
    failed, reports = False, []
    for model in options["models"]:
        report = run(
            args.stage, options["dataset"], model, compounds=compounds, settings=settings, device=options["device"],
            workers=args.workers, scheduler=args.scheduler, shard_size=options["shard_size"], results_root=options.get("results"),
            progress=not (args.quiet or args.json), accelerator=options.get("accelerator"),
        )  # fmt: skip
        reports.append(report)
        if not args.json:
            print(report.summary_line())
            for compound, error in sorted(report.failed.items()):
                print(f"  {compound}: {error}", file=sys.stderr)
        failed = failed or bool(report.failed)
    if args.json:
        _print_json({"stage": args.stage, "dataset": options["dataset"], "settings": settings.as_dict(), "smoke": args.smoke,
                     "runs": [dataclasses.asdict(r) for r in reports]})  # fmt: skip
    return 1 if failed else 0


def _format_sigma_reference(sigma: float | None, stored: float | None) -> str:
    if sigma is not None:
        return f"{sigma:.3f}"
    return f"{stored:.3f}*" if stored is not None and math.isfinite(stored) else "-"


def _print_estimate(args, options, settings) -> int:
    from hdpbench.pipeline.cost import format_estimate
    from hdpbench.pipeline.plan import estimate, require_compounds, require_dataset, workload
    from hdpbench.pipeline.stages import plan

    stages = [step.name.value for step, _ in plan(args.stage, settings)]
    if options["dataset"] == "hdp" and not options.get("compounds"):
        work = workload(settings, stages)  # the authors' full dataset, whether or not it is on this machine
    else:
        data = require_dataset(options["dataset"])
        names = require_compounds(data, options.get("compounds"))
        work = workload(settings, stages, data=data, names=names, frames_per_compound=args.frames_per_compound)
    result = estimate(work, stages, options["device"])
    if args.json:
        _print_json(result | {"stage": args.stage, "models": options["models"]})
    else:
        print(format_estimate(result, models=len(options["models"])))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from hdpbench.models.mace import ACCELERATORS
    from hdpbench.physics.md import MDSettings
    from hdpbench.physics.phonons import DEFAULT_SUPERCELL, PhononSettings

    phonon_defaults, md_defaults = PhononSettings(), MDSettings()  # the command line's defaults are the settings records'
    parser = argparse.ArgumentParser(
        prog="hdpbench",
        description="MACE models on halide double perovskites: phonons, anharmonicity score, MD, kernel maps.",
    )
    parser.add_argument("--version", action="version", version=f"hdpbench {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    data = commands.add_parser("data", help="reference datasets: list, fetch, inspect")
    data_commands = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    listing = data_commands.add_parser("list", help="registered datasets, or the compounds of one")
    listing.add_argument("--dataset", help="dataset name or folder (default: list the registered datasets)")
    listing.add_argument("--halide", choices=["F", "Cl", "Br", "I"], help="only compounds of this halide")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=cmd_data_list)

    fetching = data_commands.add_parser("fetch", help="download a dataset into its local mirror (checksummed)")
    fetching.add_argument("--dataset", required=True)
    fetching.set_defaults(func=cmd_data_fetch)

    show = data_commands.add_parser("show", help="load one compound and describe its record")
    show.add_argument("compound", help="formula, e.g. Cs2AgBiBr6")
    show.add_argument("--dataset", default="demo")
    show.add_argument("--discard", type=_count(0), default=100, help="frames dropped from the start of each MD file")
    show.add_argument("--no-md", action="store_true", help="skip the MD files (fast)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_data_show)

    models = commands.add_parser("models", help="the model registry")
    model_commands = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    model_listing = model_commands.add_parser("list", help="registered models, licences and whether weights are here")
    model_listing.add_argument("--json", action="store_true")
    model_listing.set_defaults(func=cmd_models_list)
    model_environment = model_commands.add_parser(
        "env", help="build (on first use) the own Python environment of a 'kind: isolated' model and print where it is"
    )
    model_environment.add_argument("name", help="registry name of a kind: isolated model (e.g. sevennet-0)")
    model_environment.add_argument("--json", action="store_true")
    model_environment.set_defaults(func=cmd_models_env)

    results = commands.add_parser("results", help="the results store: export a stage's results as a table")
    results_commands = results.add_subparsers(dest="results_command", metavar="ACTION", required=True)
    exporting = results_commands.add_parser(
        "export",
        help="one row per done or failed compound of a stage (every settings key, or --key), as CSV and/or JSON",
        description=(
            "One tidy row per compound of results/<dataset>/<model>/<stage>/<key>/: dataset, model, stage, "
            "settings_key, compound, status (done/failed), error_type, error, error_file, then the compound's "
            "JSON fields: scalars as they are, dicts flattened with a dot (name.sub), lists of at most 8 scalars "
            "as name[0], name[1], ...; longer lists (per-frame data) are left out."
        ),
    )
    exporting.add_argument("--dataset", required=True)
    exporting.add_argument("--model", required=True)
    exporting.add_argument("--stage", required=True, help="e.g. phonons, sigma-reference-frames, md, sigma-md, kpca, real-phonons")
    exporting.add_argument("--csv", metavar="FILE", help="write the rows to FILE (atomically)")
    exporting.add_argument("--json", action="store_true", help="print the rows as JSON on stdout (the summary line goes to stderr)")
    exporting.add_argument("--key", help="only this settings key (a unique prefix is enough); default: every key")
    exporting.add_argument("--results", help="results folder (default: HDPBENCH_RESULTS or results/)")
    exporting.set_defaults(func=cmd_results_export)

    phonons = commands.add_parser("phonons", help="harmonic phonons: compare force constants")
    phonon_commands = phonons.add_subparsers(dest="phonons_command", metavar="ACTION", required=True)
    compare = phonon_commands.add_parser("compare", help="RMSE(ω²), RMSE(v_g), MAE(f), stability, thermal errors")
    compare.add_argument("--unitcell", required=True, help="unit cell (POSCAR/CONTCAR or any ASE format)")
    compare.add_argument("--supercell", type=_count(1), nargs=3, metavar=("N1", "N2", "N3"), help=f"default: a phonopy yaml's own, else {' '.join(map(str, DEFAULT_SUPERCELL))}")
    compare.add_argument("--reference", required=True, help="force constants: hdf5, FORCE_CONSTANTS, FORCE_SETS, phonopy yaml")
    compare.add_argument(
        "--model", required=True,
        help="force constants to compare (any supported format), or a model (registry name or checkpoint): then Φ_model comes from its finite displacements",
    )
    compare.add_argument("--displacement", type=_displacement, default=phonon_defaults.displacement, help="Å, finite displacement for a model's Φ (default: the authors' phonon script, %(default)s)")
    compare.add_argument("--device", default="cpu")
    compare.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    compare.add_argument("--npoints", type=_count(1), default=phonon_defaults.points_per_segment, help="q-points per path segment")
    compare.add_argument("--unstable-below", type=_finite_float, default=phonon_defaults.unstable_below_thz, help="THz; lower frequencies mean unstable")
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(func=cmd_phonons_compare)

    sigma = commands.add_parser("sigma", help="anharmonicity score of a trajectory")
    sigma.add_argument("trajectory", help="FHI-vibes trajectory.nc, vasprun.xml, extxyz or ASE trajectory with forces")
    sigma.add_argument("--reference", help="undisplaced supercell (e.g. SPOSCAR); read from trajectory.nc if absent")
    sigma.add_argument("--force-constants", help="Φ of that supercell, any supported format")
    sigma.add_argument("--discard", type=_count(0), default=0, help="frames dropped from the start")
    sigma.add_argument("--model", help="also σ with this model's forces (registry name or checkpoint), with the reference Φ and its own Φ")
    sigma.add_argument("--displacement", type=_displacement, default=phonon_defaults.sigma_displacement, help="Å, finite displacement for the model's Φ (default: the authors' σ scripts, %(default)s)")
    sigma.add_argument("--device", default="cpu")
    sigma.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    sigma.add_argument("--json", action="store_true")
    sigma.set_defaults(func=cmd_sigma)

    md = commands.add_parser("md", help="batched NVT MD with an Andersen thermostat (ASE semantics)")
    md.add_argument("--structure", required=True, help="starting structure (any ASE format)")
    md.add_argument("--model", required=True, help="registry name or checkpoint path")
    md.add_argument("--temperature", type=_positive_float, default=md_defaults.temperature_K, help="K")
    md.add_argument("--steps", type=_count(0), default=md_defaults.steps)
    md.add_argument("--replicas", type=_count(1), default=2)
    md.add_argument("--seed", type=_count(0), default=0)
    md.add_argument("--timestep", type=_positive_float, default=md_defaults.timestep_fs, help="fs")
    md.add_argument("--andersen-prob", type=float, default=md_defaults.andersen_prob)
    md.add_argument("--write-every", type=_count(1), default=1, help="write a frame every k steps (with --output)")
    md.add_argument("--output", help="folder for replica_XXX.extxyz and the checkpoint (resumes if present)")
    md.add_argument("--device", default="cpu")
    md.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    md.add_argument("--accelerator", choices=ACCELERATORS, help="MACE tensor-product backend: e3nn (as trained) or cueq (cuEquivariance; CUDA kernels with cuequivariance-ops-torch-cu12); default $HDPBENCH_ACCELERATOR, else e3nn")
    md.add_argument("--set", action="append", metavar="md.FIELD=VALUE", help="any other MD setting, e.g. md.max_force=20 (repeatable; keys as in `hdpbench run --help`)")
    md.add_argument("--json", action="store_true")
    md.set_defaults(func=cmd_md)

    from hdpbench.pipeline.settings import setting_keys
    from hdpbench.pipeline.stages import STAGES

    running = commands.add_parser(
        "run",
        help="run a stage (and the stages it needs) for models on a dataset: sharded, resumable, serial or on Dask",
        description="Compounds are split into fixed shards; each shard's results are stored as they finish, "
        "and a rerun computes only what is missing. Settings: the authors' defaults, then --config, then "
        "--set. --dry-run prints the plan and writes no results; --estimate prints the cost from measured throughput.",
        epilog="settings keys (--set and --config): " + ", ".join(setting_keys()),
    )
    running.add_argument("stage", choices=list(STAGES))
    running.add_argument("--config", metavar="RUN.yaml", help="YAML: GROUP: {FIELD: VALUE} as --set, plus dataset, models, compounds, device, dtype, results, shard_size; the command line overrides it")
    running.add_argument("--dataset", help="dataset name or folder in the authors' layout (default: demo)")
    running.add_argument("--model", nargs="+", help="registry names or checkpoint paths")
    running.add_argument("--compounds", nargs="*", help="formulas (default: all of the dataset)")
    running.add_argument("--device", help="cpu (default), cuda (one worker per GPU), cuda:1, ...")
    running.add_argument("--dtype", choices=["float32", "float64"], help="every stage's floating-point type (default: float32)")
    running.add_argument("--accelerator", choices=ACCELERATORS, help="MACE tensor-product backend: e3nn (as trained) or cueq (cuEquivariance; CUDA kernels with cuequivariance-ops-torch-cu12); default $HDPBENCH_ACCELERATOR, else e3nn")
    cluster = running.add_mutually_exclusive_group()
    cluster.add_argument(
        "--workers", type=_count(0), help="Dask LocalCluster worker processes; 0 runs in this process (default: one per device, i.e. per GPU with --device cuda)"
    )
    cluster.add_argument("--scheduler", help="address of an existing Dask scheduler (e.g. from dask-jobqueue)")
    running.add_argument("--shard-size", type=_count(1), help="compounds per shard, fixed whatever the workers (default: 4)")
    running.add_argument("--results", help="results folder (default: HDPBENCH_RESULTS or results/)")
    running.add_argument("--set", action="append", metavar="GROUP.FIELD=VALUE", help="e.g. md.steps=500 (repeatable; see the keys below)")
    modes = running.add_mutually_exclusive_group()
    modes.add_argument("--dry-run", action="store_true", help="print the plan (stages, results folders, done and pending compounds, files, cost); nothing is computed and no results are written")
    modes.add_argument("--estimate", action="store_true", help="print the estimated cost and exit")
    running.add_argument("--smoke", action="store_true", help="tiny settings (every code path runs, the numbers mean nothing), results in their own folder (HDPBENCH_SMOKE_RESULTS)")
    running.add_argument(
        "--frames-per-compound",
        type=_count(1),
        help="for --estimate and --dry-run on a local dataset; default: counted in its production files",
    )
    running.add_argument("--json", action="store_true", help="machine-readable output (the plan, the estimate or the run reports)")
    running.add_argument("--quiet", action="store_true", help="no progress bar")
    running.set_defaults(func=cmd_run)

    tuning = commands.add_parser(
        "finetune",
        help="phonon fine-tuning (PFT) of a MACE model on reference force constants",
        description=(
            "Phonon fine-tuning (PFT): supervise the model's energy Hessian with the reference force constants "
            "of --train-compounds (random Φ columns per structure and step, each by a Hessian-vector product), "
            "co-trained on the base model's own training data against forgetting. Writes "
            "models/finetuned/NAME.model, its log NAME.log.json and the registry entry models/NAME.yaml "
            "(with a 'finetune' section). An interrupted run resumes where it stopped (same inputs)."
        ),
    )
    tuning.add_argument("--model", required=True, help="the base: a registered MACE model")
    tuning.add_argument("--dataset", required=True, help="where the force constants come from (e.g. demo, external)")
    tuning.add_argument("--train-compounds", nargs="+", required=True, metavar="NAME", help="compounds (or systems) whose Φ enters the loss")
    tuning.add_argument("--validation-compounds", nargs="*", metavar="NAME", help="compounds whose Φ error is only logged, never trained on")
    tuning.add_argument("--output", required=True, metavar="NAME", help="the new model's registry name")
    tuning.add_argument("--phi-weight", type=_positive_float, default=100.0, help="weight of the Φ-column MAE (PFT: 100)")
    tuning.add_argument("--energy-weight", type=float, default=20.0, help="co-training energy MAE per atom weight (PFT: 20)")
    tuning.add_argument("--force-weight", type=float, default=20.0, help="co-training force-error weight (PFT: 20)")
    tuning.add_argument("--epochs", type=_count(1), default=40)
    tuning.add_argument("--phonon-batch", type=_count(1), default=5, help="structures per Φ step")
    tuning.add_argument("--columns", type=_count(1), default=1, help="random Φ columns per structure and step (PFT: 1)")
    tuning.add_argument("--cotrain-steps", type=_count(0), default=1, help="co-training steps after each Φ step (0: none)")
    tuning.add_argument("--cotrain", metavar="FILE.extxyz", help="co-training data (default: the base's training set from its registry entry)")
    tuning.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate")
    tuning.add_argument("--seed", type=_count(0), default=0)
    tuning.add_argument("--device", default="cpu")
    tuning.add_argument("--json", action="store_true", help="print the summary and the training log as JSON")
    tuning.add_argument("--quiet", action="store_true")
    tuning.set_defaults(func=cmd_finetune)

    bench = commands.add_parser("bench", help="throughput benchmarks (printed ratios, optional JSON)")
    bench_commands = bench.add_subparsers(dest="bench_command", metavar="BENCHMARK", required=True)
    bench_evaluate = bench_commands.add_parser("evaluate", help="batched evaluation vs the ASE MACECalculator loop")
    bench_evaluate.add_argument("--quick", action="store_true", help="8 frames, 32-channel model, 1 repeat")
    bench_evaluate.add_argument("--frames", type=_count(1), default=32)
    bench_evaluate.add_argument("--repeats", type=_count(1), default=3)
    bench_evaluate.add_argument("--device", default="cpu")
    bench_evaluate.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    bench_evaluate.add_argument("--json", action="store_true", help="print the JSON report")
    bench_evaluate.add_argument("--output", help="also write the JSON report to this file")
    bench_evaluate.set_defaults(func=cmd_bench_evaluate)
    bench_calculator = bench_commands.add_parser(
        "calculator", help="a kind: ase model's batched inference vs its calculator one structure at a time (e.g. CHGNet)"
    )
    bench_calculator.add_argument("--model", default="chgnet-0.3.0")
    bench_calculator.add_argument("--quick", action="store_true", help="8 frames, 1 repeat")
    bench_calculator.add_argument("--frames", type=_count(1), default=32)
    bench_calculator.add_argument("--repeats", type=_count(1), default=3)
    bench_calculator.add_argument("--device", default="cpu")
    bench_calculator.add_argument("--json", action="store_true", help="print the JSON report")
    bench_calculator.add_argument("--output", help="also write the JSON report to this file")
    bench_calculator.set_defaults(func=cmd_bench_calculator)
    bench_isolation = bench_commands.add_parser(
        "isolation", help="a model in its own environment (worker over pipes) vs the same calculator in this process (CHGNet 0.3.0)"
    )
    bench_isolation.add_argument("--quick", action="store_true", help="4 frames, 1 repeat")
    bench_isolation.add_argument("--frames", type=_count(1), default=16, help="80-atom frames per force call")
    bench_isolation.add_argument("--repeats", type=_count(1), default=3)
    bench_isolation.add_argument("--device", default="cpu")
    bench_isolation.add_argument("--json", action="store_true", help="print the JSON report")
    bench_isolation.add_argument("--output", help="also write the JSON report to this file")
    bench_isolation.set_defaults(func=cmd_bench_isolation)
    bench_md = bench_commands.add_parser("md", help="batched device-resident Andersen MD vs the ASE Andersen loop (same draws)")
    bench_md_model = bench_md.add_mutually_exclusive_group()
    bench_md_model.add_argument("--model", default="demo-small-data", help="a registered MACE model")
    bench_md_model.add_argument(
        "--channels", type=_count(1), help="instead: a MACE of this width with random weights (128: the foundation models' width, read by the cost model)"
    )
    bench_md.add_argument("--quick", action="store_true", help="16 replicas, 5 steps")
    bench_md.add_argument("--replicas", type=_count(1), default=16)
    bench_md.add_argument("--steps", type=_count(0), default=20)
    bench_md.add_argument("--device", default="cpu")
    bench_md.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    bench_md.add_argument("--accelerator", choices=ACCELERATORS, help="backend of the batched MD's model (the ASE loop runs e3nn); default $HDPBENCH_ACCELERATOR, else e3nn")
    bench_md.add_argument("--replicas-per-call", default="auto", help="replicas per forward pass: an integer or 'auto'")
    bench_md.add_argument(
        "--compile", action="store_true", help="torch.compile the batched MD's model (compile time not timed); default $HDPBENCH_TORCH_COMPILE, else off"
    )
    bench_md.add_argument("--json", action="store_true", help="print the JSON report")
    bench_md.add_argument("--output", help="also write the JSON report to this file")
    bench_md.set_defaults(func=cmd_bench_md)
    bench_rematch = bench_commands.add_parser("rematch", help="batched REMatch kernel vs dscribe's REMatchKernel on real AIMD frames")
    bench_rematch.add_argument("--quick", action="store_true", help="20 frames, 1 repeat")
    bench_rematch.add_argument("--frames", type=_count(1), default=60)
    bench_rematch.add_argument("--repeats", type=_count(1), default=3)
    bench_rematch.add_argument("--dataset", default="demo")
    bench_rematch.add_argument("--compound", help="default: the dataset's first compound")
    bench_rematch.add_argument("--device", default="cpu", help="cpu (numpy on the cores) or a torch device such as cuda (dscribe stays on the CPU)")
    bench_rematch.add_argument("--json", action="store_true", help="print the JSON report")
    bench_rematch.add_argument("--output", help="also write the JSON report to this file")
    bench_rematch.set_defaults(func=cmd_bench_rematch)
    return parser


_TORCH_CHECKPOINT_PICKLE = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"  # torch.save's legacy format: protocol 2, its magic number


def _check_checkpoint_file(value: str) -> None:
    """A ``--model`` given as a file must look like a PyTorch checkpoint before anything unpickles it:
    a zip archive holding ``<name>/data.pkl`` (torch.save) or torch's legacy pickle. A text, empty,
    random, truncated or other zip file is a :class:`DataError` naming it (it was a traceback from
    deep inside torch.load; ``../../etc/passwd`` was unpickled)."""
    import zipfile

    from hdpbench.core.errors import DataError
    from hdpbench.models.registry import registered_models

    path = Path(value).expanduser()
    if value in registered_models() or not path.is_file() or _is_force_constant_file(value):
        return
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_TORCH_CHECKPOINT_PICKLE))
    except OSError as error:
        raise DataError(path, f"cannot read the model file ({error.strerror or error})") from None
    if not head:
        raise DataError(path, "empty file, not a model checkpoint")
    if head.startswith(_TORCH_CHECKPOINT_PICKLE):
        return
    if not head.startswith(b"PK"):
        raise DataError(path, "not a PyTorch checkpoint (neither a torch.save zip archive nor its legacy pickle): give a registry name or a MACE .model file")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError(path, f"a damaged or truncated checkpoint ({error})") from None
    if not any(name.count("/") == 1 and name.endswith("/data.pkl") for name in names):
        raise DataError(path, "a zip archive, but not a PyTorch checkpoint (no <name>/data.pkl inside)")


def _check_device(device: str | None, option: str = "--device", *, available: bool = True) -> None:
    """``device`` as torch reads it (cpu, cuda, cuda:N, ...), and, with ``available``, present on this
    machine: ``--device foo`` and ``--device cuda`` on a CPU-only torch were tracebacks, or a failure
    recorded per compound. A :class:`UsageError` (exit 2) otherwise."""
    if device is None or not available:  # --estimate / --dry-run: a label for the cost model's rates (e.g. rocm)
        return
    from hdpbench.core.torch_setup import prepare_torch

    torch = prepare_torch()
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"{option} {device!r}: not a device; expected cpu, cuda or cuda:N") from None
    if parsed.type == "cpu":
        return
    if parsed.type != "cuda":
        raise UsageError(f"{option} {device!r}: only cpu and cuda devices are supported")
    if not torch.cuda.is_available():
        build = "a CPU-only build of torch" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise UsageError(f"{option} {device!r}: {build} here (torch {torch.__version__}); use --device cpu")
    if parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise UsageError(f"{option} {device!r}: this machine has {torch.cuda.device_count()} GPU(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")


def _check_environment() -> None:
    """The HDPBENCH_* variables that shape every computation, checked once before any work (exit 2,
    naming the variable), instead of failing each compound in turn."""
    import os

    from hdpbench.core.torch_setup import default_threads
    from hdpbench.io.archive import ReadLimits
    from hdpbench.models.evaluate import default_torch_compile

    try:
        threads = default_threads()
        ReadLimits.from_environment()
        default_torch_compile()
    except (ValueError, HdpbenchError) as error:
        raise UsageError(str(error)) from None
    cores = os.cpu_count() or 1
    if os.environ.get("HDPBENCH_THREADS") and threads > cores:
        print(f"hdpbench: warning: HDPBENCH_THREADS={threads} is more than the {cores} cores here; torch's threads will compete for them (slower)", file=sys.stderr)


def _checked_before_work(args) -> None:
    """What every command's options must satisfy before it computes anything (UsageError: exit 2)."""
    _check_environment()
    models = getattr(args, "model", None)
    for model in [models] if isinstance(models, str) else models or []:
        _check_checkpoint_file(model)
    if args.command != "run":  # run: its device may come from --config, checked with its options
        _check_device(getattr(args, "device", None))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        _checked_before_work(args)
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not as an error at interpreter exit
        return code
    except KeyboardInterrupt:  # Ctrl-C: one line; every compound saved so far stays, a rerun resumes
        print("\nhdpbench: interrupted; finished results are kept, and a rerun continues from them", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the output went into a reader that stopped early (`| head`): no traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own advice for SIGPIPE
        return 1
    except UsageError as error:  # a bad option or setting: nothing was computed
        print(f"hdpbench: error: {error}", file=sys.stderr)
        return 2
    except HdpbenchError as error:
        print(f"hdpbench: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
