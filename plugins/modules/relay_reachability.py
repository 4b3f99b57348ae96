#!/usr/bin/python
"""Ansible module relay_reachability: TCP reachability of a batch's SMTP and management
endpoints from the controller, in one call (thin layer over relayguard.reachability)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: relay_reachability
short_description: Check from the controller that each host's SMTP and management ports answer
version_added: "0.1.0"
description:
  - This module is internal to relayguard.mail.secure_relay; its interface may change.
  - Runs on the controller once per batch (C(run_once), C(delegate_to) C(localhost)) and opens
    one TCP connection to every endpoint of O(hosts) at once, closing it at once - nothing is
    sent. secure-relay.yml's preflight uses it instead of one C(wait_for) per host and port.
  - Every endpoint is validated before any connection is made; a bad one fails the task naming
    the host and the option.
author:
  - relayguard developers (@relayguard)
requirements:
  - The relayguard Python package on the controller (see meta/ee-requirements.txt).
attributes:
  check_mode:
    support: full
    description: Only connects; check mode runs it unchanged.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
  platform:
    support: full
    platforms: posix
    description: Runs on the controller (C(delegate_to) C(localhost)).
options:
  hosts:
    description: The hosts of the batch.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The inventory name; the key of RV(hosts).
        type: str
        required: true
      smtp:
        description: The SMTP endpoint, V(host:port) or V([IPv6]:port); port 25 when none is given.
        type: str
        required: true
      management:
        description: The management endpoint (WinRM, SSH), V(host:port); omit when there is none
          to check (a local connection).
        type: str
  timeout:
    description: Seconds to wait for each connection.
    type: float
    default: 10
"""

EXAMPLES = r"""
- name: Reachability of the batch
  relayguard.mail.relay_reachability:
    hosts:
      - name: ex1
        smtp: 192.0.2.25:25
        management: 192.0.2.25:5986
  run_once: true
  delegate_to: localhost
  register: reach
"""

RETURN = r"""
hosts:
  description: Per inventory name, C(smtp) and C(management) (null when not asked), each with
    C(endpoint), C(reachable) and C(error) (why not); and C(problem), what does not answer
    (the endpoint as given and the cause), null when everything asked answers.
  returned: always
  type: dict
  sample:
    ex1:
      smtp: {endpoint: "192.0.2.25:25", reachable: true, error: null}
      management: {endpoint: "192.0.2.25:5986", reachable: false, error: "Connection refused"}
      problem: "management channel 192.0.2.25:5986 does not answer (Connection refused)"
"""

import traceback
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from relayguard.probe.targets import TargetError
    from relayguard.reachability import endpoint, reach_all

    IMPORT_ERROR = None
except ImportError:  # reported by main() once the module can fail properly
    IMPORT_ERROR = traceback.format_exc()

RELAYGUARD = "relayguard (the relayguard Python engine, see meta/ee-requirements.txt)"

# Static: DOCUMENTATION describes exactly this (validate-modules and
# tests/playbook/test_module_docs.py compare the two, suboptions included).
ARGUMENT_SPEC: dict[str, Any] = {
    "hosts": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "name": {"type": "str", "required": True},
            "smtp": {"type": "str", "required": True},
            "management": {"type": "str"},
        },
    },
    "timeout": {"type": "float", "default": 10},
}


def main(module_class: Callable[..., Any] = AnsibleModule) -> None:
    """The module; its action plugin runs it in the controller's worker with
    plugin_utils/controller_module.ControllerModule as `module_class`."""
    module = module_class(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib(RELAYGUARD), exception=IMPORT_ERROR)
    timeout = module.params["timeout"]
    if not 0 < timeout <= 3600:
        module.fail_json(msg=f"timeout: {timeout!r} is not between 0 and 3600 seconds")
    wanted: list[tuple[str, str, Any]] = []
    try:
        for host in module.params["hosts"]:
            for kind, port in (("smtp", 25), ("management", None)):
                if host[kind] is not None:
                    field = f"hosts[{host['name']}].{kind}"
                    wanted.append((host["name"], kind, endpoint(field, host[kind], port)))
    except TargetError as exc:
        module.fail_json(msg=str(exc))
    found = reach_all([entry[2] for entry in wanted], timeout)
    hosts: dict[str, dict[str, Any]] = {
        h["name"]: {"smtp": None, "management": None} for h in module.params["hosts"]
    }
    for (name, kind, _target), reach in zip(wanted, found, strict=True):
        hosts[name][kind] = asdict(reach)
    for host in module.params["hosts"]:
        hosts[host["name"]]["problem"] = problem(host, hosts[host["name"]])
    module.exit_json(changed=False, hosts=hosts)


def problem(asked: dict[str, Any], found: dict[str, Any]) -> str | None:
    """What of a host does not answer, the endpoint as the inventory gave it: SMTP first (a
    host whose SMTP is down is not probed whatever its management channel does)."""
    for kind, label in (("smtp", "SMTP"), ("management", "management channel")):
        reach = found.get(kind)
        if reach is not None and not reach["reachable"]:
            return f"{label} {asked[kind]} does not answer ({reach['error'] or 'no answer'})"
    return None


if __name__ == "__main__":
    main()
