"""Training layer: phonon fine-tuning (Hessian supervision, the PFT remedy) of registered MACE models."""
