"""Postfix relay closure, the backend of `modules/postfix_relay.py`: validate, read, plan, apply.

Runs on the managed host, shipped there by Ansible with the module, so it uses only the
standard library (Python 3.8+). Four rooms, in the order a run goes through them:

* validation (pure): every user value is checked and normalised before anything runs;
* facts (reads): `postconf` and `postmap -q` describe one instance (`-c config_dir`);
* plan (pure): `plan_relay(facts, desired)` lists parameter changes with before/after;
* apply (writes): back up main.cf, `postconf -e`, `postfix check`, re-read, reload, and put
  the backup back when any step fails. `restore_backup` serves `state: restored`.

Postfix facts used here come from postconf(5): relay permission is decided by
`smtpd_relay_restrictions` (Postfix >= 2.10), `mynetworks` is what `permit_mynetworks`
trusts, and `reject_unauth_destination` accepts only recipients in mydestination,
virtual_alias_domains, virtual_mailbox_domains and relay_domains (RFC 2505 section 2.1:
decide relaying by client address and recipient domain).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:  # mypy checks plugins/module_utils as top-level modules
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from command_runner import CommandError, CommandResult, run_on_pty
else:
    try:  # as Ansible ships it: the collection's module_utils beside this file
        from ansible_collections.relayguard.mail.plugins.module_utils.command_runner import (
            CommandError,
            CommandResult,
            run_on_pty,
        )
    except ImportError:  # loaded by path outside Ansible (tests, the target-Python check)
        from command_runner import CommandError, CommandResult, run_on_pty

# --- errors ------------------------------------------------------------------------------


class RelayConfigError(Exception):
    """Base of every error this backend raises; `str()` is one clear line for the user."""


class InputError(RelayConfigError):
    """A module option is invalid. Raised before any command runs on the host."""

    def __init__(self, field_name: str, value: object, problem: str) -> None:
        self.field = field_name
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
    """

    relay_allowed_networks: tuple[str, ...] | None
    inbound_domains: tuple[str, ...] | None
    relay_authenticated: bool = False
    relay_refusal: str = "keep"
    inbound_domain_class: str = "auto"
    prune_domains: bool = True


def desired_state(options: Mapping[str, object]) -> DesiredRelayState:
    """Validate the module options that describe the desired relay policy."""
    networks = options.get("relay_allowed_networks")
    domains = options.get("inbound_domains")
    authenticated = options.get("relay_authenticated", False)
    refusal = options.get("relay_refusal", "keep")
    domain_class = options.get("inbound_domain_class", "auto")
    prune = options.get("prune_domains", True)
    if not isinstance(authenticated, bool):
        raise InputError("relay_authenticated", authenticated, "is not true or false")
    if not isinstance(prune, bool):
        raise InputError("prune_domains", prune, "is not true or false")
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
        relay_authenticated=authenticated,
        relay_refusal=str(refusal),
        inbound_domain_class=str(domain_class),
        prune_domains=prune,
    )


# --- Postfix values (pure) ---------------------------------------------------------------

_TABLE = re.compile(r"^[a-z][a-z0-9_]*:\S")
_REF = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|\(([A-Za-z0-9_]+)\)|([A-Za-z0-9_]+))")
_ONLY_REF = re.compile(r"^\$(?:\{([A-Za-z0-9_]+)\}|\(([A-Za-z0-9_]+)\)|([A-Za-z0-9_]+))\Z")


