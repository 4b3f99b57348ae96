"""relay_plan (plugins/filter/relay_plan.py): secure-relay.yml's plan for one host — whether
it needs a change, whether this run applies it (enforce, inside the change window or forced),
and otherwise how it ends and why; a missing phase (--tags) names itself and the tags to run."""

from __future__ import annotations

from typing import Any

import pytest
from support import plugin_files

PLAN = plugin_files.load("plugins/filter/relay_plan.py", "relay_plan_filter").relay_plan
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
