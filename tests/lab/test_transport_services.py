"""The Exchange 2013+ twin's transport services and agents, as `modern.read_config` reports
them and as `New-ReceiveConnector` honours them (docs/sources.md#learn-receive-connectors,
docs/sources.md#learn-antispam-mailbox-servers)."""

from __future__ import annotations

from typing import Any

import pytest

from relayguard.exchange import capture
from relayguard.lab.exchange import ops_modern, profiles
from relayguard.lab.exchange.state import ExchangeModern
from relayguard.lab.wsman.dispatch import OpError
from relayguard.vocabulary import Platform


def modern(platform: Platform, role: str | None = None) -> ExchangeModern:
    spec = profiles.TwinSpec(name="t", server="EXT", address="127.0.30.9")
    state = profiles.build("anon-relay", spec, platform)
    assert state.modern is not None
    if role is not None:
        state.modern.ServerRole = role
    return state.modern


def _config(m: ExchangeModern) -> dict[str, Any]:
    """What the twin's modern.read_config prints, read as the product reads a real server's."""
    return capture.config_from_live(ops_modern.read_document(m))


@pytest.mark.parametrize(
    ("platform", "role", "frontend"),
    [
        (Platform.EXCHANGE2013, "Mailbox, ClientAccess", True),
        (Platform.EXCHANGE2013, "Mailbox", False),
        (Platform.EXCHANGE2016, "Mailbox", True),
        (Platform.EXCHANGE2019, "Mailbox", True),
    ],
)
def test_front_end_transport_exists_where_microsoft_says(
    platform: Platform, role: str, frontend: bool
) -> None:
    m = modern(platform, role)
    doc = _config(m)
    assert doc["ServerRole"] == role and doc["FrontendTransport"] is frontend
    args = {"Name": "Relay", "Bindings": ["0.0.0.0:25"], "RemoteIPRanges": ["192.0.2.0/24"]}
    if frontend:
        ops_modern.new_receive_connector(m, {**args, "TransportRole": "FrontendTransport"})
    else:
        with pytest.raises(OpError, match="Front End Transport service isn't installed"):
            ops_modern.new_receive_connector(m, {**args, "TransportRole": "FrontendTransport"})
        ops_modern.new_receive_connector(m, {**args, "TransportRole": "HubTransport"})


def test_agents_are_reported_and_the_antispam_ones_can_be_absent() -> None:
    m = modern(Platform.EXCHANGE2019)
    names = {a["Identity"] for a in _config(m)["TransportAgents"]}
    assert "Recipient Filter Agent" in names and "Transport Rule Agent" in names
    profiles.without_antispam(m)
    names = {a["Identity"] for a in _config(m)["TransportAgents"]}
    assert names == set(profiles.BUILT_IN_AGENTS)
