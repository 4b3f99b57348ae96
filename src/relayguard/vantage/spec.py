"""The vantage spec ``ssh://user@host[:port]``: parsed and validated at the edge (pure).

Passwords in the URL are refused (key or agent authentication only) and never echoed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from relayguard.validate import InputError, domain

_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}\Z")
_PORT = re.compile(r"^[0-9]{1,5}\Z")
MAX_SPEC = 300
DEFAULT_SSH_PORT = 22


@dataclass(frozen=True)
class SshVantage:
    """A jump host: SSH user, host (name or IP) and port."""

    user: str
    host: str
    port: int = DEFAULT_SSH_PORT

    @property
    def host_in_url(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH's known_hosts names this host: ``host`` or ``[host]:port``."""
        if self.port == DEFAULT_SSH_PORT:
            return self.host
        return f"[{self.host}]:{self.port}"

    def __str__(self) -> str:
        port = "" if self.port == DEFAULT_SSH_PORT else f":{self.port}"
        return f"ssh://{self.user}@{self.host_in_url}{port}"


def parse_vantage(spec: object, field: str = "via") -> SshVantage:
    """``ssh://user@host[:port]`` as an SshVantage; InputError names `field` otherwise."""
    if not isinstance(spec, str):
        raise InputError(field, spec, "is not a string")
    if len(spec) > MAX_SPEC:
        raise InputError(field, spec, f"is longer than {MAX_SPEC} characters")
    if not spec.isascii() or any(not c.isprintable() or c.isspace() for c in spec):
        raise InputError(field, spec, "contains spaces, control or non-ASCII characters")
    scheme, sep, rest = spec.partition("://")
    if not sep or scheme.lower() != "ssh":
        raise InputError(field, spec, "is not an ssh://user@host[:port] vantage")
    userinfo, at, hostport = rest.rpartition("@")
    if not at or not userinfo:
        raise InputError(field, spec, "names no user: write ssh://user@host[:port]")
    if ":" in userinfo:
        # Never echo what may be a password.
        masked = f"ssh://{userinfo.split(':', 1)[0]}:***@{hostport}"
        raise InputError(
            field, masked, "carries a password: use a key or ssh-agent, never a password in a URL"
        )
    if not _USER.match(userinfo):
        raise InputError(field, spec, f"has an invalid user name {userinfo!r}")
    if any(c in hostport for c in "/?#@"):
        raise InputError(field, spec, "has a path, query or fragment: write ssh://user@host[:port]")
    host, port = _split_host_port(field, spec, hostport)
    return SshVantage(userinfo, host, port)


def _split_host_port(field: str, spec: str, hostport: str) -> tuple[str, int]:
    port_text = ""
    if hostport.startswith("["):
        inner, close, tail = hostport[1:].partition("]")
        if not close:
            raise InputError(field, spec, "has an unclosed '[' in the host")
        try:
            host = ipaddress.IPv6Address(inner).compressed
        except ValueError:
            raise InputError(field, spec, f"has an invalid IPv6 address {inner!r}") from None
        if tail:
            if not tail.startswith(":"):
                raise InputError(field, spec, "has text after the ']' that is not ':port'")
            port_text = tail[1:]
    else:
        host, colon, port_text = hostport.partition(":")
        if colon and not port_text:
            raise InputError(field, spec, "has an empty port")
        if not host:
            raise InputError(field, spec, "names no host")
        try:
            host = ipaddress.IPv4Address(host).compressed
        except ValueError:
            host = domain(field, host)
    port = DEFAULT_SSH_PORT
    if port_text:
        if not _PORT.match(port_text) or not 0 < int(port_text) < 65536:
            raise InputError(field, spec, f"has an invalid port {port_text!r} (1-65535)")
        port = int(port_text)
    return host, port
