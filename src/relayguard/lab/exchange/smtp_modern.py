"""The SMTP behaviour of Exchange 2013 / 2016 / 2019 / SE front-end transport, as pure functions.

Sources (docs/sources.md#learn-receive-connectors, docs/sources.md#learn-anonymous-relay,
docs/lab.md):
- Receive connectors, their bindings and `RemoteIPRanges`; when several connectors listen on
  the same address and port the one whose remote range matches the client most specifically
  is used (learn.microsoft.com, "Receive connectors in Exchange Server", "Remote network").
- Permission groups and the rights they grant (learn.microsoft.com, "Receive connector
  permission groups"); relay is the `ms-Exch-SMTP-Accept-Any-Recipient` right; an anonymous
  grant is an ACE for NT AUTHORITY\\ANONYMOUS LOGON (Add-ADPermission); `ExternalAuthoritative`
  with ExchangeServers treats every client as an externally secured server (which holds the
  right).
- Accepted domains: Authoritative (local), InternalRelay / ExternalRelay (relayed for anyone),
  `*` (the whole organisation relays; HealthChecker `OpenRelayDomain`).
- Recipient filtering with `RecipientValidationEnabled`: unknown local recipients refused at
  RCPT with 550 5.1.10.
- `TarpitInterval` (default 00:00:05): error replies to anonymous clients are delayed.
- `MaxInboundConnection` (5000), `MaxInboundConnectionPerSource` (20) and
  `MaxInboundConnectionPercentagePerSource` (2): connections a connector serves at once, in
  all and from one IP address (Set-ReceiveConnector, docs/sources.md#learn-set-receiveconnector);
  one more is answered 421 4.3.2 and closed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from relayguard.lab.exchange.dialogue import Disposition, Reply, SessionFacts
from relayguard.lab.exchange.mailpath import MailPath
from relayguard.lab.exchange.state import (
    AcceptedDomain,
    AdPermission,
    ExchangeModern,
    ReceiveConnector,
)

ANONYMOUS = "NT AUTHORITY\\ANONYMOUS LOGON"
AUTHENTICATED = "NT AUTHORITY\\Authenticated Users"
EXTERNALLY_SECURED = "MS Exchange\\Externally Secured Servers"

SUBMIT = "ms-Exch-SMTP-Submit"
ACCEPT_ANY_RECIPIENT = "ms-Exch-SMTP-Accept-Any-Recipient"
ACCEPT_ANY_SENDER = "ms-Exch-SMTP-Accept-Any-Sender"
ACCEPT_AUTHORITATIVE_SENDER = "ms-Exch-SMTP-Accept-Authoritative-Domain-Sender"
ACCEPT_HEADERS_ROUTING = "ms-Exch-Accept-Headers-Routing"
BYPASS_ANTISPAM = "ms-Exch-Bypass-Anti-Spam"

# "Receive connector permission groups" (learn.microsoft.com): group -> [(principal, rights)].
PERMISSION_GROUP_ACES: dict[str, list[tuple[str, list[str]]]] = {
    "AnonymousUsers": [
        (
            ANONYMOUS,
            [SUBMIT, ACCEPT_ANY_SENDER, ACCEPT_AUTHORITATIVE_SENDER, ACCEPT_HEADERS_ROUTING],
        )
    ],
    "ExchangeUsers": [
        (AUTHENTICATED, [SUBMIT, ACCEPT_ANY_RECIPIENT, BYPASS_ANTISPAM, ACCEPT_HEADERS_ROUTING])
    ],
    "ExchangeServers": [
        (
            "MS Exchange\\Hub Transport Servers",
            [SUBMIT, ACCEPT_ANY_RECIPIENT, ACCEPT_ANY_SENDER, BYPASS_ANTISPAM],
        ),
        (
            "MS Exchange\\Edge Transport Servers",
            [SUBMIT, ACCEPT_ANY_RECIPIENT, ACCEPT_ANY_SENDER, BYPASS_ANTISPAM],
        ),
    ],
    "ExchangeLegacyServers": [
        (
            "MS Exchange\\Legacy Exchange Servers",
            [SUBMIT, ACCEPT_ANY_RECIPIENT, ACCEPT_ANY_SENDER, BYPASS_ANTISPAM],
        )
    ],
    "Partners": [
        (
            "MS Exchange\\Partner Servers",
            [SUBMIT, ACCEPT_AUTHORITATIVE_SENDER, ACCEPT_HEADERS_ROUTING],
        )
    ],
}
PERMISSION_GROUPS = (
    "None",
    "AnonymousUsers",
    "ExchangeUsers",
    "ExchangeServers",
    "ExchangeLegacyServers",
    "Partners",
    "Custom",
)
AUTH_MECHANISMS = (
    "None",
    "Tls",
    "Integrated",
    "BasicAuth",
    "BasicAuthRequireTLS",
    "ExchangeServer",
    "ExternalAuthoritative",
)
# Rights of MS Exchange\Externally Secured Servers (ExternalAuthoritative + ExchangeServers).
EXTERNALLY_SECURED_RIGHTS = frozenset(
    {SUBMIT, ACCEPT_ANY_RECIPIENT, ACCEPT_ANY_SENDER, ACCEPT_AUTHORITATIVE_SENDER, BYPASS_ANTISPAM}
)

TARPIT_DEFAULT = "00:00:05"


def group_permissions(groups: list[str]) -> list[AdPermission]:
    """The ACEs Exchange writes on a connector for its permission groups (one right each)."""
    aces: list[AdPermission] = []
    for group in groups:
        for user, rights in PERMISSION_GROUP_ACES.get(group, []):
            aces.extend(AdPermission(User=user, ExtendedRights=[right]) for right in rights)
    return aces


def canonicalize(m: ExchangeModern) -> None:
    """Keep lists in one order (the directory returns objects in a stable order), so that
    removing and re-adding the same objects gives back the same document."""
    m.ReceiveConnectors.sort(key=lambda c: c.Name.lower())
    for conn in m.ReceiveConnectors:
        conn.Permissions.sort(
            key=lambda p: (
                p.User.lower(),
                p.Deny,
                p.IsInherited,
                [r.lower() for r in p.ExtendedRights],
            )
        )
    m.AcceptedDomains.sort(key=lambda d: d.Name.lower())


# ------------------------------------------------------------------ connector selection


@dataclass(frozen=True)
class IpRange:
    first: int
    last: int
    version: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def contains(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return address.version == self.version and self.first <= int(address) <= self.last


def parse_remote_range(text: str) -> IpRange:
    """A RemoteIPRanges entry: `10.1.1.1`, `10.1.1.0/24`, `10.1.1.1-10.1.1.9`, IPv6 alike.

    Raises ValueError for anything else (Set-ReceiveConnector refuses such values).
    """
    text = text.strip()
    if "-" in text:
        a_text, _, b_text = text.partition("-")
        a, b = ipaddress.ip_address(a_text.strip()), ipaddress.ip_address(b_text.strip())
        if a.version != b.version or int(a) > int(b):
            raise ValueError(f"invalid IP range {text!r}")
        return IpRange(int(a), int(b), a.version)
    if "/" in text:
        net = ipaddress.ip_network(text, strict=False)
        return IpRange(int(net.network_address), int(net.broadcast_address), net.version)
    one = ipaddress.ip_address(text)
    return IpRange(int(one), int(one), one.version)


def parse_binding(text: str) -> tuple[str, int]:
    """`0.0.0.0:25` / `[::]:25` / `192.0.2.5:2525` -> (address, port); ValueError if malformed."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid binding {text!r}")
    host = host.strip("[]")
    ipaddress.ip_address(host)
    return host, int(port)


