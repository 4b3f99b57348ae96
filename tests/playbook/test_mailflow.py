"""smtp_mail_flow's library (`relayguard.mailflow`): a batch of sessions checked at once, each
judged by its RCPT reply, results in the order given; a failure names the check and quotes the
server; DATA is never sent."""

from __future__ import annotations

from typing import Any

from support.scripted_smtp import Script, relay_policy, serve

from relayguard.mailflow import run_session, run_sessions


def session(target: str, host: str, *checks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    defaults = {"mail_from": "a@test.example", "authenticate": False, "expect": "accepted"}
    return {
        "host": host,
        "name": f"checks of {host}",
        "target": target,
        "port": 25,
        "source_address": None,
        "helo_name": "relayguard.invalid",
        "timeout": 10.0,
        "auth_username": None,
        "auth_password": None,
        "checks": [defaults | c for c in checks],
        **extra,
    }


def test_a_batch_of_sessions_each_judged_on_its_own() -> None:
    inbound = {"name": "inbound accepted", "rcpt_to": "postmaster@test.example"}
    relays = {"name": "relays", "rcpt_to": "relaytest@example.com"}
    refused = {"name": "relay refused", "rcpt_to": "relaytest@example.com", "expect": "refused"}
    with (
        serve(Script(relay_policy(True)), "127.0.3.201") as open_relay,
        serve(Script(relay_policy(False)), "127.0.3.202") as closed,
    ):
        results = run_sessions(
            [
                session(open_relay.target, "open", inbound, relays),
                session(closed.target, "closed", inbound, refused),
                session(closed.target, "closed-but-expected-to-relay", relays),
            ],
            max_workers=3,
        )
        commands = open_relay.stats.commands + closed.stats.commands
    assert [r["failed"] for r in results] == [False, False, True]
    assert [c["code"] for c in results[0]["checks"]] == [250, 250]
    assert [c["code"] for c in results[1]["checks"]] == [250, 554]
    assert results[2]["msg"].startswith(
        "relays: expected accepted, RCPT TO:<relaytest@example.com>"
    )
    assert "554" in results[2]["msg"] and "Relay access denied" in results[2]["msg"]
    assert not any(c.upper().startswith("DATA") for c in commands)


def test_bad_target_and_missing_user_fail_the_session_with_a_clear_message() -> None:
    check = {"name": "x", "rcpt_to": "postmaster@test.example"}
    bad = run_session(session("$(reboot):25", "h", check))
    assert bad["failed"] and bad["msg"].startswith("target: ")
    auth = run_session(session("127.0.3.203:25", "h", check | {"authenticate": True}))
    assert auth["failed"] and "auth_username is required" in auth["msg"]


def test_a_server_that_does_not_answer_is_a_failed_check() -> None:
    check = {"name": "inbound", "rcpt_to": "postmaster@test.example"}
    result = run_session(session("127.0.3.204:1", "h", check))
    assert result["failed"]
    assert "no reply session failed: ConnectionRefusedError" in result["msg"]


def test_the_verify_step_reaches_an_ipv6_listener() -> None:
    """The verify step on [::1]: the target keeps its brackets and the session is judged as on
    IPv4."""
    inbound = {"name": "inbound accepted", "rcpt_to": "postmaster@test.example"}
    refused = {"name": "relay refused", "rcpt_to": "relaytest@example.com", "expect": "refused"}
    with serve(Script(relay_policy(False)), "::1") as closed:
        assert closed.target.startswith("[::1]:")
        [result] = run_sessions([session(closed.target, "v6", inbound, refused)], max_workers=1)
    assert result["failed"] is False, result
    assert [c["code"] for c in result["checks"]] == [250, 554]
