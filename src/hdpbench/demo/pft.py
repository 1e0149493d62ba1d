"""The phonon fine-tuning experiments behind the book's page "Can Hessian supervision fix it?".

Each experiment is one ``hdpbench finetune`` run (:func:`hdpbench.training.finetune.finetune_registered`):

* the two demo models fine-tuned on Φ_ref of five demo compounds (:data:`TRAIN_COMPOUNDS`); the
  three others (:data:`HELDOUT_COMPOUNDS`, one per halide family) never enter the Hessian loss and
  are only logged;
* ``kcl-small`` (a small MACE trained here on real VASP forces of randomly displaced KCl supercells)
  fine-tuned on the DFT force constants of KCl (fc222).

``make demo-model`` runs them after the base models (``python -m hdpbench.demo.pft``); ``make book``
only reads the committed checkpoints. A finished experiment whose checkpoint matches its registry
sha256 is skipped; an interrupted one resumes (:mod:`hdpbench.training.finetune`).

    python -m hdpbench.demo.pft [--only NAME ...] [--epochs N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field

from hdpbench.training.finetune import FinetuneSettings

# One fluoride held out beside the only chloride and iodide: every halide family the loss never saw
# (the bromide and four fluorides, the strongly anharmonic Rb2NiAgF6 among them, are trained on).
TRAIN_COMPOUNDS = ("Cs2AgBiBr6", "Cs2NaRuF6", "K2NaAlF6", "K2RbSbF6", "Rb2NiAgF6")
HELDOUT_COMPOUNDS = ("Cs2NaInCl6", "Cs2NaBiI6", "Rb3AlF6")

DEMO_SETTINGS = FinetuneSettings(epochs=60, phonon_batch=1, columns_per_structure=2, cotrain_steps=1, learning_rate=1e-3, seed=0)
KCL_SETTINGS = FinetuneSettings(epochs=60, phonon_batch=1, columns_per_structure=4, cotrain_steps=1, energy_weight=0.0, learning_rate=1e-3, seed=0)


@dataclass(frozen=True)
class Experiment:
    output: str
    base: str
    dataset: str
    train: tuple[str, ...]
    validation: tuple[str, ...] = ()
    settings: FinetuneSettings = field(default_factory=FinetuneSettings)


EXPERIMENTS = (
    Experiment("demo-small-data-pft", "demo-small-data", "demo", TRAIN_COMPOUNDS, HELDOUT_COMPOUNDS, DEMO_SETTINGS),
    Experiment("demo-more-data-pft", "demo-more-data", "demo", TRAIN_COMPOUNDS, HELDOUT_COMPOUNDS, DEMO_SETTINGS),
    # kcl-small was trained on forces only (Lee & Xia), so its co-training has no energy term either
    Experiment("kcl-small-pft", "kcl-small", "external", ("KCl",), (), KCL_SETTINGS),
)


def experiment(name: str) -> Experiment:
    for item in EXPERIMENTS:
        if item.output == name:
            return item
    raise KeyError(f"no fine-tuning experiment {name!r}; there are {[e.output for e in EXPERIMENTS]}")


def is_done(item: Experiment) -> bool:
    """Whether the registered fine-tuned checkpoint is present, intact and made from the base model
    registered now (a retrained base makes its fine-tuned version stale)."""
    from hdpbench.core.storage import sha256_file
    from hdpbench.models.registry import expected_checkpoint_path, registered_models

    specs = registered_models()
    spec, base = specs.get(item.output), specs.get(item.base)
    if spec is None or not spec.sha256 or base is None:
        return False
    if spec.extra.get("finetune", {}).get("base_sha256") != base.sha256:
        return False
    path = expected_checkpoint_path(spec)
    return path.is_file() and sha256_file(path) == spec.sha256


def run(item: Experiment, *, epochs: int | None = None) -> dict:
    from hdpbench.demo.train import cotrain_structures
    from hdpbench.training.finetune import finetune_registered

    settings = item.settings if epochs is None else dataclasses.replace(item.settings, epochs=epochs)
    finished, registry = finetune_registered(
        item.base, dataset=item.dataset, train_compounds=list(item.train), output=item.output,
        validation_compounds=list(item.validation), settings=settings, cotrain_loader=cotrain_structures,
    )  # fmt: skip
    return {"name": item.output, "registry": str(registry), "seconds": finished.seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="experiments to run (default: all)")
    parser.add_argument("--epochs", type=int, help="override the epoch count (e.g. 1 for a smoke run)")
    parser.add_argument("--force", action="store_true", help="rerun even when the registered checkpoint is present")
    args = parser.parse_args(argv)
    chosen = [experiment(name) for name in args.only] if args.only else list(EXPERIMENTS)
    done = []
    for item in chosen:
        if is_done(item) and not args.force:
            print(f"{item.output}: checkpoint present and registered, skipped")
            continue
        done.append(run(item, epochs=args.epochs))
    print(json.dumps(done, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