def select_connector(
    m: ExchangeModern, session: SessionFacts, port: int = 25
) -> ReceiveConnector | None:
    """The receive connector that takes this connection, or None (no connector matches).

    Candidates are enabled connectors bound to the server address (or to the any-address) on
    the port. A binding to the specific address beats the any-address; then the remote range
    that matches the client with the fewest addresses wins.
    """
    client = ipaddress.ip_address(session.client_ip)
    best: tuple[int, int] | None = None
    chosen: ReceiveConnector | None = None
    for conn in m.ReceiveConnectors:
        if not conn.Enabled or conn.TransportRole != "FrontendTransport":
            continue
        binding_rank = _binding_rank(conn, session.server_ip, port)
        if binding_rank is None:
            continue
        sizes = [r.size for r in _ranges(conn) if r.contains(client)]
        if not sizes:
            continue
        key = (binding_rank, min(sizes))
        if best is None or key < best:
            best, chosen = key, conn
    return chosen


def _binding_rank(conn: ReceiveConnector, server_ip: str, port: int) -> int | None:
    rank: int | None = None
    server = ipaddress.ip_address(server_ip)
    for binding in conn.Bindings:
        try:
            host, bport = parse_binding(binding)
        except ValueError:
            continue
        if bport != port:
            continue
        addr = ipaddress.ip_address(host)
        if addr == server:
            return 0
        if addr.is_unspecified and addr.version == server.version:
            rank = 1
    return rank


