"""Unit tests of the probe-engine fixes the hostile suite led to (see docs/reliability.md)."""

from __future__ import annotations

import pytest

from relayguard.probe import judge
from relayguard.probe.catalog import RELAY_TESTS
from relayguard.probe.reply import ProtocolError, ReplyParser
from relayguard.vocabulary import Outcome, Verdict


def test_replies_before_junk_in_one_segment_still_count() -> None:
    """A 220 to STARTTLS followed by junk in the same segment: the 220 is handed out, the
    error comes on the next feed (an empty feed is enough to raise it)."""
    parser = ReplyParser()
    (reply,) = parser.feed(b"220 2.0.0 Ready to start TLS\r\nnot a TLS record\r\n")
    assert reply.code == 220
    with pytest.raises(ProtocolError, match="not an SMTP reply line"):
        parser.feed(b"")


def test_junk_alone_still_raises_at_once() -> None:
    with pytest.raises(ProtocolError):
        ReplyParser().feed(b"HTTP/1.1 400 Bad Request\r\n")


def test_unanswered_reason_carries_the_reply_code() -> None:
    test = RELAY_TESTS[0]
    record = judge.TestRecord(
        id=test.id,
        nmap=test.nmap,
        exercises=test.exercises,
        source=test.source,
        mail_from="<a@example.com>",
        rcpt_to="<b@example.com>",
        outcome=Outcome.ERROR,
        code=354,
        reply="Start mail input",
    )
    verdict, reason = judge.verdict([record], None)
    assert verdict is Verdict.INCONCLUSIVE
    assert reason == f"1/1 relay tests not answered ({test.id}: 354 Start mail input)"
