"""The demo dataset's summary database and validation report, computed from the packed archives.

``double_halide_pv.db`` mirrors the authors' summary database (ASE db, ``uid = dpv_<formula>``), so
the demo is read by exactly the same code as the authors' data. Its ``sigma_300K_single`` follows the
authors' convention (their ``collect_data.py``): one pooled ratio of standard deviations over every
frame of every ``vasprun_prod*.xml``, none dropped, reference forces and Φ_ref. The paper's σ_DFT of
Fig. 3 is another number (⟨σ(t)⟩ over ``_1`` and ``_2`` after dropping 100 steps each), kept here as
``sigma_paper_frames``. ``validation.json`` records, per compound,
the relaxed lattice constant beside a literature value where one is known, the minimum Γ frequency
and σ_ref with its class, and every compound the generator rejected with the reason.

    python -m hdpbench.demo.summary [--dataset-root data/demo]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from hdpbench.core.storage import atomic_write_json
from hdpbench.io.authors import DEFAULT_DISCARD, SUMMARY_DB, FrameSet
from hdpbench.physics.anharmonicity import sigma, sigma_class
from hdpbench.physics.phonons import acoustic_sum_rule_violation, make_phonopy

CLASS_NAMES = ["weakly anharmonic (σ < 0.5)", "strongly anharmonic (0.5 ≤ σ ≤ 1)", "dynamically unstable (σ > 1)"]


def compound_rows(dataset_root: Path, discard: int = DEFAULT_DISCARD) -> dict[str, dict[str, Any]]:
    from hdpbench.data.datasets import get_dataset

    dataset = get_dataset(dataset_root)
    rows = {}
    for formula in dataset.compounds():
        compound = dataset.load(formula, discard=0, frames=FrameSet.ALL)
        generation = dataset.generation_record(formula)
        relaxation = generation.get("relaxation", {})
        stored = sigma(compound.trajectory, compound.reference_supercell, compound.force_constants)
        paper_frames = dataset.load(formula, discard=discard, frames=FrameSet.PAPER)
        paper = sigma(paper_frames.trajectory, compound.reference_supercell, compound.force_constants)
        # measured on the Φ_ref the archive ships (not copied from the generator's record)
        phonon = make_phonopy(compound.unitcell, compound.supercell_matrix, compound.force_constants)
        force_constants = generation.get("force_constants", {})
        rows[formula] = {
            "halide": compound.halide,
            "sigma_300K_single": float(stored.sigma_pooled),
            "sigma_paper_frames": float(paper.sigma_mean_per_frame),
            "sigma_class": CLASS_NAMES[int(sigma_class(stored.sigma_pooled))],
            "frames": len(compound.trajectory),
            "G_min_ph_freq": min(generation.get("gamma_frequencies_thz", [float("nan")])),
            "gamma_acoustic_max_thz": acoustic_sum_rule_violation(phonon)["gamma_acoustic_max_thz"],
            "force_constants_symmetrized": bool(force_constants.get("symmetrized", False)),
            "gamma_acoustic_max_thz_before_symmetrization": force_constants.get("gamma_acoustic_max_thz_raw"),
            "a_relaxed": relaxation.get("a_relaxed"),
            "a_literature": relaxation.get("a_literature"),
            "literature_source": relaxation.get("literature_source"),
            "x_relaxed": relaxation.get("x_relaxed"),
            "reference_method": generation.get("reference_method"),
        }
    return rows


def write_summary_db(path: Path, rows: dict[str, dict[str, Any]]) -> None:
    """Write the ASE database atomically (a half-written db would be read as the dataset's summary)."""
    import ase.db
    from ase import Atoms

    fd, tmp_name = tempfile.mkstemp(prefix=".summary.", suffix=".db", dir=path.parent)
    os.close(fd)
    os.unlink(tmp_name)  # ASE creates the file itself
    try:
        with ase.db.connect(tmp_name, type="db") as db:
            for formula, row in rows.items():
                values = {k: v for k, v in row.items() if v is not None and k not in ("sigma_class", "literature_source", "reference_method", "halide")}
                db.write(Atoms(), uid=f"dpv_{formula}", method="GFN1-xTB", **values)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def build(dataset_root: Path) -> dict[str, Any]:
    from hdpbench.demo.compounds import outcomes

    rows = compound_rows(dataset_root)
    write_summary_db(dataset_root / SUMMARY_DB, rows)
    rejected = {formula: outcome for formula, outcome in outcomes().items() if outcome.startswith("failed")}
    previous = dataset_root / "validation.json"
    if previous.is_file():  # rebuilt without the generator's work folder: keep the rejections it recorded
        import json

        recorded = json.loads(previous.read_text()).get("rejected", {})
        rejected = {**{k: v for k, v in recorded.items() if k not in rows}, **rejected}
    classes = sorted({row["sigma_class"] for row in rows.values()})
    report = {
        "compounds": rows,
        "rejected": rejected,
        "sigma_classes_present": classes,
        "note": "σ_300K_single: the authors' database convention, one pooled ratio over every frame of every "
        "production file (none dropped); sigma_paper_frames: the paper's ⟨σ(t)⟩ over vasprun_prod_1.xml and _2.xml "
        "after dropping 100 steps each. Reference (GFN1-xTB) forces and Φ_ref. Not DFT.",
    }
    atomic_write_json(dataset_root / "validation.json", report)
    return report


def main(argv: list[str] | None = None) -> int:
    from hdpbench.data.datasets import registered_datasets

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset-root", help="default: the demo dataset's folder")
    args = parser.parse_args(argv)
    root = Path(args.dataset_root) if args.dataset_root else registered_datasets()["demo"].local_dir
    report = build(root)
    for formula, row in report["compounds"].items():
        literature = f" (literature {row['a_literature']:.2f})" if row["a_literature"] else ""
        print(
            f"{formula:12s} a = {row['a_relaxed']:.3f} Å{literature}, min Γ {row['G_min_ph_freq']:+.2f} THz, "
            f"σ_ref = {row['sigma_300K_single']:.3f} ({row['sigma_class']})"
        )
    for formula, reason in report["rejected"].items():
        print(f"{formula:12s} rejected: {reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
