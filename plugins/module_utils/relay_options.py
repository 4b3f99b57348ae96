"""The relay-policy options every MTA backend module shares (postfix_relay, and the Exim and
Sendmail modules), as static argument specs. Declared only here.

Standard library only, Python 3.7+. The values are checked by each backend (for Postfix:
postfix_validate.desired_state), which also accepts them outside Ansible.

* relay_authenticated: keep (default) leaves authenticated relay as the MTA has it
  (Postfix: permit_sasl_authenticated stays or stays absent); true/false add or remove it.
  RFC 2505 section 2 asks to refuse unauthorised relaying, and a client authenticated with
  SMTP AUTH (RFC 4954) is authorised, so it is never dropped unless the inventory says so.
* relay_partner_domains: relay destinations (partners, backup MX) that must stay accepted
  from outside; a missing one is added, none is removed, and verification checks each.
* relay_allow_removals: an enforce run refuses a plan that removes a relay destination or a
  trusted network unless this is true (the plan names each one).
"""

from __future__ import annotations

from typing import Any

RELAY_POLICY_SPEC: dict[str, dict[str, Any]] = {
    # raw: a bool or the word keep (Ansible's bool type cannot carry the third value)
    "relay_authenticated": {"type": "raw", "default": "keep"},
    "relay_partner_domains": {"type": "list", "elements": "str", "default": []},
    "relay_allow_removals": {"type": "bool", "default": False},
}

# Undoing a change (the Exim and Sendmail modules): state restored puts back exactly the files
# a run's backup_files return names (path, and the copy taken before the change; an empty copy:
# the file did not exist, and is removed).
RELAY_RESTORE_SPEC: dict[str, dict[str, Any]] = {
    "state": {"type": "str", "choices": ["present", "restored"], "default": "present"},
    "backup_files": {
        "type": "list",
        "elements": "dict",
        "options": {
            "path": {"type": "str", "required": True},
            "copy": {"type": "str", "default": ""},
        },
    },
}
