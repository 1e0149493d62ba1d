"""The package's layers hold: a module imports only from its own layer or lower ones (lazy imports
inside functions included), never a private name of another module, and no two modules import each
other at module level."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "hdpbench"
# lowest first: formats read files into core types, data registers datasets, models evaluate, physics
# computes, training fine-tunes, the pipeline runs stages, the demo generates the embedded data, the
# book shows results, the command line drives everything.
LAYERS = ["core", "io", "data", "models", "physics", "training", "pipeline", "demo", "book", "cli"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "core"  # the package itself: its version only
    return parts[1] if parts[1] in LAYERS else "cli"  # hdpbench.cli, hdpbench.__main__


def imports(path: Path) -> list[tuple[str, tuple[str, ...], bool]]:
    """(imported module, imported names, at module level) for every hdpbench import of ``path``."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "hdpbench":
            assert node.level == 0, f"{path}: relative import (use absolute hdpbench.* imports)"
            found.append((node.module, tuple(a.name for a in node.names), id(node) in top_level))
        elif isinstance(node, ast.Import):
            found += [(a.name, (), id(node) in top_level) for a in node.names if a.name.split(".")[0] == "hdpbench"]
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_layers_only_import_downwards():
    wrong = []
    for name, path in MODULES.items():
        for target, _, _ in imports(path):
            if LAYERS.index(layer(target)) > LAYERS.index(layer(name)):
                wrong.append(f"{name} ({layer(name)}) imports {target} ({layer(target)})")
    assert not wrong, "\n".join(wrong)


def test_no_private_names_across_modules():
    wrong = [
        f"{name} imports {target}.{imported}"
        for name, path in MODULES.items()
        for target, names, _ in imports(path)
        for imported in names
        if imported.startswith("_") and imported != "__version__" and target != name
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    """Module-level and lazy imports together: a lazy import that closes a cycle still couples two modules."""
    graph = {name: {t for t, _, _ in imports(path) if t in MODULES and t != name} for name, path in MODULES.items()}
    # `from hdpbench.x import module` names a submodule, not a cycle through the package's __init__
    cycles = []

    def visit(node, stack, on_stack, seen):
        seen.add(node)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt in on_stack:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in seen:
                visit(nxt, stack, on_stack, seen)
        stack.pop()
        on_stack.discard(node)

    seen: set[str] = set()
    for start in sorted(graph):
        if start not in seen:
            visit(start, [], set(), seen)
    assert not cycles, "\n".join(" → ".join(c) for c in cycles)


@pytest.mark.parametrize("layer_name", LAYERS[:-1])
def test_every_layer_is_a_subpackage(layer_name):
    assert (PACKAGE / layer_name / "__init__.py").is_file()


def test_the_facade_names_resolve_to_their_owners():
    import hdpbench

    for name, owner in hdpbench._FACADE.items():
        module = __import__(owner, fromlist=[name])
        assert getattr(hdpbench, name) is getattr(module, name)
    with pytest.raises(AttributeError, match="no_such_name"):
        hdpbench.no_such_name  # noqa: B018
