"""Desired relay state of an Exchange server, validated at the edge before any WinRM call.

`relay_desired(...)` turns raw option values (Ansible module arguments, CLI input) into a
`RelayDesired` record, or raises `relayguard.validate.InputError` naming the field and the
value. Nothing here talks to a host; the planner (`plan`) only ever sees validated values.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from relayguard import validate
from relayguard.validate import InputError

# Exchange refuses "\" and "/" in a connector name; relayguard also keeps names to a plain
# set of characters so they read the same in a log, a diff and the Exchange shell.
_CONNECTOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._()-]{0,63}$")
DEFAULT_RELAY_BINDINGS = ("0.0.0.0:25",)


@dataclass(frozen=True)
class RelayDesired:
    """What the operator wants: who may relay, which domains are the organisation's own."""

    relay_allowed_networks: tuple[str, ...]  # CIDRs, normalised (strict: no host bits)
    relay_authenticated: bool
    inbound_domains: tuple[str, ...]  # lower-case LDH names
    reject_unknown_recipients: bool
    relay_connector_name: str | None = None  # 2013+: the dedicated relay connector
    relay_connector_bindings: tuple[str, ...] = DEFAULT_RELAY_BINDINGS
    relay_domains: tuple[str, ...] = ()  # 2013+: relay-type accepted domains that may stay


def connector_name(field: str, value: object) -> str:
    if not isinstance(value, str) or not _CONNECTOR_NAME.match(value) or value.endswith(" "):
        raise InputError(
            field, value, "is not a connector name (letters, digits, space, '._()-', 1-64)"
        )
    return value


def binding(field: str, value: object) -> str:
    """A receive connector binding, `IPv4:port` or `[IPv6]:port`."""
    if not isinstance(value, str):
        raise InputError(field, value, "is not a string")
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise InputError(field, value, "is not a binding (address:port)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise InputError(field, value, "puts an IPv4 address in brackets")
    elif ":" in host:
        raise InputError(field, value, "needs brackets around an IPv6 address ([::]:25)")
    try:
        address = ipaddress.ip_address(host)
    except ValueError as exc:
        raise InputError(field, value, "is not a binding (address:port)") from exc
    number = validate.port(field, int(port_text))
    shown = f"[{address.compressed}]" if address.version == 6 else address.compressed
    return f"{shown}:{number}"


def _unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _list(field: str, value: object) -> list[object]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InputError(field, value, "is not a list")
    return list(value)


def _bool(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InputError(field, value, "is not a boolean")
    return value


def relay_desired(
    *,
    relay_allowed_networks: object,
    relay_authenticated: object,
    inbound_domains: object,
    reject_unknown_recipients: object,
    relay_connector_name: object = None,
    relay_connector_bindings: object = None,
    relay_domains: object = None,
) -> RelayDesired:
    """Validate every option; the first bad value raises InputError naming it."""
    networks = [
        validate.network(f"relay_allowed_networks[{i}]", v)
        for i, v in enumerate(_list("relay_allowed_networks", relay_allowed_networks))
    ]
    domains = [
        validate.domain(f"inbound_domains[{i}]", v)
        for i, v in enumerate(_list("inbound_domains", inbound_domains))
    ]
    if not domains:
        raise InputError("inbound_domains", inbound_domains, "must name at least one domain")
    relays = [
        validate.domain(f"relay_domains[{i}]", v)
        for i, v in enumerate(_list("relay_domains", relay_domains))
    ]
    name = None
    if relay_connector_name is not None:
        name = connector_name("relay_connector_name", relay_connector_name)
    bindings = [
        binding(f"relay_connector_bindings[{i}]", v)
        for i, v in enumerate(_list("relay_connector_bindings", relay_connector_bindings))
    ]
    return RelayDesired(
        relay_allowed_networks=_unique(networks),
        relay_authenticated=_bool("relay_authenticated", relay_authenticated),
        inbound_domains=_unique(domains),
        reject_unknown_recipients=_bool("reject_unknown_recipients", reject_unknown_recipients),
        relay_connector_name=name,
        relay_connector_bindings=_unique(bindings) or DEFAULT_RELAY_BINDINGS,
        relay_domains=_unique(relays),
    )


# --------------------------------------------------------------------------- paths

_HOST_PATH = re.compile(
    r"^(?:[A-Za-z]:\\|\\\\[A-Za-z0-9._-]+\\[A-Za-z0-9._$ -]+\\)[^\x00-\x1f\"*?<>|]*$"
)


def host_path(field: str, value: object, *, suffixes: tuple[str, ...] = ()) -> str:
    """An absolute Windows path on the host (`C:\\...`) or a UNC path (`\\\\server\\share\\...`),
    without wildcards, quotes, control characters or `..` segments."""
    if not isinstance(value, str) or not value.isascii() or len(value) > 240:
        raise InputError(field, value, "is not a Windows path (ASCII, at most 240 characters)")
    if not _HOST_PATH.match(value) or "/" in value:
        raise InputError(field, value, "is not an absolute Windows path or UNC path")
    parts = value.split("\\")
    if any(part in (".", "..") for part in parts) or value.endswith("\\"):
        raise InputError(field, value, "is not a path to a file")
    if suffixes and not value.lower().endswith(suffixes):
        raise InputError(field, value, f"does not end in {' or '.join(suffixes)}")
    return value


def controller_path(field: str, value: object) -> str:
    """A path on the controller: printable text, no NUL or newline."""
    if not isinstance(value, str) or not value or any(c in value for c in "\x00\r\n"):
        raise InputError(field, value, "is not a path")
    return value


def sha256_hex(field: str, value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9A-Fa-f]{64}", value):
        raise InputError(field, value, "is not a SHA-256 (64 hexadecimal digits)")
    return value.upper()


def version(field: str, value: object) -> tuple[int, int, int, int]:
    """A four-part file version like 5.5.2650.1 or 15.2.1544.14 (leading zeros allowed)."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{1,5}(\.\d{1,5}){3}", value):
        raise InputError(field, value, "is not a four-part version (like 15.2.1544.14)")
    a, b, c, d = (int(p) for p in value.split("."))
    return (a, b, c, d)
