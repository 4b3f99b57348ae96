"""`relayguard probe`: judge hosts' relay behaviour from this vantage point.

Exit status (docs/exit-status.md): 0 every target closed, 2 at least one open,
3 none open but some inconclusive, 1 usage or internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from relayguard.probe import HostResult, ProbeOptions, confirm, probe_document, probe_targets
from relayguard.probe.fleet import probe_domains
from relayguard.probe.mx import DomainMail
from relayguard.probe.options import DEFAULT_EXTERNAL_DOMAIN, checked_options
from relayguard.probe.targets import Target, TargetError, expand_targets, parse_target
from relayguard.stdio import blocking_stdio
from relayguard.validate import InputError
from relayguard.validate import domain as validate_domain
from relayguard.validate import ip_address as validate_ip
from relayguard.vocabulary import Verdict

EXIT_CLOSED, EXIT_USAGE, EXIT_OPEN, EXIT_INCONCLUSIVE = 0, 1, 2, 3

_COLOURS = {
    Verdict.OPEN: "\033[1;31m",
    Verdict.CLOSED: "\033[32m",
    Verdict.INCONCLUSIVE: "\033[33m",
}
_RESET = "\033[0m"


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "probe",
        help="probe hosts for open relaying over SMTP",
        description="Run relayguard's relay test catalog against each TARGET and judge it "
        "open, closed or inconclusive.",
    )
    parser.add_argument(
        "targets", nargs="*", metavar="TARGET", help="host, IP, host:port or [IPv6]:port"
    )
    mail = parser.add_argument_group("domains (probe where a domain's mail goes)")
    mail.add_argument(
        "--domain",
        action="append",
        default=[],
        metavar="D",
        help="probe every address of every MX of D (no MX: D itself, RFC 5321 5.1; a null MX, "
        "RFC 7505, is reported, not probed) on each port (repeatable)",
    )
    mail.add_argument(
        "--family",
        choices=("4", "6", "both"),
        default="both",
        help="address family of the MX addresses probed (both)",
    )
    mail.add_argument(
        "--nameserver",
        metavar="ADDR[:PORT]",
        help="ask this DNS server instead of the system resolver's ([v6]:port for IPv6)",
    )
    parser.add_argument("--json", action="store_true", help="print the relayguard.probe/1 JSON")
    parser.add_argument("--port", type=int, default=25, help="default SMTP port (25)")
    parser.add_argument(
        "--ports",
        metavar="P,P,...",
        help="probe each target given without a port on every one of these ports, one result "
        "per port (e.g. 25,587,465; 465 is implicit TLS); overrides --port",
    )
    parser.add_argument("--source-address", metavar="IP", help="bind connections to this IP")
    parser.add_argument(
        "--external-domain",
        default=DEFAULT_EXTERNAL_DOMAIN,
        metavar="D",
        help=f"foreign domain of the relay recipients (default {DEFAULT_EXTERNAL_DOMAIN}, "
        "RFC 2606 reserved)",
    )
    parser.add_argument(
        "--local-domain",
        metavar="[TARGET=]D",
        action="append",
        default=[],
        help="a domain the servers accept mail for (default: the name in each banner); "
        "TARGET=D for one target (as given in TARGETS), repeatable",
    )
    parser.add_argument("--helo", metavar="NAME", help="EHLO/HELO name (default: external domain)")
    parser.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="seconds per reply (30)"
    )
    parser.add_argument(
        "--host-timeout", type=float, default=900.0, metavar="S", help="seconds per host (900)"
    )
    parser.add_argument(
        "--connections-per-host",
        type=int,
        default=4,
        metavar="N",
        help="at most N connections per host, opened only while replies are slow (4)",
    )
    parser.add_argument(
        "--max-hosts", type=int, default=256, metavar="N", help="hosts probed at once (256)"
    )
    parser.add_argument(
        "--no-pipelining", action="store_true", help="never use RFC 2920 PIPELINING"
    )
    parser.add_argument(
        "--rcpts-per-transaction",
        type=int,
        default=8,
        metavar="N",
        help="relay tests sharing a sender go in one transaction, one RCPT each (8; 1 = nmap)",
    )
    parser.add_argument("--no-starttls", action="store_true", help="never try STARTTLS")
    vantage = parser.add_argument_group("vantage (where the probe connects from)")
    vantage.add_argument(
        "--via",
        action="append",
        default=[],
        metavar="ssh://USER@HOST[:PORT]",
        help="open SMTP connections from this SSH jump host (repeatable; 'direct' = from here)",
    )
    vantage.add_argument("--ssh-key", type=Path, metavar="FILE", help="private key for --via")
    vantage.add_argument(
        "--known-hosts",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="known_hosts file(s) for --via (default ~/.ssh/known_hosts, /etc/ssh/...)",
    )
    vantage.add_argument(
        "--accept-unknown-host-key",
        action="store_true",
        help="trust a jump host whose key is not in known_hosts, for this run only",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show every test's reply")
    parser.add_argument(
        "--report",
        metavar="DIR",
        type=Path,
        help="also write a relayguard.report/1 run (JSON, JUnit, Markdown, HTML) under DIR",
    )
    confirm.add_arguments(parser)
    parser.set_defaults(func=run)


def _local_domains(values: Sequence[str]) -> tuple[str | None, dict[str, str]]:
    """--local-domain values: one plain D (every target) and TARGET=D entries."""
    plain = [v for v in values if "=" not in v]
    if len(plain) > 1:
        raise InputError("--local-domain", plain, "is given more than once without TARGET=")
    pairs = dict(v.split("=", 1) for v in values if "=" in v)
    return (plain[0] if plain else None), pairs


def _options(args: argparse.Namespace) -> ProbeOptions:
    local_domain, local_domains = _local_domains(args.local_domain)
    return checked_options(
        port=args.port,
        ports=args.ports,
        source_address=args.source_address,
        external_domain=args.external_domain,
        local_domain=local_domain,
        local_domains=local_domains or None,
        helo_name=args.helo,
        timeout=args.timeout,
        host_timeout=args.host_timeout,
        connections_per_host=args.connections_per_host,
        starttls=not args.no_starttls,
        pipelining=not args.no_pipelining,
        max_hosts_in_flight=args.max_hosts,
        rcpts_per_transaction=args.rcpts_per_transaction,
    )


def exit_status(results: Sequence[HostResult]) -> int:
    verdicts = {r.verdict for r in results}
    if Verdict.OPEN in verdicts:
        return EXIT_OPEN
    if Verdict.INCONCLUSIVE in verdicts:
        return EXIT_INCONCLUSIVE
    return EXIT_CLOSED


def _domain_line(mail: DomainMail) -> str:
    """The heading of a domain's rows: its exchangers, or why none is probed."""
    if mail.error is not None:
        return f"{mail.domain}: MX lookup failed: {mail.error}"
    if mail.null_mx:
        return f"{mail.domain}: null MX (RFC 7505): the domain accepts no mail; not probed"
    if mail.implicit_mx:
        return f"{mail.domain}: no MX; its own address records (RFC 5321 5.1)"
    names = ", ".join(f"{mx.name} ({mx.preference})" for mx in mail.exchangers)
    return f"{mail.domain}: MX {names}"


