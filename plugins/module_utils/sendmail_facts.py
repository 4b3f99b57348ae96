"""Sendmail relay facts: what opens or allows relaying, each with where it is set.

Sendmail refuses to relay by default since 8.9; relaying is allowed by (Sendmail cf/README,
"Anti-Spam Configuration Control", docs/sources.md#sendmail-cf-readme):

* the access database: ``Connect:<address or host>`` (and untagged) entries with value
  RELAY trust a client, ``To:<domain>`` RELAY entries accept a destination,
  ``From:<address>`` RELAY entries trust a sender when FEATURE(`relay_mail_from') is used;
* class R (``$=R``): the relay-domains file (``confCR_FILE``, ``FR`` in sendmail.cf) and
  RELAY_DOMAIN / RELAY_DOMAIN_FILE in the mc: destinations (and client hosts) relayed;
* FEATUREs in the mc: promiscuous_relay, loose_relay_check, relay_based_on_MX,
  relay_entire_domain, relay_hosts_only, relay_local_from, relay_mail_from;
* TRUST_AUTH_MECH: clients authenticated with one of its mechanisms (SMTP AUTH) relay.

Parsing is pure (`parse_facts`); `read_facts` reads the files. The generated sendmail.cf is
read for what the mc's included files define (the relay-domains file, the pid file).
Standard library only (Python 3.7+).
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relay_backend import Origin, Setting
else:
    try:  # as Ansible ships it
        from ansible_collections.relayguard.mail.plugins.module_utils.relay_backend import (
            Origin,
            Setting,
        )
    except ImportError:  # loaded by path outside Ansible (tests)
        from relay_backend import Origin, Setting

# Every FEATURE cf/README lists under relaying (relay_hosts_only narrows, the rest widen).
RELAY_FEATURES = (
    "promiscuous_relay",
    "loose_relay_check",
    "relay_based_on_MX",
    "relay_entire_domain",
    "relay_hosts_only",
    "relay_local_from",
    "relay_mail_from",
)
DEFAULT_SETTINGS_DIR = "/etc/mail/"
DEFAULT_PID_FILE = "/var/run/sendmail.pid"  # sendmail's _PATH_SENDMAILPID

_MACRO = re.compile(r"^\s*([A-Za-z_]+)\((.*)\)\s*(?:dnl\b.*)?$")
_QUOTED = re.compile(r"`([^`']*)'")


class SendmailFactsError(ValueError):
    """A Sendmail configuration the backend cannot read safely."""


@dataclass(frozen=True)
class McLine:
    """One active macro call of the mc: its 1-based line number, name and quoted arguments."""

    number: int
    macro: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class SendmailFacts:
    """The relay-relevant configuration of one Sendmail, each value with its Origin."""

    mc_path: str
    mc_text: str
    cf_path: str
    features: tuple[Setting, ...]  # name: the FEATURE, value: its other arguments
    trust_auth: tuple[Setting, ...]  # TRUST_AUTH_MECH lines (value: the mechanisms)
    relay_domains: tuple[Setting, ...]  # class R members (name: the domain)
    relay_domains_file: str  # "" when the cf reads none
    relay_domains_text: str
    access_path: str  # the makemap source ("" without FEATURE(`access_db'))
    access_text: str
    access_relays: tuple[Setting, ...]  # access entries with value RELAY (name: the key)
    pid_file: str

    def feature(self, name: str) -> Setting | None:
        return next((f for f in self.features if f.name == name), None)


def mc_lines(text: str) -> list[McLine]:
    """The active macro calls of an mc, one per line (``dnl`` and ``#`` lines are inactive)."""
    found: list[McLine] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith(("dnl", "#")):
            continue
        match = _MACRO.match(line)
        if match:
            args = tuple(_QUOTED.findall(match.group(2)))
            if not args:  # FEATURE(name) without quotes
                args = tuple(a.strip() for a in match.group(2).split(","))
            found.append(McLine(number, match.group(1), args))
    return found


def table_lines(text: str) -> list[tuple[int, str, str]]:
    """(line number, key, value) of a makemap source or a class file (``#`` comments)."""
    rows: list[tuple[int, str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        body = line.split("#", 1)[0].strip()
        if body:
            words = body.split(None, 1)
            rows.append((number, words[0], words[1].strip() if len(words) > 1 else ""))
    return rows


def connect_network(key: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The client network of an access key (``Connect:10.1``, ``10.1.2.3``,
    ``Connect:IPv6:::1``): Sendmail matches IPv4 by leading octets. None: a host name."""
    body = key[len("Connect:") :] if key.lower().startswith("connect:") else key
    try:
        if body.lower().startswith("ipv6:"):
            return ipaddress.ip_network(body[5:] + "/128")
        octets = body.split(".")
        if not 1 <= len(octets) <= 4 or not all(o.isdigit() for o in octets):
            return None
        padded = octets + ["0"] * (4 - len(octets))
        return ipaddress.ip_network(".".join(padded) + f"/{8 * len(octets)}")
    except ValueError:
        return None


def network_key(network: str) -> str:
    """The access key that trusts a CIDR: IPv4 on an octet boundary, IPv6 one address."""
    net = ipaddress.ip_network(network, strict=True)
    if net.version == 6:
        if net.prefixlen != 128:
            raise SendmailFactsError(
                f"relay_allowed_networks: {network}: Sendmail's access keys match IPv6 "
                "addresses whole here; give single addresses (/128)"
            )
        return f"Connect:IPv6:{net.network_address}"
    if net.prefixlen % 8 or net.prefixlen == 0:
        raise SendmailFactsError(
            f"relay_allowed_networks: {network}: Sendmail's access keys match IPv4 by whole "
            "octets; give a /8, /16, /24 or /32"
        )
    octets = str(net.network_address).split(".")[: net.prefixlen // 8]
    return "Connect:" + ".".join(octets)


def _access_source(lines: list[McLine]) -> str:
    for line in lines:
        if line.macro == "FEATURE" and line.args and line.args[0] == "access_db":
            spec = line.args[1] if len(line.args) > 1 else ""
            paths = [w for w in spec.split() if w.startswith("/")]
            path = paths[-1] if paths else DEFAULT_SETTINGS_DIR + "access"
            return path[:-3] if path.endswith(".db") else path
    return ""


def _cf_value(cf_text: str, prefix: str) -> str:
    for line in cf_text.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    return ""


def relay_domains_file(lines: list[McLine], cf_text: str) -> str:
    """The file class R is read from: the cf's ``FR`` line, else the mc's confCR_FILE."""
    spec = _cf_value(cf_text, "FR")
    if not spec:
        for line in lines:
            if line.macro == "define" and line.args[:1] == ("confCR_FILE",):
                spec = line.args[1] if len(line.args) > 1 else ""
            elif line.macro == "RELAY_DOMAIN_FILE" and line.args:
                spec = line.args[0]
    words = [w for w in spec.split() if w != "-o"]
    return words[0] if words and words[0].startswith("/") else ""


def _origin(path: str, line: McLine) -> Origin:
    return Origin("main", path, f"line {line.number}: {line.macro}")


def _mc_settings(path: str, lines: list[McLine]) -> tuple[list[Setting], ...]:
    features: list[Setting] = []
    auth: list[Setting] = []
    domains: list[Setting] = []
    for line in lines:
        if line.macro == "FEATURE" and line.args and line.args[0] in RELAY_FEATURES:
            value = ", ".join(line.args[1:])
            features.append(Setting(line.args[0], value, _origin(path, line)))
        elif line.macro == "TRUST_AUTH_MECH" and line.args:
            auth.append(Setting("TRUST_AUTH_MECH", line.args[0], _origin(path, line)))
        elif line.macro == "RELAY_DOMAIN" and line.args:
            for domain in line.args[0].split():
                domains.append(Setting(domain.lower(), "R", _origin(path, line)))
    return features, auth, domains


def parse_facts(
    mc_path: str,
    mc_text: str,
    cf_text: str = "",
    access_text: str = "",
    relay_domains_text: str = "",
) -> SendmailFacts:
    """Pure: the facts of an mc, its generated cf and the two tables' text."""
    lines = mc_lines(mc_text)
    features, auth, domains = _mc_settings(mc_path, lines)
    access_path = _access_source(lines)
    cr_file = relay_domains_file(lines, cf_text)
    for number, key, _value in table_lines(relay_domains_text):
        domains.append(Setting(key.lower(), "R", Origin("file", cr_file, f"line {number}")))
    relays = tuple(
        Setting(key, value, Origin("table", access_path, f"line {number}"))
        for number, key, value in table_lines(access_text)
        if value.split()[:1] and value.split()[0].upper() == "RELAY"
    )
    return SendmailFacts(
        mc_path=mc_path,
        mc_text=mc_text,
        cf_path=os.path.join(os.path.dirname(mc_path), "sendmail.cf"),
        features=tuple(features),
        trust_auth=tuple(auth),
        relay_domains=tuple(domains),
        relay_domains_file=cr_file,
        relay_domains_text=relay_domains_text,
        access_path=access_path,
        access_text=access_text,
        access_relays=relays,
        pid_file=_cf_value(cf_text, "O PidFile=") or DEFAULT_PID_FILE,
    )


def _read(path: str) -> str:
    if not path or not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def read_facts(mc_path: str, cf_path: str = "") -> SendmailFacts:
    """Read the mc, its sendmail.cf (default: beside it) and the tables they name."""
    if not os.path.isabs(mc_path) or not os.path.isfile(mc_path):
        raise SendmailFactsError(f"mc_path: {mc_path} is not an existing absolute file")
    cf = cf_path or os.path.join(os.path.dirname(mc_path), "sendmail.cf")
    mc_text, cf_text = _read(mc_path), _read(cf)
    lines = mc_lines(mc_text)
    facts = parse_facts(
        mc_path,
        mc_text,
        cf_text,
        _read(_access_source(lines)),
        _read(relay_domains_file(lines, cf_text)),
    )
    return SendmailFacts(**{**facts.__dict__, "cf_path": cf})
