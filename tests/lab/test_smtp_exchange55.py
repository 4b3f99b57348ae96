"""The Exchange 5.5 IMS twin answers as the state says (KB Q193922, Q237927, Q264330)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from relayguard.lab.exchange import profiles
from relayguard.lab.exchange.state import RoutingEntry, TwinState

from .conftest import TRUSTED, UNTRUSTED, TwinServer, next_address
from .smtpclient import banner, rcpt

FOREIGN = "<relaytest@example.com>"
IMCEA = "<IMCEASMTP-relaytest+40example+2Ecom@corp.example>"
PERCENT = "<relaytest%example.com@corp.example>"
QUOTED_IMCEA = '<"IMCEA relaytest@example.com"@corp.example>'


def spec(name: str, password: str = "") -> profiles.TwinSpec:
    return profiles.TwinSpec(
        name=name, server="EX55T", address=next_address(), smtp_password=password
    )


Make = Callable[[TwinState], TwinServer]


def addr(server: TwinServer) -> tuple[str, int]:
    return (server.address, server.port)


def test_do_not_reroute_accepts_everything_and_bounces_later(twin_server: Make) -> None:
    server = twin_server(profiles.ex55_sp2_noreroute(spec("noreroute")))
    assert "Microsoft Exchange Internet Mail Service 5.5.2448.4" in banner(
        addr(server), source=UNTRUSTED
    )
    code, text = rcpt(addr(server), FOREIGN, source=UNTRUSTED)
    assert (code, text) == (250, "OK - Recipient <relaytest@example.com>")
    # DATA is accepted; the twin logs an NDR for the foreign recipient, not a relay.
    import smtplib

    with smtplib.SMTP(server.address, server.port, source_address=(UNTRUSTED, 0)) as s:
        s.sendmail("antispam@example.com", ["relaytest@example.com"], b"Subject: t\r\n\r\nx\r\n")
    entries = [json.loads(line) for line in server.mail_log.read_text().splitlines()]
    assert entries[-1]["recipients"] == [{"rcpt": "relaytest@example.com", "disposition": "ndr"}]


def test_reroute_without_restrictions_relays_for_everyone(twin_server: Make) -> None:
    server = twin_server(profiles.ex55_sp2_reroute_open(spec("rerouteopen")))
    assert rcpt(addr(server), FOREIGN, source=UNTRUSTED)[0] == 250


def test_too_wide_allow_list_relays_for_untrusted(twin_server: Make) -> None:
    server = twin_server(profiles.ex55_sp3_wide_allow(spec("wideallow")))
    assert rcpt(addr(server), FOREIGN, source=UNTRUSTED)[0] == 250


def test_restrictions_refuse_untrusted_allow_trusted(twin_server: Make) -> None:
    server = twin_server(profiles.ex55_sp4_closed(spec("closed")))
    code, text = rcpt(addr(server), FOREIGN, source=UNTRUSTED)
    # the 5.5 IMS's own refusal (KB Q193922, Q256856), not IIS's "5.7.1 Unable to relay"
    assert (code, text) == (550, "Relaying is prohibited")
    assert rcpt(addr(server), FOREIGN, source=TRUSTED)[0] == 250
    # mail to an inbound domain is still accepted, in any letter case (RFC 2505 §2.1)
    assert rcpt(addr(server), "<alice@CORP.EXAMPLE>", source=UNTRUSTED)[0] == 250


def test_authenticated_clients_relay_when_bit_8_is_set(twin_server: Make) -> None:
    server = twin_server(profiles.ex55_sp4_closed(spec("auth", password="s3cret-pw")))
    assert rcpt(addr(server), FOREIGN, source=UNTRUSTED, login=("relayuser", "s3cret-pw"))[0] == 250
    import smtplib

    with pytest.raises(smtplib.SMTPAuthenticationError):
        rcpt(addr(server), FOREIGN, source=UNTRUSTED, login=("relayuser", "wrong"))


def _restricted_sp(service_pack: int) -> TwinState:
    state = profiles.ex55_sp4_closed(spec(f"sp{service_pack}"))
    x = state.exchange55
    assert x is not None
    x.ImcFileVersion = profiles.EX55_IMC_VERSIONS[service_pack]
    x.ProductVersion = profiles.EX55_BUILDS[service_pack]
    x.Running = x.snapshot()
    return state


@pytest.mark.parametrize(
    ("service_pack", "imcea", "percent"),
    [
        (2, 250, 250),  # below msexcimc.exe 5.5.2650.1: the MS99-027 hole (KB Q237927)
        (3, 550, 550),  # SP3 has the Q237927 fix
        (4, 550, 550),
    ],
)
def test_encapsulated_addresses_bypass_restrictions_below_the_fix(
    twin_server: Make, service_pack: int, imcea: int, percent: int
) -> None:
    server = twin_server(_restricted_sp(service_pack))
    assert rcpt(addr(server), FOREIGN, source=UNTRUSTED)[0] == 550
    assert rcpt(addr(server), IMCEA, source=UNTRUSTED)[0] == imcea
    assert rcpt(addr(server), PERCENT, source=UNTRUSTED)[0] == percent  # unsourced: lab choice
    # KB Q264330 needs forward-all plus authenticate-only: not this configuration
    assert rcpt(addr(server), QUOTED_IMCEA, source=UNTRUSTED)[0] == 550


@pytest.mark.parametrize(("service_pack", "quoted"), [(2, 250), (3, 250), (4, 550)])
def test_quoted_imcea_needs_forward_all_and_authenticate_only(
    twin_server: Make, service_pack: int, quoted: int
) -> None:
    """KB Q264330: "Forward all messages to host" plus a restriction to authenticated
    clients only; fixed in SP4."""
    state = _restricted_sp(service_pack)
    x = state.exchange55
    assert x is not None
    x.Parameters.RelayFlags = 8
    x.Routing.ForwardAllHost = "smarthost.corp.example"
    x.Running = x.snapshot()
    server = twin_server(state)
    assert rcpt(addr(server), QUOTED_IMCEA, source=UNTRUSTED)[0] == quoted
    assert rcpt(addr(server), FOREIGN, source=UNTRUSTED)[0] == 550


def _with_routing(entries: list[RoutingEntry], allow: list[str] | None = None) -> TwinState:
    state = profiles.ex55_sp4_closed(spec("routing"))
    x = state.exchange55
    assert x is not None
    x.Routing.RoutingList = entries
    if allow is not None:
        x.Parameters.RelayAllowList = allow
    x.Running = x.snapshot()
    return state


def test_routing_domains_match_subdomains_and_hash_matches_exactly(twin_server: Make) -> None:
    """KB Q169683 / Q259531: an entry covers its subdomains; "#domain" that domain only."""
    server = twin_server(
        _with_routing(
            [
                RoutingEntry(Domain="corp.example", Action="Inbound"),
                RoutingEntry(Domain="#only.example", Action="Inbound"),
            ]
        )
    )
    assert rcpt(addr(server), "<alice@mail.corp.example>", source=UNTRUSTED)[0] == 250
    assert rcpt(addr(server), "<bob@only.example>", source=UNTRUSTED)[0] == 250
    assert rcpt(addr(server), "<bob@sub.only.example>", source=UNTRUSTED) == (
        550,
        "Relaying is prohibited",
    )


def test_only_always_relay_entries_relay_for_anyone(twin_server: Make) -> None:
    """A Reroute entry obeys the routing restrictions unless it has "Override relay
    restrictions. Always relay." (KB Q259531)."""
    server = twin_server(
        _with_routing(
            [
                RoutingEntry(Domain="corp.example", Action="Inbound"),
                RoutingEntry(Domain="partner.example", Action="Reroute", Host="mx.partner"),
                RoutingEntry(
                    Domain="branch.example", Action="Reroute", Host="mx.b", AlwaysRelay=True
                ),
            ]
        )
    )
    assert rcpt(addr(server), "<x@partner.example>", source=UNTRUSTED)[0] == 550
    assert rcpt(addr(server), "<x@partner.example>", source=TRUSTED)[0] == 250
    assert rcpt(addr(server), "<x@shop.branch.example>", source=UNTRUSTED)[0] == 250


