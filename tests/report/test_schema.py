"""Built reports validate against report-1.json; broken ones are refused by JSON path."""

from __future__ import annotations

import copy
import json
from enum import StrEnum
from typing import Any

import pytest

from relayguard import vocabulary
from relayguard.report import ReportInvalid, build_report, validate_probe, validate_report
from relayguard.report.schema import load_schema
from relayguard.vocabulary import FindingResult, HostStatus, Outcome, Platform, RunMode, Verdict
from report.samples import fleet_hosts, fleet_metadata, probe_sample


def test_fleet_and_audit_reports_validate(fleet_doc: dict[str, Any], audit_doc: dict[str, Any]):
    validate_report(fleet_doc)
    validate_report(audit_doc)
    assert fleet_doc["schema"] == "relayguard.report/1"
    assert [h["status"] for h in fleet_doc["hosts"]] == [
        "remediated",
        "remediated",
        "compliant",
        "rolled_back",
        "remediated",
        "compliant",
        "failed",
        "unreachable",
    ]
    assert audit_doc["run"]["mode"] == "audit"


def test_report_survives_a_json_round_trip(fleet_doc: dict[str, Any]):
    validate_report(json.loads(json.dumps(fleet_doc)))


def test_probe_sample_validates_against_probe_schema():
    doc = probe_sample()
    validate_probe(doc)
    doc["hosts"][0]["tests"][0]["outcome"] = "maybe"
    with pytest.raises(ReportInvalid, match=r"\$\.hosts\[0\]\.tests\[0\]\.outcome"):
        validate_probe(doc)


def test_schema_enums_are_the_vocabulary():
    probe, report = load_schema("probe-1.json"), load_schema("report-1.json")
    host = probe["$defs"]["host"]["properties"]
    assert host["verdict"]["enum"] == [v.value for v in Verdict]
    assert probe["$defs"]["test"]["properties"]["outcome"]["enum"] == [o.value for o in Outcome]
    finding = probe["$defs"]["finding"]["properties"]["result"]["enum"]
    assert finding == [f.value for f in FindingResult]
    assert report["$defs"]["status"]["enum"] == [s.value for s in HostStatus]
    assert report["$defs"]["platform"]["enum"] == [p.value for p in Platform]
    assert report["$defs"]["run"]["properties"]["mode"]["enum"] == [m.value for m in RunMode]


def _string_enums(node: object) -> list[list[str]]:
    if isinstance(node, dict):
        found = [node["enum"]] if all(isinstance(v, str) for v in node.get("enum", [0])) else []
        return found + [e for value in node.values() for e in _string_enums(value)]
    if isinstance(node, list):
        return [e for value in node for e in _string_enums(value)]
    return []


def test_every_word_list_of_the_report_schema_is_a_vocabulary_enum():
    """A new enumeration in report-1.json needs its words in relayguard.vocabulary first."""
    words = [
        [member.value for member in enum]
        for enum in vars(vocabulary).values()
        if isinstance(enum, type) and issubclass(enum, StrEnum) and enum is not StrEnum
    ]
    enums = _string_enums(load_schema("report-1.json"))
    assert enums
    assert [e for e in enums if e not in words] == []


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda d: d["hosts"][3].update(status="broken"), r"\$\.hosts\[3\]\.status"),
        (lambda d: d["hosts"][0].pop("patch"), r"\$\.hosts\[0\]: 'patch' is a required"),
        (lambda d: d["run"].update(run_id="../../etc"), r"\$\.run\.run_id"),
        (lambda d: d["run"].update(started="yesterday"), r"\$\.run\.started"),
        (lambda d: d["hosts"][0]["before"].update(verdict="ajar"), r"\$\.hosts\[0\]\.before"),
        (lambda d: d["hosts"][1]["changes"][0].pop("applied"), r"changes\[0\]: 'applied'"),
        (lambda d: d["summary"].update(exit_status=0), r"\$\.summary\.exit_status: 0 disagrees"),
        (lambda d: d["hosts"][1].update(host=d["hosts"][0]["host"]), r"more than once"),
        (
            lambda d: d["run"]["probe_options"].update(smtp_password="hunter2"),
            r"\$\.run\.probe_options\.smtp_password: secret material",
        ),
    ],
)
def test_broken_reports_are_refused_by_path(fleet_doc: dict[str, Any], mutate: Any, path: str):
    doc = copy.deepcopy(fleet_doc)
    mutate(doc)
    with pytest.raises(ReportInvalid, match=path):
        validate_report(doc)


def test_builder_refuses_parts_that_do_not_fit():
    hosts = fleet_hosts()
    hosts[0]["platform"] = "exchange2000"
    with pytest.raises(ReportInvalid, match=r"\$\.hosts\[0\]\.platform"):
        build_report(fleet_metadata(), hosts)


def test_builder_fills_optional_parts_and_plain_json():
    doc = build_report(
        fleet_metadata("audit"),
        [{"host": "mx1", "platform": Platform.POSTFIX, "status": HostStatus.UNREACHABLE}],
    )
    (entry,) = doc["hosts"]
    assert entry["patch"] == {"required": None, "installed": None, "compliant": None}
    assert entry["changes"] == [] and entry["before"] is None and entry["error"] is None
    assert type(entry["platform"]) is str and type(entry["status"]) is str
    assert doc["summary"]["by_status"]["unreachable"] == 1
