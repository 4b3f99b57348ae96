#!/usr/bin/python
"""Ansible module sendmail_relay: close a Sendmail's relay (thin layer over the backend).

Options are declared in module_utils/sendmail_options.py (and relay_options.py); the run
lives in module_utils/sendmail_apply.py over sendmail_facts and sendmail_plan
(docs/architecture.md). All run on the managed host: standard library only, Python 3.7+.
"""

DOCUMENTATION = r"""
---
module: sendmail_relay
short_description: Close a Sendmail server's open relay and keep its legitimate relay paths
version_added: "0.1.0"
description:
  - Brings one Sendmail to a closed-relay policy. Sendmail refuses to relay by default since
    8.9; this module removes what widens that and keeps what a site authorised.
  - Removes the mc FEATUREs that let an unauthorised client relay - C(promiscuous_relay),
    C(loose_relay_check), C(relay_based_on_MX), C(relay_local_from) and C(relay_mail_from)
    (the last two trust the envelope sender, which any client forges). C(relay_hosts_only)
    narrows relaying and stays.
  - With O(relay_allowed_networks), makes the access database's numeric C(Connect:) RELAY
    entries exactly those networks and removes C(relay_entire_domain); every network it drops
    is named (RV(removals)) and the run is refused unless O(relay_allow_removals) is true.
    Entries naming hosts or domains, C(To:) entries and class R (relay destinations) stay.
  - Removes class R members and C(To:) RELAY entries that name a whole top-level domain
    (C(com) relays to every .com domain for anyone); each is named as a removal.
  - Adds each O(relay_partner_domains) domain that is not relayed yet to class R (the
    relay-domains file the sendmail.cf reads, else a C(RELAY_DOMAIN) line in the mc).
  - Backs up the mc, sendmail.cf, the access source and map and the relay-domains file,
    writes the edits, regenerates sendmail.cf with C(m4) and the access map with C(makemap),
    validates (m4 without error, C(sendmail -C sendmail.cf -bt) loads it), then sends SIGHUP
    to a running daemon (it re-executes itself with the new configuration) and re-reads the
    files to verify. Any failure after the backup puts every file back.
author:
  - relayguard developers (@relayguard)
requirements:
  - Sendmail with its cf macros (Debian's sendmail-cf), m4 and makemap on the managed host.
  - Root on the managed host.
attributes:
  check_mode:
    support: full
    description: Plans only; C(changed) says whether anything would change.
  diff_mode:
    support: full
    description: Shows each file the plan edits, before and after.
  platform:
    support: full
    platforms: posix
    description: Runs on the Sendmail host with its Python, 3.7 or later; standard library only.
options:
  state:
    description:
      - V(present) plans and (unless in check mode) applies the closed-relay policy.
      - V(restored) puts back exactly the files of O(backup_files) (what an earlier run
        returned as RV(backup_files)) and sends SIGHUP to a running daemon; in check mode it
        only says (and with diff shows) what it would put back.
    type: str
    choices: [present, restored]
    default: present
  backup_files:
    description:
      - With O(state=restored), RV(backup_files) of the run to undo. Each path must be a file
        this Sendmail's mc and cf name (the mc, sendmail.cf, the access source and map, the
        relay-domains file) and each copy a file in O(backup_dir) named after it; anything else
        is refused, naming the entry, before a file is touched.
    type: list
    elements: dict
    suboptions:
      path:
        description: A file the change wrote.
        type: str
        required: true
      copy:
        description: Its copy taken before the change; empty when it did not exist (it is removed).
        type: str
        default: ""
  mc_path:
    description:
      - The m4 source of the configuration. An absolute path.
    type: str
    default: /etc/mail/sendmail.mc
  cf_path:
    description:
      - The sendmail.cf generated from O(mc_path). Defaults to C(sendmail.cf) beside it.
    type: str
  relay_allowed_networks:
    description:
      - Networks whose clients may relay without authentication, as the access database's
        C(Connect:) RELAY entries. IPv4 networks on an octet boundary (C(/8), C(/16),
        C(/24), C(/32)); IPv6 single addresses (C(/128)).
      - Omit to leave those entries as they are. Not used with O(state=restored).
    type: list
    elements: str
  relay_authenticated:
    description:
      - Whether SMTP AUTH clients may relay (C(TRUST_AUTH_MECH)). V(keep) leaves it as the
        host has it; V(true) adds C(TRUST_AUTH_MECH) when absent; V(false) removes it.
    type: raw
    default: keep
  relay_partner_domains:
    description:
      - Relay destinations (partners, backup MX) that must stay accepted; a missing one is
        added to class R, none is removed.
    type: list
    elements: str
    default: []
  relay_allow_removals:
    description:
      - Allow a change that removes a trusted network. Without it such a plan fails naming
        what it would remove, and nothing is changed.
    type: bool
    default: false
  sendmail_binary:
    description: The sendmail program used to validate the new sendmail.cf (C(-bt)).
    type: str
    default: /usr/sbin/sendmail
  makemap_binary:
    description: The makemap program that rebuilds the access map.
    type: str
    default: /usr/sbin/makemap
  m4_binary:
    description: The m4 program that turns the mc into sendmail.cf.
    type: str
    default: m4
  backup_dir:
    description:
      - Directory for the backups (mode 0700). Defaults to C(relayguard-backups) beside
        O(mc_path).
    type: str
  restart:
    description: Send SIGHUP to the running daemon after a valid change.
    type: bool
    default: true
seealso:
  - name: Sendmail cf/README
    description: Anti-Spam Configuration Control, the access database and relaying FEATUREs.
    link: https://ftp.sendmail.org/
  - name: RFC 2505
    description: Anti-Spam Recommendations for SMTP MTAs (BCP 30).
    link: https://www.rfc-editor.org/rfc/rfc2505
"""

