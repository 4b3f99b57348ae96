"""The Postfix plan on Debian's stock configuration, read by the real `postconf`.

main.cf is what a fresh Debian install writes: the package's /usr/share/postfix/main.cf.debian
and main.cf.tls, then the values postfix.postinst sets with `postconf -e`
(docs/sources.md#postfix-debian-defaults); master.cf is the package's master.cf.dist, once as
shipped and once with its submission/submissions example enabled, as sites do. No server runs:
the facts come from `postconf -c DIR` (-n, -x, -P, -M) on these files.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.realserver import require_tool

from postfix_remediation.backend import backend

SHARE = Path("/usr/share/postfix")
# What Debian's postfix.postinst sets on a fresh "Internet Site" install (debconf defaults;
# myhostname/mailname as the installer asks: here mx.example.org).
POSTINST = {
    "smtpd_relay_restrictions": (
        "permit_mynetworks permit_sasl_authenticated defer_unauth_destination"
    ),
    "myhostname": "mx.example.org",
    "alias_maps": "hash:/etc/aliases",
    "alias_database": "hash:/etc/aliases",
    "myorigin": "/etc/mailname",
    "mydestination": "$myhostname, mx.example.org, localhost.example.org, , localhost",
    "relayhost": "",
    "mynetworks": "127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128",
    "mailbox_size_limit": "0",
    "recipient_delimiter": "+",
    "inet_interfaces": "all",
    "inet_protocols": "all",
}


def stock_dir(root: Path, submission: bool) -> Path:
    require_tool("postconf")
    if not (SHARE / "main.cf.debian").is_file():
        pytest.skip("needs Debian's postfix package files: apt-get install postfix")
    config = root / ("submission" if submission else "stock")
    config.mkdir()
    main = (SHARE / "main.cf.debian").read_text() + (SHARE / "main.cf.tls").read_text()
    main += "".join(f"{name} = {value}\n" for name, value in POSTINST.items())
    (config / "main.cf").write_text(main)
    master = (SHARE / "master.cf.dist").read_text()
    if submission:  # uncomment the "any client" submission and submissions services
        lines = master.splitlines()
        for index, line in enumerate(lines):
            if line.startswith(("#submission ", "#submissions ")):
                lines[index] = line[1:]
                follow = index + 1
                while lines[follow].startswith("#  -o"):
                    lines[follow] = lines[follow][1:]
                    follow += 1
        master = "\n".join(lines) + "\n"
    (config / "master.cf").write_text(master)
    return config


@pytest.fixture(params=[False, True], ids=["as-shipped", "submission-enabled"])
def debian(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    config = stock_dir(tmp_path, bool(request.param))
    return backend.read_facts(backend.PostfixTools.locate(), str(config), ["example.org"])


def test_stock_facts_name_where_values_come_from(debian: object) -> None:
    facts = debian
    assert facts.origin("smtpd_relay_restrictions").kind == "main"  # type: ignore[attr-defined]
    assert facts.origin("relay_domains").kind == "default"  # type: ignore[attr-defined]
    services = facts.smtpd_services()  # type: ignore[attr-defined]
    assert "smtp/inet" in services
    for override in facts.master_overrides:  # type: ignore[attr-defined]
        where = facts.origin(override.name, f"{override.service}/{override.service_type}")  # type: ignore[attr-defined]
        assert where.kind == "override" and where.path.endswith("master.cf")


def test_stock_configuration_is_compliant_when_nothing_is_managed(debian: object) -> None:
    plan = backend.plan_relay(debian, backend.desired_state({}))
    assert not plan.changed
    assert plan.warnings == ()


def test_stock_configuration_with_a_typical_inventory(debian: object) -> None:
    """SASL relay and Debian's 4xx refusal stay, the submission example (relay list empty,
    recipient list `permit_sasl_authenticated,reject`) is already closed, and dropping the
    IPv4-mapped loopback network Debian trusts is named, not silent."""
    want = backend.desired_state(
        {
            "relay_allowed_networks": ["127.0.0.0/8", "::1/128"],
            "inbound_domains": ["example.org"],
            "inbound_domain_class": "mydestination",
        }
    )
    plan = backend.plan_relay(debian, want)
    assert plan.settings() == {
        "mynetworks": "127.0.0.0/8, [::1]/128",
        "mydestination": "$myhostname, mx.example.org, localhost.example.org, localhost, "
        "example.org",
    }
    assert plan.override_settings() == {}
    assert plan.removals() == ("main.cf mynetworks: [::ffff:127.0.0.0]/104",)
