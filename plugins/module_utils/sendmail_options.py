"""The sendmail_relay module's options, declared once (the module and its tests import them).

Standard library only, Python 3.7+. The shared relay-policy options come from relay_options.
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

SENDMAIL_RELAY_SPEC: dict[str, dict[str, Any]] = {
    "mc_path": {"type": "str", "default": "/etc/mail/sendmail.mc"},
    "cf_path": {"type": "str"},
    "relay_allowed_networks": {"type": "list", "elements": "str"},
    "sendmail_binary": {"type": "str", "default": "/usr/sbin/sendmail"},
    "makemap_binary": {"type": "str", "default": "/usr/sbin/makemap"},
    "m4_binary": {"type": "str", "default": "m4"},
    "backup_dir": {"type": "str"},
    "restart": {"type": "bool", "default": True},
    **RELAY_POLICY_SPEC,
    **RELAY_RESTORE_SPEC,
}
