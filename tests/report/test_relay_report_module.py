"""The relay_report module's result: the report, its summary, and an `invocation` that names
each host record instead of echoing it (the records are the bulk of a run's arguments)."""

from __future__ import annotations

import json
from pathlib import Path

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
