"""postfix_relay's options, as a static argument spec (declared only here; the module and
its documentation test read it). The relay-policy options shared by every MTA backend come
from relay_options.py. Standard library only, Python 3.7+.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relay_options import RELAY_POLICY_SPEC
else:
    try:  # as Ansible ships it: the collection's module_utils beside this file
        from ansible_collections.relayguard.mail.plugins.module_utils.relay_options import (
            RELAY_POLICY_SPEC,
        )
    except ImportError:  # loaded by path outside Ansible (tests, the target-Python check)
        from relay_options import RELAY_POLICY_SPEC

POSTFIX_RELAY_SPEC: dict[str, dict[str, Any]] = {
    "state": {"type": "str", "choices": ["present", "restored"], "default": "present"},
    # str, not path: Ansible would expand ~ and $VARS in a path before validation.
    "config_dir": {"type": "str", "default": "/etc/postfix"},
    "relay_allowed_networks": {"type": "list", "elements": "str"},
    "relay_refusal": {
        "type": "str",
        "choices": ["keep", "permanent", "temporary"],
        "default": "keep",
    },
    "inbound_domains": {"type": "list", "elements": "str"},
    "inbound_domain_class": {
        "type": "str",
        "choices": [
            "auto",
            "mydestination",
            "virtual_alias_domains",
            "virtual_mailbox_domains",
            "relay_domains",
        ],
        "default": "auto",
    },
    "prune_domains": {"type": "bool", "default": True},
    "backup_dir": {"type": "str"},
    "backup_keep": {"type": "int", "default": 10},
    "backup_file": {"type": "str"},
    # raw: the word primary or all, or a list of config directories (postfix_instances.py)
    "instances": {"type": "raw", "default": "primary"},
    "instance_options": {"type": "dict", "default": {}},
    **RELAY_POLICY_SPEC,
}
