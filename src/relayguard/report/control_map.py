"""Control map room: which published control each finding id satisfies, as data. Pure.

One row per finding id (`FindingMap`): the controls it evidences, each with its framework,
title and source, or an explicit `no_control` saying why none applies. The report copies the
row onto every finding (`controls: [...]`, `no_control`), SARIF makes rules of it, CSV a
column. A new rule id (a new MTA backend's, a new probe check's) is a new row here and
tests/report/test_control_map.py proves every known id has one.

Sources (docs/sources.md#stig-exchange-anonymous, #stig-exchange-accepted-domains,
#stig-exchange-cumulative-update, #stig-exchange-sender-id,
#stig-rhel-relay, #cis-benchmarks, #rfc2505, #rfc2505-2-1, #rfc2505-1-5).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Control:
    """One published control: `id` as auditors quote it (e.g. "EX19-MB-000135")."""

    id: str
    framework: str
    title: str
    source: str  # a docs/sources.md anchor or the primary document

    def as_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "framework": self.framework,
            "title": self.title,
            "source": self.source,
        }


@dataclass(frozen=True)
class FindingMap:
    """A finding id, the controls it evidences, and why there is none when there is none."""

    finding: str
    controls: tuple[Control, ...]
    help: str  # one sentence for SARIF's rule help and the CSV
    no_control: str = ""
    # Reported beside the verdict, never part of it (the RFC 2505 conformance checks, the
    # own-domain sender finding: probe.judge, issue 19): it neither fails a host nor makes
    # a drift regress; SARIF gives it level warning.
    advisory: bool = False


# --- the controls --------------------------------------------------------------------------

STIG_EX19_MB_ANON = Control(
    "EX19-MB-000135",
    "DISA STIG Microsoft Exchange 2019 Mailbox Server (V-259687, SV-259687r961161_rule)",
    "Exchange internal receive connectors must not allow anonymous connections.",
    "docs/sources.md#stig-exchange-anonymous",
)
STIG_EX16_MB_ANON = Control(
    "EX16-MB-000470",
    "DISA STIG Microsoft Exchange 2016 Mailbox Server (V-228391)",
    "Exchange Internal Receive connectors must not allow anonymous connections.",
    "docs/sources.md#stig-exchange-anonymous",
)
STIG_EX19_ED_ANON = Control(
    "V-259622",
    "DISA STIG Microsoft Exchange 2019 Edge Server",
    "Exchange internal Receive connectors must not allow anonymous connections.",
    "docs/sources.md#stig-exchange-anonymous",
)
STIG_EX16_ED_ANON = Control(
    "EX16-ED-000490",
    "DISA STIG Microsoft Exchange 2016 Edge Transport Server (V-221245)",
    "Exchange internal Receive connectors must not allow anonymous connections.",
    "docs/sources.md#stig-exchange-anonymous",
)
STIG_EX19_ED_DOMAINS = Control(
    "EX19-ED-000017",
    "DISA STIG Microsoft Exchange 2019 Edge Server (V-259579)",
    "Exchange must have accepted domains configured.",
    "docs/sources.md#stig-exchange-accepted-domains",
)
STIG_EX19_MB_CU = Control(
    "EX19-MB-000244",
    "DISA STIG Microsoft Exchange 2019 Mailbox Server (V-259711)",
    "Exchange must have the most current, approved Cumulative Update installed.",
    "docs/sources.md#stig-exchange-cumulative-update",
)
STIG_EX19_ED_SENDER_ID = Control(
    "EX19-ED-000143",
    "DISA STIG Microsoft Exchange 2019 Edge Server (V-259629)",
    "Exchange Sender Identification Framework must be enabled.",
    "docs/sources.md#stig-exchange-sender-id",
)
STIG_EX16_ED_SENDER_ID = Control(
    "EX16-ED-000560",
    "DISA STIG Microsoft Exchange 2016 Edge Transport Server (V-221252)",
    "Exchange Sender Identification Framework must be enabled.",
    "docs/sources.md#stig-exchange-sender-id",
)
STIG_EX19_ED_SPOOFED = Control(
    "V-259619",
    "DISA STIG Microsoft Exchange 2019 Edge Server",
    "Exchange messages with a malformed From address must be rejected "
    "(SpoofedDomainAction Reject).",
    "docs/sources.md#stig-exchange-sender-id",
)
STIG_RHEL8_RELAY = Control(
    "RHEL-08-040290",
    "DISA STIG Red Hat Enterprise Linux 8 (V-230550)",
    "RHEL 8 must be configured to prevent unrestricted mail relaying.",
    "docs/sources.md#stig-rhel-relay",
)
STIG_RHEL9_RELAY = Control(
    "RHEL-09-252050",
    "DISA STIG Red Hat Enterprise Linux 9 (V-257951, SV-257951r1014843_rule)",
    "RHEL 9 must be configured to prevent unrestricted mail relaying.",
    "docs/sources.md#stig-rhel-relay",
)


def rfc2505(section: str, title: str, anchor: str = "rfc2505") -> Control:
    """A section of RFC 2505 (BCP 30), Anti-Spam Recommendations for SMTP MTAs."""
    return Control(f"RFC2505-{section}", "RFC 2505 (BCP 30)", title, f"docs/sources.md#{anchor}")


RFC2505_RELAY = rfc2505(
    "2.1",
    "Relay only for local clients or to local recipients (decide by address and domain)",
    "rfc2505-2-1",
)
RFC2505_BOUNCES = rfc2505(
    "1.5", "Refuse in the SMTP dialogue: accepting then bouncing sends backscatter", "rfc2505-1-5"
)
RFC2505_NULL_SENDER = rfc2505("2(6)", "Do not refuse MAIL From:<> (bounces must be deliverable)")
RFC2505_VRFY = rfc2505("2(11)", "VRFY and EXPN are controlled for untrusted clients")
RFC2505_ETRN = rfc2505("2(12)", "ETRN is controlled")

ANONYMOUS_RELAY = (STIG_EX19_MB_ANON, STIG_EX16_MB_ANON, STIG_EX19_ED_ANON, STIG_EX16_ED_ANON)
UNIX_RELAY = (STIG_RHEL8_RELAY, STIG_RHEL9_RELAY)
OPEN_RELAY = (RFC2505_RELAY, *ANONYMOUS_RELAY, *UNIX_RELAY)
NOT_A_CONTROL = "a property of the run, not a configuration item any benchmark names"


def _row(finding: str, controls: Iterable[Control], help_text: str) -> FindingMap:
    return FindingMap(finding, tuple(controls), help_text)


def _none(finding: str, help_text: str, why: str) -> FindingMap:
    return FindingMap(finding, (), help_text, why)


def _advisory(finding: str, controls: Iterable[Control], help_text: str) -> FindingMap:
    return FindingMap(finding, tuple(controls), help_text, advisory=True)


# --- the rows --------------------------------------------------------------------------------

ROWS: tuple[FindingMap, ...] = (
    # what the probe observes from outside (relayguard.report.controls)
    _row("relay-closed", OPEN_RELAY, "The host refuses to relay for an untrusted client."),
    _row(
        "delivery-confirmation",
        (RFC2505_RELAY, RFC2505_BOUNCES, *ANONYMOUS_RELAY, *UNIX_RELAY),
        "A test message to a foreign recipient neither reaches the sink nor bounces.",
    ),
    _row(
        "patch-level",
        (STIG_EX19_MB_CU,),
        "The installed build is at least the build the patch policy requires.",
    ),
    _none("remediation", "The planned changes were applied and verified.", NOT_A_CONTROL),
    _row(
        "rfc2505-refused-in-dialogue",
        (RFC2505_BOUNCES, RFC2505_RELAY),
        "Relaying is refused at RCPT time, not accepted and bounced later.",
    ),
    _row(
        "rfc2505-routing-forms-stripped",
        (RFC2505_RELAY, *ANONYMOUS_RELAY, *UNIX_RELAY),
        "Encapsulated and source-routed addresses (%, !, @a:, IMCEA) are not relayed.",
    ),
    _row(
        "rfc2505-relay-not-by-sender",
        (RFC2505_RELAY, *ANONYMOUS_RELAY, *UNIX_RELAY),
        "The relay decision does not trust the MAIL FROM domain.",
    ),
    _advisory(
        "rfc2505-null-sender-accepted",
        (RFC2505_NULL_SENDER,),
        "MAIL From:<> is accepted (bounces must be deliverable).",
    ),
    _advisory(
        "rfc2505-local-sender-accepted",
        (RFC2505_NULL_SENDER,),
        "MAIL From:<user@own.domain> is accepted.",
    ),
    _advisory(
        "rfc2505-case-insensitive-local-domain",
        (RFC2505_RELAY,),
        "Local domains match without regard to case.",
    ),
    _advisory("rfc2505-vrfy-controlled", (RFC2505_VRFY,), "VRFY discloses no mailbox."),
    _advisory("rfc2505-expn-controlled", (RFC2505_VRFY,), "EXPN discloses no list."),
    _advisory("rfc2505-etrn-controlled", (RFC2505_ETRN,), "ETRN is refused to untrusted clients."),
    _advisory(
        "sender-own-domain-sender-refused",
        (STIG_EX19_ED_SPOOFED, STIG_EX19_ED_SENDER_ID, STIG_EX16_ED_SENDER_ID),
        "An untrusted client may not send as the server's own domain to a local mailbox.",
    ),
    # the Exchange 2013+ rule table (relayguard.exchange.rules)
    _row(
        "anonymous-accept-any-recipient",
        OPEN_RELAY,
        "No connector that faces the Internet grants ANONYMOUS LOGON the relay right.",
    ),
    _row(
        "external-authoritative",
        OPEN_RELAY,
        "No externally secured (ExternalAuthoritative) connector faces the Internet.",
    ),
    _row(
        "accepted-domain-star",
        (RFC2505_RELAY, STIG_EX19_ED_DOMAINS),
        "No accepted domain '*'.",
    ),
    _row(
        "accepted-domain-public-wildcard",
        (RFC2505_RELAY, STIG_EX19_ED_DOMAINS),
        "No relay accepted domain over a public suffix ('*.com').",
    ),
    _row(
        "accepted-domain-relay",
        (RFC2505_RELAY, STIG_EX19_ED_DOMAINS),
        "Relay accepted domains are the organisation's partners only.",
    ),
    _row(
        "recipient-validation-off",
        (RFC2505_BOUNCES,),
        "Unknown recipients are refused at RCPT time, not bounced later.",
    ),
    # the Exim and Sendmail rule tables (plugins/module_utils/exim_plan.py, sendmail_plan.py):
    # the RHEL STIG relay items check Postfix only, so RFC 2505 is what these evidence
    *(
        _row(finding, (RFC2505_RELAY,), what)
        for finding, what in (
            ("exim-relay-nets", "Exim relays only for the allowed networks (relay_from_hosts)."),
            ("exim-relay-domains", "Exim relays only to the declared relay domains."),
            ("exim-authenticated", "Authenticated relay is as the inventory says."),
            ("exim-rcpt-acl", "The RCPT ACL refuses foreign domains (deny !+local_domains)."),
            ("sendmail-opening-feature", "No mc FEATURE opens relaying (promiscuous_relay, ...)."),
            ("sendmail-trusting-feature", "No mc FEATURE trusts a whole domain's hosts."),
            ("sendmail-access-networks", "access RELAY entries name the allowed networks only."),
            ("sendmail-wide-destinations", "No relay destination is a whole top-level domain."),
            ("sendmail-authenticated", "Authenticated relay is as the inventory says."),
        )
    ),
    # the Postfix rule table (plugins/module_utils/postfix_plan.RULES; postfix-mynetworks is
    # above, shared with the parameter of that name): the RHEL STIG items check exactly these
    *(
        _row(finding, (RFC2505_RELAY, *UNIX_RELAY), what)
        for finding, what in (
            (
                "postfix-relay-restrictions",
                "smtpd_relay_restrictions permits trusted clients, then rejects the rest.",
            ),
            (
                "postfix-recipient-restrictions",
                "Before Postfix 2.10: smtpd_recipient_restrictions rejects unauthorised relaying.",
            ),
            (
                "postfix-master-overrides",
                "No master.cf -o override reopens relaying on a listener.",
            ),
        )
    ),
    _row(
        "postfix-untrusted-routing",
        (RFC2505_RELAY,),
        "Sender-specified routing from untrusted clients is not honoured.",
    ),
    _row(
        "postfix-domains",
        (RFC2505_RELAY,),
        "The domain classes list the own domains and the partner relay domains only.",
    ),
    _none(
        "sendmail-partner-domains",
        "The declared partner relay domains stay accepted.",
        "a legitimate relay path the inventory declares, not a restriction any benchmark names",
    ),
    # the Exchange 5.5 IMS rule table (relayguard.exchange.rules55, KB Q193922 / Q169683): the
    # finding ids its rules give
    *(
        _row(finding, (RFC2505_RELAY,), what)
        for finding, what in (
            ("ims-routing-restrictions", "The IMS restricts relaying (RelayFlags set)."),
            ("ims-no-routing-restrictions", "The IMS restricts relaying (RelayFlags set)."),
            ("ims-deny-list-only", "Relaying is granted by an allow list, not a deny list."),
            ("ims-allow-list", "The IMS allow list names the allowed networks only."),
            ("ims-allow-list-too-wide", "The IMS allow list names the allowed networks only."),
            ("ims-allow-entry-matches-nothing", "Every IMS allow-list entry matches a host."),
            ("ims-local-ip-list", "The local-IP list does not widen relaying."),
            ("ims-routing-tab", "Incoming SMTP mail is rerouted with restrictions."),
            ("ims-do-not-reroute", "Incoming SMTP mail is rerouted with restrictions."),
            ("ims-routing-always-relay", "No Routing-tab entry relays for anyone."),
        )
    ),
    # Exchange remediation plans: a finding per control with changes pending (an audit); the
    # role records each planner control as exchange-<control> (roles/exchange_detect plan.yml)
    *(
        _row(f"exchange-{control}", OPEN_RELAY, f"{what} (the plan's '{control}' changes).")
        for control, what in (
            ("no-anonymous-relay", "No connector grants ANONYMOUS LOGON the relay right"),
            ("no-external-authoritative", "No ExternalAuthoritative connector faces anyone"),
            ("relay-connector", "A dedicated relay connector serves the allowed networks"),
            ("relay-connector-remote-ip-ranges", "The relay connector accepts those only"),
            ("relay-connector-bindings", "The relay connector listens where it should"),
            ("relay-connector-permission-groups", "The relay connector's groups are minimal"),
            ("relay-connector-enabled", "The relay connector is enabled"),
            ("relay-connector-anonymous-relay", "Anonymous relay only on that connector"),
        )
    ),
    _row(
        "exchange-inbound-domain",
        (RFC2505_RELAY, STIG_EX19_ED_DOMAINS),
        "The organisation's own domains are authoritative accepted domains.",
    ),
    _row(
        "exchange-no-relay-domain",
        (RFC2505_RELAY, STIG_EX19_ED_DOMAINS),
        "No accepted domain relays for anyone ('*', '*.<public suffix>', stray relay domains).",
    ),
    _row(
        "exchange-recipient-validation",
        (RFC2505_BOUNCES,),
        "Recipient validation refuses unknown recipients at RCPT time.",
    ),
    _row(
        "exchange-patch",
        (STIG_EX19_MB_CU,),
        "The build is brought to the newest update the patch policy requires.",
    ),
    # Exchange 5.5 (the IMS): no STIG covers it; RFC 2505 does
    *(
        _row(f"exchange-{control}", (RFC2505_RELAY,), f"{what} (the plan's '{control}' changes).")
        for control, what in (
            ("ims-relay-flags", "RelayFlags restricts relaying to the allowed clients"),
            ("ims-relay-allow-list", "The IMS grant list is the allowed networks only"),
            ("ims-inbound-domains", "The IMS routes inbound only for the own domains"),
            ("ims-reroute-incoming", "The IMS reroutes incoming mail (not 'Do not reroute')"),
        )
    ),
    _none("exchange-ims-restart", "The IMS restarts to apply its settings.", NOT_A_CONTROL),
    _none("exchange-restore", "A backup was put back.", NOT_A_CONTROL),
    # Postfix: one change per main.cf parameter (roles/postfix_remediate: postfix-<parameter>)
    _row(
        "postfix-smtpd_relay_restrictions",
        (RFC2505_RELAY, *UNIX_RELAY),
        "smtpd_relay_restrictions permits only trusted clients, then rejects unauthorised "
        "destinations.",
    ),
    _row(
        "postfix-mynetworks",
        (RFC2505_RELAY, *UNIX_RELAY),
        "mynetworks lists only the networks allowed to relay.",
    ),
    _row(
        "postfix-allow_untrusted_routing",
        (RFC2505_RELAY,),
        "Sender-specified routing (user%domain@relay, !-paths) from untrusted clients is "
        "not honoured.",
    ),
    *(
        _row(
            f"postfix-{parameter}",
            (RFC2505_RELAY,),
            f"{parameter} lists only the domains this server accepts mail for.",
        )
        for parameter in (
            "mydestination",
            "virtual_alias_domains",
            "virtual_mailbox_domains",
            "relay_domains",
        )
    ),
)

CONTROL_MAP: Mapping[str, FindingMap] = {row.finding: row for row in ROWS}
UNMAPPED = "no control is mapped to this finding id yet (relayguard.report.control_map)"


def controls_of(finding: str) -> FindingMap:
    """The row of `finding`; an id with no row gets an explicit 'no control' row."""
    return CONTROL_MAP.get(finding) or FindingMap(finding, (), "", UNMAPPED)


def control_fields(finding: str) -> dict[str, Any]:
    """What a report finding carries: `controls` (as dicts), `no_control` (or None) and
    `advisory`."""
    row = controls_of(finding)
    return {
        "controls": [c.as_dict() for c in row.controls],
        "no_control": row.no_control or None,
        "advisory": row.advisory,
    }
