"""The exchange_patch task as a function: module parameters in, result document out.

What `modules/exchange_patch.py` calls: validates every option before any WinRM call, then
`patch.install_patch`. Expected failures become `TaskFailure` (from `relay_task`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relayguard.exchange import connection, payloads
from relayguard.exchange.current import ReadError, held_session
from relayguard.exchange.desired import host_path
from relayguard.exchange.hostlock import HostLocked, host_lock
from relayguard.exchange.patch import PatchError, install_patch, patch_request, version_text
from relayguard.exchange.relay_task import ClientFactory, TaskFailure
from relayguard.exchange.transport import DEFAULT_REMOTE_TEMP_DIR, TransportError
from relayguard.validate import InputError


def run_patch_task(
    params: Mapping[str, Any],
    *,
    check_mode: bool,
    client_factory: ClientFactory = connection.client_for,
) -> dict[str, Any]:
    try:
        options = connection.winrm_options(params)
        smtp = connection.smtp_wait(params, options.host)
        request = patch_request(
            sha256=params.get("sha256"),
            target_version=params.get("target_version"),
            minimum_version=params.get("minimum_version"),
            package_path=params.get("package_path"),
            package_src=params.get("package_src"),
            installer_arguments=params.get("installer_arguments"),
            reboot=params.get("reboot", False),
        )
        temp_dir = host_path(
            "remote_temp_dir", connection.remote_temp_dir(params) or DEFAULT_REMOTE_TEMP_DIR
        )
        with host_lock(options.host):
            client = connection.runner_for(params, options, client_factory)
            with held_session(client):
                result = install_patch(
                    client,
                    request,
                    check_mode=check_mode,
                    smtp=smtp,
                    remote_temp_dir=temp_dir,
                )
    except PatchError as exc:
        raise TaskFailure(str(exc), changed=exc.changed, version_after=exc.version_after) from None
    except (InputError, ReadError, TransportError, payloads.PayloadError, HostLocked) as exc:
        raise TaskFailure(str(exc)) from None
    document = result.as_dict()
    after = result.version_after if result.changed and not check_mode else result.version_before
    if result.changed and check_mode:
        after = version_text(request.target_version)
    document["diff"] = {
        "before": {result.decision.binary: result.version_before},
        "after": {result.decision.binary: after},
    }
    return document
