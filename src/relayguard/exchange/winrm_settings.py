"""WinRM settings from an operator (CLI flags, exchange_facts arguments) to checked WinRMOptions.

The edge where user-supplied values are validated before any WinRM call: a host is an IP
address or a domain name, a port a port, a transport one of pywinrm's, a CA bundle an
existing file, timeouts positive and bounded. A bad value raises `InputError` naming the
field and the value; the password is never part of a message.
"""

from __future__ import annotations

from pathlib import Path

from relayguard import validate
from relayguard.exchange.transport import AuthMethod, Secret, WinRMOptions
from relayguard.validate import InputError

TRANSPORTS = tuple(method.value for method in AuthMethod)
CERT_VALIDATION = ("validate", "ignore")
MAX_TIMEOUT = 3600.0
_USERNAME_FORBIDDEN = set('"/[]:;|=,+*?<>\r\n\t\x00')


def host(field: str, value: object) -> str:
    """An IP address (IPv6 without brackets) or a DNS name."""
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    try:
        return validate.ip_address(field, value)
    except InputError:
        return validate.domain(field, value)


def username(field: str, value: object) -> str | None:
    """`user`, `DOMAIN\\user` or `user@domain`, without characters Windows forbids in names."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise InputError(field, value, "is not a user name")
    if any(ch in _USERNAME_FORBIDDEN for ch in value) or value.count("\\") > 1:
        raise InputError(field, value, "contains characters a Windows user name cannot hold")
    return value


def winrm_settings(
    target: object,
    *,
    port: object = None,
    transport: object = "ntlm",
    user: object = None,
    password: Secret | None = None,
    ca_trust_path: object = None,
    server_cert_validation: object = "validate",
    use_https: bool = True,
    connect_timeout: object = 10.0,
    operation_timeout: object = 20,
    command_timeout: object = 300.0,
) -> WinRMOptions:
    """Checked options for one host; InputError on the first bad field."""
    address = host("host", target)
    if transport not in TRANSPORTS:
        raise InputError("transport", transport, f"is not one of {', '.join(TRANSPORTS)}")
    if server_cert_validation not in CERT_VALIDATION:
        raise InputError("server_cert_validation", server_cert_validation, "is not validate/ignore")
    ca_path: str | None = None
    if ca_trust_path is not None:
        if not isinstance(ca_trust_path, str) or "\x00" in ca_trust_path:
            raise InputError("ca_trust_path", ca_trust_path, "is not a file path")
        if not Path(ca_trust_path).is_file():
            raise InputError("ca_trust_path", ca_trust_path, "is not an existing file")
        ca_path = ca_trust_path
    operation = validate.positive_number("operation_timeout", operation_timeout, MAX_TIMEOUT)
    if operation != int(operation):
        raise InputError("operation_timeout", operation_timeout, "must be whole seconds")
    return WinRMOptions(
        host=address,
        port=None if port is None else validate.port("port", port),
        auth=AuthMethod(str(transport)),
        username=username("username", user),
        password=password,
        use_https=use_https,
        ca_trust_path=ca_path,
        validate_certificate=server_cert_validation == "validate",
        connect_timeout=validate.positive_number("connect_timeout", connect_timeout, MAX_TIMEOUT),
        operation_timeout=int(operation),
        command_timeout=validate.positive_number("command_timeout", command_timeout, MAX_TIMEOUT),
    )
