"""Pure decisions: outcome of a reply pair, host verdict, RFC 2505 findings."""

from __future__ import annotations

import pytest

from relayguard.probe import judge
from relayguard.probe.catalog import CONFORMANCE_CHECKS, Exercises
from relayguard.probe.reply import Reply
from relayguard.vocabulary import FindingResult, Outcome, Verdict


def r(code: int, text: str = "x") -> Reply:
    return Reply(code, (text,))


@pytest.mark.parametrize(
    ("mail", "rcpt", "expected"),
    [
        (r(250), r(250), Outcome.RELAYED),
        (r(250), r(251), Outcome.RELAYED),
        (r(250), r(554, "5.7.1 Relay access denied"), Outcome.REFUSED),
        (r(250), r(450, "4.7.1 try later"), Outcome.DEFERRED),
        (r(250), r(454, "4.7.1 Relay access denied"), Outcome.DEFERRED),
        (r(250), r(530, "5.7.1 Client was not authenticated"), Outcome.AUTH_REQUIRED),
        (r(250), r(550, "5.7.0 Authentication required"), Outcome.AUTH_REQUIRED),
        (r(530, "5.7.0 Authentication required"), None, Outcome.AUTH_REQUIRED),
        # RFC 3207 §4: encryption demanded first, relaying not yet answered
        (r(530, "5.7.0 Must issue a STARTTLS command first"), None, Outcome.ERROR),
        (r(553, "5.1.8 sender rejected"), None, Outcome.REFUSED),
        (r(451), None, Outcome.DEFERRED),
        (r(250), None, Outcome.ERROR),
        (r(250), r(354), Outcome.ERROR),
    ],
)
def test_classify_envelope(mail: Reply, rcpt: Reply | None, expected: Outcome) -> None:
    assert judge.classify_envelope(mail, rcpt) is expected


def rec(i: int, outcome: Outcome, exercises: Exercises = Exercises.PLAIN) -> judge.TestRecord:
    return judge.TestRecord(f"t{i}", None, exercises, "src", "<a>", "<b>", outcome)


def test_verdict_open_wins_over_failures() -> None:
    records = [rec(1, Outcome.REFUSED), rec(2, Outcome.RELAYED), rec(3, Outcome.ERROR)]
    verdict, reason = judge.verdict(records, "host time bound reached")
    assert verdict is Verdict.OPEN and "t2" in reason


def test_verdict_closed_needs_every_test_judged() -> None:
    closed = [rec(1, Outcome.REFUSED), rec(2, Outcome.DEFERRED), rec(3, Outcome.AUTH_REQUIRED)]
    assert judge.verdict(closed, None)[0] is Verdict.CLOSED
    partial = [*closed, rec(4, Outcome.ERROR)]
    verdict, reason = judge.verdict(partial, None)
    assert verdict is Verdict.INCONCLUSIVE and "t4" in reason


def test_verdict_inconclusive_carries_host_failure() -> None:
    verdict, reason = judge.verdict([rec(1, Outcome.SKIPPED)], "connect failed: refused")
    assert verdict is Verdict.INCONCLUSIVE and reason == "connect failed: refused"
    assert judge.verdict([], None)[0] is Verdict.INCONCLUSIVE


def test_findings_routing_and_sender_trust() -> None:
    records = [
        rec(1, Outcome.REFUSED),
        rec(2, Outcome.RELAYED, Exercises.PERCENT_HACK),
        rec(3, Outcome.RELAYED, Exercises.SENDER_TRUST),
    ]
    found = {f.id: f for f in judge.findings(records, [], local_domain_given=True)}
    assert found["refused-in-dialogue"].result is FindingResult.FAIL
    assert found["routing-forms-stripped"].result is FindingResult.FAIL
    assert "t2" in found["routing-forms-stripped"].detail
    assert found["relay-not-by-sender"].result is FindingResult.FAIL


def test_a_refused_sender_decides_the_test_at_mail() -> None:
    assert judge.decided_at(r(250)) == "rcpt"
    assert judge.decided_at(r(501, "<antispam@[127.0.34.25]>: domain literals not allowed")) == (
        "mail"
    )


def at_mail(i: int, exercises: Exercises) -> judge.TestRecord:
    """Exim with domain literals off: nmap's sender <antispam@[IP]> refused at MAIL FROM."""
    return judge.TestRecord(
        f"t{i}", None, exercises, "src", "<antispam@[127.0.34.25]>", "<b>", Outcome.REFUSED,
        code=501, reply="<antispam@[127.0.34.25]>: domain literals not allowed",
        decided_at="mail",
    )  # fmt: skip


def test_routing_forms_never_tried_are_not_a_pass() -> None:
    """The mixed-fleet benchmark found it on Exim: every routing form refused with the sender,
    so no form was tried; the finding said "all 13 routing-form tests refused" (pass)."""
    records = [
        rec(1, Outcome.REFUSED),
        at_mail(2, Exercises.PERCENT_HACK),
        at_mail(3, Exercises.BANG_PATH),
    ]
    found = {f.id: f for f in judge.findings(records, [], local_domain_given=True)}
    routing = found["routing-forms-stripped"]
    assert routing.result is FindingResult.NOT_APPLICABLE
    assert "none of the 2 routing-form tests reached RCPT" in routing.detail
    assert "domain literals not allowed" in routing.detail
    verdict, reason = judge.verdict(records, None)
    assert verdict is Verdict.CLOSED  # the envelopes were refused, as nmap counts them
    assert "2 at MAIL FROM" in reason


def test_routing_forms_partly_tried_pass_and_say_how_many_were_not() -> None:
    records = [rec(1, Outcome.REFUSED, Exercises.SOURCE_ROUTE), at_mail(2, Exercises.BANG_PATH)]
    found = {f.id: f for f in judge.findings(records, [], local_domain_given=True)}
    routing = found["routing-forms-stripped"]
    assert routing.result is FindingResult.PASS
    assert routing.detail == "all 2 routing-form tests refused (1 at MAIL FROM, the form not tried)"


def test_findings_for_conformance_checks() -> None:
    checks = {c.id: c for c in CONFORMANCE_CHECKS}
    records = [
        judge.CheckRecord(checks["null-sender-accepted"], (), r(250), r(550, "5.1.1 unknown")),
        judge.CheckRecord(checks["vrfy-controlled"], (), None, r(250, "<root@example.net>")),
        judge.CheckRecord(checks["expn-controlled"], (), None, r(252, "cannot verify")),
        judge.CheckRecord(checks["etrn-controlled"], (), None, r(250, "Queuing started")),
    ]
    given = {f.id: f.result for f in judge.findings([], records, local_domain_given=True)}
    assert given == {
        "null-sender-accepted": FindingResult.FAIL,
        "vrfy-controlled": FindingResult.FAIL,
        "expn-controlled": FindingResult.PASS,
        "etrn-controlled": FindingResult.FAIL,
    }
    guessed = {f.id: f.result for f in judge.findings([], records, local_domain_given=False)}
    assert guessed["null-sender-accepted"] is FindingResult.NOT_APPLICABLE
