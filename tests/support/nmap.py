"""The peer: run nmap 7.93's `smtp-open-relay` script and read which of its 16 tests relayed.

nmap only says which (MAIL FROM, RCPT TO) pairs relayed (with -vv) or why it stopped; this
harness rebuilds the script's test table (scripts/smtp-open-relay.nse,
docs/sources.md#nmap-smtp-open-relay) to turn those pairs back into nmap's test numbers
1..16. It is a model of nmap for the agreement
tests and deliberately shares nothing with relayguard's catalog.

Flags on loopback: `-S SRC` alone fails ("Could not figure out what device to send the packet
out on") because 127.x.y.z other than 127.0.0.1 is not an interface address, so `-e lo` is
needed too; `-Pn` skips host discovery and `-n` reverse DNS. As root nmap SYN-scans the port,
then the script connects from SRC (seen as the client address in Postfix's log).
"""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from support.realserver import tool_path

NMAP_FROM = "antispam"  # smtp-open-relay.from default
NMAP_TO = "relaytest"  # smtp-open-relay.to default

# Lua: string.match(response, "%d+%s([%w]+[%w%.-]*)") on the banner.
_SRVNAME = re.compile(r"\d+\s([A-Za-z0-9]+[A-Za-z0-9.\-]*)")
_RELAYED_LINE = re.compile(r"^MAIL FROM:<(.*?)> -> RCPT TO:<(.*)>$")
_OPEN_HEADER = re.compile(r"^Server is an open relay \((\d+)/16 tests\)$")
_CLOSED = "Server doesn't seem to be an open relay, all tests failed"
_AUTH = "Server isn't an open relay, authentication needed"


class NmapConclusion(StrEnum):
    """What nmap's script said about the server."""

    OPEN = "open"  # "Server is an open relay (k/16 tests)"
    CLOSED = "closed"  # "... all tests failed": all 16 ran, none relayed
    AUTH_REQUIRED = "auth_required"  # some reply contained 530
    ERROR = "error"  # the run broke off (connection closed, timeout, ...) with nothing relayed
    NO_RESULT = "no_result"  # the script produced no output (port closed, not SMTP)


def srvname_from_banner(banner: str) -> str | None:
    """SRVNAME as nmap derives it from the 220 greeting."""
    found = _SRVNAME.search(banner)
    return found.group(1) if found else None


def nmap_pairs(ip: str, srvname: str, domain: str = "example.com") -> dict[int, tuple[str, str]]:
    """nmap's 16 tests as (MAIL FROM argument, RCPT TO argument) exactly as sent, by number."""
    f, t, d, i, s = NMAP_FROM, NMAP_TO, domain, ip, srvname
    pairs = [
        ("", f"{t}@{d}"),
        (f"{f}@{d}", f"{t}@{d}"),
        (f"{f}@{s}", f"{t}@{d}"),
        (f"{f}@[{i}]", f"{t}@{d}"),
        (f"{f}@[{i}]", f"{t}%{d}@[{i}]"),
        (f"{f}@[{i}]", f"{t}%{d}@{s}"),
        (f"{f}@[{i}]", f'"{t}@{d}"'),
        (f"{f}@[{i}]", f'"{t}%{d}"'),
        (f"{f}@[{i}]", f"{t}@{d}@[{i}]"),
        (f"{f}@[{i}]", f'"{t}@{d}"@[{i}]'),
        (f"{f}@[{i}]", f"{t}@{d}@{s}"),
        (f"{f}@[{i}]", f"@[{i}]:{t}@{d}"),
        (f"{f}@[{i}]", f"@{s}:{t}@{d}"),
        (f"{f}@[{i}]", f"{d}!{t}"),
        (f"{f}@[{i}]", f"{d}!{t}@[{i}]"),
        (f"{f}@[{i}]", f"{d}!{t}@{s}"),
    ]
    return {n: (f"<{mail}>", f"<{rcpt}>") for n, (mail, rcpt) in enumerate(pairs, start=1)}


@dataclass(frozen=True)
class NmapRelayRun:
    """One run of smtp-open-relay against one port."""

    command: tuple[str, ...]
    output: str
    conclusion: NmapConclusion
    relayed_pairs: tuple[tuple[str, str], ...]  # ("<from>", "<to>") as nmap printed them
    error: str | None  # the message nmap ended on, if the run broke off

    def relayed_numbers(self, pairs: Mapping[int, tuple[str, str]]) -> frozenset[int]:
        """nmap test numbers whose pair nmap reported as relayed."""
        unknown = set(self.relayed_pairs) - set(pairs.values())
        if unknown:
            raise ValueError(f"nmap reported pairs that are not in its table: {sorted(unknown)}")
        return frozenset(n for n, pair in pairs.items() if pair in self.relayed_pairs)


def parse_script_output(
    output: str,
) -> tuple[NmapConclusion, tuple[tuple[str, str], ...], str | None]:
    """Read the script's text: conclusion, relayed pairs (needs -vv), and a trailing error."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    if not lines:
        return NmapConclusion.NO_RESULT, (), None
    if lines[0] == _CLOSED:
        return NmapConclusion.CLOSED, (), None
    if lines[0] == _AUTH:
        return NmapConclusion.AUTH_REQUIRED, (), None
    if _OPEN_HEADER.match(lines[0]):
        pairs: list[tuple[str, str]] = []
        error: str | None = None
        for line in lines[1:]:
            found = _RELAYED_LINE.match(line)
            if found:
                pairs.append((f"<{found.group(1)}>", f"<{found.group(2)}>"))
            else:  # the script appends the error that ended a partly successful run
                error = line
        return NmapConclusion.OPEN, tuple(pairs), error
    return NmapConclusion.ERROR, (), "\n".join(lines)


def script_output_from_xml(xml_text: str, port: int) -> str:
    """The smtp-open-relay output for `port` in nmap's -oX document ('' if absent)."""
    root = ET.fromstring(xml_text)  # noqa: S314 - nmap's own output, produced by this test
    finished = root.find("runstats/finished")
    if finished is not None and finished.get("exit") == "error":
        raise RuntimeError(f"nmap failed: {finished.get('errormsg')}")
    for port_element in root.iterfind("host/ports/port"):
        if port_element.get("portid") != str(port):
            continue
        for script in port_element.iterfind("script"):
            if script.get("id") == "smtp-open-relay":
                return script.get("output", "")
    return ""


def run_smtp_open_relay(
    address: str,
    port: int,
    source: str,
    *,
    domain: str = "example.com",
    interface: str = "lo",
    timeout: float = 180.0,
) -> NmapRelayRun:
    """Run nmap's smtp-open-relay from `source` (bounded by `timeout`) and read its result."""
    command = (
        tool_path("nmap"),
        "-Pn",
        "-n",
        "-p",
        str(port),
        "-S",
        source,
        "-e",
        interface,
        "--script",
        "smtp-open-relay",
        "--script-args",
        f"smtp-open-relay.domain={domain}",
        "--script-timeout",
        f"{int(timeout)}s",
        "-vv",
        "-oX",
        "-",
        address,
    )
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout + 30, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"nmap exited {completed.returncode}: {completed.stderr.strip()}")
    output = script_output_from_xml(completed.stdout, port)
    conclusion, pairs, error = parse_script_output(output)
    return NmapRelayRun(command, output, conclusion, pairs, error)
