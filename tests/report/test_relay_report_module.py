"""The relay_report module's result: the report, its summary, and an `invocation` that names
each host record instead of echoing it (the records are the bulk of a run's arguments); the
records given as one JSON text (hosts_json) make the same report, bad JSON fails naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from report.samples import fleet_hosts
from report.test_relay_report_waivers import run_module


def test_the_result_names_the_hosts_and_does_not_echo_their_records(tmp_path: Path):
    hosts = fleet_hosts()
    result = run_module(
        tmp_path,
        reports_dir=str(tmp_path / "reports"),
        mode="enforce",
        started="2025-03-01T11:00:00Z",
        probe_options={"port": 25},
        hosts=hosts,
    )
    assert result.get("failed") is not True, result
    args = result["invocation"]["module_args"]
    assert args["hosts"] == [{"host": h["host"]} for h in hosts]
    assert args["reports_dir"] == str(tmp_path / "reports")
    assert args["probe_options"] == {"port": 25}
    assert args["write"] is True
    # the records went into the report, not back into the result
    records = len(json.dumps(hosts))
    assert len(json.dumps(result)) < records / 10
    doc = json.loads(Path(result["report"]).read_text(encoding="utf-8"))
    assert [h["host"] for h in doc["hosts"]] == [h["host"] for h in hosts]
    assert doc["hosts"][0]["before"] == json.loads(json.dumps(hosts[0]["before"]))


def test_records_as_one_json_text_make_the_same_report(tmp_path: Path):
    hosts = fleet_hosts()
    common = {"mode": "enforce", "started": "2025-03-01T11:00:00Z", "probe_options": {"port": 25}}
    as_list = run_module(tmp_path, reports_dir=str(tmp_path / "a"), hosts=hosts, **common)
    as_json = run_module(
        tmp_path, reports_dir=str(tmp_path / "b"), hosts_json=json.dumps(hosts), **common
    )
    assert as_json.get("failed") is not True, as_json
    assert as_json["summary"] == as_list["summary"]
    first, second = (
        json.loads(Path(r["report"]).read_text(encoding="utf-8")) for r in (as_list, as_json)
    )
    assert second["hosts"] == first["hosts"]
    named = [{"host": h["host"]} for h in hosts]
    assert json.loads(as_json["invocation"]["module_args"]["hosts_json"]) == named
    assert as_json["invocation"]["module_args"]["hosts"] is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[{'host': 'mx1'}]", "hosts_json: not JSON text"),
        ('{"host": "mx1"}', "hosts_json: a JSON list of host records is needed, not dict"),
        ('[{"host": "mx1"}, "mx2"]', "hosts_json[1]: a host record is a JSON object, not str"),
    ],
)
def test_bad_json_records_fail_naming_the_problem(tmp_path: Path, text: str, problem: str):
    result = run_module(
        tmp_path, reports_dir=str(tmp_path / "r"), started="2025-03-01T11:00:00Z", hosts_json=text
    )
    assert result["failed"] is True
    assert result["msg"].startswith(problem), result["msg"]
    assert not (tmp_path / "r").exists()  # nothing written


def test_records_come_one_way_only(tmp_path: Path):
    both = run_module(
        tmp_path,
        reports_dir=str(tmp_path / "r"),
        started="2025-03-01T11:00:00Z",
        hosts=[],
        hosts_json="[]",
    )
    assert both["failed"] is True and "mutually exclusive" in both["msg"]
    neither = run_module(tmp_path, reports_dir=str(tmp_path / "r"), started="2025-03-01T11:00:00Z")
    assert neither["failed"] is True and "one of the following is required" in neither["msg"]
    assert not (tmp_path / "r").exists()