def render_table(
    results: Sequence[HostResult],
    colour: bool,
    verbose: bool,
    domains: Sequence[DomainMail] = (),
) -> str:
    several = len({r.vantage for r in results if r.domain is None}) > 1
    rows: list[tuple[str, str, str, str]] = [("TARGET", "VERDICT", "RELAYED", "REASON")]
    headings: dict[int, str] = {}  # row index -> the domain heading printed before it
    groups: list[tuple[DomainMail | None, list[HostResult]]] = [
        (None, [r for r in results if r.domain is None])
    ]
    groups += [(d, [r for r in results if r.domain == d.domain]) for d in domains]
    for mail, members in groups:
        if mail is not None:
            headings[len(rows)] = _domain_line(mail)
        for r in members:
            count = sum(1 for t in r.tests if t.outcome.value == "relayed")
            name = f"{r.target} via {r.vantage}" if several else r.target
            if r.mx is not None and r.mx != r.target:
                name = f"  {r.mx} {r.target}"
            rows.append((name, r.verdict.value, f"{count}/{len(r.tests)}", r.reason))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for index, (target, verdict, relayed, reason) in enumerate(rows):
        if index in headings:
            lines.append(headings.pop(index))
        cell = verdict.ljust(widths[1])
        if colour and index:
            cell = f"{_COLOURS[Verdict(verdict)]}{cell}{_RESET}"
        lines.append(f"{target.ljust(widths[0])}  {cell}  {relayed.ljust(widths[2])}  {reason}")
    lines.extend(headings.values())  # domains with nothing probed (null MX)
    if verbose:
        for r in results:
            lines.append(f"\n{r.target} ({r.banner.splitlines()[0] if r.banner else 'no banner'})")
            for t in r.tests:
                nmap = f"nmap {t.nmap:2d}" if t.nmap else "       "
                reply = (t.reply.splitlines() or [t.error])[0] if t.reply or t.error else ""
                lines.append(
                    f"  {t.outcome.value:13} {nmap}  MAIL FROM:{t.mail_from} RCPT TO:{t.rcpt_to}"
                    f"  -> {t.code or '---'} {reply}"
                )
            for f in r.rfc2505:
                lines.append(f"  RFC 2505 {f.section:8} {f.result.value:13} {f.id}: {f.detail}")
            for f in r.sender:
                lines.append(f"  sender            {f.result.value:13} {f.id}: {f.detail}")
    return "\n".join(lines)


