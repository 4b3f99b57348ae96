"""SASL relay survives a remediation, on a real Postfix whose smtpd offers AUTH from its own
Cyrus sasldb (SASL_README; RFC 4954 AUTH, RFC 2505 section 2: an authenticated client is an
authorised one). Judged with swaks from an untrusted loopback address: before and after,
`swaks --auth` relays; after, swaks without AUTH is refused at RCPT. With
relay_authenticated: false the plan says it removes that path, and it is gone.
127.0.170.0/24 (sites170.py).
"""

from __future__ import annotations

import glob

import pytest
from support.realserver import IN_CI, require_tool

from postfix_remediation.sites170 import (
    FOREIGN,
    INBOUND,
    SWAKS_OK,
    Factory,
    delivered,
    module_run,
    postconf,
    postfix170,
    relays,
    swaks,
)

pytestmark = [pytest.mark.realserver, pytest.mark.root]
__all__ = ["postfix170"]  # the fixture, used by name

USER = "alice"
PASSWORD = "lab-only-Sasl-7"  # a lab instance's user, never a real credential
CLOSE = {"relay_allowed_networks": ["127.0.0.1/32"], "inbound_domains": [INBOUND]}


def _sasl_server(postfix170: Factory) -> object:
    require_tool("saslpasswd2")
    if not glob.glob("/usr/lib/*/sasl2/libplain.so*"):
        message = "needs Cyrus SASL's PLAIN mechanism: apt-get install libsasl2-modules"
        if IN_CI:
            pytest.fail(f"CI must run this test but it {message}")
        pytest.skip(message)
    return postfix170("open_relay", sasl_users={USER: PASSWORD})


def authenticated_relay(server: object) -> bool:
    run = swaks(server, FOREIGN, auth=(USER, PASSWORD))  # type: ignore[arg-type]
    assert "235 2.7.0 Authentication successful" in run.transcript, run.transcript
    assert PASSWORD not in run.transcript  # --auth-hide-password
    return run.returncode == SWAKS_OK


def test_sasl_relay_survives_the_remediation(postfix170: Factory) -> None:
    server = _sasl_server(postfix170)
    assert relays(server)  # an open relay for anyone
    assert authenticated_relay(server)
    done = module_run(server, **CLOSE)  # relay_authenticated: keep (the default)
    assert done.changed and done.removals == []  # type: ignore[attr-defined]
    assert "permit_sasl_authenticated" in postconf(server, "-h", "smtpd_relay_restrictions")
    assert not relays(server)  # no AUTH: refused at RCPT
    assert authenticated_relay(server)  # AUTH: still relays
    assert delivered(server)  # and mail for the inbound domain still arrives


def test_relay_authenticated_false_removes_the_path_and_says_so(postfix170: Factory) -> None:
    server = _sasl_server(postfix170)
    planned = module_run(server, check_mode=True, relay_authenticated=False, **CLOSE)
    reasons = " ".join(str(c["reason"]) for c in planned.changes)  # type: ignore[attr-defined]
    assert "removes the authenticated relay path (permit_sasl_authenticated)" in reasons
    assert authenticated_relay(server)  # check mode: nothing changed yet
    module_run(server, relay_authenticated=False, **CLOSE)
    assert "permit_sasl_authenticated" not in postconf(server, "-h", "smtpd_relay_restrictions")
    assert not authenticated_relay(server)  # AUTH succeeds, relaying does not
    assert not relays(server)
    assert delivered(server)
