"""Filter relay_plan (internal): secure-relay.yml's plan for one host — does it need a change,
may it be changed now, and if not, how does it end (compliant, audit_failed, failed) and why.

The decision used to be a set_fact of Jinja expressions (roles/relay/tasks/plan.yml). Ansible
compiles a template each time a worker renders it, and a task variable each time it is
referenced, so those expressions cost every host some thirty compilations per run
(docs/performance.md); here it is one pure function, tested on its own
(tests/ansible/test_relay_plan.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ansible.module_utils.parsing.convert_bool import boolean

DOCUMENTATION = r"""
name: relay_plan
author: relayguard
version_added: 1.0.0
short_description: The plan of secure-relay.yml for one host (internal)
description:
  - From a host's record after the baseline probe and the detection, whether it needs a change,
    whether this run applies it, and otherwise the status it ends with and why.
  - A host without this run's baseline probe or detection (a C(--tags) that leaves a phase
    out) ends C(failed), the message naming the missing phase and the tags to run.
options:
  _input:
    description:
      - The host's record, a dict with C(host), C(before) (its worst port's probe entry, or
        null), C(detected), C(changes) (each with C(control)), C(patch) (C(compliant),
        C(installed), C(required)), C(mode) (enforce or audit), C(window_open), C(force),
        C(window) (start and end, UTC), C(status), C(error) and C(run_tags).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Decide
  ansible.builtin.set_fact:
    relay_plan_result: "{{ record | relayguard.mail.relay_plan }}"
  vars:
    record:
      host: mx1
      before: {verdict: open, reason: "3/32 relay tests relayed"}
      detected: true
      changes: [{control: postfix-relay-restrictions}]
      patch: {}
      mode: audit
      window_open: true
      force: false
      window: ["", ""]
      status: ""
      error: ""
      run_tags: [all]
"""

RETURN = r"""
_value:
  description:
    - C(needs_change), C(apply) (this run changes the host now), C(status) (unchanged when
      applied, else compliant, audit_failed or failed) and C(error) (why it ends so; empty
      when compliant).
  type: dict
"""


def _missing(record: Mapping[str, Any]) -> list[str]:
    """This run's phases the plan needs and did not get."""
    missing = ["baseline probe (tag probe)"] if record.get("before") is None else []
    if not boolean(record.get("detected") or False, strict=False):
        missing.append("detection (tag detect)")
    return missing


def _missing_message(record: Mapping[str, Any], missing: Sequence[str]) -> str:
    tags: list[str] = []
    for tag in ["probe", "detect", *(record.get("run_tags") or [])]:
        if tag not in ("all", "always") and tag not in tags:
            tags.append(str(tag))
    return (
        f"{record.get('host')}: the plan (and so remediate and verify) needs this run's "
        f"{' and '.join(missing)}: run with --tags {','.join(tags)} or without --tags"
    )


def _finding(record: Mapping[str, Any], before: Mapping[str, Any]) -> str:
    """What is wrong with the host: its probe verdict, its planned changes, its patch."""
    found = []
    if before.get("verdict", "") != "closed":
        verdict, reason = before.get("verdict", "unknown"), before.get("reason", "")
        found.append(f"probe verdict {verdict}: {reason}")
    changes = record.get("changes") or []
    if changes:
        controls = ", ".join(str(c.get("control")) for c in changes)
        found.append(f"{len(changes)} planned change(s): {controls}")
    patch = record.get("patch") or {}
    if patch.get("compliant") is False:
        installed, required = patch.get("installed", "?"), patch.get("required", "?")
        found.append(f"patch missing: {installed} below {required}")
    return "; ".join(found)


def relay_plan(record: Mapping[str, Any]) -> dict[str, Any]:
    """The plan for one host (see DOCUMENTATION)."""
    before = record.get("before") or {}
    missing = _missing(record)
    patch = record.get("patch") or {}
    needs_change = bool(record.get("changes")) or patch.get("compliant") is False
    enforce = record.get("mode") == "enforce"
    may_now = boolean(record.get("window_open") or False, strict=False) or boolean(
        record.get("force") or False, strict=False
    )
    apply = not missing and enforce and needs_change and may_now
    closed_before = before.get("verdict", "") == "closed"
    if missing:
        status, error = "failed", _missing_message(record, missing)
    elif apply:
        status, error = str(record.get("status") or ""), str(record.get("error") or "")
    elif closed_before and not needs_change:
        status, error = "compliant", ""
    else:
        detected = boolean(record.get("detected") or False, strict=False)
        audit = not enforce or needs_change or not detected
        status = "audit_failed" if audit else "failed"
        error = _finding(record, before)
        if enforce and needs_change:
            start, end = [*(record.get("window") or []), "", ""][:2]
            error = (
                f"outside the change window {start}-{end} UTC: nothing changed "
                f"(relay_force=true overrides); {error}"
            )
    return {"needs_change": needs_change, "apply": apply, "status": status, "error": error}


class FilterModule:
    """relayguard.mail.relay_plan."""

    def filters(self) -> dict[str, Any]:
        return {"relay_plan": relay_plan}
