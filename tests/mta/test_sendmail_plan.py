"""The Sendmail backend's facts and plan (pure) on Debian's stock sendmail.mc and access file,
on the lab's open and closed profiles and on the ways sites open or extend relaying."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from relayguard.lab import module_utils
from relayguard.lab.postfix.config import Listener
from relayguard.lab.sendmail.config import SendmailLayout, render_files, render_mc
from relayguard.lab.sendmail.profiles import profile

if TYPE_CHECKING:
    import relay_backend
    import sendmail_apply
    import sendmail_facts
    import sendmail_plan
else:
    relay_backend = module_utils.load("relay_backend")
    relay_options = module_utils.load("relay_options")
    sendmail_facts = module_utils.load("sendmail_facts")
    sendmail_plan = module_utils.load("sendmail_plan")
    sendmail_apply = module_utils.load("sendmail_apply")

FIXTURES = Path(__file__).parent / "fixtures"
# Debian's cf/debian/sendmail.mc (sendmail-cf 8.17.1.9) and examples/db/access, as shipped.
DEBIAN_MC = (FIXTURES / "debian-sendmail.mc").read_text(encoding="utf-8")
DEBIAN_ACCESS = (FIXTURES / "debian-sendmail-access").read_text(encoding="utf-8")
Desired = sendmail_plan.SendmailDesired
ROOT = Path("/srv/lab/sm-x")


def _lab(name: str, extra_mc: str = "", access: str = "") -> sendmail_facts.SendmailFacts:
    layout = SendmailLayout(ROOT)
    mc = render_mc(layout, Listener("127.0.120.9"), "x", profile(name), Path("/x/cf"))
    files = render_files(layout, profile(name))
    mc = mc.replace("MAILER(`local')dnl\n", extra_mc + "MAILER(`local')dnl\n")
    return sendmail_facts.parse_facts(
        str(layout.mc), mc, "", files["access"] + access, files["relay-domains"]
    )


def _debian(access: str = DEBIAN_ACCESS) -> sendmail_facts.SendmailFacts:
    return sendmail_facts.parse_facts("/etc/mail/sendmail.mc", DEBIAN_MC, "", access, "")


def test_debian_stock_facts_say_where_each_value_comes_from() -> None:
    facts = _debian()

    assert facts.features == ()  # Debian's mc opens nothing
    assert facts.access_path == "/etc/mail/access"  # FEATURE(`access_db', , `skip')
    relays = {s.name: s.origin.describe() for s in facts.access_relays}
    assert relays == {
        "Connect:127": "/etc/mail/access (line 76)",
        "Connect:IPv6:::1": "/etc/mail/access (line 80)",
    }  # the commented Connect:localhost, Connect:10, Connect:172.16 ... are inactive
    assert all(s.origin.kind == "table" for s in facts.access_relays)


def test_debian_stock_is_compliant() -> None:
    assert not sendmail_plan.plan(_debian(), Desired()).changed
    allowed = Desired(allowed_networks=("127.0.0.0/8", "::1/128"))
    assert not sendmail_plan.plan(_debian(), allowed).changed


def test_debian_stock_gains_a_partner_and_a_network_and_removes_nothing() -> None:
    desired = Desired(("127.0.0.0/8", "::1/128", "192.0.2.0/24"), ("partner.example",))

    made = sendmail_plan.plan(_debian(), desired)

    assert made.removals() == ()
    files = sendmail_plan.rendered(_debian(), made)
    assert files["/etc/mail/access"].endswith("Connect:192.0.2\tRELAY\n")
    mc = files["/etc/mail/sendmail.mc"]
    # no relay-domains file known without the cf: the mc gets RELAY_DOMAIN before MAILER
    assert mc.index("RELAY_DOMAIN(`partner.example')dnl") < mc.index("MAILER(`local')")
    assert DEBIAN_MC.splitlines()[:40] == mc.splitlines()[:40]


def test_lab_open_profile_loses_promiscuous_relay_only() -> None:
    facts = _lab("open_relay")
    assert [f.name for f in facts.features] == ["promiscuous_relay"]
    assert facts.features[0].origin.path == str(ROOT / "sendmail.mc")

    made = sendmail_plan.plan(facts, Desired())

    assert [c.target for c in made.changes] == ["sendmail.mc FEATURE(promiscuous_relay)"]
    assert made.findings[0][0] == "sendmail-opening-feature"
    mc = sendmail_plan.rendered(facts, made)[facts.mc_path]
    assert "promiscuous_relay" not in mc
    assert mc.count("\n") == facts.mc_text.count("\n") - 1


def test_lab_closed_profile_is_compliant() -> None:
    facts = _lab("closed")
    assert not sendmail_plan.plan(facts, Desired(("127.0.0.1/32", "::1/128"))).changed


@pytest.mark.parametrize("feature", sendmail_plan.OPENING)
def test_every_opening_feature_is_removed(feature: str) -> None:
    facts = _lab("closed", f"FEATURE(`{feature}')dnl\n")

    made = sendmail_plan.plan(facts, Desired())

    assert [c.target for c in made.changes] == [f"sendmail.mc FEATURE({feature})"]
    assert made.removals() == ()
    assert feature not in sendmail_plan.rendered(facts, made)[facts.mc_path]


def test_relay_hosts_only_narrows_and_stays_and_commented_features_are_inactive() -> None:
    extra = "FEATURE(`relay_hosts_only')dnl\ndnl FEATURE(`promiscuous_relay')dnl\n"
    facts = _lab("closed", extra)

    assert [f.name for f in facts.features] == ["relay_hosts_only"]
    assert not sendmail_plan.plan(facts, Desired()).changed


def test_untrusted_network_is_a_named_removal_and_enforce_refuses_it() -> None:
    facts = _lab("closed", access="Connect:10\tRELAY\nTo:partner.example\tRELAY\n")
    desired = Desired(("127.0.0.1/32", "::1/128"))

    made = sendmail_plan.plan(facts, desired)

    assert made.removals() == ("access Connect:10: Connect:10",)
    access = sendmail_plan.rendered(facts, made)[facts.access_path]
    assert "Connect:10\t" not in access and "To:partner.example\tRELAY" in access
    refusal = relay_backend.removal_refusal(made.removals(), True, False)
    assert refusal is not None and "Connect:10" in refusal
    assert relay_backend.removal_refusal(made.removals(), True, True) is None


def test_unmanaged_networks_keep_every_access_entry() -> None:
    facts = _lab("open_relay", access="Connect:10\tRELAY\n")
    made = sendmail_plan.plan(facts, Desired())
    assert made.removals() == ()
    assert all("access" not in c.target for c in made.changes)


def test_relay_entire_domain_is_a_removal_only_when_networks_are_managed() -> None:
    facts = _lab("closed", "FEATURE(`relay_entire_domain')dnl\n")

    assert not sendmail_plan.plan(facts, Desired()).changed
    made = sendmail_plan.plan(facts, Desired(("127.0.0.1/32", "::1/128")))
    assert made.removals() == (
        "sendmail.mc FEATURE(relay_entire_domain): every host of the local domain ($=m)",
    )


def test_partner_domains_already_relayed_stay_and_missing_ones_go_to_class_r() -> None:
    facts = _lab("closed", access="To:kept.example\tRELAY\n")
    facts = sendmail_facts.parse_facts(
        facts.mc_path,
        facts.mc_text,
        f"FR-o {ROOT}/relay-domains\n",
        facts.access_text,
        "old.example\n",
    )
    desired = Desired(partner_domains=("kept.example", "mx.old.example", "new.example"))

    made = sendmail_plan.plan(facts, desired)

    assert [c.target for c in made.changes] == ["relay-domains new.example"]
    files = sendmail_plan.rendered(facts, made)
    assert files[str(ROOT / "relay-domains")] == "old.example\nnew.example\n"


def test_relay_authenticated_keep_true_false() -> None:
    with_auth = _lab("closed", "TRUST_AUTH_MECH(`LOGIN PLAIN')dnl\n")
    without = _lab("closed")

    assert not sendmail_plan.plan(with_auth, Desired()).changed  # keep
    assert not sendmail_plan.plan(without, Desired()).changed
    dropped = sendmail_plan.plan(with_auth, Desired(relay_authenticated="false"))
    assert "TRUST_AUTH_MECH" not in sendmail_plan.rendered(with_auth, dropped)[with_auth.mc_path]
    added = sendmail_plan.plan(without, Desired(relay_authenticated="true"))
    assert "TRUST_AUTH_MECH(`EXTERNAL" in sendmail_plan.rendered(without, added)[without.mc_path]


def test_access_keys_and_networks() -> None:
    network = sendmail_facts.connect_network
    assert str(network("Connect:10.1")) == "10.1.0.0/16"
    assert str(network("192.0.2.7")) == "192.0.2.7/32"
    assert str(network("Connect:IPv6:::1")) == "::1/128"
    assert network("Connect:localhost") is None
    assert sendmail_facts.network_key("10.1.0.0/16") == "Connect:10.1"
    assert sendmail_facts.network_key("::1/128") == "Connect:IPv6:::1"


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"relay_allowed_networks": ["10.0.0.0/12"]}, "whole octets"),
        ({"relay_allowed_networks": ["10.1.0.1/16"]}, "host bits"),
        ({"relay_allowed_networks": ["2001:db8::/32"]}, "/128"),
        ({"relay_partner_domains": ["bad domain"]}, "not a domain name"),
        ({"relay_authenticated": "maybe"}, "keep, true or false"),
        ({"mc_path": "etc/mail/sendmail.mc"}, "absolute"),
    ],
)
def test_bad_input_names_the_problem(params: dict[str, object], problem: str) -> None:
    with pytest.raises(sendmail_facts.SendmailFactsError, match=problem):
        sendmail_apply.desired_state({"mc_path": "/etc/mail/sendmail.mc", **params})


def test_removing_relay_based_on_mx_warns_about_the_domains_it_relayed() -> None:
    facts = _lab("closed", "FEATURE(`relay_based_on_MX')dnl\n")
    made = sendmail_plan.plan(facts, Desired())
    assert any("relay_partner_domains" in w for w in made.warnings), made.warnings


def test_a_whole_top_level_domain_in_class_r_or_to_is_a_named_removal() -> None:
    facts = sendmail_facts.parse_facts(
        str(ROOT / "sendmail.mc"),
        "FEATURE(`access_db', `hash /srv/lab/sm-x/access')dnl\nMAILER(`smtp')dnl\n",
        f"FR-o {ROOT}/relay-domains\n",
        "To:com\tRELAY\nTo:partner.example\tRELAY\n",
        "org\nbackup.example\n",
    )

    made = sendmail_plan.plan(facts, Desired(partner_domains=("partner.org",)))

    assert made.removals() == ("relay-domains org: org", "access To:com: com")
    assert [c.target for c in made.changes][-1] == "relay-domains partner.org"
    files = sendmail_plan.rendered(facts, made)
    assert files[str(ROOT / "relay-domains")] == "backup.example\npartner.org\n"
    assert files[str(ROOT / "access")] == "To:partner.example\tRELAY\n"
    assert relay_backend.removal_refusal(made.removals(), True, False) is not None


def test_a_relay_domain_line_with_a_top_level_domain_goes_whole_and_names_each() -> None:
    mc = "RELAY_DOMAIN(`net backup.example')dnl\nMAILER(`smtp')dnl\n"
    facts = sendmail_facts.parse_facts("/etc/mail/sendmail.mc", mc)

    made = sendmail_plan.plan(facts, Desired())

    assert made.removals() == (
        "sendmail.mc net: net",
        "sendmail.mc net: backup.example",
    )
    assert sendmail_plan.rendered(facts, made) == {"/etc/mail/sendmail.mc": "MAILER(`smtp')dnl\n"}
