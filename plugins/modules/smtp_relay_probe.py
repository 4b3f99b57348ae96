#!/usr/bin/python
"""Ansible module: probe SMTP hosts for open relaying (runs on the controller)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: smtp_relay_probe
short_description: Probe SMTP servers for open relaying from an untrusted vantage point
version_added: "0.1.0"
description:
  - Runs relayguard's relay test catalog (nmap's sixteen smtp-open-relay tests, Exchange
    IMCEASMTP- encapsulation tests of MS99-027, the classic relay testers' variants and RFC 2505
    conformance checks) against each target and judges it C(open), C(closed) or
    C(inconclusive).
  - "Runs on the controller; use C(delegate_to: localhost) and C(run_once: true) to probe a whole
    batch of hosts in one call."
  - Never sends DATA (unless O(confirm) is set), never changes anything; it always returns
    C(changed=false) and supports check mode (it probes in check mode too, since probing
    changes nothing).
  - Exit-code style results are in RV(verdicts); the full C(relayguard.probe/1) document is in
    RV(probe).
options:
  targets:
    description:
      - Hosts to probe, each a host name, an IP address, C(host:port) or C([ipv6]:port).
      - Without it, every target of O(groups). One of the two is required.
    type: list
    elements: str
  port:
    description: Default SMTP port for targets without one.
    type: int
    default: 25
  ports:
    description:
      - Probe each target given without a port on every one of these ports, one result per
        port (target C(host:port)); overrides O(port). Port 465 is implicit TLS (RFC 8314),
        the others use STARTTLS when offered, and when the server demands it (C(530 Must issue
        a STARTTLS command first)).
    type: list
    elements: int
  source_address:
    description:
      - Local IP address to bind connections to, to probe from an untrusted vantage point on a
        multi-homed controller.
    type: str
  external_domain:
    description:
      - Foreign domain used for relay recipients. The default is reserved by RFC 2606 and is
        never a real recipient.
    type: str
    default: example.com
  local_domain:
    description:
      - A domain the server accepts mail for; used by the encapsulation tests and the RFC 2505
        checks. Defaults to the name in the server's banner.
    type: str
  local_domains:
    description:
      - A domain per target, for a batch whose servers accept mail for different domains
        (C(mx1.example.org:25) mapped to C(example.org)). A key is written as in O(targets);
        one without a port applies to every port of that host. A target listed here uses its
        own domain instead of O(local_domain).
    type: dict
  groups:
    description:
      - Inventory names, each with its targets (a host's ports), written as in O(targets); they
        are probed when O(targets) is not given. The result's RV(by_name) then tells each name
        which entries of RV(hosts) are its own and which one is its worst, so a playbook reads
        a host's verdict without a task per host.
    type: dict
  helo_name:
    description: EHLO/HELO name. Defaults to O(external_domain), as nmap does.
    type: str
  timeout:
    description: Seconds to wait for one SMTP reply.
    type: float
    default: 30
  host_timeout:
    description: Seconds allowed for all tests of one host.
    type: float
    default: 900
  connections_per_host:
    description:
      - At most this many SMTP connections to one host at once. More than one is opened only
        while replies are slow (Exchange tarpits error replies), and a host that refuses extra
        connections lowers the bound.
    type: int
    default: 4
  pipelining:
    description: Send RSET, MAIL and RCPT in one write when the server advertises PIPELINING.
    type: bool
    default: true
  max_hosts_in_flight:
    description: Hosts probed at once by this one call.
    type: int
    default: 256
  starttls:
    description: Use STARTTLS when offered (the certificate is recorded, never required).
    type: bool
    default: true
  via:
    description:
      - Vantage points to probe from, each C(direct) (from the controller) or an SSH jump host
        C(ssh://user@host[:port]) whose address the servers see (paramiko C(direct-tcpip)
        channels). Each target gets one result per vantage point. Empty means C(direct).
      - A password in the URL is refused; use O(ssh_key) or ssh-agent.
    type: list
    elements: str
    default: []
  ssh_key:
    description: Private key file for the jump hosts (default ssh-agent and ~/.ssh/id_*).
    type: path
  known_hosts:
    description:
      - known_hosts files that must hold each jump host's key (default ~/.ssh/known_hosts and
        /etc/ssh/ssh_known_hosts). Unknown and changed keys are refused.
    type: list
    elements: path
    default: []
  confirm:
    description:
      - Delivery confirmation (off by default). For each host that accepted a relay test at RCPT
        time, send ONE labelled test message to C(relaytest@[sink-ip]) and wait for what reaches
        the sink; each host gains C(confirmation) (C(relayed), C(bounced), C(unconfirmed)) and
        C(confirmation_evidence). The only time DATA is sent. Skipped in check mode.
    type: bool
    default: false
  sink:
    description:
      - C(ADDRESS[:PORT]) where the controller listens for the test message and bounces
        (port 25 by default); the probed servers must reach it. Required with O(confirm).
    type: str
  confirm_timeout:
    description: Seconds to wait for the test message or a bounce to reach the sink.
    type: float
    default: 120
  accept_unknown_host_key:
    description: Trust a jump host whose key is not in known_hosts, for this run only.
    type: bool
    default: false
  document_hosts:
    description:
      - Whether RV(probe) repeats the hosts' entries, which RV(hosts) holds either way. False
        halves the result of a large batch (every entry carries its transcript), which Ansible
        copies and converts whole; RV(probe) then has the document's other parts (schema,
        options).
    type: bool
    default: true
author:
  - relayguard developers (@relayguard)
requirements:
  - The relayguard Python package on the controller (see meta/ee-requirements.txt).
attributes:
  check_mode:
    support: full
    description:
      - Probing changes nothing, so check mode probes too; only the delivery confirmation
        (O(confirm), the one time C(DATA) is sent) is skipped.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
  platform:
    support: full
    platforms: posix
    description: Runs on the controller (C(delegate_to) C(localhost)).
notes:
  - Relay restrictions depend on the client's address (RFC 2505 section 2.1); probe from
    where an outsider stands.
seealso:
  - name: RFC 2505
    description: Anti-Spam Recommendations for SMTP MTAs.
    link: https://www.rfc-editor.org/rfc/rfc2505
"""

