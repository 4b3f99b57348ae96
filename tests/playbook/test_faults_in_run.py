"""Faults injected during a whole `ansible-playbook secure-relay.yml` run on the lab.

Five Exchange twins in one batch, enforce mode; before the run, each of four hosts gets a
different lab fault (`relayguard.lab.exchange.state.Fault`, armed in the twin's state, taken by the
first call of its op): the first connector write refused, a connector write that reached the
host and then failed, the 5.5 IMS restart after the registry write, the 5.5 IMS hotfix
install. The fifth host is left alone. Then: the unfaulted host is remediated; each faulted
host is rolled back, its report error names the failing step and the injected cause, its
relay configuration equals the one before the run and its backup is intact; the run exits
non-zero and the summary agrees. A plain rerun closes every host; an audit run finds every
host compliant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playbook.fleet import Fleet, lab_fleet
from relayguard.exchange.apply import read_backup
from relayguard.lab.exchange.state import Fault, TwinState
from relayguard.lab.exchange.store import StateStore

# The 5.5 hosts reroute: over SMB the Routing tab cannot be written (its storage is unknown),
# so a "Do not reroute" host is never closed automatically (docs/exchange.md).
FLEET = "exchange2019/anon-relay:2,exchange2016/star-domain:1,exchange55/sp2-reroute-open:2"
# One batch, and one host's failure does not stop the others.
ONE_BATCH = {"relay_serial": ["100%"], "relay_max_fail_percentage": 100}
RELAY_TASK = "Only the allowed networks relay; the inbound domains stay accepted"
PATCH_TASK = "Install the relay fix the build needs"


@dataclass(frozen=True)
class Injected:
    """One fault for one host, and what its report error must say."""

    fault: Fault
    task: str  # the step the error's task names
    says: tuple[str, ...]  # further words the error must hold (the step, what was done)
    # A WinRM fault's message reaches the error; over SMB only a Win32 error code does.
    message_in_error: bool = True


def _faults() -> dict[str, Injected]:
    """platform / index among the fleet's hosts of that platform -> the fault it gets."""

    def fault(op: str, cause: str, *, after_apply: bool = False) -> Fault:
        return Fault(op=op, message=f"lab fault: {cause}", after_apply=after_apply)

    restored = "the host was restored to its configuration before the run"
    return {
        "exchange2019/0": Injected(
            fault("modern.write_config", "connector write refused"),
            RELAY_TASK,
            ("step 1/4 (create the dedicated relay connector", "failed:", restored),
        ),
        "exchange2016/0": Injected(
            fault("modern.write_config", "connector write half-ran", after_apply=True),
            RELAY_TASK,
            ("step 1/", "failed:", restored),
        ),
        # Exchange 5.5 is reached over SMB (relay_exchange_channel defaults to smb for it):
        # the faults are the SMB twin's.
        "exchange55/0": Injected(
            fault("smb.patch.run", "IMS hotfix installer crashed"),
            PATCH_TASK,
            ("the installer cannot open the package", "nothing was installed"),
            message_in_error=False,
        ),
        "exchange55/1": Injected(
            fault("smb.service.start", "MSExchangeIMC did not start"),
            RELAY_TASK,
            # two steps over SMB: the Routing tab's storage is unknown, so it is not written
            ("step 2/2 (restart MSExchangeIMC", "failed:", restored),
            message_in_error=False,
        ),
    }


def _store(fleet: Fleet, name: str) -> StateStore:
    return StateStore(fleet.lab / "state" / f"{name}.json")


def _settled_config(fleet: Fleet, name: str) -> dict[str, Any]:
    """`fleet.relay_config` without the one field a service restart moves by itself (when
    the last restart's listener pause ends); everything else must be as it was."""
    config: dict[str, Any] = json.loads(fleet.relay_config(name))
    for part in config.values():
        if part is not None:
            part["Service"].pop("restart_until")
    return config


def _backups(fleet: Fleet, name: str) -> list[Path]:
    """This host's Exchange backups under the reports directory, oldest run first."""
    return sorted((fleet.reports / "backups").glob(f"*/{name}.json"))


