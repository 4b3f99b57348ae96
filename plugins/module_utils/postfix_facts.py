"""Postfix relay closure, facts (reads): the effective configuration of one instance.

main.cf as `postconf` reports it (`-n` written, `-x` expanded, defaults), every master.cf
service and its `-o` overrides (`postconf -M`, `postconf -P`; master(5): "-o name=value
... override the named main.cf configuration parameter"), and the contents of the lookup
tables mynetworks and relay_domains use (DATABASE_README: cidr: and texthash: are read as
text, hash:/lmdb: with `postmap -s`). Each value keeps its origin (relay_backend.Origin).

Standard library only (Python 3.7+).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from command_runner import (
        CommandError,
        CommandResult,
        run_on_pty,
    )
    from postfix_validate import (
        DOMAIN_CLASSES,
        PostfixCommandError,
        postfix_network,
    )
    from relay_backend import Origin
else:
    try:  # as Ansible ships it: the collection's module_utils beside this file
        from ansible_collections.relayguard.mail.plugins.module_utils.command_runner import (
            CommandError,
            CommandResult,
            run_on_pty,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_validate import (
            DOMAIN_CLASSES,
            PostfixCommandError,
            postfix_network,
        )
        from ansible_collections.relayguard.mail.plugins.module_utils.relay_backend import Origin
    except ImportError:  # loaded by path outside Ansible (tests, the target-Python check)
        from command_runner import (
            CommandError,
            CommandResult,
            run_on_pty,
        )
        from postfix_validate import (
            DOMAIN_CLASSES,
            PostfixCommandError,
            postfix_network,
        )
        from relay_backend import Origin


# --- Postfix values (pure) ---------------------------------------------------------------

_TABLE = re.compile(r"^[a-z][a-z0-9_]*:\S")
REFERENCE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|\(([A-Za-z0-9_]+)\)|([A-Za-z0-9_]+))")
_ONLY_REFERENCE = re.compile(r"^\$(?:\{([A-Za-z0-9_]+)\}|\(([A-Za-z0-9_]+)\)|([A-Za-z0-9_]+))\Z")


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
    match = _ONLY_REFERENCE.match(token)
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


def run_capture(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
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


_TEXT_TABLES = ("cidr", "texthash")  # read as text by Postfix itself (DATABASE_README)
_INDEXED_TABLES = ("hash", "btree", "lmdb", "dbm", "cdb", "sdbm")  # postmap -s lists them


def parse_master_services(text: str) -> dict[str, str]:
    """`postconf -M` output as {"service/type": command} (master(5): fields 1, 2 and 8)."""
    services: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 8 and not line.startswith(("#", " ", "\t")):
            services[f"{fields[0]}/{fields[1]}"] = fields[7]
    return services


def parse_table_text(text: str) -> tuple[tuple[str, str], ...]:
    """A cidr:/texthash: source or `postmap -s` output as (key, value) pairs, in order
    (comments and blank lines skipped; a continuation line starts with white space)."""
    entries: list[tuple[str, str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in " \t" and entries:
            key, value = entries[-1]
            entries[-1] = (key, f"{value} {stripped}".strip())
            continue
        parts = stripped.split(None, 1)
        entries.append((parts[0], parts[1] if len(parts) > 1 else ""))
    return tuple(entries)


@dataclass(frozen=True)
class TableContents:
    """A lookup table's entries, or why they could not be read (`error`)."""

    table: str
    entries: tuple[tuple[str, str], ...] = ()
    error: str = ""

    def keys(self) -> tuple[str, ...]:
        return tuple(entry[0] for entry in self.entries)


def read_table(tools: PostfixTools, config_dir: str, table: str) -> TableContents:
    """Read a table's entries: cidr:/texthash: from their file, indexed maps with
    `postmap -s` (DATABASE_README), falling back to their source file."""
    kind, path = table.split(":", 1)
    if kind in _TEXT_TABLES or kind in _INDEXED_TABLES:
        if kind in _INDEXED_TABLES:
            result = run_capture([tools.postmap, "-c", config_dir, "-s", table])
            if result.returncode == 0:
                return TableContents(table, parse_table_text(result.stdout))
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                return TableContents(table, parse_table_text(handle.read()))
        except OSError as exc:
            return TableContents(table, (), f"cannot read {path}: {exc.strerror or exc}")
    return TableContents(table, (), f"{kind}: tables are not read (only text and indexed maps)")


