#!/usr/bin/python
"""Ansible module relay_report: write the run's relayguard.report/1 document (controller side).

A page of arguments over `relayguard.report` (run_metadata, build_report, write_report); the
playbook collects each host's facts, this module only hands them to the library.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: relay_report
short_description: Write the relayguard.report/1 document of a playbook run
version_added: "0.1.0"
description:
  - Builds the C(relayguard.report/1) document from the per-host records the playbook
    collected (platform, build, patch, before and after probe results, changes, status) and
    writes C(<reports_dir>/<run_id>/) with report.json, report.xml (JUnit), report.md and
    report.html, then points C(<reports_dir>/latest) at it (docs/report.md).
  - Secrets are redacted and the document is validated against its schema before anything is
    written; an invalid document fails the task naming each problem by JSON path.
  - "Runs on the controller: use C(delegate_to: localhost) and C(run_once: true)."
  - Writing the report is not a change to any managed host; the module returns
    C(changed=false) and writes in check mode too (the report then says C(check_mode)).
options:
  reports_dir:
    description: Directory that holds one sub-directory per run and the C(latest) link.
    type: path
    required: true
  mode:
    description: The playbook's mode.
    type: str
    choices: [enforce, audit]
    default: enforce
  check_mode:
    description: Whether the run was a C(--check) run (changes planned, none applied).
    type: bool
    default: false
  run_id:
    description:
      - The run's id (C(YYYYMMDDTHHMMSSZ-suffix)); also the directory name. Generated from
        O(started) when omitted.
    type: str
  started:
    description:
      - When the run started, RFC 3339 (for example C(2025-03-01T12:00:00Z) or
        C(2025-03-01T12:00:00+00:00)).
    type: str
    required: true
  inventory:
    description: The inventory sources of the run.
    type: list
    elements: str
    default: []
  probe_options:
    description: The options that shaped the probe (the probe/1 document's C(options)).
    type: dict
    default: {}
  hosts:
    description:
      - One record per host, with the fields of a report host (C(host), C(platform),
        C(build), C(patch), C(before), C(after), C(changes), C(rules) (the platform's rule
        table on the configuration as read), C(status), C(timings), C(error)); missing optional
        parts are filled in.
      - Exactly one of O(hosts) and O(hosts_json) is required.
    type: list
    elements: dict
  hosts_json:
    description:
      - The same records as O(hosts), as one JSON text (a JSON list of objects), for
        example C({{ records | to_json }}).
      - For large runs. Ansible finishes a templated list of records value by value (about
        3 s of CPU for the 2.5 MB of a 100-host run, before the module starts) and a
        templated string at once (about 1 s); the records and the report are the same
        either way (docs/performance.md).
      - Text that is not JSON, or JSON that is not a list of objects, fails the task naming
        the problem; nothing is written.
    type: str
    version_added: "0.2.0"
  waivers:
    description:
      - A YAML waiver file on the controller (the role's C(relay_waivers)); a list of
        C({host, finding, justification, approver, expires}) entries (docs/report.md).
      - A failing finding a valid waiver names is reported C(waived) with its justification
        and no longer fails its host. An expired or malformed entry is a warning naming it,
        recorded in the report, and its finding counts again. A finding the probe observed
        from outside (an open relay) is waived only by an entry naming that exact finding.
      - Omitted, no waiver applies.
    type: path
  write:
    description:
      - Write the report. V(false) builds and validates the document and returns its
        RV(summary), RV(waived_hosts) and RV(waiver_errors) without writing anything, so that
        a batch that does not end the run learns which of its hosts pass by their waivers.
    type: bool
    default: true
author:
  - relayguard developers (@relayguard)
requirements:
  - The relayguard Python package on the controller (see meta/ee-requirements.txt).
attributes:
  check_mode:
    support: partial
    description: Writes the report in check mode too.
    details:
      - The report is written on the controller in check mode too (it then says
        C(check_mode)); nothing on a managed host is changed and C(changed) is always false.
  diff_mode:
    support: none
    description: No diff is returned.
  platform:
    support: full
    platforms: posix
    description: Runs on the controller (C(delegate_to) C(localhost), C(run_once)).
"""

EXAMPLES = r"""
- name: Write the report of this run
  relayguard.mail.relay_report:
    reports_dir: "{{ playbook_dir }}/reports"
    mode: enforce
    started: "{{ hostvars['localhost'].relay_run_started }}"
    run_id: "{{ hostvars['localhost'].relay_run_id }}"
    hosts: "{{ hostvars['localhost'].relay_report_hosts }}"
  delegate_to: localhost
  run_once: true
  register: relay_report_written

- name: The same, the records handed over as one JSON text (cheaper for Ansible to template)
  relayguard.mail.relay_report:
    reports_dir: "{{ playbook_dir }}/reports"
    started: "{{ hostvars['localhost'].relay_run_started }}"
    hosts_json: >-
      {{ hostvars['localhost'].relay_report_hosts | to_json }}
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
run_dir:
  description: The run directory written.
  returned: success and O(write)
  type: str
  sample: /srv/relayguard/reports/20250301T120000Z-3f9a0c
report:
  description: Path of report.json.
  returned: success and O(write)
  type: str
  sample: /srv/relayguard/reports/20250301T120000Z-3f9a0c/report.json
waived_hosts:
  description: The hosts that pass only because valid waivers cover every failing finding.
  returned: success
  type: list
  elements: str
  sample: ["mx2.corp.example"]
waiver_errors:
  description: One line per expired or malformed waiver entry, naming it.
  returned: success
  type: list
  elements: str
  sample: ["waiver #2 (mx1.corp.example/relay-closed): expired on 2026-01-31"]
summary:
  description: The document's summary (host count, counts by status and platform, exit status).
  returned: success
  type: dict
  sample: {"hosts": 8, "by_status": {"remediated": 6, "compliant": 2}, "exit_status": 0}
"""

