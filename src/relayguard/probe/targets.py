"""Parsing and validating probe targets: `host`, `ip`, `host:port`, `[v6]:port`."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

# RFC 1123 host name: LDH labels of 1-63 characters, 253 in all.
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class TargetError(ValueError):
    """A target the user gave is not a host name, an IP address or host:port."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def valid_hostname(name: str) -> bool:
    if not name or len(name) > 253:
        return False
    return all(_LABEL.match(label) for label in name.rstrip(".").split("."))


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise TargetError(f"target {spec!r}: port must be a number from 1 to 65535")
    return int(text)


def expand_target(spec: str, ports: tuple[int, ...]) -> list[Target]:
    """One target per port for a spec without a port (`mx.example.org` on 25, 587 and 465);
    a spec with its own port (`host:2525`, `[::1]:25`) is that one target."""
    bare = parse_target(spec, default_port=0)  # 0 is never a valid explicit port
    if bare.port:
        return [bare]
    return [Target(bare.host, port) for port in ports]


def expand_targets(specs: Sequence[str | Target], ports: tuple[int, ...]) -> list[Target]:
    """Every spec expanded over `ports` (see `expand_target`), in the order given."""
    out: list[Target] = []
    for spec in specs:
        out.extend([spec] if isinstance(spec, Target) else expand_target(spec, ports))
    return out


def parse_target(spec: str, default_port: int = 25) -> Target:
    spec = spec.strip()
    if not spec or any(c.isspace() or ord(c) < 32 for c in spec):
        raise TargetError(f"target {spec!r}: empty or contains whitespace/control characters")
    host, port = spec, default_port
    if spec.startswith("["):
        close = spec.find("]")
        if close < 0:
            raise TargetError(f"target {spec!r}: missing ']'")
        host, rest = spec[1:close], spec[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise TargetError(f"target {spec!r}: expected ':port' after ']'")
            port = _port(rest[1:], spec)
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
        port = _port(port_text, spec)
    try:
        return Target(ipaddress.ip_address(host).compressed, port)
    except ValueError:
        pass
    if not valid_hostname(host):
        raise TargetError(f"target {spec!r}: not a host name, IP address or host:port")
    return Target(host.rstrip(".").lower(), port)
