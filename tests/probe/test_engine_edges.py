"""The engine against small scripted servers: protocol edge cases nmap gets wrong."""

from __future__ import annotations

from support.scripted_smtp import Script, Session, relay_policy, serve

from relayguard.probe import ProbeOptions, probe_targets
from relayguard.probe.catalog import RELAY_TESTS
from relayguard.vocabulary import Outcome, Verdict

FAST = ProbeOptions(command_timeout=2, host_timeout=60, local_domain="test.example")


def probe(target: str, options: ProbeOptions = FAST):  # type: ignore[no-untyped-def]
    (result,) = probe_targets([target], options)
    return result


def test_open_and_closed_policies() -> None:
    with serve(Script(relay_policy(True))) as srv:
        result = probe(srv.target)
        assert result.verdict is Verdict.OPEN
        by_id = {t.id: t for t in RELAY_TESTS}
        for t in result.tests:
            # routed forms at the server's own domains are only "accepted": its control
            # mailbox was accepted too, so RCPT alone cannot show relaying for them
            expected = Outcome.ACCEPTED if by_id[t.id].control else Outcome.RELAYED
            assert t.outcome is expected, t.id
    with serve(Script(relay_policy(False))) as srv:
        result = probe(srv.target)
        assert result.verdict is Verdict.CLOSED, result.reason
        assert {t.outcome for t in result.tests} == {Outcome.REFUSED}
        assert srv.stats.connections == 1
        assert not any(line.upper().startswith("DATA") for line in srv.stats.commands)


def test_replies_split_into_single_bytes() -> None:
    with serve(Script(relay_policy(False), chunk=1)) as srv:
        result = probe(srv.target)
    assert result.verdict is Verdict.CLOSED, result.reason
    assert result.srvname == "mx.test.example"


def test_helo_only_server() -> None:
    base = relay_policy(False)

    def helo_only(session: Session, line: str) -> bytes | None:
        if line.upper().startswith("EHLO"):
            return b"502 5.5.1 EHLO not implemented\r\n"
        return base(session, line)

    with serve(Script(helo_only)) as srv:
        result = probe(srv.target)
    assert result.verdict is Verdict.CLOSED, result.reason
    assert result.esmtp is False


def test_drop_after_three_errors_reconnects_and_finishes() -> None:
    base = relay_policy(False)

    def strict(session: Session, line: str) -> bytes | None:
        if session.errors >= 3:
            return b"421 4.7.0 mx.test.example Error: too many errors\r\n"
        return base(session, line)

    with serve(Script(strict)) as srv:
        result = probe(srv.target)
        connections = srv.stats.connections
    assert result.verdict is Verdict.CLOSED, result.reason
    assert all(t.outcome is Outcome.REFUSED for t in result.tests)
    assert connections > 5  # it really was dropped and came back


def test_close_after_every_refusal() -> None:
    base = relay_policy(False)

    def one_shot(session: Session, line: str) -> bytes | None:
        if session.errors >= 1:
            return None
        return base(session, line)

    with serve(Script(one_shot)) as srv:
        result = probe(srv.target)
    assert result.verdict is Verdict.CLOSED, result.reason
    assert len(result.tests) == len(RELAY_TESTS)


def test_421_banner_is_inconclusive_with_reason() -> None:
    script = Script(relay_policy(False), banner=b"421 4.3.2 Service shutting down\r\n")
    with serve(script) as srv:
        result = probe(srv.target)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "421" in result.reason
    assert {t.outcome for t in result.tests} == {Outcome.SKIPPED}


def test_silent_server_times_out_inconclusive() -> None:
    with serve(Script(relay_policy(False), silent=True)) as srv:
        result = probe(srv.target, ProbeOptions(command_timeout=0.5, host_timeout=20))
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "no complete reply" in result.reason or "greeting" in result.reason


def test_garbage_is_not_smtp() -> None:
    script = Script(lambda s, line: b"garbage\r\n", banner=b"HTTP/1.1 400 Bad Request\r\n\r\n")
    with serve(script) as srv:
        result = probe(srv.target)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "not an SMTP reply" in result.reason


def test_unreachable_host() -> None:
    result = probe("127.0.2.9:9", ProbeOptions(command_timeout=1, connect_timeout=2))
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "127.0.2.9:9" in result.reason


def test_auth_required_everywhere_is_closed() -> None:
    base = relay_policy(False)

    def auth(session: Session, line: str) -> bytes | None:
        if line.upper().startswith("MAIL"):
            return b"530 5.7.0 Authentication required\r\n"
        return base(session, line)

    with serve(Script(auth)) as srv:
        result = probe(srv.target)
    assert result.verdict is Verdict.CLOSED
    assert {t.outcome for t in result.tests} == {Outcome.AUTH_REQUIRED}


def test_rset_errors_do_not_stop_the_run() -> None:
    base = relay_policy(False)

    def bad_rset(session: Session, line: str) -> bytes | None:
        if line.upper() == "RSET":
            return b"500 5.5.1 RSET broken\r\n"
        return base(session, line)

    with serve(Script(bad_rset)) as srv:
        result = probe(srv.target)
    assert result.verdict is Verdict.CLOSED, result.reason


def test_source_address_is_used() -> None:
    seen: list[str] = []
    base = relay_policy(False)

    def record(session: Session, line: str) -> bytes | None:
        seen.append(session.peer)
        return base(session, line)

    with serve(Script(record)) as srv:
        result = probe(srv.target, ProbeOptions(source_address="127.0.2.77", command_timeout=2))
    assert set(seen) == {"127.0.2.77"}
    assert result.vantage == "direct"  # plain ProbeOptions; checked_options names the source


