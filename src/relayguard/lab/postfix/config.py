"""What an isolated lab Postfix instance's files say: main.cf, master.cf, alternates (pure).

Everything here is a pure function over records, so the rendering is tested without Postfix.
`relayguard.lab.postfix.instance` writes the result to disk and runs Postfix on it.

Layout of one instance under its root directory (docs/sources.md#postfix-multi-instance)::

    ROOT/config/main.cf, master.cf, aliases   config_directory (root-owned tree)
    ROOT/queue/                               queue_directory (Postfix fills it in)
    ROOT/data/                                data_directory (owned by mail_owner)
    ROOT/log/maillog                          maillog_file (prefix in maillog_file_prefixes)
    ROOT/config/sasl/smtpd.conf, sasldb2      Cyrus SASL (an instance with SASL users only)

The queue and data directories are siblings of the config directory, not inside it, because
`postfix-script check-warn` wants the whole config tree owned by root and warns otherwise.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

LAB_DOMAIN = "relayguard.test"  # RFC 2606 reserved TLD: never a real destination

_PARAMETER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_INSTANCE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
# Postfix splits list values on commas and white space (postconf(5), "lists").
_LIST_SEPARATOR = re.compile(r"[\s,]+")


class PostfixConfigError(ValueError):
    """A value that cannot go into a Postfix configuration file safely."""


@dataclass(frozen=True)
class Listener:
    """Where the instance's smtpd listens: one IP address and TCP port."""

    address: str
    port: int = 25

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.address)
        except ValueError as exc:
            raise PostfixConfigError(
                f"listener address is not an IP address: {self.address!r}"
            ) from exc
        if not 0 < self.port < 65536:
            raise PostfixConfigError(f"listener port out of range: {self.port}")

    @property
    def is_ipv6(self) -> bool:
        return ipaddress.ip_address(self.address).version == 6

    @property
    def host(self) -> str:
        """The address as Postfix writes a host: IPv6 in brackets."""
        return f"[{self.address}]" if self.is_ipv6 else self.address

    @property
    def endpoint(self) -> str:
        """The master.cf service name, e.g. ``127.0.4.1:25`` or ``[::1]:25``."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class InstanceLayout:
    """The directories and files of one instance, all under `root`."""

    root: Path

    def __post_init__(self) -> None:
        text = str(self.root)
        if not self.root.is_absolute():
            raise PostfixConfigError(f"instance directory must be absolute: {text!r}")
        # main.cf lists are split on commas and white space; such a path cannot be written.
        if _LIST_SEPARATOR.search(text) or "$" in text:
            raise PostfixConfigError(
                f"instance directory must not contain ',', '$' or spaces: {text!r}"
            )

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def queue_dir(self) -> Path:
        return self.root / "queue"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def maillog(self) -> Path:
        return self.log_dir / "maillog"

    @property
    def main_cf(self) -> Path:
        return self.config_dir / "main.cf"

    @property
    def master_cf(self) -> Path:
        return self.config_dir / "master.cf"

    @property
    def aliases(self) -> Path:
        return self.config_dir / "aliases"

    @property
    def sasl_dir(self) -> Path:
        """Cyrus SASL's application configuration (cyrus_sasl_config_path; Debian's Postfix
        looks in $config_directory/sasl whatever that parameter says)."""
        return self.config_dir / "sasl"

    @property
    def sasldb(self) -> Path:
        return self.sasl_dir / "sasldb2"

    @property
    def master_pid_file(self) -> Path:
        return self.queue_dir / "pid" / "master.pid"


def instance_name_for(root: Path) -> str:
    """A DNS-label-safe name derived from the directory name (used in myhostname, syslog_name)."""
    name = re.sub(r"[^a-z0-9-]+", "-", root.name.lower()).strip("-")
    return name or "instance"


def validate_instance_name(name: str) -> str:
    if not _INSTANCE_NAME.match(name) or len(name) > 63:
        raise PostfixConfigError(f"instance name must be a DNS label (a-z, 0-9, '-'): {name!r}")
    return name


def validate_parameters(parameters: Mapping[str, str]) -> None:
    """Refuse names and values that would break or inject into main.cf."""
    for name, value in parameters.items():
        if not _PARAMETER_NAME.match(name):
            raise PostfixConfigError(f"not a Postfix parameter name: {name!r}")
        if "\n" in value or "\r" in value or "\0" in value:
            raise PostfixConfigError(f"value of {name} spans lines; give it on one line")


def base_parameters(layout: InstanceLayout, listener: Listener, name: str) -> dict[str, str]:
    """The plumbing every lab instance needs; profiles and callers override on top of it."""
    validate_instance_name(name)
    return {
        "compatibility_level": "3.6",
        "queue_directory": str(layout.queue_dir),
        "data_directory": str(layout.data_dir),
        # Without syslog (containers, CI) this file is the only place Postfix's log appears;
        # maillog_file must sit under a maillog_file_prefixes entry (postconf(5)).
        "maillog_file": str(layout.maillog),
        "maillog_file_prefixes": str(layout.log_dir),
        "syslog_name": f"postfix-{name}",
        "myhostname": f"{name}.{LAB_DOMAIN}",
        "mydestination": "$myhostname, localhost",
        # inet_interfaces must name addresses configured on an interface ("no local
        # interface found for 127.0.4.1" otherwise); 127.x.y.z other than 127.0.0.1 is only
        # routed to lo. The listener itself is bound in master.cf, and proxy_interfaces makes
        # Postfix treat [listener] as its own address, as a real server treats its IP.
        "inet_interfaces": "loopback-only",
        "inet_protocols": "ipv6" if listener.is_ipv6 else "ipv4",
        "proxy_interfaces": listener.host,
        # The machine itself only; profiles decide whom else to trust.
        "mynetworks": "127.0.0.1/32 [::1]/128",
        # No DNS for client names: the lab has no resolver to wait on.
        "smtpd_peername_lookup": "no",
        # postmaster must exist (RFC 5321 4.5.1); texthash needs no postalias/newaliases.
        "alias_maps": f"texthash:{layout.aliases}",
        "alias_database": "",
        "biff": "no",
        "append_dot_mydomain": "no",
        "readme_directory": "no",
    }


def render_main_cf(parameters: Mapping[str, str], header: str) -> str:
    """main.cf text: a comment header, then one ``name = value`` line per parameter."""
    validate_parameters(parameters)
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines += [f"{name} = {value}".rstrip() for name, value in parameters.items()]
    return "\n".join(lines) + "\n"


# Internal services of a Debian master.cf (master.cf.dist), chroot off: a lab instance has no
# chroot jail. No pipe(8) transports; mail never gets that far (the probe never sends DATA).
_INTERNAL_SERVICES = (
    ("pickup", "unix", "n", "-", "n", "60", "1", "pickup"),
    ("cleanup", "unix", "n", "-", "n", "-", "0", "cleanup"),
    ("qmgr", "unix", "n", "-", "n", "300", "1", "qmgr"),
    ("rewrite", "unix", "-", "-", "n", "-", "-", "trivial-rewrite"),
    ("bounce", "unix", "-", "-", "n", "-", "0", "bounce"),
    ("defer", "unix", "-", "-", "n", "-", "0", "bounce"),
    ("trace", "unix", "-", "-", "n", "-", "0", "bounce"),
    ("verify", "unix", "-", "-", "n", "-", "1", "verify"),
    ("flush", "unix", "n", "-", "n", "1000?", "0", "flush"),
    ("proxymap", "unix", "-", "-", "n", "-", "-", "proxymap"),
    ("proxywrite", "unix", "-", "-", "n", "-", "1", "proxymap"),
    ("smtp", "unix", "-", "-", "n", "-", "-", "smtp"),
    ("relay", "unix", "-", "-", "n", "-", "-", "smtp"),
    ("showq", "unix", "n", "-", "n", "-", "-", "showq"),
    ("error", "unix", "-", "-", "n", "-", "-", "error"),
    ("retry", "unix", "-", "-", "n", "-", "-", "error"),
    ("discard", "unix", "-", "-", "n", "-", "-", "discard"),
    ("local", "unix", "-", "n", "n", "-", "-", "local"),
    ("virtual", "unix", "-", "n", "n", "-", "-", "virtual"),
    ("lmtp", "unix", "-", "-", "n", "-", "-", "lmtp"),
    ("anvil", "unix", "-", "-", "n", "-", "1", "anvil"),
    ("scache", "unix", "-", "-", "n", "-", "1", "scache"),
    # postlogd writes maillog_file (Postfix >= 3.4, MAILLOG_README).
    ("postlog", "unix-dgram", "n", "-", "n", "-", "1", "postlogd"),
)


# POSTSCREEN_README "Turning on postscreen(8) without blocking mail": postscreen on the
# listener (one process), the smtpd it hands allowed clients to as the `smtpd pass` service.
# No dnsblog/tlsproxy: the lab sets no DNSBL sites and no TLS.
_POSTSCREEN_PASS = ("smtpd", "pass", "-", "-", "n", "-", "-", "smtpd")


def render_master_cf(listener: Listener, header: str, *, postscreen: bool = False) -> str:
    """master.cf text: smtpd (or, with `postscreen`, postscreen in front of an `smtpd pass`
    service) bound to the listener only, then the internal services."""
    if postscreen:
        front = [(listener.endpoint, "inet", "n", "-", "n", "-", "1", "postscreen")]
        rows = [*front, _POSTSCREEN_PASS, *_INTERNAL_SERVICES]
    else:
        rows = [(listener.endpoint, "inet", "n", "-", "n", "-", "-", "smtpd"), *_INTERNAL_SERVICES]
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines += ["  ".join(f"{field:<10}" for field in row).rstrip() for row in rows]
    return "\n".join(lines) + "\n"


def sasl_parameters(layout: InstanceLayout) -> dict[str, str]:
    """main.cf parameters of an instance whose smtpd offers AUTH from a Cyrus sasldb
    (SASL_README "Enabling SASL authentication in the Postfix SMTP server")."""
    return {
        "smtpd_sasl_auth_enable": "yes",
        "smtpd_sasl_type": "cyrus",
        "smtpd_sasl_path": "smtpd",
        "cyrus_sasl_config_path": str(layout.sasl_dir),
        # the realm the sasldb users are created in (saslpasswd2 -u)
        "smtpd_sasl_local_domain": LAB_DOMAIN,
    }


def render_sasl_conf(layout: InstanceLayout) -> str:
    """Cyrus SASL's smtpd.conf: passwords from the instance's own sasldb (auxprop), plain
    mechanisms only (SASL_README "Cyrus SASL configuration file location", "auxprop")."""
    return (
        "pwcheck_method: auxprop\n"
        "auxprop_plugin: sasldb\n"
        f"sasldb_path: {layout.sasldb}\n"
        "mech_list: PLAIN LOGIN\n"
    )


def render_aliases() -> str:
    return "postmaster: root\n"


def split_list(value: str) -> list[str]:
    """A Postfix list value as its entries (commas and white space separate)."""
    return [item for item in _LIST_SEPARATOR.split(value.strip()) if item]


def _same_dir(a: str, b: str) -> bool:
    return os.path.normpath(a) == os.path.normpath(b)


def with_alternate(entries: Iterable[str], directory: Path) -> list[str]:
    """`entries` plus `directory` (kept once, others untouched and in order)."""
    current = list(entries)
    if any(_same_dir(entry, str(directory)) for entry in current):
        return current
    return [*current, str(directory)]


def without_alternate(entries: Iterable[str], directory: Path) -> list[str]:
    """`entries` minus `directory`; every other entry kept as written."""
    return [entry for entry in entries if not _same_dir(entry, str(directory))]
