"""The Exchange modules' option specs, declared once in the collection (plugins/module_utils).

The library has no copy: tests that call its task functions directly build their parameters
from these specs, as AnsibleModule would (every option present, defaults filled in).
"""

from __future__ import annotations

from typing import Any

from relayguard.lab import module_utils

_winrm = module_utils.load("winrm_options")
_exchange = module_utils.load("exchange_options")

WINRM_SPEC: dict[str, dict[str, Any]] = _winrm.WINRM_CONNECTION_SPEC
SMTP_WAIT_SPEC: dict[str, dict[str, Any]] = _winrm.SMTP_WAIT_SPEC
CONNECTION_SPEC: dict[str, dict[str, Any]] = {**WINRM_SPEC, **SMTP_WAIT_SPEC}
RELAY_SPEC: dict[str, dict[str, Any]] = _exchange.RELAY_OPTIONS_SPEC
PATCH_SPEC: dict[str, dict[str, Any]] = _exchange.PATCH_OPTIONS_SPEC
PATCH_POLICY_SPEC: dict[str, dict[str, Any]] = _exchange.PATCH_POLICY_SPEC
PATCH_RECORD_SPEC: dict[str, dict[str, Any]] = _exchange.PATCH_RECORD_SPEC


def defaults(spec: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every option of `spec` with its default (None where it has none)."""
    return {name: option.get("default") for name, option in spec.items()}
