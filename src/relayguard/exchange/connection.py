"""Connection options of the controller-side Exchange modules, validated into `WinRMOptions`.

Shared by `modules/exchange_relay.py` and `modules/exchange_patch.py` (and any CLI that wants
the same options): `CONNECTION_ARGUMENT_SPEC` is their Ansible argument spec, `client_for`
turns the values into a `WinRMClient` after checking each one (no network traffic).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from relayguard import validate
from relayguard.exchange.apply import SmtpWait
from relayguard.exchange.transport import AuthMethod, Secret, WinRMClient, WinRMOptions
from relayguard.validate import InputError

CONNECTION_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "winrm_host": {"type": "str", "required": True},
    "winrm_port": {"type": "int"},
    "winrm_username": {"type": "str"},
    "winrm_password": {"type": "str", "no_log": True},
    "winrm_auth": {
        "type": "str",
        "choices": ["ntlm", "kerberos", "credssp", "certificate", "basic"],
        "default": "ntlm",
    },
    "winrm_use_https": {"type": "bool", "default": True},
    "winrm_ca_trust_path": {"type": "str"},
    "winrm_validate_certs": {"type": "bool", "default": True},
    "winrm_operation_timeout": {"type": "int", "default": 20},
    "winrm_command_timeout": {"type": "float", "default": 600},
    "smtp_wait": {"type": "bool", "default": True},
    "smtp_port": {"type": "int", "default": 25},
    "smtp_timeout": {"type": "float", "default": 300},
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def host_name(field: str, value: object) -> str:
    """An address or a DNS name."""
    if isinstance(value, str) and (":" in value or value.replace(".", "").isdigit()):
        return validate.ip_address(field, value)
    return validate.domain(field, value)


def file_name_part(field: str, value: object) -> str:
    """A name used as one path component (run id, host name in a backup path)."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise InputError(field, value, "is not a plain name (letters, digits, '._-')")
    return value


def winrm_options(params: Mapping[str, Any]) -> WinRMOptions:
    host = host_name("winrm_host", params["winrm_host"])
    port = params.get("winrm_port")
    if port is not None:
        validate.port("winrm_port", port)
    validate.positive_number("winrm_operation_timeout", params["winrm_operation_timeout"], 3600)
    validate.positive_number("winrm_command_timeout", params["winrm_command_timeout"], 86400)
    password = params.get("winrm_password")
    return WinRMOptions(
        host=host,
        port=port,
        username=params.get("winrm_username"),
        password=None if password is None else Secret(password),
        auth=AuthMethod(params["winrm_auth"]),
        use_https=params["winrm_use_https"],
        ca_trust_path=params.get("winrm_ca_trust_path"),
        validate_certificate=params["winrm_validate_certs"],
        operation_timeout=int(params["winrm_operation_timeout"]),
        command_timeout=float(params["winrm_command_timeout"]),
    )


def smtp_wait(params: Mapping[str, Any], host: str) -> SmtpWait | None:
    if not params["smtp_wait"]:
        return None
    port = validate.port("smtp_port", params["smtp_port"])
    timeout = validate.positive_number("smtp_timeout", params["smtp_timeout"], 3600)
    return SmtpWait(host, port, timeout)


def client_for(options: WinRMOptions) -> WinRMClient:
    return WinRMClient(options)
