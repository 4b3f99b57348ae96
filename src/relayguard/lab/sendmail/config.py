"""What an isolated lab Sendmail instance's files say: sendmail.mc, access, ... (pure).

Layout of one instance under its root directory::

    ROOT/sendmail.mc, sendmail.cf   the m4 source and what m4 makes of it (``sendmail -C``)
    ROOT/access, mailertable        makemap sources (their .db next to them)
    ROOT/aliases, relay-domains     aliases (``sendmail -bi``) and class R
    ROOT/deliver                    aliases pipe mail into it: appends to ROOT/mail/<mailbox>
    ROOT/spool/                     QueueDirectory
    ROOT/log/transcript             every SMTP session (``-X``; no syslog in containers)
    ROOT/mail/inbound, relayed      what it delivered to its own domain and what it relayed

A ``mailertable`` entry ``.`` sends every other domain to the local user ``relayed``, an
alias of the ``relayed`` mailbox, so a relayed message never leaves the machine. Macros and
features: cf/README of sendmail-cf (docs/sources.md#sendmail-cf-readme).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from relayguard.lab.postfix.config import LAB_DOMAIN, Listener
from relayguard.lab.sendmail.profiles import SendmailProfile

_UNSAFE = re.compile(r"[\s`'$\"\\,]")
MAILBOXES = ("postmaster", "inbound", "relayed")


class SendmailConfigError(ValueError):
    """A value that cannot go into a sendmail.mc safely."""


@dataclass(frozen=True)
class SendmailLayout:
    root: Path

    def __post_init__(self) -> None:
        if not self.root.is_absolute() or _UNSAFE.search(str(self.root)):
            raise SendmailConfigError(f"instance directory must be absolute, plain: {self.root}")

    def file(self, name: str) -> Path:
        return self.root / name

    @property
    def mc(self) -> Path:
        return self.root / "sendmail.mc"

    @property
    def cf(self) -> Path:
        return self.root / "sendmail.cf"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def transcript(self) -> Path:
        return self.root / "log" / "transcript"

    @property
    def mail_dir(self) -> Path:
        return self.root / "mail"

    @property
    def pid_file(self) -> Path:
        return self.root / "sendmail.pid"


def render_mc(
    layout: SendmailLayout,
    listener: Listener,
    name: str,
    lab_profile: SendmailProfile,
    cf_dir: Path,
) -> str:
    """sendmail.mc for one instance."""
    root = layout.root
    family, address = (
        ("inet6", listener.address) if listener.is_ipv6 else ("inet", listener.address)
    )
    features = "".join(f"FEATURE(`{feature}')dnl\n" for feature in lab_profile.features)
    return f"""\
divert(-1)
# Written by relayguard.lab.sendmail: an isolated lab instance ({lab_profile.name}).
divert(0)dnl
include(`{cf_dir}/m4/cf.m4')dnl
VERSIONID(`relayguard lab instance {name}')dnl
OSTYPE(`linux')dnl
define(`confDOMAIN_NAME', `{name}.{LAB_DOMAIN}')dnl
define(`confDONT_PROBE_INTERFACES', `True')dnl
define(`confSERVICE_SWITCH_FILE', `{root}/service.switch')dnl
define(`confHOST_STATUS_DIRECTORY', `')dnl
define(`QUEUE_DIR', `{layout.spool}')dnl
define(`STATUS_FILE', `{root}/log/statistics')dnl
define(`confPID_FILE', `{layout.pid_file}')dnl
define(`ALIAS_FILE', `{root}/aliases')dnl
define(`confCR_FILE', `-o {root}/relay-domains')dnl
define(`confDEF_USER_ID', `mail:mail')dnl
define(`confDONT_BLAME_SENDMAIL', `TrustStickyBit')dnl
define(`confTO_IDENT', `0s')dnl
dnl The lab shares busy machines: never refuse or queue because of the load average.
define(`confREFUSE_LA', `999')dnl
define(`confQUEUE_LA', `999')dnl
define(`confDELAY_LA', `0')dnl
define(`confMAX_DAEMON_CHILDREN', `0')dnl
define(`confCONNECTION_RATE_THROTTLE', `0')dnl
define(`confBIND_OPTS', `-DNSRCH -DEFNAMES')dnl
dnl One listener, on the instance's address: no default MSA on *:587.
FEATURE(`no_default_msa')dnl
FEATURE(`nocanonify')dnl
FEATURE(`accept_unresolvable_domains')dnl
FEATURE(`access_db', `hash -T<TMPF> {root}/access')dnl
FEATURE(`mailertable', `hash {root}/mailertable')dnl
{features}DAEMON_OPTIONS(`Family={family}, Name=MTA, Addr={address}, Port={listener.port}')dnl
MAILER(`local')dnl
MAILER(`smtp')dnl
"""


def render_files(layout: SendmailLayout, lab_profile: SendmailProfile) -> dict[str, str]:
    """Every other file of the instance, by name under its root."""
    mailboxes = "|".join(MAILBOXES)
    return {
        # No DNS: the lab has no resolver (nsswitch-like, sendmail's own switch file).
        "service.switch": "hosts files\naliases files\n",
        # Bound over /etc's inside the instance's mount namespace (instance.isolated).
        "nsswitch.conf": "hosts: files\npasswd: files\ngroup: files\n",
        "resolv.conf": "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        "access": "".join(f"{key}\t{value}\n" for key, value in lab_profile.access),
        "mailertable": ".\tlocal:relayed\n",
        # Only these local parts exist (the local mailer checks others against passwd).
        "aliases": "".join(
            f'{box}: "|{layout.file("deliver")} {box}"\n'
            for box in MAILBOXES
            if box != "postmaster"
        )
        + "postmaster: inbound\n",
        "relay-domains": "".join(f"{domain}\n" for domain in lab_profile.relay_domains),
        "deliver": (
            "#!/bin/sh\n"
            "# The lab's mailboxes (aliases pipe into it): the mailbox is the last argument.\n"
            "for user; do :; done\n"
            f'case "$user" in {mailboxes}) ;; *) exit 67 ;; esac\n'
            f'cat >> "{layout.mail_dir}/$user"\n'
        ),
    }
