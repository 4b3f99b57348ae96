#!/usr/bin/python
"""Ansible module exchange_facts: detect an Exchange server over WinRM (runs on the controller).

Arguments here; collection, analysis and validation live in relayguard.exchange
(facts, analysis, winrm_settings, assess).
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
    C(HKLM\SYSTEM\CurrentControlSet\Services\MSExchangeIMC\Parameters) (KB Q193922).
  - Exchange 2013, 2016, 2019 and Subscription Edition - C(ExSetup.exe)'s file version, the
    v15 Setup key, installed updates, receive connectors, ANONYMOUS LOGON rights, accepted
    domains and recipient validation, read through the Exchange shell (the snap-in, else
    C(RemoteExchange.ps1)); RV(facts.exchange_shell) says which was used.
  - Judges the facts - RV(exposure) lists each setting that lets anonymous clients relay with
    a reason and a source, RV(patch) says whether the relay fix is present (Exchange 5.5,
    C(msexcimc.exe) 5.5.2650.1 or later, KB Q237927) or whether the CU/SU is supported.
  - Every option is validated before any connection is made; a bad value fails the task
    naming the option and the value.
author:
  - relayguard
requirements:
  - The relayguard Python package, pywinrm and pyspnego on the controller.
  - WinRM on the Exchange server (Windows Server 2003 R2 or later).
attributes:
  check_mode:
    support: full
    description: The module only reads; check mode runs it unchanged.
  diff_mode:
    support: none
options:
  host:
    description: Address or DNS name of the Exchange server (usually C(ansible_host)).
    type: str
    required: true
  port:
    description: WinRM port; default 5986 (HTTPS).
    type: int
  transport:
    description: WinRM authentication. C(basic) is refused over plain HTTP.
    type: str
    choices: [ntlm, kerberos, credssp, certificate, basic]
    default: ntlm
  username:
    description: Account to log on with, for example C(CORP\admin).
    type: str
  password:
    description: Password of O(username). Never logged or returned.
    type: str
  ca_trust_path:
    description: CA bundle (PEM file on the controller) the server certificate is validated
      against; default the system bundle.
    type: path
  server_cert_validation:
    description: C(ignore) accepts any certificate, leaving the host unauthenticated.
    type: str
    choices: [validate, ignore]
    default: validate
  connect_timeout:
    description: Seconds to wait for the TCP and TLS connection.
    type: float
    default: 10
  operation_timeout:
    description: WS-Management OperationTimeout of each request, whole seconds.
    type: int
    default: 20
  command_timeout:
    description: Bound, in seconds, on waiting for one payload's output.
    type: float
    default: 300
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
  exchange_facts:
    host: "{{ ansible_host }}"
    port: "{{ ansible_port | default(5986) }}"
    username: "{{ ansible_user }}"
    password: "{{ ansible_password }}"
    ca_trust_path: "{{ ansible_winrm_ca_trust_path }}"
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
  description: Relay exposure - verdict (open, closed, inconclusive), findings (id, subject,
    opens_relay, reason, source) and unknowns.
  returned: always
  type: dict
  sample:
    verdict: open
    findings:
      - id: anonymous-accept-any-recipient
        subject: "EX19A\\Default Frontend EX19A"
        opens_relay: true
        reason: "ANONYMOUS LOGON holds ms-Exch-SMTP-Accept-Any-Recipient; ..."
        source: "ms-Exch-SMTP-Accept-Any-Recipient granted to ANONYMOUS LOGON ..."
    unknowns: []
patch:
  description: Patch status - state (present, missing, unknown), reasons, level,
    security_update, supported.
  returned: always
  type: dict
  sample:
    state: present
    reasons: ["MS99-027 (Q237927): msexcimc.exe 5.5.2650.1 >= 5.5.2650.1"]
    level: SP3
    security_update: null
    supported: false
"""

from ansible.module_utils.basic import AnsibleModule

try:
    from relayguard.exchange.assess import assess
    from relayguard.exchange.transport import Secret
    from relayguard.exchange.winrm_settings import winrm_settings
    from relayguard.validate import InputError

    IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported to the user
    IMPORT_ERROR = str(exc)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "required": True},
            "port": {"type": "int"},
            "transport": {
                "type": "str",
                "default": "ntlm",
                "choices": ["ntlm", "kerberos", "credssp", "certificate", "basic"],
            },
            "username": {"type": "str"},
            "password": {"type": "str", "no_log": True},
            "ca_trust_path": {"type": "path"},
            "server_cert_validation": {
                "type": "str",
                "default": "validate",
                "choices": ["validate", "ignore"],
            },
            "connect_timeout": {"type": "float", "default": 10},
            "operation_timeout": {"type": "int", "default": 20},
            "command_timeout": {"type": "float", "default": 300},
        },
        supports_check_mode=True,
    )
    if IMPORT_ERROR is not None:
        module.fail_json(
            msg=f"the relayguard package is required on the controller: {IMPORT_ERROR}"
        )
    p = module.params
    try:
        options = winrm_settings(
            p["host"],
            port=p["port"],
            transport=p["transport"],
            user=p["username"],
            password=None if p["password"] is None else Secret(p["password"]),
            ca_trust_path=p["ca_trust_path"],
            server_cert_validation=p["server_cert_validation"],
            connect_timeout=p["connect_timeout"],
            operation_timeout=p["operation_timeout"],
            command_timeout=p["command_timeout"],
        )
    except InputError as exc:
        module.fail_json(msg=str(exc))
    result = assess(options).to_dict()
    if result["error"] is not None:
        module.fail_json(msg=result["error"], host=result["host"])
    module.exit_json(
        changed=False, facts=result["facts"], exposure=result["exposure"], patch=result["patch"]
    )


if __name__ == "__main__":
    main()
