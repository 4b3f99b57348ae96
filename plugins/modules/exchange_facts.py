#!/usr/bin/python
"""Ansible module exchange_facts: detect an Exchange server over WinRM (runs on the controller).

Arguments here; collection, analysis and validation live in relayguard.exchange
(facts, analysis, connection, assess); the options are the static spec of
plugins/module_utils/winrm_options.py, the same WinRM vocabulary as every Exchange module.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: exchange_facts
short_description: Detect an Exchange server's build, patch status and relay exposure over WinRM
version_added: "0.1.0"
description:
  - Connects from the controller to one Exchange server over WinRM (HTTPS with the server
    certificate validated, NTLM by default) and runs relayguard's read-only PowerShell
    payloads on it; nothing on the server is changed.
  - Exchange 5.5 - the Setup key, the C(MSExchangeIMC) service, C(msexcimc.exe)'s file version
    and the IMS routing restrictions under
    C(HKLM\SYSTEM\CurrentControlSet\Services\MSExchangeIMC\Parameters) (KB Q193922). With
    O(channel=smb) the same facts are read over SMB (remote registry, service control manager,
    C$), as Windows NT 4.0 and 2000 have no WinRM; with O(channel=via-management-host)
    through a Windows management host that reaches the 5.5 host the same way.
  - Exchange 2013, 2016, 2019 and Subscription Edition - C(ExSetup.exe)'s file version, the
    v15 Setup key, installed updates, receive connectors, ANONYMOUS LOGON rights, accepted
    domains and recipient validation, read through the Exchange shell (the snap-in, else
    C(RemoteExchange.ps1)); C(exchange_shell) in RV(facts) says which was used.
  - Judges the facts - RV(exposure) lists each setting that lets anonymous clients relay with
    a reason and a source, RV(patch) says whether the relay fix is present (Exchange 5.5,
    C(msexcimc.exe) 5.5.2650.1 or later, KB Q237927) or, for 2013 and later, whether the build
    is the newest update of a CU the O(patch_policy) accepts, how many updates it is behind and
    which build is required.
  - Every option is validated before any connection is made; a bad value fails the task
    naming the option and the value.
options:
  patch_policy:
    description:
      - Exchange 2013 and later - the CUs a compliant build may be on, each at its newest update.
        V(latest) accepts the newest CU only, V(cu_n_minus_1) also the CU before it; only CUs
        Microsoft supports either way.
    type: str
    choices: [latest, cu_n_minus_1]
    default: latest
extends_documentation_fragment:
  - relayguard.mail.winrm.connection
  - ansible.builtin.action_common_attributes
author:
  - relayguard developers (@relayguard)
requirements:
  - The relayguard Python package, pywinrm and pyspnego on the controller.
  - WinRM on the Exchange server (Windows Server 2003 R2 or later).
attributes:
  check_mode:
    support: full
    details: The module only reads; check mode runs it unchanged.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: windows
    details: Runs on the controller and reaches the Exchange server over WinRM.
notes:
  - Runs on the controller; use C(delegate_to) C(localhost) (or C(connection) C(local)) and pass
    the host's WinRM variables, as in the examples.
seealso:
  - name: Exchange payloads
    description: docs/payloads.md in the relayguard repository (what each payload reads).
    link: https://learn.microsoft.com/exchange/mail-flow/connectors/allow-anonymous-relay
"""

EXAMPLES = r"""
- name: Detect each Exchange server of the batch
  relayguard.mail.exchange_facts:
    winrm_host: "{{ ansible_host }}"
    winrm_port: "{{ ansible_port | default(5986) }}"
    winrm_username: "{{ ansible_user }}"
    winrm_password: "{{ ansible_password }}"
    ca_path: "{{ ansible_winrm_ca_trust_path }}"
  delegate_to: localhost
  register: exchange

- name: Stop when a server relays for anonymous clients
  ansible.builtin.assert:
    that: exchange.exposure.verdict != 'open'
    fail_msg: "{{ exchange.exposure.findings | map(attribute='reason') | list }}"
"""

