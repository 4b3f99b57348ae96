"""The exim_relay module's options, as a static argument spec. Declared only here.

Standard library only (Python 3.7+). The shared relay-policy options come from
relay_options.RELAY_POLICY_SPEC (one declaration for every MTA backend).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relay_options import RELAY_POLICY_SPEC, RELAY_RESTORE_SPEC
else:
    try:  # as Ansible ships it
        from ansible_collections.relayguard.mail.plugins.module_utils.relay_options import (
            RELAY_POLICY_SPEC,
            RELAY_RESTORE_SPEC,
        )
    except ImportError:  # loaded by path outside Ansible (tests)
        from relay_options import RELAY_POLICY_SPEC, RELAY_RESTORE_SPEC

EXIM_RELAY_SPEC: dict[str, dict[str, Any]] = {
    "config": {"type": "str", "default": "/etc/exim4/update-exim4.conf.conf"},
    "style": {"type": "str", "choices": ["auto", "debian", "plain"], "default": "auto"},
    "runtime_config": {"type": "str", "default": ""},
    "exim_binary": {"type": "str", "default": ""},
    "pid_file": {"type": "str", "default": "/run/exim4/exim.pid"},
    "relay_allowed_networks": {"type": "list", "elements": "str"},  # required unless restored
    **RELAY_POLICY_SPEC,
    **RELAY_RESTORE_SPEC,
}
