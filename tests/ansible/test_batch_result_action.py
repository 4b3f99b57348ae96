"""batch_result (plugins/action/batch_result.py) run by ansible-playbook: `result_var` reads the
registered batch result by name (no templating of the whole batch into each host's
arguments), `keys` judges every port of a host in one task, and a wrong name or an empty key
list fails the host with a message naming the problem."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"

PROBE = {
    "changed": False,
    "probe": {"options": {"timeout": 30.0}},
    "hosts": [
        {"target": "mx1:25", "verdict": "closed", "reason": "every relay test refused"},
        {"target": "mx1:587", "verdict": "open", "reason": "relays for an outside sender"},
        {"target": "mx2:25", "verdict": "closed", "reason": "every relay test refused"},
    ],
}


EXCHANGE = {
    "changed": False,
    "hosts": {"localhost": {"failed": False, "facts": {"version": "15.2"}}},
}
APPLIED = {
    "changed": False,
    "hosts": {
        "localhost": {
            "relay": {"changed": True, "failed": False, "backup_file": "/r/backup/localhost.json"},
            "patch": {"changed": True, "failed": False, "version_after": "15.2.1544.48"},
        }
    },
}
FLOW = {
    "changed": False,
    "sessions": [
        {"host": "localhost", "failed": True, "msg": "allowed network 192.0.2.0/24 refused"},
        {"host": "mx2", "failed": False, "msg": "ok"},
    ],
}
CHANGES = [{"control": "exchange-no-anonymous-relay"}, {"control": "exchange-patch"}]
PATCH = {"required": "15.2.1544.48", "installed": "15.2.1544.4", "compliant": False}
NAMES = (
    "both_ports", "after", "closed", "no_such_var", "no_keys", "both_given",
    "exchange", "exchange_record", "applied", "unclosable", "after_flow", "no_flow_var",
)  # fmt: skip
SAVED = "{" + ", ".join(f"'{n}': {n}" for n in NAMES) + "}"


def _task(name: str, **args: Any) -> dict[str, Any]:
    return {
        "name": name,
        "relayguard.mail.batch_result": {"kind": "smtp_relay_probe"} | args,
        "ignore_errors": True,
        "register": name,
    }


def test_result_var_and_keys(tmp_path: Path) -> None:
    play = [
        {
            "name": "batch_result over a registered probe result",
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {"name": "The batch call's result", "ansible.builtin.set_fact": {"batch": PROBE}},
                _task("both_ports", result_var="batch", keys=["mx1:25", "mx1:587"]),
                _task(
                    "after",
                    result_var="batch",
                    keys=["mx1:25", "mx1:587"],
                    expect_verdict="closed",
                ),
                _task("closed", result_var="batch", keys=["mx2:25"], expect_verdict="closed"),
                _task("no_such_var", result_var="not_registered", keys=["mx2:25"]),
                _task("no_keys", result_var="batch", keys=[]),
                _task("both_given", result_var="batch", result="{{ batch }}", keys=["mx2:25"]),
                {"name": "An exchange_batch result", "ansible.builtin.set_fact": {"ex": EXCHANGE}},
                _task("exchange", result_var="ex", kind="exchange_batch"),
                _task(
                    "exchange_record", result_var="ex", kind="exchange_batch", return_record=True
                ),
                {"name": "An apply result", "ansible.builtin.set_fact": {"applied_batch": APPLIED}},
                _task(
                    "applied",
                    result_var="applied_batch",
                    kind="exchange_apply",
                    changes=CHANGES,
                    patch=PATCH,
                ),
                _task(
                    "unclosable",
                    result_var="applied_batch",
                    kind="exchange_apply",
                    changes=CHANGES,
                    patch=PATCH,
                    unclosable="15.2.1544.4 is below 15.2.1544.60 and no package for build 15.2",
                ),
                {"name": "A mail-flow result", "ansible.builtin.set_fact": {"flow": FLOW}},
                _task(
                    "after_flow",
                    result_var="batch",
                    keys=["mx1:25", "mx1:587"],
                    expect_verdict="closed",
                    flow_var="flow",
                ),
                _task("no_flow_var", result_var="batch", keys=["mx2:25"], flow_var="nothing"),
                {
                    "name": "Save the results",
                    "ansible.builtin.copy": {
                        "content": "{{ " + SAVED + " | to_json }}",
                        "dest": str(tmp_path / "results.json"),
                        "mode": "0600",
                    },
                },
            ],
        }
    ]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", str(tmp_path / "play.yml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    both = results["both_ports"]
    assert not both.get("failed") and not both["changed"], both
    assert "mx1:25: closed" in both["msg"] and "mx1:587: open" in both["msg"], both
    assert [r["target"] for r in both["record"]] == ["mx1:25", "mx1:587"]
    # the host's verdict is its worst port's: 587 (open), by index; the probe's options
    assert both["worst"] == 1 and both["options"] == {"timeout": 30.0}, both
    # an exchange_batch entry is large: returned only when asked for
    assert "record" not in results["exchange"], results["exchange"]
    assert results["exchange_record"]["record"]["facts"] == {"version": "15.2"}
    after = results["after"]
    assert after["failed"] and "still open after the change" in after["msg"], after
    assert "mx1:25" not in after["msg"], after  # only the port that failed is named
    closed = results["closed"]
    assert not closed.get("failed") and closed["record"][0]["verdict"] == "closed", closed
    assert closed["worst"] == 0, closed
    missing = results["no_such_var"]
    assert missing["failed"] and "not_registered is not a registered variable" in missing["msg"]
    empty = results["no_keys"]
    assert empty["failed"] and "keys is empty" in empty["msg"], empty
    both_given = results["both_given"]
    assert both_given["failed"] and "mutually exclusive" in both_given["msg"], both_given
    # exchange_apply: the host's own result and its record after the change, in one task
    applied = results["applied"]
    assert applied["changed"] and not applied.get("failed"), applied
    assert applied["relay_applied"] is True
    assert applied["backup_file"] == "/r/backup/localhost.json"
    assert [c["applied"] for c in applied["changes"]] == [True, True]
    assert applied["patch"] == {**PATCH, "installed": "15.2.1544.48", "compliant": True}
    assert "record" not in applied
    # a missing fix no package closes fails the host, its record after the relay change kept
    # (the rescue restores the relay change from it)
    unclosable = results["unclosable"]
    assert unclosable["failed"] and "no package for build 15.2" in unclosable["msg"]
    assert unclosable["relay_applied"] is True and unclosable["backup_file"]
    # the verdict after a change with the host's mail flow: the probe's failure first, then the
    # flow's; the host's sessions only
    after_flow = results["after_flow"]
    assert after_flow["failed"], after_flow
    assert after_flow["msg"].index("still open") < after_flow["msg"].index("192.0.2.0/24")
    assert [s["host"] for s in after_flow["flow"]["sessions"]] == ["localhost"]
    assert after_flow["flow"]["failed"] is True
    no_flow = results["no_flow_var"]
    assert no_flow["failed"] and "flow_var nothing is not a registered variable" in no_flow["msg"]


def test_an_exchange_hosts_record_after_its_apply() -> None:
    from support import plugin_files

    action = plugin_files.load("plugins/action/batch_result.py", "batch_result_action")
    entry = {
        "relay": {"changed": True, "failed": False, "backup_file": "/b.json"},
        "patch": {"changed": False, "failed": True, "version_after": "15.2.1544.4"},
    }
    out = action.exchange_applied(entry, CHANGES, PATCH, check_mode=False)
    # the relay change holds, the install failed having installed nothing: not compliant
    assert out["relay_applied"] is True and out["backup_file"] == "/b.json"
    assert [c["applied"] for c in out["changes"]] == [True, False]
    assert out["patch"]["installed"] == "15.2.1544.4" and out["patch"]["compliant"] is False
    # a relay step that failed put the host back itself: nothing applied, nothing to restore
    failed = {"relay": {"changed": True, "failed": True, "backup_file": "/b.json"}, "patch": None}
    out = action.exchange_applied(failed, CHANGES, PATCH, check_mode=False)
    assert out["relay_applied"] is False and out["patch"] == PATCH
    # check mode applies nothing and reads no version after
    out = action.exchange_applied(entry, CHANGES, PATCH, check_mode=True)
    assert not any(c["applied"] for c in out["changes"]) and out["patch"] == PATCH
    # versions compare number by number, not as text (1544.100 is above 1544.48)
    assert action.version_numbers("15.2.1544.100") > action.version_numbers("15.2.1544.48")
    assert action.version_numbers("") == [0] and action.version_numbers(None) == [0]
