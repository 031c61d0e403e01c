"""The package's shape, read from the source with `ast`: folders stacked in data-flow order, each importing
only the floors below it; no module cycles; nothing imports the CLI; only models/, training/ and export/
pull torch in when loaded; and each folder's docstring names every module it holds."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import cli_without_torch

import hashtagger

PACKAGE = Path(hashtagger.__file__).parent
# Bottom to top. A folder may import the root modules (errors, version) and the folders before it; evaluation
# reaches models/ only inside `evaluate --checkpoint`'s function (a lazy import), never when loaded.
FLOORS = ["io", "data", "bundle", "models", "tagging", "review", "evaluation", "training", "export", "cli"]
SIDEWAYS = {("bundle", "models"), ("models", "bundle")}  # same floor, independent: neither imports the other
TORCH_FLOORS = {"models", "training", "export"}
HEAVY = {"torch", "transformers", "safetensors", "onnx", "matplotlib", "timm", "sklearn"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(top_level_only: bool) -> dict[str, set[str]]:
    """module -> the package modules and third-party roots it imports (from ... import x: x when a module)."""
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        nodes = tree.body if top_level_only else list(ast.walk(tree))
        found: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.level == 0, f"{name}: relative import (write hashtagger.x.y)"
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    found.add(full if full in MODULES else node.module)
                if not node.module.startswith("hashtagger"):
                    found.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                found.update(a.name if a.name.startswith("hashtagger") else a.name.split(".")[0] for a in node.names)
        graph[name] = found
    return graph


def ours(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {d for d in deps if d in MODULES and d != m and not m.startswith(d + ".")} for m, deps in graph.items()}


def floor(module: str) -> str | None:
    """The folder a module lives in; None for the root modules (errors, version, __init__, __main__)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else None


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


def test_each_floor_imports_only_the_floors_below_it():
    graph = ours(imports(top_level_only=False))
    for module, deps in graph.items():
        here = floor(module)
        for dep in deps:
            there = floor(dep)
            if here is None:  # the root: errors and version import nothing of ours; __init__ names lazily
                assert module in ("hashtagger", "hashtagger.__main__") or (there is None and dep != module), (
                    f"{module} imports {dep}"
                )
                continue
            if there is None or there == here:
                continue
            assert (here, there) not in SIDEWAYS, f"{module} ({here}/) imports {dep} ({there}/), a sideways floor"
            assert FLOORS.index(there) < FLOORS.index(here), f"{module} ({here}/) imports {dep}, a floor above it"


def test_nothing_imports_the_cli_and_tagging_never_imports_training_or_export():
    graph = ours(imports(top_level_only=False))
    for module, deps in graph.items():
        if module != "hashtagger.__main__" and floor(module) != "cli":
            assert not [d for d in deps if floor(d) == "cli"], f"{module} imports the CLI"
        if floor(module) in ("tagging", "evaluation", "bundle", "data", "io"):
            assert not [d for d in deps if floor(d) in ("training", "export")], f"{module} imports {deps}"


def test_only_the_torch_floors_import_torch_when_loaded():
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
    assert heavy, "the torch floors import torch"
    assert {floor(m) for m in heavy} <= TORCH_FLOORS, sorted(m for m in heavy if floor(m) not in TORCH_FLOORS)


def test_importing_hashtagger_changes_nothing_process_wide():
    """No import hook, no warnings filter, no csv limit: run in a fresh interpreter."""
    import subprocess
    import sys

    code = (
        "import csv, sys, warnings; hooks = list(sys.meta_path); filters = list(warnings.filters); "
        "import numpy, PIL.Image, onnxruntime, rich, tokenizers; filters = list(warnings.filters); "
        "limit = csv.field_size_limit(); import hashtagger, hashtagger.tagging.tagger, hashtagger.data.images; "
        "assert sys.meta_path == hooks, sys.meta_path; assert warnings.filters == filters, warnings.filters[:3]; "
        "assert csv.field_size_limit() == limit; print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def test_evaluate_with_a_bundle_never_imports_torch(posts_dir, tiny_bundle):
    """`evaluate --model` in a fresh interpreter: ONNX Runtime only, like `tag`."""
    proc = cli_without_torch("evaluate", str(posts_dir), "--model", str(tiny_bundle), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "torch not imported" in proc.stderr
    assert "frequency prior" in proc.stdout


def test_each_folder_says_what_lives_there():
    """Every folder's __init__ docstring names each of its modules and sub-folders."""
    for init in PACKAGE.rglob("__init__.py"):
        if init.parent == PACKAGE:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert doc, f"{init} has no docstring"
        members = [p.stem for p in init.parent.glob("*.py") if p.stem != "__init__"]
        members += [p.name + "/" for p in init.parent.iterdir() if (p / "__init__.py").exists()]
        missing = [m for m in members if m not in doc.replace("(", " ").replace(")", " ").replace(",", " ").split()]
        assert not missing, f"{init.parent.name}/__init__.py does not name {missing}"


def test_modules_and_functions_stay_short_enough_to_read_at_once():
    """No module over 450 lines; no function over 80, counting a typer command's body, not its signature."""
    for name, path in MODULES.items():
        source = path.read_text()
        assert source.count("\n") <= 450, f"{name} has {source.count(chr(10))} lines"
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = node.lineno if floor(name) != "cli" else node.body[0].lineno
                length = (node.end_lineno or node.lineno) - first + 1
                assert length <= 80, f"{name}.{node.name} is {length} lines long"
