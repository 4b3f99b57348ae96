"""Pure parts of the lab: fleet planning, the state codec, the store's atomic updates."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from relayguard.lab.exchange import profiles
from relayguard.lab.exchange.mailpath import decode_imcea, parse_path
from relayguard.lab.exchange.state import StateError, TwinState, dumps, loads
from relayguard.lab.exchange.store import StateStore
from relayguard.lab.fleet import planning
from relayguard.vocabulary import Platform


def test_default_fleet_is_the_issue_mix() -> None:
    plans = planning.plan_named("default")
    assert [(p.platform.value, p.profile, p.expected.value) for p in plans] == [
        ("exchange55", "sp2-noreroute", "open"),
        ("exchange55", "sp2-reroute-open", "open"),
        ("exchange55", "sp3-wide-allow", "open"),
        ("exchange2019", "anon-relay", "open"),
        ("exchange2016", "star-domain", "open"),
        ("exchange2019", "closed-unpatched", "closed"),  # ex2019-compliant: CU15, no updates
        ("postfix", "open_relay", "open"),
        ("postfix", "debian_default", "closed"),
        ("exim", "open_relay", "open"),  # issue 18: real Exim and Sendmail beside Postfix
        ("sendmail", "open_relay", "open"),
    ]
    assert [p.address for p in plans][:2] == ["127.0.30.1", "127.0.30.2"]


def test_hosts_spec_scales_and_skips_network_and_broadcast_addresses() -> None:
    plans = planning.plan_spec("exchange2019:300,postfix:2,exchange55/sp4-closed:3")
    assert len(plans) == 305
    assert len({p.address for p in plans}) == 305
    assert not any(p.address.endswith((".0", ".255")) for p in plans)
    assert {p.profile for p in plans if p.platform == Platform.EXCHANGE2019} == set(
        profiles.MODERN_PROFILES
    )
    assert {p.profile for p in plans if p.platform == Platform.EXCHANGE55} == {"sp4-closed"}
    assert len({p.name for p in plans}) == 305


def test_named_only_profiles() -> None:
    """closed-unpatched is chosen by name, never cycled: `kind:N` fleets stay as they were."""
    assert "closed-unpatched" not in profiles.MODERN_PROFILES
    plans = planning.plan_spec("exchange2019/closed-unpatched:1,exchange2016/closed-unpatched:1")
    assert [p.profile for p in plans] == ["closed-unpatched"] * 2
    spec = profiles.TwinSpec(name="x", server="EX", address="127.0.30.9")
    unpatched = profiles.build("closed-unpatched", spec, Platform.EXCHANGE2019)
    compliant = profiles.build("compliant", spec, Platform.EXCHANGE2019)
    assert unpatched.modern is not None and compliant.modern is not None
    assert unpatched.modern.ExSetupVersion == "15.2.1748.10"  # CU15's own build
    assert compliant.modern.ExSetupVersion == "15.2.1748.53"  # CU15 Sep26SUv2
    assert unpatched.relay_fingerprint() == compliant.relay_fingerprint()


@pytest.mark.parametrize(
    "spec", ["", "exchange2000:1", "exchange2019:0", "exchange2019:x", "postfix/nope:1"]
)
def test_bad_hosts_specs_are_refused(spec: str) -> None:
    with pytest.raises(planning.FleetError):
        planning.plan_spec(spec)


def test_state_round_trips_and_rejects_bad_documents() -> None:
    spec = profiles.TwinSpec(name="x", server="EX", address="127.0.30.9")
    for profile, platform in (
        ("sp2-noreroute", Platform.EXCHANGE55),
        ("compliant", Platform.EXCHANGE2019),
    ):
        state = profiles.build(profile, spec, platform)
        assert dumps(loads(dumps(state))) == dumps(state)
    doc = json.loads(dumps(state))
    doc["modern"]["ReceiveConnectors"][0]["TransportRole"] = "Mailbox"
    with pytest.raises(StateError):
        loads(json.dumps(doc))
    doc = json.loads(dumps(state))
    doc["modern"]["Surprise"] = 1
    with pytest.raises(StateError):
        loads(json.dumps(doc))
    with pytest.raises(StateError):
        loads("{}")


def test_store_updates_are_atomic_across_threads(tmp_path: Path) -> None:
    spec = profiles.TwinSpec(name="x", server="EX", address="127.0.30.9")
    store = StateStore(tmp_path / "x.json")
    store.save(profiles.build("anon-relay", spec, Platform.EXCHANGE2019))

    def bump(state: TwinState) -> None:
        state.lab.restart_seconds += 1

    threads = [
        threading.Thread(target=lambda: [store.update(bump) for _ in range(20)]) for _ in range(5)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert store.load().lab.restart_seconds == 1.0 + 100
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".x.json")] == []


def test_paths_and_imcea_decoding() -> None:
    path, params = parse_path('TO:<"IMCEA relaytest@example.com"@corp.example> NOTIFY=NEVER', "TO:")
    assert (path.local, path.domain, path.quoted, params) == (
        "IMCEA relaytest@example.com",
        "corp.example",
        True,
        "NOTIFY=NEVER",
    )
    route, _ = parse_path("TO:<@[127.0.30.1]:relaytest@example.com>", "TO:")
    assert (route.route, route.domain) == (("[127.0.30.1]",), "example.com")
    assert parse_path("FROM:<>", "FROM:")[0].null
    assert decode_imcea("IMCEASMTP-relaytest+40example+2Ecom") == ("SMTP", "relaytest@example.com")
    assert decode_imcea("alice") is None


@pytest.mark.parametrize(
    ("platform", "key"),
    [
        (Platform.EXCHANGE2013, "Exchange 2013"),
        (Platform.EXCHANGE2016, "Exchange 2016"),
        (Platform.EXCHANGE2019, "Exchange 2019"),
        (Platform.EXCHANGESE, "Exchange 2019"),  # HealthChecker reads SE's updates there too
    ],
)
def test_installed_updates_key_is_healthcheckers(platform: Platform, key: str) -> None:
    spec = profiles.TwinSpec(name="x", server="EX", address="127.0.30.9")
    modern = profiles.build("anon-relay", spec, platform).modern
    assert modern is not None
    assert modern.updates_key == "HKLM:\\SOFTWARE\\Microsoft\\Updates\\" + key
