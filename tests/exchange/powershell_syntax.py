"""A real PowerShell grammar for the tests: does a script parse without syntax errors?

tree-sitter-powershell (PyPI) is the grammar; `syntax_errors` lists where the parse tree has
ERROR or MISSING nodes so a failing test points at the line.
"""

from __future__ import annotations

import functools

import tree_sitter
import tree_sitter_powershell


@functools.cache
def _parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


def syntax_errors(script: str) -> list[str]:
    """Every ERROR/MISSING node as "line N: <text>" (empty when the script parses)."""
    tree = _parser().parse(script.encode("utf-8"))
    if not tree.root_node.has_error:
        return []
    found: list[str] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            text = (node.text or b"").decode("utf-8", errors="replace")[:60]
            found.append(f"line {node.start_point[0] + 1}: {node.type} {text!r}")
        stack.extend(node.children)
    return found or ["the parse tree has an error"]


def assert_parses(script: str) -> None:
    errors = syntax_errors(script)
    assert not errors, "PowerShell syntax errors:\n" + "\n".join(errors)
