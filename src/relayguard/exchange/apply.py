"""Relay remediation on one host: back up, apply the plan step by step, roll back on failure.

The only room of relay remediation with side effects. `apply_relay` reads the host, plans
(`plan.plan_relay`), saves the configuration document on the controller before the first
write, runs the steps in the plan's order, reads again and checks that a second plan is empty.
If a step fails (or the check does), it converges the host back to the backup
(`plan.plan_restore`, repeated until empty) and raises `ApplyError` saying what happened and
whether the host was restored. `restore_relay` puts a backup back (`state: restored`).
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relayguard.exchange import payloads
from relayguard.exchange.current import PayloadRunner, ReadError, RelayConfig, read_relay_config
from relayguard.exchange.desired import RelayDesired
from relayguard.exchange.plan import (
    PlanError,
    RelayPlan,
    Step,
    plan_relay,
    plan_restore,
)
from relayguard.exchange.transport import FailureCause, TransportError

BACKUP_SCHEMA = "relayguard.exchange-backup/1"
MAX_RESTORE_ROUNDS = 4


class ApplyError(Exception):
    """A change failed. `restored`: the host is back at its backup; `changed`: it is not."""

    def __init__(
        self, message: str, *, restored: bool, changed: bool, backup_file: str | None
    ) -> None:
        super().__init__(message)
        self.restored = restored
        self.changed = changed
        self.backup_file = backup_file


@dataclass(frozen=True)
class SmtpWait:
    """Where to wait for the SMTP greeting after a service restart (None port: don't)."""

    host: str
    port: int | None = 25
    timeout: float = 300.0


@dataclass
class ApplyResult:
    changed: bool
    platform: str
    server: str
    plan: RelayPlan
    backup_file: str | None = None
    applied: list[str] = field(default_factory=list)
    config_after: Mapping[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "platform": self.platform,
            "server": self.server,
            "changes": [c.as_dict() for c in self.plan.changes],
            "steps": [s.as_dict() for s in self.plan.steps],
            "applied": list(self.applied),
            "backup_file": self.backup_file,
            "warnings": list(self.plan.warnings),
        }


# --------------------------------------------------------------------------- SMTP wait


def wait_for_smtp(
    wait: SmtpWait | None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Until the listener greets with 220 (bounded by `wait.timeout`)."""
    if wait is None or wait.port is None:
        return
    deadline = clock() + wait.timeout
    while True:
        try:
            with socket.create_connection((wait.host, wait.port), timeout=10) as conn:
                conn.settimeout(10)
                if conn.recv(512).startswith(b"220"):
                    return
        except OSError:
            pass
        if clock() > deadline:
            raise TransportError(
                wait.host,
                "wait for SMTP",
                FailureCause.TIMEOUT,
                f"port {wait.port} gave no 220 greeting within {wait.timeout:g} s",
            )
        sleep(0.5)


# --------------------------------------------------------------------------- backups


def backup_path(reports_dir: str, run_id: str, host: str) -> Path:
    """`<reports>/<run>/backup/<host>.json` (the run and host are validated names)."""
    return Path(reports_dir) / run_id / "backup" / f"{host}.json"


def default_run_id() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def write_backup(path: Path, host: str, config: RelayConfig) -> None:
    """Write the backup atomically (0600: it describes the host's security configuration)."""
    document = {
        "schema": BACKUP_SCHEMA,
        "host": host,
        "platform": config.platform,
        "server": config.server,
        "taken": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": config.document,
    }
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1, sort_keys=True)
        handle.write("\n")
    os.replace(temporary, path)


def read_backup(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReadError(f"backup {path}: cannot be read ({exc})") from None
    if not isinstance(document, dict) or document.get("schema") != BACKUP_SCHEMA:
        raise ReadError(f"backup {path}: not a {BACKUP_SCHEMA} document")
    if not isinstance(document.get("config"), dict):
        raise ReadError(f"backup {path}: no configuration document")
    return document


# --------------------------------------------------------------------------- steps


def run_step(client: PayloadRunner, step: Step, smtp: SmtpWait | None) -> None:
    client.run_payload(payloads.render(step.op, step.params))
    if step.is_restart:
        wait_for_smtp(smtp)


def converge(
    client: PayloadRunner, platform: str, target: Mapping[str, Any], smtp: SmtpWait | None
) -> RelayPlan:
    """Bring the host to `target` (a backed-up document); returns everything that changed."""
    done: list[Any] = []
    steps: list[Step] = []
    for _ in range(MAX_RESTORE_ROUNDS):
        current = read_relay_config(client, platform, with_server=False)
        plan = plan_restore(platform, current.document, target, smtp_port=_port(smtp))
        if not plan.changed:
            return RelayPlan(platform, tuple(done), tuple(steps))
        for step in plan.steps:
            run_step(client, step, smtp)
        done.extend(plan.changes)
        steps.extend(plan.steps)
    raise ReadError(f"the host does not match the backup after {MAX_RESTORE_ROUNDS} rounds")


def _port(smtp: SmtpWait | None) -> int | None:
    return None if smtp is None else smtp.port


def _rollback(
    client: PayloadRunner,
    platform: str,
    backup: Mapping[str, Any],
    smtp: SmtpWait | None,
    what: str,
    backup_file: str,
) -> ApplyError:
    try:
        converge(client, platform, backup, smtp)
    except (TransportError, ReadError, PlanError, payloads.PayloadError) as exc:
        return ApplyError(
            f"{what}; rolling back FAILED too ({exc}): the host may be half-changed, "
            f"restore it from {backup_file}",
            restored=False,
            changed=True,
            backup_file=backup_file,
        )
    return ApplyError(
        f"{what}; the host was restored to its configuration before the run",
        restored=True,
        changed=False,
        backup_file=backup_file,
    )


# --------------------------------------------------------------------------- entry points


def plan_host(
    client: PayloadRunner,
    desired: RelayDesired,
    *,
    platform: str | None = None,
    smtp: SmtpWait | None = None,
    with_server: bool = True,
) -> tuple[RelayConfig, RelayPlan]:
    config = read_relay_config(client, platform, with_server=with_server)
    return config, plan_relay(config.platform, config.document, desired, smtp_port=_port(smtp))


def apply_relay(
    client: PayloadRunner,
    desired: RelayDesired,
    *,
    host: str,
    backup_file: Path,
    check_mode: bool = False,
    platform: str | None = None,
    smtp: SmtpWait | None = None,
) -> ApplyResult:
    config, plan = plan_host(client, desired, platform=platform, smtp=smtp)
    result = ApplyResult(plan.changed, config.platform, config.server, plan)
    if check_mode or not plan.changed:
        return result
    write_backup(backup_file, host, config)
    result.backup_file = str(backup_file)
    for index, step in enumerate(plan.steps, start=1):
        try:
            run_step(client, step, smtp)
        except (TransportError, payloads.PayloadError) as exc:
            what = f"step {index}/{len(plan.steps)} ({step.summary}) failed: {exc}"
            raise _rollback(
                client, config.platform, config.document, smtp, what, str(backup_file)
            ) from None
        result.applied.append(step.summary)
    try:
        after, again = plan_host(
            client, desired, platform=config.platform, smtp=smtp, with_server=False
        )
    except (TransportError, ReadError, PlanError) as exc:
        what = f"reading the host after the change failed: {exc}"
        raise _rollback(
            client, config.platform, config.document, smtp, what, str(backup_file)
        ) from None
    if again.changed:
        what = "the host does not match the plan after applying it: " + "; ".join(
            f"{c.control} {c.target}" for c in again.changes
        )
        raise _rollback(client, config.platform, config.document, smtp, what, str(backup_file))
    result.config_after = after.document
    return result


@dataclass
class RestoreResult:
    changed: bool
    platform: str
    server: str
    plan: RelayPlan
    restored_from: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "platform": self.platform,
            "server": self.server,
            "changes": [c.as_dict() for c in self.plan.changes],
            "steps": [s.as_dict() for s in self.plan.steps],
            "restored_from": self.restored_from,
            "backup_file": self.restored_from,
            "warnings": [],
        }


def restore_relay(
    client: PayloadRunner,
    backup_file: Path,
    *,
    check_mode: bool = False,
    smtp: SmtpWait | None = None,
) -> RestoreResult:
    """Put the configuration of `backup_file` back (refused if it is another server's)."""
    backup = read_backup(backup_file)
    platform = str(backup.get("platform"))
    current = read_relay_config(client)
    if current.platform != platform or str(backup.get("server", "")).lower() != (
        current.server.lower()
    ):
        raise PlanError(
            f"backup_file: {str(backup_file)!r} is the backup of server "
            f"{backup.get('server')!r} ({platform}), not of {current.server!r} "
            f"({current.platform})"
        )
    target = backup["config"]
    if check_mode:
        plan = plan_restore(platform, current.document, target, smtp_port=_port(smtp))
        return RestoreResult(plan.changed, platform, current.server, plan, str(backup_file))
    try:
        plan = converge(client, platform, target, smtp)
    except (TransportError, payloads.PayloadError, ReadError) as exc:
        raise ApplyError(
            f"restoring {backup_file} failed: {exc}",
            restored=False,
            changed=True,
            backup_file=str(backup_file),
        ) from None
    return RestoreResult(plan.changed, platform, current.server, plan, str(backup_file))