@dataclass(frozen=True)
class PostfixFacts:
    """One instance's configuration as postconf reports it (the planner's only input).

    `raw` holds values as written (or Postfix's default expression when unset), `expanded`
    the same with $references resolved, `explicit` the names set in main.cf (postconf -n).
    `table_hits` maps each lookup table used by a domain class to the inbound domains
    `postmap -q` found in it. `master_services` maps "service/type" to its command
    (`postconf -M`), `tables` the lookup tables of mynetworks and the domain classes to their
    entries. `origin()` says where a value comes from (relay_backend.Origin).
    """

    config_dir: str
    raw: Mapping[str, str]
    expanded: Mapping[str, str]
    explicit: frozenset[str]
    master_overrides: tuple[MasterOverride, ...] = ()
    table_hits: Mapping[str, frozenset[str]] = field(default_factory=dict)
    table_errors: Mapping[str, str] = field(default_factory=dict)
    master_services: Mapping[str, str] = field(default_factory=dict)
    tables: Mapping[str, TableContents] = field(default_factory=dict)

    @property
    def main_cf(self) -> str:
        return os.path.join(self.config_dir, "main.cf")

    @property
    def mail_version(self) -> str:
        return self.expanded.get("mail_version", "")

    @property
    def master_cf(self) -> str:
        return os.path.join(self.config_dir, "master.cf")

    def smtpd_services(self) -> list[str]:
        """The master.cf services that run smtpd (all overridden ones if -M was not read)."""
        if self.master_services:
            return [name for name, cmd in self.master_services.items() if cmd == "smtpd"]
        return sorted({f"{o.service}/{o.service_type}" for o in self.master_overrides})

    def origin(self, name: str, service: str = "") -> Origin:
        """Where `name` is set for `service` ("" = main.cf): override, main.cf or default."""
        for override in self.master_overrides:
            where = f"{override.service}/{override.service_type}"
            if service and where == service and override.name == name:
                return Origin("override", self.master_cf, service)
        if name in self.explicit:
            return Origin("main", self.main_cf)
        return Origin("default", "", "postconf -d")


def _postconf(tools: PostfixTools, config_dir: str, *args: str) -> str:
    result = run_capture([tools.postconf, "-c", config_dir, *args])
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


def relay_tables(expanded: Mapping[str, str], overrides: Sequence[MasterOverride]) -> list[str]:
    """The lookup tables that decide relaying: mynetworks' and the domain classes', in
    main.cf and in master.cf overrides of them."""
    tables = domain_class_tables(expanded)
    values = [expanded.get("mynetworks", "")]
    values += [o.value for o in overrides if o.name in ("mynetworks", *DOMAIN_CLASSES)]
    for value in values:
        for token in split_list(value):
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
    hits: dict[str, frozenset[str]] = {}
    errors: dict[str, str] = {}
    try:
        overrides = parse_master_overrides(_postconf(tools, config_dir, "-P"))
        services = parse_master_services(_postconf(tools, config_dir, "-M"))
    except PostfixCommandError as exc:  # postconf before 2.11 has neither -P nor -M
        version = tuple(int(n) for n in re.findall(r"\d+", expanded.get("mail_version", ""))[:2])
        if not version or version >= (2, 11):
            raise
        overrides, services = (), {}
        errors["master.cf"] = f"overrides not read: {exc}"
    tables = {
        table: read_table(tools, config_dir, table) for table in relay_tables(expanded, overrides)
    }
    for table in domain_class_tables(expanded):
        found: set[str] = set()
        for domain in look_up_domains:
            result = run_capture([tools.postmap, "-c", config_dir, "-q", domain, table])
            if result.returncode == 0:
                found.add(domain)
            elif result.returncode != 1:
                errors[table] = " ".join(result.stderr.split()) or f"exit {result.returncode}"
        hits[table] = frozenset(found)
    return PostfixFacts(
        config_dir, raw, expanded, explicit, overrides, hits, errors, services, tables
    )
