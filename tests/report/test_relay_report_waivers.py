"""The relay_report module with a waiver file (the role's relay_waivers): waived hosts are
returned so the play does not fail them, a bad entry is a warning naming it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from report.samples import fleet_hosts

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "plugins" / "modules" / "relay_report.py"
HOST = "pf-open.corp.example"
OBSERVED = (
    "relay-closed",
    "delivery-confirmation",
    "rfc2505-refused-in-dialogue",
    "rfc2505-routing-forms-stripped",
)


def run_module(tmp_path: Path, **args: Any) -> dict[str, Any]:
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(MODULE), str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def audit_hosts() -> list[dict[str, Any]]:
    hosts = [h for h in fleet_hosts() if h["host"] in (HOST, "pf-ok.corp.example")]
    for host in hosts:
        if host["host"] == HOST:
            host.update(after=None, changes=[], status="audit_failed")
    return hosts


def waiver_file(tmp_path: Path, expires: str, first_expires: str | None = None) -> Path:
    entries = [
        {
            "host": HOST,
            "finding": fid,
            "justification": "scanner relay until cut-over",
            "approver": "ciso@corp.example",
            "expires": expires,
        }
        for fid in OBSERVED
    ]
    if first_expires:
        entries[0]["expires"] = first_expires
    path = tmp_path / "waivers.json"  # JSON is YAML
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


def test_a_future_waiver_makes_the_host_pass_and_is_in_the_report(tmp_path: Path):
    result = run_module(
        tmp_path,
        reports_dir=str(tmp_path / "reports"),
        mode="audit",
        started="2025-03-01T11:00:00Z",
        hosts=audit_hosts(),
        waivers=str(waiver_file(tmp_path, "2999-12-31")),
    )
    assert result.get("failed") is not True, result
    assert result["waived_hosts"] == [HOST]
    assert result["waiver_errors"] == []
    assert result["summary"]["exit_status"] == 0
    doc = json.loads(Path(result["report"]).read_text())
    host = next(h for h in doc["hosts"] if h["host"] == HOST)
    assert {f["id"] for f in host["findings"] if f["result"] == "waived"} == set(OBSERVED)


def test_an_expired_waiver_warns_naming_it_and_the_host_fails(tmp_path: Path):
    result = run_module(
        tmp_path,
        reports_dir=str(tmp_path / "reports"),
        mode="audit",
        started="2025-03-01T11:00:00Z",
        hosts=audit_hosts(),
        waivers=str(waiver_file(tmp_path, "2999-12-31", first_expires="2001-01-01")),
    )
    error = f"waiver #1 ({HOST}/relay-closed): expired on 2001-01-01"
    assert result["waiver_errors"] == [error]
    # ansible-core 2.19 returns each warning as an event object, earlier ones as text
    assert error in json.dumps(result.get("warnings", []))
    assert result["waived_hosts"] == []
    assert result["summary"]["exit_status"] == 2


def test_an_unreadable_waiver_file_fails_the_task_naming_it(tmp_path: Path):
    result = run_module(
        tmp_path,
        reports_dir=str(tmp_path / "reports"),
        mode="audit",
        started="2025-03-01T11:00:00Z",
        hosts=audit_hosts(),
        waivers=str(tmp_path / "missing.yml"),
    )
    assert result["failed"] is True
    assert "missing.yml" in result["msg"]
    assert not (tmp_path / "reports").exists()  # nothing written
