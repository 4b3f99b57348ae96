"""The Exim backend's plan (pure) on Debian's stock update-exim4.conf.conf, on the lab's
exim.conf (the default configuration's ACL) and on the ways sites open or extend it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from relayguard.lab import module_utils
from relayguard.lab.exim.config import EximLayout, render
from relayguard.lab.exim.profiles import profile
from relayguard.lab.postfix.config import Listener

if TYPE_CHECKING:
    import exim_config
    import exim_plan
    import relay_backend
else:
    relay_backend = module_utils.load("relay_backend")
    exim_config = module_utils.load("exim_config")
    exim_plan = module_utils.load("exim_plan")

FIXTURES = Path(__file__).parent / "fixtures"
# The file Debian's debconf writes for a fresh exim4-config ("local delivery only"), as
# update-exim4.conf.conf(5) describes its variables.
DEBIAN_STOCK = (FIXTURES / "update-exim4.conf.conf").read_text(encoding="utf-8")


def _plan(facts: exim_plan.EximFacts, desired: exim_plan.EximDesired) -> relay_backend.Plan:
    return relay_backend.evaluate(exim_plan.EXIM_RULES, facts, desired)


def _lab_conf(name: str) -> str:
    root = Path("/srv/lab/exim-x")
    return render(EximLayout(root), Listener("127.0.110.9"), "x", profile(name), Path("/x/exim"))


def test_lists_with_ipv6_doubled_colons_or_a_changed_separator() -> None:
    assert exim_config.split_exim_list("127.0.0.1 : ::::1 : 2001::db8::::/32") == [
        "127.0.0.1",
        "::1",
        "2001:db8::/32",
    ]
    assert exim_config.split_exim_list("<; 127.0.0.1 ; ::1") == ["127.0.0.1", "::1"]
    assert exim_config.join_exim_list(["127.0.0.1", "::1"]) == "<; 127.0.0.1 ; ::1"
    assert exim_config.split_debian_list("127.0.0.1 ; ::1") == ["127.0.0.1", "::1"]


def test_debian_stock_is_compliant_without_allowed_networks() -> None:
    facts = exim_plan.debian_facts("/etc/exim4/update-exim4.conf.conf", DEBIAN_STOCK)

    assert facts.local_domains.value == "mx1.example.org"
    assert not _plan(facts, exim_plan.EximDesired(allowed_networks=())).changed


def test_debian_stock_gains_the_allowed_networks_and_partners_and_removes_nothing() -> None:
    facts = exim_plan.debian_facts("/etc/exim4/update-exim4.conf.conf", DEBIAN_STOCK)
    desired = exim_plan.EximDesired(("10.1.0.0/16",), partner_domains=("partner.example",))

    plan = _plan(facts, desired)
    assert {c.rule for c in plan.changes} == {"exim-relay-nets", "exim-relay-domains"}
    assert plan.removals() == ()
    text = exim_plan.plan_text(facts, plan.changes)
    values = exim_config.debian_values(text)
    assert values["dc_relay_nets"] == "10.1.0.0/16"
    assert values["dc_relay_domains"] == "partner.example"
    assert values["dc_other_hostnames"] == "mx1.example.org"  # untouched


def test_debian_open_nets_and_wildcard_domains_are_removed_by_name() -> None:
    opened = DEBIAN_STOCK.replace(
        "dc_relay_nets=''", "dc_relay_nets='0.0.0.0/0 ; 192.168.1.0/24 ; 10.9.0.0/16'"
    ).replace("dc_relay_domains=''", "dc_relay_domains='* ; backup.example'")
    facts = exim_plan.debian_facts("/etc/exim4/update-exim4.conf.conf", opened)

    plan = _plan(facts, exim_plan.EximDesired(("192.168.0.0/16",)))
    # what matches anyone is the open relay being closed, said in the reason; a narrower
    # network outside the allowed ones is a legitimate path dropped: a removal
    assert plan.removals() == ("update-exim4.conf.conf dc_relay_nets: 10.9.0.0/16",)
    reasons = {c.rule: c.reason for c in plan.changes}
    assert "closes 0.0.0.0/0" in reasons["exim-relay-nets"]
    assert "closes *" in reasons["exim-relay-domains"]
    values = exim_config.debian_values(exim_plan.plan_text(facts, plan.changes))
    # The site's own network inside the allowed one and its backup-MX domain stay.
    assert values["dc_relay_nets"] == "192.168.1.0/24 ; 192.168.0.0/16"
    assert values["dc_relay_domains"] == "backup.example"
    refusal = relay_backend.removal_refusal(plan.removals(), True, False)
    assert refusal is not None and "10.9.0.0/16" in refusal and "0.0.0.0/0" not in refusal


def test_lab_closed_exim_conf_is_compliant_and_open_loses_the_wide_nets() -> None:
    desired = exim_plan.EximDesired(allowed_networks=())
    closed = exim_plan.plain_facts("/x/exim.conf", _lab_conf("closed"))
    assert closed.acl_name == "acl_check_rcpt"
    assert closed.rcpt_acl is not None and exim_plan.refusal_index(closed.rcpt_acl) is not None
    assert not _plan(closed, desired).changed

    opened = exim_plan.plain_facts("/x/exim.conf", _lab_conf("open_relay"))
    plan = _plan(opened, desired)
    assert plan.removals() == ()  # 0.0.0.0/0 and ::/0 match anyone: closed, not removed
    assert "closes 0.0.0.0/0, ::/0" in plan.changes[0].reason
    after = exim_plan.plain_facts("/x/exim.conf", exim_plan.plan_text(opened, plan.changes))
    assert after.nets() == ["127.0.0.1"]
    assert not _plan(after, desired).changed


_NO_REFUSAL = """\
hostlist relay_from_hosts = 127.0.0.1
domainlist local_domains = @
acl_smtp_rcpt = acl_check_rcpt
begin acl
acl_check_rcpt:
  accept  hosts = +relay_from_hosts
  accept  authenticated = *
  require verify = recipient
  accept
