"""Outside the change window nothing is changed: the batch is audited, fails (which stops the
rollout), and the report says why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from playbook.fleet import lab_fleet

FLEET = "exchange2019/anon-relay:1,postfix:1"


def test_outside_the_change_window_nothing_changes() -> None:
    now = datetime.now(UTC)
    window = {
        # a window that opens in two hours and closes an hour later (it may cross midnight)
        "relay_change_window_start": (now + timedelta(hours=2)).strftime("%H:%M"),
        "relay_change_window_end": (now + timedelta(hours=3)).strftime("%H:%M"),
    }
    with lab_fleet(FLEET, "127.0.42.1") as fleet:
        pristine = fleet.fingerprint()
        run = fleet.playbook(extra=window)
        assert run.returncode != 0, run.explain()
        assert fleet.fingerprint() == pristine
        for name, host in fleet.report_hosts().items():
            assert host["status"] == "audit_failed", (name, host)
            assert "outside the change window" in host["error"], host["error"]
            assert not any(c["applied"] for c in host["changes"]), host["changes"]
            assert host["after"] is None
        # the first batch's failures stop the rollout: later batches are not even audited
        assert all(run.recap[n]["changed"] == 0 for n in fleet.report_hosts()), run.recap