EXAMPLES = r"""
- name: Probe every mail server of the batch at once from the controller
  relayguard.mail.smtp_relay_probe:
    targets: "{{ ansible_play_batch | map('extract', hostvars, 'relay_smtp_target') | list }}"
    source_address: 192.0.2.200
  delegate_to: localhost
  run_once: true
  register: relay_baseline

- name: Fail when any host is an open relay
  ansible.builtin.assert:
    that: relay_baseline.verdicts.values() | select('equalto', 'open') | list | length == 0
    fail_msg: "Open relays: {{ relay_baseline.open | join(', ') }}"
"""

RETURN = r"""
probe:
  description:
    - The relayguard.probe/1 document (schema, options, hosts); without its hosts when
      O(document_hosts) is false.
  returned: always
  type: dict
hosts:
  description: One entry per target, as in the probe document.
  returned: always
  type: list
  elements: dict
  sample:
    - target: "192.0.2.25:25"
      verdict: closed
      reason: "all 32 relay tests answered: 32 refused"
verdicts:
  description:
    - Mapping of target to verdict (open, closed or inconclusive); with several vantage
      points the key is C(target via vantage).
  returned: always
  type: dict
  sample: {"192.0.2.25:25": "closed"}
open:
  description: Targets judged open.
  returned: always
  type: list
  elements: str
by_name:
  description:
    - Per name of O(groups), C(entries) (the indexes in RV(hosts) of its targets' entries) and
      C(worst) (the index of its worst entry - open, else inconclusive, else the first - or
      null when none of its targets was probed).
  returned: when O(groups) is given
  type: dict
  sample: {"mx1": {"entries": [0, 1], "worst": 1}}
"""

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from relayguard.probe import HostResult, confirm, probe_document
    from relayguard.probe.options import checked_options
    from relayguard.probe.targets import TargetError, expand_targets
    from relayguard.stdio import blocking_stdio
    from relayguard.validate import InputError
    from relayguard.vantage.many import parse_vantages, probe_from
    from relayguard.vantage.ssh import SshSettings

    IMPORT_ERROR = None
except ImportError:  # reported by main() once the module can fail properly
    IMPORT_ERROR = traceback.format_exc()

RELAYGUARD = "relayguard (the relayguard Python engine, see meta/ee-requirements.txt)"

