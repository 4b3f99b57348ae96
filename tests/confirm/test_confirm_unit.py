"""Delivery confirmation without a network: the message, the sink's reading, the judgement."""

from __future__ import annotations

import pytest

from relayguard.lab.exchange import delivery
from relayguard.probe import ProbeOptions, confirm, judge
from relayguard.probe.results import HostResult
from relayguard.probe.sink import arrival_kind, read_message
from relayguard.validate import InputError
from relayguard.vocabulary import Outcome, Verdict

SETTINGS = confirm.ConfirmSettings("127.0.48.250", 10026, 5.0, run_id="0123456789abcdef")
PLAN = confirm.plan_for(SETTINGS, 3)


def record(outcome: Outcome) -> judge.TestRecord:
    from relayguard.probe.catalog import RELAY_TESTS

    test = RELAY_TESTS[0]
    return judge.TestRecord(
        id=test.id,
        nmap=test.nmap,
        exercises=test.exercises,
        source=test.source,
        mail_from="<antispam@example.com>",
        rcpt_to="<relaytest@example.com>",
        outcome=outcome,
    )


def host(
    *outcomes: Outcome, address: str | None = "127.0.47.9", vantage: str = "direct"
) -> HostResult:
    return HostResult(
        target=f"{address}:25",
        address=address,
        port=25,
        verdict=Verdict.OPEN,
        reason="r",
        vantage=vantage,
        tests=tuple(record(o) for o in outcomes),
    )


def message_bytes(plan: confirm.Plan = PLAN) -> bytes:
    lines = confirm.compose(plan, SETTINGS, host(Outcome.RELAYED), "Fri, 27 Nov 2026 12:00:00 GMT")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def test_the_plan_addresses_the_sink_only_with_a_labelled_message() -> None:
    assert PLAN.rcpt_to == "relaytest@[127.0.48.250]"
    assert PLAN.mail_from == "relayguard.0123456789abcdef.3@[127.0.48.250]"
    lines = confirm.compose(PLAN, SETTINGS, host(Outcome.RELAYED), "date")
    subject = next(line for line in lines if line.startswith("Subject:"))
    assert "relayguard relay test 0123456789abcdef" in subject
    body = "\n".join(lines[lines.index("") :])
    assert "relay test by relayguard" in body and "0123456789abcdef" in body
    assert PLAN.message_id in body
    assert all(line.isascii() and len(line) < 200 for line in lines)
    v6 = confirm.ConfirmSettings("::1", 25, 1.0, run_id="0123456789abcdef")
    assert confirm.plan_for(v6, 0).rcpt_to == "relaytest@[IPv6:::1]"


def test_dot_stuffing_doubles_leading_dots_only() -> None:
    assert confirm.dot_stuff([".", "..x", "a.b", ""]) == ["..", "...x", "a.b", ""]
    assert confirm.compose(PLAN, SETTINGS, host(Outcome.RELAYED), "d")[-1] == "."


def test_settings_are_checked_at_the_edge() -> None:
    assert confirm.checked_settings(False, None, 10) is None
    got = confirm.checked_settings(True, "127.0.48.250:2525", 7)
    assert got is not None and (got.sink_host, got.sink_port, got.timeout) == (
        "127.0.48.250",
        2525,
        7.0,
    )
    assert confirm.checked_settings(True, "[::1]:26", 1) is not None
    default_port = confirm.checked_settings(True, "127.0.48.250", 1)
    assert default_port is not None and default_port.sink_port == 25
    for args in (
        (True, None, 1),
        (True, "sink.example", 1),
        (False, "127.0.0.1", 1),
        (True, "127.0.0.1", 0),
    ):
        with pytest.raises(InputError):
            confirm.checked_settings(*args)


def test_only_hosts_accepting_at_rcpt_from_here_are_chosen_once_each() -> None:
    results = [
        host(Outcome.REFUSED, Outcome.DEFERRED),
        host(Outcome.REFUSED, Outcome.ACCEPTED, address="127.0.47.10"),
        host(Outcome.RELAYED),
        host(Outcome.RELAYED),  # the same address:port named twice
        host(Outcome.RELAYED, address=None),
        host(Outcome.RELAYED, address="127.0.47.11", vantage="ssh://u@jump"),
    ]
    assert confirm.chosen_hosts(results, "direct") == [1, 2]


def test_our_own_message_arriving_is_relayed() -> None:
    got = read_message("127.0.47.2", "mx", PLAN.mail_from, [PLAN.rcpt_to], message_bytes())
    assert got.tokens == ("0123456789abcdef.3",)
    assert arrival_kind(got, PLAN.token, PLAN.message_id) == "relayed"
    other = confirm.plan_for(SETTINGS, 4)
    assert arrival_kind(got, other.token, other.message_id) is None
    verdict, evidence = confirm.judge(PLAN, confirm.SendReport(True, 250, "ok"), [got])
    assert verdict == "relayed" and evidence["relayed"][0]["peer"] == "127.0.47.2"
    headers = dict(evidence["relayed"][0]["headers"])
    assert headers["X-Relayguard-Run"] == "0123456789abcdef"


