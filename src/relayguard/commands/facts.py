"""`relayguard facts HOST... [--json]`: what each Exchange server is and whether it relays.

Reads each host over WinRM (HTTPS, certificate validated, NTLM by default) with read-only
payloads, then judges the facts: relay exposure with reasons, and patch status. The password
comes only from an environment variable (`--password-env VAR`) or a prompt, never from argv.

`relayguard facts --capture DIR...` judges offline captures instead, with the same rules: the
Export-Clixml files that `relayguard facts --collector` (a read-only PowerShell script an
Exchange admin runs) writes. A file missing from a capture makes its facts unknown.

`relayguard facts --channel smb --username U --password-env VAR HOST` reads an Exchange 5.5
host on Windows NT 4.0 / 2000 (no WinRM there) over SMB with NTLM: the remote registry, the
service control manager and the C$ share (relayguard.exchange.smb_channel); same rules, same
facts.

`relayguard facts --channel via-management-host --management-host MGMT --management-username M
--management-password-env MVAR [--username U --password-env VAR] HOST` reads an Exchange 5.5
host through a Windows management host: WinRM to MGMT (--transport, --ca-trust-path and
--management-port apply to it), which reaches HOST with the remote registry, remote service
control and UNC paths, connecting as U when given (relayguard.exchange.management_host).

Exit statuses: 0 every host closed and patched; 2 any host relays or misses its fix;
3 any host could not be read or a deciding fact is unknown; 1 usage error.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from typing import Any

from relayguard.exchange.assess import (
    HostAssessment,
    assess,
    assess_capture,
    assess_runner,
    document,
    exit_status,
)
from relayguard.exchange.capture import COLLECTOR
from relayguard.exchange.connection import runner_for, winrm_options
from relayguard.exchange.patch_level import PatchPolicy
from relayguard.exchange.smb_channel import SmbOptions, assess_smb
from relayguard.exchange.transport import Secret
from relayguard.exchange.winrm_settings import CERT_VALIDATION, TRANSPORTS, winrm_settings
from relayguard.validate import InputError

EXIT_USAGE = 1
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$", re.ASCII)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "facts",
        help="detect Exchange servers over WinRM: build, patch status, relay exposure",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("hosts", nargs="*", metavar="HOST", help="host name or IP address")
    parser.add_argument("--json", action="store_true", help="print the JSON document")
    parser.add_argument(
        "--capture",
        action="append",
        default=[],
        metavar="DIR",
        help="judge an offline capture directory instead of a host (repeatable)",
    )
    parser.add_argument(
        "--collector",
        action="store_true",
        help="print the read-only PowerShell script that writes a capture, and exit",
    )
    parser.add_argument("--username", metavar="USER", help="e.g. CORP\\admin or admin@corp")
    parser.add_argument(
        "--password-env",
        metavar="VAR",
        help="environment variable holding the password (default: prompt)",
    )
    parser.add_argument(
        "--channel",
        choices=("winrm", "smb", "via-management-host"),
        default="winrm",
        help="winrm (Exchange 2013+, or 5.5 twins), smb (Exchange 5.5 on NT 4.0 / 2000) or "
        "via-management-host (Exchange 5.5 through a Windows management host)",
    )
    parser.add_argument("--management-host", metavar="MGMT", help="the Windows management host")
    parser.add_argument("--management-port", type=int, help="its WinRM port (default 5986)")
    parser.add_argument("--management-username", metavar="USER", help="its WinRM account")
    parser.add_argument(
        "--management-password-env",
        metavar="VAR",
        help="environment variable holding the management host's password",
    )
    parser.add_argument("--transport", choices=TRANSPORTS, default="ntlm")
    parser.add_argument(
        "--port", type=int, help="WinRM port (default 5986 for HTTPS); SMB port (default 445)"
    )
    parser.add_argument("--ca-trust-path", metavar="FILE", help="CA bundle (PEM) to trust")
    parser.add_argument(
        "--server-cert-validation",
        choices=CERT_VALIDATION,
        default="validate",
        help="'ignore' leaves the host unauthenticated (default: validate)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, metavar="S", help="bound on each command"
    )
    parser.add_argument(
        "--patch-policy",
        choices=[p.value for p in PatchPolicy],
        default=PatchPolicy.LATEST.value,
        help="2013+: the CUs a compliant build may be on (default: latest)",
    )
    parser.set_defaults(func=run)


def _password(args: argparse.Namespace) -> Secret | None:
    if args.password_env is not None:
        # The value is never echoed: a password typed here by mistake (or as an abbreviated
        # "--password") must not reach the terminal.
        if not _ENV_NAME.match(args.password_env):
            raise InputError("--password-env", "***", "is not an environment variable name")
        value = os.environ.get(args.password_env)
        if value is None:
            raise InputError("--password-env", "***", "names a variable that is not set")
        return Secret(value)
    if args.username is None or args.transport in ("kerberos", "certificate"):
        return None
    if not sys.stdin.isatty():
        raise InputError("--password-env", None, "is needed: no terminal to prompt on")
    return Secret(getpass.getpass(f"password for {args.username}: "))


def _yes(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def render_text(assessment: HostAssessment) -> str:
    if assessment.error is not None or assessment.facts is None:
        return f"{assessment.host}: error: {assessment.error}"
    facts = assessment.facts
    build = facts.build
    level = "unknown"
    if build is not None and build.product is not None:
        level = f"{build.product} {build.level or 'unknown build'}"
        if build.security_update:
            level += f" {build.security_update}"
    lines = [f"{assessment.host} ({facts.computer_name}): {level}, version {facts.version}"]
    if build is not None:
        lines.append(f"  supported: {_yes(build.supported)}")
    if facts.msexcimc is not None:
        lines.append(f"  msexcimc.exe: {facts.msexcimc.version}")
    if facts.exchange_shell is not None:
        lines.append(f"  Exchange shell: {facts.exchange_shell}")
    if assessment.patch is not None:
        required = assessment.patch.required
        lines.append(
            f"  patch: {assessment.patch.state.value}"
            + ("" if required is None else f" (required {required})")
        )
        lines.extend(f"    {reason}" for reason in assessment.patch.reasons)
    if assessment.exposure is not None:
        lines.append(f"  relay: {assessment.exposure.verdict.value}")
        for finding in assessment.exposure.findings:
            mark = "OPEN" if finding.opens_relay else "note"
            lines.append(f"    [{mark}] {finding.subject}: {finding.reason} ({finding.source})")
        unknown = [
            f"{c.subject}: {c.reason}" for c in assessment.exposure.checks if c.result == "unknown"
        ]
        unknown += [u for u in assessment.exposure.unknowns if u not in unknown]
        lines.extend(f"    [unknown] {u}" for u in unknown)
        passed = [c.id for c in assessment.exposure.checks if c.result == "pass"]
        if passed:
            lines.append(f"    passed: {', '.join(passed)}")
    lines.extend(f"  note: {note}" for note in facts.notes)
    return "\n".join(lines)


def _print(results: list[HostAssessment], as_json: bool) -> int:
    if as_json:
        print(json.dumps(document(results), indent=2))
    else:
        print("\n".join(render_text(result) for result in results))
    return exit_status(results)


def _run_smb(args: argparse.Namespace) -> int:
    try:
        if not args.username:
            raise InputError("--username", None, "is needed for --channel smb")
        password = _password(args)
        if password is None:
            raise InputError("--password-env", None, "is needed for --channel smb")
        port = 445 if args.port is None else args.port
        if not 0 < port < 65536:
            raise InputError("--port", port, "is not a TCP port")
        domain, _, user = args.username.rpartition("\\")
        options = [
            SmbOptions(host, user, password, port=port, domain=domain, timeout=args.timeout)
            for host in args.hosts
        ]
    except InputError as exc:
        print(f"relayguard facts: {exc}", file=sys.stderr)
        return EXIT_USAGE
    policy = PatchPolicy(args.patch_policy)
    return _print([assess_smb(option, policy=policy) for option in options], args.json)


def _run_via_management(args: argparse.Namespace) -> int:
    try:
        if not args.management_host:
            raise InputError("--management-host", None, "is needed for via-management-host")
        target = _password(args) if args.password_env else None
        management_password = _password(
            argparse.Namespace(
                password_env=args.management_password_env,
                username=args.management_username,
                transport=args.transport,
            )
        )
        runners = []
        for host in args.hosts:
            params: dict[str, Any] = {
                "winrm_host": host,
                "winrm_username": args.username if target is not None else None,
                "winrm_password": None if target is None else target.reveal(),
                "winrm_transport": args.transport,
                "ca_path": args.ca_trust_path,
                "validate_certs": args.server_cert_validation == "validate",
                "winrm_command_timeout": args.timeout,
                "channel": "via-management-host",
                "management_host": args.management_host,
                "management_port": args.management_port,
                "management_username": args.management_username,
                "management_password": None
                if management_password is None
                else management_password.reveal(),
            }
            runners.append((host, runner_for(params, winrm_options(params))))
    except InputError as exc:
        print(f"relayguard facts: {exc}", file=sys.stderr)
        return EXIT_USAGE
    policy = PatchPolicy(args.patch_policy)
    return _print([assess_runner(r, host, policy=policy) for host, r in runners], args.json)


def run(args: argparse.Namespace) -> int:
    if args.collector:
        sys.stdout.write(COLLECTOR.read_text(encoding="utf-8"))
        return 0
    if bool(args.hosts) == bool(args.capture):
        print("relayguard facts: give HOST... or --capture DIR, not both", file=sys.stderr)
        return EXIT_USAGE
    if args.capture:
        policy = PatchPolicy(args.patch_policy)
        return _print([assess_capture(d, policy=policy) for d in args.capture], args.json)
    if args.channel == "smb":
        return _run_smb(args)
    if args.channel == "via-management-host":
        return _run_via_management(args)
    try:
        password = _password(args)
        options = [
            winrm_settings(
                host,
                port=args.port,
                transport=args.transport,
                user=args.username,
                password=password,
                ca_trust_path=args.ca_trust_path,
                server_cert_validation=args.server_cert_validation,
                command_timeout=args.timeout,
            )
            for host in args.hosts
        ]
    except InputError as exc:
        print(f"relayguard facts: {exc}", file=sys.stderr)
        return EXIT_USAGE
    policy = PatchPolicy(args.patch_policy)
    return _print([assess(option, policy=policy) for option in options], args.json)
