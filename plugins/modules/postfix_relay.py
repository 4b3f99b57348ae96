#!/usr/bin/python
"""Ansible module postfix_relay: close a Postfix instance's relay (thin layer over the backend).

Arguments here (declared in module_utils/postfix_options.py and relay_options.py); the run
lives in module_utils/postfix_relay_backend.py over postfix_validate, postfix_facts,
postfix_change, postfix_domains, postfix_services, postfix_overrides, postfix_plan,
postfix_instances and postfix_apply
(docs/architecture.md). All run on the managed host, so all
are standard library only and valid Python 3.7 through 3.13:
tests/postfix_remediation/test_target_pythons.py compiles and runs them with each.
"""

DOCUMENTATION = r"""
---
module: postfix_relay
short_description: Close a Postfix server's open relay and keep its legitimate mail flowing
version_added: "0.1.0"
description:
  - Brings one Postfix instance to a closed-relay policy. Only C(relay_allowed_networks)
    (C(mynetworks)) and, if asked, SASL-authenticated clients may relay; every other client
    may send only to the host's inbound domains (RFC 2505 section 2.1).
  - Sets C(smtpd_relay_restrictions) to C(permit_mynetworks),
    [C(permit_sasl_authenticated),] then C(reject_unauth_destination) or
    C(defer_unauth_destination). Restrictions that followed the old unauth-destination entry
    (policy services, for example) are kept after it; entries before it are replaced.
    C(permit_sasl_authenticated) stays as it is unless O(relay_authenticated) says otherwise.
    Before Postfix 2.10 the same gate is enforced in C(smtpd_recipient_restrictions).
  - Sets C(allow_untrusted_routing = no), so sender-specified routes
    (C(user%domain@host), C(host!user)) from untrusted clients are not relayed.
  - Makes the domain classes (C(mydestination), C(virtual_alias_domains),
    C(virtual_mailbox_domains), C(relay_domains)) accept exactly C(inbound_domains) plus the
    host's own names. Domains already accepted stay in the class the host uses for them; the
    module never widens a class beyond C(inbound_domains).
  - Reads the configuration with C(postconf), plans the changes, backs up C(main.cf), writes
    with C(postconf -e), validates with C(postfix check), re-reads to verify, and reloads a
    running Postfix. If any step after the write fails, the backup is put back (and Postfix
    reloaded with it) and the task fails saying what happened.
  - With O(state=restored), installs a backup made by an earlier run, validates and reloads;
    if Postfix rejects the backup, the previous C(main.cf) is put back.
  - Every option is validated before any command runs. Networks are CIDRs checked with
    Python's C(ipaddress) (host bits refused, nothing wider than /8 or /16 for IPv6); domains
    are LDH names of at most 253 characters. Internationalised domain names are refused; give
    their C(xn--) A-label. Values with spaces, commas, newlines, C($), NUL or other
    characters Postfix would interpret are refused, naming the option and the value.
  - With postscreen in front (POSTSCREEN_README), the C(pass) service it hands sessions
    to is the smtpd that decides relaying; its overrides are planned there, postscreen's own
    parameters are reported in RV(listeners) and warnings.
  - On a multi-instance host (C(multi_instance_directories)), O(instances) says which
    instances are managed; each is planned, checked, verified and reloaded on its own.
  - Reads every master.cf service override (C(postconf -P), C(postconf -M)). An smtpd
    service that opens the relay by its own C(-o mynetworks=...),
    C(-o smtpd_relay_restrictions=...) (or C(smtpd_recipient_restrictions) where that decides)
    is planned and fixed in master.cf with C(postconf -P); other overrides of relay
    parameters are reported as warnings. master.cf is backed up with main.cf.
  - Reads the lookup tables in C(mynetworks) and the domain classes (cidr and texthash
    tables as text, hash and lmdb tables with C(postmap -s)); tables are never edited, and
    a plan that replaces one names every entry it drops.
  - A change that removes a relay destination or a trusted network names it (RV(removals),
    the change's C(removes), the diff) and is refused unless O(relay_allow_removals) is true;
    in check mode it is reported with a warning.
author:
  - relayguard developers (@relayguard)
requirements:
  - Postfix with C(postconf), C(postfix) and C(postmap) on the managed host. master.cf
    overrides are read and edited with C(postconf -M) and C(postconf -P) (Postfix 2.11 or
    later; on older versions a warning says they were not read). Before Postfix 2.10 the relay
    gate is C(smtpd_recipient_restrictions).
  - Root on the managed host (main.cf is written and Postfix reloaded).
attributes:
  check_mode:
    support: full
    description: Plans only; C(changed) says whether anything would change.
  diff_mode:
    support: full
    description: >-
      Shows the relay parameters before and after (state=present) or the whole main.cf
      (state=restored).
  platform:
    support: full
    platforms: posix
    description: >-
      Runs on the Postfix host (Linux: it reads /proc) with the host's Python, 3.6 or later;
      only the standard library is used.
options:
  state:
    description:
      - V(present) enforces the relay policy.
      - V(restored) installs O(backup_file) as main.cf.
    type: str
    choices: [present, restored]
    default: present
  config_dir:
    description:
      - Configuration directory of the Postfix instance (C(postfix -c), C(postconf -c)).
        An absolute path of plain characters; C(~) and C($VARIABLES) are not expanded.
    type: str
    default: /etc/postfix
  relay_allowed_networks:
    description:
      - Networks (CIDR) or addresses whose clients may relay without authentication; they
        become C(mynetworks), exactly. IPv6 in either C(2001:db8::/32) or C([2001:db8::]/32)
        form.
      - Include C(127.0.0.0/8) (and C(::1/128)) if programs on the host send through SMTP on
        localhost; the module warns when no loopback network is listed.
      - Omit to leave C(mynetworks) unmanaged (a warning is given if it trusts a network
        wider than /8).
    type: list
    elements: str
  relay_authenticated:
    description:
      - Whether SASL-authenticated clients may relay (C(permit_sasl_authenticated)).
      - V(keep) leaves C(permit_sasl_authenticated) as the host has it (RFC 2505 section 2
        asks to refuse unauthorised relaying; a client authenticated with SMTP AUTH is
        authorised); V(true) adds it and V(false) removes it (a boolean is accepted too).
      - SASL itself is not configured by this module; a warning is given if it is not
        enabled.
    type: raw
    default: keep
  relay_partner_domains:
    description:
      - Relay destinations (partner domains, domains this host is a backup MX for) that must
        stay accepted from any client. They are never pruned; one not accepted today is added
        to C(relay_domains).
    type: list
    elements: str
    default: []
  relay_allow_removals:
    description:
      - Allow a change that removes a relay destination (a domain of a domain class) or a
        trusted network narrower than /8 (/16 for IPv6). Without it such a plan fails naming
        what it would remove, and nothing is changed.
    type: bool
    default: false
  relay_refusal:
    description:
      - How relaying by anyone else is refused.
      - V(permanent) is C(reject_unauth_destination) (5xx).
      - V(temporary) is C(defer_unauth_destination) (4xx, Debian's packaged default), which
        lets a misconfigured legitimate sender retry after the fix instead of bouncing.
      - V(keep) keeps whichever of the two the host uses, and V(permanent) if it uses
        neither.
    type: str
    choices: [keep, permanent, temporary]
    default: keep
  inbound_domains:
    description:
      - Every domain the host accepts mail for from anyone (local, virtual or relayed
        inward). A leading dot (C(.example.org)) means its subdomains, as in Postfix.
      - Domains not accepted today are added to O(inbound_domain_class). With
        O(prune_domains), literal domains not listed here are removed from the domain classes
        (the host's own names stay in C(mydestination)).
      - Omit to leave the domain classes unmanaged.
    type: list
    elements: str
  inbound_domain_class:
    description:
      - Where to add an inbound domain the host does not accept yet.
      - V(auto) uses the class that holds the host's other inbound domains, and fails asking
        for a choice when there is none or more than one.
    type: str
    choices: [auto, mydestination, virtual_alias_domains, virtual_mailbox_domains, relay_domains]
    default: auto
  prune_domains:
    description:
      - Remove literal domains that are not in O(inbound_domains) from the domain classes.
        Lookup tables are never edited (a warning names them).
    type: bool
    default: true
  backup_dir:
    description:
      - Directory for main.cf backups (created with mode 0700). Defaults to
        C(relayguard-backups) inside O(config_dir). An absolute path.
    type: str
  backup_keep:
    description:
      - How many backups to keep in O(backup_dir); older ones are deleted after a successful
        change.
    type: int
    default: 10
  backup_file:
    description:
      - The backup to install with O(state=restored), usually RV(backup_file) of an earlier
        run. An absolute path, or a bare file name looked up in O(backup_dir).
    type: str
  instances:
    description:
      - Which Postfix instances of a multi-instance host (postmulti, MULTI_INSTANCE_README)
        this run manages. O(config_dir) is the primary; its C(multi_instance_directories) lists
        the others.
      - V(primary) manages O(config_dir) only, and warns naming every instance of
        C(multi_instance_directories) it leaves alone.
      - V(all) manages O(config_dir) and every instance it lists, each planned, validated
        (C(postfix -c DIR check)), verified and reloaded on its own; every change names its
        instance's C(config_dir). When one instance fails, the instances the run already
        changed are restored too.
      - A list of configuration directories manages those (each O(config_dir) or listed in
        its C(multi_instance_directories)).
      - A plan that would remove a destination or a network on any instance stops the run
        before any instance is written (see O(relay_allow_removals)).
    type: raw
    default: primary
  instance_options:
    description:
      - Relay policy that differs per instance, keyed by the instance's configuration
        directory; each value takes O(relay_allowed_networks), O(inbound_domains),
        O(inbound_domain_class), O(prune_domains), O(relay_refusal), O(relay_authenticated),
        O(relay_partner_domains) and O(relay_allow_removals), over the task's own values.
      - Checked before anything is read; a key that is not a managed instance is refused.
    type: dict
    default: {}
notes:
  - A second run against the same instance while one is changing it fails at once (a lock
    in O(backup_dir)). A run that was killed after writing main.cf is completed (validated
    and reloaded, or rolled back) by the next run.
  - Postfix logs its fatal errors only to syslog unless stderr is a terminal; the module runs
    Postfix commands on a pseudo-terminal so their messages reach the task result.
seealso:
  - name: postconf(5)
    description: Postfix parameters, including smtpd_relay_restrictions and mynetworks.
    link: https://www.postfix.org/postconf.5.html
  - name: RFC 2505
    description: Anti-Spam Recommendations for SMTP MTAs (BCP 30).
    link: https://www.rfc-editor.org/rfc/rfc2505
"""

