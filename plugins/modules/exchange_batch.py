#!/usr/bin/python
"""Ansible module exchange_batch: exchange_facts, exchange_relay and exchange_patch for a whole
batch of Exchange hosts in one call (thin layer over relayguard.exchange.batch)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: exchange_batch
short_description: Detect, plan or remediate a batch of Exchange servers over WinRM in one call
version_added: "0.1.0"
description:
  - Runs on the controller once per batch (C(run_once), C(delegate_to) C(localhost)) and does,
    for every host of O(hosts) at once (at most O(max_workers) at a time, each over its own
    WinRM session), exactly what the single-host modules do - C(exchange_facts) for
    O(action=assess), C(exchange_relay) in check mode for O(action=plan), C(exchange_relay)
    then C(exchange_patch) for O(action=apply).
  - One module process for the batch instead of one per host and task - on a fleet, the
    per-host process was most of the playbook's time (docs/performance.md).
  - A host's failure is that host's result (RV(hosts.<name>.failed), with the message and, for
    apply, whether the host was restored); the task itself fails only on bad options. Every
    option of every host is validated before any connection is made.
  - O(action=apply) installs the patch of a host only when its relay step succeeded. Check mode
    plans both and changes nothing. The lock per host of exchange_relay and exchange_patch
    holds here too.
author:
  - relayguard
requirements:
  - The relayguard Python package, pywinrm and pyspnego on the controller.
attributes:
  check_mode:
    support: full
    description: assess and plan only read; apply in check mode plans and changes nothing.
  diff_mode:
    support: full
    description: For apply, one diff per host (relay configuration, then the patched binary).
options:
  action:
    description: V(assess) reads facts and judges them, V(plan) plans the relay changes
      (read only), V(apply) changes the hosts.
    type: str
    choices: [assess, plan, apply]
    required: true
  hosts:
    description:
      - The hosts of the batch.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The inventory name; the key of RV(hosts).
        type: str
        required: true
      relay:
        description:
          - The options of C(exchange_relay) for this host, the WinRM connection included
            (C(winrm_host), C(winrm_password) ... - see C(ansible-doc exchange_relay)); the
            password is never logged or returned. For O(action=assess) only the connection
            options are used.
        type: dict
        required: true
      patch:
        description:
          - For O(action=apply), the options of C(exchange_patch) besides the connection
            (C(package_src), C(sha256), C(target_version) ... - see
            C(ansible-doc exchange_patch)); omit when the host needs no patch.
        type: dict
  max_workers:
    description: At most this many hosts at once.
    type: int
    default: 16
notes:
  - Exchange 5.5's IMS is stopped and started, and 2013+ services restarted, by the apply of
    each host; the batch's hosts are changed in parallel, so size the batch (C(serial)) for
    what may be down at once.
seealso:
  - module: exchange_facts
  - module: exchange_relay
  - module: exchange_patch
"""

EXAMPLES = r"""
- name: Detect every Exchange server of the batch at once
  exchange_batch:
    action: assess
    hosts:
      - name: ex1
        relay:
          winrm_host: ex1.corp.example
          winrm_username: CORP\relayguard
          winrm_password: "{{ vault_winrm_password }}"
      - name: ex2
        relay:
          winrm_host: ex2.corp.example
          winrm_username: CORP\relayguard
          winrm_password: "{{ vault_winrm_password }}"
  run_once: true
  delegate_to: localhost
  register: detected

- name: Close the relays of the batch and install the fixes
  exchange_batch:
    action: apply
    hosts:
      - name: ex1
        relay:
          winrm_host: ex1.corp.example
          winrm_username: CORP\relayguard
          winrm_password: "{{ vault_winrm_password }}"
          relay_allowed_networks: [10.1.2.0/24]
          inbound_domains: [corp.example]
          relay_connector_name: Relay EX1
        patch:
          package_src: files/Exchange2019-CU14-SU.exe
          sha256: F3BF96D45099519109979D90B9D50BE0D42819EA83A5BA4FFF1917235816237B
          target_version: 15.2.1544.14
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
hosts:
  description:
    - Per inventory name, the host's result. O(action=assess) - C(facts), C(exposure),
      C(patch) as C(exchange_facts) returns them; O(action=plan) - what C(exchange_relay) returns
      in check mode (C(changes), C(platform) ...); O(action=apply) - C(relay) and C(patch), each
      what the single-host module returns (C(patch) null when not asked for or not reached).
    - Each result (and each of C(relay) and C(patch)) has C(failed), and C(msg) when it failed.
  returned: always
  type: dict
  sample:
    ex1:
      failed: false
      facts: {platform: exchange2019, version: 15.2.1544.4}
failed_hosts:
  description: The inventory names whose result failed.
  returned: always
  type: list
  elements: str
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

try:
    from relayguard.exchange import batch, connection
    from relayguard.exchange.patch_task import PATCH_ARGUMENT_SPEC
    from relayguard.exchange.relay_task import RELAY_ARGUMENT_SPEC
    from relayguard.validate import InputError

    IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported to the user
    IMPORT_ERROR = str(exc)
    RELAY_ARGUMENT_SPEC = PATCH_ARGUMENT_SPEC = {}

ARGUMENT_SPEC: dict[str, Any] = {
    "action": {"type": "str", "choices": ["assess", "plan", "apply"], "required": True},
    "hosts": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "name": {"type": "str", "required": True},
            # the same validation, defaults and no_log as exchange_relay and exchange_patch
            "relay": {
                "type": "dict",
                "required": True,
                "options": {
                    **RELAY_ARGUMENT_SPEC,
                    **({} if IMPORT_ERROR else connection.CONNECTION_ARGUMENT_SPEC),
                },
            },
            "patch": {"type": "dict", "options": PATCH_ARGUMENT_SPEC},
        },
    },
    "max_workers": {"type": "int", "default": 16},
}


def _says(result: dict[str, Any], key: str) -> bool:
    """`key` (failed, changed) of a host's result or of one of its steps (relay, patch)."""
    return bool(result.get(key)) or any(
        isinstance(part, dict) and part.get(key) for part in result.values()
    )


def _diffs(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    diffs = []
    for name, result in results.items():
        for step in ("relay", "patch"):
            diff = (result.get(step) or {}).pop("diff", None)
            if diff:
                diffs.append(
                    {**diff, "before_header": f"{name} {step}", "after_header": f"{name} {step}"}
                )
    return diffs


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if IMPORT_ERROR is not None:
        module.fail_json(
            msg=f"the relayguard package is required on the controller: {IMPORT_ERROR}"
        )
    p = module.params
    requests = [batch.HostRequest(h["name"], h["relay"], h["patch"]) for h in p["hosts"]]
    factory = connection.client_for
    work = {
        "assess": lambda r: batch.assess_host(r, factory),
        "plan": lambda r: batch.plan_host(r, factory),
        "apply": lambda r: batch.apply_host(r, factory, check_mode=module.check_mode),
    }[p["action"]]
    try:
        results = batch.run_batch(requests, work, p["max_workers"])
    except InputError as exc:
        module.fail_json(msg=str(exc))
    diffs = _diffs(results)
    for result in results.values():
        for step in ("relay", "patch"):
            for warning in (result.get(step) or {}).get("warnings", []):
                module.warn(warning)
    output: dict[str, Any] = {
        "changed": any(_says(r, "changed") for r in results.values()),
        "hosts": results,
        "failed_hosts": sorted(n for n, r in results.items() if _says(r, "failed")),
    }
    if module._diff and diffs:
        output["diff"] = diffs
    module.exit_json(**output)


if __name__ == "__main__":
    main()