def test_parallel_connections_run_each_test_once() -> None:
    with serve(Script(relay_policy(False))) as srv:
        options = ProbeOptions(command_timeout=2, connections_per_host=4)
        result = probe(srv.target, options)
        rcpts = [c for c in srv.stats.commands if c.upper().startswith("RCPT")]
        assert srv.stats.max_concurrent <= 4
    assert result.verdict is Verdict.CLOSED
    assert len(result.tests) == len(RELAY_TESTS)
    # no routed form got a 2xx: no control is needed, none is sent
    assert not [c for c in rcpts if "relayguard-no-such-mailbox" in c]
    # every relay test and the three envelope conformance checks, once
    assert len(rcpts) == len(RELAY_TESTS) + 3


def test_controls_are_sent_once_per_domain_only_for_accepted_routed_forms() -> None:
    """The control envelope is read only to judge a 2xx to a routed form at an own domain
    (judge.apply_control): it is sent once per such domain, and only when one was accepted."""
    with serve(Script(relay_policy(True))) as srv:
        result = probe(srv.target, ProbeOptions(command_timeout=2, connections_per_host=4))
        rcpts = [c for c in srv.stats.commands if c.upper().startswith("RCPT")]
    assert result.verdict is Verdict.OPEN
    controls = [c for c in rcpts if "relayguard-no-such-mailbox" in c]
    routed = [t for t in result.tests if t.id in {x.id for x in RELAY_TESTS if x.control}]
    # every routed form was accepted and judged against its domain's control
    assert routed and all("relayguard-no-such-mailbox" in t.control for t in routed)
    judged_against = {t.control.split("RCPT TO:", 1)[1].split(" answered")[0] for t in routed}
    assert sorted(c.split(":", 1)[1] for c in controls) == sorted(judged_against)


def test_cli_json_and_report(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from relayguard.cli import main

    with (
        serve(Script(relay_policy(True)), host="127.0.2.41") as open_srv,
        serve(Script(relay_policy(False)), host="127.0.2.42") as closed_srv,
    ):
        status = main(
            [
                "probe",
                "--json",
                "--timeout",
                "2",
                "--report",
                str(tmp_path),
                open_srv.target,
                closed_srv.target,
            ]
        )
    assert status == 2  # at least one open
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "relayguard.probe/1"
    assert [h["verdict"] for h in doc["hosts"]] == ["open", "closed"]
    test = doc["hosts"][0]["tests"][0]
    assert set(test) >= {"id", "nmap", "mail_from", "rcpt_to", "code", "reply", "outcome"}
    report = json.loads((tmp_path / "latest" / "report.json").read_text())
    assert report["schema"] == "relayguard.report/1"
    assert {h["status"] for h in report["hosts"]} == {"audit_failed", "compliant"}
    assert (tmp_path / "latest" / "report.html").exists()


def test_cli_exit_statuses() -> None:
    from relayguard.cli import main

    with serve(Script(relay_policy(False)), host="127.0.2.43") as srv:
        assert main(["probe", "--timeout", "2", srv.target]) == 0
    assert main(["probe", "--timeout", "1", "127.0.2.44:9"]) == 3
    assert main(["probe", "--source-address", "not-an-ip", "h"]) == 1


def test_routed_forms_at_a_catch_all_domain_are_accepted_not_relayed() -> None:
    """A server that accepts any mailbox at its own domain (like Exchange 5.5's IMS) accepts
    user%foreign@local too; without a refused control that is not evidence of relaying."""
    base = relay_policy(False)

    def catch_all(session: Session, line: str) -> bytes | None:
        if line.upper().startswith("RCPT") and session.mail:
            address = line.split(":", 1)[1].strip().strip("<>").lower()
            if address.endswith("@test.example") and "imcea" not in address:
                return b"250 2.1.5 Ok\r\n"
        return base(session, line)

    with serve(Script(catch_all)) as srv:
        result = probe(srv.target)
    outcomes = {t.id: t.outcome for t in result.tests}
    assert outcomes["percent-hack-local"] is Outcome.ACCEPTED
    assert outcomes["bang-path-local"] is Outcome.ACCEPTED
    assert outcomes["nmap-02"] is Outcome.REFUSED
    assert result.verdict is Verdict.CLOSED, result.reason
    record = next(t for t in result.tests if t.id == "percent-hack-local")
    assert "relayguard-no-such-mailbox@test.example" in record.control
    dialogue = {f.id: f.result.value for f in result.rfc2505}
    assert dialogue["refused-in-dialogue"] == "fail"  # accept-then-bounce is still a fault


def test_routed_form_accepted_while_control_refused_is_relaying() -> None:
    base = relay_policy(False)

    def percent_hack(session: Session, line: str) -> bytes | None:
        if line.upper().startswith("RCPT") and "%" in line and session.mail:
            return b"250 2.1.5 Ok\r\n"
        return base(session, line)

    with serve(Script(percent_hack)) as srv:
        result = probe(srv.target)
    outcomes = {t.id: t.outcome for t in result.tests}
    assert outcomes["percent-hack-local"] is Outcome.RELAYED
    assert result.verdict is Verdict.OPEN


def test_replies_arriving_together_all_reach_the_transcript() -> None:
    base = relay_policy(False)

    def refuse_then_hang_up(session: Session, line: str) -> bytes | None:
        reply = base(session, line)
        if session.errors >= 1 and reply is not None and reply.startswith(b"554"):
            # Postfix after smtpd_hard_error_limit: the refusal and 421 in one segment
            return reply + b"421 4.7.0 mx.test.example Error: too many errors\r\n"
        return reply

    with serve(Script(refuse_then_hang_up)) as srv:
        result = probe(srv.target)
    said = [text for who, text in result.transcript if who == "S"]
    assert any(text.startswith("421 4.7.0") for text in said)
    assert result.verdict is Verdict.CLOSED, result.reason