def split_list(value: str) -> list[str]:
    """A Postfix list as its items: commas and white space separate, `{ ... }` groups stay
    whole (postconf(5) "lists"; Postfix 3.0 braces)."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for char in value:
        if char == "{":
            depth += 1
        elif char == "}" and depth:
            depth -= 1
        if depth == 0 and (char in ", \t\r\n"):
            if current:
                items.append("".join(current))
                current = []
            continue
        current.append(char)
    if current:
        items.append("".join(current))
    return items


def is_table(token: str) -> bool:
    """A lookup table reference such as hash:/etc/postfix/relay_domains."""
    return bool(_TABLE.match(token))


def only_reference(token: str) -> str | None:
    """The parameter name when `token` is exactly one reference ($name, ${name}, $(name))."""
    match = _ONLY_REF.match(token)
    if not match:
        return None
    return next(group for group in match.groups() if group)


def is_conditional_default(raw: str) -> bool:
    """Postfix 3 compatibility defaults look like ${{$compatibility_level} <level {2} ? ...}."""
    return "${{" in raw or "?{" in raw.replace(" ", "")


def network_key(token: str) -> str | None:
    """A mynetworks item in canonical form, or None when it is not a plain network
    (a table, a negation, a host name). Host bits are masked as Postfix would."""
    match = re.match(r"^\[([0-9A-Fa-f:.]+)\](/\d{1,3})?\Z", token)
    text = match.group(1) + (match.group(2) or "") if match else token
    try:
        return postfix_network(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return None


def render_restrictions(tokens: Sequence[str]) -> str:
    """A restriction list for main.cf: restrictions separated by ", ", each followed by its
    table or `{ ... }` argument with a space (check_client_access hash:/x)."""
    units: list[str] = []
    for token in tokens:
        if units and (is_table(token) or token.startswith("{")):
            units[-1] = f"{units[-1]} {token}"
        else:
            units.append(token)
    return ", ".join(units)


# --- facts (reads) -----------------------------------------------------------------------

COMMAND_TIMEOUT = 60.0
MANAGED_PARAMETERS = (
    "mynetworks",
    "smtpd_relay_restrictions",
    "allow_untrusted_routing",
    *DOMAIN_CLASSES,
)
# master.cf `-o` overrides of these change relay behaviour for that service only.
RELAY_SENSITIVE = (*MANAGED_PARAMETERS, "smtpd_recipient_restrictions")


@dataclass(frozen=True)
class PostfixTools:
    """Paths of the Postfix programs used (absolute). `locate()` finds them on PATH and in
    the sbin directories, which a non-login PATH may lack."""

    postconf: str
    postfix: str
    postmap: str

    @classmethod
    def locate(cls, search_path: str | None = None) -> PostfixTools:
        path = search_path if search_path is not None else os.environ.get("PATH", "")
        path = os.pathsep.join([path, "/usr/sbin", "/usr/local/sbin", "/sbin"])
        found: dict[str, str] = {}
        for name in ("postconf", "postfix", "postmap"):
            where = shutil.which(name, path=path)
            if where is None:
                raise PostfixCommandError(f"{name} not found: is Postfix installed on this host?")
            found[name] = where
        return cls(found["postconf"], found["postfix"], found["postmap"])


def run_command(argv: Sequence[str], timeout: float = COMMAND_TIMEOUT) -> CommandResult:
    """Run a Postfix command with its stdout and stderr on a pseudo-terminal, bounded in time
    (command_runner.py: Postfix reports its errors to stderr only when that is a terminal)."""
    try:
        return run_on_pty(argv, timeout)
    except CommandError as exc:
        raise PostfixCommandError(str(exc)) from None


def _run_capture(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        # the backend also runs without AnsibleModule (the library's tests call it directly)
        return subprocess.run(  # pylint: disable=ansible-bad-function
            list(argv),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PostfixCommandError(f"{' '.join(argv)} did not finish in time") from None
    except OSError as exc:
        raise PostfixCommandError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None


_PARAMETER_LINE = re.compile(r"^([A-Za-z0-9_]+) =(?: (.*))?$")
_MASTER_LINE = re.compile(r"^([^/\s]+)/([a-z-]+)/([A-Za-z0-9_]+) =(?: (.*))?$")


def parse_parameters(text: str) -> dict[str, str]:
    """`postconf` output (name = value, one per line) as a dict."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = _PARAMETER_LINE.match(line)
        if match:
            values[match.group(1)] = match.group(2) or ""
    return values


@dataclass(frozen=True)
class MasterOverride:
    """A `-o name=value` of one master.cf service (postconf -P)."""

    service: str
    service_type: str
    name: str
    value: str


def parse_master_overrides(text: str) -> tuple[MasterOverride, ...]:
    found = []
    for line in text.splitlines():
        match = _MASTER_LINE.match(line)
        if match:
            found.append(
                MasterOverride(match.group(1), match.group(2), match.group(3), match.group(4) or "")
            )
    return tuple(found)


@dataclass(frozen=True)
class PostfixFacts:
    """One instance's configuration as postconf reports it (the planner's only input).

    `raw` holds values as written (or Postfix's default expression when unset), `expanded`
    the same with $references resolved, `explicit` the names set in main.cf (postconf -n).
    `table_hits` maps each lookup table used by a domain class to the inbound domains
    `postmap -q` found in it.
    """

    config_dir: str
    raw: Mapping[str, str]
    expanded: Mapping[str, str]
    explicit: frozenset[str]
    master_overrides: tuple[MasterOverride, ...] = ()
    table_hits: Mapping[str, frozenset[str]] = field(default_factory=dict)
    table_errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def main_cf(self) -> str:
        return os.path.join(self.config_dir, "main.cf")

    @property
    def mail_version(self) -> str:
        return self.expanded.get("mail_version", "")


def _postconf(tools: PostfixTools, config_dir: str, *args: str) -> str:
    result = _run_capture([tools.postconf, "-c", config_dir, *args])
    if result.returncode != 0:
        message = " ".join(result.stderr.split()) or f"exit status {result.returncode}"
        raise PostfixCommandError(f"postconf -c {config_dir} {' '.join(args)} failed: {message}")
    return result.stdout


def domain_class_tables(expanded: Mapping[str, str]) -> list[str]:
    """The lookup tables the domain classes use, in order, once each."""
    tables: list[str] = []
    for name in DOMAIN_CLASSES:
        for token in split_list(expanded.get(name, "")):
            if is_table(token) and token not in tables:
                tables.append(token)
    return tables


