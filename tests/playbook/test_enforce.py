"""secure-relay.yml on a vulnerable fleet: audit fails, --check --diff changes nothing,
enforce closes every host, a rerun changes nothing, and the audit afterwards passes."""

from __future__ import annotations

from playbook.fleet import Fleet, lab_fleet

# Every kind the playbook handles, each with something to fix (the compliant 2019 twin
# and the 5.5 SP4 twin are the controls; the closed-unpatched one is make demo's
# ex2019-compliant: relay closed, CU15 without its updates). Without root the lab leaves
# Postfix out.
FLEET = (
    "exchange2019/anon-relay:1,exchange2016/star-domain:1,exchange2019/compliant:1,"
    "exchange2019/closed-unpatched:1,exchange55/sp4-closed:1,postfix:2"
)


def _verdicts(fleet: Fleet, phase: str) -> dict[str, str | None]:
    return {name: (host[phase] or {}).get("verdict") for name, host in fleet.report_hosts().items()}


def test_enforce_closes_the_fleet_and_a_rerun_changes_nothing() -> None:
    with lab_fleet(FLEET, "127.0.40.1") as fleet:
        pristine = fleet.fingerprint()

        # Audit: non-zero, nothing changed, the open hosts named.
        audit = fleet.playbook(extra={"relay_mode": "audit"})
        assert audit.returncode != 0, audit.explain()
        report = fleet.report()
        assert report["run"]["mode"] == "audit"
        assert report["summary"]["exit_status"] == 2
        baseline = _verdicts(fleet, "before")
        assert set(baseline) == set(fleet.names)
        assert "open" in baseline.values()
        statuses = {h["host"]: h["status"] for h in report["hosts"]}
        assert {statuses[n] for n, v in baseline.items() if v == "open"} == {"audit_failed"}, report
        assert fleet.fingerprint() == pristine

        # --check --diff: the plan is shown, nothing changes.
        check = fleet.playbook("--check", "--diff")
        assert check.returncode == 0, check.explain()
        assert "--- before" in check.output and "+++ after" in check.output
        assert fleet.report()["run"]["check_mode"] is True
        assert fleet.fingerprint() == pristine

        # Enforce: every host ends closed (and patched where a fix applies).
        enforce = fleet.playbook()
        assert enforce.returncode == 0, enforce.explain()
        assert _verdicts(fleet, "before") == baseline  # the check run changed no verdict
        for name, host in fleet.report_hosts().items():
            latest = host["after"] or host["before"]
            assert latest["verdict"] == "closed", (name, latest["reason"])
            assert host["patch"]["compliant"] is not False, (name, host["patch"])
            expected = "remediated" if baseline[name] == "open" else ("compliant", "remediated")
            assert host["status"] in expected, (name, host["status"], host["error"])
            if host["status"] == "remediated":
                assert any(c["applied"] for c in host["changes"]), name
        # The relay-closed CU15 twin was found behind and got CU15's newest update.
        unpatched = next(h["name"] for h in fleet.hosts if h["profile"] == "closed-unpatched")
        host = fleet.report_hosts()[unpatched]
        assert host["status"] == "remediated", (host["status"], host["error"])
        assert host["patch"] == {
            "required": "15.2.1748.53",
            "installed": "15.2.1748.53",
            "compliant": True,
        }, host["patch"]
        patched = [c for c in host["changes"] if c["control"] == "exchange-patch"]
        assert [(c["before"], c["applied"]) for c in patched] == [("15.2.1748.10", True)]
        assert set(enforce.recap) >= set(fleet.names)
        assert all(enforce.recap[n]["failed"] == 0 for n in fleet.names), enforce.recap

        # Rerun: changed=0 on every host, every host compliant.
        again = fleet.playbook()
        assert again.returncode == 0, again.explain()
        assert all(again.recap[n]["changed"] == 0 for n in fleet.names), again.recap
        assert {h["status"] for h in fleet.report()["hosts"]} == {"compliant"}
        settled = fleet.fingerprint()

        # Audit afterwards: zero.
        final = fleet.playbook(extra={"relay_mode": "audit"})
        assert final.returncode == 0, final.explain()
        assert fleet.report()["summary"]["exit_status"] == 0
        assert fleet.fingerprint() == settled
