#!/usr/bin/python
"""Documentation of the action plugin relay_plan (plugins/action/relay_plan.py); the action
runs on the controller and never runs this file."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: relay_plan
short_description: Internal - secure-relay.yml's plan for a batch, each host's decision
version_added: "1.0.0"
description:
  - B(Internal to the roles of this collection); its options may change without notice.
  - The plan step of the relay role (C(roles/relay/tasks/plan.yml)), run once for the batch
    (C(run_once)). For each host of the batch whose status is still open, reads its record as
    the earlier steps left it - the preflight's (C(relay_preflight) - its change window, mode
    and C(relay_force)), the reachability check's, the baseline probe's
    (C(relay_probe_before_batch)), Exchange detection's (C(exchange_detect_batch)) and the facts
    a Postfix, Exim or Sendmail detection set (C(relay_detected), C(relay_changes),
    C(relay_patch)) - and decides whether the host needs a change, whether this run applies it
    (enforce mode, inside the change window or forced), and otherwise the status it ends with
    and why (compliant, audit_failed, failed).
  - A host without this run's baseline probe or detection (a C(--tags) that leaves a phase out)
    ends C(failed), the message naming the missing phase and the tags to run.
  - A host whose status is already set (its inputs refused, unreachable, its detection failed)
    or that failed in this batch (its rescue records why) is not planned.
  - An action plugin only, on the controller; no module process, no connection to a host.
author:
  - relayguard developers (@relayguard)
extends_documentation_fragment:
  - relayguard.mail.controller_reader
options: {}
notes:
  - Takes no options; it reads the batch's hosts' variables (C(hostvars)).
  - The relay role's defaults C(relay_status) and C(relay_error) read the registered result
    (C(relay_plan_batch.hosts[inventory_hostname])).
"""

EXAMPLES = r"""
- name: Decide for each host of the batch whether it needs a change and may be changed now
  relayguard.mail.relay_plan:
  run_once: true
  delegate_to: localhost
  register: relay_plan_batch
"""

RETURN = r"""
msg:
  description: How many hosts this run changes now, and how the others planned here end.
  returned: always
  type: str
hosts:
  description:
    - Each planned host's decision, by inventory name - C(needs_change), C(apply) (this run
      changes the host now), C(status) (open, V(''), when applied; else compliant,
      audit_failed or failed) and C(error) (why it ends so; empty when compliant).
  returned: always
  type: dict
"""
