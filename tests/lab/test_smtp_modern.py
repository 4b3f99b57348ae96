"""The Exchange 2013+ front-end twin answers as the connectors and domains say."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable

from relayguard.lab.exchange import profiles, smtp_modern
from relayguard.lab.exchange.dialogue import SessionFacts
from relayguard.lab.exchange.mailpath import parse_path
from relayguard.lab.exchange.smtp_modern import ANONYMOUS
from relayguard.lab.exchange.state import AdPermission, ReceiveConnector, TwinState
from relayguard.vocabulary import Platform

from .conftest import TRUSTED, UNTRUSTED, TwinServer, next_address
from .smtpclient import banner, greeting, rcpt

FOREIGN = "<relaytest@example.com>"
Make = Callable[[TwinState], TwinServer]


def build(profile: str, platform: Platform = Platform.EXCHANGE2019) -> TwinState:
    spec = profiles.TwinSpec(name=profile, server="EX19T", address=next_address())
    state = profiles.build(profile, spec, platform)
    state.lab.tarpit_seconds = 0.0
    return state


def addr(server: TwinServer) -> tuple[str, int]:
    return (server.address, server.port)


def test_banner_names_the_server(twin_server: Make) -> None:
    server = twin_server(build("compliant"))
    assert banner(addr(server), source=UNTRUSTED).startswith(
        "ex19t.corp.example Microsoft ESMTP MAIL Service ready at "
    )


def test_anonymous_relay_on_default_frontend(twin_server: Make) -> None:
    server = twin_server(build("anon-relay"))
    assert rcpt(addr(server), FOREIGN, source=UNTRUSTED) == (250, "2.1.5 Recipient OK")


def test_star_accepted_domain_relays(twin_server: Make) -> None:
    server = twin_server(build("star-domain", Platform.EXCHANGE2016))
    assert rcpt(addr(server), FOREIGN, source=UNTRUSTED)[0] == 250


def test_compliant_refuses_untrusted_and_relays_for_the_relay_connector(
    twin_server: Make,
) -> None:
    server = twin_server(build("compliant"))
    code, text = rcpt(addr(server), FOREIGN, source=UNTRUSTED)
    assert (code, text) == (550, "5.7.54 SMTP; Unable to relay recipient in non-accepted domain")
    assert rcpt(addr(server), FOREIGN, source=TRUSTED)[0] == 250  # most specific: Relay EX19T
    assert rcpt(addr(server), "<alice@corp.example>", source=UNTRUSTED)[0] == 250
    code, text = rcpt(addr(server), "<nobody@corp.example>", source=UNTRUSTED)
    assert code == 550
    assert text.startswith("5.1.10 RESOLVER.ADR.RecipientNotFound")


def test_domain_types(twin_server: Make) -> None:
    state = build("compliant")
    assert state.modern is not None
    from relayguard.lab.exchange.state import AcceptedDomain

    state.modern.AcceptedDomains += [
        AcceptedDomain(Name="partner", DomainName="partner.example", DomainType="InternalRelay"),
        AcceptedDomain(Name="ext", DomainName="*.ext.example", DomainType="ExternalRelay"),
    ]
    server = twin_server(state)
    assert rcpt(addr(server), "<x@partner.example>", source=UNTRUSTED)[0] == 250
    assert rcpt(addr(server), "<x@a.ext.example>", source=UNTRUSTED)[0] == 250
    assert rcpt(addr(server), "<x@ext.example>", source=UNTRUSTED)[0] == 550


def test_external_authoritative_relays_for_everyone_in_range(twin_server: Make) -> None:
    state = build("compliant")
    assert state.modern is not None
    relay = state.modern.ReceiveConnectors[-1]
    relay.Permissions = [p for p in relay.Permissions if "Any-Recipient" not in str(p)]
    relay.AuthMechanism = ["Tls", "ExternalAuthoritative"]
    relay.PermissionGroups = ["ExchangeServers"]
    relay.RemoteIPRanges = ["127.0.60.0/24"]
    server = twin_server(state)
    assert rcpt(addr(server), FOREIGN, source=UNTRUSTED)[0] == 250
    assert rcpt(addr(server), FOREIGN, source=TRUSTED)[0] == 550


def test_deny_ace_wins_over_allow(twin_server: Make) -> None:
    state = build("anon-relay")
    assert state.modern is not None
    frontend = profiles.frontend(state.modern)
    frontend.Permissions.append(
        AdPermission(
            User=ANONYMOUS, ExtendedRights=["ms-Exch-SMTP-Accept-Any-Recipient"], Deny=True
        )
    )
    server = twin_server(state)
    assert rcpt(addr(server), FOREIGN, source=UNTRUSTED)[0] == 550


def test_connector_without_anonymous_refuses_mail(twin_server: Make) -> None:
    state = build("compliant")
    assert state.modern is not None
    state.modern.ReceiveConnectors.append(
        ReceiveConnector(
            Name="Internal EX19T",
            Bindings=["0.0.0.0:25"],
            RemoteIPRanges=["127.0.60.200"],
            PermissionGroups=["ExchangeUsers"],
            AuthMechanism=["Tls", "BasicAuth"],
            TransportRole="FrontendTransport",
        )
    )
    server = twin_server(state)
    assert rcpt(addr(server), FOREIGN, source=UNTRUSTED) == (
        530,
        "5.7.1 Client was not authenticated",
    )


def test_no_matching_connector_closes_with_421(twin_server: Make) -> None:
    state = build("compliant")
    assert state.modern is not None
    for conn in state.modern.ReceiveConnectors:
        conn.RemoteIPRanges = ["192.0.2.0/24"]
    server = twin_server(state)
    assert greeting(addr(server), source=UNTRUSTED) == (
        421,
        "4.3.2 Service not available, closing transmission channel",
    )


def test_tarpit_delays_error_replies_only(twin_server: Make) -> None:
    state = build("compliant")
    state.lab.tarpit_seconds = 1.0
    assert state.modern is not None
    m = state.modern
    session = SessionFacts(client_ip=UNTRUSTED, server_ip=state.address)
    conn = smtp_modern.select_connector(m, session)
    assert conn is not None
    ok = smtp_modern.rcpt_reply(m, conn, session, parse_path("TO:<alice@corp.example>", "TO:")[0])
    refused = smtp_modern.rcpt_reply(m, conn, session, parse_path(f"TO:{FOREIGN}", "TO:")[0])
    assert (ok.code, ok.tarpit) == (250, False)
    assert (refused.code, refused.tarpit) == (550, True)
    server = twin_server(state)
    start = time.monotonic()
    assert rcpt(addr(server), FOREIGN, source=UNTRUSTED)[0] == 550
    assert time.monotonic() - start >= 1.0  # a lower bound the twin guarantees, not a speed


def test_state_change_is_seen_by_the_next_command(twin_server: Make) -> None:
    server = twin_server(build("anon-relay"))
    assert rcpt(addr(server), FOREIGN, source=UNTRUSTED)[0] == 250

    def remove_grant(state: TwinState) -> None:
        assert state.modern is not None
        frontend = profiles.frontend(state.modern)
        frontend.Permissions = [
            p
            for p in frontend.Permissions
            if "ms-Exch-SMTP-Accept-Any-Recipient" not in p.ExtendedRights or p.User != ANONYMOUS
        ]

    server.store.update(remove_grant)
    assert rcpt(addr(server), FOREIGN, source=UNTRUSTED)[0] == 550


def test_without_the_recipient_filter_agent_unknown_recipients_are_accepted(
    twin_server: Make,
) -> None:
    """Recipient validation needs the Recipient Filter agent (Install-AntiSpamAgents.ps1):
    with RecipientValidationEnabled but no agent, RCPT of an unknown local mailbox is 250."""
    state = build("compliant")
    assert state.modern is not None
    profiles.without_antispam(state.modern)
    assert state.modern.RecipientFilter.RecipientValidationEnabled is True
    server = twin_server(state)
    assert rcpt(addr(server), "<nobody@corp.example>", source=UNTRUSTED)[0] == 250
    code, _ = rcpt(addr(server), FOREIGN, source=UNTRUSTED)
    assert code == 550  # still no relay


def test_connection_limits_per_connector_and_source() -> None:
    """Set-ReceiveConnector's MaxInboundConnection, MaxInboundConnectionPerSource and
    MaxInboundConnectionPercentagePerSource: one connection over a limit gets 421 4.3.2."""
    conn = ReceiveConnector(
        Name="Default Frontend EX19T",
        Bindings=["0.0.0.0:25"],
        RemoteIPRanges=["0.0.0.0-255.255.255.255"],
        PermissionGroups=["AnonymousUsers"],
        AuthMechanism=["Tls"],
        TransportRole="FrontendTransport",
    )
    assert (conn.MaxInboundConnection, conn.MaxInboundConnectionPerSource) == (5000, 20)
    assert conn.MaxInboundConnectionPercentagePerSource == 2
    limit = smtp_modern.connection_limit_reply
    assert limit(conn, 19, 19) is None  # the 20th from one address is served
    over = limit(conn, 20, 20)
    assert over is not None and over.close
    assert over.line() == (
        "421 4.3.2 The maximum number of concurrent server connections has exceeded a "
        "per-source limit, closing transmission channel"
    )
    conn.MaxInboundConnectionPerSource = None  # unlimited: 2 % of what is left binds
    assert limit(conn, 99, 0) is None
    assert limit(conn, 100, 0) is not None  # 2 % of 5000
    assert limit(conn, 97, 150) is not None  # 2 % of 4850 = 97
    conn.MaxInboundConnection = 10
    whole = limit(conn, 0, 10)
    assert whole is not None and whole.line().startswith("421 4.3.2 The maximum number of")
    assert "per-source" not in whole.line()
    conn.MaxInboundConnection = None  # both unlimited
    assert limit(conn, 10_000, 10_000) is None


def test_connections_over_the_per_source_limit_are_turned_away(twin_server: Make) -> None:
    state = build("compliant")
    assert state.modern is not None
    profiles.frontend(state.modern).MaxInboundConnectionPerSource = 2
    server = twin_server(state)
    first = smtplib.SMTP(server.address, server.port, timeout=30, source_address=(UNTRUSTED, 0))
    second = smtplib.SMTP(server.address, server.port, timeout=30, source_address=(UNTRUSTED, 0))
    try:
        code, text = greeting(addr(server), source=UNTRUSTED)
        assert (code, text.split(" ", 1)[0]) == (421, "4.3.2")
        assert "per-source limit" in text
        assert greeting(addr(server), source=TRUSTED)[0] == 220  # another address is served
    finally:
        first.close()
        second.close()
    deadline = time.monotonic() + 10  # the twin counts a connection until it is closed
    while greeting(addr(server), source=UNTRUSTED)[0] != 220:
        assert time.monotonic() < deadline, "a closed connection still counted"
        time.sleep(0.05)