def test_list_lines_per_q193922(twin_server: Make) -> None:
    """A line without ";mask" is one host; a net with host bits set matches nobody."""
    server = twin_server(_with_routing([], allow=[TRUSTED, f"{UNTRUSTED};255.255.255.0"]))
    assert rcpt(addr(server), FOREIGN, source=TRUSTED)[0] == 250
    assert rcpt(addr(server), FOREIGN, source=UNTRUSTED)[0] == 550


def test_registry_change_needs_a_restart(twin_server: Make) -> None:
    server = twin_server(profiles.ex55_sp2_reroute_open(spec("pending")))

    def restrict(state: TwinState) -> None:
        assert state.exchange55 is not None
        state.exchange55.Parameters.RelayFlags = 2
        state.exchange55.Parameters.RelayAllowList = [profiles.TRUSTED_NET_MASK]

    server.store.update(restrict)
    state = server.store.load()
    assert state.exchange55 is not None
    assert state.exchange55.pending_restart
    assert rcpt(addr(server), FOREIGN, source=UNTRUSTED)[0] == 250  # still the old config

    def restart(state: TwinState) -> None:
        assert state.exchange55 is not None
        state.exchange55.Running = state.exchange55.snapshot()

    server.store.update(restart)
    assert rcpt(addr(server), FOREIGN, source=UNTRUSTED)[0] == 550


def test_swaks_sees_the_encapsulated_hole_close_with_the_fix(twin_server: Make) -> None:
    """An independent client (swaks) against SP2 and SP3 twins with the same restrictions."""
    from support.realserver import require_tool

    from .labclient import swaks_imcea_accepted

    require_tool("swaks")
    unpatched = twin_server(_restricted_sp(2))
    patched = twin_server(_restricted_sp(3))
    assert swaks_imcea_accepted(unpatched.address, unpatched.port, IMCEA.strip("<>"))
    assert not swaks_imcea_accepted(patched.address, patched.port, IMCEA.strip("<>"))