def test_a_delivery_status_report_from_the_null_sender_is_a_bounce() -> None:
    report = delivery.render_ndr(
        PLAN.mail_from, (PLAN.rcpt_to,), message_bytes(), "ex55.corp.example", "date"
    )
    got = read_message("127.0.47.1", "ex55", "", [PLAN.mail_from], report)
    assert got.content_type == "multipart/report" and got.report_type == "delivery-status"
    assert ("Status", "5.0.0") in got.dsn and ("Action", "failed") in got.dsn
    assert ("Message-ID", PLAN.message_id) in got.original_headers
    assert arrival_kind(got, PLAN.token, PLAN.message_id) == "bounce"
    verdict, evidence = confirm.judge(PLAN, confirm.SendReport(True, 250, "ok"), [got])
    assert verdict == "bounced" and "5.0.0" in evidence["summary"]


def test_a_plain_text_bounce_quoting_our_message_id_is_a_bounce() -> None:
    text = (
        "From: MAILER-DAEMON@mx\r\nSubject: failure notice\r\n\r\n"
        f"Your message {PLAN.message_id} could not be delivered.\r\n"
    ).encode()
    got = read_message("127.0.47.5", "mx", "", ["someone@[127.0.48.250]"], text)
    assert arrival_kind(got, PLAN.token, PLAN.message_id) == "bounce"


def test_unrelated_mail_and_nothing_leave_it_unconfirmed() -> None:
    stray = read_message("127.0.47.6", "mx", "a@b", ["c@d"], b"Subject: hi\r\n\r\nhello\r\n")
    assert arrival_kind(stray, PLAN.token, PLAN.message_id) is None
    verdict, evidence = confirm.judge(PLAN, confirm.SendReport(True, 250, "ok"), [stray])
    assert verdict == "unconfirmed" and evidence["relayed"] == evidence["bounces"] == []
    refused = confirm.SendReport(False, 550, "5.7.1 Unable to relay")
    verdict, evidence = confirm.judge(PLAN, refused, [])
    assert verdict == "unconfirmed" and "550 5.7.1" in evidence["summary"]


def test_relayed_wins_over_a_bounce_of_the_same_message() -> None:
    ours = read_message("p", "h", PLAN.mail_from, [PLAN.rcpt_to], message_bytes())
    report = delivery.render_ndr(PLAN.mail_from, (PLAN.rcpt_to,), message_bytes(), "x", "d")
    bounce = read_message("p", "h", "", [PLAN.mail_from], report)
    assert confirm.judge(PLAN, confirm.SendReport(True), [bounce, ours])[0] == "relayed"


def test_the_lab_passes_mail_on_to_loopback_literals_only() -> None:
    content = b"Subject: t\r\n\r\nbody\r\n"
    out = delivery.plan_outgoing(
        "s@[127.0.48.250]",
        [("r@[127.0.48.250]", "relay"), ("x@example.com", "relay"), ("y@[192.0.2.1]", "relay")],
        content,
        server_name="mx",
        client_ip="127.0.49.200",
        helo="client",
        date="d",
    )
    assert [(o.kind, o.host, o.rcpt_tos) for o in out] == [
        ("relay", "127.0.48.250", ("r@[127.0.48.250]",))
    ]
    assert out[0].content.startswith(b"Received: from client ([127.0.49.200]) by mx")
    ndr = delivery.plan_outgoing(
        "s@[127.0.48.250]",
        [("r@[10.0.0.1]", "ndr")],
        content,
        server_name="mx",
        client_ip="c",
        helo="h",
    )
    assert [(o.kind, o.host, o.mail_from, o.rcpt_tos) for o in ndr] == [
        ("ndr", "127.0.48.250", "", ("s@[127.0.48.250]",))
    ]
    # never a bounce of a bounce, never to a sender outside 127.0.0.0/8
    for sender in ("<>", "", "s@example.com", "s@[192.0.2.7]"):
        assert not delivery.plan_outgoing(
            sender, [("r@x", "ndr")], content, server_name="mx", client_ip="c", helo="h"
        )


def test_a_sink_address_that_cannot_listen_is_one_clear_error() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.48.251", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = confirm.ConfirmSettings("127.0.48.251", port, 1.0)
        options = ProbeOptions()
        with pytest.raises(confirm.ConfirmError, match="cannot listen on the sink"):
            confirm.confirm_results([host(Outcome.RELAYED)], settings, options)
    # nothing to confirm: the sink is not even opened
    assert confirm.confirm_results([host(Outcome.REFUSED)], settings, ProbeOptions()) == [
        host(Outcome.REFUSED)
    ]
