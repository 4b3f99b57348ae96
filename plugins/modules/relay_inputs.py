#!/usr/bin/python
"""Documentation of the action plugin relay_inputs (plugins/action/relay_inputs.py); the
action runs on the controller and never runs this file."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: relay_inputs
short_description: Internal - check a host's secure-relay inputs, naming each problem
version_added: "0.2.0"
description:
  - B(Internal to the roles of this collection); its options may change without notice.
  - The first task of the relay role's preflight. Checks the host's variables against the
    argument spec of the role's C(preflight) entry point in
    C(roles/relay/meta/argument_specs.yml) (its types and choices) and the values a spec
    cannot judge - C(relay_mode), the host's family
    (C(relay_platform) or its inventory group), C(relay_allowed_networks) (CIDRs, required),
    C(relay_inbound_domains) (domain names, required; a leading dot for subdomains),
    C(relay_partner_domains), the change window (both HH:MM UTC or neither),
    C(relay_authenticated) (keep, true or false), C(relay_allow_removals), and for Exchange the
    WinRM credentials (C(ansible_user), and C(ansible_password) unless Kerberos or a
    certificate authenticates).
  - Fails the host with a message naming each problem; nothing is probed or changed. The
    password is read, never returned.
  - An action plugin only, on the controller; no module process, no connection to the host.
author:
  - relayguard developers (@relayguard)
extends_documentation_fragment:
  - relayguard.mail.controller_reader
options: {}
notes:
  - Takes no options; it reads the host's variables.
"""

EXAMPLES = r"""
- name: Check this host's inputs before anything is probed
  relayguard.mail.relay_inputs:
"""

RETURN = r"""
msg:
  description: What is wrong with the inputs (each problem), or that they are usable.
  returned: always
  type: str
family:
  description: The host's family (exchange, postfix, exim or sendmail) when its inputs are usable.
  returned: success
  type: str
argument_errors:
  description: The argument spec's errors, when the spec refused a variable.
  returned: when the argument spec refused a variable
  type: list
  elements: str
"""
