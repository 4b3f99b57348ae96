"""`relayguard build VERSION [--json]`: explain an Exchange build from the catalog.

For 2013 and later it also gives the patch level (docs/exchange.md#patch-level): how many
updates of its CU the build is behind, the newest one (build and KB), and whether the build
is compliant under --patch-policy (latest: the newest CU only; cu_n_minus_1: also the CU
before it). Exit statuses: 0 the build is in the catalog; 3 it is not (reported as unknown with the
nearest known builds: inconclusive, never guessed); 1 the version (or --msexcimc, --as-of)
is malformed.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from typing import Any

from relayguard.exchange.catalog import (
    BuildExplanation,
    InvalidVersionError,
    explain,
    load_catalog,
    parse_version,
)
from relayguard.exchange.patch_level import PatchLevel, PatchPolicy, patch_level
from relayguard.validate import quoted

EXIT_KNOWN = 0
EXIT_USAGE = 1
EXIT_UNKNOWN = 3


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "build",
        help="explain an Exchange build number (product, CU/SP, update, support, relay fix)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "version", help="e.g. 15.2.1544.4, 5.5.2653 or 'Version 15.2 (Build 1544.4)'"
    )
    parser.add_argument("--json", action="store_true", help="print the explanation as JSON")
    parser.add_argument(
        "--msexcimc",
        metavar="FILEVERSION",
        help="Exchange 5.5 only: the file version of msexcimc.exe (decides the relay fix)",
    )
    parser.add_argument(
        "--as-of",
        metavar="YYYY-MM-DD",
        help="judge support on this day instead of today",
    )
    parser.add_argument(
        "--patch-policy",
        choices=[p.value for p in PatchPolicy],
        default=PatchPolicy.LATEST.value,
        help="2013+: the CUs a compliant build may be on (default: latest)",
    )
    parser.set_defaults(func=run)


def _yes_no(value: bool | None, unknown: str = "unknown") -> str:
    return unknown if value is None else ("yes" if value else "no")


def render_patch(level: PatchLevel) -> list[str]:
    """The patch level's lines of the text explanation."""
    compliant = {True: "yes", False: "no", None: "unknown"}[level.compliant]
    lines = [f"  patch level: compliant {compliant} (policy {level.policy.value})"]
    if level.updates_behind is not None:
        lines.append(
            f"  behind: {level.security_updates_behind} SU(s), "
            f"{level.updates_behind - (level.security_updates_behind or 0)} HU(s) of its CU"
        )
    if level.newest_for_level is not None:
        lines.append(f"  newest for {level.level}: {level.newest_for_level.label}")
    if level.newest is not None and level.newest != level.newest_for_level:
        lines.append(f"  newest available: {level.newest.label}")
    if level.target is not None and level.target != level.newest_for_level:
        lines.append(f"  required: {level.target.label}")
    lines.extend(f"  patch: {reason}" for reason in level.reasons)
    return lines


def render_text(result: BuildExplanation, patch: PatchLevel | None = None) -> str:
    """The human-readable explanation (one fact a line)."""
    if result.product is None:
        head = f"{result.version}: unknown (not an Exchange version this catalog covers)"
    elif not result.known:
        head = f"{result.version}: {result.product}, unknown build"
    else:
        level = (
            result.level
            if result.security_update is None
            else (f"{result.level} {result.security_update}")
        )
        head = f"{result.version}: {result.product} {level}"
    lines = [head]
    if result.known:
        lines.append(f"  released: {result.released or 'no date in the source'}")
    else:
        nearest = [f"below {result.nearest_below}"] if result.nearest_below else []
        nearest += [f"above {result.nearest_above}"] if result.nearest_above else []
        lines.append(f"  nearest known builds: {', '.join(nearest) or 'none'}")
    lines.append(f"  supported: {_yes_no(result.supported)}")
    # Exchange 5.5 has relay fixes a build can prove; for 2013 and later the question is moot.
    relay = _yes_no(result.relay_fix) if result.fixes else "not applicable"
    lines.append(f"  relay fix: {relay}")
    if result.msexcimc:
        lines.append(f"  msexcimc.exe: {result.msexcimc}")
    lines.extend(
        f"  {fix.id} ({fix.kb}): {_yes_no(fix.present)} ({fix.basis})" for fix in result.fixes
    )
    if result.kb:
        lines.append(f"  kb: {result.kb}")
    if patch is not None:
        lines.extend(render_patch(patch))
    if result.source:
        lines.append(f"  source: {result.source}")
    lines.extend(f"  note: {note}" for note in result.notes)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        as_of = date.fromisoformat(args.as_of) if args.as_of else date.today()
    except ValueError:
        print(
            f"relayguard build: --as-of: not a date (YYYY-MM-DD): {quoted(args.as_of)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    # Each value on its own first, so the error names the one that is wrong.
    for name, text in (("version", args.version), ("--msexcimc", args.msexcimc)):
        try:
            if text is not None:
                parse_version(text)
        except InvalidVersionError as exc:
            print(f"relayguard build: {name}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        result = explain(args.version, as_of=as_of, msexcimc=args.msexcimc)
    except InvalidVersionError as exc:
        print(f"relayguard build: {exc}", file=sys.stderr)
        return EXIT_USAGE
    policy = PatchPolicy(args.patch_policy)
    level = patch_level(load_catalog(), parse_version(args.version), policy=policy, as_of=as_of)
    if args.json:
        doc = result.to_dict()
        doc["patch_level"] = None if level is None else level.to_dict()
        print(json.dumps(doc, indent=2))
    else:
        print(render_text(result, level))
    return EXIT_KNOWN if result.known else EXIT_UNKNOWN
