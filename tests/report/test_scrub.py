"""Secrets never reach a report: redacted on the way in, refused when found later."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from relayguard.report import (
    ReportInvalid,
    build_report,
    find_secrets,
    render_all,
    scrub,
    validate_report,
)
from relayguard.report.scrub import REDACTED, is_secret_key
from report.samples import fleet_hosts, fleet_metadata

PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----"
)
VAULT = "$ANSIBLE_VAULT;1.1;AES256\n6231363733346534\n3966356635386362\n"
SECRETS = [
    "hunter2",
    "s3cr3t-token",
    "b3BlbnNzaC1rZXktdjEAAAAA",
    "6231363733346534",
    "dXNlcgBwYXNzd29yZA==",
    "cGFzc3dvcmQ=",
    "wr0ngh0rse",
]


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("ansible_become_pass", True),
        ("vaultPassword", True),
        ("api_key", True),
        ("private_key", True),
        ("ssh-key", True),
        ("Authorization", True),
        ("winrm_credentials", True),
        ("token", True),
        ("key", False),
        ("registry_key", False),
        ("bypass", False),
        ("mail_from", False),
        ("passed", False),
        ("target", False),
    ],
)
def test_secret_key_names(key: str, secret: bool):
    assert is_secret_key(key) is secret


def _leaky_report() -> dict[str, Any]:
    meta = fleet_metadata()
    meta["probe_options"].update(
        {
            "sasl_password": "hunter2",
            "winrm": {"user": "ops", "token": "s3cr3t-token"},
            "identity": PEM,
            "inventory_url": "https://ops:wr0ngh0rse@cmdb.corp.example/api",
        }
    )
    hosts = fleet_hosts()
    hosts[0]["changes"].append(
        {
            "control": "vaulted-credential",
            "target": "group_vars/all/vault.yml",
            "before": VAULT,
            "after": VAULT,
            "applied": False,
        }
    )
    hosts[0]["after"]["transcript"] += [
        ["C", "AUTH PLAIN dXNlcgBwYXNzd29yZA=="],
        ["S", "235 2.7.0 Authentication successful"],
        ["C", "AUTH LOGIN"],
        ["S", "334 VXNlcm5hbWU6"],
        ["C", "dXNlcg=="],
        ["S", "334 UGFzc3dvcmQ6"],
        ["C", "cGFzc3dvcmQ="],
        ["S", "235 2.7.0 ok"],
        ["C", "MAIL FROM:<antispam@example.com>"],
    ]
    return build_report(meta, hosts)


def test_builder_redacts_and_nothing_leaks_into_any_format():
    doc = _leaky_report()
    outputs = render_all(doc)
    for name, text in outputs.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into {name}"
    assert doc["run"]["probe_options"]["sasl_password"] == REDACTED
    assert doc["run"]["probe_options"]["winrm"] == {"user": "ops", "token": REDACTED}
    assert "https://ops:[redacted]@cmdb.corp.example/api" in json.dumps(doc)
    transcript = doc["hosts"][0]["after"]["transcript"]
    assert ["C", "AUTH PLAIN [redacted]"] in transcript
    assert transcript[-7:-1] == [
        ["C", "AUTH LOGIN"],
        ["S", "334 VXNlcm5hbWU6"],
        ["C", REDACTED],
        ["S", "334 UGFzc3dvcmQ6"],
        ["C", REDACTED],
        ["S", "235 2.7.0 ok"],
    ]
    assert transcript[-1] == ["C", "MAIL FROM:<antispam@example.com>"]  # after AUTH: kept
    assert find_secrets(doc) == []


def test_scrub_is_idempotent_and_keeps_the_rest(fleet_doc: dict[str, Any]):
    assert scrub(fleet_doc) == fleet_doc
    assert scrub(scrub(_leaky_report())) == _leaky_report()


def test_a_report_carrying_secrets_is_refused(fleet_doc: dict[str, Any]):
    doc = copy.deepcopy(fleet_doc)
    doc["hosts"][2]["changes"] = [
        {
            "control": "c",
            "target": "t",
            "before": {"password": "hunter2"},
            "after": None,
            "applied": True,
        }
    ]
    transcript = doc["hosts"][5]["before"]["transcript"]
    transcript.append(["C", "AUTH PLAIN dXNlcgBwYXNzd29yZA=="])
    with pytest.raises(ReportInvalid) as caught:
        validate_report(doc)
    assert caught.value.problems == [
        "$.hosts[2].changes[0].before.password: secret material in a report (refused)",
        f"$.hosts[5].before.transcript[{len(transcript) - 1}][1]: secret material in a report "
        "(refused)",
    ]


def test_find_secrets_names_exactly_where_scrub_changes_a_document(fleet_doc: dict[str, Any]):
    """find_secrets walks the document without copying it; it must name the same places, in
    the same order, as comparing the document with its scrubbed copy."""
    from relayguard.report.scrub import _diff_paths

    doc = copy.deepcopy(fleet_doc)
    doc["run"]["probe_options"].update(
        {
            "sasl_password": "hunter2",
            "winrm": {"user": "ops", "api_key": {"nested": ["s3cr3t-token"]}},
            "vault_pass": None,  # an empty secret is no secret
            "token": "",
            "session_key": REDACTED,
            "identity": PEM,
            "url": "https://ops:wr0ngh0rse@cmdb.corp.example/api",
        }
    )
    doc["hosts"][1]["changes"].append(
        {"control": "c", "target": "t", "before": [VAULT, "plain"], "after": 0, "applied": False}
    )
    transcript = doc["hosts"][0]["before"]["transcript"]
    transcript += [["C", "AUTH LOGIN"], ["S", "334 VXNlcm5hbWU6"], ["C", "dXNlcg=="], ["*", PEM]]
    found = find_secrets(doc)
    assert found == list(_diff_paths(doc, scrub(doc), "$"))
    assert len(found) == 7
    assert find_secrets(scrub(doc)) == []
