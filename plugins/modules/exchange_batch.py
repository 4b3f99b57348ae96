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
  - This module is internal to relayguard.mail.secure_relay; its interface may change. Use
    M(relayguard.mail.exchange_facts), M(relayguard.mail.exchange_relay) and
    M(relayguard.mail.exchange_patch) in your own playbooks.
  - Runs on the controller once per batch (C(run_once), C(delegate_to) C(localhost)) and does,
    for every host of O(hosts) at once (at most O(max_workers) at a time, each over its own
    WinRM session), exactly what the single-host modules do - M(relayguard.mail.exchange_facts)
    for O(action=assess), M(relayguard.mail.exchange_relay) in check mode for O(action=plan),
    M(relayguard.mail.exchange_relay) then M(relayguard.mail.exchange_patch) for
    O(action=apply); O(action=detect) is assess then plan in one call (the plan only for a
    host that could be assessed, made from the documents the assessment read rather than by
    reading the host again; C({computer_name}) in a host's C(relay_connector_name) is the
    computer name assessed).
  - One module process for the batch instead of one per host and task - on a fleet, the
    per-host process was most of the playbook's time (docs/performance.md).
  - A host's failure is that host's result (C(failed) in its RV(hosts) entry, with the message
    and, for apply, whether the host was restored); the task itself fails only on bad options. Every
    option of every host is validated before any connection is made.
  - O(action=apply) installs the patch of a host only when its relay step succeeded. Check mode
    plans both and changes nothing. The lock per host of exchange_relay and exchange_patch
    holds here too.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
author:
  - relayguard developers (@relayguard)
requirements:
  - The relayguard Python package, pywinrm and pyspnego on the controller.
attributes:
  check_mode:
    support: full
    details: assess and plan only read; apply in check mode plans and changes nothing.
  diff_mode:
    support: full
    details: For apply, one diff per host (relay configuration, then the patched binary).
  platform:
    support: full
    platforms: windows
    details: Runs on the controller and reaches the Exchange servers over WinRM.