def _ranges(conn: ReceiveConnector) -> list[IpRange]:
    out = []
    for text in conn.RemoteIPRanges:
        try:
            out.append(parse_remote_range(text))
        except ValueError:
            continue
    return out


# ------------------------------------------------------------------ rights


def session_rights(conn: ReceiveConnector, session: SessionFacts) -> frozenset[str]:
    """Extended rights this client holds on the connector (deny ACEs win)."""
    principals = {ANONYMOUS}
    if session.authenticated:
        principals.add(AUTHENTICATED)
    allowed: set[str] = set()
    denied: set[str] = set()
    for ace in conn.Permissions:
        if ace.User not in principals:
            continue
        rights = {r.lower() for r in ace.ExtendedRights}
        (denied if ace.Deny else allowed).update(rights)
    if externally_secured(conn):
        allowed.update(r.lower() for r in EXTERNALLY_SECURED_RIGHTS)
    return frozenset(allowed - denied)


def externally_secured(conn: ReceiveConnector) -> bool:
    return "ExternalAuthoritative" in conn.AuthMechanism and (
        "ExchangeServers" in conn.PermissionGroups
    )


def has_right(rights: frozenset[str], right: str) -> bool:
    return right.lower() in rights


# ------------------------------------------------------------------ accepted domains


def match_accepted_domain(m: ExchangeModern, domain: str) -> AcceptedDomain | None:
    """The most specific accepted domain for `domain`: exact, then `*.suffix`, then `*`."""
    wanted = domain.lower().rstrip(".")
    best: tuple[int, AcceptedDomain] | None = None
    for ad in m.AcceptedDomains:
        name = ad.DomainName.lower()
        if name == wanted:
            score = 10_000
        elif name == "*":
            score = 0
        elif name.startswith("*.") and wanted.endswith(name[1:]):
            score = len(name)
        else:
            continue
        if best is None or score > best[0]:
            best = (score, ad)
    return best[1] if best else None


# ------------------------------------------------------------------ the dialogue


def greeting(m: ExchangeModern, conn: ReceiveConnector, now: datetime | None = None) -> str:
    when = format_datetime(now or datetime.now(UTC))
    return f"{conn.Fqdn or m.Fqdn} Microsoft ESMTP MAIL Service ready at {when}"


def no_connector_reply() -> Reply:
    return Reply(421, "4.3.2 Service not available, closing transmission channel", close=True)


# The replies Exchange gives a connection over a connector's limits, as administrators quote
# them (docs/sources.md#learn-set-receiveconnector): the text is not in Microsoft's reference.
TOO_MANY_CONNECTIONS = (
    "4.3.2 The maximum number of concurrent connections has exceeded a limit, "
    "closing transmission channel"
)
TOO_MANY_FROM_SOURCE = (
    "4.3.2 The maximum number of concurrent server connections has exceeded a per-source "
    "limit, closing transmission channel"
)


