"""The twin's `modern.read_config` CLIXML held to Microsoft's capture of a real Exchange 2019
server (tests/exchange/captures/E19): every property relayguard reads has the same .NET type
on both, and the product reads the twin through the same parser as a real server's output and
an admin's capture (`capture.read_output`). The twin cannot drift into a shape no real server
prints without one of these failing."""

from __future__ import annotations

from typing import Any

import pytest
from psrpcore.types import deserialize_clixml

from relayguard.exchange import capture
from relayguard.lab.exchange import ops_modern, profiles
from relayguard.lab.exchange.state import ExchangeModern
from relayguard.vocabulary import Platform

CAPTURE = capture.load_capture("tests/exchange/captures/E19")

# What capture.py reads of each kind: the properties whose types must agree.
READ = {
    "ReceiveConnector": (
        "Identity",
        "Name",
        "Server",
        "Bindings",
        "RemoteIPRanges",
        "PermissionGroups",
        "AuthMechanism",
        "TransportRole",
        "Enabled",
        "Fqdn",
        "TarpitInterval",
        "MaxRecipientsPerMessage",
        "DistinguishedName",
    ),
    "AcceptedDomain": ("Name", "DomainName", "DomainType", "Default"),
    "ExchangeServer": ("Name", "ServerRole", "AdminDisplayVersion"),
}


def _twin() -> ExchangeModern:
    spec = profiles.TwinSpec(name="anon-relay", server="EX19", address="127.0.30.9")
    state = profiles.build("anon-relay", spec, Platform.EXCHANGE2019)
    assert state.modern is not None
    return state.modern


def _twin_objects(kind: str) -> list[Any]:
    texts = ops_modern.read_document(_twin())["Clixml"][kind]
    return [obj for text in texts for obj in deserialize_clixml(text, None)]


def _type(value: Any) -> str:
    """The first .NET type name of a deserialised value ("Deserialized." dropped)."""
    if isinstance(value, bool):
        return "System.Boolean"
    names = getattr(getattr(value, "PSObject", None), "type_names", None) or ["<none>"]
    return str(names[0]).removeprefix("Deserialized.")


@pytest.mark.parametrize(
    ("kind", "name"), [(kind, name) for kind, names in READ.items() for name in names]
)
def test_each_property_read_has_the_real_servers_type(kind: str, name: str) -> None:
    real = CAPTURE.objects[kind][0][name]
    twin = _twin_objects(kind)[0][name]
    assert _type(twin) == _type(real), f"{kind}.{name}"


@pytest.mark.parametrize("kind", sorted(READ))
def test_each_object_has_the_real_servers_type_names(kind: str) -> None:
    real = CAPTURE.objects[kind][0].PSObject.type_names
    twin = _twin_objects(kind)[0].PSObject.type_names
    assert twin[0] == real[0]
    assert set(twin) <= set(real) | {"Deserialized.System.Object"}


def test_the_product_reads_the_twin_as_a_real_server() -> None:
    m = _twin()
    config = capture.read_output("modern.read_config", ops_modern.read_document(m))
    relay = next(c for c in config["ReceiveConnectors"] if c["Name"] == "Default Frontend EX19")
    assert relay["PermissionGroups"] == "AnonymousUsers, ExchangeServers, ExchangeLegacyServers"
    assert relay["Bindings"] == ["[::]:25", "0.0.0.0:25"]
    assert relay["TransportRole"] == "FrontendTransport" and relay["Enabled"] is True
    grants = {
        (p["Identity"], p["ExtendedRights"][0])
        for p in config["AnonymousPermissions"]
        if p["ExtendedRights"]
    }
    assert ("EX19\\Default Frontend EX19", "ms-Exch-SMTP-Accept-Any-Recipient") in grants
    assert config["ServerRole"] == m.ServerRole and config["FrontendTransport"] is True
    assert {d["DomainName"] for d in config["AcceptedDomains"]} == {
        d.DomainName for d in m.AcceptedDomains
    }


def test_a_cmdlet_that_failed_is_unknown_not_empty() -> None:
    document = ops_modern.read_document(_twin())
    document["Clixml"]["TransportAgent"] = None
    document["Clixml"]["RecipientFilterConfig"] = None
    config = capture.read_output("modern.read_config", document)
    assert config["TransportAgents"] is None and config["RecipientFilterConfig"] is None
    assert config["ReceiveConnectors"]  # the others still read


@pytest.mark.parametrize(
    ("clixml", "message"),
    [
        (None, "no Clixml sections"),
        ({"ReceiveConnector": "<Objs/>"}, "not a list of CLIXML documents"),
        ({"ReceiveConnector": ["not xml"]}, "not an Export-Clixml file"),
        ({"ReceiveConnector": ["<Objs><Obj RefId='0'><oops"]}, "malformed CLIXML"),
        ({"AcceptedDomain": ['<!DOCTYPE x [<!ENTITY a "b">]><Objs/>']}, "DTD"),
    ],
)
def test_a_garbled_live_read_is_an_error_naming_the_section(clixml: Any, message: str) -> None:
    with pytest.raises(capture.CaptureError, match=message):
        capture.read_output("modern.read_config", {"Server": "EX", "Clixml": clixml})
