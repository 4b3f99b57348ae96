"""The own-domain sender finding: may an untrusted client send as the server's own domain?

A sender-authentication finding beside the verdict (docs/probe.md): pass when the envelope
MAIL FROM:<postmaster@LOCAL> RCPT TO:<postmaster@LOCAL> is refused, fail when accepted.
"""

from __future__ import annotations

import pytest
from support.scripted_smtp import Script, Session, relay_policy, serve

from relayguard.probe import ProbeOptions, judge, probe_targets
from relayguard.probe.catalog import CONFORMANCE_CHECKS
from relayguard.probe.reply import Reply
from relayguard.vocabulary import FindingResult, Verdict

CHECK = next(c for c in CONFORMANCE_CHECKS if c.id == judge.OWN_DOMAIN_CHECK)
SENT = ("MAIL FROM:<postmaster@test.example>", "RCPT TO:<postmaster@test.example>")


def r(code: int, text: str = "x") -> Reply:
    return Reply(code, (text,))


@pytest.mark.parametrize(
    ("mail", "rcpt", "given", "expected"),
    [
        (r(250), r(250), True, FindingResult.FAIL),
        (r(250), r(250), False, FindingResult.FAIL),
        (
            r(550, "5.7.1 Client does not have permissions to send as this sender"),
            None,
            True,
            FindingResult.PASS,
        ),
        (r(250), r(553, "5.7.1 Sender address rejected: not logged in"), True, FindingResult.PASS),
        (r(250), r(550, "5.1.1 unknown domain"), False, FindingResult.NOT_APPLICABLE),
        (None, None, True, FindingResult.ERROR),
    ],
)
def test_own_domain_sender_decision(
    mail: Reply | None, rcpt: Reply | None, given: bool, expected: FindingResult
) -> None:
    record = judge.CheckRecord(CHECK, SENT, mail, rcpt)
    finding = judge.own_domain_sender(record, given)
    assert finding is not None and finding.result is expected, finding
    assert finding.id == "own-domain-sender-refused"


def test_no_check_run_no_finding() -> None:
    assert judge.own_domain_sender(None, True) is None


def refusing_own_domain_senders() -> object:
    """Closed, and refuses MAIL FROM in its own domain from anyone (no AUTH offered)."""
    base = relay_policy(False)

    def handle(session: Session, line: str) -> bytes | None:
        if line.upper().startswith("MAIL") and "@test.example>" in line.lower():
            return b"550 5.7.1 Client does not have permissions to send as this sender\r\n"
        return base(session, line)

    return handle


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (relay_policy(False), FindingResult.FAIL),  # accepts postmaster@own -> postmaster@own
        (refusing_own_domain_senders(), FindingResult.PASS),
    ],
)
def test_finding_beside_the_verdict(policy: object, expected: FindingResult) -> None:
    with serve(Script(policy), host="127.0.2.195") as srv:  # type: ignore[arg-type]
        options = ProbeOptions(command_timeout=3, local_domain="test.example")
        (result,) = probe_targets([srv.target], options)
    assert result.verdict is Verdict.CLOSED, result.reason  # the verdict is about relaying only
    (finding,) = result.sender
    assert finding.result is expected, finding
    assert result.to_dict()["sender"][0]["result"] == expected.value
