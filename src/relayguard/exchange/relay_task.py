"""The exchange_relay task as a function: module parameters in, result document out.

What `modules/exchange_relay.py` calls (and a CLI or a test can call directly): validates
every option before any WinRM call, then plans/applies (`apply.apply_relay`) or restores
(`apply.restore_relay`). Every expected failure becomes `TaskFailure` with one-line message
and the result keys Ansible should return with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relayguard.exchange import connection, payloads
from relayguard.exchange.apply import (
    ApplyError,
    ApplyResult,
    SmtpWait,
    apply_relay,
    backup_path,
    default_run_id,
    restore_relay,
)
from relayguard.exchange.current import PayloadRunner, ReadError, held_session, relay_config_of
from relayguard.exchange.desired import RelayDesired, controller_path, relay_desired
from relayguard.exchange.hostlock import HostLocked, host_lock
from relayguard.exchange.plan import PlanError, plan_relay
from relayguard.exchange.transport import TransportError, WinRMOptions
from relayguard.validate import InputError
from relayguard.vocabulary import ExchangeGeneration

ClientFactory = Callable[[WinRMOptions], PayloadRunner]


class TaskFailure(Exception):
    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = {"changed": False, **details}


def generation(value: object) -> ExchangeGeneration | None:
    """The `platform` option: `auto` (detect) or an Exchange generation."""
    if value == "auto":
        return None
    if not isinstance(value, str):
        raise InputError("platform", value, "is not a string")
    try:
        return ExchangeGeneration(value)
    except ValueError:
        words = ", ".join(["auto", *ExchangeGeneration])
        raise InputError("platform", value, f"is not one of {words}") from None


@dataclass(frozen=True)
class _Present:
    """exchange_relay's options for `state: present`, every one validated."""

    options: WinRMOptions
    smtp: SmtpWait | None
    platform: ExchangeGeneration | None
    desired: RelayDesired
    host: str
    backup: Path


def _present(
    params: Mapping[str, Any],
    options: WinRMOptions,
    smtp: SmtpWait | None,
    platform: ExchangeGeneration | None,
) -> _Present:
    desired = relay_desired(
        relay_allowed_networks=params.get("relay_allowed_networks"),
        relay_authenticated=params.get("relay_authenticated", False),
        inbound_domains=params.get("inbound_domains"),
        reject_unknown_recipients=params.get("reject_unknown_recipients", True),
        relay_connector_name=params.get("relay_connector_name"),
        relay_connector_bindings=params.get("relay_connector_bindings"),
        relay_domains=params.get("relay_domains"),
    )
    host = connection.file_name_part("host_name", params.get("host_name") or options.host)
    if params.get("backup_file"):
        backup = Path(controller_path("backup_file", params["backup_file"]))
    else:
        run_id = connection.file_name_part("run_id", params.get("run_id") or default_run_id())
        reports = controller_path("reports_dir", params.get("reports_dir") or "reports")
        backup = backup_path(reports, run_id, host)
    return _Present(options, smtp, platform, desired, host, backup)


def run_relay_task(
    params: Mapping[str, Any],
    *,
    check_mode: bool,
    client_factory: ClientFactory = connection.client_for,
) -> dict[str, Any]:
    try:
        options = connection.winrm_options(params)
        smtp = connection.smtp_wait(params, options.host)
        platform = generation(params.get("platform", "auto"))
        if params.get("state", "present") == "restored":
            backup = Path(controller_path("backup_file", params.get("backup_file")))
            with host_lock(options.host):
                client = connection.runner_for(params, options, client_factory)
                with held_session(client):
                    restored = restore_relay(client, backup, check_mode=check_mode, smtp=smtp)
            result = restored.as_dict()
            result["diff"] = restored.plan.diff()
            return result
        task = _present(params, options, smtp, platform)
        with host_lock(options.host):
            client = connection.runner_for(params, options, client_factory)
            with held_session(client):
                applied = apply_relay(
                    client,
                    task.desired,
                    host=task.host,
                    backup_file=task.backup,
                    check_mode=check_mode,
                    platform=platform,
                    smtp=smtp,
                )
    except ApplyError as exc:
        raise TaskFailure(
            str(exc), changed=exc.changed, restored=exc.restored, backup_file=exc.backup_file
        ) from None
    except (
        InputError,
        PlanError,
        ReadError,
        TransportError,
        payloads.PayloadError,
        HostLocked,
    ) as exc:
        raise TaskFailure(str(exc)) from None
    except OSError as exc:  # the backup cannot be written: nothing was changed
        raise TaskFailure(f"exchange_relay: {exc}") from None
    result = applied.as_dict()
    result["diff"] = applied.plan.diff()
    return result


def plans_from_documents(params: Mapping[str, Any]) -> bool:
    """Whether `plan_from_documents` plans for these options as `run_relay_task` in check
    mode would: `state: present` with the platform detected (`auto`)."""
    state: object = params.get("state", "present")
    platform: object = params.get("platform", "auto")
    return state == "present" and platform == "auto"


def plan_from_documents(
    params: Mapping[str, Any], detect: Mapping[str, Any], document: Mapping[str, Any]
) -> dict[str, Any]:
    """exchange_relay in check mode (`state: present`, platform `auto`) over the documents
    the host's assessment has just read — its `exchange.detect` and read_config — instead
    of reading them again: the same options validated, the same plan, the same result.
    exchange_batch's detect (assess, then plan) reads each host once this way."""
    try:
        options = connection.winrm_options(params)
        smtp = connection.smtp_wait(params, options.host)
        platform = generation(params.get("platform", "auto"))
        if not plans_from_documents(params):
            raise InputError("state", params.get("state"), "is not planned from documents")
        task = _present(params, options, smtp, platform)
        config = relay_config_of(detect, document)
        plan = plan_relay(
            config.platform,
            config.document,
            task.desired,
            smtp_port=None if smtp is None else smtp.port,
        )
    except (InputError, PlanError, ReadError, payloads.PayloadError) as exc:
        raise TaskFailure(str(exc)) from None
    result = ApplyResult(plan.changed, config.platform, config.server, plan).as_dict()
    result["diff"] = plan.diff()
    return result
