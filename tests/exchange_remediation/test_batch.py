"""exchange_batch's library (`relayguard.exchange.batch`) on real WinRM against lab twins: a
batch of hosts is assessed, planned and changed in one call, each host as the single-host
modules would, and one host's failure (a wrong password, a closed port) stays that host's.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.collection_specs import CONNECTION_SPEC, PATCH_SPEC, RELAY_SPEC, defaults

from exchange_remediation.labrun import Lab, batch_relay_options, relay_config, running_lab
from relayguard.exchange import batch, connection
from relayguard.validate import InputError

SPEC = "exchange55/sp2-noreroute:1,exchange2019/anon-relay:1,exchange2016/star-domain:1"
DEFAULTS = {
    name: option.get("default") for name, option in {**RELAY_SPEC, **CONNECTION_SPEC}.items()
}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab(SPEC, "127.0.37.1") as running:
        yield running


def request(lab: Lab, host: dict[str, Any], backups: Path, **override: Any) -> batch.HostRequest:
    relay = batch_relay_options(lab.manifest["ca"], host, backups)
    patch = None
    if host["platform"] == "exchange55":
        package = lab.package("IMS-Q237927-SP2-x86.exe")
        patch = defaults(PATCH_SPEC) | {
            "package_src": package["file"],
            "sha256": package["sha256"],
            "target_version": "5.5.2650.1",
        }
    return batch.HostRequest(host["name"], relay | override, patch)


def wrong_ones(lab: Lab, backups: Path) -> list[batch.HostRequest]:
    first = lab.hosts[0]
    bad_password = request(lab, first, backups, winrm_password="not-the-password")
    closed_port = request(lab, first, backups, winrm_port=9)
    return [
        batch.HostRequest("wrong-password", bad_password.relay),
        batch.HostRequest("closed-port", closed_port.relay),
    ]


def test_check_mode_apply_changes_nothing(lab: Lab, tmp_path: Path) -> None:
    """First, while every twin is still open: check mode plans and changes nothing."""
    states = {h["name"]: copy.deepcopy(lab.state(h["name"])) for h in lab.hosts}
    good = [request(lab, h, tmp_path) for h in lab.hosts]
    results = batch.run_batch(
        good, lambda r: batch.apply_host(r, connection.client_for, check_mode=True)
    )
    assert all(r["relay"]["changed"] for r in results.values()), results
    assert {h["name"]: lab.state(h["name"]) for h in lab.hosts} == states


def test_detect_assesses_and_plans_each_host_in_one_call(lab: Lab, tmp_path: Path) -> None:
    """action detect (secure-relay.yml's one call per batch): assess's result and, for each host
    assessed, the plan as plan_host makes it; {computer_name} in the connector name is the
    server's computer name, and Exchange 5.5 gets no connector name; a host that cannot be
    assessed is not planned. Nothing is written."""
    factory = connection.client_for
    template = {"relay_connector_name": "Relay {computer_name}"}
    good = [request(lab, h, tmp_path, **template) for h in lab.hosts]
    everyone = good + wrong_ones(lab, tmp_path)
    before = {h["name"]: relay_config(lab.state(h["name"])) for h in lab.hosts}
    detected = batch.run_batch(everyone, lambda r: batch.detect_host(r, factory), 4)
    planned = batch.run_batch(
        [request(lab, h, tmp_path) for h in lab.hosts], lambda r: batch.plan_host(r, factory), 4
    )
    for host in lab.hosts:
        result = detected[host["name"]]
        assert not result["failed"], result
        assert result["facts"]["platform"] == host["platform"]
        assert result["exposure"]["verdict"] == "open"
        # planned from the documents assess read, the result is exchange_relay's in check mode
        assert result["plan"] == planned[host["name"]], host["name"]
        if host["platform"] != "exchange55":
            targets = " ".join(str(c["target"]) for c in result["plan"]["changes"])
            assert f"Relay {host['server']}" in targets, (host, result["plan"]["changes"])
            assert "{computer_name}" not in targets
    for name in ("wrong-password", "closed-port"):
        assert detected[name]["failed"] and detected[name]["plan"] is None, detected[name]
    assert {h["name"]: relay_config(lab.state(h["name"])) for h in lab.hosts} == before
    assert not list(tmp_path.glob("*.json"))


def test_detect_with_a_platform_forced_reads_again_and_plans_the_same(
    lab: Lab, tmp_path: Path
) -> None:
    """A forced `platform` is exchange_relay's to honour: detect then plans by reading the
    host again, as exchange_relay does, and the plan is the one made from assess's reads."""
    factory = connection.client_for
    hosts = lab.hosts
    generation = {
        h["name"]: "exchange55" if h["platform"] == "exchange55" else "modern" for h in hosts
    }
    auto = [request(lab, h, tmp_path) for h in hosts]
    forced = [request(lab, h, tmp_path, platform=generation[h["name"]]) for h in hosts]
    from_reads = batch.run_batch(auto, lambda r: batch.detect_host(r, factory), 4)
    read_again = batch.run_batch(forced, lambda r: batch.detect_host(r, factory), 4)
    for host in hosts:
        name = host["name"]
        assert not from_reads[name]["failed"] and not read_again[name]["failed"], name
        assert from_reads[name]["plan"] == read_again[name]["plan"], name


def test_assess_plan_apply_a_batch_with_two_broken_hosts(lab: Lab, tmp_path: Path) -> None:
    factory = connection.client_for
    good = [request(lab, h, tmp_path) for h in lab.hosts]
    everyone = good + wrong_ones(lab, tmp_path)
    before = {h["name"]: relay_config(lab.state(h["name"])) for h in lab.hosts}

    assessed = batch.run_batch(everyone, lambda r: batch.assess_host(r, factory), 4)
    assert list(assessed) == [r.name for r in everyone]
    for host in lab.hosts:
        result = assessed[host["name"]]
        assert not result["failed"], result
        assert result["facts"]["platform"] == host["platform"]
        assert result["exposure"]["verdict"] == "open"
    assert assessed["wrong-password"]["failed"]
    assert assessed["closed-port"]["failed"]
    assert "9" in assessed["closed-port"]["msg"] or "refused" in assessed["closed-port"]["msg"]

    planned = batch.run_batch(everyone, lambda r: batch.plan_host(r, factory), 4)
    for host in lab.hosts:
        assert not planned[host["name"]]["failed"], planned[host["name"]]
        assert planned[host["name"]]["changes"], host["name"]
        assert not planned[host["name"]]["changed"]
    assert planned["wrong-password"]["failed"] and planned["closed-port"]["failed"]
    # planning wrote nothing, and no backup
    assert {h["name"]: relay_config(lab.state(h["name"])) for h in lab.hosts} == before
    assert not list(tmp_path.glob("*.json"))

    applied = batch.run_batch(everyone, lambda r: batch.apply_host(r, factory, check_mode=False), 4)
    for host in lab.hosts:
        result = applied[host["name"]]
        assert not result["relay"]["failed"], result
        assert result["relay"]["changed"]
        assert Path(result["relay"]["backup_file"]).is_file()
        if host["platform"] == "exchange55":
            assert result["patch"]["changed"] and result["patch"]["version_after"] == "5.5.2650.1"
            assert lab.state(host["name"]).exchange55.ImcFileVersion == "5.5.2650.1"  # type: ignore[union-attr]
        else:
            assert result["patch"] is None
        assert relay_config(lab.state(host["name"])) != before[host["name"]]
    assert applied["wrong-password"]["relay"]["failed"]
    assert applied["wrong-password"]["patch"] is None  # never reached: the relay step failed

    again = batch.run_batch(good, lambda r: batch.apply_host(r, factory, check_mode=False), 4)
    for name, result in again.items():
        assert not result["relay"]["changed"], name
        assert result["patch"] is None or not result["patch"]["changed"], name


def test_a_batch_names_each_host_once_and_bounds_its_workers() -> None:
    one = batch.HostRequest("ex1", {})
    with pytest.raises(InputError, match=r"hosts: .* names a host twice"):
        batch.run_batch([one, one], lambda r: {})
    for workers in (0, batch.MAX_WORKERS + 1):
        with pytest.raises(InputError, match="max_workers"):
            batch.run_batch([one], lambda r: {}, workers)
    assert batch.run_batch([], lambda r: {}) == {}


def test_a_bad_option_fails_that_host_before_any_connection() -> None:
    hostile = batch.HostRequest("ex1", DEFAULTS | {"winrm_host": "$(reboot)"})
    result = batch.run_batch([hostile], lambda r: batch.assess_host(r, connection.client_for))
    assert result["ex1"]["failed"]
    assert "winrm_host" in result["ex1"]["msg"]


def test_an_unknown_patch_policy_fails_that_host_before_any_connection() -> None:
    def no_connection(options: Any) -> Any:
        raise AssertionError("connected despite a bad patch_policy")

    bad = batch.HostRequest("ex1", DEFAULTS | {"winrm_host": "127.0.0.1"}, None, "newest")
    result = batch.run_batch([bad], lambda r: batch.assess_host(r, no_connection))
    assert result["ex1"]["failed"]
    assert "patch_policy 'newest' is not one of latest, cu_n_minus_1" in result["ex1"]["msg"]


def test_hosts_of_a_batch_on_one_server_are_worked_one_after_the_other() -> None:
    """Two inventory names for one address never run at once (the server's change lock would
    refuse the second as another run); other servers still run beside them."""
    import threading
    import time

    running: dict[str, int] = {}
    most: dict[str, int] = {}
    guard = threading.Lock()

    def work(r: batch.HostRequest) -> dict[str, Any]:
        server = batch.server_of(r)
        with guard:
            running[server] = running.get(server, 0) + 1
            most[server] = max(most.get(server, 0), running[server])
        time.sleep(0.05)
        with guard:
            running[server] -= 1
        return {"failed": False}

    requests = [
        batch.HostRequest("a", {"winrm_host": "127.0.37.1"}),
        batch.HostRequest("a-alias", {"winrm_host": "127.0.37.1"}),
        batch.HostRequest("a-upper", {"winrm_host": "127.0.37.1 "}),
        batch.HostRequest("b", {"winrm_host": "127.0.37.2"}),
        batch.HostRequest("c", {"winrm_host": "127.0.37.3"}),
    ]
    results = batch.run_batch(requests, work, 4)
    assert list(results) == ["a", "a-alias", "a-upper", "b", "c"]
    assert most["127.0.37.1"] == 1, most
    assert sum(most.values()) == 3, most
