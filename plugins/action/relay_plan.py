"""Action plugin relay_plan (internal): secure-relay.yml's plan for a batch — for each host,
does it need a change, may it be changed now, and if not, how does it end (compliant,
audit_failed, failed) and why.

One task for the batch (run_once): a task per host costs every host a forked worker, and the
decision used to be a set_fact per host of Jinja expressions that every worker compiled again
(docs/performance.md). It reads each host's record as the earlier steps left it — the
preflight's, reachability's, baseline probe's and Exchange detection's registered results, and
the facts a Postfix, Exim or Sendmail detection set — and returns each planned host's decision;
the relay role's `relay_status` and `relay_error` read it. The decision for one host
(`relay_plan`) and the host's status so far (`record_status`) are pure functions, tested on their
own (tests/ansible/test_relay_plan.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase


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
    """The plan for one host, from its record: `host`, `before` (its worst port's baseline
    verdict and reason, or None), `detected`, `changes` (each with `control`), `patch`
    (`compliant`, `installed`, `required`), `mode` (enforce or audit), `window_open`, `force`,
    `window` (start and end, UTC), `status`, `error` and `run_tags`. Returns `needs_change`,
    `apply` (this run changes the host now), `status` (unchanged when applied, else compliant,
    audit_failed or failed) and `error` (why it ends so; empty when compliant)."""
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


def _get(vars_: Any, key: str, default: Any = None) -> Any:
    """`vars_[key]`, or `default` when it is not there (a host's variables or a result)."""
    return vars_.get(key, default) if isinstance(vars_, Mapping) else default


# The batch's run_once results, registered alike on every host of the batch: read once, from the
# task's own variables (templating them through each host's hostvars costs every host the size of
# the batch)
SHARED = ("relay_reachability", "exchange_detect_batch", "relay_probe_before_batch")


def record_status(host_vars: Any, shared: Mapping[str, Any], name: str) -> str:
    """The host's status before the plan: as a step set it (`relay_status`), else as its record
    says (roles/relay/defaults/main.yml) — failed without a preflight record, unreachable by the
    reachability check, failed when Exchange detection failed, else open ('')."""
    status = _get(host_vars, "relay_status")
    if isinstance(status, str):
        return status
    if _get(_get(host_vars, "relay_preflight", {}), "record") is None:
        return "failed"
    reach = _get(_get(_get(shared, "relay_reachability", {}), "hosts", {}), name, {})
    if _get(reach, "problem"):
        return "unreachable"
    detected = _get(_get(_get(shared, "exchange_detect_batch", {}), "hosts", {}), name, {})
    return "failed" if _get(detected, "error") is not None else ""


def plan_input(
    host_vars: Any, shared: Mapping[str, Any], name: str, run_tags: Sequence[str]
) -> dict[str, Any]:
    """The host's record as relay_plan reads it: its preflight record (mode, change window,
    override), the batch's baseline probe and Exchange detection, and the facts a Postfix, Exim
    or Sendmail detection set (which rank first)."""
    record = _get(host_vars, "relay_preflight", {})["record"]
    exchange = _get(_get(_get(shared, "exchange_detect_batch", {}), "hosts", {}), name, {})
    detected = _get(exchange, "record")
    probe = _get(shared, "relay_probe_before_batch", {})
    worst = _get(_get(_get(probe, "by_name", {}), name, {}), "worst")
    before = _get(probe, "hosts", [])[worst] if worst is not None else None
    return {
        "host": name,
        "detected": _get(host_vars, "relay_detected", detected is not None),
        "before": {"verdict": before.get("verdict"), "reason": before.get("reason")}
        if isinstance(before, Mapping)
        else None,
        "changes": _get(host_vars, "relay_changes", _get(detected or {}, "changes", [])),
        "patch": _get(host_vars, "relay_patch", _get(detected or {}, "patch", {})),
        "mode": record["mode"],
        "window_open": record["window_open"],
        "force": record["force"],
        "window": record["window"],
        "status": "",
        "error": "",
        "run_tags": list(run_tags),
    }


class ActionModule(ActionBase):  # type: ignore[misc]
    """Each open host's plan, for the batch (run_once)."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _supports_async = False

    def run(
        self, tmp: str | None = None, task_vars: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        task_vars = task_vars or {}
        result: dict[str, Any] = super().run(tmp, task_vars)
        del tmp
        hostvars = task_vars["hostvars"]
        run_tags = task_vars.get("ansible_run_tags") or ["all"]
        shared = {key: task_vars[key] for key in SHARED if key in task_vars}
        plans: dict[str, Any] = {}
        for name in task_vars.get("ansible_play_batch") or []:
            # the host's variables as they are (registered results and facts: nothing to
            # template; the role's defaults are not among them)
            host_vars = hostvars.raw_get(name)
            # (a host that failed in this batch waits for its rescue, which records why)
            if "ansible_failed_task" in host_vars:
                continue
            if record_status(host_vars, shared, name) == "":
                plans[name] = relay_plan(plan_input(host_vars, shared, name, run_tags))
        applying = sorted(name for name, plan in plans.items() if plan["apply"])
        ending = {name: plan["status"] for name, plan in plans.items() if not plan["apply"]}
        counts = {s: list(ending.values()).count(s) for s in sorted(set(ending.values()))}
        result.update(
            changed=False,
            hosts=plans,
            msg=f"{len(applying)} host(s) to change now; ended here: "
            + (", ".join(f"{n} {s}" for s, n in counts.items()) or "none"),
        )
        return result
