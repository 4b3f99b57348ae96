"""Delivery confirmation (issue 11): does a host that accepted at RCPT relay, or bounce?

Opt-in (`relayguard probe --confirm --sink ADDRESS[:PORT]`). For each host where a relay test
was accepted at RCPT time, this room sends ONE small, clearly labelled test message over ONE
SMTP connection — the only place relayguard ever sends DATA — to `relaytest@[sink-ip]`, with
the envelope sender at the sink too, then waits (bounded) for what the sink receives: the
message itself → `relayed`; a non-delivery report → `bounced` (accepts, then bounces:
backscatter, RFC 2505 §1.5/1.6); nothing → `unconfirmed`. No address but the sink's is ever
used. What arrived is judged by the pure `judge`; `sink` does the listening.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from typing import Any, Literal

from relayguard.probe.addresses import address_literal
from relayguard.probe.options import ProbeOptions
from relayguard.probe.results import HostResult
from relayguard.probe.session import (
    Opener,
    SessionError,
    SmtpConnection,
    Transcript,
    direct_opener,
)
from relayguard.probe.sink import ReceivedMessage, Sink, arrival_kind
from relayguard.probe.targets import TargetError, parse_target
from relayguard.validate import InputError
from relayguard.vocabulary import Outcome

Confirmation = Literal["relayed", "bounced", "unconfirmed"]
DEFAULT_TIMEOUT = 120.0
MAX_TIMEOUT = 3600.0
MAX_EVIDENCE_MESSAGES = 3
# Accepted-at-RCPT outcomes that make a host worth confirming (judge.classify_envelope,
# judge.apply_control).
ACCEPTED = frozenset({Outcome.RELAYED, Outcome.ACCEPTED})


@dataclass(frozen=True)
class ConfirmSettings:
    """Where the sink listens, how long to wait, and this run's id."""

    sink_host: str
    sink_port: int = 25
    timeout: float = DEFAULT_TIMEOUT
    run_id: str = field(default_factory=lambda: secrets.token_hex(8))

    @property
    def sink_domain(self) -> str:
        return address_literal(self.sink_host)

    @property
    def sink(self) -> str:
        host = f"[{self.sink_host}]" if ":" in self.sink_host else self.sink_host
        return f"{host}:{self.sink_port}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The CLI options of `relayguard probe` for delivery confirmation."""
    parser.add_argument(
        "--confirm",
        action="store_true",
        help="send one labelled test message per host that accepted a relay test to the sink, "
        "and report whether it was relayed, bounced or neither",
    )
    parser.add_argument(
        "--sink",
        metavar="ADDRESS[:PORT]",
        help="IP address (and port, default 25) where relayguard listens for the test message "
        "and bounces; probed servers must be able to reach it",
    )
    parser.add_argument(
        "--confirm-timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds to wait for the message or a bounce ({DEFAULT_TIMEOUT:g})",
    )


def checked_settings(confirm: object, sink: object, timeout: object) -> ConfirmSettings | None:
    """ConfirmSettings from untrusted values (CLI, module options), None when not asked."""
    if not isinstance(confirm, bool):
        raise InputError("confirm", confirm, "is not true or false")
    if not confirm:
        if sink is not None:
            raise InputError("sink", sink, "is only used with confirm (--confirm)")
        return None
    if sink is None:
        raise InputError("sink", sink, "is required with confirm (--sink ADDRESS[:PORT])")
    if not isinstance(sink, str):
        raise InputError("sink", sink, "is not a string")
    try:
        target = parse_target(sink, 25)
        host = ipaddress.ip_address(target.host).compressed
    except (TargetError, ValueError) as exc:
        raise InputError("sink", sink, "is not an IP address or IP:port") from exc
    from relayguard import validate as v

    return ConfirmSettings(host, target.port, v.positive_number("confirm_timeout", timeout, 3600))


@dataclass(frozen=True)
class Plan:
    """The one test message for one host: its token, Message-ID and envelope."""

    token: str
    message_id: str
    mail_from: str  # the path without angle brackets
    rcpt_to: str


def plan_for(settings: ConfirmSettings, index: int) -> Plan:
    token = f"{settings.run_id}.{index}"
    return Plan(
        token=token,
        # RFC 2606 reserves .invalid: the id can never collide with a real host's ids.
        message_id=f"<relayguard.{token}@relayguard.invalid>",
        mail_from=f"relayguard.{token}@{settings.sink_domain}",
        rcpt_to=f"relaytest@{settings.sink_domain}",
    )


