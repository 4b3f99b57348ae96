"""Evidence lines name an IPv6 address the way targets do: bracketed before the port."""

from __future__ import annotations

from relayguard.report.controls import probe_evidence


def probe(address: str | None) -> dict[str, object]:
    return {
        "target": "mx.example.net:25",
        "address": address,
        "port": 25,
        "vantage": "direct",
        "banner": "mx ESMTP",
        "verdict": "closed",
        "reason": "all refused",
        "tests": [],
    }


def test_ipv6_address_is_bracketed() -> None:
    assert "([2001:db8::25]:25)" in probe_evidence(probe("2001:db8::25"))


def test_ipv4_and_unresolved_stay_as_they_were() -> None:
    assert "(192.0.2.25:25)" in probe_evidence(probe("192.0.2.25"))
    assert "(unresolved:25)" in probe_evidence(probe(None))
