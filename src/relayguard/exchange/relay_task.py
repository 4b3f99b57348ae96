"""The exchange_relay task as a function: module parameters in, result document out.

What `modules/exchange_relay.py` calls (and a CLI or a test can call directly): validates
every option before any WinRM call, then plans/applies (`apply.apply_relay`) or restores
(`apply.restore_relay`). Every expected failure becomes `TaskFailure` with one-line message
and the result keys Ansible should return with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from relayguard.exchange import connection, payloads
from relayguard.exchange.apply import (
    ApplyError,
    apply_relay,
    backup_path,
    default_run_id,
    restore_relay,
)
from relayguard.exchange.current import PayloadRunner, ReadError
from relayguard.exchange.desired import controller_path, relay_desired
from relayguard.exchange.hostlock import HostLocked, host_lock
from relayguard.exchange.plan import PlanError
from relayguard.exchange.transport import TransportError, WinRMOptions
from relayguard.validate import InputError
from relayguard.vocabulary import ExchangeGeneration

ClientFactory = Callable[[WinRMOptions], PayloadRunner]


# The module's options besides the connection's (connection.CONNECTION_ARGUMENT_SPEC): the
# library's copy of plugins/module_utils/exchange_options.py RELAY_OPTIONS_SPEC, which
# exchange_relay and exchange_batch validate with (a test holds the two equal).
RELAY_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "state": {"type": "str", "choices": ["present", "restored"], "default": "present"},
    "platform": {
        "type": "str",
        "choices": ["auto", *(g.value for g in ExchangeGeneration)],
        "default": "auto",
    },
    "relay_allowed_networks": {"type": "list", "elements": "str", "default": []},
    "relay_authenticated": {"type": "bool", "default": False},
    "inbound_domains": {"type": "list", "elements": "str"},
    "reject_unknown_recipients": {"type": "bool", "default": True},
    "relay_connector_name": {"type": "str"},
    "relay_connector_bindings": {"type": "list", "elements": "str", "default": ["0.0.0.0:25"]},
    "relay_domains": {"type": "list", "elements": "str", "default": []},
    "backup_file": {"type": "str"},
    "reports_dir": {"type": "str", "default": "reports"},
    "run_id": {"type": "str"},
    "host_name": {"type": "str"},
}


class TaskFailure(Exception):
    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = {"changed": False, **details}


def run_relay_task(
    params: Mapping[str, Any],
    *,
    check_mode: bool,
    client_factory: ClientFactory = connection.client_for,
) -> dict[str, Any]:
    try:
        options = connection.winrm_options(params)
        smtp = connection.smtp_wait(params, options.host)
        platform = None if params.get("platform", "auto") == "auto" else params["platform"]
        if params.get("state", "present") == "restored":
            backup = Path(controller_path("backup_file", params.get("backup_file")))
            with host_lock(options.host):
                client = client_factory(options)
                restored = restore_relay(client, backup, check_mode=check_mode, smtp=smtp)
            result = restored.as_dict()
            result["diff"] = restored.plan.diff()
            return result
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
        with host_lock(options.host):
            client = client_factory(options)
            applied = apply_relay(
                client,
                desired,
                host=host,
                backup_file=backup,
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
