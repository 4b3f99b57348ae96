#!/usr/bin/python
"""Ansible module smtp_mail_flow: check that legitimate mail still flows (controller side).

After a relay change, the mail that should pass must still pass: an allowed network still
relays, mail for each inbound domain is still accepted, authenticated clients still relay.
Each check is one SMTP envelope (MAIL FROM + RCPT TO, then RSET; DATA is never sent), so
nothing is delivered.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: smtp_mail_flow
short_description: Check that legitimate SMTP envelopes are still accepted (or refused)
version_added: "0.1.0"
description:
  - Opens one SMTP session per check to O(target), optionally from O(source_address) (an
    address of an allowed network, to check that it may still relay), sends EHLO, optionally
    authenticates, then MAIL FROM and RCPT TO, and compares the RCPT reply with the check's
    expectation. C(DATA) is never sent; every session ends with C(RSET) and C(QUIT).
  - Fails when any check does not get what it expects, naming the check and quoting the
    server's reply; RV(checks) has every result.
  - "Runs on the controller: use C(delegate_to: localhost)."
  - Changes nothing; C(changed) is always false and check mode runs the checks too.
  - The O(sessions) form (many targets in one call) is internal to
    relayguard.mail.secure_relay; its interface may change. Use O(target) and O(checks)
    in your own playbooks.
requirements:
  - The relayguard Python package on the controller (see meta/ee-requirements.txt).
attributes:
  check_mode:
    support: full
    description: The checks change nothing, so they run in check mode too.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
  platform:
    support: full
    platforms: posix
    description: Runs on the controller (C(delegate_to) C(localhost)).
options:
  target:
    description:
      - The SMTP server, C(host), C(host:port) or C([ipv6]:port).
      - Exactly one of O(target) (with O(checks)) and O(sessions).
    type: str
  port:
    description: Port when O(target) has none.
    type: int
    default: 25
  source_address:
    description: Local address to connect from (an address of the network being checked).
    type: str
  helo_name:
    description: EHLO name.
    type: str
    default: relayguard.invalid
  timeout:
    description: Seconds to wait for the connection and each reply.
    type: float
    default: 30
  auth_username:
    description: User for the checks with O(checks[].authenticate=true) (SMTP AUTH).
    type: str
  auth_password:
    description: Password of O(auth_username).
    type: str
  checks:
    description: The envelopes to try (with O(target)).
    type: list
    elements: dict
    suboptions:
      name:
        description: What the check shows, for the messages.
        type: str
        required: true
      mail_from:
        description: Envelope sender, without angle brackets (empty for the null sender).
        type: str
        default: ""
      rcpt_to:
        description: Envelope recipient, without angle brackets.
        type: str
        required: true
      authenticate:
        description: Authenticate with O(auth_username) before MAIL FROM.
        type: bool
        default: false
      expect:
        description: V(accepted) (2xx to RCPT) or V(refused) (anything else).
        type: str
        choices: [accepted, refused]
        default: accepted
  sessions:
    description:
      - This option is internal to relayguard.mail.secure_relay; its interface may change.
      - Many targets at once (a batch of hosts, C(run_once)), at most O(max_workers) at a
        time; each session is what O(target) and O(checks) are for one call. The task does
        not fail on a failed check; RV(sessions) says which failed.
    type: list
    elements: dict
    suboptions:
      host:
        description: The inventory name, to find the session's result in RV(sessions).
        type: str
        required: true
      name:
        description: What the session checks, for the messages.
        type: str
        required: true
      target:
        description: The SMTP server, C(host), C(host:port) or C([ipv6]:port).
        type: str
        required: true
      port:
        description: Port when O(sessions[].target) has none.
        type: int
        default: 25
      source_address:
        description: Local address to connect from.
        type: str
      helo_name:
        description: EHLO name.
        type: str
        default: relayguard.invalid
      timeout:
        description: Seconds to wait for the connection and each reply.
        type: float
        default: 30
      auth_username:
        description: User for the checks with O(sessions[].checks[].authenticate=true).
        type: str
      auth_password:
        description: Password of O(sessions[].auth_username) (never logged).
        type: str
      checks:
        description: The envelopes to try on this session's target.
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description: What the check shows, for the messages.
            type: str
            required: true
          mail_from:
            description: Envelope sender, without angle brackets (empty for the null sender).
            type: str
            default: ""
          rcpt_to:
            description: Envelope recipient, without angle brackets.
            type: str
            required: true
          authenticate:
            description: Authenticate with O(sessions[].auth_username) before MAIL FROM.
            type: bool
            default: false
          expect:
            description: V(accepted) (2xx to RCPT) or V(refused) (anything else).
            type: str
            choices: [accepted, refused]
            default: accepted
  max_workers:
    description: With O(sessions), at most this many sessions at once.
    type: int
    default: 16
author:
  - relayguard developers (@relayguard)
"""

