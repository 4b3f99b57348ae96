"""The relay test catalog, kept as data (the shape of nmap's smtp-open-relay table).

Each relay test is one envelope: a MAIL FROM argument and a RCPT TO argument, written as
templates over these placeholders (docs/sources.md#nmap-smtp-open-relay):

  {F} from local part   {T} to local part   {D} external (foreign) domain
  {I} the target's address literal, e.g. [192.0.2.1]   {S} SRVNAME from the banner
  {L} the local domain (--local-domain, else SRVNAME)   {LU} and {DU} upper-cased domains
  {ENC} the IMCEASMTP- encapsulation of {T}@{D}

Arguments are sent exactly as rendered (angle brackets included), so forms that a library's
address quoting would "fix" (no brackets, bang paths, source routes) reach the server as is.
Adding a test is adding one row.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

from relayguard.probe.addresses import address_literal, imceasmtp

NMAP = "nmap 7.93 scripts/smtp-open-relay.nse"
RFC2505 = "RFC 2505 (BCP 30)"


class Exercises(StrEnum):
    """What a test exercises; findings group tests by these."""

    PLAIN = "plain foreign recipient"
    SENDER_TRUST = "relay decided by the MAIL FROM domain"
    PERCENT_HACK = "percent hack (user%domain@relay)"
    BANG_PATH = "UUCP bang path (domain!user)"
    SOURCE_ROUTE = "source route (@relay:user@domain)"
    QUOTED = "quoted local part hiding a domain"
    DOUBLE_AT = "double @ in the recipient"
    ENCAPSULATION = "Exchange IMCEA encapsulated address"
    SYNTAX = "recipient syntax variant"
    CASE = "case of the domain"


ROUTING_FORMS = frozenset(
    {
        Exercises.PERCENT_HACK,
        Exercises.BANG_PATH,
        Exercises.SOURCE_ROUTE,
        Exercises.QUOTED,
        Exercises.DOUBLE_AT,
        Exercises.ENCAPSULATION,
    }
)


@dataclass(frozen=True)
class RelayTest:
    """One relay attempt: a foreign recipient the server must refuse to an untrusted client."""

    id: str
    mail_from: str
    rcpt_to: str
    exercises: Exercises
    source: str
    nmap: int | None = None
    # The server's own domain the recipient is nominally addressed to, for routed forms like
    # user%foreign@LOCAL. A 2xx to such a form only shows relaying when the server refuses an
    # unknown mailbox at that domain (the control); None: any 2xx is relaying.
    control: str | None = None


# The control mailbox: a local part no real server has.
CONTROL_LOCAL_PART = "relayguard-no-such-mailbox"


@dataclass(frozen=True)
class AddressContext:
    """The values the templates are rendered with, for one host."""

    from_local: str
    to_local: str
    external_domain: str
    ip: str
    srvname: str
    local_domain: str

    @cached_property  # rendered once per host, used by every template
    def fields(self) -> dict[str, str]:
        return {
            "F": self.from_local,
            "T": self.to_local,
            "D": self.external_domain,
            "DU": self.external_domain.upper(),
            "I": address_literal(self.ip),
            "S": self.srvname,
            "L": self.local_domain,
            "LU": self.local_domain.upper(),
            "ENC": imceasmtp(f"{self.to_local}@{self.external_domain}"),
        }


def render(template: str, context: AddressContext) -> str:
    return template.format_map(context.fields)


def _nmap(
    number: int, mail_from: str, rcpt_to: str, exercises: Exercises, control: str | None = None
) -> RelayTest:
    return RelayTest(
        f"nmap-{number:02d}", mail_from, rcpt_to, exercises, NMAP, nmap=number, control=control
    )


RELAY_TESTS: tuple[RelayTest, ...] = (
    # nmap's sixteen, with exactly its address forms (docs/sources.md#nmap-smtp-open-relay).
    _nmap(1, "<>", "<{T}@{D}>", Exercises.PLAIN),
    _nmap(2, "<{F}@{D}>", "<{T}@{D}>", Exercises.PLAIN),
    _nmap(3, "<{F}@{S}>", "<{T}@{D}>", Exercises.SENDER_TRUST),
    _nmap(4, "<{F}@{I}>", "<{T}@{D}>", Exercises.SENDER_TRUST),
    _nmap(5, "<{F}@{I}>", "<{T}%{D}@{I}>", Exercises.PERCENT_HACK, "{I}"),
    _nmap(6, "<{F}@{I}>", "<{T}%{D}@{S}>", Exercises.PERCENT_HACK, "{S}"),
    _nmap(7, "<{F}@{I}>", '<"{T}@{D}">', Exercises.QUOTED),
    _nmap(8, "<{F}@{I}>", '<"{T}%{D}">', Exercises.QUOTED),
    _nmap(9, "<{F}@{I}>", "<{T}@{D}@{I}>", Exercises.DOUBLE_AT, "{I}"),
    _nmap(10, "<{F}@{I}>", '<"{T}@{D}"@{I}>', Exercises.QUOTED, "{I}"),
    _nmap(11, "<{F}@{I}>", "<{T}@{D}@{S}>", Exercises.DOUBLE_AT, "{S}"),
    _nmap(12, "<{F}@{I}>", "<@{I}:{T}@{D}>", Exercises.SOURCE_ROUTE),
    _nmap(13, "<{F}@{I}>", "<@{S}:{T}@{D}>", Exercises.SOURCE_ROUTE),
    _nmap(14, "<{F}@{I}>", "<{D}!{T}>", Exercises.BANG_PATH),
    _nmap(15, "<{F}@{I}>", "<{D}!{T}@{I}>", Exercises.BANG_PATH, "{I}"),
    _nmap(16, "<{F}@{I}>", "<{D}!{T}@{S}>", Exercises.BANG_PATH, "{S}"),
    # Exchange encapsulation: MS99-027 / CVE-1999-0682, fixed in msexcimc.exe 5.5.2650.1
    # (KB Q237927); the prefix must be upper case (KB Q271575).
    RelayTest(
        "imceasmtp-local",
        "<{F}@{I}>",
        "<{ENC}@{L}>",
        Exercises.ENCAPSULATION,
        "MS99-027, KB Q237927, MS-OXCMAIL 2.1.3.1.8",
    ),
    RelayTest(
        "imceasmtp-srvname",
        "<{F}@{I}>",
        "<{ENC}@{S}>",
        Exercises.ENCAPSULATION,
        "MS99-027, KB Q237927",
    ),
    # The later quoted variant, fixed in Exchange 5.5 SP4; form as KB Q264330 prints it.
    RelayTest(
        "imcea-quoted",
        "<{F}@{I}>",
        '<"IMCEA {T}@{D}"@{L}>',
        Exercises.ENCAPSULATION,
        "KB Q264330",
    ),
    # Variants of the classic testers that nmap lacks (DSBL relaytest, MAPS/abuse.net).
    RelayTest("unqualified-sender", "<{F}>", "<{T}@{D}>", Exercises.SENDER_TRUST, "MAPS"),
    RelayTest(
        "localhost-sender", "<{F}@localhost>", "<{T}@{D}>", Exercises.SENDER_TRUST, "MAPS, DSBL"
    ),
    RelayTest(
        "loopback-literal-sender",
        "<{F}@[127.0.0.1]>",
        "<{T}@{D}>",
        Exercises.SENDER_TRUST,
        "DSBL relaytest",
    ),
    RelayTest("local-domain-sender", "<{F}@{L}>", "<{T}@{D}>", Exercises.SENDER_TRUST, "MAPS"),
    RelayTest("bang-path-sender", "<{S}!{F}>", "<{T}@{D}>", Exercises.SENDER_TRUST, "DSBL"),
    RelayTest(
        "sender-is-recipient",
        "<{T}@{D}>",
        "<{T}@{D}>",
        Exercises.SENDER_TRUST,
        "classic relay testers",
    ),
    RelayTest(
        "rcpt-without-brackets",
        "<{F}@{I}>",
        "{T}@{D}",
        Exercises.SYNTAX,
        "DSBL relaytest",
    ),
    RelayTest(
        "upper-case-domain",
        "<{F}@{I}>",
        "<{T}@{DU}>",
        Exercises.CASE,
        "RFC 2505 §2.1 (case-insensitive matching)",
    ),
    RelayTest(
        "percent-hack-local",
        "<{F}@{I}>",
        "<{T}%{D}@{L}>",
        Exercises.PERCENT_HACK,
        RFC2505,
        control="{L}",
    ),
    RelayTest(
        "percent-hack-localhost",
        "<{F}@{I}>",
        "<{T}%{D}@localhost>",
        Exercises.PERCENT_HACK,
        "DSBL relaytest",
        control="localhost",
    ),
    RelayTest(
        "percent-hack-loopback",
        "<{F}@{I}>",
        "<{T}%{D}@[127.0.0.1]>",
        Exercises.PERCENT_HACK,
        "DSBL relaytest",
        control="[127.0.0.1]",
    ),
    RelayTest("source-route-local", "<{F}@{I}>", "<@{L}:{T}@{D}>", Exercises.SOURCE_ROUTE, RFC2505),
    RelayTest(
        "bang-path-local",
        "<{F}@{I}>",
        "<{D}!{T}@{L}>",
        Exercises.BANG_PATH,
        RFC2505,
        control="{L}",
    ),
)


class CheckKind(StrEnum):
    ENVELOPE = "envelope"  # MAIL + RCPT that must be accepted
    COMMAND = "command"  # a single command whose reply is judged


@dataclass(frozen=True)
class ConformanceCheck:
    """An RFC 2505 recommendation a client can observe (docs/sources.md#rfc2505)."""

    id: str
    section: str
    title: str
    kind: CheckKind
    mail_from: str = ""
    rcpt_to: str = ""
    command: str = ""


CONFORMANCE_CHECKS: tuple[ConformanceCheck, ...] = (
    ConformanceCheck(
        "null-sender-accepted",
        "2 (6)",
        "MAIL From:<> is not refused (bounces must be deliverable)",
        CheckKind.ENVELOPE,
        mail_from="<>",
        rcpt_to="<postmaster@{L}>",
    ),
    ConformanceCheck(
        "local-sender-accepted",
        "2 (6)",
        "MAIL From:<user@own.domain> is not refused",
        CheckKind.ENVELOPE,
        mail_from="<postmaster@{L}>",
        rcpt_to="<postmaster@{L}>",
    ),
    ConformanceCheck(
        "case-insensitive-local-domain",
        "2.1",
        "Domain matching is not case sensitive (upper-case local domain accepted)",
        CheckKind.ENVELOPE,
        mail_from="<{F}@{D}>",
        rcpt_to="<postmaster@{LU}>",
    ),
    ConformanceCheck(
        "vrfy-controlled",
        "2 (11)",
        "VRFY does not disclose mailboxes to an untrusted client",
        CheckKind.COMMAND,
        command="VRFY postmaster",
    ),
    ConformanceCheck(
        "expn-controlled",
        "2 (11)",
        "EXPN does not disclose lists to an untrusted client",
        CheckKind.COMMAND,
        command="EXPN postmaster",
    ),
    ConformanceCheck(
        "etrn-controlled",
        "2 (12)",
        "ETRN is not honoured for an untrusted client",
        CheckKind.COMMAND,
        command="ETRN {L}",
    ),
)
