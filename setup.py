"""Build hook: ship the model and dataset registries inside the package.

The registries live at the repository root (``models/*.yaml``, ``datasets/*.yaml``), where the
project edits them and the YAMLs' relative paths (``models/demo/...``, ``data/...``) make sense.
Package data cannot reach outside ``src/``, so ``build_py`` copies them into
``hdpbench/registries/models/`` and ``hdpbench/registries/datasets/`` of the wheel, where
:mod:`hdpbench.core.paths` finds them. Everything else is configured in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
REGISTRIES = ("models", "datasets")


class BuildPyWithRegistries(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's own folders
        for kind in REGISTRIES:
            files = sorted((HERE / kind).glob("*.yaml"))
            if not files:
                raise SystemExit(f"setup.py: no registry files in {HERE / kind} (expected {kind}/*.yaml)")
            target = Path(self.build_lib, "hdpbench", "registries", kind)
            self.mkpath(str(target))
            for file in files:
                self.copy_file(str(file), str(target / file.name))


setup(cmdclass={"build_py": BuildPyWithRegistries})
