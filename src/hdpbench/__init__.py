"""hdpbench: MACE models on halide double perovskites — harmonic phonons, anharmonicity score σ,
model-only MD and configuration-space maps (a reproduction of Yang et al., PCCP 2026).

The package is layered (``core`` → ``io`` → ``data`` → ``models`` → ``physics`` → ``training`` →
``pipeline`` → ``demo`` → ``book``); the names most scripts need are also here, imported on first use::

    import hdpbench
    settings = hdpbench.RunSettings().with_overrides(["md.steps=500"])
    results = hdpbench.run_stage("sigma-md", "demo", "demo-small-data", settings=settings)
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hdpbench")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

# name → the module that owns it (imported lazily, so `import hdpbench` stays cheap)
_FACADE = {
    "get_dataset": "hdpbench.data.datasets",
    "load_model": "hdpbench.models.evaluate",
    "evaluate": "hdpbench.models.evaluate",
    "PhononSettings": "hdpbench.physics.phonons",
    "model_force_constants": "hdpbench.physics.phonons",
    "SigmaSettings": "hdpbench.physics.anharmonicity",
    "sigma": "hdpbench.physics.anharmonicity",
    "MDSettings": "hdpbench.physics.md",
    "BatchedAndersen": "hdpbench.physics.md",
    "KPCASettings": "hdpbench.physics.kpca",
    "configuration_map": "hdpbench.physics.kpca",
    "RunSettings": "hdpbench.pipeline.settings",
    "StageName": "hdpbench.pipeline.names",
    "STAGES": "hdpbench.pipeline.stages",
    "run_stage": "hdpbench.pipeline.stages",
    "run": "hdpbench.pipeline.runner",
}

__all__ = ["__version__", *_FACADE]


def __getattr__(name: str):
    if name in _FACADE:
        return getattr(import_module(_FACADE[name]), name)
    raise AttributeError(f"module 'hdpbench' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
