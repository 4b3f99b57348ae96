"""Action plugin batch_result (internal): one host's share of a batch call's result.

secure-relay.yml makes its batch calls (exchange_batch, relay_reachability, smtp_relay_probe,
smtp_mail_flow) once per batch with run_once and delegate_to localhost; Ansible credits such
a task's changed, failed and diff to the first host of the batch only. This action runs on
every host right after the batch call, on the controller, with no module process: it picks
this host's entry out of the registered batch result and returns it as this host's own
changed, failed, msg and diff, so PLAY RECAP, --check --diff, the junit callback and AWX host
summaries tell each host's truth (docs/ansible.md, "Per-host results").

Each task per host costs every host a forked worker (docs/performance.md), so one call also
does the bookkeeping of the steps around it: `exchange_apply` returns the host's record after
an Exchange change (what was applied, its backup, the patch level after the install) and fails
a host whose missing fix no configured package closes; `flow_var` judges the host's
legitimate-mail sessions together with its probe verdict after a change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.plugins.action import ActionBase

KINDS = (
    "exchange_batch", "exchange_apply", "relay_reachability", "smtp_relay_probe", "smtp_mail_flow",
)  # fmt: skip
ARGUMENT_SPEC: dict[str, Any] = {
    "result": {"type": "raw"},
    "result_var": {"type": "str"},
    "kind": {"type": "str", "required": True, "choices": list(KINDS)},
    "key": {"type": "str"},
    "keys": {"type": "list", "elements": "str"},
    "step": {"type": "str", "choices": ["relay", "patch"]},
    "expect_verdict": {"type": "str"},
    "return_record": {"type": "bool"},
    "flow_var": {"type": "str"},
    "changes": {"type": "list", "elements": "dict"},
    "patch": {"type": "dict"},
    "unclosable": {"type": "str"},
}


def _says(entry: Mapping[str, Any], key: str) -> bool:
    """`key` (failed, changed) of an entry or of one of its steps (exchange_batch apply)."""
    return bool(entry.get(key)) or any(
        isinstance(part, Mapping) and part.get(key) for part in entry.values()
    )


def _msgs(entry: Mapping[str, Any]) -> list[str]:
    """The messages of an entry and of its failed steps."""
    found = [str(entry["msg"])] if entry.get("msg") else []
    for part in entry.values():
        if isinstance(part, Mapping) and part.get("failed") and part.get("msg"):
            found.append(str(part["msg"]))
    return found


def _diffs(result: Mapping[str, Any], key: str, step: str | None) -> list[dict[str, Any]]:
    """This host's diffs: exchange_batch heads each one "<host> <step>"."""
    steps = (step,) if step else ("relay", "patch")
    headers = {f"{key} {s}" for s in steps}
    diffs = result.get("diff") or []
    if isinstance(diffs, Mapping):
        diffs = [diffs]
    return [dict(d) for d in diffs if isinstance(d, Mapping) and d.get("before_header") in headers]


def _exchange(result: Mapping[str, Any], key: str, step: str | None) -> tuple[dict[str, Any], Any]:
    entry = (result.get("hosts") or {}).get(key)
    if entry is None:
        return {"failed": True, "msg": f"{key}: no entry in the exchange_batch result"}, None
    if step is not None:
        part = entry.get(step)
        if part is None:
            return {"changed": False, "msg": f"{key}: no {step} step in this batch"}, None
        entry = part
    out: dict[str, Any] = {"changed": _says(entry, "changed"), "failed": _says(entry, "failed")}
    messages = _msgs(entry)
    out["msg"] = "; ".join(messages) if messages else ("changed" if out["changed"] else "ok")
    diffs = _diffs(result, key, step)
    if diffs:
        out["diff"] = diffs
    return out, entry


def version_numbers(text: Any) -> list[int]:
    """A dotted version as numbers to compare; a part that is not a number counts 0."""
    return [int(part) if part.isdigit() else 0 for part in str(text or "").split(".")]


