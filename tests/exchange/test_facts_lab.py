"""Exchange facts and their analysis over real WinRM (HTTPS, NTLM, the lab CA validated)
against every Exchange twin kind of the lab: the default fleet's six Exchange twins, plus
Exchange 2013, SE and 5.5 SP4 (closed); a twin that refuses the logon, one that stops
answering (fault injection), scripts over 8 KB, `relayguard facts` and hostile values.

Addresses: 127.0.52.1 upwards (the exchange fleet) and 127.0.52.100 upwards (other kinds).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from relayguard.cli import main
from relayguard.exchange import capture, payloads
from relayguard.exchange import facts as facts_module
from relayguard.exchange.analysis import PatchState, patch_status, relay_exposure
from relayguard.exchange.assess import assess, exit_status
from relayguard.exchange.facts import collect_facts
from relayguard.exchange.transport import (
    FailureCause,
    Secret,
    TransportError,
    fits_command_line,
)
from relayguard.lab.exchange.state import Fault
from relayguard.lab.exchange.store import StateStore
from relayguard.vocabulary import Platform, Verdict

from .lab_fleet import client_for, running_lab, winrm_address

FIRST_ADDRESS = "127.0.52.1"
OTHER_KINDS_ADDRESS = "127.0.52.100"
TODAY = date(2026, 11, 27)

# docs/lab.md "Default fleet": what each twin must be found to be and why it relays.
EXPECTED: dict[str, dict[str, Any]] = {
    "ex55-sp2-noreroute": {
        "platform": Platform.EXCHANGE55,
        "level": "SP2",
        "opening": {
            "ims-no-routing-restrictions",
            "ims-do-not-reroute",
            "ims-encapsulated-address-relay",
        },
        "patch": PatchState.MISSING,
    },
    "ex55-sp2-reroute-open": {
        "platform": Platform.EXCHANGE55,
        "level": "SP2",
        "opening": {"ims-no-routing-restrictions", "ims-encapsulated-address-relay"},
        "patch": PatchState.MISSING,
    },
    "ex55-sp3-wide-allow": {
        "platform": Platform.EXCHANGE55,
        "level": "SP3",
        "opening": {"ims-allow-list-too-wide"},
        "patch": PatchState.PRESENT,
    },
    "ex2019-anon-relay": {
        "platform": Platform.EXCHANGE2019,
        "level": "CU14",
        "opening": {"anonymous-accept-any-recipient"},
        "patch": PatchState.MISSING,  # CU14 without its updates (and CU N-1 by default)
    },
    "ex2016-star-domain": {
        "platform": Platform.EXCHANGE2016,
        "level": "CU23",
        "opening": {"accepted-domain-star"},
        "patch": PatchState.MISSING,
    },
    "ex2019-compliant": {
        "platform": Platform.EXCHANGE2019,
        "level": "CU15",
        "opening": set(),
        "patch": PatchState.MISSING,
    },
}


@pytest.fixture(scope="module")
def lab() -> Iterator[dict[str, Any]]:
    with running_lab("--fleet", "exchange", "--first-address", FIRST_ADDRESS) as running:
        yield running


def _host(lab: dict[str, Any], name: str) -> dict[str, Any]:
    return next(h for h in lab["hosts"] if h["name"] == name)


def test_facts_of_every_twin_of_the_default_fleet(lab: dict[str, Any]) -> None:
    assert set(EXPECTED) == {h["name"] for h in lab["hosts"]}
    for name, expected in EXPECTED.items():
        host = _host(lab, name)
        facts = collect_facts(client_for(lab, host), as_of=TODAY)
        exposure = relay_exposure(facts)
        assert facts.platform is expected["platform"], name
        assert facts.build is not None and facts.build.known, name
        assert facts.build.level == expected["level"], name
        opening = {f.id for f in exposure.findings if f.opens_relay}
        assert opening == expected["opening"], (name, exposure.to_dict())
        # The lab's own expectation, measured with nmap and swaks (docs/lab.md).
        assert exposure.verdict.value == host["expected"], name
        assert patch_status(facts).state is expected["patch"], name
        for finding in exposure.findings:
            assert finding.reason and finding.source, finding
        if facts.platform is Platform.EXCHANGE55:
            assert facts.exchange55 is not None and facts.modern is None
            assert facts.msexcimc is not None
            assert facts.exchange_shell is None
        else:
            assert facts.modern is not None and facts.exchange55 is None
            assert facts.exchange_shell == "SnapIn"
            assert facts.exsetup is not None
            assert facts.version == facts.exsetup.version
        json.dumps(facts.to_dict())  # JSON-ready


def test_the_relay_configuration_read_is_the_twins(lab: dict[str, Any]) -> None:
    wide = collect_facts(client_for(lab, _host(lab, "ex55-sp3-wide-allow")), as_of=TODAY)
    assert wide.exchange55 is not None
    assert wide.exchange55.relay_flags == 10
    assert wide.exchange55.relay_allow_list == ("127.0.0.0;255.0.0.0",)
    assert wide.msexcimc is not None and wide.msexcimc.version == "5.5.2650.21"
    compliant = collect_facts(client_for(lab, _host(lab, "ex2019-compliant")), as_of=TODAY)
    assert compliant.modern is not None
    relay = [
        c for c in compliant.modern.receive_connectors if c.remote_ip_ranges == ("127.0.59.0/24",)
    ]
    assert len(relay) == 1 and relay[0].permission_groups == ("AnonymousUsers",)
    assert compliant.modern.recipient_filter.recipient_validation_enabled is True
    # relay closed, but CU15 without the year's updates: behind, CU15's newest is required
    patch = patch_status(compliant, as_of=TODAY)
    assert patch.state is PatchState.MISSING and patch.required == "15.2.1748.53"
    assert patch.detail is not None and patch.detail.security_updates_behind == 9


def test_other_twin_kinds() -> None:
    """Exchange 2013, Subscription Edition and a closed, patched 5.5 SP4."""
    selection = "exchange2013:1,exchangese:1,exchange55/sp4-closed:1"
    with running_lab("--hosts", selection, "--first-address", OTHER_KINDS_ADDRESS) as lab:
        platforms = set()
        for host in lab["hosts"]:
            facts = collect_facts(client_for(lab, host), as_of=TODAY)
            assert facts.platform.value == host["platform"], host["name"]
            assert facts.build is not None and facts.build.known, host["name"]
            assert relay_exposure(facts).verdict.value == host["expected"], host["name"]
            platforms.add(facts.platform)
            if facts.platform is Platform.EXCHANGE55:
                assert facts.build.level == "SP4"
                assert patch_status(facts).state is PatchState.PRESENT
                assert relay_exposure(facts).verdict is Verdict.CLOSED
        assert platforms == {Platform.EXCHANGE2013, Platform.EXCHANGESE, Platform.EXCHANGE55}


def test_a_twin_that_refuses_the_logon(lab: dict[str, Any]) -> None:
    host = _host(lab, "ex2019-anon-relay")
    wrong = "Wr0ng-but-secret-" + host["password"][:4]
    client = client_for(lab, host, password=Secret(wrong))
    result = assess(client.options, as_of=TODAY)
    assert result.facts is None and result.error is not None
    assert "auth refused" in result.error and "connect" in result.error
    assert wrong not in result.error and host["password"] not in result.error
    assert exit_status([result]) == 3


def test_a_twin_that_stops_answering_times_out(lab: dict[str, Any]) -> None:
    host = _host(lab, "ex2016-star-domain")
    store = StateStore(Path(lab["dir"]) / "state" / f"{host['name']}.json")
    store.update(
        lambda s: s.lab.faults.append(Fault(op="exchange.detect", mode="hang", hang_seconds=8))
    )
    try:
        client = client_for(lab, host, operation_timeout=1, read_timeout=3, command_timeout=3)
        with pytest.raises(TransportError) as caught:
            collect_facts(client, as_of=TODAY)
        assert caught.value.cause is FailureCause.TIMEOUT
        assert caught.value.step.startswith("exchange.detect")
    finally:
        store.update(lambda s: setattr(s.lab, "faults", []))


def test_scripts_over_8_kb_go_through_a_temporary_file(lab: dict[str, Any]) -> None:
    script = payloads.render("modern.read_config", {}).script
    assert len(script.encode("utf-8")) > 4 * 1024 and not fits_command_line(script)
    result = client_for(lab, _host(lab, "ex2019-anon-relay")).run_script(script)
    assert result.chunked and result.exit_code == 0 and result.warnings == ()
    document = capture.read_output("modern.read_config", payloads.parse_output(result.stdout))
    assert document["ExchangeShell"] == "SnapIn"
    assert any(
        p["ExtendedRights"] == ["ms-Exch-SMTP-Accept-Any-Recipient"]
        for p in document["AnonymousPermissions"]
    )


def test_file_version_and_a_hostile_path_as_data(lab: dict[str, Any]) -> None:
    host = _host(lab, "ex2019-compliant")
    client = client_for(lab, host)
    facts = collect_facts(client, as_of=TODAY)
    assert facts.exsetup is not None
    assert facts_module.file_version(client, facts.exsetup.path) == facts.exsetup
    hostile = "C:\\x'; Remove-Item -Recurse C:\\ ; $(Stop-Computer) `\" ;.exe"
    with pytest.raises(TransportError) as caught:
        facts_module.file_version(client, hostile)
    assert caught.value.cause is FailureCause.SCRIPT_FAILED
    assert f"Cannot find path '{hostile}' because it does not exist." in caught.value.stderr


def _facts_cli(args: list[str], env: dict[str, str], monkeypatch: Any) -> tuple[int, str, str]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["facts", *args])
    return code, out.getvalue(), err.getvalue()


def test_relayguard_facts_cli(lab: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    host = _host(lab, "ex55-sp3-wide-allow")
    address, port = winrm_address(host)
    base = ["--username", host["username"], "--ca-trust-path", lab["ca"], "--port", str(port)]
    env = {"RG_TEST_PASSWORD": host["password"]}
    code, out, err = _facts_cli(
        [address, "--json", *base, "--password-env", "RG_TEST_PASSWORD"], env, monkeypatch
    )
    assert code == 2, err
    document = json.loads(out)
    assert document["schema"] == "relayguard.exchange-facts/1"
    [entry] = document["hosts"]
    assert entry["ok"] and entry["exposure"]["verdict"] == "open"
    assert entry["patch"]["state"] == "present"
    assert entry["facts"]["build"]["level"] == "SP3"
    assert host["password"] not in out + err
    code, out, err = _facts_cli(
        [address, *base, "--password-env", "RG_TEST_PASSWORD"], env, monkeypatch
    )
    assert code == 2 and "relay: open" in out
    assert "127.0.0.0;255.0.0.0" in out and host["password"] not in out + err
    # A wrong password: the host is reported as unreadable (3), nothing secret is shown.
    env = {"RG_TEST_PASSWORD": "not-the-password-42"}
    code, out, err = _facts_cli(
        [address, *base, "--password-env", "RG_TEST_PASSWORD"], env, monkeypatch
    )
    assert code == 3 and "auth refused" in out
    assert "not-the-password-42" not in out + err


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["127.0.0.1; rm -rf /"], "host"),
        (["$(Stop-Computer)"], "host"),
        (["ex`ample.com"], "host"),
        (["127.0.52.1", "--username", "a\nb"], "username"),
        (["127.0.52.1", "--username", 'x";y'], "username"),
        (["127.0.52.1", "--ca-trust-path", "/no/such/ca.pem"], "ca_trust_path"),
        (["127.0.52.1", "--port", "70000"], "port"),
        (["127.0.52.1", "--timeout", "-1"], "command_timeout"),
    ],
)
def test_hostile_values_are_refused_before_any_connection(
    args: list[str], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = _facts_cli(
        [*args, "--password-env", "RG_TEST_PASSWORD"],
        {"RG_TEST_PASSWORD": "pw-123-secret"},
        monkeypatch,
    )
    assert code == 1 and out == ""
    assert err.startswith(f"relayguard facts: {named}:") and len(err.splitlines()) == 1
    assert "Traceback" not in err and "pw-123-secret" not in err


def test_a_password_typed_where_a_variable_belongs_is_not_echoed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("Hunter2Secret", raising=False)
    for value in ("Hunter2Secret", "p@ss w0rd!"):
        code, out, err = _facts_cli(["127.0.52.1", "--password", value], {}, monkeypatch)
        assert code == 1 and value not in out + err and "--password-env" in err