EXAMPLES = r"""
- name: Close the relay; only the office network relays, mail for example.org is accepted
  relayguard.mail.postfix_relay:
    relay_allowed_networks:
      - 127.0.0.0/8
      - "::1/128"
      - 192.0.2.0/24
    inbound_domains:
      - example.org
    relay_refusal: permanent
  register: relay

- name: Same for a second instance, allowing authenticated submission to relay
  relayguard.mail.postfix_relay:
    config_dir: /etc/postfix-out
    relay_allowed_networks: [127.0.0.0/8]
    relay_authenticated: true
    inbound_domains: []

- name: Every postmulti instance; the outbound one accepts no inbound domain
  relayguard.mail.postfix_relay:
    instances: all
    relay_allowed_networks: [127.0.0.0/8, 192.0.2.0/24]
    inbound_domains: [example.org]
    instance_options:
      /etc/postfix-out:
        inbound_domains: []

- name: Roll back to the configuration before the change
  relayguard.mail.postfix_relay:
    state: restored
    backup_file: "{{ relay.backup_file }}"
  when: relay.backup_file is truthy
"""

RETURN = r"""
changes:
  description: The parameters changed (or, in check mode, to be changed).
  returned: always
  type: list
  elements: dict
  contains:
    parameter:
      description: main.cf parameter name, or C(service/type/name) of a master.cf override.
      type: str
      sample: mynetworks
    before:
      description: Its value before, as written (or Postfix's default when unset).
      type: str
      sample: 0.0.0.0/0
    after:
      description: Its value after.
      type: str
      sample: 127.0.0.0/8, 192.0.2.0/24
    reason:
      description: Why it changes.
      type: str
      sample: only relay_allowed_networks may relay without authentication
    target:
      description: Where the change is made, main.cf or a master.cf service override.
      type: str
      sample: master.cf smtp/inet -o mynetworks
    removes:
      description: Relay destinations or trusted networks the change drops.
      type: list
      elements: str
      sample: [partner.example]
    rule:
      description: Id of the rule that planned the change.
      type: str
      sample: postfix-mynetworks
    config_dir:
      description: The configuration directory of the instance the change is made in.
      type: str
      sample: /etc/postfix-out
rules:
  description:
    - Every rule of the Postfix rule table (postfix_plan.RULES) on each managed instance as
      read, in order, for the report; a rule fails with the reasons of the changes it plans.
      Empty with O(state=restored).
  returned: always
  type: list
  elements: dict
  sample:
    - {id: postfix-mynetworks, source: "postconf(5) mynetworks; RFC 2505 section 2.1",
       subject: /etc/postfix/main.cf, result: fail,
       reason: "mynetworks trusts 0.0.0.0/0"}
removals:
  description: Everything the plan removes, each as the change's target, a colon and the item.
  returned: always
  type: list
  elements: str
  sample: ["main.cf relay_domains: partner.example"]
backup_file:
  description:
    - Path on the managed host of the main.cf backup taken before writing (null when nothing
      was written); master.cf is copied beside it as C(master.cf.<same time stamp>).
    - With O(state=restored), the copy of the main.cf that was replaced.
  returned: always
  type: str
  sample: /etc/postfix/relayguard-backups/main.cf.20240101T120000.000000Z
restored_from:
  description: The backup installed (O(state=restored)).
  returned: always
  type: str
  sample: /etc/postfix/relayguard-backups/main.cf.20240101T120000.000000Z
config_dir:
  description: The instance's configuration directory.
  returned: always
  type: str
  sample: /etc/postfix
main_cf:
  description: Path of the main.cf acted on.
  returned: always
  type: str
  sample: /etc/postfix/main.cf
reloaded:
  description: Whether Postfix was reloaded (only a running instance is).
  returned: always
  type: bool
  sample: true
relay_parameters:
  description: The relay parameters after the run (planned values in check mode).
  returned: always
  type: dict
  sample:
    mynetworks: 127.0.0.0/8, 192.0.2.0/24
    smtpd_relay_restrictions: permit_mynetworks, reject_unauth_destination
    allow_untrusted_routing: "no"
listeners:
  description:
    - The master.cf inet services that take SMTP connections and the service whose smtpd
      decides relaying for them; with postscreen in front that is the C(pass) service named
      by C(smtpd_service_name) (POSTSCREEN_README).
  returned: always
  type: list
  elements: dict
  contains:
    service:
      description: The inet service, C(name/inet).
      type: str
      sample: smtp/inet
    program:
      description: C(smtpd) or C(postscreen).
      type: str
      sample: postscreen
    session_service:
      description: The service whose smtpd handles the session.
      type: str
      sample: smtpd/pass
    postscreen_access_list:
      description: postscreen's access list as that service sees it (postscreen only).
      type: str
      sample: permit_mynetworks
    postscreen_mynetworks:
      description: The mynetworks postscreen's C(permit_mynetworks) uses (postscreen only).
      type: str
      sample: 127.0.0.0/8
instances:
  description:
    - One entry per instance the run manages when O(instances) is not V(primary); empty
      otherwise.
  returned: always
  type: list
  elements: dict
  contains:
    config_dir:
      description: The instance's configuration directory.
      type: str
      sample: /etc/postfix-out
    name:
      description: Its C(multi_instance_name) (empty when unset).
      type: str
      sample: postfix-out
    enabled:
      description: Whether postmulti starts it (C(multi_instance_enable); the primary always).
      type: bool
      sample: true
    changed:
      description: Whether it changes.
      type: bool
      sample: true
    changes:
      description: Its changes, as RV(changes).
      type: list
      elements: dict
    removals:
      description: What its plan removes.
      type: list
      elements: str
    warnings:
      description: Its plan's warnings.
      type: list
      elements: str
    backup_file:
      description: Its main.cf backup (null when it was not written).
      type: str
    reloaded:
      description: Whether it was reloaded.
      type: bool
    listeners:
      description: Its SMTP listeners, as RV(listeners).
      type: list
      elements: dict
messages:
  description: Notes about the run (for example an interrupted earlier run completed).
  returned: always
  type: list
  elements: str
  sample: []
rolled_back:
  description: On failure, whether main.cf was put back to its state before the run.
  returned: failure
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.relayguard.mail.plugins.module_utils.postfix_options import (
    POSTFIX_RELAY_SPEC,
)
from ansible_collections.relayguard.mail.plugins.module_utils.postfix_relay_backend import (
    ApplyError,
    RelayConfigError,
    run,
)

# Every option, as DOCUMENTATION describes it (validate-modules and
# tests/postfix_remediation/test_module_docs.py compare the two).
ARGUMENT_SPEC = POSTFIX_RELAY_SPEC


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("state", "restored", ["backup_file"])],
        supports_check_mode=True,
    )
    try:
        result = run(module.params, module.check_mode, module._diff)
    except ApplyError as exc:
        module.fail_json(
            msg=str(exc),
            rolled_back=exc.rolled_back,
            backup_file=exc.backup_file,
            changed=exc.wrote and not exc.rolled_back,
        )
    except RelayConfigError as exc:
        module.fail_json(msg=str(exc), changed=False)
    except OSError as exc:  # e.g. the backup directory cannot be created: nothing written
        module.fail_json(msg=f"postfix_relay: {exc}", changed=False)
    for warning in result.warnings:
        module.warn(warning)
    module.exit_json(**result.as_dict())


if __name__ == "__main__":
    main()
