"""Data layer: registered reference datasets (the authors' layout, reference systems) and the paper's
published numbers. Reads files through :mod:`hdpbench.io`; computes no physics with models."""
