"""The layout's dependency rule, checked on the code itself (every import, lazy ones included): each
package's docstring says, in a "May import:" line, which layers it may import, and nothing else is
imported; no two packages import each other; within a package, no cycle of modules importing each other;
start-up layers load no torch. squeezecli/__init__.py draws the layers.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "squeezecli"

# The top-level modules, which have no package docstring to state their rule. A layer is a subpackage (its
# rule: its docstring's "May import:" line) or one of these modules.
MODULE_RULES: dict[str, set[str]] = {
    "_version": set(),
    "errors": set(),
    "environment": {"errors"},
    "api": {"errors", "environment", "io", "model", "assembly", "store", "tasks"},
    "squeezecli": {"_version", "api", "cli"},  # __init__ (load) and __main__ (python -m squeezecli)
}
# Importing any module of these must not load torch (nor numpy): `squeeze --help`, Tab completion and
# `models list` go through them.
TORCH_FREE_PACKAGES = ("squeezecli.cli", "squeezecli.io", "squeezecli.store", "squeezecli.checkpoint")
TORCH_FREE_MODULES = ("squeezecli", "squeezecli.environment", "squeezecli.errors", "squeezecli.tasks",
                      "squeezecli.tasks.base", "squeezecli.api", "squeezecli.precision.names",
                      "squeezecli.serve", "squeezecli.serve.client",  # the CLI's side of `squeeze serve`
                      "squeezecli.assembly.fetch")  # fetch: a pull of a cached entry loads no torch
MAY_IMPORT = re.compile(r"^May import:(.*?)(?:\.\s*$|\n\s*\n)", re.MULTILINE | re.DOTALL)
PACKAGES = sorted(init.parent for init in PACKAGE.glob("*/__init__.py"))


def stated_rule(package: Path) -> set[str] | None:
    """The layers a package's docstring says it may import (the backquoted names of its "May import:" line,
    which ends at a full stop or a blank line); None where it has no such line."""
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8"))) or ""
    found = MAY_IMPORT.search(doc)
    return None if found is None else set(re.findall(r"`([\w.]+)`", found.group(1)))


ALLOWED: dict[str, set[str]] = {**MODULE_RULES, **{package.name: stated_rule(package) or set() for package in PACKAGES}}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """"squeezecli.store.cache" -> "store"; "squeezecli.errors" -> "errors"; "squeezecli" -> "squeezecli"."""
    parts = module.split(".")[1:]
    if not parts or parts == ["__main__"]:
        return "squeezecli"
    return parts[0]


def imports_of(path: Path) -> list[str]:
    """Every squeezecli module `path` imports, at module level or inside a function."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("squeezecli")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("squeezecli"):
                target = node.module
            else:
                continue
            # `from . import cache` imports the module cache; `from .cache import Entry` imports from it.
            submodules = [f"{target}.{alias.name}" for alias in node.names if _is_module(f"{target}.{alias.name}")]
            found += submodules if len(submodules) == len(node.names) else [target, *submodules]
    return found


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[module_name(path) for path in MODULES])
def test_each_layer_imports_only_what_the_rule_allows(path):
    own = layer_of(module_name(path))
    assert own in ALLOWED, f"{module_name(path)} is in no layer of the rule"
    broken = sorted({target for target in imports_of(path)
                     if layer_of(target) not in ALLOWED[own] | {own}})
    assert broken == [], f"{module_name(path)} ({own}) imports {broken}, which the {own} layer may not"


@pytest.mark.parametrize("package", PACKAGES, ids=[package.name for package in PACKAGES])
def test_every_package_docstring_states_what_it_may_import(package):
    rule = stated_rule(package)
    assert rule is not None, f"squeezecli/{package.name}/__init__.py has no 'May import:' line in its docstring"
    unknown = sorted(rule - ALLOWED.keys())
    assert unknown == [], f"squeezecli/{package.name}/ says it may import {unknown}, which are no layers"


def test_the_rule_has_no_cycle():
    """No two layers may import each other, directly or round a longer loop."""
    assert _cycle({layer: ALLOWED[layer] for layer in ALLOWED}) is None


def test_no_two_packages_import_each_other():
    """The imports themselves, not only the rule: the graph of layers importing layers has no cycle."""
    graph: dict[str, set[str]] = {}
    for path in MODULES:
        own = layer_of(module_name(path))
        graph.setdefault(own, set()).update(layer_of(target) for target in imports_of(path))
    assert _cycle({layer: targets - {layer} for layer, targets in graph.items()}) is None


@pytest.mark.parametrize("package", PACKAGES, ids=[package.name for package in PACKAGES])
def test_no_modules_of_a_package_import_each_other(package):
    """Within a package the modules import one way too (a package's __init__ counts as one of its modules)."""
    prefix = f"squeezecli.{package.name}"
    graph = {module_name(path): {target for target in imports_of(path)
                                 if target == prefix or target.startswith(prefix + ".")} - {module_name(path)}
             for path in sorted(package.glob("*.py"))}
    assert _cycle(graph) is None


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` (node -> the nodes it points to) as the path round it, or None if it has none."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            if (found := visit(nxt, path + [node])) is not None:
                return found
        done.add(node)
        return None

    return next((found for node in sorted(graph) if (found := visit(node, [])) is not None), None)


def test_start_up_layers_load_no_torch():
    modules = [name for name in map(module_name, MODULES)
               if name in TORCH_FREE_MODULES or name.startswith(TORCH_FREE_PACKAGES)]
    probe = ("import importlib, sys\n"
             f"for name in {modules!r}:\n"
             "    importlib.import_module(name)\n"
             "print(sorted({'torch', 'numpy', 'tokenizers'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_no_module_is_longer_than_one_sitting():
    long = {module_name(path): n for path in MODULES if (n := len(path.read_text().splitlines())) > 420}
    assert long == {}
