"""The WinRM connection options of relayguard's Exchange modules, as static argument specs.

One vocabulary for exchange_facts, exchange_relay, exchange_patch and exchange_batch (each of
its hosts' `relay` dicts), named after Ansible's own WinRM connection variables
(`ansible_winrm_scheme`, `ansible_winrm_transport`, ...) and documented once in
`plugins/doc_fragments/winrm.py`. The old names stay accepted as aliases.

Standard library only, Python 3.7+: Ansible ships this file with the modules, and the specs
must exist without the relayguard package (ansible-doc, validate-modules, a controller that
lacks it). They are declared only here: relayguard (`relayguard.exchange.connection`) reads
the values they produce and checks them itself; a test holds the choices to the ones it
accepts.
"""

from __future__ import annotations

from typing import Any

WINRM_TRANSPORTS = ["ntlm", "kerberos", "credssp", "certificate", "basic"]
WINRM_SCHEMES = ["https", "http"]
CHANNELS = ["winrm", "smb", "via-management-host"]

# How to reach one Exchange server over WinRM.
WINRM_CONNECTION_SPEC: dict[str, dict[str, Any]] = {
    "winrm_host": {"type": "str", "required": True, "aliases": ["host"]},
    "winrm_port": {"type": "int", "aliases": ["port"]},
    "winrm_scheme": {"type": "str", "choices": WINRM_SCHEMES, "default": "https"},
    "winrm_transport": {
        "type": "str",
        "choices": WINRM_TRANSPORTS,
        "default": "ntlm",
        "aliases": ["winrm_auth", "transport"],
    },
    "winrm_username": {"type": "str", "aliases": ["username"]},
    "winrm_password": {"type": "str", "no_log": True, "aliases": ["password"]},
    "validate_certs": {"type": "bool", "default": True, "aliases": ["winrm_validate_certs"]},
    "ca_path": {"type": "path", "aliases": ["winrm_ca_trust_path", "ca_trust_path"]},
    "winrm_connect_timeout": {"type": "float", "default": 10, "aliases": ["connect_timeout"]},
    "winrm_operation_timeout": {"type": "int", "default": 20, "aliases": ["operation_timeout"]},
    "winrm_read_timeout": {"type": "int"},
    "winrm_command_timeout": {"type": "float", "default": 600, "aliases": ["command_timeout"]},
    # Exchange 5.5 on NT 4.0 / 2000 has no WinRM: SMB (relayguard.exchange.smb_channel)
    "channel": {"type": "str", "choices": CHANNELS, "default": "winrm"},
    "smb_port": {"type": "int", "default": 445},
    # ... or through a Windows management host that reaches it
    # (relayguard.exchange.management_host): WinRM to that host, with its own account.
    "management_host": {"type": "str"},
    "management_port": {"type": "int"},
    "management_username": {"type": "str"},
    "management_password": {"type": "str", "no_log": True},
}

# After a service restart, an install or a reboot: wait for the SMTP greeting again.
SMTP_WAIT_SPEC: dict[str, dict[str, Any]] = {
    "smtp_wait": {"type": "bool", "default": True},
    "smtp_port": {"type": "int", "default": 25},
    "smtp_timeout": {"type": "float", "default": 300},
}