EXAMPLES = r"""
- name: The application servers may still relay, and mail for corp.example is still accepted
  relayguard.mail.smtp_mail_flow:
    target: 192.0.2.25:25
    source_address: 192.0.2.80
    checks:
      - name: allowed network relays
        mail_from: app@corp.example
        rcpt_to: relaytest@example.com
      - name: inbound domain corp.example accepted
        mail_from: someone@example.net
        rcpt_to: postmaster@corp.example
  delegate_to: localhost

- name: An outsider may not relay
  relayguard.mail.smtp_mail_flow:
    target: 192.0.2.25
    checks:
      - name: relay refused
        mail_from: someone@example.net
        rcpt_to: relaytest@example.com
        expect: refused
  delegate_to: localhost
"""

RETURN = r"""
sessions:
  description:
    - With O(sessions), one result per session in the order given.
  returned: with sessions
  type: list
  elements: dict
  contains:
    host:
      description: The session's O(sessions[].host).
      type: str
    name:
      description: The session's O(sessions[].name).
      type: str
    failed:
      description: Whether any check of the session did not get what it expected.
      type: bool
    msg:
      description: The failed checks, each with the server's reply (empty when none failed).
      type: str
    checks:
      description: One result per check, as in RV(checks).
      type: list
      elements: dict
checks:
  description: One result per check.
  returned: with target
  type: list
  elements: dict
  sample:
    - name: allowed network relays
      rcpt_to: relaytest@example.com
      expect: accepted
      code: 250
      reply: 2.1.5 Recipient OK
      passed: true
"""

import traceback
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from relayguard.mailflow import run_session, run_sessions

    IMPORT_ERROR = None
except ImportError:  # reported by main() once the module can fail properly
    IMPORT_ERROR = traceback.format_exc()

RELAYGUARD = "relayguard (the relayguard Python engine, see meta/ee-requirements.txt)"

# Static: DOCUMENTATION describes exactly this (validate-modules and
# tests/playbook/test_module_docs.py compare the two, suboptions included).
CHECK_SPEC: dict[str, Any] = {
    "name": {"type": "str", "required": True},
    "mail_from": {"type": "str", "default": ""},
    "rcpt_to": {"type": "str", "required": True},
    "authenticate": {"type": "bool", "default": False},
    "expect": {"type": "str", "choices": ["accepted", "refused"], "default": "accepted"},
}

SESSION_SPEC: dict[str, Any] = {
    "port": {"type": "int", "default": 25},
    "source_address": {"type": "str"},
    "helo_name": {"type": "str", "default": "relayguard.invalid"},
    "timeout": {"type": "float", "default": 30},
    "auth_username": {"type": "str"},
    "auth_password": {"type": "str", "no_log": True},
}

ARGUMENT_SPEC: dict[str, Any] = {
    "target": {"type": "str"},
    **SESSION_SPEC,
    "checks": {"type": "list", "elements": "dict", "options": CHECK_SPEC},
    "sessions": {
        "type": "list",
        "elements": "dict",
        "options": {
            "host": {"type": "str", "required": True},
            "name": {"type": "str", "required": True},
            "target": {"type": "str", "required": True},
            **SESSION_SPEC,
            "checks": {"type": "list", "elements": "dict", "required": True, "options": CHECK_SPEC},
        },
    },
    "max_workers": {"type": "int", "default": 16},
}


def main(module_class: Callable[..., Any] = AnsibleModule) -> None:
    """The module; its action plugin runs it in the controller's worker with
    plugin_utils/controller_module.ControllerModule as `module_class`."""
    module = module_class(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        required_by={"auth_password": "auth_username"},
        mutually_exclusive=[("target", "sessions")],
        required_one_of=[("target", "sessions")],
        required_together=[("target", "checks")],
    )
    if IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib(RELAYGUARD), exception=IMPORT_ERROR)
    p = module.params
    if p["sessions"] is not None:
        results = run_sessions(p["sessions"], p["max_workers"])
        sessions = [
            {"host": s["host"], "name": s["name"], **r}
            for s, r in zip(p["sessions"], results, strict=True)
        ]
        module.exit_json(changed=False, sessions=sessions)
    result = run_session(p)
    if result["failed"]:
        module.fail_json(msg=result["msg"], checks=result["checks"])
    module.exit_json(changed=False, checks=result["checks"])


if __name__ == "__main__":
    main()