# Static: DOCUMENTATION describes exactly this (validate-modules and
# tests/playbook/test_module_docs.py compare the two).
ARGUMENT_SPEC: dict[str, Any] = {
    "targets": {"type": "list", "elements": "str"},
    "port": {"type": "int", "default": 25},
    "ports": {"type": "list", "elements": "int"},
    "source_address": {"type": "str"},
    "external_domain": {"type": "str", "default": "example.com"},
    "local_domain": {"type": "str"},
    "local_domains": {"type": "dict"},
    "groups": {"type": "dict"},
    "helo_name": {"type": "str"},
    "timeout": {"type": "float", "default": 30},
    "host_timeout": {"type": "float", "default": 900},
    "connections_per_host": {"type": "int", "default": 4},
    "pipelining": {"type": "bool", "default": True},
    "max_hosts_in_flight": {"type": "int", "default": 256},
    "starttls": {"type": "bool", "default": True},
    "via": {"type": "list", "elements": "str", "default": []},
    "ssh_key": {"type": "path"},
    "known_hosts": {"type": "list", "elements": "path", "default": []},
    "accept_unknown_host_key": {"type": "bool", "default": False},
    "confirm": {"type": "bool", "default": False},
    "sink": {"type": "str"},
    "confirm_timeout": {"type": "float", "default": 120},
    "document_hosts": {"type": "bool", "default": True},
}


def _key(result: HostResult, several: bool) -> str:
    return f"{result.target} via {result.vantage}" if several else result.target


def by_name(groups: dict[str, Any], hosts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each group's entries (indexes in hosts, by target) and its worst one: open, else
    inconclusive, else the first (batch_result's choice for a host's several ports)."""
    index: dict[str, list[int]] = {}
    for i, entry in enumerate(hosts):
        index.setdefault(str(entry.get("target")), []).append(i)
    out: dict[str, dict[str, Any]] = {}
    for name, targets in groups.items():
        entries = [i for target in targets or [] for i in index.get(str(target), [])]
        worst = next(
            (i for v in ("open", "inconclusive") for i in entries if hosts[i].get("verdict") == v),
            entries[0] if entries else None,
        )
        out[str(name)] = {"entries": entries, "worst": worst}
    return out


def main(module_class: Callable[..., Any] = AnsibleModule) -> None:
    """The module; its action plugin runs it in the controller's worker with
    plugin_utils/controller_module.ControllerModule as `module_class`."""
    module = module_class(
        argument_spec=ARGUMENT_SPEC,
        required_one_of=[["targets", "groups"]],
        supports_check_mode=True,
    )
    if IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib(RELAYGUARD), exception=IMPORT_ERROR)
    p = module.params
    if p["targets"] is None:
        p["targets"] = [str(t) for targets in p["groups"].values() for t in targets or []]
    try:
        options = checked_options(
            port=p["port"],
            ports=p["ports"],
            source_address=p["source_address"],
            external_domain=p["external_domain"],
            local_domain=p["local_domain"],
            local_domains=p["local_domains"],
            helo_name=p["helo_name"],
            timeout=p["timeout"],
            host_timeout=p["host_timeout"],
            connections_per_host=p["connections_per_host"],
            pipelining=p["pipelining"],
            max_hosts_in_flight=p["max_hosts_in_flight"],
            starttls=p["starttls"],
        )
        targets = expand_targets(p["targets"], options.default_ports)
        vantages = parse_vantages(p["via"], options.source_address)
        confirming = confirm.checked_settings(p["confirm"], p["sink"], p["confirm_timeout"])
    except (InputError, TargetError) as exc:
        module.fail_json(msg=str(exc))
    settings = SshSettings(
        known_hosts=tuple(Path(f) for f in p["known_hosts"]),
        accept_unknown_host_key=p["accept_unknown_host_key"],
        key_file=Path(p["ssh_key"]) if p["ssh_key"] else None,
        connect_timeout=options.connect_timeout,
    )
    results = probe_from(vantages, targets, options, settings)
    if confirming is not None and module.check_mode:
        module.warn("confirm: no test message is sent in check mode")
    elif confirming is not None:
        try:
            results = confirm.confirm_results(results, confirming, options)
        except confirm.ConfirmError as exc:
            module.fail_json(msg=str(exc))
    document = probe_document(results, options)
    # the result is written in one piece: on a non-blocking pipe a large one would be cut short
    blocking_stdio()
    output: dict[str, Any] = {
        "changed": False,
        "probe": document
        if p["document_hosts"]
        else {k: v for k, v in document.items() if k != "hosts"},
        "hosts": document["hosts"],
        "verdicts": {_key(r, len(vantages) > 1): r.verdict.value for r in results},
        "open": sorted({r.target for r in results if r.verdict.value == "open"}),
    }
    if p["groups"] is not None:
        output["by_name"] = by_name(p["groups"], document["hosts"])
    module.exit_json(**output)


if __name__ == "__main__":
    main()