def exchange_applied(
    entry: Mapping[str, Any],
    changes: list[Mapping[str, Any]],
    patch: Mapping[str, Any],
    check_mode: bool,
) -> dict[str, Any]:
    """The host's record after an exchange_batch apply entry (its `relay` and `patch` steps).

    `relay_applied`: the relay step changed the host and did not fail (what a rollback
    restores); `backup_file`: its backup, or None; `changes`: the planned `changes`, each with
    `applied` (the patch change by the install, the others by the relay step); `patch`: the
    host's patch level, with the version read after the install and whether it reaches the
    required one. Check mode applies nothing.
    """
    relay = entry.get("relay") if isinstance(entry.get("relay"), Mapping) else {}
    step = entry.get("patch") if isinstance(entry.get("patch"), Mapping) else {}
    relay_applied = not check_mode and bool(relay.get("changed")) and not relay.get("failed")
    installed = not check_mode and bool(step.get("changed"))
    after = step.get("version_after")
    level = dict(patch)
    if after is not None and not check_mode:
        level.update(
            installed=after,
            compliant=version_numbers(after) >= version_numbers(patch.get("required")),
        )
    return {
        "relay_applied": relay_applied,
        "backup_file": relay.get("backup_file") or None,
        "changes": [
            {
                **change,
                "applied": installed
                if change.get("control") == "exchange-patch"
                else relay_applied,
            }
            for change in changes
        ],
        "patch": level,
    }


def _exchange_apply(
    result: Mapping[str, Any], key: str, args: Mapping[str, Any], check_mode: bool
) -> tuple[dict[str, Any], Any]:
    """This host's share of an apply (as exchange_batch), its record after it, and a missing
    fix no package closes (a failure, after the apply's own)."""
    own, entry = _exchange(result, key, None)
    if entry is not None:
        own.update(exchange_applied(entry, args["changes"] or [], args["patch"] or {}, check_mode))
    if not own.get("failed") and args["unclosable"]:
        own.update(failed=True, msg=f"{key}: {args['unclosable']}")
    return own, None


def _reachability(result: Mapping[str, Any], key: str) -> tuple[dict[str, Any], Any]:
    entry = (result.get("hosts") or {}).get(key)
    if entry is None:
        return {"failed": True, "msg": f"{key}: no entry in the relay_reachability result"}, None
    problems = []
    for kind in ("smtp", "management"):
        reach = entry.get(kind)
        if isinstance(reach, Mapping) and not reach.get("reachable"):
            problems.append(f"{kind} does not answer ({reach.get('error') or 'no answer'})")
    if problems:
        return {"failed": True, "msg": f"{key}: " + "; ".join(problems)}, entry
    return {"changed": False, "msg": f"{key}: reachable"}, entry


def _probe(
    result: Mapping[str, Any], key: str, expect: str | None, host: str
) -> tuple[dict[str, Any], Any]:
    entry = next(
        (h for h in result.get("hosts") or [] if isinstance(h, Mapping) and h.get("target") == key),
        None,
    )
    if entry is None:
        return {"failed": True, "msg": f"{host}: {key} is not in the probe result"}, None
    verdict = entry.get("verdict")
    reason = entry.get("reason") or ""
    if expect and verdict != expect:
        msg = f"{host} is still {verdict} after the change: {reason}"
        return {"failed": True, "msg": msg}, entry
    return {"changed": False, "msg": f"{host}: {verdict} — {reason}".rstrip(" —")}, entry


def _probe_many(
    result: Mapping[str, Any], keys: list[str], expect: str | None, host: str
) -> tuple[dict[str, Any], Any]:
    """Every probed target of one host (its ports) in one result: failed if any one is."""
    if not keys:
        return {"failed": True, "msg": f"{host}: no probe target given (keys is empty)"}, []
    owns = [_probe(result, key, expect, host) for key in keys]
    records = [record for own, record in owns]
    failed = [own["msg"] for own, record in owns if own.get("failed")]
    if failed:
        return {"failed": True, "msg": "; ".join(failed)}, records
    if len(keys) == 1:
        return owns[0][0], records
    verdicts = "; ".join(
        f"{key}: {own['msg'].split(': ', 1)[-1]}"
        for key, (own, record) in zip(keys, owns, strict=True)
    )
    return {"changed": False, "msg": f"{host}: {verdicts}"}, records


def _worst(records: list[Any]) -> int | None:
    """The index of the host's worst port: open, else inconclusive, else the first found."""
    for verdict in ("open", "inconclusive", None):
        for index, entry in enumerate(records):
            if isinstance(entry, Mapping) and verdict in (None, entry.get("verdict")):
                return index
    return None