def connection_limit_reply(
    conn: ReceiveConnector, from_source: int, on_connector: int
) -> Reply | None:
    """The 421 that turns a new connection away, or None when the connector serves it.

    `from_source` and `on_connector` count the connections already served (this one not
    included) from the client's IP address and in all. The per-source bound is the lower of
    `MaxInboundConnectionPerSource` and `MaxInboundConnectionPercentagePerSource` percent of the
    connections the connector has left (`MaxInboundConnection` minus those served), rounded
    down: the lab's reading of "the percentage of available remaining connections"."""
    total = conn.MaxInboundConnection
    if total is not None and on_connector >= total:
        return Reply(421, TOO_MANY_CONNECTIONS, close=True)
    per_source = conn.MaxInboundConnectionPerSource
    if total is not None:
        share = (total - on_connector) * conn.MaxInboundConnectionPercentagePerSource // 100
        per_source = share if per_source is None else min(per_source, share)
    if per_source is not None and from_source >= per_source:
        return Reply(421, TOO_MANY_FROM_SOURCE, close=True)
    return None


def ehlo_lines(m: ExchangeModern, conn: ReceiveConnector, session: SessionFacts) -> list[str]:
    lines = [
        f"{conn.Fqdn or m.Fqdn} Hello [{session.client_ip}]",
        "SIZE 37748736",
        "PIPELINING",
        "DSN",
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
    ]
    return [f"250-{line}" for line in lines[:-1]] + [f"250 {lines[-1]}"]


def helo_line(m: ExchangeModern, conn: ReceiveConnector, session: SessionFacts) -> str:
    return f"250 {conn.Fqdn or m.Fqdn} Hello [{session.client_ip}]"


def tarpits(conn: ReceiveConnector, session: SessionFacts) -> bool:
    return not session.authenticated and not externally_secured(conn)


def mail_reply(conn: ReceiveConnector, session: SessionFacts, path: MailPath) -> Reply:
    rights = session_rights(conn, session)
    if not has_right(rights, SUBMIT):
        return Reply(530, "5.7.1 Client was not authenticated", tarpit=tarpits(conn, session))
    return Reply(250, "2.1.0 Sender OK")


def rcpt_reply(
    m: ExchangeModern,
    conn: ReceiveConnector,
    session: SessionFacts,
    path: MailPath,
    *,
    legit_flow_broken: bool = False,
) -> Reply:
    tarpit = tarpits(conn, session)
    relay_refused = Reply(
        550, "5.7.54 SMTP; Unable to relay recipient in non-accepted domain", tarpit=tarpit
    )
    if not path.domain or path.route:
        return Reply(501, "5.1.3 Invalid address", tarpit=tarpit)
    if legit_flow_broken:
        return relay_refused
    ok = "2.1.5 Recipient OK"
    rights = session_rights(conn, session)
    accepted = match_accepted_domain(m, path.domain)
    if accepted is not None and accepted.DomainType == "Authoritative":
        known = f"{path.local}@{path.domain}".lower() in {x.lower() for x in m.Mailboxes}
        if _validating(m) and not has_right(rights, BYPASS_ANTISPAM) and not known:
            return Reply(
                550,
                "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient "
                f"{path.text} not found by SMTP address lookup",
                tarpit=tarpit,
            )
        return Reply(250, ok, disposition=_local_disposition(m, path))
    if accepted is not None:
        return Reply(250, ok, disposition=Disposition.RELAY)  # Internal/ExternalRelay, `*`
    if has_right(rights, ACCEPT_ANY_RECIPIENT):
        return Reply(250, ok, disposition=Disposition.RELAY)
    return relay_refused


def _validating(m: ExchangeModern) -> bool:
    """Recipient validation happens only where the Recipient Filter agent is installed and
    enabled (docs/sources.md#learn-antispam-mailbox-servers)."""
    return (
        m.agent_enabled("Recipient Filter Agent")
        and m.RecipientFilter.Enabled
        and m.RecipientFilter.RecipientValidationEnabled
    )


def _local_disposition(m: ExchangeModern, path: MailPath) -> Disposition:
    known = {x.lower() for x in m.Mailboxes}
    address = f"{path.local}@{path.domain}".lower()
    return Disposition.DELIVER if address in known else Disposition.NDR


def data_reply(m: ExchangeModern, message_id: str) -> Reply:
    return Reply(250, f"2.6.0 <{message_id}@{m.Fqdn}> Queued mail for delivery")


def tarpit_seconds(conn: ReceiveConnector) -> float:
    """`TarpitInterval` as seconds (a TimeSpan `hh:mm:ss`)."""
    h, mi, s = conn.TarpitInterval.split(":")
    return int(h) * 3600 + int(mi) * 60 + float(s)
