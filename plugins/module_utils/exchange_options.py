"""The task options of exchange_relay and exchange_patch, as static argument specs.

Besides the WinRM connection (`winrm_options`). exchange_batch nests both: each host's `relay`
dict is exchange_relay's options plus the connection, its `patch` dict exchange_patch's.
Standard library only, Python 3.7+. Declared only here: relayguard's task functions
(`relayguard.exchange.relay_task`, `patch_task`) read the values and check them themselves;
`platform`'s words are relayguard.vocabulary's ExchangeGeneration (tests/suite/test_vocabulary.py).
"""

from __future__ import annotations

from typing import Any

RELAY_OPTIONS_SPEC: dict[str, dict[str, Any]] = {
    "state": {"type": "str", "choices": ["present", "restored"], "default": "present"},
    "platform": {"type": "str", "choices": ["auto", "exchange55", "modern"], "default": "auto"},
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

PATCH_OPTIONS_SPEC: dict[str, dict[str, Any]] = {
    "package_path": {"type": "str"},
    "package_src": {"type": "str"},
    "sha256": {"type": "str", "required": True},
    "target_version": {"type": "str", "required": True},
    "minimum_version": {"type": "str"},
    "installer_arguments": {"type": "list", "elements": "str"},
    "reboot": {"type": "bool", "default": False},
    "remote_temp_dir": {"type": "str", "default": "C:\\Windows\\Temp"},
}

# exchange_facts' and exchange_batch's (per host) policy for the patch level of 2013+
# (its choices are relayguard.exchange.patch_level.PatchPolicy's values; a test holds them equal).
PATCH_POLICY_SPEC: dict[str, dict[str, Any]] = {
    "patch_policy": {"type": "str", "choices": ["latest", "cu_n_minus_1"], "default": "latest"},
}

# exchange_batch's (per host, action=detect) site packages and restart permission, from which
# it computes the host's record (relayguard.exchange.record): relay_exchange_patch_packages and
# relay_exchange_patch_reboot of secure-relay.yml.
PATCH_RECORD_SPEC: dict[str, dict[str, Any]] = {
    "patch_packages": {"type": "list", "elements": "dict", "default": []},
    "patch_reboot": {"type": "bool", "default": False},
}