def eligible(result: HostResult, vantage: str) -> bool:
    """A host is confirmed when a relay test was accepted at RCPT time, as probed from this
    machine (`vantage`: results through a jump host are not confirmed from here)."""
    return (
        result.address is not None
        and result.vantage == vantage
        and any(t.outcome in ACCEPTED for t in result.tests)
    )


def chosen_hosts(results: Sequence[HostResult], vantage: str) -> list[int]:
    """Indexes of the results to confirm: eligible, and one per address and port, so a host
    named twice still gets one message per run."""
    seen: set[tuple[str | None, int]] = set()
    chosen = []
    for i, result in enumerate(results):
        key = (result.address, result.port)
        if eligible(result, vantage) and key not in seen:
            seen.add(key)
            chosen.append(i)
    return chosen


def compose(plan: Plan, settings: ConfirmSettings, host: HostResult, date: str) -> list[str]:
    """The test message as lines (headers, blank line, body); ASCII, short lines."""
    accepted = [t.id for t in host.tests if t.outcome in ACCEPTED]
    return [
        f"From: relayguard relay test <{plan.mail_from}>",
        f"To: <{plan.rcpt_to}>",
        f"Subject: relayguard relay test {settings.run_id} (not spam: an open relay check)",
        f"Date: {date}",
        f"Message-ID: {plan.message_id}",
        f"X-Relayguard-Run: {settings.run_id}",
        f"X-Relayguard-Token: relayguard.{plan.token}",
        "Auto-Submitted: auto-generated",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "This is a relay test by relayguard, an open-relay audit tool.",
        f"Run id: {settings.run_id}",
        f"Message-ID: {plan.message_id}",
        f"Sent to {host.target} ({host.address}) after it accepted foreign recipients at RCPT",
        f"time ({', '.join(accepted[:4])}{', ...' if len(accepted) > 4 else ''}).",
        f"It is addressed to the auditor's own sink {settings.sink_domain} only.",
        "If it reached you, the server above relays mail for strangers.",
        ".",  # a lone dot in the body: sent dot-stuffed (RFC 5321 §4.5.2)
    ]


def dot_stuff(lines: Sequence[str]) -> list[str]:
    """RFC 5321 §4.5.2: a line starting with "." gets one more "." before it is sent."""
    return ["." + line if line.startswith(".") else line for line in lines]


@dataclass(frozen=True)
class SendReport:
    """How the one delivery attempt went."""

    data_accepted: bool
    code: int | None = None
    reply: str = ""
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "data_accepted": self.data_accepted,
            "code": self.code,
            "reply": self.reply,
            "error": self.error or None,
        }


def judge(
    plan: Plan, sent: SendReport, arrivals: Sequence[ReceivedMessage]
) -> tuple[Confirmation, dict[str, Any]]:
    """What arrived at the sink for this host's message, and the evidence to show (pure)."""
    relayed = [m for m in arrivals if arrival_kind(m, plan.token, plan.message_id) == "relayed"]
    bounces = [m for m in arrivals if arrival_kind(m, plan.token, plan.message_id) == "bounce"]
    if relayed:
        verdict: Confirmation = "relayed"
        first = relayed[0]
        summary = f"the test message reached the sink from {first.peer} (relayed)"
    elif bounces:
        verdict = "bounced"
        first = bounces[0]
        status = dict((k.lower(), v) for k, v in first.dsn).get("status")
        summary = f"a non-delivery report came back from {first.peer}" + (
            f" (status {status})" if status else ""
        )
    elif not sent.data_accepted:
        verdict = "unconfirmed"
        summary = "the test message was not accepted: " + (
            sent.error or f"{sent.code} {sent.reply}".strip()
        )
    else:
        verdict = "unconfirmed"
        summary = "accepted, but nothing reached the sink in time"
    return verdict, {
        "summary": summary,
        "message_id": plan.message_id,
        "mail_from": f"<{plan.mail_from}>",
        "rcpt_to": f"<{plan.rcpt_to}>",
        "sent": sent.to_dict(),
        "relayed": [m.to_dict() for m in relayed[:MAX_EVIDENCE_MESSAGES]],
        "bounces": [m.to_dict() for m in bounces[:MAX_EVIDENCE_MESSAGES]],
    }


def decided(plan: Plan, arrivals: Sequence[ReceivedMessage]) -> bool:
    return any(arrival_kind(m, plan.token, plan.message_id) for m in arrivals)


async def _hello(conn: SmtpConnection, helo: str) -> None:
    reply = await conn.command(f"EHLO {helo}")
    if not reply.positive:
        reply = await conn.command(f"HELO {helo}")
    if not reply.positive:
        raise SessionError(f"EHLO/HELO refused: {reply.first_line}")