def test_faults_during_a_whole_run_roll_back_and_a_rerun_converges() -> None:
    with lab_fleet(FLEET, "127.0.36.1") as fleet:
        by_platform: dict[str, list[str]] = {}
        for host in fleet.hosts:
            by_platform.setdefault(host["platform"], []).append(host["name"])
        faults: dict[str, Injected] = {}
        for key, injected in _faults().items():
            platform, index = key.split("/")
            faults[by_platform[platform][int(index)]] = injected
        (clean,) = set(fleet.names) - set(faults)

        for name, injected in faults.items():

            def arm(state: TwinState, fault: Fault = injected.fault) -> None:
                state.lab.faults.append(fault)

            _store(fleet, name).update(arm)
        before = {name: _settled_config(fleet, name) for name in fleet.names}

        # 1. The faulted run.
        run = fleet.playbook(extra={"relay_mode": "enforce", **ONE_BATCH})
        assert run.returncode != 0, run.explain()
        report = fleet.report()
        hosts = fleet.report_hosts()
        assert set(hosts) == set(fleet.names), run.explain()
        assert hosts[clean]["status"] == "remediated", hosts[clean]
        assert hosts[clean]["after"]["verdict"] == "closed", hosts[clean]
        assert hosts[clean]["patch"]["compliant"] is True, hosts[clean]["patch"]
        assert run.recap[clean]["failed"] == 0, run.explain()
        for name, injected in faults.items():
            host = hosts[name]
            state = _store(fleet, name).load()
            assert not state.lab.faults, f"{name}: the fault was never taken"
            # rolled back, by exchange_relay itself or by the playbook's rescue
            assert host["status"] == "rolled_back", (name, host)
            assert run.recap[name]["failed"] == 1, run.explain()
            # The report says what happened: the step, the cause, what became of the host.
            # (one task reports both Exchange steps: its name names each, its message the one
            # that failed)
            error = host["error"] or ""
            assert injected.task in error.split(": ", 1)[0], (name, error)
            if injected.message_in_error:
                assert injected.fault.message in error, (name, error)
            for words in injected.says:
                assert words in error, (name, words, error)
            # Never half-changed: the relay configuration is the one before the run, and
            # the 5.5 IMS runs what is configured.
            assert _settled_config(fleet, name) == before[name], name
            assert state.relay_fingerprint() == state.lab.baseline_fingerprint, name
            if state.exchange55 is not None:
                assert not state.exchange55.pending_restart, name
                assert state.exchange55.Service.Status == "Running", name
            # The backup is intact: this host's, as taken before the change.
            (backup,) = _backups(fleet, name)
            saved = read_backup(backup)
            platform = "exchange55" if state.exchange55 is not None else "modern"
            assert (saved["host"], saved["platform"]) == (name, platform)
            rollback = [c for c in host["changes"] if c["control"] == "rollback"]
            if injected.task == PATCH_TASK:
                # the relay change was made, then undone from the backup by the playbook;
                # the fix was not installed, and the report does not claim it was
                assert host["changes"][-1] == rollback[-1], host["changes"]
                assert [c["target"] for c in rollback] == [str(backup)], host["changes"]
                relay_steps = [
                    c for c in host["changes"] if c["control"].startswith("exchange-ims")
                ]
                assert relay_steps and all(c["applied"] for c in relay_steps), host["changes"]
                patch = [c for c in host["changes"] if c["control"] == "exchange-patch"]
                assert [c["applied"] for c in patch] == [False], host["changes"]
                assert host["patch"]["compliant"] is False, host["patch"]
            else:
                # exchange_relay undid its own steps: nothing it planned stayed applied
                assert not any(c["applied"] for c in host["changes"]), host["changes"]
        summary = report["summary"]
        statuses = [h["status"] for h in hosts.values()]
        assert summary["hosts"] == len(fleet.names)
        assert summary["by_status"] == {
            status: statuses.count(status) for status in summary["by_status"]
        }
        assert summary["by_status"]["remediated"] == 1
        assert summary["by_status"]["rolled_back"] == len(faults)
        assert summary["exit_status"] == 2
        backups_after_faults = {name: _backups(fleet, name)[0] for name in faults}

        # 2. Every fault was taken, so none is left armed: a plain rerun closes every host.
        for name in fleet.names:
            assert not _store(fleet, name).load().lab.faults, name
        rerun = fleet.playbook(extra={"relay_mode": "enforce", **ONE_BATCH})
        assert rerun.returncode == 0, rerun.explain()
        hosts = fleet.report_hosts()
        assert hosts[clean]["status"] == "compliant", hosts[clean]
        for name in faults:
            assert hosts[name]["status"] == "remediated", (name, hosts[name])
            assert hosts[name]["after"]["verdict"] == "closed", name
            # The first run's backup held what this run read before its change: the host
            # it restored was exactly the host as it was.
            first, second = _backups(fleet, name)
            assert first == backups_after_faults[name]
            assert read_backup(first)["config"] == read_backup(second)["config"], name
        assert fleet.report()["summary"]["exit_status"] == 0

        # 3. An audit run: every host compliant, nothing changed.
        closed = fleet.fingerprint()
        audit = fleet.playbook(extra={"relay_mode": "audit"})
        assert audit.returncode == 0, audit.explain()
        assert {h["status"] for h in fleet.report_hosts().values()} == {"compliant"}
        assert fleet.fingerprint() == closed
