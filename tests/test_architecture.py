"""The package's layers only point down (docs/architecture.md), checked on the source."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cclnn"

# each layer may import its own and lower layers only
LAYERS = [
    {"errors", "atomic", "config", "color", "stats", "cpu", "memory"},
    {"resize", "metrics", "losses", "models", "data", "assets"},
    {"weights", "manifest", "detect", "inference", "evaluate", "factory", "upscaling", "upscale",
     "export"},
    {"engine"},
    {"experiments", "analysis", "bench", "speed"},
    {"cli", "web", "__main__"},  # web: the `cclnn serve` app, beside the CLI
]


def _layer(top: str) -> int:
    for level, names in enumerate(LAYERS):
        if top in names:
            return level
    raise AssertionError(f"cclnn.{top} is in no layer of tests/test_architecture.py")


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        yield path, rel.parts


def _imports(path: Path, parts: tuple[str, ...]):
    """(top-level package module imported, line) for every import of cclnn's own modules."""
    tree = ast.parse(path.read_text())
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[:len(package) - node.level + 1])
                target = base + (node.module.split(".") if node.module else [])
                if not target:  # "from . import x" in cclnn/__init__: x is the module
                    target = [node.names[0].name]
                yield target[0], node.lineno
            elif node.module and node.module.split(".")[0] == "cclnn":
                rest = node.module.split(".")[1:] or [node.names[0].name]
                yield rest[0], node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "cclnn" and "." in alias.name:
                    yield alias.name.split(".")[1], node.lineno


@pytest.mark.parametrize("path, parts", list(_modules()), ids=lambda v: "/".join(v)
                         if isinstance(v, tuple) else "")
def test_imports_point_down(path, parts):
    if parts == ("__init__",):
        return  # the public API gathers from every layer
    own = _layer(parts[0])
    upward = [(top, line) for top, line in _imports(path, parts) if _layer(top) > own]
    assert not upward, f"{path.name} imports upwards: {upward}"


def test_only_the_cli_knows_argparse():
    users = [p.relative_to(PACKAGE) for p, parts in _modules()
             if parts[0] != "cli" and "argparse" in {
                 a.name for n in ast.walk(ast.parse(p.read_text()))
                 if isinstance(n, ast.Import) for a in n.names}]
    assert not users


def test_files_and_functions_stay_small():
    long_files, long_functions = [], []
    for path, _ in _modules():
        text = path.read_text()
        if text.count("\n") > 400 and "LONG FILE:" not in text:
            long_files.append(path.name)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 > 80:
                    long_functions.append(f"{path.name}:{node.name}")
    assert not long_functions
    assert not long_files


def test_the_library_never_imports_the_web_app():
    """Not even the public API (cclnn/__init__): starlette stays an optional extra."""
    users = [path.name for path, parts in _modules() if parts[0] not in ("cli", "web")
             and any(top == "web" for top, _ in _imports(path, parts))]
    assert not users
