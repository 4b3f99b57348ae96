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
options:
  target:
    description: The SMTP server, C(host), C(host:port) or C([ipv6]:port).
    type: str
    required: true
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
    description: User for the checks with C(authenticate=true) (SMTP AUTH).
    type: str
  auth_password:
    description: Password of O(auth_username).
    type: str
  checks:
    description: The envelopes to try.
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
        description: Authenticate with O(auth_username) before MAIL FROM.
        type: bool
        default: false
      expect:
        description: V(accepted) (2xx to RCPT) or V(refused) (anything else).
        type: str
        choices: [accepted, refused]
        default: accepted
author:
  - relayguard developers
"""

EXAMPLES = r"""
- name: The application servers may still relay, and mail for corp.example is still accepted
  smtp_mail_flow:
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
"""

RETURN = r"""
checks:
  description: One result per check.
  returned: always
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

import smtplib
from typing import Any

from ansible.module_utils.basic import AnsibleModule

try:
    from relayguard.probe.targets import TargetError, parse_target

    IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported to the user
    IMPORT_ERROR = str(exc)

CHECK_SPEC = {
    "name": {"type": "str", "required": True},
    "mail_from": {"type": "str", "default": ""},
    "rcpt_to": {"type": "str", "required": True},
    "authenticate": {"type": "bool", "default": False},
    "expect": {"type": "str", "choices": ["accepted", "refused"], "default": "accepted"},
}

ARGUMENT_SPEC = {
    "target": {"type": "str", "required": True},
    "port": {"type": "int", "default": 25},
    "source_address": {"type": "str"},
    "helo_name": {"type": "str", "default": "relayguard.invalid"},
    "timeout": {"type": "float", "default": 30},
    "auth_username": {"type": "str"},
    "auth_password": {"type": "str", "no_log": True},
    "checks": {"type": "list", "elements": "dict", "required": True, "options": CHECK_SPEC},
}


def run_check(p: dict[str, Any], host: str, port: int, check: dict[str, Any]) -> dict[str, Any]:
    """One SMTP session: EHLO, [AUTH], MAIL, RCPT, RSET, QUIT; the RCPT reply judged."""
    source = (p["source_address"], 0) if p["source_address"] else None
    result: dict[str, Any] = {
        "name": check["name"],
        "rcpt_to": check["rcpt_to"],
        "expect": check["expect"],
        "code": None,
        "reply": "",
    }
    try:
        with smtplib.SMTP(timeout=p["timeout"], source_address=source) as smtp:
            smtp.connect(host, port)
            smtp.ehlo(p["helo_name"])
            if check["authenticate"]:
                smtp.login(p["auth_username"] or "", p["auth_password"] or "")
            code, reply = smtp.mail(check["mail_from"])
            if 200 <= code < 300:
                code, reply = smtp.rcpt(check["rcpt_to"])
            result["code"], result["reply"] = code, reply.decode("utf-8", "replace")
            smtp.rset()
    except smtplib.SMTPAuthenticationError as exc:
        result["code"], result["reply"] = exc.smtp_code, f"AUTH refused: {exc.smtp_code}"
    except (OSError, smtplib.SMTPException) as exc:
        result["reply"] = f"session failed: {exc.__class__.__name__}: {exc}"
    accepted = result["code"] is not None and 200 <= result["code"] < 300
    result["passed"] = accepted == (check["expect"] == "accepted")
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        required_by={"auth_password": "auth_username"},
    )
    if IMPORT_ERROR is not None:
        module.fail_json(
            msg=f"the relayguard package is required on the controller: {IMPORT_ERROR}"
        )
    p = module.params
    try:
        target = parse_target(p["target"], p["port"])
    except TargetError as exc:
        module.fail_json(msg=f"target: {exc}")
    if any(c["authenticate"] for c in p["checks"]) and not p["auth_username"]:
        module.fail_json(msg="auth_username is required by the checks with authenticate=true")
    results = [run_check(p, target.host, target.port, c) for c in p["checks"]]
    failed = [r for r in results if not r["passed"]]
    if failed:
        module.fail_json(
            msg="; ".join(
                f"{r['name']}: expected {r['expect']}, RCPT TO:<{r['rcpt_to']}> got "
                f"{r['code'] or 'no reply'} {r['reply']}".rstrip()
                for r in failed
            ),
            checks=results,
        )
    module.exit_json(changed=False, checks=results)


if __name__ == "__main__":
    main()
