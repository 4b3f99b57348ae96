"""relay_plan (plugins/action/relay_plan.py): secure-relay.yml's plan for one host — whether
it needs a change, whether this run applies it (enforce, inside the change window or forced),
and otherwise how it ends and why; a missing phase (--tags) names itself and the tags to run.
The batch's action reads each host's record as the earlier steps left it (`record_status`,
`plan_input`); the playbook runs of tests/playbook drive it whole."""

from __future__ import annotations

from typing import Any

import pytest
from support import plugin_files

ACTION = plugin_files.load("plugins/action/relay_plan.py", "relay_plan_action")
PLAN = ACTION.relay_plan
OPEN = {"verdict": "open", "reason": "3/32 relay tests relayed"}
CLOSED = {"verdict": "closed", "reason": "every relay test refused"}
CHANGE = [{"control": "postfix-relay-restrictions"}, {"control": "postfix-inbound-domains"}]
BASE: dict[str, Any] = {
    "host": "mx1", "before": OPEN, "detected": True, "changes": CHANGE, "patch": {},
    "mode": "enforce", "window_open": True, "force": False, "window": ["", ""],
    "status": "", "error": "", "run_tags": ["all"],
}  # fmt: skip


def plan(**change: Any) -> dict[str, Any]:
    return dict(PLAN({**BASE, **change}))


def test_enforce_inside_the_window_applies_and_leaves_the_status_open() -> None:
    assert plan() == {"needs_change": True, "apply": True, "status": "", "error": ""}


def test_a_closed_host_without_changes_is_compliant_in_either_mode() -> None:
    for mode in ("enforce", "audit"):
        assert plan(mode=mode, before=CLOSED, changes=[]) == {
            "needs_change": False, "apply": False, "status": "compliant", "error": ""
        }  # fmt: skip


def test_audit_names_every_finding() -> None:
    patch = {"compliant": False, "installed": "15.2.1544.4", "required": "15.2.1544.48"}
    out = plan(mode="audit", patch=patch)
    assert out["status"] == "audit_failed" and out["apply"] is False
    assert out["error"] == (
        "probe verdict open: 3/32 relay tests relayed; 2 planned change(s): "
        "postfix-relay-restrictions, postfix-inbound-domains; "
        "patch missing: 15.2.1544.4 below 15.2.1544.48"
    )


def test_a_missing_patch_alone_is_a_change() -> None:
    out = plan(before=CLOSED, changes=[], patch={"compliant": False})
    assert out["needs_change"] and out["apply"]


@pytest.mark.parametrize(("force", "apply"), [(False, False), (True, True), ("yes", True)])
def test_outside_the_window_nothing_changes_unless_forced(force: Any, apply: bool) -> None:
    out = plan(window_open=False, force=force, window=["22:00", "02:00"])
    assert out["apply"] is apply
    if not apply:
        assert out["status"] == "audit_failed"
        assert out["error"].startswith(
            "outside the change window 22:00-02:00 UTC: nothing changed (relay_force=true "
            "overrides); probe verdict open"
        ), out["error"]


def test_open_but_nothing_to_change_fails_in_enforce() -> None:
    # the probe says open and detection plans nothing: relayguard cannot close it
    out = plan(changes=[])
    assert out == {
        "needs_change": False, "apply": False, "status": "failed",
        "error": "probe verdict open: 3/32 relay tests relayed",
    }  # fmt: skip
    assert plan(changes=[], mode="audit")["status"] == "audit_failed"


def test_a_missing_phase_fails_naming_it_and_the_tags_to_run() -> None:
    out = plan(before=None, detected=False, run_tags=["remediate", "always"])
    assert out["status"] == "failed" and out["apply"] is False
    assert out["error"] == (
        "mx1: the plan (and so remediate and verify) needs this run's baseline probe (tag "
        "probe) and detection (tag detect): run with --tags probe,detect,remediate or "
        "without --tags"
    )
    assert "detection (tag detect)" not in plan(before=None)["error"]


def test_an_applied_host_keeps_its_status_and_error() -> None:
    assert plan(status="", error="kept")["error"] == "kept"


PREFLIGHT = {
    "record": {"mode": "enforce", "window_open": False, "force": True, "window": ["22:00", "02:00"]}
}
PROBE = {
    "hosts": [{"target": "ex1:25", "verdict": "open", "reason": "relays", "transcript": ["x"]}],
    "by_name": {"ex1": {"worst": 0}},
}
DETECT = {"hosts": {"ex1": {"record": {"changes": CHANGE, "patch": {"compliant": True}}}}}


def test_the_status_before_the_plan_as_the_record_says() -> None:
    status = ACTION.record_status
    mine = {"relay_preflight": PREFLIGHT}
    assert status(mine, {}, "ex1") == ""
    # a status a step set is the host's, whatever the record says
    assert status({"relay_status": "compliant"}, {}, "ex1") == "compliant"
    # inputs refused: no record
    assert status({"relay_preflight": {"failed": True, "msg": "bad CIDR"}}, {}, "ex1") == "failed"
    unreachable = {"relay_reachability": {"hosts": {"ex1": {"problem": "smtp does not answer"}}}}
    assert status(mine, unreachable, "ex1") == "unreachable"
    broken = {"exchange_detect_batch": {"hosts": {"ex1": {"error": "WinRM 401"}}}}
    assert status(mine, broken, "ex1") == "failed"
    # another host's problem is not this one's
    assert status(mine, unreachable, "ex2") == ""


def test_an_exchange_hosts_plan_reads_the_registered_results() -> None:
    shared = {"relay_probe_before_batch": PROBE, "exchange_detect_batch": DETECT}
    got = ACTION.plan_input({"relay_preflight": PREFLIGHT}, shared, "ex1", ["all"])
    # of the baseline entry only its verdict and reason
    assert got["before"] == {"verdict": "open", "reason": "relays"}
    assert got["detected"] is True and got["changes"] == CHANGE
    assert got["patch"] == {"compliant": True}
    assert (got["mode"], got["window_open"], got["force"]) == ("enforce", False, True)
    assert got["window"] == ["22:00", "02:00"] and got["status"] == ""
    # forced outside the window: applied
    assert PLAN(got)["apply"] is True


def test_an_mta_hosts_plan_reads_the_facts_its_detection_set() -> None:
    host = {
        "relay_preflight": PREFLIGHT,
        "relay_detected": True,
        "relay_patch": {"required": None, "installed": None, "compliant": None},
    }
    shared = {"relay_probe_before_batch": {**PROBE, "by_name": {"mx1": {"worst": 0}}}}
    got = ACTION.plan_input(host, shared, "mx1", ["all"])
    # a Postfix host with nothing to change set no relay_changes: none planned
    assert got["detected"] is True and got["changes"] == []
    assert PLAN(got)["status"] == "failed"  # open, nothing to change: cannot be closed here
    # without the baseline probe or the detection (--tags), the plan names the missing phase
    bare = ACTION.plan_input({"relay_preflight": PREFLIGHT}, {}, "mx1", ["remediate"])
    assert bare["before"] is None and bare["detected"] is False
    assert "baseline probe (tag probe) and detection (tag detect)" in PLAN(bare)["error"]
