"""relay_inputs (plugins/action/relay_inputs.py): the preflight's one input check — the relay
role's argument spec (entry point preflight) and the values a spec cannot judge — names each
problem, fails only the host whose inputs are bad, never shows the password, and a host it
refuses is still reported (its record's defaults), with nothing probed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import plugin_files

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"


ACTION = plugin_files.load("plugins/action/relay_inputs.py", "relay_inputs_action")
GOOD: dict[str, Any] = {
    "relay_mode": "enforce",
    "relay_platform": "exchange2019",
    "relay_platform_families": {"exchange2019": "exchange", "postfix": "postfix"},
    "relay_group_families": {"exchange_modern": "exchange", "postfix": "postfix"},
    "relay_allowed_networks": ["10.0.0.0/8", "2001:db8::/32"],
    "relay_inbound_domains": ["example.com", ".example.org"],
    "relay_partner_domains": [],
    "relay_change_window_start": "",
    "relay_change_window_end": "",
    "relay_authenticated": "keep",
    "relay_allow_removals": False,
}


def test_the_spec_is_the_role_preflight_entry_point() -> None:
    specs = yaml.safe_load((ROOT / "roles/relay/meta/argument_specs.yml").read_text())
    assert ACTION.preflight_spec() == specs["argument_specs"]["preflight"]["options"]


def test_usable_inputs_have_no_problem() -> None:
    assert ACTION.value_problems(GOOD, "exchange") == []
    assert ACTION.family_of(GOOD) == "exchange"
    by_group = {**GOOD, "relay_platform": "auto", "group_names": ["postfix"]}
    assert ACTION.family_of(by_group) == "postfix"
    assert ACTION.family_of({**by_group, "group_names": ["web"]}) == "unknown"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"relay_mode": "fix"}, "relay_mode=fix (enforce or audit)"),
        ({"relay_allowed_networks": []}, "relay_allowed_networks=[] (CIDRs, required)"),
        ({"relay_allowed_networks": ["10.0.0.0/8", "any"]}, "relay_allowed_networks: any is not"),
        ({"relay_inbound_domains": ["ex ample.com"]}, "relay_inbound_domains: ex ample.com is not"),
        ({"relay_partner_domains": ["a;b"]}, "relay_partner_domains: a;b is not valid"),
        (
            {"relay_change_window_start": "22:00"},
            "change window 22:00- (both HH:MM UTC or neither)",
        ),
        ({"relay_change_window_start": "24:00", "relay_change_window_end": "02:00"}, "24:00-02:00"),
        ({"relay_authenticated": "maybe"}, "relay_authenticated=maybe (keep, true or false)"),
    ],
)
def test_each_problem_is_named(change: dict[str, Any], named: str) -> None:
    problems = ACTION.value_problems({**GOOD, **change}, "exchange")
    assert len(problems) == 1 and named in problems[0], problems


def test_an_unknown_family_names_the_groups() -> None:
    problems = ACTION.value_problems(GOOD, "unknown")
    assert problems == [
        "platform=exchange2019: no family (put the host in one of the groups "
        "exchange_modern, postfix)"
    ]


def test_exchange_needs_credentials_unless_kerberos_or_a_certificate() -> None:
    assert (
        ACTION.credentials_missing({"ansible_user": "u", "ansible_password": "p"}, "exchange")
        is False
    )
    assert ACTION.credentials_missing({"ansible_user": "u"}, "exchange") is True
    assert ACTION.credentials_missing({"ansible_password": "p"}, "exchange") is True
    kerberos = {"ansible_user": "u", "ansible_winrm_transport": "kerberos"}
    assert ACTION.credentials_missing(kerberos, "exchange") is False
    assert ACTION.credentials_missing({}, "postfix") is False


def test_run_by_ansible_playbook_each_host_its_own(tmp_path: Path) -> None:
    """Three hosts: usable, a wrong type (the spec), an invalid CIDR and no password. Only the
    bad ones fail, each naming its problem; the password never appears, even at -vvv."""
    variables = {k: v for k, v in GOOD.items() if k != "relay_platform"}
    inventory = {
        "exchange_modern": {
            "hosts": {
                "good": {"ansible_password": "S3cret-good!"},
                "typed": {"ansible_password": "S3cret-typed!", "relay_allow_removals": "maybe"},
                "nets": {"relay_allowed_networks": ["10.0.0.0/8", "10.1.0.0/16 or so"]},
            },
            "vars": {
                # the relay role's defaults, as in its preflight (the record starts from them)
                **yaml.safe_load((ROOT / "roles/relay/defaults/main.yml").read_text()),
                **variables,
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "ansible_user": "admin",
                "relay_platform": "exchange2019",
            },
        }
    }
    results = tmp_path / "results"
    play = [
        {
            "name": "inputs",
            "hosts": "exchange_modern",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Check",
                    "relayguard.mail.relay_inputs": {},
                    "register": "checked",
                    "ignore_errors": True,
                },
                {
                    "name": "Save",
                    "ansible.builtin.copy": {
                        "content": "{{ checked | to_json }}",
                        "dest": f"{results}-{{{{ inventory_hostname }}}}.json",
                        "mode": "0600",
                    },
                },
            ],
        }
    ]
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-vvv", "-i", str(tmp_path / "inventory.yml"),
         str(tmp_path / "play.yml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "S3cret" not in proc.stdout + proc.stderr
    out = {
        n: json.loads(Path(f"{results}-{n}.json").read_text()) for n in ("good", "typed", "nets")
    }
    assert not out["good"].get("failed") and out["good"]["family"] == "exchange", out["good"]
    # the start of its record, for preflight.yml to copy; its password not in it
    record = out["good"]["record"]
    assert record["family"] == "exchange" and record["management_endpoint"], record
    assert record["exchange_request"]["relay"]["winrm_username"] == "admin", record
    assert out["typed"]["failed"] and "validation of arguments failed" in out["typed"]["msg"]
    assert "relay_allow_removals" in out["typed"]["msg"], out["typed"]
    assert out["nets"]["failed"], out["nets"]
    assert "10.1.0.0/16 or so is not valid (CIDRs" in out["nets"]["msg"], out["nets"]
    assert all("S3cret" not in json.dumps(r) for r in out.values())


@pytest.mark.parametrize(
    ("start", "end", "now", "open_"),
    [
        ("", "", "03:00", True),  # no window: always
        ("22:00", "02:00", "23:59", True),  # across midnight
        ("22:00", "02:00", "01:59", True),
        ("22:00", "02:00", "02:00", False),  # the end is outside
        ("22:00", "02:00", "12:00", False),
        ("08:00", "09:00", "08:00", True),
        ("08:00", "09:00", "09:00", False),
        ("8:00", "09:00", "08:30", False),  # malformed (refused by value_problems): never
    ],
)
def test_the_change_window(start: str, end: str, now: str, open_: bool) -> None:
    assert ACTION.window_open(start, end, now) is open_


def test_probe_targets_every_listener_of_the_target_host_or_the_endpoint_alone() -> None:
    assert ACTION.probe_targets("192.0.2.25:25", [25, 587, 465]) == [
        "192.0.2.25:25", "192.0.2.25:587", "192.0.2.25:465"
    ]  # fmt: skip
    assert ACTION.probe_targets("[2001:db8::25]:25", [25, 587]) == [
        "[2001:db8::25]:25", "[2001:db8::25]:587"
    ]  # fmt: skip
    # a lab or port-forward endpoint on another port is probed alone
    assert ACTION.probe_targets("127.0.34.1:2525", [25, 587]) == ["127.0.34.1:2525"]
    assert ACTION.probe_targets("mx.example.com", [25]) == ["mx.example.com"]


def test_probe_domain_the_configured_one_else_the_first_inbound_domain() -> None:
    assert ACTION.probe_domain("corp.example", ["example.com"]) == "corp.example"
    assert ACTION.probe_domain("", [".sub.example.com", "example.com"]) == "example.com"
    assert ACTION.probe_domain(None, [".only-subdomains.example"]) == ""


RECORD_VALUES: dict[str, Any] = {
    **GOOD,
    "relay_smtp_target": "192.0.2.25:25",
    "relay_probe_ports": [25, 587],
    "relay_probe_local_domain": "",
    "relay_exchange_channel": "winrm",
    "relay_exchange_smb_port": "445",
    "relay_exchange_management_host": "",
    "relay_exchange_management_port": "5986",
    "relay_exchange_management_username": "",
    "relay_management_host": "192.0.2.25",
    "relay_management_port": 5986,
    "ansible_connection": "ssh",
    "relay_winrm_host": "192.0.2.25",
    "relay_winrm_port": "5986",
    "relay_winrm_scheme": "https",
    "relay_winrm_transport": "ntlm",
    "relay_winrm_username": "admin",
    "relay_winrm_validate_certs": "True",
    "relay_winrm_ca_path": "",
    "relay_winrm_operation_timeout": "20",
    "relay_winrm_read_timeout": "",
    "relay_winrm_command_timeout": 300,
    "relay_exchange_reject_unknown_recipients": True,
    "relay_exchange_connector_bindings": ["0.0.0.0:25"],
    "relay_exchange_connector_name": "Relay {computer_name}",
    "relay_exchange_backup_dir": "/srv/reports/backups",
    "relay_exchange_patch_packages": [],
    "relay_exchange_patch_reboot": "false",
    "relay_patch_policy": "latest",
    "relay_verify_timeout": 30,
    "relay_verify_mailbox": "postmaster",
    "relay_verify_mail_from": "relayguard-verify@example.com",
    "relay_probe_external_domain": "example.net",
}


def test_the_start_of_an_exchange_hosts_record() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 12, 5, 7, 30, tzinfo=UTC)
    record = ACTION.start_record(RECORD_VALUES, "exchange", "ex1", now, "20261205T072900Z")
    assert record["family"] == "exchange" and record["target"] == "192.0.2.25:25"
    assert record["started"] == "2026-12-05T07:30:00Z" and record["window_open"] is True
    # what the plan reads besides (relay_plan): the mode, the override, the window
    assert record["mode"] == "enforce" and record["force"] is False
    assert record["window"] == ["", ""]
    late = {**RECORD_VALUES, "relay_change_window_start": "22:00",
            "relay_change_window_end": "02:00", "relay_force": "yes"}  # fmt: skip
    shut = ACTION.start_record(late, "exchange", "ex1", now, None)
    assert shut["window_open"] is False and shut["force"] is True
    assert shut["window"] == ["22:00", "02:00"]
    assert record["probe_targets"] == ["192.0.2.25:25", "192.0.2.25:587"]
    assert record["probe_domain"] == "example.com"
    assert record["management_endpoint"] == "192.0.2.25:5986"
    request = record["exchange_request"]
    relay = request["relay"]
    # typed as exchange_batch's options want them; never the password
    assert relay["winrm_port"] == 5986 and relay["validate_certs"] is True
    assert relay["ca_path"] is None and relay["winrm_read_timeout"] is None
    assert relay["winrm_command_timeout"] == 300.0 and relay["smtp_port"] == 25
    assert relay["relay_authenticated"] is False  # keep reads as false on Exchange
    assert relay["backup_file"] == "/srv/reports/backups/20261205T072900Z/ex1.json"
    assert request["patch_reboot"] is False and "winrm_password" not in relay
    # without the run's stamp (no start play), the host's own start time names the directory
    alone = ACTION.start_record(RECORD_VALUES, "exchange", "ex1", now, None)
    assert alone["exchange_request"]["relay"]["backup_file"].endswith("/20261205T073000Z/ex1.json")


def test_management_endpoints_by_channel() -> None:
    smb = {**RECORD_VALUES, "relay_exchange_channel": "smb", "relay_exchange_smb_port": "139"}
    assert ACTION.management_endpoint(smb, "exchange") == "192.0.2.25:139"
    via = {
        **RECORD_VALUES,
        "relay_exchange_channel": "via-management-host",
        "relay_exchange_management_host": "2001:db8::10",
    }
    assert ACTION.management_endpoint(via, "exchange") == "[2001:db8::10]:5986"
    ssh = {**RECORD_VALUES, "relay_management_port": 22}
    assert ACTION.management_endpoint(ssh, "postfix") == "192.0.2.25:22"
    local = {**ssh, "ansible_connection": "local"}
    assert ACTION.management_endpoint(local, "postfix") is None
    # an Exchange host is always reached over its management channel
    assert ACTION.management_endpoint({**local, "relay_management_port": 5986}, "exchange")
    record = ACTION.start_record(ssh, "postfix", "mx1", __import__("datetime").datetime.now(), None)
    assert record["exchange_request"] is None


def test_each_family_reads_its_own_options_and_the_common_ones() -> None:
    assert ACTION.applies("relay_winrm_port", "exchange")
    assert not ACTION.applies("relay_winrm_port", "postfix")
    assert not ACTION.applies("relay_postfix_config_dir", "exchange")
    assert ACTION.applies("relay_exim_config", "exim") and not ACTION.applies(
        "relay_exim_config", "sendmail"
    )
    assert ACTION.applies("relay_probe_ports", "sendmail") and ACTION.applies(
        "relay_mode", "exchange"
    )
    # a host whose family is not known yet is checked on everything (its message names it)
    assert ACTION.applies("relay_sendmail_m4", "unknown")


def test_the_mail_flow_sessions_after_a_change() -> None:
    values = {
        **RECORD_VALUES,
        "relay_inbound_domains": ["example.com", ".sub.example.com"],
        "relay_partner_domains": ["partner.example"],
        "relay_verify_allowed_source_address": "10.1.2.3",
        "relay_probe_source_address": "",
        "relay_smtp_auth_user": "relay-user",
        "relay_authenticated": "keep",
    }
    sessions = ACTION.verify_sessions(values, "postfix", "mx1")
    by_name = {s["name"]: s for s in sessions}
    allowed = by_name["from the allowed address 10.1.2.3"]
    assert allowed["source_address"] == "10.1.2.3" and allowed["target"] == "192.0.2.25:25"
    assert allowed["checks"] == [
        {
            "name": "allowed network 10.1.2.3 relays",
            "mail_from": "relayguard-verify@example.com",
            "rcpt_to": "relaytest@example.net",
        }
    ]
    accepted = by_name["from the untrusted vantage point "]["checks"]
    assert [c["rcpt_to"] for c in accepted] == [
        "postmaster@example.com",
        "postmaster@partner.example",
    ]
    auth = by_name["authenticated relay"]
    assert auth["auth_username"] == "relay-user" and auth["checks"][0]["authenticate"] is True
    assert all("password" not in json.dumps(s) for s in sessions)
    # Exchange reads keep as false; without an allowed address there is no such session
    exchange = ACTION.verify_sessions(
        {**values, "relay_verify_allowed_source_address": ""}, "exchange", "ex1"
    )
    assert [s["name"] for s in exchange] == ["from the untrusted vantage point "]
