"""The package's shape: imports flow one way (no cycles, no module imports a command), and the modules
that `tag` and `evaluate --model` load never import torch, read from the source with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import cli_without_torch

import hashtagger

PACKAGE = Path(hashtagger.__file__).parent
COMMANDS = {"cli", "train", "export", "evaluate", "explain"}  # may import anything below them, never each other
HEAVY = {"torch", "transformers", "safetensors", "onnx", "matplotlib", "timm"}
NEEDS_TORCH = {
    "model",
    "backbones",
    "features",
    "checkpoint",
    "distributed",
    "train",
    "export",
    "encoders",
    "archs",
} | {p.stem for p in PACKAGE.glob("arch_*.py")}


def imports(top_level_only: bool) -> dict[str, set[str]]:
    """module -> the package modules and third-party roots it imports ('.x' names stay bare: 'x')."""
    graph = {}
    for file in PACKAGE.glob("*.py"):
        tree = ast.parse(file.read_text())
        nodes = tree.body if top_level_only else ast.walk(tree)
        found = set()
        for node in nodes:
            if isinstance(node, ast.ImportFrom):
                if node.level == 0 or node.module:
                    found.add(node.module.split(".")[0])
                else:  # from . import metrics
                    found.update(a.name for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
        graph[file.stem] = found
    return graph


def ours(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def test_imports_have_no_cycles():
    graph = ours(imports(top_level_only=False))
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in path, "import cycle: " + " -> ".join([*path, module])
        if module in done:
            return
        for dep in graph[module]:
            visit(dep, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])


def test_no_module_imports_a_command():
    graph = ours(imports(top_level_only=False))
    for module, deps in graph.items():
        allowed = COMMANDS - {"cli"} if module == "cli" else {"cli"} if module == "__main__" else set()
        assert not (deps & COMMANDS) - allowed, f"{module} imports the command module(s) {deps & COMMANDS}"


def test_only_the_training_side_imports_torch_when_loaded():
    graph = imports(top_level_only=True)
    local = ours(graph)

    def reach(module: str, seen: set[str]) -> set[str]:
        if module in seen:
            return set()
        seen.add(module)
        found = graph[module] & HEAVY
        for dep in local[module]:
            found |= reach(dep, seen)
        return found

    heavy = {m for m in graph if reach(m, set())}
    assert heavy == NEEDS_TORCH


def test_evaluate_with_a_bundle_never_imports_torch(posts_dir, tiny_bundle):
    """`evaluate --model` in a fresh interpreter: ONNX Runtime only, like `tag`."""
    proc = cli_without_torch("evaluate", str(posts_dir), "--model", str(tiny_bundle), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "torch not imported" in proc.stderr
    assert "frequency prior" in proc.stdout


def test_readme_layout_lists_every_module_in_data_flow_order():
    """README's Layout names each module once, each after every module it imports."""
    readme = (PACKAGE.parent / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    listed = [line.split()[0].removesuffix(".py") for line in layout.splitlines() if line.startswith("      ")]
    graph = ours(imports(top_level_only=False))
    assert sorted(listed) == sorted(set(graph) - {"__init__", "__main__"})  # __main__: `python -m hashtagger`
    for position, module in enumerate(listed):
        later = set(listed[position:])
        assert not graph[module] & later, f"README lists {module} above {graph[module] & later}, which it imports"