async def send_test_message(
    host: HostResult,
    plan: Plan,
    lines: Sequence[str],
    options: ProbeOptions,
    opener: Opener,
    transcript: Transcript,
) -> SendReport:
    """One connection: banner, EHLO, MAIL, RCPT, DATA (dot-stuffed), QUIT. Nothing else."""
    assert host.address is not None
    transcript.add("*", f"delivery confirmation: connection to {host.address}:{host.port}")
    try:
        async with asyncio.timeout(options.host_timeout):
            reader, writer = await opener(host.address, host.port)
            conn = SmtpConnection(reader, writer, options.command_timeout, transcript)
            try:
                banner = await conn.read_reply()
                if banner.code != 220:
                    return SendReport(False, banner.code, banner.text, "no 220 greeting")
                await _hello(conn, options.helo)
                for command in (f"MAIL FROM:<{plan.mail_from}>", f"RCPT TO:<{plan.rcpt_to}>"):
                    reply = await conn.command(command)
                    if not reply.positive:
                        return SendReport(False, reply.code, reply.text)
                reply = await conn.command("DATA")
                if reply.code != 354:
                    return SendReport(False, reply.code, reply.text)
                await conn.send(*dot_stuff(lines), ".")
                reply = await conn.read_reply()
                return SendReport(reply.positive, reply.code, reply.text)
            finally:
                await conn.close(polite=True)
    except TimeoutError:
        return SendReport(False, error=f"host time bound of {options.host_timeout:g}s reached")
    except SessionError as exc:
        return SendReport(False, error=str(exc))


def _with_confirmation(
    host: HostResult,
    verdict: Confirmation,
    evidence: dict[str, Any],
    transcript: Transcript,
) -> HostResult:
    return replace(
        host,
        reason=f"{host.reason}; delivery confirmation: {verdict}",
        confirmation=verdict,
        confirmation_evidence=evidence,
        transcript=host.transcript + tuple(transcript.entries),
        connections=host.connections + 1,
    )


async def confirm_async(
    results: Sequence[HostResult],
    settings: ConfirmSettings,
    options: ProbeOptions,
    opener: Opener,
) -> list[HostResult]:
    """Send one message per eligible host, wait for the sink, attach the confirmations."""
    chosen = chosen_hosts(results, options.vantage)
    if not chosen:
        return list(results)
    sink = Sink(settings.sink_host, settings.sink_port)
    try:
        await sink.start()
    except OSError as exc:
        raise ConfirmError(f"cannot listen on the sink {settings.sink}: {exc.strerror}") from exc
    try:
        plans = {i: plan_for(settings, i) for i in chosen}
        transcripts = {i: Transcript() for i in chosen}
        bound = asyncio.Semaphore(max(1, options.max_hosts_in_flight))
        date = formatdate(localtime=False, usegmt=True)

        async def one(i: int) -> SendReport:
            async with bound:
                lines = compose(plans[i], settings, results[i], date)
                return await send_test_message(
                    results[i], plans[i], lines, options, opener, transcripts[i]
                )

        reports = dict(zip(chosen, await asyncio.gather(*(one(i) for i in chosen)), strict=True))
        waiting = [i for i in chosen if reports[i].data_accepted]
        started = time.monotonic()
        while waiting:
            waiting = [i for i in waiting if not decided(plans[i], sink.messages)]
            left = settings.timeout - (time.monotonic() - started)
            if not waiting or left <= 0:
                break
            await sink.wait_for_change(left)
        waited = round(time.monotonic() - started, 3)
    finally:
        await sink.stop()
    out = list(results)
    for i in chosen:
        verdict, evidence = judge(plans[i], reports[i], sink.messages)
        evidence = {
            "sink": settings.sink,
            "run_id": settings.run_id,
            "waited_s": waited,
            **evidence,
        }
        out[i] = _with_confirmation(results[i], verdict, evidence, transcripts[i])
    return out


class ConfirmError(Exception):
    """Confirmation cannot run at all (the sink cannot listen); `str()` is for humans."""


def confirm_results(
    results: Sequence[HostResult],
    settings: ConfirmSettings,
    options: ProbeOptions,
    opener: Opener | None = None,
) -> list[HostResult]:
    """`confirm_async` from synchronous code; by default connecting as the probe does
    (directly, from `options.source_address`)."""
    opener = opener or direct_opener(options.source_address, options.connect_timeout)
    return asyncio.run(confirm_async(results, settings, options, opener))
