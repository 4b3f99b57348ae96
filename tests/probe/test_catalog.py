"""The catalog's address forms: nmap's sixteen reproduced exactly, IMCEA encoding, data shape."""

from __future__ import annotations

import pytest

from relayguard.probe.addresses import address_literal, imcea_encode, imceasmtp, srvname_from
from relayguard.probe.catalog import (
    CONFORMANCE_CHECKS,
    RELAY_TESTS,
    AddressContext,
    render,
)

CTX = AddressContext(
    from_local="antispam",
    to_local="relaytest",
    external_domain="nmap.scanme.org",
    ip="192.0.2.25",
    srvname="mail.example.net",
    local_domain="example.net",
)

# nmap 7.93 smtp-open-relay.nse, tests 1-16, for banner "220 mail.example.net ESMTP" and
# target 192.0.2.25 (nmap sends FROM:<%s> and TO:<%s>).
NMAP_EXPECTED = {
    1: ("<>", "<relaytest@nmap.scanme.org>"),
    2: ("<antispam@nmap.scanme.org>", "<relaytest@nmap.scanme.org>"),
    3: ("<antispam@mail.example.net>", "<relaytest@nmap.scanme.org>"),
    4: ("<antispam@[192.0.2.25]>", "<relaytest@nmap.scanme.org>"),
    5: ("<antispam@[192.0.2.25]>", "<relaytest%nmap.scanme.org@[192.0.2.25]>"),
    6: ("<antispam@[192.0.2.25]>", "<relaytest%nmap.scanme.org@mail.example.net>"),
    7: ("<antispam@[192.0.2.25]>", '<"relaytest@nmap.scanme.org">'),
    8: ("<antispam@[192.0.2.25]>", '<"relaytest%nmap.scanme.org">'),
    9: ("<antispam@[192.0.2.25]>", "<relaytest@nmap.scanme.org@[192.0.2.25]>"),
    10: ("<antispam@[192.0.2.25]>", '<"relaytest@nmap.scanme.org"@[192.0.2.25]>'),
    11: ("<antispam@[192.0.2.25]>", "<relaytest@nmap.scanme.org@mail.example.net>"),
    12: ("<antispam@[192.0.2.25]>", "<@[192.0.2.25]:relaytest@nmap.scanme.org>"),
    13: ("<antispam@[192.0.2.25]>", "<@mail.example.net:relaytest@nmap.scanme.org>"),
    14: ("<antispam@[192.0.2.25]>", "<nmap.scanme.org!relaytest>"),
    15: ("<antispam@[192.0.2.25]>", "<nmap.scanme.org!relaytest@[192.0.2.25]>"),
    16: ("<antispam@[192.0.2.25]>", "<nmap.scanme.org!relaytest@mail.example.net>"),
}


def test_nmap_sixteen_reproduced_exactly() -> None:
    by_number = {t.nmap: t for t in RELAY_TESTS if t.nmap is not None}
    assert sorted(by_number) == list(range(1, 17))
    for number, (mail_from, rcpt_to) in NMAP_EXPECTED.items():
        test = by_number[number]
        assert (render(test.mail_from, CTX), render(test.rcpt_to, CTX)) == (mail_from, rcpt_to)


def test_catalog_entries_are_unique_and_sourced() -> None:
    ids = [t.id for t in RELAY_TESTS] + [c.id for c in CONFORMANCE_CHECKS]
    assert len(ids) == len(set(ids))
    assert all(t.source and t.exercises for t in RELAY_TESTS)
    assert all(c.section and c.title for c in CONFORMANCE_CHECKS)
    # more than nmap: encapsulation and classic testers' variants are there
    assert len(RELAY_TESTS) > 16


@pytest.mark.parametrize(
    ("banner", "ehlo", "expected"),
    [
        ("220 mail.example.net ESMTP Postfix", None, "mail.example.net"),
        (
            "220 EXCH55.corp.example Microsoft ESMTP MAIL Service, Version: 5.5.2448.0",
            None,
            "EXCH55.corp.example",
        ),
        ("220-multi.example.org first line", None, None),
        ("220-", "250-fallback.example.org Hello", "fallback.example.org"),
        ("220 ", None, None),
        ("220 host_with_underscore.example", None, "host"),
    ],
)
def test_srvname_as_nmap_derives_it(banner: str, ehlo: str | None, expected: str | None) -> None:
    assert srvname_from(banner, ehlo) == expected


def test_imcea_encoding() -> None:
    # MS-OXCMAIL 2.1.3.1.8: '@' = +40, '.' = +2E, '/' = '_', letters/digits/-/= kept
    assert imcea_encode("relaytest@example.net") == "relaytest+40example+2Enet"
    assert imcea_encode("a/b=c-d_e") == "a_b=c-d+5Fe"
    assert imceasmtp("relaytest@example.net") == "IMCEASMTP-relaytest+40example+2Enet"


def test_encapsulation_tests_target_the_local_domain() -> None:
    rendered = {t.id: render(t.rcpt_to, CTX) for t in RELAY_TESTS}
    assert rendered["imceasmtp-local"] == "<IMCEASMTP-relaytest+40nmap+2Escanme+2Eorg@example.net>"
    assert rendered["imcea-quoted"] == '<"IMCEA relaytest@nmap.scanme.org"@example.net>'
    assert rendered["rcpt-without-brackets"] == "relaytest@nmap.scanme.org"
    assert rendered["upper-case-domain"] == "<relaytest@NMAP.SCANME.ORG>"


def test_ipv6_literal_is_tagged() -> None:
    assert address_literal("::1") == "[IPv6:::1]"
    assert address_literal("192.0.2.1") == "[192.0.2.1]"
