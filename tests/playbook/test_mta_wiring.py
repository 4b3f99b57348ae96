"""secure-relay.yml on real Exim and Sendmail (issue 18): --check --diff changes nothing, a
change whose verification fails is rolled back byte for byte, enforce closes the open ones,
swaks (a client nobody here wrote) is refused relay from the untrusted address and still
delivers to each inbound domain, and an audit afterwards changes nothing and passes.

Real servers: root, swaks, m4 and scripts/system-packages.sh's unpacked Exim and Sendmail
(.mta/). Outside CI a missing one skips naming it; in CI (CI=true) the test fails instead.
The hosts are on 127.0.58.10-13 (the lab's range); every untrusted client speaks from this
test's own range, 127.0.160.0/24.
"""

from __future__ import annotations

import hashlib

from mta.conftest import _require_unpacked
from mta.swaks import SWAKS_NO_RECIPIENT, SWAKS_OK, swaks
from support.realserver import require_root, require_tool

from playbook.fleet import Fleet, lab_fleet
from relayguard.lab import module_utils
from relayguard.lab.exim.instance import exim_binary
from relayguard.lab.sendmail.instance import sendmail_binary

FLEET = "exim/open_relay:1,sendmail/open_relay:1,exim/closed:1,sendmail/closed:1"
FIRST = "127.0.58.10"
UNTRUSTED = "127.0.160.200"  # outside every allowed network (inventory/lab/group_vars)
NOT_ALLOWED = "127.0.160.10"  # named as the "allowed" source: verification must fail
FOREIGN = "relaytest@example.org"
# What decides relaying on each (the pid files change on every reload: left out)
FILES = {
    "exim": ("exim.conf",),
    "sendmail": ("sendmail.mc", "sendmail.cf", "access", "access.db", "relay-domains"),
}
EXTRA = {"relay_probe_source_address": UNTRUSTED, "relay_serial": ["100%"]}


def _fingerprint(fleet: Fleet) -> dict[str, str]:
    out = {}
    for host in fleet.hosts:
        root = fleet.lab / host["platform"] / host["name"]
        for name in FILES[host["platform"]]:
            out[f"{host['name']}/{name}"] = hashlib.sha256((root / name).read_bytes()).hexdigest()
    return out


def _rcpt(host: dict[str, str], recipient: str) -> int:
    return swaks(host["smtp"], UNTRUSTED, recipient, quit_after="RCPT").returncode


def _rule_ids(plan: str, table: str) -> list[str]:
    for name in ("relay_backend", "exim_config", "sendmail_facts"):
        module_utils.load(name)
    return [r.id for r in getattr(module_utils.load(plan), table)]


def test_exim_and_sendmail_closed_by_the_playbook_rolled_back_when_verification_fails() -> None:
    require_root()
    require_tool("swaks")
    require_tool("m4")
    _require_unpacked(exim_binary)
    _require_unpacked(sendmail_binary)
    with lab_fleet(FLEET, FIRST) as fleet:
        assert {h["platform"] for h in fleet.hosts} == {"exim", "sendmail"}, fleet.up
        opened = [h for h in fleet.hosts if h["profile"] == "open_relay"]
        assert len(opened) == 2
        for host in opened:  # the lab's open instances really relay for anyone
            assert _rcpt(host, FOREIGN) == SWAKS_OK, host["name"]
        pristine = _fingerprint(fleet)

        # --check --diff: the plan and its diff are shown, nothing changes.
        check = fleet.playbook("--check", "--diff", extra=EXTRA)
        assert check.returncode == 0, check.explain()
        assert "promiscuous_relay" in check.output and "0.0.0.0/0" in check.output
        assert fleet.report()["run"]["check_mode"] is True
        assert _fingerprint(fleet) == pristine

        # Enforce with a verification that cannot pass: every change is applied, fails
        # verification and is rolled back, byte for byte, and the daemons run the old files.
        failing = fleet.playbook(
            extra={**EXTRA, "relay_verify_allowed_source_address": NOT_ALLOWED}
        )
        assert failing.returncode != 0, failing.explain()
        hosts = fleet.report_hosts()
        for host in fleet.hosts:
            record = hosts[host["name"]]
            assert record["status"] == "rolled_back", (host["name"], failing.explain())
            assert NOT_ALLOWED in record["error"]
            assert record["changes"][-1]["control"] == "rollback"
        assert _fingerprint(fleet) == pristine
        for host in opened:
            assert _rcpt(host, FOREIGN) == SWAKS_OK, host["name"]

        # Enforce: closed; swaks is refused relay at RCPT and still delivers inbound.
        enforce = fleet.playbook(extra=EXTRA)
        assert enforce.returncode == 0, enforce.explain()
        hosts = fleet.report_hosts()
        prefix = {"exim": "exim-", "sendmail": "sendmail-"}
        for host in fleet.hosts:
            record = hosts[host["name"]]
            assert record["status"] == "remediated", (host["name"], record["error"])
            assert record["after"]["verdict"] == "closed", record["after"]
            applied = [c for c in record["changes"] if c["applied"]]
            assert applied and all(
                c["control"].startswith(prefix[host["platform"]]) for c in applied
            )
            assert _rcpt(host, FOREIGN) == SWAKS_NO_RECIPIENT, host["name"]
            inbound = f"postmaster@{host['name']}.relayguard.test"
            delivered = swaks(host["smtp"], UNTRUSTED, inbound)
            assert delivered.returncode == SWAKS_OK, delivered.transcript
        closed = _fingerprint(fleet)
        assert closed != pristine

        # Audit: nothing to change, every host compliant, one finding per rule of each table.
        audit = fleet.playbook(extra={**EXTRA, "relay_mode": "audit"})
        assert audit.returncode == 0, audit.explain()
        assert all(r["changed"] == 0 for r in audit.recap.values()), audit.recap
        assert _fingerprint(fleet) == closed
        rules = {
            "exim": _rule_ids("exim_plan", "EXIM_RULES"),
            "sendmail": _rule_ids("sendmail_plan", "RULES"),
        }
        for host in fleet.hosts:
            record = fleet.report_hosts()[host["name"]]
            assert record["status"] == "compliant", (host["name"], record["error"])
            assert record["changes"] == []
            found = {f["id"]: f["result"] for f in record["findings"]}
            assert {i: found.get(i) for i in rules[host["platform"]]} == dict.fromkeys(
                rules[host["platform"]], "pass"
            ), found
