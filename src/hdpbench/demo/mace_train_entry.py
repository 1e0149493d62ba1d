"""``mace_run_train`` (mace-torch's training entry point), after the torch set-up e3nn needs here."""

from hdpbench.core.torch_setup import prepare_torch

if __name__ == "__main__":
    prepare_torch()  # e3nn 0.4.4 under torch ≥ 2.6 needs `slice` among the safe globals before import
    from mace.cli.run_train import main

    main()
