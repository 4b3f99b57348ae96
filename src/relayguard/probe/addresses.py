"""Address forms the probe needs: SRVNAME as nmap derives it, IMCEA encapsulation, literals."""

from __future__ import annotations

import ipaddress
import re

# nmap smtp-open-relay.nse: srvname = first word after the code in the banner
# (Lua `%d+%s([%w]+[%w%.-]*)`), else from the EHLO reply (`%d+%-([%w]+[%w%.-]*)`).
_BANNER_NAME = re.compile(r"\d+\s([A-Za-z0-9]+[A-Za-z0-9.\-]*)")
_EHLO_NAME = re.compile(r"\d+-([A-Za-z0-9]+[A-Za-z0-9.\-]*)")


def srvname_from(banner_line: str, ehlo_first_line: str | None = None) -> str | None:
    """SRVNAME exactly as nmap 7.93 computes it (docs/sources.md#nmap-srvname), or None."""
    match = _BANNER_NAME.search(banner_line)
    if match:
        return match.group(1)
    if ehlo_first_line is not None:
        match = _EHLO_NAME.search(ehlo_first_line)
        if match:
            return match.group(1)
    return None


def address_literal(ip: str) -> str:
    """The bracketed domain literal for an IP (RFC 5321 §4.1.3: IPv6 carries the tag)."""
    addr = ipaddress.ip_address(ip)
    if addr.version == 6:
        return f"[IPv6:{addr.compressed}]"
    return f"[{addr}]"


def imcea_encode(address: str) -> str:
    """Encode an address for an IMCEA one-off (MS-OXCMAIL 2.1.3.1.8).

    Letters, digits, `-` and `=` stay; `/` becomes `_`; every other character becomes `+HH`
    (so `@` = `+40`, `.` = `+2E`). Only ASCII is meaningful here.
    """
    out: list[str] = []
    for char in address:
        if char.isascii() and (char.isalnum() or char in "-="):
            out.append(char)
        elif char == "/":
            out.append("_")
        else:
            out.extend(f"+{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


def imceasmtp(address: str) -> str:
    """The upper-case IMCEASMTP- local part of MS99-027 (KB Q237927; prefix case: KB Q271575)."""
    return "IMCEASMTP-" + imcea_encode(address)