def read_facts(
    tools: PostfixTools, config_dir: str, look_up_domains: Sequence[str] = ()
) -> PostfixFacts:
    """Read the instance at `config_dir`; query its domain tables for `look_up_domains`."""
    if not os.path.isdir(config_dir):
        raise PostfixCommandError(f"config_dir {config_dir} is not a directory")
    if not os.path.isfile(os.path.join(config_dir, "main.cf")):
        raise PostfixCommandError(f"config_dir {config_dir} has no main.cf")
    raw = parse_parameters(_postconf(tools, config_dir))
    expanded = parse_parameters(_postconf(tools, config_dir, "-x"))
    explicit = frozenset(parse_parameters(_postconf(tools, config_dir, "-n")))
    overrides = parse_master_overrides(_postconf(tools, config_dir, "-P"))
    hits: dict[str, frozenset[str]] = {}
    errors: dict[str, str] = {}
    for table in domain_class_tables(expanded):
        found: set[str] = set()
        for domain in look_up_domains:
            result = _run_capture([tools.postmap, "-c", config_dir, "-q", domain, table])
            if result.returncode == 0:
                found.add(domain)
            elif result.returncode != 1:
                errors[table] = " ".join(result.stderr.split()) or f"exit {result.returncode}"
        hits[table] = frozenset(found)
    return PostfixFacts(config_dir, raw, expanded, explicit, overrides, hits, errors)


