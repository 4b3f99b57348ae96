"""The lab fleet's Exim and Sendmail hosts: planned like Postfix, brought up for real by
`relayguard lab up --fleet mta`, probed open and closed, and gone after `lab down`."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from lab.labclient import lab, lab_up, listening_sockets
from postfix.harness import run_probe
from support.realserver import require_root, require_tool

from relayguard.lab.fleet.planning import FleetError, plan_named, plan_spec
from relayguard.vocabulary import Platform, Verdict

# The last addresses of the lab's range: no other lab test plans a fleet there.
FIRST = "127.0.58.100"


def test_the_mta_fleet_has_open_and_closed_exim_and_sendmail() -> None:
    plans = plan_named("mta")
    kinds = {(p.platform, p.expected) for p in plans}

    for platform in (Platform.POSTFIX, Platform.EXIM, Platform.SENDMAIL):
        assert (platform, Verdict.OPEN) in kinds
    for platform in (Platform.EXIM, Platform.SENDMAIL):
        assert (platform, Verdict.CLOSED) in kinds
    assert {p.group for p in plans} == {"postfix", "exim", "sendmail"}
    assert all(p.server == "" for p in plans)  # real servers, no NetBIOS twin names


def test_hosts_spec_names_exim_and_sendmail() -> None:
    plans = plan_spec("exim:3,sendmail/closed:2")

    assert [p.name for p in plans] == [
        "exim-open-relay-0001",
        "exim-closed-0002",
        "exim-open-relay-0003",
        "sm-closed-0001",
        "sm-closed-0002",
    ]
    assert {p.platform for p in plans} == {Platform.EXIM, Platform.SENDMAIL}
    with pytest.raises(FleetError, match="unknown sendmail profile 'debian_default'"):
        plan_spec("sendmail/debian_default:1")


@pytest.mark.realserver
@pytest.mark.root
def test_lab_up_runs_real_exim_and_sendmail_and_down_stops_them() -> None:
    require_root()
    require_tool("postfix", "swaks")
    with tempfile.TemporaryDirectory(prefix="relayguard-mta-fleet-") as tmp:
        Path(tmp).chmod(0o755)
        directory = Path(tmp) / "lab"
        try:
            doc = lab_up(directory, "--fleet", "mta", "--first-address", FIRST)
            hosts = {h["name"]: h for h in doc["hosts"]}
            assert {h["platform"] for h in hosts.values()} == {"postfix", "exim", "sendmail"}
            for name in ("exim-open-relay", "exim-closed", "sm-open-relay", "sm-closed"):
                host = hosts[name]
                run = run_probe(host["smtp"], doc["untrusted_client"])
                assert run.host["verdict"] == host["expected"], (name, run.summary())
                assert Path(host["config_file"]).is_file()
            inventory = (directory / "inventory.yml").read_text(encoding="utf-8")
            assert "exim-closed" in inventory and "relayguard_sendmail_config_file" in inventory
            # what the roles need to run on them (roles/relay/defaults/main.yml reads these)
            groups = yaml.safe_load(inventory)["all"]["children"]
            exim = groups["exim"]["hosts"]["exim-open-relay"]
            assert os.access(exim["relayguard_exim_binary"], os.X_OK)
            assert Path(exim["relayguard_exim_pid_file"]).is_file()  # the running daemon's
            sendmail = groups["sendmail"]["hosts"]["sm-open-relay"]
            assert os.access(sendmail["relayguard_sendmail_makemap"], os.X_OK)
            cf = Path(sendmail["relayguard_sendmail_config_file"]).with_name("sendmail.cf")
            loaded = subprocess.run(  # the wrapper runs the instance's sendmail as the lab does
                [sendmail["relayguard_sendmail_binary"], "-C", str(cf), "-bt"],
                input="$=w\n",
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert loaded.returncode == 0, loaded.stderr
            assert "sm-open-relay.relayguard.test" in loaded.stdout, loaded.stdout
        finally:
            code, _, err = lab("down", "--json", "--dir", str(directory))
        assert code == 0, err
        addresses = {h["address"] for h in doc["hosts"]}
        assert listening_sockets(addresses) == []
