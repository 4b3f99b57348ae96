"""Validation of user-facing values at the edge, before anything touches a host.

Every function returns the normalised value or raises `InputError` naming the field and the
offending value (repr'd, so control characters and quotes are visible and inert, and bounded
by `quoted`, so a 5,000-character value does not fill the screen or a log line).
"""

from __future__ import annotations

import ipaddress
import re

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
# RFC 5321 §4.1.2 dot-atom local part, restricted to the characters a probe needs.
_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$&'*+/=?^_`{|}~-]+)*$")
MAX_VALUE = 253
QUOTED_PREFIX = 64  # characters of an oversized value an error message shows


def quoted(value: object) -> str:
    """A user value as an error message shows it: its repr, or for a long one the first
    QUOTED_PREFIX characters of the repr and the value's length."""
    shown = repr(value)
    if len(shown) <= QUOTED_PREFIX + 16:
        return shown
    size = len(value) if isinstance(value, str | bytes | list | tuple | dict) else len(shown)
    return f"{shown[:QUOTED_PREFIX]}…({size:,} characters)"


class InputError(ValueError):
    """A user-supplied value is invalid; the message names the field and the value."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        super().__init__(f"{field}: {quoted(value)} {problem}")
        self.field = field


def domain(field: str, value: object) -> str:
    """An LDH domain name (RFC 1123), lower-cased; IDNs must be given in punycode (xn--)."""
    if not isinstance(value, str):
        raise InputError(field, value, "is not a string")
    if not value.isascii():
        raise InputError(field, value, "is not ASCII: give an internationalised name as xn--")
    name = value.rstrip(".")
    if not name or len(name) > MAX_VALUE:
        raise InputError(field, value, "is not a domain name (1 to 253 characters)")
    if not all(_LABEL.match(label) for label in name.split(".")):
        raise InputError(field, value, "is not a domain name (letters, digits, '-' and '.')")
    return name.lower()


def mail_domain(field: str, value: object) -> str:
    """A domain name or an address literal like [192.0.2.1] (RFC 5321 §4.1.3)."""
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        inner = value[1:-1]
        if inner.lower().startswith("ipv6:"):
            inner = inner[5:]
        try:
            ipaddress.ip_address(inner)
        except ValueError as exc:
            raise InputError(field, value, "is not a valid address literal") from exc
        return value
    return domain(field, value)


def ip_address(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise InputError(field, value, "is not a string")
    try:
        return ipaddress.ip_address(value).compressed
    except ValueError as exc:
        raise InputError(field, value, "is not an IP address") from exc


def network(field: str, value: object) -> str:
    """A CIDR network, strict: host bits set are refused rather than silently masked."""
    if not isinstance(value, str):
        raise InputError(field, value, "is not a string")
    try:
        return ipaddress.ip_network(value, strict=True).with_prefixlen
    except ValueError as exc:
        raise InputError(field, value, f"is not a CIDR network ({exc})") from exc


def local_part(field: str, value: object) -> str:
    if not isinstance(value, str) or len(value) > 64 or not _LOCAL_PART.match(value):
        raise InputError(field, value, "is not a plain mailbox local part")
    return value


def positive_number(field: str, value: object, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(field, value, "is not a number")
    if not 0 < value <= maximum:
        raise InputError(field, value, f"must be greater than 0 and at most {maximum:g}")
    return float(value)


def port(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InputError(field, value, "is not a port number (1-65535)")
    return value