options:
  action:
    description: V(assess) reads facts and judges them, V(plan) plans the relay changes
      (read only), V(detect) does both for each host in one call (read only), V(apply) changes
      the hosts.
    type: str
    choices: [assess, plan, detect, apply]
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
          - The options of M(relayguard.mail.exchange_relay) for this host, the WinRM
            connection included (the vocabulary of M(relayguard.mail.exchange_facts)); the
            password is never logged or returned. For O(action=assess) only the connection
            options are used.
        type: dict
        required: true
        suboptions:
          winrm_host:
            description: Address or DNS name of the host's WinRM endpoint.
            type: str
            required: true
            aliases: [host]
          winrm_port:
            description: WinRM port; default 5986 with V(https), 5985 with V(http).
            type: int
            aliases: [port]
          winrm_scheme:
            description: URI scheme of the endpoint, as C(ansible_winrm_scheme).
            type: str
            choices: [https, http]
            default: https
          winrm_transport:
            description:
              - WinRM authentication, as C(ansible_winrm_transport). V(basic) is refused over
                plain HTTP; V(certificate) and V(credssp) need HTTPS.
            type: str
            choices: [ntlm, kerberos, credssp, certificate, basic]
            default: ntlm
            aliases: [winrm_auth, transport]
          winrm_username:
            description: Account for WinRM (C(ansible_user)).
            type: str
            aliases: [username]
          winrm_password:
            description: Its password (C(ansible_password)). Never logged or returned.
            type: str
            aliases: [password]
          validate_certs:
            description: Validate the server certificate; turning this off is warned about.
            type: bool
            default: true
            aliases: [winrm_validate_certs]
          ca_path:
            description: CA bundle (PEM file on the controller) that validates the server
              certificate; default the system bundle.
            type: path
            aliases: [winrm_ca_trust_path, ca_trust_path]
          winrm_connect_timeout:
            description: Seconds to wait for the TCP and TLS connection.
            type: float
            default: 10
            aliases: [connect_timeout]
          winrm_operation_timeout:
            description: WS-Management OperationTimeout of each request, whole seconds.
            type: int
            default: 20
            aliases: [operation_timeout]
          winrm_read_timeout:
            description: HTTP read timeout of each request, whole seconds; default the
              operation timeout + 10.
            type: int
          winrm_command_timeout:
            description: Bound on waiting for one payload, in seconds.
            type: float
            default: 600
            aliases: [command_timeout]
          channel:
            description: V(winrm), V(smb) for an Exchange 5.5 host on Windows NT 4.0 or 2000,
              which have no WinRM, or V(via-management-host) for such a host reached through
              a Windows management host (as in exchange_relay).
            type: str
            choices: [winrm, smb, via-management-host]
            default: winrm
          smb_port:
            description: SMB port of the host when O(hosts[].relay.channel=smb).
            type: int
            default: 445
          management_host:
            description: The Windows management host when
              O(hosts[].relay.channel=via-management-host).
            type: str
          management_port:
            description: WinRM port of the management host.
            type: int
          management_username:
            description: The management host's WinRM account.
            type: str
          management_password:
            description: The password of O(hosts[].relay.management_username); never logged.
            type: str
          smtp_wait:
            description: After a restart, an install or a reboot, wait for the SMTP greeting.
            type: bool
            default: true
          smtp_port:
            description: SMTP port to wait for.
            type: int
            default: 25
          smtp_timeout:
            description: How long to wait for the SMTP greeting, in seconds.
            type: float
            default: 300
          state:
            description: V(present) enforces the desired relay state, V(restored) puts back
              the configuration saved in C(backup_file).
            type: str
            choices: [present, restored]
            default: present
          platform:
            description: Which Exchange the server runs; V(auto) detects it.
            type: str
            choices: [auto, exchange55, modern]
            default: auto
          relay_allowed_networks:
            description: Networks (CIDR) whose clients may relay without authentication.
            type: list
            elements: str
            default: []
          relay_authenticated:
            description: Whether authenticated clients may relay (Exchange 5.5).
            type: bool
            default: false
          inbound_domains:
            description: The organisation's own domains, accepted from anyone; required
              for V(plan) and V(apply).
            type: list
            elements: str
          reject_unknown_recipients:
            description: Turn recipient validation on (2013 and later).
            type: bool
            default: true
          relay_connector_name:
            description: Name of the dedicated relay connector (2013 and later).
            type: str
          relay_connector_bindings:
            description: Bindings of the dedicated relay connector.
            type: list
            elements: str
            default: ["0.0.0.0:25"]
          relay_domains:
            description: Relay-type accepted domains that may stay.
            type: list
            elements: str
            default: []
          backup_file:
            description: Controller path of the backup (written before the first change,
              or put back with C(state=restored)).
            type: str
          reports_dir:
            description: Directory of relayguard's run reports on the controller.
            type: str
            default: reports
          run_id:
            description: Name of this run (a directory under C(reports_dir)).
            type: str
          host_name:
            description: Name of the host in the backup path.
            type: str
      patch_policy:
        description:
          - For O(action=assess), the CUs of Exchange 2013 and later a compliant build may be on,
            each at its newest update - V(latest) the newest CU only, V(cu_n_minus_1) also the
            CU before it; only CUs Microsoft supports (as the patch_policy option of
            M(relayguard.mail.exchange_facts)).
        type: str
        choices: [latest, cu_n_minus_1]
        default: latest
      patch_packages:
        description:
          - For O(action=detect), the site's patch packages, as C(relay_exchange_patch_packages)
            (each with C(file), C(sha256), C(file_version), C(applies_to), C(product)); the
            host's result gets its C(record) computed with them (RV(hosts)).
        type: list
        elements: dict
        default: []
      patch_reboot:
        description:
          - For O(action=detect), whether the package C(record.exchange_patch) names may restart
            the server (C(relay_exchange_patch_reboot)).
        type: bool
        default: false
      patch:
        description:
          - For O(action=apply), the options of M(relayguard.mail.exchange_patch) besides the
            connection (which comes from O(hosts[].relay)); omit when the host needs no
            patch.
        type: dict
        suboptions:
          package_path:
            description: The package on the server or on a share (C(.msp) or C(.exe)).
              Exactly one of this and C(package_src).
            type: str
          package_src:
            description: The package on the controller, uploaded over WinRM.
            type: str
          sha256:
            description: Expected SHA-256 of the package.
            type: str
            required: true
          target_version:
            description: The file version the package gives the binary.
            type: str
            required: true
          minimum_version:
            description: The fix level required; default C(target_version).
            type: str
          installer_arguments:
            description: Quiet switches for an C(.exe) package.
            type: list
            elements: str
          reboot:
            description: Restart the server when the installer asks for it.
            type: bool
            default: false
          remote_temp_dir:
            description: Directory on the server for an uploaded package.
            type: str
            default: C:\Windows\Temp
  max_workers:
    description: At most this many hosts at once.
    type: int
    default: 16
