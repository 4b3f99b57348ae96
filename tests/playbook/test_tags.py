"""One phase alone (--tags detect, remediate, verify, probe) says what it is missing.

A phase reads what the phases before it recorded in this run; alone it does not have its
inputs, and the plan (tagged always) fails each host naming the missing phase and the tags to
run, instead of undefined-variable errors. Nothing is changed. Addresses 127.0.44.101 upwards
(this room's block, tests/playbook/fleet.py).
"""

from __future__ import annotations

import pytest

from playbook.fleet import lab_fleet

FLEET = "exchange2019/anon-relay:1,exchange2019/compliant:1"
MISSING = {
    "probe": ("detection (tag detect)",),
    "detect": ("baseline probe (tag probe)",),
    "remediate": ("baseline probe (tag probe)", "detection (tag detect)"),
    "verify": ("baseline probe (tag probe)", "detection (tag detect)"),
}


@pytest.mark.parametrize("tags", [pytest.param(dict(MISSING), id="each-phase-alone")])
def test_a_phase_alone_names_what_it_is_missing(tags: dict[str, tuple[str, ...]]) -> None:
    with lab_fleet(FLEET, "127.0.44.101") as fleet:
        pristine = fleet.fingerprint()
        for tag, missing in tags.items():
            run = fleet.playbook("--tags", tag, extra={"relay_serial": ["100%"]})
            assert run.returncode != 0, run.explain()
            assert "is undefined" not in run.output, (tag, run.explain())
            hosts = fleet.report_hosts()
            assert set(hosts) == set(fleet.names), (tag, run.explain())
            for name, host in hosts.items():
                error = host["error"] or ""
                assert host["status"] == "failed", (tag, name, host)
                assert "needs this run's" in error, (tag, name, error)
                for words in missing:
                    assert words in error, (tag, name, words, error)
                assert "--tags probe,detect" in error and "or without --tags" in error, error
                assert run.recap[name]["failed"] == 1, (tag, run.recap)
                assert run.recap[name]["changed"] == 0, (tag, run.recap)
            assert fleet.fingerprint() == pristine, tag
