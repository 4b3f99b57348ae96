"""`ssh://user@host[:port]` vantage specs: parsed, validated, passwords refused unechoed."""

from __future__ import annotations

import pytest

from relayguard.validate import InputError
from relayguard.vantage import SshVantage, parse_vantage


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("ssh://probe@jump.example.net", SshVantage("probe", "jump.example.net", 22)),
        ("ssh://probe@jump.example.net:2222", SshVantage("probe", "jump.example.net", 2222)),
        ("SSH://root@203.0.113.10:22", SshVantage("root", "203.0.113.10", 22)),
        ("ssh://u@[2001:DB8::1]:2200", SshVantage("u", "2001:db8::1", 2200)),
        ("ssh://u@[2001:db8::1]", SshVantage("u", "2001:db8::1", 22)),
        ("ssh://svc.relay-1@Jump.Example.NET", SshVantage("svc.relay-1", "jump.example.net", 22)),
    ],
)
def test_valid_specs(spec: str, expected: SshVantage) -> None:
    assert parse_vantage(spec) == expected


def test_round_trip_and_known_hosts_names() -> None:
    assert str(parse_vantage("ssh://u@h.example:22")) == "ssh://u@h.example"
    assert str(parse_vantage("ssh://u@[2001:db8::1]:2200")) == "ssh://u@[2001:db8::1]:2200"
    assert parse_vantage("ssh://u@h.example").known_hosts_name == "h.example"
    assert parse_vantage("ssh://u@h.example:2222").known_hosts_name == "[h.example]:2222"


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("jump.example.net", "ssh://user@host"),
        ("http://u@jump", "ssh://user@host"),
        ("ssh://jump.example.net", "names no user"),
        ("ssh://@jump.example.net", "names no user"),
        ("ssh://-oProxyCommand=x@jump", "invalid user name"),
        ("ssh://u@jump:0", "invalid port"),
        ("ssh://u@jump:65536", "invalid port"),
        ("ssh://u@jump:22x", "invalid port"),
        ("ssh://u@jump:", "empty port"),
        ("ssh://u@jump/path", "path, query or fragment"),
        ("ssh://u@jump?x=1", "path, query or fragment"),
        ("ssh://u@jump host", "spaces"),
        ("ssh://u@jump\n", "control"),
        ("ssh://u@jump\0", "control"),
        ("ssh://u@[2001:db8::1", "unclosed"),
        ("ssh://u@[nothex::1]:22", "invalid IPv6"),
        ("ssh://u@bad_host", "not a domain name"),
        ("ssh://u@jüмp.example", "non-ASCII"),
        ("ssh://u@" + "a" * 300, "longer than"),
        (None, "not a string"),
    ],
)
def test_invalid_specs_are_refused_naming_the_field(spec: object, problem: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_vantage(spec)
    assert str(caught.value).startswith("via: ")
    assert problem in str(caught.value)


def test_a_password_in_the_url_is_refused_and_not_echoed() -> None:
    with pytest.raises(InputError) as caught:
        parse_vantage("ssh://probe:Sup3rSecret@jump.example.net")
    assert "Sup3rSecret" not in str(caught.value)
    assert "password" in str(caught.value)