"""


def test_an_acl_without_the_refusal_gets_it_before_the_final_accept() -> None:
    facts = exim_plan.plain_facts("/x/exim.conf", _NO_REFUSAL)
    assert facts.rcpt_acl is not None and exim_plan.refusal_index(facts.rcpt_acl) is None

    plan = _plan(facts, exim_plan.EximDesired(allowed_networks=()))
    assert [c.rule for c in plan.changes] == ["exim-rcpt-acl"]
    text = exim_plan.plan_text(facts, plan.changes)
    fixed = exim_plan.plain_facts("/x/exim.conf", text)
    assert fixed.rcpt_acl is not None
    index = exim_plan.refusal_index(fixed.rcpt_acl)
    # After both relay accepts, before verify and the final accept.
    assert index == 2, text
    assert not _plan(fixed, exim_plan.EximDesired(allowed_networks=())).changed


def test_authenticated_relay_is_kept_by_default_and_removed_only_when_asked() -> None:
    facts = exim_plan.plain_facts("/x/exim.conf", _lab_conf("closed"))
    keep = _plan(facts, exim_plan.EximDesired((), relay_authenticated="keep"))
    assert not keep.changed

    drop = _plan(facts, exim_plan.EximDesired((), relay_authenticated="false"))
    assert [c.rule for c in drop.changes] == ["exim-authenticated"]
    assert drop.removals() == (f"{drop.changes[0].target}: authenticated relay",)
    after = exim_plan.plain_facts("/x/exim.conf", exim_plan.plan_text(facts, drop.changes))
    assert after.rcpt_acl is not None
    assert not [s for s in after.rcpt_acl if s.condition("authenticated") is not None]
    assert exim_plan.refusal_index(after.rcpt_acl) is not None
