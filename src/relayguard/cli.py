"""The `relayguard` command line: a thin dispatcher over one module per subcommand.

Each subcommand lives in `relayguard.commands.<name>` and exposes `register(subparsers)`,
which adds its parser and sets `func` (returning the exit status). Exit statuses are
documented in docs/exit-status.md. Test equipment plugs in its own subcommands through the
`relayguard.commands` entry-point group (pyproject.toml: `relayguard lab` is the lab's), so
the product never imports it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from relayguard import __version__

# One line per subcommand module; order is the order of `relayguard --help`.
COMMANDS: tuple[str, ...] = (
    "relayguard.commands.probe",
    "relayguard.commands.report",
    "relayguard.commands.build",
    "relayguard.commands.facts",
)
PLUGIN_GROUP = "relayguard.commands"

EXIT_USAGE = 1


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors; relayguard reserves 2 for 'open relay found'."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, just that subcommand's module is imported, so a probe does
    not pay for loading the WinRM stack (relayguard --help still lists every command)."""
    parser = _Parser(prog="relayguard", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"relayguard {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command, module in _commands().items():
        if only is None or command == only:
            importlib.import_module(module).register(sub)
    return parser


def _commands() -> dict[str, str]:
    """Subcommand -> its module: the product's, then those plugged in by entry point."""
    commands = {name.rsplit(".", 1)[-1]: name for name in COMMANDS}
    for point in entry_points(group=PLUGIN_GROUP):
        commands.setdefault(point.name, point.value)
    return commands


def _subcommand(argv: Sequence[str]) -> str | None:
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in _commands() else None


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_subcommand(args_list))
    args = parser.parse_args(args_list)
    try:
        status: int = args.func(args)
    except KeyboardInterrupt:
        print("relayguard: interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
