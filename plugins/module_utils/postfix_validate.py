"""Postfix relay closure, validation (pure): every module option checked and normalised
before any command runs on the host. Errors of the whole Postfix backend live here too.

Standard library only (Python 3.7+): shipped to the managed host by Ansible.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


# --- errors ------------------------------------------------------------------------------


class RelayConfigError(Exception):
    """Base of every error this backend raises; `str()` is one clear line for the user."""


class InputError(RelayConfigError):
    """A module option is invalid. Raised before any command runs on the host."""

    def __init__(self, field_name: str, value: object, problem: str) -> None:
        self.field = field_name
        self.value = value
        self.problem = problem
        super().__init__(f"{field_name}: {shown(value)} refused: {problem}")


class PlanError(RelayConfigError):
    """The desired state cannot be planned on this host (nothing was written)."""


class PostfixCommandError(RelayConfigError):
    """A Postfix command failed; the message quotes what it printed."""


class ApplyError(RelayConfigError):
    """Applying or restoring failed. `rolled_back` says whether main.cf was put back."""

    def __init__(
        self, message: str, *, rolled_back: bool, backup_file: str | None, wrote: bool = True
    ) -> None:
        super().__init__(message)
        self.rolled_back = rolled_back
        self.backup_file = backup_file
        self.wrote = wrote  # False: failed before main.cf was touched


def shown(value: object, limit: int = 80) -> str:
    """A value as an error message shows it: repr'd (control characters visible), bounded."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- validation (pure) -------------------------------------------------------------------

MAX_LIST_ITEMS = 1000
MAX_DOMAIN = 253
# A network wider than this trusts a large part of the Internet: that is an open relay.
MIN_PREFIX = {4: 8, 6: 16}
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._+@/-]*\Z")
_CHAR_NAMES = {
    "\0": "a NUL byte",
    "\n": "a newline",
    "\r": "a carriage return",
    "\t": "a tab",
    " ": "a space",
    ",": "a comma",
    "$": "a '$' (Postfix would expand it as a parameter)",
    ";": "a ';'",
    "`": "a backquote",
    "'": "a quote",
    '"': "a double quote",
    "{": "a '{'",
    "}": "a '}'",
    "(": "a '('",
    ")": "a ')'",
    "#": "a '#' (main.cf would read a comment)",
    "=": "an '='",
    "\\": "a backslash",
    "*": "a '*' (wildcards are not supported)",
}


def _describe(char: str) -> str:
    if char in _CHAR_NAMES:
        return _CHAR_NAMES[char]
    if ord(char) < 32 or ord(char) == 127:
        return f"a control character (U+{ord(char):04X})"
    if ord(char) > 127:
        return f"a non-ASCII character {char!r}"
    return f"the character {char!r}"


def _first_bad_char(value: str, allowed: Callable[[str], bool]) -> str | None:
    for char in value:
        if not allowed(char):
            return char
    return None


def _network_char(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char in ".:/[]")


def validate_network(field_name: str, value: object) -> str:
    """A CIDR network or an address, in Postfix's mynetworks form (IPv6 as [addr]/len).

    Host bits set are refused, not masked: "192.0.2.1/24" is more likely a typo than a wish.
    """
    if not isinstance(value, str):
        raise InputError(field_name, value, "is not a string")
    if not value:
        raise InputError(field_name, value, "is empty")
    bad = _first_bad_char(value, _network_char)
    if bad is not None:
        raise InputError(field_name, value, f"contains {_describe(bad)}; give one network per item")
    text = value
    if text.startswith("["):
        # Postfix's own IPv6 notation: [2001:db8::]/32 or [2001:db8::1]
        match = re.match(r"^\[([0-9A-Fa-f:.]+)\](/\d{1,3})?\Z", text)
        if not match:
            raise InputError(field_name, value, "is not a network ([IPv6]/len expected)")
        text = match.group(1) + (match.group(2) or "")
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise InputError(field_name, value, f"is not a CIDR network ({exc})") from None
    if network.prefixlen < MIN_PREFIX[network.version]:
        raise InputError(
            field_name,
            value,
            f"is wider than /{MIN_PREFIX[network.version]}: trusting it would make an open relay",
        )
    return postfix_network(network)


