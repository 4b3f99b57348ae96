"""secure-relay.yml reaches the lab's Exchange 5.5 hosts over SMB (relay_exchange_channel:
smb), as a real 5.5 host on Windows NT 4.0 / 2000 must be reached (no WinRM there): enforce
closes and patches them, three more runs change nothing, and the WinRM endpoint is never
asked for anything (its faults stay armed)."""

from __future__ import annotations

from playbook.fleet import lab_fleet
from relayguard.lab.exchange.state import Fault, TwinState
from relayguard.lab.exchange.store import StateStore

FLEET = "exchange55/sp2-reroute-open:1,exchange55/sp3-wide-allow:1"
SMB = {"relay_mode": "enforce", "relay_exchange_channel": "smb"}
WINRM_OPS = ("exchange.detect", "exchange55.read_config", "exchange55.write_config")


def test_enforce_over_smb_closes_and_patches_the_55_hosts_four_passes() -> None:
    with lab_fleet(FLEET, "127.0.47.1") as fleet:

        def arm(state: TwinState) -> None:  # any WinRM use would take one of these
            state.lab.faults.extend(Fault(op=op, count=99) for op in WINRM_OPS)

        for name in fleet.names:
            StateStore(fleet.lab / "state" / f"{name}.json").update(arm)
        first = fleet.playbook(extra=SMB)
        assert first.returncode == 0, first.explain()
        assert all(first.recap[n]["failed"] == 0 for n in fleet.names), first.explain()
        assert any(first.recap[n]["changed"] for n in fleet.names), first.explain()
        for name in fleet.names:
            state = StateStore(fleet.lab / "state" / f"{name}.json").load()
            x = state.exchange55
            assert x is not None
            assert x.Parameters.RelayFlags is not None and x.Parameters.RelayFlags & 2, name
            assert x.Running is not None and x.Running.Parameters == x.Parameters, name
            assert tuple(int(p) for p in x.ImcFileVersion.split(".")) >= (5, 5, 2650, 1), name
            assert len(state.lab.faults) == len(WINRM_OPS), name  # WinRM never used
        for _ in range(3):
            again = fleet.playbook(extra=SMB)
            assert again.returncode == 0, again.explain()
            assert all(again.recap[n]["changed"] == 0 for n in fleet.names), again.recap


def test_preflight_checks_the_smb_endpoint_not_winrm() -> None:
    """A 5.5 host reached over SMB is reachable when its SMB answers, whatever its WinRM does
    (a real NT 4.0 / 2000 host has none), and unreachable, naming the SMB endpoint, when SMB
    does not answer; nothing changes on it."""
    with lab_fleet("exchange55/sp2-reroute-open:1", "127.0.47.20") as fleet:
        (name,) = fleet.names
        before = (fleet.lab / "state" / f"{name}.json").read_text(encoding="utf-8")
        # the WinRM port closed: still reachable over SMB (an audit, read only)
        audit = fleet.playbook(extra={**SMB, "relay_mode": "audit", "ansible_port": 9})
        report = {h["host"]: h for h in fleet.report()["hosts"]}
        assert report[name]["status"] == "audit_failed", audit.explain()
        # the SMB port closed: unreachable, the SMB endpoint named
        closed = fleet.playbook(extra={**SMB, "relay_exchange_smb_port": 9})
        assert closed.returncode != 0
        host = {h["host"]: h for h in fleet.report()["hosts"]}[name]
        assert host["status"] == "unreachable", closed.explain()
        assert ":9 does not answer" in host["error"], host["error"]
        after = (fleet.lab / "state" / f"{name}.json").read_text(encoding="utf-8")
        assert after == before
