#!/usr/bin/python
"""Ansible module exchange_relay: close an Exchange server's open relay (thin layer).

Arguments here; validation, reading, planning, backup, apply, rollback and restore live in
relayguard.exchange (desired, current, plan, apply). Runs on the controller and reaches the
server over WinRM.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: exchange_relay
short_description: Close an Exchange server's open relay, with plan, backup and rollback
version_added: "0.1.0"
description:
  - Runs on the controller (delegate the task to C(localhost)) and talks to one Exchange
    server over WinRM. Reads the relay configuration, plans the changes as a pure function of
    what it read and the desired state, saves the configuration on the controller before the
    first write, applies the changes one step at a time in a safe order, reads again and
    checks that nothing is left to change.
  - If a step fails, or the host does not match the plan afterwards, the module puts back
    everything it changed (from the backup) and fails saying what happened and whether the
    host was restored.
  - Exchange 5.5 (KB Q193922, Q196626, Q169683) - routing restrictions through C(RelayFlags)
    (allow list, plus authenticated clients when O(relay_authenticated); a deny list in use is
    kept, the local-IP grant is dropped) and C(RelayAllowList) as C(net;mask) lines from
    O(relay_allowed_networks); "Reroute incoming SMTP mail" on with every O(inbound_domains)
    accepted as inbound; then MSExchangeIMC is restarted (it reads its parameters at start) and
    the module waits until SMTP answers again.
  - Exchange 2013, 2016, 2019 and Subscription Edition - a dedicated receive connector
    O(relay_connector_name) whose C(RemoteIPRanges) are exactly O(relay_allowed_networks)
    holds the only anonymous C(ms-Exch-SMTP-Accept-Any-Recipient); that right is removed from
    every other connector; C(ExternalAuthoritative) is removed from connectors whose remote
    ranges reach beyond the allowed networks; every O(inbound_domains) is an Authoritative
    accepted domain; an accepted domain C(*) and relay-type domains not in O(inbound_domains)
    or O(relay_domains) are removed; recipient validation is turned on when
    O(reject_unknown_recipients).
  - With O(state=restored), puts the configuration saved in O(backup_file) back exactly.
  - Every option is validated before any WinRM call; a bad value fails naming the option and
    the value, and nothing is changed.
extends_documentation_fragment:
  - relayguard.mail.winrm
  - ansible.builtin.action_common_attributes
author:
  - relayguard developers (@relayguard)
requirements:
  - The relayguard package and pywinrm on the controller.
  - WinRM on the server (Windows Server 2003 R2 or later; a real Exchange 5.5 host is reached
    over WinRM only on a later OS or through a management host).
attributes:
  check_mode:
    support: full
    details: Reads and plans only; RV(changes) is the plan, C(changed) whether it is empty.
  diff_mode:
    support: full
    details: Before and after of every changed control.
  platform:
    support: full
    platforms: windows
    details: Runs on the controller and reaches the Exchange server over WinRM.
options:
  state:
    description:
      - V(present) enforces the desired relay state.
      - V(restored) puts back the configuration saved in O(backup_file).
    type: str
    choices: [present, restored]
    default: present
  platform:
    description: Which Exchange the server runs; V(auto) detects it (C(exchange.detect)).
    type: str
    choices: [auto, exchange55, modern]
    default: auto
  relay_allowed_networks:
    description:
      - Networks (CIDR, host bits clear) whose clients may relay without authentication.
        IPv4 only on Exchange 5.5.
    type: list
    elements: str
    default: []
  relay_authenticated:
    description:
      - Whether authenticated clients may relay (Exchange 5.5 C(RelayFlags) bit 8). On 2013
        and later authenticated submission is not changed.
    type: bool
    default: false
  inbound_domains:
    description: The organisation's own domains, accepted from anyone (at least one).
    type: list
    elements: str
  reject_unknown_recipients:
    description:
      - Turn recipient validation on (2013 and later, 550 5.1.10 at RCPT). Exchange 5.5 cannot
        and says so in a warning.
    type: bool
    default: true
  relay_connector_name:
    description:
      - Name of the dedicated relay connector (2013 and later); required there when
        O(relay_allowed_networks) is not empty. Letters, digits, space and C(._()-).
    type: str
  relay_connector_bindings:
    description: Bindings of the dedicated relay connector when the module creates or fixes it.
    type: list
    elements: str
    default: ["0.0.0.0:25"]
  relay_domains:
    description:
      - Relay-type accepted domains (InternalRelay, ExternalRelay) that may stay, for example
        a shared address space. Any other relay-type domain is removed.
    type: list
    elements: str
    default: []
  backup_file:
    description:
      - Controller path of the backup. With O(state=present) where to write it (default
        C(<reports_dir>/<run_id>/backup/<host_name>.json)); with O(state=restored) the backup
        to put back.
    type: str
  reports_dir:
    description: Directory of relayguard's run reports on the controller.
    type: str
    default: reports
  run_id:
    description: Name of this run (a directory under O(reports_dir)); default the UTC time.
    type: str
  host_name:
    description: Name of the host in the backup path (usually C(inventory_hostname)).
    type: str
notes:
  - The backup is written (mode 0600) only when something changes; RV(backup_file) is null
    otherwise.
  - Where Exchange 5.5 stores the IMS Routing tab is unverified; when the read payload cannot
    read it, the module changes only the registry and warns that the Routing tab must be
    checked by hand.
seealso:
  - name: Allow anonymous relay on Exchange servers
    description: Microsoft's dedicated relay connector procedure.
    link: https://learn.microsoft.com/exchange/mail-flow/connectors/allow-anonymous-relay
  - name: RFC 2505
    description: Anti-Spam Recommendations for SMTP MTAs (BCP 30).
    link: https://www.rfc-editor.org/rfc/rfc2505
"""