def postfix_network(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """How main.cf writes a network: 192.0.2.0/24, [2001:db8::]/32 (postconf(5) mynetworks)."""
    if network.version == 6:
        return f"[{network.network_address.compressed}]/{network.prefixlen}"
    return network.with_prefixlen


def _domain_char(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char in ".-")


def validate_domain(field_name: str, value: object) -> str:
    """A mail domain: LDH labels (RFC 1123 section 2.1), 1-63 characters each, 253 in all.

    Returned lower-cased. A leading dot (".example.com", Postfix's form for "subdomains of")
    is kept. Internationalised names are refused: give the A-label (xn--...) form, because the
    standard library only knows IDNA 2003, whose mapping differs from IDNA 2008 for some names.
    """
    if not isinstance(value, str):
        raise InputError(field_name, value, "is not a string")
    if not value:
        raise InputError(field_name, value, "is empty")
    if not value.isascii() and all(c.isprintable() for c in value):
        raise InputError(
            field_name, value, "is not ASCII: give an internationalised name as its xn-- A-label"
        )
    bad = _first_bad_char(value, _domain_char)
    if bad is not None:
        raise InputError(field_name, value, f"contains {_describe(bad)}; give one domain per item")
    name = value.lower()
    body = name[1:] if name.startswith(".") else name
    if name.endswith("."):
        raise InputError(field_name, value, "ends with a dot: write the name without it")
    if len(body) > MAX_DOMAIN:
        raise InputError(field_name, value, f"is longer than {MAX_DOMAIN} characters")
    labels = body.split(".")
    for label in labels:
        if not _LABEL.match(label):
            raise InputError(
                field_name,
                value,
                "is not a domain name (labels of 1-63 letters, digits or '-', "
                "not starting or ending with '-')",
            )
    if labels[-1].isdigit():
        raise InputError(field_name, value, "looks like an IP address, not a domain name")
    return name


def validate_config_path(field_name: str, value: object) -> str:
    """An absolute path of plain characters: it is passed to `postfix -c` and Postfix lists
    (alternate_config_directories) split on spaces and commas and expand `$`."""
    if not isinstance(value, str):
        raise InputError(field_name, value, "is not a string")
    if not value.startswith("/"):
        raise InputError(field_name, value, "is not an absolute path")
    if not _SAFE_PATH.match(value):
        bad = _first_bad_char(value, lambda c: c.isascii() and (c.isalnum() or c in "._+@/-"))
        raise InputError(field_name, value, f"contains {_describe(bad or '?')}")
    if "/../" in value + "/" or value.endswith("/.."):
        raise InputError(field_name, value, "contains '..'")
    return os.path.normpath(value)


def _validate_list(
    field_name: str, values: object, one: Callable[[str, object], str]
) -> tuple[str, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise InputError(field_name, values, "is not a list")
    if len(values) > MAX_LIST_ITEMS:
        raise InputError(field_name, f"<{len(values)} items>", f"has over {MAX_LIST_ITEMS} items")
    result: list[str] = []
    for index, value in enumerate(values):
        item = one(f"{field_name}[{index}]", value)
        if item not in result:
            result.append(item)
    return tuple(result)


DOMAIN_CLASSES = (
    "mydestination",
    "virtual_alias_domains",
    "virtual_mailbox_domains",
    "relay_domains",
)
RELAY_REFUSALS = ("keep", "permanent", "temporary")
INBOUND_CLASS_CHOICES = ("auto", *DOMAIN_CLASSES)


@dataclass(frozen=True)
class DesiredRelayState:
    """What the module options ask for, validated and normalised.

    `None` for networks or domains means "not managed": that parameter is left as it is.
    `relay_authenticated` None means keep: `permit_sasl_authenticated` stays where it is
    (RFC 2505 section 2 refuses unauthorised relaying; an authenticated client is
    authorised). `partner_domains` are relay destinations (backup MX, partners) that stay
    accepted from outside;
    `allow_removals` lets an enforce run drop a destination or network it names.
    """

    relay_allowed_networks: tuple[str, ...] | None
    inbound_domains: tuple[str, ...] | None
    relay_authenticated: bool | None = None
    relay_refusal: str = "keep"
    inbound_domain_class: str = "auto"
    prune_domains: bool = True
    partner_domains: tuple[str, ...] = ()
    allow_removals: bool = False


# A bool, or one of these words (Jinja may render a bool as "True"); "yes" and friends are
# refused as before: YAML already made them bools when they were meant as such.
AUTHENTICATED_WORDS = {"keep": None, "true": True, "false": False}


def validate_authenticated(value: object) -> bool | None:
    """relay_authenticated: keep (None), true or false; Ansible may pass a bool or a word."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in AUTHENTICATED_WORDS:
        return AUTHENTICATED_WORDS[value.strip().lower()]
    raise InputError("relay_authenticated", value, "is not keep, true or false")


def _validate_bool(field_name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InputError(field_name, value, "is not true or false")
    return value


def desired_state(options: Mapping[str, object]) -> DesiredRelayState:
    """Validate the module options that describe the desired relay policy."""
    networks = options.get("relay_allowed_networks")
    domains = options.get("inbound_domains")
    refusal = options.get("relay_refusal", "keep")
    domain_class = options.get("inbound_domain_class", "auto")
    partners = options.get("relay_partner_domains")
    if refusal not in RELAY_REFUSALS:
        raise InputError("relay_refusal", refusal, f"is not one of {', '.join(RELAY_REFUSALS)}")
    if domain_class not in INBOUND_CLASS_CHOICES:
        raise InputError(
            "inbound_domain_class",
            domain_class,
            f"is not one of {', '.join(INBOUND_CLASS_CHOICES)}",
        )
    return DesiredRelayState(
        relay_allowed_networks=(
            None
            if networks is None
            else _validate_list("relay_allowed_networks", networks, validate_network)
        ),
        inbound_domains=(
            None if domains is None else _validate_list("inbound_domains", domains, validate_domain)
        ),
        relay_authenticated=validate_authenticated(options.get("relay_authenticated", "keep")),
        relay_refusal=str(refusal),
        inbound_domain_class=str(domain_class),
        prune_domains=_validate_bool("prune_domains", options.get("prune_domains", True)),
        partner_domains=(
            ()
            if partners is None
            else _validate_list("relay_partner_domains", partners, validate_domain)
        ),
        allow_removals=_validate_bool(
            "relay_allow_removals", options.get("relay_allow_removals", False)
        ),
    )
