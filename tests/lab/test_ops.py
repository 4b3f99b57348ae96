"""Op handlers: the JSON a real script would print, writes that change the SMTP behaviour."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from relayguard.exchange import capture
from relayguard.lab.exchange import profiles
from relayguard.lab.exchange.packages import DEFAULT_PACKAGES, sha256
from relayguard.lab.exchange.smtp_twin import listening_wanted
from relayguard.lab.exchange.state import Fault, TwinState
from relayguard.vocabulary import Platform

from .conftest import TRUSTED, UNTRUSTED, TwinServer, next_address
from .payloads import Host
from .smtpclient import rcpt

FOREIGN = "<relaytest@example.com>"
IMCEA = "<IMCEASMTP-relaytest+40example+2Ecom@corp.example>"
Make = Callable[[TwinState], TwinServer]


def twin(profile: str, platform: Platform) -> TwinState:
    spec = profiles.TwinSpec(name=profile, server="EXT", address=next_address())
    state = profiles.build(profile, spec, platform)
    state.lab.tarpit_seconds = 0.0
    state.lab.restart_seconds = 0.2
    return state


def test_detect_exchange55(twin_server: Make, tmp_path: Path) -> None:
    server = twin_server(twin("sp2-noreroute", Platform.EXCHANGE55))
    doc = Host(server.store, tmp_path).ok("exchange.detect")
    assert doc["Exchange15"] is None
    assert doc["Exchange55"]["SetupKey"]["NewestBuild"] == 2448
    assert doc["Exchange55"]["Imc"]["FileVersion"] == "5.5.2448.4"
    assert doc["Exchange55"]["ImcService"]["Status"] == "Running"


def test_detect_modern(twin_server: Make, tmp_path: Path) -> None:
    server = twin_server(twin("anon-relay", Platform.EXCHANGE2019))
    doc = Host(server.store, tmp_path).ok("exchange.detect")
    ex15 = doc["Exchange15"]
    assert ex15["ExSetup"]["FileVersion"] == "15.02.1544.004"
    assert ex15["SetupKey"]["MsiBuildMajor"] == 1544
    assert ex15["UpdatesKey"].endswith("\\Exchange 2019")
    assert doc["RebootPending"] is False


def test_unknown_op_fails_like_powershell(twin_server: Make, tmp_path: Path) -> None:
    server = twin_server(twin("anon-relay", Platform.EXCHANGE2019))
    result = Host(server.store, tmp_path).run("exchange.format_disk")
    assert result.exit_code == 1
    assert "is not recognized" in result.stderr


def test_exchange55_restrictions_over_ops_close_the_relay(
    twin_server: Make, tmp_path: Path
) -> None:
    server = twin_server(twin("sp2-reroute-open", Platform.EXCHANGE55))
    host = Host(server.store, tmp_path)
    before = host.ok("exchange55.read_config")
    assert before["Parameters"]["RelayFlags"] is None
    doc = host.ok(
        "exchange55.write_config",
        {
            "Parameters": {
                "RelayFlags": 10,
                "RelayAllowList": [profiles.TRUSTED_NET_MASK],
                "RelayDenyList": [],
            }
        },
    )
    assert doc["Parameters"]["RelayAllowList"] == [profiles.TRUSTED_NET_MASK]
    # the IMS reads its parameters at start: still open until the restart
    assert rcpt((server.address, server.port), FOREIGN, source=UNTRUSTED)[0] == 250
    result = host.run("exchange.restart_service", {"Name": "MSExchangeIMC"})
    assert result.exit_code == 0
    assert result.delay_seconds == 0.2
    assert not listening_wanted(server.store.current(), now=0.0 + __import__("time").time())
    from .conftest import wait_port

    wait_port(server.address, server.port, up=True)
    assert rcpt((server.address, server.port), FOREIGN, source=UNTRUSTED)[0] == 550
    assert rcpt((server.address, server.port), FOREIGN, source=TRUSTED)[0] == 250


def test_registry_refuses_bad_types_and_changes_nothing(twin_server: Make, tmp_path: Path) -> None:
    server = twin_server(twin("sp2-reroute-open", Platform.EXCHANGE55))
    host = Host(server.store, tmp_path)
    before = server.store.path.read_bytes()
    for params in (
        {"Parameters": {"RelayFlags": "ten"}},
        {"Parameters": {"RelayFlags": 2**32}},
        {"Parameters": {"RelayAllowList": "10.0.0.0;255.0.0.0"}},
        {"Parameters": {"NoSuchValue": 1}},
        {"Routing": {"RoutingList": [{"Domain": "x.example", "Action": "Bounce"}]}},
    ):
        result = host.run("exchange55.write_config", params)
        assert result.exit_code == 1, params
    assert server.store.path.read_bytes() == before


def test_modern_remove_anonymous_grant_closes_relay(twin_server: Make, tmp_path: Path) -> None:
    server = twin_server(twin("anon-relay", Platform.EXCHANGE2019))
    host = Host(server.store, tmp_path)
    config = capture.read_output("modern.read_config", host.ok("modern.read_config"))
    frontend = next(c for c in config["ReceiveConnectors"] if c["Name"] == "Default Frontend EXT")
    assert frontend["PermissionGroups"] == "AnonymousUsers, ExchangeServers, ExchangeLegacyServers"
    assert frontend["Bindings"] == ["[::]:25", "0.0.0.0:25"]
    grants = [
        p
        for p in config["AnonymousPermissions"]
        if p["ExtendedRights"] == ["ms-Exch-SMTP-Accept-Any-Recipient"]
    ]
    assert [g["Identity"] for g in grants] == ["EXT\\Default Frontend EXT"]
    assert rcpt((server.address, server.port), FOREIGN, source=UNTRUSTED)[0] == 250

    out = host.ok(
        "modern.write_config",
        {
            "Actions": [
                {
                    "Cmdlet": "Remove-ADPermission",
                    "Identity": "EXT\\Default Frontend EXT",
                    "User": "NT AUTHORITY\\ANONYMOUS LOGON",
                    "ExtendedRights": ["ms-Exch-SMTP-Accept-Any-Recipient"],
                }
            ]
        },
    )
    assert out["Applied"] == [
        {"Cmdlet": "Remove-ADPermission", "Identity": "EXT\\Default Frontend EXT"}
    ]
    assert rcpt((server.address, server.port), FOREIGN, source=UNTRUSTED)[0] == 550


def test_modern_relay_connector_and_domains(twin_server: Make, tmp_path: Path) -> None:
    server = twin_server(twin("star-domain", Platform.EXCHANGE2016))
    host = Host(server.store, tmp_path)
    target = (server.address, server.port)
    assert rcpt(target, FOREIGN, source=UNTRUSTED)[0] == 250
    host.ok(
        "modern.write_config",
        {
            "Actions": [
                {"Cmdlet": "Remove-AcceptedDomain", "Identity": "All"},
                {
                    "Cmdlet": "New-ReceiveConnector",
                    "Name": "Relay EXT",
                    "TransportRole": "FrontendTransport",
                    "Bindings": ["0.0.0.0:25"],
                    "RemoteIPRanges": ["127.0.59.0/24"],
                    "PermissionGroups": "AnonymousUsers",
                    "AuthMechanism": "Tls",
                },
                {
                    "Cmdlet": "Add-ADPermission",
                    "Identity": "Relay EXT",
                    "User": "NT AUTHORITY\\ANONYMOUS LOGON",
                    "ExtendedRights": ["ms-Exch-SMTP-Accept-Any-Recipient"],
                },
                {"Cmdlet": "Set-RecipientFilterConfig", "RecipientValidationEnabled": True},
            ]
        },
    )
    assert rcpt(target, FOREIGN, source=UNTRUSTED)[0] == 550
    assert rcpt(target, FOREIGN, source=TRUSTED)[0] == 250
    assert rcpt(target, "<nobody@corp.example>", source=UNTRUSTED)[0] == 550


def test_modern_refusals_keep_earlier_calls(twin_server: Make, tmp_path: Path) -> None:
    server = twin_server(twin("anon-relay", Platform.EXCHANGE2019))
    host = Host(server.store, tmp_path)
    result = host.run(
        "modern.write_config",
        {
            "Actions": [
                {"Cmdlet": "Set-RecipientFilterConfig", "RecipientValidationEnabled": True},
                {
                    "Cmdlet": "Set-ReceiveConnector",
                    "Identity": "Default Frontend EXT",
                    "RemoteIPRanges": ["10.0.0.0/33"],
                },
            ]
        },
    )
    assert result.exit_code == 1
    assert "RemoteIPRanges" in result.stderr
    state = server.store.load()
    assert state.modern is not None
    assert state.modern.RecipientFilter.RecipientValidationEnabled  # the first call ran
    # same bindings and remote ranges as another connector: refused
    result = host.run(
        "modern.write_config",
        {
            "Actions": [
                {
                    "Cmdlet": "New-ReceiveConnector",
                    "Name": "Dup",
                    "Bindings": ["0.0.0.0:25"],
                    "RemoteIPRanges": [profiles.ALL_IPV4],
                    "PermissionGroups": "AnonymousUsers",
                }
            ]
        },
    )
    assert result.exit_code == 1
    assert "conflict" in result.stderr


def test_remove_and_re_add_restores_the_document_byte_for_byte(
    twin_server: Make, tmp_path: Path
) -> None:
    server = twin_server(twin("compliant", Platform.EXCHANGE2019))
    host = Host(server.store, tmp_path)
    original = server.store.path.read_bytes()
    ace = {
        "Identity": "Relay EXT",
        "User": "NT AUTHORITY\\ANONYMOUS LOGON",
        "ExtendedRights": ["ms-Exch-SMTP-Accept-Any-Recipient"],
    }
    host.ok("modern.write_config", {"Actions": [{"Cmdlet": "Remove-ADPermission", **ace}]})
    assert server.store.path.read_bytes() != original
    host.ok("modern.write_config", {"Actions": [{"Cmdlet": "Add-ADPermission", **ace}]})
    assert server.store.path.read_bytes() == original


def _upload(host: Host, path: str, data: bytes) -> None:
    for i in range(0, len(data), 3000):
        chunk = base64.b64encode(data[i : i + 3000]).decode()
        host.ok("file.append_chunk", {"path": path, "chunk_b64": chunk})


def test_ims_hotfix_closes_the_encapsulated_hole(twin_server: Make, tmp_path: Path) -> None:
    state = twin("sp4-closed", Platform.EXCHANGE55)
    x = state.exchange55
    assert x is not None
    x.ProductVersion, x.ServicePack, x.ImcFileVersion = "5.5.2448.0", 2, "5.5.2448.0"
    x.Running = x.snapshot()
    server = twin_server(state)
    target = (server.address, server.port)
    assert rcpt(target, IMCEA, source=UNTRUSTED)[0] == 250
    host = Host(server.store, tmp_path)
    hotfix = DEFAULT_PACKAGES[0]
    data = hotfix.content()
    path = "C:\\Windows\\Temp\\relayguard\\ims.exe"
    _upload(host, path, data)
    bad = host.run("exchange.install_patch", {"Path": path, "Sha256": "00" * 32})
    assert bad.exit_code == 1
    out = host.ok("exchange.install_patch", {"Path": path, "Sha256": sha256(data)})
    assert out["ExitCode"] == 0
    assert (out["FileVersionBefore"], out["FileVersionAfter"]) == ("5.5.2448.0", "5.5.2650.1")
    from .conftest import wait_port

    wait_port(server.address, server.port, up=True)
    assert rcpt(target, IMCEA, source=UNTRUSTED)[0] == 550
    assert host.ok("exchange.detect")["Exchange55"]["Imc"]["FileVersion"] == "5.5.2650.1"


def test_security_update_sets_reboot_and_refuses_wrong_product(
    twin_server: Make, tmp_path: Path
) -> None:
    server = twin_server(twin("anon-relay", Platform.EXCHANGE2019))
    packages = tmp_path / "packages"
    from relayguard.lab.exchange.packages import write_packages

    write_packages(packages)
    host = Host(server.store, tmp_path, packages)
    wrong = host.ok("exchange.install_patch", {"Path": "C:\\Patches\\Exchange2016-CU23-SU-lab.msp"})
    assert wrong["ExitCode"] == 1642
    out = host.ok("exchange.install_patch", {"Path": "C:\\Patches\\Exchange2019-CU14-SU-lab.msp"})
    assert (out["ExitCode"], out["RebootRequired"]) == (3010, True)
    assert out["FileVersionAfter"] == "15.02.1544.014"
    detect = host.ok("exchange.detect")
    assert detect["Exchange15"]["InstalledUpdates"][0]["Key"] == "KB0000001"
    assert detect["RebootPending"] is True
    host.ok("exchange.restart_computer")
    assert host.ok("exchange.detect")["RebootPending"] is False


def test_injected_fault_after_apply(twin_server: Make, tmp_path: Path) -> None:
    state = twin("anon-relay", Platform.EXCHANGE2019)
    state.lab.faults = [Fault(op="modern.write_config", after_apply=True, message="boom")]
    server = twin_server(state)
    host = Host(server.store, tmp_path)
    action = {"Cmdlet": "Set-RecipientFilterConfig", "RecipientValidationEnabled": True}
    result = host.run("modern.write_config", {"Actions": [action]})
    assert result.exit_code == 1
    assert "boom" in result.stderr
    config = capture.read_output("modern.read_config", host.ok("modern.read_config"))
    assert config["RecipientFilterConfig"]["RecipientValidationEnabled"]
    assert host.run("modern.write_config", {"Actions": [action]}).exit_code == 0  # used up


def test_legitimate_flow_breaks_after_a_change_until_restored(
    twin_server: Make, tmp_path: Path
) -> None:
    state = twin("compliant", Platform.EXCHANGE2019)
    state.lab.break_legit_flow_after_change = True
    server = twin_server(state)
    host = Host(server.store, tmp_path)
    target = (server.address, server.port)
    assert rcpt(target, FOREIGN, source=TRUSTED)[0] == 250
    change = {"Cmdlet": "Set-RecipientFilterConfig", "RecipientValidationEnabled": False}
    host.ok("modern.write_config", {"Actions": [change]})
    assert rcpt(target, FOREIGN, source=TRUSTED)[0] == 550
    change["RecipientValidationEnabled"] = True
    host.ok("modern.write_config", {"Actions": [change]})
    assert rcpt(target, FOREIGN, source=TRUSTED)[0] == 250