# --- plan (pure) -------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterChange:
    """One main.cf parameter to set: its value now (as written) and after, and why."""

    name: str
    before: str
    after: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {
            "parameter": self.name,
            "before": self.before,
            "after": self.after,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class RelayPlan:
    """The changes that bring an instance to the desired relay state (empty: compliant)."""

    changes: tuple[ParameterChange, ...]
    warnings: tuple[str, ...]
    values_before: Mapping[str, str]

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def values_after(self) -> dict[str, str]:
        after = dict(self.values_before)
        after.update({change.name: change.after for change in self.changes})
        return after

    def settings(self) -> dict[str, str]:
        return {change.name: change.after for change in self.changes}

    def diff(self, main_cf: str) -> dict[str, str]:
        """Ansible's diff: the managed parameters before and after, one `name = value` line each."""

        def text(values: Mapping[str, str]) -> str:
            return "".join(f"{name} = {values[name]}\n" for name in sorted(values))

        return {
            "before": text(self.values_before),
            "after": text(self.values_after()),
            "before_header": f"{main_cf} (relay parameters)",
            "after_header": f"{main_cf} (relay parameters)",
        }


def _source_tokens(facts: PostfixFacts, name: str) -> list[str]:
    """A parameter's items as the plan edits them: as written, or expanded when Postfix's
    value is a compatibility-level conditional that cannot be edited item by item."""
    raw = facts.raw.get(name, "")
    if name not in facts.explicit and is_conditional_default(raw):
        return split_list(facts.expanded.get(name, ""))
    return split_list(raw)


def _written(facts: PostfixFacts, name: str) -> str:
    return facts.raw.get(name, "")


def _expand_token(token: str, expanded: Mapping[str, str]) -> list[str] | None:
    """Items a token stands for after $reference expansion (None: an unknown parameter)."""
    missing: list[str] = []

    def value_of(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in expanded:
            missing.append(name)
            return ""
        return expanded[name]

    text = _REF.sub(value_of, token)
    return None if missing else split_list(text)


def own_names(facts: PostfixFacts) -> frozenset[str]:
    """The host's own names, which mydestination keeps whatever inbound_domains says."""
    hostname = facts.expanded.get("myhostname", "").lower()
    mydomain = facts.expanded.get("mydomain", "").lower()
    names = {"localhost", "localhost.localdomain"}
    if hostname:
        names.add(hostname)
    if mydomain:
        names.add(f"localhost.{mydomain}")
    return frozenset(names)


@dataclass
class _DomainClassPlan:
    name: str
    before: list[str]
    after: list[str]
    from_default: bool


def _plan_domain_class(
    facts: PostfixFacts,
    name: str,
    desired: DesiredRelayState,
    inbound: frozenset[str],
    own: frozenset[str],
    warnings: list[str],
) -> _DomainClassPlan:
    raw = facts.raw.get(name, "")
    before = _source_tokens(facts, name)
    from_default = name not in facts.explicit and is_conditional_default(raw)

    def allowed(item: str) -> bool:
        item = item.lower()
        return is_table(item) or item in inbound or (name == "mydestination" and item in own)

    if desired.prune_domains:
        for table in split_list(facts.expanded.get(name, "")):
            if is_table(table):
                warnings.append(
                    f"{name} uses the lookup table {table}; postfix_relay does not edit tables, "
                    "so domains listed there beyond inbound_domains stay accepted"
                )
    after: list[str] = []
    for token in before:
        if is_table(token):
            after.append(token)
            continue
        if "$" in token:
            reference = only_reference(token)
            if reference in DOMAIN_CLASSES:
                after.append(token)  # that class is planned on its own
                continue
            items = _expand_token(token, facts.expanded)
            if items is None:
                after.append(token)
                warnings.append(f"{name} refers to an unknown parameter in {token}; kept as is")
                continue
            if not desired.prune_domains or all(allowed(item) for item in items):
                after.append(token)
                continue
            after.extend(item for item in items if allowed(item) and item not in after)
            continue
        if not desired.prune_domains or allowed(token):
            after.append(token)
    return _DomainClassPlan(name, before, after, from_default)


def _covered(
    domain: str,
    name: str,
    plans: Mapping[str, _DomainClassPlan],
    facts: PostfixFacts,
    seen: frozenset[str] = frozenset(),
) -> bool:
    """Whether class `name`, as planned, accepts `domain` (literal, $reference or table)."""
    if name in seen:
        return False
    for token in plans[name].after:
        if is_table(token):
            if domain in facts.table_hits.get(token, frozenset()):
                return True
            continue
        reference = only_reference(token)
        if reference is not None and reference in plans:
            if _covered(domain, reference, plans, facts, seen | {name}):
                return True
            continue
        items = _expand_token(token, facts.expanded) if "$" in token else [token]
        for item in items or []:
            if item.lower() == domain:
                return True
            if is_table(item) and domain in facts.table_hits.get(item, frozenset()):
                return True
    return False


def _holds_now(domain: str, name: str, facts: PostfixFacts) -> bool:
    """Whether class `name` itself lists `domain` today (references to other classes aside)."""
    for token in _source_tokens(facts, name):
        if only_reference(token) in DOMAIN_CLASSES:
            continue
        items = _expand_token(token, facts.expanded) if "$" in token else [token]
        for item in items or []:
            if item.lower() == domain:
                return True
            if is_table(item) and domain in facts.table_hits.get(item, frozenset()):
                return True
    return False


def _inbound_target(facts: PostfixFacts, desired: DesiredRelayState, missing: list[str]) -> str:
    if desired.inbound_domain_class != "auto":
        return desired.inbound_domain_class
    inbound = desired.inbound_domains or ()
    used = [
        name
        for name in DOMAIN_CLASSES
        if any(_holds_now(domain, name, facts) for domain in inbound if domain not in missing)
    ]
    if len(used) == 1:
        return used[0]
    how = (
        "none of the other inbound domains is accepted today"
        if not used
        else f"the host uses {' and '.join(used)} for them"
    )
    raise PlanError(
        f"inbound domain(s) {', '.join(missing)} are not accepted by this host and "
        f"inbound_domain_class is auto, but {how}: set inbound_domain_class to mydestination "
        "(local delivery), relay_domains (forward to an inner server), virtual_alias_domains "
        "or virtual_mailbox_domains"
    )


def _plan_domains(
    facts: PostfixFacts, desired: DesiredRelayState, warnings: list[str]
) -> list[ParameterChange]:
    if desired.inbound_domains is None:
        return []
    inbound = frozenset(desired.inbound_domains)
    own = own_names(facts)
    plans = {
        name: _plan_domain_class(facts, name, desired, inbound, own, warnings)
        for name in DOMAIN_CLASSES
    }
    missing = [
        domain
        for domain in desired.inbound_domains
        if not any(_covered(domain, name, plans, facts) for name in DOMAIN_CLASSES)
    ]
    if missing:
        target = _inbound_target(facts, desired, missing)
        plans[target].after.extend(missing)
    changes = []
    for name in DOMAIN_CLASSES:
        plan = plans[name]
        if plan.after == plan.before:
            continue
        removed = [t for t in plan.before if t not in plan.after]
        added = [t for t in plan.after if t not in plan.before]
        why = []
        if removed:
            why.append(f"not inbound domains: {', '.join(removed)}")
        if added:
            why.append(f"accept inbound domains: {', '.join(added)}")
        changes.append(
            ParameterChange(name, _written(facts, name), ", ".join(plan.after), "; ".join(why))
        )
    return changes


def _plan_networks(
    facts: PostfixFacts, desired: DesiredRelayState, warnings: list[str]
) -> list[ParameterChange]:
    current = split_list(facts.expanded.get("mynetworks", ""))
    keys = [network_key(token) for token in current]
    if desired.relay_allowed_networks is None:
        wide = [
            current[index]
            for index, key in enumerate(keys)
            if key is not None and _prefix(key) < MIN_PREFIX[_version(key)]
        ]
        if wide:
            warnings.append(
                f"mynetworks trusts {', '.join(wide)} (most of the Internet) and is not managed: "
                "set relay_allowed_networks"
            )
        return []
    wanted = list(desired.relay_allowed_networks)
    if not any(_loopback(key) for key in wanted):
        warnings.append(
            "relay_allowed_networks has no loopback network: programs on the host that send "
            "through SMTP on localhost can no longer relay (sendmail/pickup is not affected)"
        )
    if None not in keys and set(keys) == set(wanted) and len(keys) == len(set(keys)):
        return []
    return [
        ParameterChange(
            "mynetworks",
            _written(facts, "mynetworks"),
            ", ".join(wanted),
            "only relay_allowed_networks may relay without authentication",
        )
    ]


def _version(key: str) -> int:
    return 6 if key.startswith("[") else 4


def _prefix(key: str) -> int:
    return int(key.rsplit("/", 1)[1])


def _loopback(key: str) -> bool:
    text = key.replace("[", "").replace("]", "")
    return ipaddress.ip_network(text).overlaps(
        ipaddress.ip_network("127.0.0.0/8" if _version(key) == 4 else "::1/128")
    )


UNAUTH_DESTINATION = {
    "permanent": "reject_unauth_destination",
    "temporary": "defer_unauth_destination",
}


def _plan_restrictions(facts: PostfixFacts, desired: DesiredRelayState) -> list[ParameterChange]:
    name = "smtpd_relay_restrictions"
    current = _source_tokens(facts, name)
    gates = [i for i, t in enumerate(current) if t in UNAUTH_DESTINATION.values()]
    tail = current[gates[0] + 1 :] if gates else []
    if desired.relay_refusal == "keep":
        action = current[gates[0]] if gates else UNAUTH_DESTINATION["permanent"]
    else:
        action = UNAUTH_DESTINATION[desired.relay_refusal]
    head = ["permit_mynetworks"]
    if desired.relay_authenticated:
        head.append("permit_sasl_authenticated")
    wanted = [*head, action, *tail]
    if wanted == current:
        return []
    reason = (
        f"relay only for mynetworks{' and SASL clients' if desired.relay_authenticated else ''}"
    )
    reason += f", then {action}"
    dropped = [t for t in current[: gates[0] if gates else len(current)] if t not in head]
    if dropped:
        reason += f" (dropped before it: {', '.join(dropped)})"
    return [ParameterChange(name, _written(facts, name), render_restrictions(wanted), reason)]


def _plan_routing(facts: PostfixFacts) -> list[ParameterChange]:
    name = "allow_untrusted_routing"
    if facts.expanded.get(name, "no").strip().lower() == "no":
        return []
    return [
        ParameterChange(
            name,
            _written(facts, name),
            "no",
            "sender-specified routing (user%domain@host, host!user) from untrusted clients is "
            "a relay path",
        )
    ]


def _version_tuple(text: str) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", text)[:3]
    return tuple(int(n) for n in numbers)


def plan_relay(facts: PostfixFacts, desired: DesiredRelayState) -> RelayPlan:
    """The parameter changes that close the relay as `desired` says (pure)."""
    version = _version_tuple(facts.mail_version)
    if version and version < (2, 10):
        raise PlanError(
            f"Postfix {facts.mail_version} has no smtpd_relay_restrictions (needs 2.10 or later)"
        )
    warnings: list[str] = []
    changes = [
        *_plan_networks(facts, desired, warnings),
        *_plan_restrictions(facts, desired),
        *_plan_routing(facts),
        *_plan_domains(facts, desired, warnings),
    ]
    for override in facts.master_overrides:
        if override.name in RELAY_SENSITIVE:
            warnings.append(
                f"master.cf service {override.service}/{override.service_type} overrides "
                f"{override.name} (-o {override.name}={override.value}); postfix_relay manages "
                "main.cf only, so that service keeps its own value"
            )
    if desired.relay_authenticated and facts.expanded.get("smtpd_sasl_auth_enable") != "yes":
        warnings.append(
            "relay_authenticated is true but smtpd_sasl_auth_enable is not yes: no client can "
            "authenticate, so only mynetworks can relay"
        )
    for table, error in sorted(facts.table_errors.items()):
        warnings.append(f"postmap could not query {table}: {error}")
    before = {name: _written(facts, name) for name in MANAGED_PARAMETERS}
    return RelayPlan(tuple(changes), tuple(dict.fromkeys(warnings)), before)


# --- backups -----------------------------------------------------------------------------

# datetime.UTC is Python 3.11+; the managed host may run an older Python.
_UTC = datetime.timezone.utc  # noqa: UP017
BACKUP_PATTERN = re.compile(r"^main\.cf\.\d{8}T\d{6}\.\d{6}Z\Z")
LOCK_NAME = ".relayguard.lock"
PENDING_NAME = ".relayguard-pending.json"


@dataclass(frozen=True)
class BackupPolicy:
    """Where main.cf backups go and how many are kept (oldest pruned first)."""

    directory: str
    keep: int = 10

    def create(self, main_cf: str) -> str:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        stamp = datetime.datetime.now(_UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        path = os.path.join(self.directory, f"main.cf.{stamp}")
        while os.path.exists(path):  # same microsecond: wait for the next one
            time.sleep(0.001)
            stamp = datetime.datetime.now(_UTC).strftime("%Y%m%dT%H%M%S.%fZ")
            path = os.path.join(self.directory, f"main.cf.{stamp}")
        with open(main_cf, "rb") as source:
            content = source.read()
        _write_atomically(path, content, like=main_cf)
        return path

    def backups(self) -> list[str]:
        try:
            names = sorted(n for n in os.listdir(self.directory) if BACKUP_PATTERN.match(n))
        except FileNotFoundError:
            return []
        return [os.path.join(self.directory, n) for n in names]

    def prune(self, protect: Sequence[str] = ()) -> list[str]:
        """Delete the oldest backups beyond `keep`; never one in `protect`. Returns deleted."""
        existing = self.backups()
        excess = len(existing) - self.keep
        removed = []
        for path in existing:
            if excess <= 0:
                break
            if path in protect:
                continue
            try:
                os.unlink(path)
            except OSError:  # pruning is housekeeping: never fail a change for it
                continue
            removed.append(path)
            excess -= 1
        return removed

    @contextlib.contextmanager
    def lock(self, config_dir: str) -> Iterator[None]:
        """Exclusive lock for one change of this instance (a second run fails at once)."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        path = os.path.join(self.directory, LOCK_NAME)
        handle: IO[str] = open(path, "a", encoding="ascii")  # noqa: SIM115 - held for the block
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ApplyError(
                    f"another postfix_relay run is changing {config_dir} (lock {path} is held); "
                    "nothing was changed: run again when it has finished",
                    rolled_back=False,
                    backup_file=None,
                    wrote=False,
                ) from None
            yield
        finally:
            handle.close()

    @property
    def pending_path(self) -> str:
        return os.path.join(self.directory, PENDING_NAME)

    def pending(self) -> dict[str, str] | None:
        """The record of a change that was written but never validated and reloaded."""
        try:
            with open(self.pending_path, encoding="utf-8") as handle:
                record = json.load(handle)
        except (FileNotFoundError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def mark_pending(self, record: Mapping[str, str]) -> None:
        _write_atomically(self.pending_path, json.dumps(dict(record)).encode("utf-8"))

    def clear_pending(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.pending_path)


def _write_atomically(path: str, content: bytes, like: str | None = None) -> None:
    """Write `content` to `path` via a temporary file in the same directory and rename, so
    a reader (or a crash) never sees half a file; mode and owner copied from `like`."""
    directory = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(prefix=".relayguard.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        if like is not None and os.path.exists(like):
            status = os.stat(like)
            os.chmod(temporary, status.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):
                os.chown(temporary, status.st_uid, status.st_gid)
        else:
            os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def file_digest(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


# --- apply (writes) ----------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyOutcome:
    """What an apply or restore did."""

    backup_file: str | None
    reloaded: bool
    messages: tuple[str, ...] = ()
    pruned: tuple[str, ...] = ()


class _StepFailed(Exception):
    pass


def _failure_text(exc: Exception) -> str:
    if isinstance(exc, (_StepFailed, RelayConfigError)):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc}"


_QUEUE_LINE = re.compile(r"^queue_directory\s*=\s*(\S+)\s*$", re.MULTILINE)


def _queue_directory(tools: PostfixTools, config_dir: str) -> str | None:
    result = _run_capture([tools.postconf, "-c", config_dir, "-h", "queue_directory"])
    if result.returncode == 0 and result.stdout.strip():
        return result.stdout.strip()
    # main.cf is broken (that may be why we are restoring): read the line ourselves.
    with contextlib.suppress(OSError):
        found = _QUEUE_LINE.findall(read_text(os.path.join(config_dir, "main.cf")))
        if found and "$" not in found[-1]:
            return str(found[-1])
    result = _run_capture([tools.postconf, "-d", "-h", "queue_directory"])
    return result.stdout.strip() or None


def postfix_running(tools: PostfixTools, config_dir: str) -> bool:
    """Whether this instance's master runs, from its pid file (`postfix status` would fail
    on a main.cf Postfix cannot parse, and a restore must still reload then)."""
    queue = _queue_directory(tools, config_dir)
    if queue is None:
        return False
    try:
        with open(os.path.join(queue, "pid", "master.pid"), encoding="ascii") as handle:
            pid = int(handle.read().strip())
        os.kill(pid, 0)
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "master"
    except (OSError, ValueError):
        return False


def postfix_check(tools: PostfixTools, config_dir: str) -> CommandResult:
    return run_command([tools.postfix, "-c", config_dir, "check"])


def postfix_reload(tools: PostfixTools, config_dir: str) -> CommandResult:
    return run_command([tools.postfix, "-c", config_dir, "reload"])


def postconf_edit(tools: PostfixTools, config_dir: str, settings: Mapping[str, str]) -> None:
    """Write parameters with `postconf -e` (it replaces every entry and renames atomically)."""
    for name, value in settings.items():
        if "\n" in value or "\0" in value or "\r" in value:  # defence in depth
            raise PostfixCommandError(f"refusing to write a multi-line value for {name}")
    argv = [tools.postconf, "-c", config_dir, "-e", *(f"{k}={v}" for k, v in settings.items())]
    result = _run_capture(argv)
    if result.returncode != 0:
        raise PostfixCommandError(
            f"postconf -e failed: {' '.join(result.stderr.split()) or result.returncode}"
        )


def _restore_file(backup: str, main_cf: str) -> None:
    with open(backup, "rb") as handle:
        content = handle.read()
    _write_atomically(main_cf, content, like=main_cf)
    if file_digest(main_cf) != hashlib.sha256(content).hexdigest():
        raise ApplyError(
            f"main.cf differs from {backup} after restoring it",
            rolled_back=False,
            backup_file=backup,
        )


def _roll_back(
    tools: PostfixTools,
    config_dir: str,
    backup: str,
    running: bool,
    failure: str,
    restored: str = "",
) -> ApplyError:
    """Put `backup` back after `failure`; reload so Postfix runs the old configuration."""
    main_cf = os.path.join(config_dir, "main.cf")
    try:
        _restore_file(backup, main_cf)
    except (OSError, ApplyError) as exc:
        return ApplyError(
            f"{failure}; restoring main.cf from {backup} ALSO failed: {exc}",
            rolled_back=False,
            backup_file=backup,
        )
    message = f"{failure}; {restored or f'main.cf restored from {backup}'}"
    if running:
        reload = postfix_reload(tools, config_dir)
        if reload.returncode != 0:
            message += f", but reloading the restored configuration failed: {reload.summary()}"
        else:
            message += " and Postfix reloaded with it"
    return ApplyError(message, rolled_back=True, backup_file=backup)


def _validate_and_reload(
    tools: PostfixTools,
    config_dir: str,
    running: bool,
    verify: Callable[[], str | None] | None,
    what: str,
) -> bool:
    check = postfix_check(tools, config_dir)
    if check.returncode != 0:
        raise _StepFailed(f"postfix check rejected {what}: {check.summary()}")
    if verify is not None:
        problem = verify()
        if problem:
            raise _StepFailed(f"{what} did not take effect: {problem}")
    if not running:
        return False
    reload = postfix_reload(tools, config_dir)
    if reload.returncode != 0:
        raise _StepFailed(f"postfix reload failed after {what}: {reload.summary()}")
    return True


def apply_plan(
    tools: PostfixTools,
    facts: PostfixFacts,
    plan: RelayPlan,
    backups: BackupPolicy,
    verify: Callable[[], str | None] | None = None,
) -> ApplyOutcome:
    """Back up main.cf, write the plan, validate, reload; on any failure put main.cf back.

    `verify` re-reads the instance and returns a problem when the plan did not take effect.
    Refuses to start when `postfix check` already fails (nothing is written then).
    """
    config_dir = facts.config_dir
    with backups.lock(config_dir):
        precheck = postfix_check(tools, config_dir)
        if precheck.returncode != 0:
            raise ApplyError(
                f"postfix check fails before any change, so nothing was written: "
                f"{precheck.summary()}",
                rolled_back=False,
                backup_file=None,
                wrote=False,
            )
        running = postfix_running(tools, config_dir)
        backup = backups.create(facts.main_cf)
        backups.mark_pending({"config_dir": config_dir, "backup_file": backup})
        try:
            postconf_edit(tools, config_dir, plan.settings())
            reloaded = _validate_and_reload(tools, config_dir, running, verify, "the new main.cf")
        except Exception as exc:  # any failure after the write: put main.cf back
            error = _roll_back(tools, config_dir, backup, running, _failure_text(exc))
            if error.rolled_back:
                backups.clear_pending()
            raise error from None
        backups.clear_pending()
        pruned = backups.prune(protect=[backup])
    messages = () if running else ("Postfix is not running: main.cf changed, no reload needed",)
    return ApplyOutcome(backup, reloaded, messages, tuple(pruned))


def finish_pending(tools: PostfixTools, config_dir: str, backups: BackupPolicy) -> ApplyOutcome:
    """Complete a change an earlier run wrote but never validated and reloaded (it was
    killed): validate and reload now, or restore its backup if validation fails."""
    record = backups.pending() or {}
    backup = record.get("backup_file")
    with backups.lock(config_dir):
        running = postfix_running(tools, config_dir)
        try:
            reloaded = _validate_and_reload(
                tools, config_dir, running, None, "the interrupted change"
            )
        except _StepFailed as exc:
            if backup and os.path.isfile(backup):
                error = _roll_back(tools, config_dir, backup, running, str(exc))
                if error.rolled_back:
                    backups.clear_pending()
                raise error from None
            raise ApplyError(str(exc), rolled_back=False, backup_file=backup) from None
        backups.clear_pending()
    return ApplyOutcome(backup, reloaded, ("completed a change an interrupted run had written",))


MAX_BACKUP_BYTES = 4 * 1024 * 1024


def read_backup(field_name: str, path: str) -> bytes:
    """A backup's content, checked: a regular file, bounded in size, text without NUL."""
    if os.path.islink(path) or not os.path.isfile(path):
        raise InputError(field_name, path, "is not a regular file")
    if os.path.getsize(path) > MAX_BACKUP_BYTES:
        raise InputError(field_name, path, "is larger than a main.cf can sensibly be")
    with open(path, "rb") as handle:
        content = handle.read()
    if b"\0" in content:
        raise InputError(field_name, path, "contains NUL bytes: not a main.cf")
    return content


def restore_backup(
    tools: PostfixTools, config_dir: str, backup_file: str, backups: BackupPolicy
) -> ApplyOutcome:
    """Install `backup_file` as main.cf, validate and reload. The main.cf it replaces is
    saved first; if Postfix rejects the backup, that main.cf is put back."""
    content = read_backup("backup_file", backup_file)
    main_cf = os.path.join(config_dir, "main.cf")
    with backups.lock(config_dir):
        running = postfix_running(tools, config_dir)
        saved = backups.create(main_cf)
        try:
            _write_atomically(main_cf, content, like=main_cf)
            reloaded = _validate_and_reload(
                tools, config_dir, running, None, f"the backup {backup_file}"
            )
        except Exception as exc:
            raise _roll_back(
                tools,
                config_dir,
                saved,
                running,
                _failure_text(exc),
                f"main.cf put back as it was (saved as {saved})",
            ) from None
        pruned = backups.prune(protect=[saved, backup_file])
        backups.clear_pending()
    return ApplyOutcome(saved, reloaded, (), tuple(pruned))


def read_text(path: str) -> str:
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8", "replace")


# --- the run as the module drives it ------------------------------------------------------


@dataclass
class RunResult:
    """Everything the module returns (see RETURN in modules/postfix_relay.py)."""

    changed: bool
    config_dir: str
    main_cf: str
    changes: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    backup_file: str | None = None
    restored_from: str | None = None
    reloaded: bool = False
    values: dict[str, str] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    diff: dict[str, str] | None = None

    def as_dict(self) -> dict[str, object]:
        result: dict[str, object] = {
            "changed": self.changed,
            "config_dir": self.config_dir,
            "main_cf": self.main_cf,
            "changes": self.changes,
            "backup_file": self.backup_file,
            "restored_from": self.restored_from,
            "reloaded": self.reloaded,
            "relay_parameters": self.values,
            "messages": self.messages,
        }
        if self.diff is not None:
            result["diff"] = self.diff
        return result


@dataclass(frozen=True)
class RunSettings:
    """The options that say where and how to act (validated)."""

    state: str
    config_dir: str
    backup_dir: str
    backup_keep: int
    backup_file: str | None
    check_mode: bool
    want_diff: bool


def run_settings(options: Mapping[str, object], check_mode: bool, want_diff: bool) -> RunSettings:
    """Validate the options that say where to act."""
    state = options.get("state", "present")
    if state not in ("present", "restored"):
        raise InputError("state", state, "is not present or restored")
    config_dir = validate_config_path("config_dir", options.get("config_dir", "/etc/postfix"))
    backup_dir_option = options.get("backup_dir")
    backup_dir = (
        os.path.join(config_dir, "relayguard-backups")
        if backup_dir_option is None
        else validate_config_path("backup_dir", backup_dir_option)
    )
    keep = options.get("backup_keep", 10)
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= 1000:
        raise InputError("backup_keep", keep, "is not a whole number from 1 to 1000")
    backup_file_option = options.get("backup_file")
    backup_file = None
    if backup_file_option is not None:
        if isinstance(backup_file_option, str) and "/" not in backup_file_option:
            backup_file_option = os.path.join(backup_dir, backup_file_option)
        backup_file = validate_config_path("backup_file", backup_file_option)
    if state == "restored" and backup_file is None:
        raise InputError("backup_file", None, "is required when state is restored")
    return RunSettings(str(state), config_dir, backup_dir, keep, backup_file, check_mode, want_diff)


def run(
    options: Mapping[str, object],
    check_mode: bool,
    want_diff: bool,
    tools_factory: Callable[[], PostfixTools] = PostfixTools.locate,
) -> RunResult:
    """Validate every option, then plan and (unless check mode) apply. The module's body."""
    settings = run_settings(options, check_mode, want_diff)
    desired = desired_state(options) if settings.state == "present" else None
    tools = tools_factory()
    backups = BackupPolicy(settings.backup_dir, settings.backup_keep)
    if desired is None:
        return _run_restore(tools, settings, backups)
    return _run_present(tools, settings, desired, backups)


def _run_present(
    tools: PostfixTools, settings: RunSettings, desired: DesiredRelayState, backups: BackupPolicy
) -> RunResult:
    lookups = desired.inbound_domains or ()
    facts = read_facts(tools, settings.config_dir, lookups)
    plan = plan_relay(facts, desired)
    result = RunResult(
        changed=plan.changed,
        config_dir=settings.config_dir,
        main_cf=facts.main_cf,
        changes=[change.as_dict() for change in plan.changes],
        warnings=list(plan.warnings),
        values=plan.values_after(),
    )
    if settings.want_diff:
        result.diff = plan.diff(facts.main_cf)
    pending = backups.pending()
    if pending is not None:
        result.changed = True
        result.messages.append(
            "an earlier run wrote main.cf but did not finish validating and reloading it"
        )
    if settings.check_mode or not result.changed:
        return result
    if pending is not None:
        outcome = finish_pending(tools, settings.config_dir, backups)
        result.messages.extend(outcome.messages)
        result.reloaded = outcome.reloaded
        result.backup_file = outcome.backup_file
        facts = read_facts(tools, settings.config_dir, lookups)
        plan = plan_relay(facts, desired)
        if not plan.changed:
            return result

    def verify() -> str | None:
        after = plan_relay(read_facts(tools, settings.config_dir, lookups), desired)
        if after.changes:
            return "still to change: " + ", ".join(c.name for c in after.changes)
        return None

    outcome = apply_plan(tools, facts, plan, backups, verify)
    result.backup_file = outcome.backup_file
    result.reloaded = outcome.reloaded
    result.messages.extend(outcome.messages)
    return result


def _run_restore(tools: PostfixTools, settings: RunSettings, backups: BackupPolicy) -> RunResult:
    backup_file = settings.backup_file
    if backup_file is None:  # run_settings requires backup_file for state=restored
        raise RelayConfigError("backup_file is required with state=restored")
    main_cf = os.path.join(settings.config_dir, "main.cf")
    if not os.path.isfile(main_cf):
        raise PostfixCommandError(f"config_dir {settings.config_dir} has no main.cf")
    wanted = read_backup("backup_file", backup_file)
    with open(main_cf, "rb") as handle:
        current = handle.read()
    result = RunResult(
        changed=wanted != current,
        config_dir=settings.config_dir,
        main_cf=main_cf,
        restored_from=backup_file,
    )
    if settings.want_diff:
        result.diff = {
            "before": current.decode("utf-8", "replace"),
            "after": wanted.decode("utf-8", "replace"),
            "before_header": main_cf,
            "after_header": f"{main_cf} (from {backup_file})",
        }
    if settings.check_mode or not result.changed:
        return result
    outcome = restore_backup(tools, settings.config_dir, backup_file, backups)
    result.backup_file = outcome.backup_file
    result.reloaded = outcome.reloaded
    return result
