#!/usr/bin/python
"""Documentation of the action plugin batch_result (plugins/action/batch_result.py); the
action runs on the controller and never runs this file."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: batch_result
short_description: Internal - one host's changed, failed, msg and diff from a batch call's result
version_added: "0.2.0"
description:
  - B(Internal to the roles of this collection); its options may change without notice.
  - secure-relay.yml calls M(relayguard.mail.exchange_batch),
    M(relayguard.mail.relay_reachability), M(relayguard.mail.smtp_relay_probe) and
    M(relayguard.mail.smtp_mail_flow) once per batch (C(run_once), C(delegate_to) C(localhost)),
    and Ansible credits such a task's result to the first host of the batch only.
  - Run on every host right after the batch call, this action takes this host's entry of the
    registered batch result and returns it as this host's own C(changed), C(failed), C(msg)
    and C(diff), so PLAY RECAP, C(--check --diff), the junit callback and AWX host summaries
    say what happened to each host. The batch task itself is C(changed_when) V(false).
  - Each task per host costs every host a forked worker, so one call also does the bookkeeping
    of the steps around it. O(kind=exchange_apply) returns, beside the host's own result of an
    M(relayguard.mail.exchange_batch) apply, its record after the change (RV(relay_applied),
    RV(backup_file), RV(changes), RV(patch)) and fails a host whose missing fix no configured
    package closes (O(unclosable)). O(flow_var) judges the host's legitimate-mail sessions
    together with its probe verdict after a change.
  - An action plugin only, on the controller; no module process, no connection to the host.
author:
  - relayguard developers (@relayguard)
attributes:
  check_mode:
    support: full
    description: Reads a registered result; in check mode C(changed) is what would change.
  diff_mode:
    support: full
    description: Returns this host's diffs of an M(relayguard.mail.exchange_batch) result.
  platform:
    support: full
    platforms: all
    description: Runs on the controller; reads no host.
options:
  result:
    description:
      - The registered result of the batch task. One of O(result) and O(result_var) is required.
    type: raw
  result_var:
    description:
      - The name of the variable the batch task registered, read as it is instead of
        templated into this task's arguments - for a large batch, templating the whole result
        for every host costs each host the size of the batch.
    type: str
  kind:
    description: The module of the batch task.
    type: str
    required: true
    choices: [exchange_batch, exchange_apply, relay_reachability, smtp_relay_probe, smtp_mail_flow]
  key:
    description:
      - This host's key in O(result) - the inventory name (default), or for
        V(smtp_relay_probe) the probed target.
    type: str
  keys:
    description:
      - For O(kind=smtp_relay_probe), every target of this host (its ports) at once, instead
        of O(key); the host fails if any one of them does, and RV(record) is the list of their
        entries.
    type: list
    elements: str
  step:
    description:
      - For an O(kind=exchange_batch) apply result, the step of the host's entry that this
        task reports; default the whole entry.
    type: str
    choices: [relay, patch]
  expect_verdict:
    description:
      - For O(kind=smtp_relay_probe), fail this host unless its verdict is this one.
    type: str
  return_record:
    description:
      - Return this host's entry as RV(record) also for O(kind=exchange_batch) (large - facts,
        exposure, plan -, so not by default); the other kinds always return it.
    type: bool
    default: false
  flow_var:
    description:
      - For O(kind=smtp_relay_probe) with O(keys), the name of the registered
        M(relayguard.mail.smtp_mail_flow) result whose sessions of this host are judged with its
        probe verdict - the host fails if its verdict is not O(expect_verdict) (named first) or
        if one of its sessions failed; RV(flow) is its sessions.
    type: str
  changes:
    description:
      - For O(kind=exchange_apply), the host's planned changes (each a dict with C(control));
        returned as RV(changes), each with C(applied).
    type: list
    elements: dict
  patch:
    description:
      - For O(kind=exchange_apply), the host's patch level (C(required), C(installed),
        C(compliant)); returned as RV(patch) with the version read after the install.
    type: dict
  unclosable:
    description:
      - For O(kind=exchange_apply), why the host's missing fix cannot be closed by this run (no
        configured package for its build, or one that stops short); the host fails with it
        after the relay change (unless its apply failed first).
    type: str
notes:
  - Facts are not set here (an action's facts rank below C(set_fact)); the host's record reads
    the registered result itself (secure-relay.yml registers the verdict after a change as
    C(relay_probe_after) - C(relay_after) is its worst port's entry - and an Exchange host's
    record after its change as C(exchange_remediate_mine), which the relay role's defaults
    C(relay_changes), C(relay_patch), C(relay_applied) and C(relay_backup) read). The baseline
    probe needs no task per host, as C(smtp_relay_probe) with C(groups) names each host's worst
    entry.
"""

EXAMPLES = r"""
- name: Detect the batch's Exchange hosts (once, on the controller)
  relayguard.mail.exchange_batch:
    action: assess
    hosts: "{{ requests }}"
  run_once: true
  delegate_to: localhost
  changed_when: false
  register: batch

- name: This host's own result
  relayguard.mail.batch_result:
    result_var: batch
    kind: exchange_batch
"""

RETURN = r"""
changed:
  description: Whether this host changed (or, in check mode, would change).
  returned: always
  type: bool
msg:
  description: This host's message - the failure, or what its entry says.
  returned: always
  type: str
diff:
  description: This host's diffs (exchange_batch with C(--diff)).
  returned: when there is one
  type: list
  elements: dict
record:
  description:
    - This host's entry of the batch result (for smtp_mail_flow, its sessions; with O(keys),
      the list of its targets' entries).
  returned: always, except for the exchange kinds without O(return_record)
  type: raw
worst:
  description:
    - For O(kind=smtp_relay_probe) with O(keys), the index in RV(record) of the host's worst
      port (open, else inconclusive, else the first), whose verdict is the host's.
  returned: with O(kind=smtp_relay_probe) and O(keys)
  type: int
flow:
  description:
    - With O(flow_var), this host's mail-flow sessions (C(sessions)), whether one failed
      (C(failed)) and the message (C(msg)); only C(skipped) and C(msg) when the mail-flow check
      was skipped.
  returned: with O(flow_var)
  type: dict
relay_applied:
  description:
    - For O(kind=exchange_apply), whether the relay step changed the host and did not fail (a
      failed relay step put the host back itself); never in check mode.
  returned: with O(kind=exchange_apply)
  type: bool
backup_file:
  description: For O(kind=exchange_apply), the backup the relay step took on the controller.
  returned: with O(kind=exchange_apply)
  type: str
changes:
  description:
    - For O(kind=exchange_apply), O(changes) each with C(applied) - the patch change by the
      install, the others by the relay step.
  returned: with O(kind=exchange_apply)
  type: list
  elements: dict
patch:
  description:
    - For O(kind=exchange_apply), O(patch) with the version read after the install
      (C(installed)) and whether it reaches the required one (C(compliant)).
  returned: with O(kind=exchange_apply)
  type: dict
options:
  description: For O(kind=smtp_relay_probe) with O(keys), the probe's options (the report's).
  returned: with O(kind=smtp_relay_probe) and O(keys)
  type: dict
"""