import json
import re
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from relayguard.report import ReportInvalid, ReportWriteError, build_report, run_metadata
    from relayguard.report import write_report as write_report_files
    from relayguard.report.compliance import waived_hosts
    from relayguard.report.waivers import WaiverFileError, load_waivers

    IMPORT_ERROR = None
except ImportError:  # reported by main() once the module can fail properly
    IMPORT_ERROR = traceback.format_exc()

RELAYGUARD = "relayguard (the relayguard Python engine, see meta/ee-requirements.txt)"
# datetime.UTC is Python 3.11+; ansible-core 2.17 runs controller modules on 3.10.
UTC = timezone.utc  # noqa: UP017

# Static: DOCUMENTATION describes exactly this (validate-modules and
# tests/playbook/test_module_docs.py compare the two).
ARGUMENT_SPEC: dict[str, Any] = {
    "reports_dir": {"type": "path", "required": True},
    "mode": {"type": "str", "choices": ["enforce", "audit"], "default": "enforce"},
    "check_mode": {"type": "bool", "default": False},
    "run_id": {"type": "str"},
    "started": {"type": "str", "required": True},
    "inventory": {"type": "list", "elements": "str", "default": []},
    "probe_options": {"type": "dict", "default": {}},
    "hosts": {"type": "list", "elements": "dict"},
    "hosts_json": {"type": "str"},
    "waivers": {"type": "path"},
    "write": {"type": "bool", "default": True},
}


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 timestamp. Before Python 3.11 fromisoformat refuses the "Z" suffix the
    playbook writes (now(utc=true).strftime('...Z')), so it is given as +00:00."""
    return datetime.fromisoformat(re.sub(r"[Zz]\Z", "+00:00", text))


def host_records(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The host records, from O(hosts) or parsed from O(hosts_json); ValueError names what
    is wrong with the JSON text."""
    if params["hosts_json"] is None:
        records: list[dict[str, Any]] = params["hosts"]
        return records
    try:
        parsed = json.loads(params["hosts_json"])
    except ValueError as exc:
        raise ValueError(f"hosts_json: not JSON text: {exc}") from exc
    if not isinstance(parsed, list):
        raise ValueError(
            f"hosts_json: a JSON list of host records is needed, not {type(parsed).__name__}"
        )
    for index, record in enumerate(parsed):
        if not isinstance(record, dict):
            raise ValueError(
                f"hosts_json[{index}]: a host record is a JSON object, not {type(record).__name__}"
            )
    return parsed


def invocation(params: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The arguments Ansible echoes back (`invocation`, shown at -vvv), each host record
    named by its host: the records are the report's bulk (~25 KB a host, 2.5 MB for 100),
    and echoing them doubled what a run sends back to the controller (docs/performance.md)."""
    named = [{"host": record.get("host")} for record in records]
    args = {**params, "hosts": named if params["hosts"] is not None else None}
    if params["hosts_json"] is not None:
        args["hosts_json"] = json.dumps(named)
    return {"module_args": args}


def main(module_class: Callable[..., Any] = AnsibleModule) -> None:
    """The module; its action plugin runs it in the controller's worker with
    plugin_utils/controller_module.ControllerModule as `module_class`."""
    module = module_class(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[("hosts", "hosts_json")],
        required_one_of=[("hosts", "hosts_json")],
        supports_check_mode=True,
    )
    if IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib(RELAYGUARD), exception=IMPORT_ERROR)
    p = module.params
    try:
        records = host_records(p)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    try:
        started = parse_timestamp(p["started"])
    except ValueError:
        module.fail_json(msg=f"started: {p['started']!r} is not an RFC 3339 timestamp")
    waivers, waiver_errors = [], None
    if p["waivers"]:
        try:
            waivers, waiver_errors = load_waivers(p["waivers"], datetime.now(UTC).date())
        except WaiverFileError as exc:
            module.fail_json(msg=str(exc))
        for error in waiver_errors if p["write"] else ():  # once a run, with the report
            module.warn(f"{p['waivers']}: {error}")
    try:
        run = run_metadata(
            p["mode"],
            started=started,
            finished=datetime.now(UTC),
            run_id=p["run_id"],
            inventory=p["inventory"],
            probe_options=p["probe_options"],
            check_mode=p["check_mode"],
        )
        document = build_report(run, records, waivers, waiver_errors)
        run_dir = write_report_files(document, p["reports_dir"]) if p["write"] else None
    except ReportInvalid as exc:
        module.fail_json(msg=f"invalid report: {'; '.join(exc.problems) or exc}")
    except ReportWriteError as exc:
        module.fail_json(msg=str(exc))
    written = (
        {} if run_dir is None else {"run_dir": str(run_dir), "report": str(run_dir / "report.json")}
    )
    module.exit_json(
        changed=False,
        **written,
        summary=document["summary"],
        waived_hosts=waived_hosts(document["hosts"]),
        waiver_errors=list(waiver_errors or []),
        invocation=invocation(p, records),
    )


if __name__ == "__main__":
    main()
