"""hdpbench: MACE models on halide double perovskites — harmonic phonons, anharmonicity score σ,
model-only MD and configuration-space maps (a reproduction of Yang et al., PCCP 2026)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hdpbench")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