RETURN = r"""
facts:
  description:
    - The collected facts - platform, version, build (the C(relayguard build --json)
      explanation), msexcimc, exsetup, setup_key, installed_updates, service,
      reboot_pending, exchange55 (routing restrictions and Routing tab) or modern
      (receive connectors, anonymous permissions, accepted domains, recipient filter),
      exchange_shell, notes.
  returned: always
  type: dict
  sample:
    platform: exchange2019
    version: "15.2.1544.4"
    exchange_shell: SnapIn
exposure:
  description: Relay exposure - verdict (open, closed, inconclusive), findings (the failing
    rules - id, result, subject, opens_relay, reason, source), unknowns, and checks (every
    rule's result on every subject - pass, fail or unknown; Exchange 2013 and later).
  returned: always
  type: dict
  sample:
    verdict: open
    findings:
      - id: anonymous-accept-any-recipient
        result: fail
        subject: "EX19A\\Default Frontend EX19A"
        opens_relay: true
        reason: "ANONYMOUS LOGON holds ms-Exch-SMTP-Accept-Any-Recipient; ..."
        source: "ms-Exch-SMTP-Accept-Any-Recipient granted to ANONYMOUS LOGON ..."
    unknowns: []
    checks:
      - id: accepted-domain-star
        result: pass
        subject: accepted domains
        opens_relay: false
        reason: "no accepted domain is '*'"
        source: "accepted domain '*' (CSS-Exchange HealthChecker OpenRelayDomain)"
patch:
  description: Patch status - state (present, missing, unknown), reasons, level,
    security_update, supported; for 2013 and later also required (the build compliance needs)
    and patch_level (updates behind, the newest update of the CU with its KB, the policy).
  returned: always
  type: dict
  sample:
    state: present
    reasons: ["MS99-027 (Q237927): msexcimc.exe 5.5.2650.1 >= 5.5.2650.1"]
    level: SP3
    security_update: null
    supported: false
    required: null
    patch_level: null
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.relayguard.mail.plugins.module_utils.exchange_options import (
    PATCH_POLICY_SPEC,
)
from ansible_collections.relayguard.mail.plugins.module_utils.winrm_options import (
    WINRM_CONNECTION_SPEC,
)

try:
    from relayguard.exchange.assess import assess, assess_runner
    from relayguard.exchange.connection import runner_for, smb_options, winrm_options
    from relayguard.exchange.patch_level import PatchPolicy
    from relayguard.exchange.smb_channel import assess_smb
    from relayguard.validate import InputError

    IMPORT_ERROR = None
except ImportError:  # reported by main() once the module can fail properly
    IMPORT_ERROR = traceback.format_exc()

RELAYGUARD = "relayguard (the relayguard Python engine, see meta/ee-requirements.txt)"


def main() -> None:
    spec = dict(WINRM_CONNECTION_SPEC, **PATCH_POLICY_SPEC)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    if IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib(RELAYGUARD), exception=IMPORT_ERROR)
    try:
        options = winrm_options(module.params)
        smb = None
        runner = None
        if module.params["channel"] == "smb":  # Exchange 5.5 on NT 4.0 / 2000: no WinRM
            smb = smb_options(module.params, options)
        elif module.params["channel"] == "via-management-host":  # 5.5 through a Windows host
            runner = runner_for(module.params, options)
    except InputError as exc:
        module.fail_json(msg=str(exc))
    policy = PatchPolicy(module.params["patch_policy"])
    if runner is not None:
        assessed = assess_runner(runner, options.host, policy=policy)
    elif smb is not None:
        assessed = assess_smb(smb, policy=policy)
    else:
        assessed = assess(options, policy=policy)
    result = assessed.to_dict()
    if result["error"] is not None:
        module.fail_json(msg=result["error"], host=result["host"])
    module.exit_json(
        changed=False, facts=result["facts"], exposure=result["exposure"], patch=result["patch"]
    )


if __name__ == "__main__":
    main()