def _with_flow(own: dict[str, Any], flow_result: Any, host: str, var: str) -> dict[str, Any]:
    """The probe verdict `own` judged together with the host's mail-flow sessions: failed if
    either is, the probe's failure named first; the sessions as `flow` (`skipped` when the
    mail-flow check was: the host is then not verified, report.yml)."""
    if not isinstance(flow_result, Mapping):
        return own | {"failed": True, "msg": f"{host}: flow_var {var} is not a registered result"}
    if flow_result.get("skipped"):
        return own | {"flow": {"skipped": True, "msg": "the mail-flow check was skipped"}}
    flow, record = _mail_flow(flow_result, host)
    own = own | {
        "flow": {
            "failed": bool(flow.get("failed")),
            "msg": flow["msg"],
            "sessions": record["sessions"],
        }
    }
    if flow.get("failed"):
        own["msg"] = "; ".join([own["msg"], flow["msg"]] if own.get("failed") else [flow["msg"]])
        own["failed"] = True
    return own


def _mail_flow(result: Mapping[str, Any], key: str) -> tuple[dict[str, Any], Any]:
    sessions = [
        s for s in result.get("sessions") or [] if isinstance(s, Mapping) and s.get("host") == key
    ]
    failed = [s for s in sessions if s.get("failed")]
    if failed:
        return {"failed": True, "msg": "; ".join(str(s.get("msg", "failed")) for s in failed)}, {
            "sessions": sessions
        }
    return {"changed": False, "msg": f"{key}: {len(sessions)} session(s) passed"}, {
        "sessions": sessions
    }


class ActionModule(ActionBase):  # type: ignore[misc]
    """This host's changed, failed, msg and diff from a registered batch result."""

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
        args = self.validate_argument_spec(
            argument_spec=ARGUMENT_SPEC,
            mutually_exclusive=[["result", "result_var"]],
            required_one_of=[["result", "result_var"]],
        )[1]
        host = str(task_vars.get("inventory_hostname", ""))
        for option in ("result_var", "flow_var"):
            # read as registered: templating a batch's whole result into every host's
            # arguments costs each host the size of the batch (quadratic in the batch)
            name = args[option]
            if name is not None and name not in task_vars:
                msg = f"{host}: {option} {name} is not a registered variable"
                result.update(failed=True, msg=msg)
                return result
        var = args["result_var"]
        batch = task_vars[var] if var is not None else args["result"]
        key = args["key"] or host
        if not isinstance(batch, Mapping):
            result.update(failed=True, msg=f"{host}: result is not a registered task result")
            return result
        if batch.get("skipped"):
            result.update(changed=False, skipped=True, skip_reason="the batch call was skipped")
            return result
        kind = args["kind"]
        if kind == "exchange_batch":
            own, record = _exchange(batch, key, args["step"])
        elif kind == "exchange_apply":
            check_mode = bool(self._task.check_mode)
            own, record = _exchange_apply(batch, key, args, check_mode)
        elif kind == "relay_reachability":
            own, record = _reachability(batch, key)
        elif kind == "smtp_relay_probe" and args["keys"] is not None:
            own, record = _probe_many(batch, args["keys"], args["expect_verdict"], host)
            if args["flow_var"] is not None:
                own = _with_flow(own, task_vars[args["flow_var"]], host, args["flow_var"])
        elif kind == "smtp_relay_probe":
            own, record = _probe(batch, key, args["expect_verdict"], host)
        else:
            own, record = _mail_flow(batch, key)
        result.update(changed=False, failed=False)
        result.update(own)
        if result["failed"]:
            result["changed"] = False
            result.pop("diff", None)
        # an exchange_batch entry (facts, exposure, plan, record) is large, and every byte of a
        # per-host result is copied and converted by Ansible for each host: returned on request
        if kind not in ("exchange_batch", "exchange_apply") or args["return_record"]:
            result["record"] = record
        if kind == "smtp_relay_probe" and isinstance(record, list):
            # the host's verdict is its worst port's (open, else inconclusive, else the
            # first): the index into record, so the entry is not returned twice
            result["worst"] = _worst(record)
            result["options"] = (batch.get("probe") or {}).get("options")
        return result
