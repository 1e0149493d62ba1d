"""Physics layer: harmonic phonons from finite displacements, the anharmonicity score σ, batched
Andersen MD and SOAP–REMatch kernel-PCA maps. Each module owns its settings object."""
