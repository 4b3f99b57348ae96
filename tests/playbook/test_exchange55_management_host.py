"""secure-relay.yml reaches the lab's Exchange 5.5 hosts through a Windows management host
(relay_exchange_channel: via-management-host): one twin's WinRM endpoint plays the management
host and reaches every 5.5 twin (itself included) over that twin's SMB endpoint, as
OpenRemoteBaseKey, Get-Service -ComputerName, sc.exe and UNC paths do. Enforce closes and
patches them, three more runs change nothing, and no twin is ever asked for a local op over
WinRM (those faults stay armed). Failures: a target nothing answers for, wrong credentials
at either hop - a clear error naming the target, nothing changed, no password printed.
Addresses: the fleets take 127.0.49.1 and 127.0.50.1 (free in the lab's range
127.0.30.1-127.0.58.254, which `relayguard lab up` enforces); the unreachable target is
127.0.180.254, where nothing listens."""

from __future__ import annotations

import json
from typing import Any

from playbook.fleet import Fleet, lab_fleet
from relayguard.lab.exchange.state import Fault, TwinState
from relayguard.lab.exchange.store import StateStore

FLEET = "exchange55/sp2-reroute-open:1,exchange55/sp3-wide-allow:1"
LOCAL_OPS = ("exchange.detect", "exchange55.read_config", "exchange55.write_config")
UNREACHABLE = "127.0.180.254"


def _management(fleet: Fleet) -> dict[str, Any]:
    """The first twin plays the management host, with its own WinRM account."""
    first = fleet.hosts[0]
    secret = json.loads((fleet.lab / "host_vars" / f"{first['name']}.yml").read_text())
    return {
        "relay_mode": "enforce",
        "relay_exchange_channel": "via-management-host",
        "relay_exchange_management_host": first["address"],
        "relay_exchange_management_username": secret["ansible_user"],
        "relay_exchange_management_password": secret["ansible_password"],
    }


def _state(fleet: Fleet, name: str) -> StateStore:
    return StateStore(fleet.lab / "state" / f"{name}.json")


def _passwords(fleet: Fleet) -> list[str]:
    return [
        json.loads((fleet.lab / "host_vars" / f"{n}.yml").read_text())["ansible_password"]
        for n in fleet.names
    ]


def test_enforce_through_a_management_host_closes_and_patches_four_passes() -> None:
    with lab_fleet(FLEET, "127.0.49.1") as fleet:

        def arm(state: TwinState) -> None:  # any local 5.5 op over WinRM would take one
            state.lab.faults.extend(Fault(op=op, count=99) for op in LOCAL_OPS)

        for name in fleet.names:
            _state(fleet, name).update(arm)
        extra = _management(fleet)
        first = fleet.playbook(extra=extra)
        assert first.returncode == 0, first.explain()
        assert all(first.recap[n]["failed"] == 0 for n in fleet.names), first.explain()
        assert all(first.recap[n]["changed"] for n in fleet.names), first.explain()
        for name in fleet.names:
            state = _state(fleet, name).load()
            x = state.exchange55
            assert x is not None
            assert x.Parameters.RelayFlags is not None and x.Parameters.RelayFlags & 2, name
            assert x.Running is not None and x.Running.Parameters == x.Parameters, name
            assert tuple(int(p) for p in x.ImcFileVersion.split(".")) >= (5, 5, 2650, 1), name
            assert len(state.lab.faults) == len(LOCAL_OPS), name  # no local op over WinRM
        for _ in range(3):
            again = fleet.playbook(extra=extra)
            assert again.returncode == 0, again.explain()
            assert all(again.recap[n]["changed"] == 0 for n in fleet.names), again.recap
        for secret in _passwords(fleet):
            assert secret not in first.output


def test_an_unreachable_target_or_wrong_credentials_fail_clearly_and_change_nothing() -> None:
    with lab_fleet(FLEET, "127.0.50.1") as fleet:
        extra = _management(fleet)
        target = fleet.names[1]
        before = {n: _state(fleet, n).load().exchange55 for n in fleet.names}
        # the management host is up, the 5.5 host's address answers nothing
        host_vars = fleet.lab / "host_vars" / f"{target}.yml"
        original = json.loads(host_vars.read_text())
        host_vars.write_text(json.dumps({**original, "relay_winrm_host": UNREACHABLE}))
        unreachable = fleet.playbook("-vvv", extra=extra)
        host_vars.write_text(json.dumps(original))
        assert unreachable.recap.get(target, {}).get("failed", 0) >= 1, unreachable.explain()
        assert f"{UNREACHABLE} (via {extra['relay_exchange_management_host']})" in (
            unreachable.output
        ), unreachable.explain()
        assert "network path was not found" in unreachable.output
        # the management host refuses its account; the target refuses its own
        wrong_mgmt = "Wrong-" + extra["relay_exchange_management_password"]
        refused = fleet.playbook(
            "-vvv", extra={**extra, "relay_exchange_management_password": wrong_mgmt}
        )
        # the batch that meets it fails and the run stops there (max_fail_percentage)
        assert refused.returncode != 0 and refused.recap, refused.explain()
        assert all(r["failed"] >= 1 for n, r in refused.recap.items() if n != "localhost")
        assert "auth refused" in refused.output
        wrong_target = "Wrong-" + original["ansible_password"]
        host_vars.write_text(json.dumps({**original, "ansible_password": wrong_target}))
        denied = fleet.playbook("-vvv", extra=extra)
        host_vars.write_text(json.dumps(original))
        assert denied.recap.get(target, {}).get("failed", 0) >= 1, denied.explain()
        assert "user name or password is incorrect" in denied.output, denied.explain()
        assert _state(fleet, target).load().exchange55 == before[target]
        secrets = [*_passwords(fleet), wrong_mgmt, wrong_target]
        for run in (unreachable, refused, denied):
            for secret in secrets:
                assert secret not in run.output