EXAMPLES = r"""
- name: Close the relay; the host and the office network relay, a partner stays relayed
  relayguard.mail.sendmail_relay:
    relay_allowed_networks:
      - 127.0.0.0/8
      - 192.0.2.0/24
    relay_partner_domains:
      - partner.example
  register: relay

- name: Undo that change (for instance when mail stopped flowing after it)
  relayguard.mail.sendmail_relay:
    state: restored
    backup_files: "{{ relay.backup_files }}"
  when: relay.backup_files | default([]) | length > 0

- name: Only plan, showing the edits
  relayguard.mail.sendmail_relay:
    mc_path: /etc/mail/sendmail.mc
  check_mode: true
  diff: true
"""

RETURN = r"""
changes:
  description: The edits made (or, in check mode, to be made).
  returned: O(state=present)
  type: list
  elements: dict
  contains:
    rule:
      description: Id of the rule that planned the edit.
      type: str
      sample: sendmail-opening-feature
    target:
      description: What is edited.
      type: str
      sample: sendmail.mc FEATURE(promiscuous_relay)
    before:
      description: Before.
      type: str
      sample: present
    after:
      description: After.
      type: str
      sample: removed
    reason:
      description: Why.
      type: str
      sample: FEATURE(`promiscuous_relay') lets clients relay without authorisation
    removes:
      description: Trusted networks or relay destinations the edit drops.
      type: list
      elements: str
      sample: [Connect:10]
removals:
  description: Everything the plan removes, each as the change's target, a colon and the item.
  returned: O(state=present)
  type: list
  elements: str
  sample: ["access Connect:10: Connect:10"]
findings:
  description: What each rule found wrong (rule id and problem).
  returned: O(state=present)
  type: list
  elements: dict
  sample: [{"rule": "sendmail-opening-feature", "problem": "FEATUREs ...: promiscuous_relay"}]
rules:
  description: Every rule of the table on the configuration as read, in order, for the report.
  returned: O(state=present)
  type: list
  elements: dict
  sample:
    - {id: sendmail-opening-feature, source: "Sendmail cf/README", subject: /etc/mail/sendmail.mc,
       result: fail, reason: "FEATUREs that open relaying: promiscuous_relay"}
backup_files:
  description:
    - Every file the change wrote and its copy taken before it (an empty copy - the file did
      not exist); give it to O(state=restored) to undo the change.
  returned: changed and not check mode
  type: list
  elements: dict
  sample: [{path: /etc/mail/sendmail.mc,
            copy: /etc/mail/relayguard-backups/sendmail.mc.20240101T120000.000000000Z}]
restored:
  description: With O(state=restored), the files put back (or, in check mode, to put back).
  returned: O(state=restored)
  type: list
  elements: str
mc_path:
  description: The mc acted on.
  returned: always
  type: str
  sample: /etc/mail/sendmail.mc
backup_file:
  description: The backup of the mc taken before writing (null when nothing was written).
  returned: O(state=present)
  type: str
  sample: /etc/mail/relayguard-backups/sendmail.mc.20240101T120000.000000000Z
reloaded:
  description: Whether a running daemon was told to re-read its configuration (SIGHUP).
  returned: O(state=present)
  type: bool
  sample: true
rolled_back:
  description: On failure after the backup, whether every file was put back.
  returned: failure
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.relayguard.mail.plugins.module_utils.sendmail_apply import (
    ChangeFailed,
    SendmailFactsError,
    restore,
    run,
)
from ansible_collections.relayguard.mail.plugins.module_utils.sendmail_options import (
    SENDMAIL_RELAY_SPEC,
)

ARGUMENT_SPEC = SENDMAIL_RELAY_SPEC


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        required_if=[("state", "restored", ["backup_files"])],
    )
    step = restore if module.params["state"] == "restored" else run
    try:
        result = step(module.params, module.check_mode, module._diff)
    except ChangeFailed as exc:
        module.fail_json(
            msg=str(exc),
            rolled_back=exc.restored,
            backup_file=exc.backup.primary,
            changed=not exc.restored,
        )
    except (SendmailFactsError, OSError) as exc:  # before any write: nothing changed
        module.fail_json(msg=f"sendmail_relay: {exc}", changed=False)
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
