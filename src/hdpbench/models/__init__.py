"""Model layer: the model registry (one YAML per model), MACE checkpoints and ASE calculators behind
one batched evaluator, and neighbour lists."""