notes:
  - Exchange 5.5's IMS is stopped and started, and 2013+ services restarted, by the apply of
    each host; the batch's hosts are changed in parallel, so size the batch (C(serial)) for
    what may be down at once.
seealso:
  - module: relayguard.mail.exchange_facts
  - module: relayguard.mail.exchange_relay
  - module: relayguard.mail.exchange_patch
"""

EXAMPLES = r"""
- name: Detect every Exchange server of the batch at once
  relayguard.mail.exchange_batch:
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
  relayguard.mail.exchange_batch:
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
      in check mode (C(changes), C(platform) ...); O(action=detect) - assess's result and
      plan's under C(plan) (null when the host could not be assessed; for Exchange 5.5 the
      plan is made without the relay connector name), C(connector) (the relay connector's name
      as planned) and C(record), what secure-relay.yml keeps of the host (C(platform), C(build)
      with its explanation, C(patch) - required, installed, compliant -, C(changes) with the
      patch, C(rules), C(exchange_patch) - the package apply installs, or null -, C(package),
      C(unclosable) - why a missing fix no configured package closes, or null),
      or for a host whose assessment or plan failed C(error), its messages;
      O(action=apply) - C(relay) and C(patch), each
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

import traceback
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.relayguard.mail.plugins.module_utils.exchange_options import (
    PATCH_OPTIONS_SPEC,
    PATCH_POLICY_SPEC,
    PATCH_RECORD_SPEC,
    RELAY_OPTIONS_SPEC,
)
from ansible_collections.relayguard.mail.plugins.module_utils.winrm_options import (
    SMTP_WAIT_SPEC,
    WINRM_CONNECTION_SPEC,
)

try:
    from relayguard.exchange import batch, connection, record
    from relayguard.validate import InputError

    IMPORT_ERROR = None
except ImportError:  # reported by main() once the module can fail properly
    IMPORT_ERROR = traceback.format_exc()

RELAYGUARD = "relayguard (the relayguard Python engine, see meta/ee-requirements.txt)"
ARGUMENT_SPEC: dict[str, Any] = {
    "action": {"type": "str", "choices": ["assess", "plan", "detect", "apply"], "required": True},
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
                "options": dict(WINRM_CONNECTION_SPEC, **SMTP_WAIT_SPEC, **RELAY_OPTIONS_SPEC),
            },
            "patch": {"type": "dict", "options": dict(PATCH_OPTIONS_SPEC)},
            **PATCH_POLICY_SPEC,
            **PATCH_RECORD_SPEC,
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


def _error(result: dict[str, Any]) -> str:
    """A failed host's messages: its own and its failed steps' (batch_result says the same)."""
    found = [str(result["msg"])] if result.get("msg") else []
    found += [
        str(part["msg"])
        for part in result.values()
        if isinstance(part, dict) and part.get("failed") and part.get("msg")
    ]
    return "; ".join(found) or "failed"


def _records(results: dict[str, dict[str, Any]], hosts: list[dict[str, Any]]) -> None:
    """Each assessed host's record (relayguard.exchange.record), with the site's packages;
    a host that failed gets its error instead, for secure-relay.yml to record it failed."""
    for host in hosts:
        result = results[host["name"]]
        if _says(result, "failed"):
            result["error"] = _error(result)
        elif result.get("facts"):
            result["record"] = record.detect_record(
                result,
                host["patch_packages"],
                reboot=host["patch_reboot"],
                connector=result.get("connector"),
            )


def main(module_class: Callable[..., Any] = AnsibleModule) -> None:
    """The module; its action plugin runs it in the controller's worker with
    plugin_utils/controller_module.ControllerModule as `module_class`."""
    module = module_class(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib(RELAYGUARD), exception=IMPORT_ERROR)
    p = module.params
    requests = [
        batch.HostRequest(h["name"], h["relay"], h["patch"], h["patch_policy"]) for h in p["hosts"]
    ]
    factory = connection.client_for
    work = {
        "assess": lambda r: batch.assess_host(r, factory),
        "plan": lambda r: batch.plan_host(r, factory),
        "detect": lambda r: batch.detect_host(r, factory),
        "apply": lambda r: batch.apply_host(r, factory, check_mode=module.check_mode),
    }[p["action"]]
    try:
        results = batch.run_batch(requests, work, p["max_workers"])
    except InputError as exc:
        module.fail_json(msg=str(exc))
    if p["action"] == "detect":
        _records(results, p["hosts"])
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
