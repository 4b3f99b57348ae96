"""What an isolated lab Exim instance's exim.conf says (pure).

Layout of one instance under its root directory::

    ROOT/exim.conf       the run-time configuration (`exim -C ROOT/exim.conf`)
    ROOT/exim.stderr     the daemon's stdout and stderr (what it says before its logs open)
    ROOT/spool/          spool_directory
    ROOT/log/mainlog     log_file_path (also rejectlog, paniclog)
    ROOT/mail/<user>     what the instance delivered to its own domain; ROOT/mail/relayed
                         what it relayed (never sent on: no remote transport exists)

Exim syntax and semantics: the Exim specification, chapters "The default configuration file",
"Domain, host, address, and local part lists" (list separators: an IPv6 address in a
colon-separated list needs the separator changed, ``<; ...``, or its colons doubled) and
"Access control lists" (docs/sources.md#exim-lists, docs/sources.md#exim-acl).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from relayguard.lab.exim.profiles import EximProfile
from relayguard.lab.postfix.config import LAB_DOMAIN, Listener

_UNSAFE = re.compile(r"[\s:;\\$\"'\n]")
_MAILBOXES = ("postmaster", "inbound")


class EximConfigError(ValueError):
    """A value that cannot go into an exim.conf safely."""


@dataclass(frozen=True)
class EximLayout:
    root: Path

    def __post_init__(self) -> None:
        if not self.root.is_absolute() or _UNSAFE.search(str(self.root)):
            raise EximConfigError(f"instance directory must be absolute, no spaces: {self.root}")

    @property
    def config(self) -> Path:
        return self.root / "exim.conf"

    @property
    def pid_file(self) -> Path:
        """The daemon's pid file (pid_file_path): what a reload signals."""
        return self.root / "exim.pid"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def mainlog(self) -> Path:
        return self.log_dir / "mainlog"

    @property
    def paniclog(self) -> Path:
        return self.log_dir / "paniclog"

    @property
    def stderr(self) -> Path:
        """The daemon's stdout and stderr: Exim writes there what goes wrong before (or
        instead of) its logs, e.g. a configuration it cannot read."""
        return self.root / "exim.stderr"

    @property
    def mail_dir(self) -> Path:
        return self.root / "mail"

    @property
    def relayed(self) -> Path:
        return self.mail_dir / "relayed"


def exim_list(items: Iterable[str]) -> str:
    """An Exim list: `` : ``-separated, or ``<; `` with ``;`` when an item has a colon (IPv6)."""
    values = list(items)
    for item in values:
        if not item or re.search(r"[\s;\n]", item):
            raise EximConfigError(f"not a list item: {item!r}")
    if any(":" in item for item in values):
        return "<; " + " ; ".join(values)
    return " : ".join(values)


def render(
    layout: EximLayout, listener: Listener, name: str, lab_profile: EximProfile, exim_path: Path
) -> str:
    """The whole exim.conf of one instance."""
    interface = f"<; {listener.address}" if listener.is_ipv6 else listener.address
    relay_to = exim_list(lab_profile.relay_to_domains)
    return f"""\
# Written by relayguard.lab.exim: an isolated lab instance ({lab_profile.name}).
exim_path = {exim_path}
keep_environment =
primary_hostname = {name}.{LAB_DOMAIN}
domainlist local_domains = @ : localhost
domainlist relay_to_domains = {relay_to}
hostlist relay_from_hosts = {exim_list(lab_profile.relay_from_hosts)}
acl_smtp_rcpt = acl_check_rcpt
local_interfaces = {interface}
daemon_smtp_ports = {listener.port}
spool_directory = {layout.spool}
log_file_path = {layout.log_dir}/%slog
pid_file_path = {layout.pid_file}
exim_user = Debian-exim
exim_group = Debian-exim
never_users = root
# No DNS and no ident: the lab has no resolver, and sends nothing off the machine.
host_lookup =
rfc1413_hosts =
tls_advertise_hosts =
smtp_banner = $primary_hostname ESMTP Exim $version_number $tod_full
queue_run_max = 0

begin acl

acl_check_rcpt:
  accept  hosts = :
  accept  hosts = +relay_from_hosts
  accept  authenticated = *
  deny    message = relay not permitted
          domains = !+local_domains : !+relay_to_domains
  require verify = recipient
  accept

begin routers

relayed:
  driver = accept
  domains = ! +local_domains
  transport = relayed_file

inbound:
  driver = accept
  domains = +local_domains
  local_parts = {" : ".join(_MAILBOXES)}
  transport = inbound_file

begin transports

relayed_file:
  driver = appendfile
  file = {layout.relayed}
  user = Debian-exim

inbound_file:
  driver = appendfile
  file = {layout.mail_dir}/$local_part_data
  user = Debian-exim
"""
