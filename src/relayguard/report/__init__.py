"""Reports room: one relayguard.report/1 document per run, and every format made from it.

Public API (docs/report.md):
- `run_metadata(mode, started=..., finished=..., ...)`: the run object, versions and user filled in
- `build_report(metadata, hosts)`: the document (scrubbed, summarised, validated)
- `report_from_probe(probe_doc, metadata)`: a mode "probe" report of a relayguard.probe/1 doc
- `write_report(doc, reports_dir) -> Path`: ``reports_dir/<run-id>/`` with all formats, `latest`
- `render(doc, fmt)`: json | junit | markdown | html as text; `validate_report(doc)`
- `exit_status(hosts)`: 0 compliant, 2 non-compliant, 3 inconclusive (docs/exit-status.md)
"""

from __future__ import annotations

from relayguard.report.compliance import exit_status, host_compliance
from relayguard.report.document import build_report
from relayguard.report.from_probe import report_from_probe
from relayguard.report.render import FORMATS, render, render_all
from relayguard.report.run import new_run_id, run_metadata, utc_timestamp
from relayguard.report.schema import ReportInvalid, validate_probe, validate_report
from relayguard.report.scrub import find_secrets, scrub
from relayguard.report.writer import ReportWriteError, write_report

__all__ = [
    "FORMATS",
    "ReportInvalid",
    "ReportWriteError",
    "build_report",
    "exit_status",
    "find_secrets",
    "host_compliance",
    "new_run_id",
    "render",
    "render_all",
    "report_from_probe",
    "run_metadata",
    "scrub",
    "utc_timestamp",
    "validate_probe",
    "validate_report",
    "write_report",
]
