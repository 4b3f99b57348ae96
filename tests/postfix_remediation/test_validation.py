"""Module options are validated at the edge: hostile and malformed values are refused with
the option and the value named, before any command runs (issue 6, issue 10)."""

from __future__ import annotations

import pytest

from postfix_remediation.backend import backend

InputError = backend.InputError

HOSTILE_NETWORKS = [
    ("10.0.0.0/8 192.0.2.0/24", "a space"),
    ("10.0.0.0/8,192.0.2.0/24", "a comma"),
    ("10.0.0.0/8\n", "a newline"),
    ("10.0.0.0/8\nsmtpd_relay_restrictions = permit", "a newline"),
    ("10.0.0.0/8\r", "a carriage return"),
    ("$mynetworks", "'$'"),
    ("${mynetworks}", "'$'"),
    ("10.0.0.0/8\0", "a NUL byte"),
    ("10.0.0.0/8;", "';'"),
    ("`id`", "a backquote"),
    ("$(id)", "'$'"),
    ("'10.0.0.0/8'", "a quote"),
    ("hash:/etc/postfix/network_table", "the character '_'"),
    ("cidr:/etc/postfix/networks", "not a CIDR"),
    ("10.0.0.0/8\t", "a tab"),
    ("!10.0.0.0/8", "the character '!'"),
    ("10.0.0.0/8 #", "a space"),
    ("192.0.2.1/24", "host bits set"),
    ("0.0.0.0/0", "wider than /8"),
    ("128.0.0.0/1", "wider than /8"),
    ("::/0", "wider than /16"),
    ("[2000::]/3", "wider than /16"),
    ("10.0.0.0/33", "not a CIDR"),
    ("10.0.0", "not a CIDR"),
    ("", "is empty"),
    ("example.com", "not a CIDR"),
    ("10.0.0.0/８", "non-ASCII"),
]


@pytest.mark.parametrize(("value", "problem"), HOSTILE_NETWORKS)
def test_hostile_networks_are_refused_naming_field_and_value(value: str, problem: str) -> None:
    with pytest.raises(InputError) as caught:
        backend.desired_state({"relay_allowed_networks": ["127.0.0.0/8", value]})
    message = str(caught.value)
    assert message.startswith("relay_allowed_networks[1]: ")
    assert repr(value)[:40] in message
    assert problem in message
    assert "\n" not in message and "\0" not in message


HOSTILE_DOMAINS = [
    ("example.org example.net", "a space"),
    ("example.org,example.net", "a comma"),
    ("example.org\n", "a newline"),
    ("$mydomain", "'$'"),
    ("example.org\0", "a NUL byte"),
    ("*.example.org", "wildcards"),
    ("bücher.example", "xn--"),
    ("例え.テスト", "xn--"),
    ("-bad.example", "not a domain name"),
    ("bad-.example", "not a domain name"),
    ("a..example", "not a domain name"),
    ("example.org.", "ends with a dot"),
    ("a" * 64 + ".example", "not a domain name"),
    (".".join(["abcdefghi"] * 26), "longer than 253"),
    ("192.0.2.1", "looks like an IP address"),
    ("[192.0.2.1]", "'['"),
    ("under_score.example", "the character '_'"),
    ("hash:/etc/postfix/relay_domains", "the character ':'"),
    ("", "is empty"),
]


