"""Connection options of the controller-side Exchange modules, validated into `WinRMOptions`.

One WinRM vocabulary for exchange_facts, exchange_relay, exchange_patch and exchange_batch
(named after Ansible's `ansible_winrm_*` variables), declared once as the collection's static
argument specs (plugins/module_utils/winrm_options.py: the options, their defaults and
aliases). The library reads the values those specs produce: `winrm_options` checks each one
(no network traffic; the choices are `SCHEMES` and `winrm_settings.TRANSPORTS`, held equal to
the spec's by tests/exchange_remediation/test_module_docs.py); `client_for` turns the result
into a `WinRMClient`; `runner_for` picks the channel (`channel`: winrm, smb for an
Exchange 5.5 host on Windows NT 4.0 / 2000, or via-management-host: WinRM to a Windows
management host that reaches the 5.5 host, `relayguard.exchange.management_host`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relayguard import validate
from relayguard.exchange import winrm_settings
from relayguard.exchange.apply import SmtpWait
from relayguard.exchange.current import PayloadRunner
from relayguard.exchange.management_host import ManagementHostRunner, TargetCredential
from relayguard.exchange.transport import AuthMethod, Secret, WinRMClient, WinRMOptions
from relayguard.validate import InputError

if TYPE_CHECKING:
    from relayguard.exchange.smb_channel import SmbOptions

SCHEMES = ("https", "http")
CHANNELS = ("winrm", "smb", "via-management-host")
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


def _one_of(field: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InputError(field, value, f"is not one of {', '.join(choices)}")
    return str(value)


def _flag(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InputError(field, value, "is not a boolean")
    return value


def ca_bundle(field: str, value: object) -> str | None:
    """An existing CA bundle file on the controller, or None (the system bundle)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or "\x00" in value:
        raise InputError(field, value, "is not a file path")
    if not Path(value).is_file():
        raise InputError(field, value, "is not an existing file")
    return value


def _timeouts(params: Mapping[str, Any]) -> dict[str, Any]:
    connect = validate.positive_number(
        "winrm_connect_timeout", params.get("winrm_connect_timeout", 10), 3600
    )
    operation = validate.positive_number(
        "winrm_operation_timeout", params.get("winrm_operation_timeout", 20), 3600
    )
    if operation != int(operation):
        raise InputError("winrm_operation_timeout", operation, "must be whole seconds")
    read = params.get("winrm_read_timeout")
    if read is not None:
        read = validate.positive_number("winrm_read_timeout", read, 3600)
        if read != int(read) or read <= operation:
            raise InputError(
                "winrm_read_timeout", read, "must be whole seconds above winrm_operation_timeout"
            )
    command = validate.positive_number(
        "winrm_command_timeout", params.get("winrm_command_timeout", 600), 86400
    )
    return {
        "connect_timeout": float(connect),
        "operation_timeout": int(operation),
        "read_timeout": None if read is None else int(read),
        "command_timeout": float(command),
    }


def winrm_options(params: Mapping[str, Any]) -> WinRMOptions:
    """Checked options from the module's connection parameters; InputError names the option."""
    host = host_name("winrm_host", params.get("winrm_host"))
    port = params.get("winrm_port")
    if port is not None:
        validate.port("winrm_port", port)
    scheme = _one_of("winrm_scheme", params.get("winrm_scheme", "https"), SCHEMES)
    auth = _one_of(
        "winrm_transport", params.get("winrm_transport", "ntlm"), winrm_settings.TRANSPORTS
    )
    password = params.get("winrm_password")
    return WinRMOptions(
        host=host,
        port=port,
        username=winrm_settings.username("winrm_username", params.get("winrm_username")),
        password=None if password is None else Secret(password),
        auth=AuthMethod(auth),
        use_https=scheme == "https",
        ca_trust_path=ca_bundle("ca_path", params.get("ca_path")),
        validate_certificate=_flag("validate_certs", params.get("validate_certs", True)),
        **_timeouts(params),
    )


def smtp_wait(params: Mapping[str, Any], host: str) -> SmtpWait | None:
    if not params["smtp_wait"]:
        return None
    port = validate.port("smtp_port", params["smtp_port"])
    timeout = validate.positive_number("smtp_timeout", params["smtp_timeout"], 3600)
    return SmtpWait(host, port, timeout)


def client_for(options: WinRMOptions) -> WinRMClient:
    return WinRMClient(options)


def smb_options(params: Mapping[str, Any], options: WinRMOptions) -> SmbOptions:
    """The SMB options of an Exchange 5.5 host: its WinRM credentials on `smb_port`."""
    # smb_channel is imported where SMB is used: it brings impacket, a third of the import
    # time of every exchange_* module call, most of which reach no host over SMB
    from relayguard.exchange.smb_channel import SmbOptions

    port = validate.port("smb_port", params.get("smb_port") or 445)
    if options.username is None or options.password is None:
        raise InputError("winrm_password", None, "and winrm_username are needed with channel smb")
    domain, _, user = options.username.rpartition("\\")
    return SmbOptions(
        options.host,
        user,
        options.password,
        port=port,
        domain=domain,
        timeout=options.command_timeout,
    )


def runner_for(
    params: Mapping[str, Any],
    options: WinRMOptions,
    client_factory: Callable[[WinRMOptions], PayloadRunner] = client_for,
) -> PayloadRunner:
    """The channel the module's `channel` option names: WinRM, or SMB for an Exchange 5.5
    host on NT 4.0 / 2000 (relayguard.exchange.smb_channel), with the same credentials."""
    channel = _one_of("channel", params.get("channel") or "winrm", CHANNELS)
    if channel == "winrm":
        return client_factory(options)
    if channel == "via-management-host":
        management = management_options(params, options)
        return ManagementHostRunner(
            client_factory(management),
            options.host,
            management_host=management.host,
            credential=target_credential(options),
        )
    smb = smb_options(params, options)
    from relayguard.exchange.smb_channel import SmbChannel, SmbRunner

    return SmbRunner(SmbChannel(smb))


def management_options(params: Mapping[str, Any], options: WinRMOptions) -> WinRMOptions:
    """The WinRM options of the management host (`management_host`, its port and account);
    scheme, transport, certificates and timeouts are the task's (the 5.5 host has no WinRM)."""
    host = params.get("management_host")
    if not host:
        raise InputError("management_host", host, "is needed with channel via-management-host")
    port = params.get("management_port")
    if port is not None:
        validate.port("management_port", port)
    password = params.get("management_password")
    username = winrm_settings.username("management_username", params.get("management_username"))
    if options.auth is not AuthMethod.KERBEROS and (not username or password is None):
        raise InputError(
            "management_password",
            None,
            "and management_username are needed with channel via-management-host",
        )
    return dataclasses.replace(
        options,
        host=host_name("management_host", host),
        port=port,
        username=username,
        password=None if password is None else Secret(password),
    )


def target_credential(options: WinRMOptions) -> TargetCredential | None:
    """The 5.5 host's own account (winrm_username / winrm_password), which the management
    host connects with; None: the management host's session reaches it (delegation)."""
    if options.username is None or options.password is None:
        return None
    return TargetCredential(options.username, options.password)


def remote_temp_dir(params: Mapping[str, Any]) -> str | None:
    """Where packages go: NT 4.0 and 2000 have no C:\\Windows, so SMB uses %SystemRoot%\\Temp."""
    if params.get("remote_temp_dir"):
        return str(params["remote_temp_dir"])
    if params.get("channel") != "smb":
        return None
    from relayguard.exchange.smb_channel import TEMP_DIR

    return TEMP_DIR