EXAMPLES = r"""
- name: Close the relay; the application servers keep relaying through a dedicated connector
  relayguard.mail.exchange_relay:
    winrm_host: "{{ ansible_host }}"
    winrm_username: "{{ ansible_user }}"
    winrm_password: "{{ ansible_password }}"
    ca_path: "{{ ansible_winrm_ca_trust_path }}"
    relay_allowed_networks: [192.0.2.0/24]
    inbound_domains: [corp.example]
    relay_connector_name: "Relay {{ inventory_hostname }}"
    host_name: "{{ inventory_hostname }}"
    run_id: "{{ relayguard_run_id }}"
  delegate_to: localhost
  register: relay

- name: Roll back to the configuration saved before the change
  relayguard.mail.exchange_relay:
    state: restored
    backup_file: "{{ relay.backup_file }}"
    winrm_host: "{{ ansible_host }}"
    winrm_username: "{{ ansible_user }}"
    winrm_password: "{{ ansible_password }}"
  delegate_to: localhost
  when: relay.backup_file is truthy
"""

RETURN = r"""
platform:
  description: V(exchange55) or V(modern).
  returned: success
  type: str
  sample: modern
server:
  description: The server's name as Exchange reports it.
  returned: success
  type: str
  sample: EX19A
changes:
  description: The changes made (in check mode, to be made), in order.
  returned: success
  type: list
  elements: dict
  contains:
    control:
      description: The control, e.g. C(no-anonymous-relay), C(ims-relay-flags), C(restore).
      type: str
    target:
      description: The registry value, connector, domain or service changed.
      type: str
    before:
      description: Its value before.
      type: raw
    after:
      description: Its value after.
      type: raw
    reason:
      description: Why it changes.
      type: str
steps:
  description: The payload calls (op, parameters, summary), in the order they run.
  returned: success
  type: list
  elements: dict
applied:
  description: Summaries of the steps that ran.
  returned: success
  type: list
  elements: str
backup_file:
  description:
    - The backup written before the first change (null when nothing changed), or the one
      restored.
  returned: always
  type: str
  sample: reports/20261127T220000Z/backup/ex19a.json
restored_from:
  description: With O(state=restored), the backup put back.
  returned: when state is restored
  type: str
restored:
  description: On failure, whether the host was put back to its configuration before the run.
  returned: failure
  type: bool
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.relayguard.mail.plugins.module_utils.exchange_options import (
    RELAY_OPTIONS_SPEC,
)
from ansible_collections.relayguard.mail.plugins.module_utils.winrm_options import (
    SMTP_WAIT_SPEC,
    WINRM_CONNECTION_SPEC,
)

try:
    from relayguard.exchange.relay_task import TaskFailure, run_relay_task

    IMPORT_ERROR = None
except ImportError:  # reported by main() once the module can fail properly
    IMPORT_ERROR = traceback.format_exc()

RELAYGUARD = "relayguard (the relayguard Python engine, see meta/ee-requirements.txt)"


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(RELAY_OPTIONS_SPEC, **WINRM_CONNECTION_SPEC, **SMTP_WAIT_SPEC),
        required_if=[
            ("state", "restored", ["backup_file"]),
            ("state", "present", ["inbound_domains"]),
        ],
        supports_check_mode=True,
    )
    if IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib(RELAYGUARD), exception=IMPORT_ERROR)
    try:
        result = run_relay_task(module.params, check_mode=module.check_mode)
    except TaskFailure as exc:
        module.fail_json(msg=str(exc), **exc.details)
    # shown as Ansible warnings, not returned: exit_json(warnings=) is deprecated (2.19)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