@pytest.mark.parametrize(("value", "problem"), HOSTILE_DOMAINS)
def test_hostile_domains_are_refused_naming_field_and_value(value: str, problem: str) -> None:
    with pytest.raises(InputError) as caught:
        backend.desired_state({"inbound_domains": ["example.org", value]})
    message = str(caught.value)
    assert message.startswith("inbound_domains[1]: ")
    assert problem in message


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("config_dir", "etc/postfix", "not an absolute path"),
        ("config_dir", "/etc/postfix\n", "a newline"),
        ("config_dir", "/etc/post fix", "a space"),
        ("config_dir", "/etc/postfix,/tmp", "a comma"),
        ("config_dir", "/etc/$HOME", "'$'"),
        ("config_dir", "/etc/postfix/../shadow", "'..'"),
        ("config_dir", "/etc/postfix\0", "a NUL byte"),
        ("backup_dir", "relative", "not an absolute path"),
        ("backup_file", "/tmp/x;rm", "';'"),
        ("backup_keep", 0, "from 1 to 1000"),
        ("backup_keep", True, "from 1 to 1000"),
        ("state", "absent", "present or restored"),
    ],
)
def test_where_options_are_validated(field: str, value: object, problem: str) -> None:
    options: dict[str, object] = {"config_dir": "/etc/postfix", field: value}
    with pytest.raises(InputError) as caught:
        backend.run_settings(options, check_mode=False, want_diff=False)
    assert str(caught.value).startswith(f"{field}: ")
    assert problem in str(caught.value)


def test_restored_needs_a_backup_file() -> None:
    with pytest.raises(InputError, match="backup_file: None refused: is required"):
        backend.run_settings({"state": "restored"}, check_mode=False, want_diff=False)


def test_a_bare_backup_name_is_looked_up_in_the_backup_dir() -> None:
    settings = backend.run_settings(
        {"state": "restored", "config_dir": "/srv/pf", "backup_file": "main.cf.1"}, False, False
    )
    assert settings.backup_file == "/srv/pf/relayguard-backups/main.cf.1"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("192.0.2.0/24", "192.0.2.0/24"),
        ("192.0.2.7", "192.0.2.7/32"),
        ("2001:db8::/32", "[2001:db8::]/32"),
        ("[2001:DB8::]/32", "[2001:db8::]/32"),
        ("[2001:db8::1]", "[2001:db8::1]/128"),
        ("::1", "[::1]/128"),
        ("127.0.0.0/8", "127.0.0.0/8"),
    ],
)
def test_networks_are_normalised_to_postfix_form(value: str, expected: str) -> None:
    assert backend.validate_network("n", value) == expected


def test_domains_are_lower_cased_and_deduplicated_subdomain_form_kept() -> None:
    desired = backend.desired_state(
        {"inbound_domains": ["Example.ORG", "example.org", ".example.org", "xn--bcher-kva.example"]}
    )
    assert desired.inbound_domains == ("example.org", ".example.org", "xn--bcher-kva.example")


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"relay_allowed_networks": "10.0.0.0/8"}, "relay_allowed_networks"),
        ({"inbound_domains": "example.org"}, "inbound_domains"),
        ({"relay_allowed_networks": [8]}, "relay_allowed_networks[0]"),
        ({"relay_authenticated": "yes"}, "relay_authenticated"),
        ({"relay_refusal": "maybe"}, "relay_refusal"),
        ({"inbound_domain_class": "transport_maps"}, "inbound_domain_class"),
        ({"relay_allowed_networks": ["10.0.0.0/8"] * 1001}, "relay_allowed_networks"),
    ],
)
def test_wrong_types_and_choices_are_refused(options: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as caught:
        backend.desired_state(options)
    assert caught.value.field == field


def test_a_long_value_is_shown_bounded() -> None:
    with pytest.raises(InputError) as caught:
        backend.desired_state({"inbound_domains": ["x y" * 500]})
    assert len(str(caught.value)) < 250


def test_hostile_options_stop_before_any_postfix_command(tmp_path: object) -> None:
    """run() validates everything before it even looks for Postfix's programs."""
    looked_up: list[bool] = []

    def tools() -> object:
        looked_up.append(True)
        raise AssertionError("no Postfix command may run for invalid options")

    options = {"config_dir": "/etc/postfix", "relay_allowed_networks": ["10.0.0.0/8\nx = y"]}
    with pytest.raises(InputError, match=r"relay_allowed_networks\[0\]"):
        backend.run(options, check_mode=False, want_diff=False, tools_factory=tools)
    assert looked_up == []
