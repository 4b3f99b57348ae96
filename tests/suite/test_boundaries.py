"""The lab is test equipment: it imports only relayguard.vocabulary from the product, and the
product (src/relayguard outside lab/, plugins/) never imports the lab.

Every import statement is read from the syntax tree (module level and inside functions), so a
lazy import counts as much as one at the top of a file; so does a module named in a string
(`importlib.import_module("relayguard.lab...")`, `python -m relayguard.lab...`).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "relayguard"
LAB = SRC / "lab"
LAB_MAY_IMPORT = ("relayguard.vocabulary",)


def _modules(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def _product_modules() -> list[Path]:
    product = [p for p in _modules(SRC) if LAB not in p.parents]
    return product + _modules(REPO / "plugins")


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in `path`; `from a import b` yields a.b and a."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _is_within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_walk_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from relayguard.lab import fleet\n", encoding="utf-8")
    assert (2, "relayguard.lab.fleet") in list(_imports(module))


def test_the_walk_sees_what_the_lab_must_not_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from relayguard import __version__, vocabulary\n", encoding="utf-8")
    names = {name for _, name in _imports(module)}
    assert names == {"relayguard", "relayguard.__version__", "relayguard.vocabulary"}


def test_there_are_modules_on_both_sides() -> None:
    assert len(_modules(LAB)) > 20
    assert len(_product_modules()) > 50


@pytest.mark.parametrize("path", _modules(LAB), ids=lambda p: str(p.relative_to(SRC)))
def test_the_lab_imports_only_the_vocabulary_from_the_product(path: Path) -> None:
    wrong = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for line, name in _imports(path)
        if _is_within(name, "relayguard")
        and not _is_within(name, "relayguard.lab")
        and not any(_is_within(name, allowed) for allowed in LAB_MAY_IMPORT)
        and name != "relayguard"  # `from relayguard import vocabulary` yields relayguard too
    ]
    assert wrong == []


@pytest.mark.parametrize("path", _product_modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_the_product_never_imports_the_lab(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    named = [
        f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"relayguard\.lab(\.\w+)*", node.value)
    ]
    imported = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for line, name in _imports(path)
        if _is_within(name, "relayguard.lab")
    ]
    assert imported == []
    assert named == []
