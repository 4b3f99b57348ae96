"""`relayguard lab up | down | status`: the lab of emulated Exchange servers and real Postfix.

Contract (issue 3): `lab up [--json] [--fleet NAME | --hosts SPEC] [--dir .lab]` starts the
fleet in the background and returns when every listener answers; `lab down` stops everything
it started and frees the addresses; `lab status` says what runs. Exit statuses: 0 ok;
`status`: 0 up and every listener answers, 3 up but something does not answer, 1 not up;
1 on any error (one line on stderr).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

from relayguard.lab.fleet import control, planning
from relayguard.lab.fleet.layout import LabDir

DEFAULT_DIR = ".lab"
SHOWN = 64  # characters of an oversized --first-address the error shows


def _absolute(text: str) -> Path:
    """The lab directory as an absolute path: Postfix instances need absolute paths."""
    return Path(text).absolute()


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("lab", help="run the lab fleet (Exchange twins, Postfix)")
    actions = parser.add_subparsers(dest="lab_action", required=True)

    up = actions.add_parser("up", help="start the fleet in the background")
    which = up.add_mutually_exclusive_group()
    which.add_argument("--fleet", default="default", choices=sorted(planning.FLEETS))
    which.add_argument("--hosts", metavar="SPEC", help="e.g. exchange2019:300,postfix:2")
    up.add_argument(
        "--first-address",
        default=planning.FIRST_ADDRESS,
        metavar="IP",
        help="first loopback address of the fleet (127.0.30.1-127.0.58.254)",
    )
    up.add_argument(
        "--tarpit",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="seconds the Exchange 2013+ twins wait before error replies "
        "(Exchange's TarpitInterval is 5; the lab default 0 is for speed)",
    )
    up.add_argument(
        "--restart-seconds",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how long an emulated service restart keeps SMTP down",
    )
    up.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS")
    for sub in (
        up,
        actions.add_parser("down", help="stop the fleet"),
        actions.add_parser("status", help="show what runs"),
    ):
        sub.add_argument("--dir", default=DEFAULT_DIR, type=_absolute, help="lab directory (.lab)")
        sub.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def first_address(value: str) -> str:
    """--first-address: an IPv4 address inside the lab's loopback range."""
    shown = repr(value)
    if len(shown) > SHOWN + 16:
        shown = f"{shown[:SHOWN]}…({len(value):,} characters)"
    try:
        address = ipaddress.ip_address(value).compressed
    except ValueError:
        raise control.LabError(f"--first-address: {shown} is not an IP address") from None
    if not planning.in_lab_range(address):
        raise control.LabError(
            f"--first-address: {shown} is outside the lab range "
            f"{planning.FIRST_ADDRESS}-{planning.LAST_ADDRESS}"
        )
    return address


def run(args: argparse.Namespace) -> int:
    lab = LabDir(args.dir)
    try:
        if args.lab_action == "up":
            if args.tarpit < 0 or args.restart_seconds < 0:
                raise control.LabError("--tarpit and --restart-seconds must not be negative")
            options = control.UpOptions(
                fleet=args.fleet,
                hosts=args.hosts,
                first_address=first_address(args.first_address),
                tarpit_seconds=args.tarpit,
                restart_seconds=args.restart_seconds,
                timeout=args.timeout,
            )
            doc = control.up(lab, options)
            _print_up(doc, args.json)
            return 0
        if args.lab_action == "down":
            doc = control.down(lab)
            print(
                json.dumps(doc)
                if args.json
                else ("lab is down" if doc["was_up"] else "lab was not up")
            )
            return 0
        doc = control.status(lab)
        _print_status(doc, args.json)
        if not doc["up"]:
            return 1
        healthy = doc["daemon_running"] or all(h["group"] == "postfix" for h in doc["hosts"])
        answers = all(h["smtp_answers"] and h.get("winrm_answers", True) for h in doc["hosts"])
        return 0 if healthy and answers else 3
    except (control.LabError, OSError, ValueError) as exc:
        print(f"relayguard lab {args.lab_action}: {exc}", file=sys.stderr)
        return 1


def _print_up(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    if doc["already_up"]:
        print("lab is already up; nothing changed", file=sys.stderr)
    print(f"inventory: {doc['inventory']}  (CA: {doc['ca']})")
    for host in doc["hosts"]:
        winrm = host.get("winrm", "-")
        print(
            f"  {host['name']:<28} {host['platform']:<13} smtp {host['smtp']:<20} "
            f"winrm {winrm}  expected {host['expected']}"
        )
    for name in doc["left_out"]:
        print(f"  {name}: left out (Postfix hosts need root)", file=sys.stderr)


def _print_status(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    if not doc["up"]:
        print("lab is not up")
        return
    state = "running" if doc["daemon_running"] else "NOT running"
    print(f"lab up (fleet {doc['fleet']}), daemon {state}")
    for host in doc["hosts"]:
        smtp = "answers" if host["smtp_answers"] else "DOWN"
        print(f"  {host['name']:<28} smtp {host['smtp']:<20} {smtp}")
