"""postfix_relay on a real Postfix with postscreen in front (POSTSCREEN_README): the relay
is opened by a `-o` override on the `smtpd pass` service that postscreen hands sessions to;
the plan fixes it there, and swaks from an untrusted loopback address is refused relay while
mail to the inbound domain is still delivered. 127.0.170.0/24 (sites170.py).
"""

from __future__ import annotations

import pytest

from postfix_remediation.sites170 import (
    INBOUND,
    Factory,
    delivered,
    module_run,
    postconf,
    postfix170,
    relays,
    reload,
)

pytestmark = [pytest.mark.realserver, pytest.mark.root]
__all__ = ["postfix170"]  # the fixture, used by name

CLOSE = {"relay_allowed_networks": ["127.0.0.1/32"], "inbound_domains": [INBOUND]}


def test_override_on_the_pass_service_is_planned_and_closed_there(postfix170: Factory) -> None:
    server = postfix170("closed", postscreen=True)
    listen = f"{server.target}/inet"
    postconf(server, "-P", "smtpd/pass/mynetworks=0.0.0.0/0")
    reload(server)
    assert relays(server)  # main.cf is closed; the smtpd postscreen hands to is open
    assert "postscreen" in server.maillog_text()  # the session really went through it

    planned = module_run(server, check_mode=True, **CLOSE)
    assert [c["target"] for c in planned.changes] == ["master.cf smtpd/pass -o mynetworks"]  # type: ignore[attr-defined]
    reason = str(planned.changes[0]["reason"])  # type: ignore[attr-defined]
    assert f"the smtpd postscreen on {listen} hands sessions to" in reason
    listeners = planned.listeners  # type: ignore[attr-defined]
    assert listeners == [
        {
            "service": listen,
            "program": "postscreen",
            "session_service": "smtpd/pass",
            "postscreen_access_list": "permit_mynetworks",
            "postscreen_mynetworks": "127.0.0.1/32",
        }
    ]
    assert relays(server)  # check mode changed nothing

    done = module_run(server, **CLOSE)
    assert done.reloaded  # type: ignore[attr-defined]
    assert "smtpd/pass/mynetworks = 0.0.0.0/0" not in postconf(server, "-P")
    assert not relays(server)  # refused at RCPT for the outsider
    assert delivered(server)  # mail for the inbound domain still goes through postscreen
    assert not module_run(server, check_mode=True, **CLOSE).changed  # type: ignore[attr-defined]


def test_postscreen_own_parameters_are_reported(postfix170: Factory) -> None:
    """An override on the postscreen service is no relay path (a warning says so); a new
    mynetworks changes who skips postscreen's tests (permit_mynetworks): a warning says so."""
    server = postfix170("open_relay", postscreen=True)
    listen = f"{server.target}/inet"
    gate = "permit_mynetworks,reject_unauth_destination"  # postscreen ignores it
    postconf(server, "-P", f"{listen}/smtpd_relay_restrictions={gate}")
    reload(server)
    assert relays(server)  # main.cf trusts 0.0.0.0/0: smtpd/pass relays for anyone
    done = module_run(server, **CLOSE)
    assert [c["target"] for c in done.changes] == ["main.cf mynetworks"]  # type: ignore[attr-defined]
    warnings = " | ".join(done.warnings)  # type: ignore[attr-defined]
    assert f"postscreen on {listen} lets mynetworks clients skip its tests" in warnings
    assert f"master.cf service {listen} runs postscreen, which never relays" in warnings
    assert not relays(server)
    assert delivered(server)
