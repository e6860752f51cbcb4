"""The package's imports point down the pipeline, and none hides inside a function.

Layers, lowest first: the shared base (config, errors, io, progress, runs, device, geometry)
-> data (and capture, beside it) -> teach -> distill -> localize -> bench -> demo. A module may import
its own layer or a lower one, always at module level (a function-level import
of a slocal module is how a cycle gets hidden).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "slocal"

# First component under ``slocal`` -> layer; the package itself is the base.
LAYERS = {
    "": 0,
    "config": 0,
    "errors": 0,
    "io": 0,
    "progress": 0,
    "runs": 0,
    "device": 0,
    "torch_io": 0,
    "onnx_runtime": 0,
    "geometry": 0,
    "data": 1,
    "capture": 1,  # slocal map: video/photos -> COLMAP scene; imports the base and data only
    "teach": 2,
    "distill": 3,
    "localize": 4,
    "bench": 5,
    "demo": 6,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    """Layer of a dotted slocal module name."""
    parts = module.split(".")
    assert parts[0] == "slocal", module
    top = parts[1] if len(parts) > 1 else ""
    if top not in LAYERS:
        raise AssertionError(f"{module}: no layer assigned (add it to LAYERS in {__file__})")
    return LAYERS[top]


def slocal_imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, int, bool]]:
    """``(imported module, line, inside a function)`` for every import of a slocal module."""
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(
                    (a.name, child.lineno, in_function) for a in child.names if a.name.split(".")[0] == "slocal"
                )
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.split(".")[0] == "slocal":
                    found.append((target, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def _is_type_checking_block(tree: ast.AST) -> set[int]:
    """Lines of imports under ``if TYPE_CHECKING:`` (annotations only, never executed)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            for sub in node.body:
                for n in ast.walk(sub):
                    if isinstance(n, (ast.Import, ast.ImportFrom)):
                        lines.add(n.lineno)
    return lines


def _violations() -> tuple[list[str], list[str]]:
    upward, nested = [], []
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(), filename=str(path))
        own = layer_of(module)
        type_only = _is_type_checking_block(tree)
        for target, line, in_function in slocal_imports(tree, module, path.name == "__init__.py"):
            where = f"{path.relative_to(SRC.parent)}:{line}"
            if layer_of(target) > own and line not in type_only:
                upward.append(f"{where}: {module} (layer {own}) imports {target} (layer {layer_of(target)})")
            if in_function:
                nested.append(f"{where}: {module} imports {target} inside a function")
    return upward, nested


def test_layer_map_covers_every_module():
    for path in SRC.rglob("*.py"):
        layer_of(_module_name(path))


def test_no_import_from_a_later_layer():
    upward, _ = _violations()
    assert not upward, "imports pointing up the pipeline:\n" + "\n".join(upward)


def test_no_function_level_import_of_a_slocal_module():
    _, nested = _violations()
    assert not nested, "function-level slocal imports (hidden cycles):\n" + "\n".join(nested)


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("from slocal.distill.trainer import x", "slocal.localize.localizer", [("slocal.distill.trainer", 1, False)]),
        ("def f():\n    import slocal.teach\n", "slocal.distill.trainer", [("slocal.teach", 2, True)]),
        ("from ..geometry import pose", "slocal.teach.sfm", [("slocal.geometry", 1, False)]),
        ("from . import blocks", "slocal.teach.dust3r", [("slocal.teach.dust3r", 1, False)]),
        ("import numpy\nfrom os import path", "slocal.io", []),
    ],
)
def test_import_walker(source, module, expected):
    # The walker itself must see absolute, relative and nested imports, or the tests above prove nothing.
    is_package = module == "slocal.teach.dust3r"
    assert slocal_imports(ast.parse(source), module, is_package) == expected


def test_layer_order():
    assert layer_of("slocal.geometry.pnp") < layer_of("slocal.data.scene") < layer_of("slocal.teach.sfm")
    assert layer_of("slocal.teach.sfm") < layer_of("slocal.distill.trainer") < layer_of("slocal.localize.localizer")
    assert layer_of("slocal.localize.localizer") < layer_of("slocal.bench.runner") < layer_of("slocal.demo")


def test_loading_a_model_does_not_import_the_trainer():
    # A fresh interpreter: what the localizer pulls in, not what other tests imported.
    code = (
        "import sys, slocal.localize.localizer, slocal.distill.model_file; "
        "print(sorted(m for m in ('slocal.distill.trainer', 'slocal.teach', 'rich') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC.parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