def _progress(stream: TextIO, count: int) -> None:
    if count > 1 and stream.isatty():
        print(f"probing {count} hosts…", file=stream, flush=True)


def _domain_inputs(args: argparse.Namespace) -> tuple[list[str], tuple[str, int] | None]:
    """The --domain names and the --nameserver, checked (InputError, TargetError)."""
    if not args.targets and not args.domain:
        raise InputError("targets", "", "give at least one TARGET or --domain")
    if args.domain and args.via:
        raise InputError("domain", args.domain[0], "cannot be probed through --via yet")
    domains = list(dict.fromkeys(validate_domain("domain", d) for d in args.domain))
    if args.nameserver is None:
        return domains, None
    server = parse_target(args.nameserver, 53)
    validate_ip("nameserver", server.host)
    return domains, (server.host, server.port)


def _probe_via(
    args: argparse.Namespace, vantages: Any, targets: list[Target], options: ProbeOptions
) -> list[HostResult]:
    """The targets probed from each SSH vantage point (paramiko is loaded only here)."""
    from relayguard.vantage.many import probe_from
    from relayguard.vantage.ssh import SshSettings

    settings = SshSettings(
        known_hosts=tuple(args.known_hosts),
        accept_unknown_host_key=args.accept_unknown_host_key,
        key_file=args.ssh_key,
        connect_timeout=options.connect_timeout,
    )
    return probe_from(vantages, targets, options, settings)


def run(args: argparse.Namespace) -> int:
    try:
        options = _options(args)
        domains, nameserver = _domain_inputs(args)
        targets = expand_targets(args.targets, options.default_ports)
        if args.via:  # the SSH stack (paramiko) is loaded only when a vantage is asked for
            from relayguard.vantage.many import parse_vantages

            vantages = parse_vantages(args.via, options.source_address)
        confirming = confirm.checked_settings(args.confirm, args.sink, args.confirm_timeout)
    except (InputError, TargetError) as exc:
        print(f"relayguard probe: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _progress(sys.stderr, len(targets))
    started = datetime.now(UTC)
    if args.via:
        results = _probe_via(args, vantages, targets, options)
    else:
        results = probe_targets(targets, options) if targets else []
    mails: list[DomainMail] = []
    if domains:
        mails, found = probe_domains(domains, options, args.family, nameserver)
        results = [*results, *found]
    if confirming is not None:
        try:
            results = confirm.confirm_results(results, confirming, options)
        except confirm.ConfirmError as exc:
            print(f"relayguard probe: {exc}", file=sys.stderr)
            return EXIT_USAGE
    document = probe_document(results, options, mails)
    if args.report is not None:
        from relayguard.report import (
            ReportInvalid,
            ReportWriteError,
            report_from_probe,
            run_metadata,
            write_report,
        )

        try:
            metadata = run_metadata("probe", started=started, finished=datetime.now(UTC))
            run_dir = write_report(report_from_probe(document, metadata), args.report)
        except (ReportInvalid, ReportWriteError, OSError) as exc:
            print(f"relayguard probe: cannot write the report: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"report: {run_dir}", file=sys.stderr)
    blocking_stdio()  # a large document must not be cut short by a non-blocking pipe
    if args.json:
        # indented for a person; compact for a pipe, encoded in one piece: json.dump would take
        # the pure-Python encoder and write a fragment at a time (a fifth of a fleet probe's CPU)
        sys.stdout.write(json.dumps(document, indent=2 if sys.stdout.isatty() else None) + "\n")
    else:
        colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        print(render_table(results, colour, args.verbose, mails))
    return exit_status(results)
