"""A host whose legitimate mail flow breaks after the change is rolled back and fails; the
rest of its batch goes on; the batch failure limit decides whether the next batch starts."""

from __future__ import annotations

from playbook.fleet import lab_fleet

# Four twins with the same open relay, in two batches of two.
FLEET = "exchange2019/anon-relay:4"
BATCHES = {"relay_serial": [2, 2]}


def test_broken_flow_is_rolled_back_and_stops_or_not_the_next_batch() -> None:
    with lab_fleet(FLEET, "127.0.41.1") as fleet:
        first, second, third, fourth = fleet.names
        fleet.break_legit_flow_after_change(first)
        pristine = fleet.fingerprint()
        relay_settings = fleet.modern_relay_settings(first)

        # relay_max_fail_percentage 0: the failure stops the rollout after the first batch.
        stopped = fleet.playbook(extra={**BATCHES, "relay_max_fail_percentage": 0})
        assert stopped.returncode != 0, stopped.explain()
        hosts = fleet.report_hosts()
        assert set(hosts) == {first, second}, stopped.explain()
        broken = hosts[first]
        assert broken["status"] == "rolled_back", broken
        assert "allowed network" in broken["error"], broken["error"]
        assert any(c["control"] == "rollback" and c["applied"] for c in broken["changes"])
        assert fleet.modern_relay_settings(first) == relay_settings  # restored exactly
        assert hosts[second]["status"] == "remediated", hosts[second]
        assert hosts[second]["after"]["verdict"] == "closed"
        assert stopped.recap[first]["failed"] == 1 and stopped.recap[second]["failed"] == 0
        assert third not in stopped.recap and fourth not in stopped.recap
        now = fleet.fingerprint()
        assert now[third] == pristine[third] and now[fourth] == pristine[fourth]
        assert now[second] != pristine[second]

        # relay_max_fail_percentage 50: one failure in two is not more than 50 %, the
        # second batch goes on (max_fail_percentage must be exceeded).
        tolerated = fleet.playbook(extra={**BATCHES, "relay_max_fail_percentage": 50})
        assert tolerated.returncode != 0, tolerated.explain()
        hosts = fleet.report_hosts()
        assert set(hosts) == set(fleet.names), tolerated.explain()
        assert hosts[first]["status"] == "rolled_back"
        assert hosts[second]["status"] == "compliant"
        assert hosts[third]["status"] == hosts[fourth]["status"] == "remediated"
        assert fleet.report()["summary"]["exit_status"] == 2
