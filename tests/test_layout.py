"""The layout's dependency rule, checked on the code itself: which layer may import which (every import,
lazy ones included), and that start-up layers load no torch. squeezecli/__init__.py draws the layers.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "squeezecli"

# Layer -> the layers it may import. A layer is a subpackage, or one module where the rule singles it out.
ALLOWED: dict[str, set[str]] = {
    "_version": set(),
    "errors": set(),
    "model.tensorfile": set(),
    "model.layout": {"errors"},
    "environment": {"errors"},
    "io": {"errors", "environment", "_version"},  # _version: the files squeeze writes say which squeeze wrote them
    "model": {"errors", "environment", "model.layout", "model.tensorfile"},
    "precision": {"errors", "environment", "model"},
    "store": {"errors", "environment", "_version", "model.layout", "model.tensorfile"},
    "model.loader": {"errors", "environment", "model", "precision", "store"},
    "tasks": {"errors", "environment", "io", "model"},
    "api": {"errors", "environment", "io", "model", "model.loader", "store", "tasks"},
    "integrations": {"errors", "environment", "io", "api"},
    "serve": {"errors", "environment", "_version", "io", "store", "api", "tasks"},
    "cli": {"errors", "environment", "_version", "io", "store", "model.loader", "api", "tasks", "precision",
            "integrations", "serve"},
    "squeezecli": {"_version", "api", "cli"},  # __init__ (load) and __main__ (python -m squeezecli)
}
for _layers in ALLOWED.values():  # what may use the model may use its torch-free files too
    if "model" in _layers or "model.loader" in _layers:
        _layers |= {"model.layout", "model.tensorfile"}
# Importing any module of these must not load torch (nor numpy): `squeeze --help`, Tab completion and
# `models list` go through them.
TORCH_FREE_PACKAGES = ("squeezecli.cli", "squeezecli.io", "squeezecli.store")
TORCH_FREE_MODULES = ("squeezecli", "squeezecli.environment", "squeezecli.errors", "squeezecli.tasks",
                      "squeezecli.serve", "squeezecli.serve.client", "squeezecli.tasks.base", "squeezecli.model.config", "squeezecli.model.layout",
                      "squeezecli.model.tensorfile", "squeezecli.api")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """"squeezecli.model.loader" -> "model.loader"; "squeezecli.store.cache" -> "store"; ..."""
    parts = module.split(".")[1:]
    if not parts or parts == ["__main__"]:
        return "squeezecli"
    if parts[:2] in (["model", "loader"], ["model", "layout"], ["model", "tensorfile"]):  # the rule singles them out
        return ".".join(parts[:2])
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


def test_the_rule_has_no_cycle():
    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})) for nxt in ALLOWED[start])

    cyclic = [layer for layer in ALLOWED if reaches(layer, layer, {layer})]
    assert cyclic == []


def test_every_package_says_what_it_owns_and_may_import():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "import" in doc.lower(), f"{init.relative_to(ROOT)} has no docstring saying what it may import"


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
