"""The probe against hostile SMTP servers: each behaviour is a small server on loopback.

Every behaviour is probed in ONE `probe_targets` call together with a well-behaved closed
server, and every test asserts the same properties: the verdict is right or `inconclusive`
with a precise reason; the host's duration stays within its configured time bound (a bound
check, not a benchmark); no exception escapes; the per-host connection bound holds; DATA is
never sent; and the well-behaved host of the same run is still judged closed.
The behaviour table in docs/reliability.md names these tests.
"""

from __future__ import annotations

import asyncio
import socket
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from support.hostile import (
    EHLO,
    Behaviour,
    RawServer,
    RawStats,
    closed_reply,
    command,
    dialogue,
    reset,
    stream,
    tarpit,
)
from support.realserver import IN_CI
from support.scripted_smtp import Script, ScriptedServer, relay_policy, serve

from relayguard.probe import HostResult, ProbeOptions, probe_targets
from relayguard.vocabulary import Outcome, Verdict

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter

OPTIONS = ProbeOptions(
    command_timeout=2, host_timeout=30, connect_timeout=3, local_domain="hostile.example"
)
# Closing a connection may take up to 2 s after the bound (session.close); be generous.
GRACE = 5.0


@dataclass
class Probed:
    """The hostile host's result and what its server saw."""

    result: HostResult
    connections: int
    max_concurrent: int
    commands: list[str]


@pytest.fixture(scope="module")
def good() -> Iterator[ScriptedServer]:
    with serve(Script(relay_policy(False)), host="127.0.3.100") as srv:
        yield srv


def run(
    server: RawServer | ScriptedServer, good: ScriptedServer, options: ProbeOptions = OPTIONS
) -> Probed:
    """Probe the hostile server and the good one together; check the common properties."""
    before = good.stats.connections
    host = f"[{server.host}]" if ":" in server.host else server.host
    bad, ok = probe_targets([f"{host}:{server.port}", good.target], options)
    assert ok.verdict is Verdict.CLOSED, ok.reason
    assert good.stats.connections > before
    assert bad.duration_s <= options.host_timeout + GRACE
    assert "Traceback" not in bad.reason
    assert bad.reason.strip()
    stats = server.stats
    commands = list(stats.commands)
    assert not any(c.upper().startswith("DATA") for c in commands)  # never without --confirm
    assert stats.max_concurrent <= options.connections_per_host
    return Probed(bad, stats.connections, stats.max_concurrent, commands)


def raw(behaviour: Behaviour, host: str) -> RawServer:
    return RawServer(behaviour, host)


# -- silence, slowness, tarpits -------------------------------------------------------------


def test_silence_after_connect(good: ScriptedServer) -> None:
    async def silent(reader: Reader, writer: Writer, st: RawStats) -> None:
        await reader.read()

    with raw(silent, "127.0.3.101") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.INCONCLUSIVE
    assert out.result.reason == "could not complete the greeting: no complete reply within 2s"


def test_banner_dripped_one_byte_a_second(good: ScriptedServer) -> None:
    async def drip(reader: Reader, writer: Writer, st: RawStats) -> None:
        for byte in b"220 mx.hostile.example ESMTP at one byte a second\r\n":
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1)

    with raw(drip, "127.0.3.102") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.INCONCLUSIVE
    # the per-reply bound (2 s) cuts the drip; three greetings are tried, then it gives up
    assert out.result.reason == "could not complete the greeting: no complete reply within 2s"
    assert out.connections == 3


def test_tarpit_of_thirty_seconds(good: ScriptedServer) -> None:
    options = replace(OPTIONS, host_timeout=10)
    with raw(tarpit(30), "127.0.3.103") as srv:
        out = run(srv, good, options)
    assert out.result.verdict is Verdict.INCONCLUSIVE
    # the host bound ends it, or (were every wait to overlap) each refusal timed out
    assert out.result.reason == "host time bound of 10s reached" or (
        "relay tests not answered" in out.result.reason
        and "no complete reply within 2s" in out.result.reason
    ), out.result.reason
    assert out.max_concurrent <= options.connections_per_host


# -- not SMTP --------------------------------------------------------------------------------


def test_garbage_and_binary(good: ScriptedServer) -> None:
    async def binary(reader: Reader, writer: Writer, st: RawStats) -> None:
        writer.write(bytes(range(256)) * 4)
        await writer.drain()
        await reader.read()

    with raw(binary, "127.0.3.104") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.INCONCLUSIVE
    assert out.result.reason.startswith("not an SMTP reply line: ")
    assert out.connections == 1


def test_http_server_on_the_smtp_port(good: ScriptedServer) -> None:
    async def http(reader: Reader, writer: Writer, st: RawStats) -> None:
        await reader.readline()  # an HTTP server waits for the request line
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    with raw(http, "127.0.3.105") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.INCONCLUSIVE
    assert out.result.reason == "could not complete the greeting: no complete reply within 2s"


def test_http_reply_at_connect(good: ScriptedServer) -> None:
    async def proxy(reader: Reader, writer: Writer, st: RawStats) -> None:
        writer.write(b"HTTP/1.0 400 Bad Request\r\nServer: nginx\r\n\r\n<html></html>\r\n")
        await writer.drain()

    with raw(proxy, "127.0.3.106") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.INCONCLUSIVE
    assert out.result.reason == "not an SMTP reply line: 'HTTP/1.0 400 Bad Request'"


# -- 421 and dropped connections -------------------------------------------------------------


def test_421_at_connect(good: ScriptedServer) -> None:
    behaviour = dialogue(lambda line, st, n: None, banner=b"421 4.3.2 Service shutting down\r\n")
    with raw(behaviour, "127.0.3.107") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.INCONCLUSIVE
    assert out.result.reason == "service not available at connect: 421 4.3.2 Service shutting down"
    assert {t.outcome for t in out.result.tests} == {Outcome.SKIPPED}


def test_421_mid_session_then_recovers(good: ScriptedServer) -> None:
    seen = {"connections": 0}

    def bend(line: str, state: dict[str, bool], n: int) -> bytes | None:
        if n == 1:
            seen["connections"] += 1
        if seen["connections"] == 1 and n == 6:
            return b"421 4.3.2 mx.hostile.example going down for maintenance\r\n"
        return closed_reply(line, state)

    with raw(dialogue(bend), "127.0.3.108") as srv:
        out = run(srv, good, replace(OPTIONS, pipelining=False))
    assert out.result.verdict is Verdict.CLOSED, out.result.reason
    assert out.connections >= 2


def test_421_to_every_recipient(good: ScriptedServer) -> None:
    def bend(line: str, state: dict[str, bool], n: int) -> bytes | None:
        if line.upper().startswith("RCPT"):
            return b"421 4.7.0 Try again later, closing connection\r\n"
        return closed_reply(line, state)

    with raw(dialogue(bend), "127.0.3.109") as srv:
        out = run(srv, good)
    # never accepted: each test deferred (retried once on a new connection), nothing relayed
    assert out.result.verdict is Verdict.CLOSED, out.result.reason
    assert {t.outcome for t in out.result.tests} == {Outcome.DEFERRED}


def test_connection_reset_mid_reply_once(good: ScriptedServer) -> None:
    seen = {"connections": 0}

    async def behaviour(reader: Reader, writer: Writer, st: RawStats) -> None:
        seen["connections"] += 1
        if seen["connections"] > 1:
            await dialogue(lambda line, s, n: closed_reply(line, s))(reader, writer, st)
            return
        writer.write(b"220 mx.hostile.example ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-mx.hostile.example\r\n250-PIPE")
        await writer.drain()
        reset(writer)

    with raw(behaviour, "127.0.3.110") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.CLOSED, out.result.reason
    assert out.connections >= 2


def test_connection_reset_mid_reply_always(good: ScriptedServer) -> None:
    async def behaviour(reader: Reader, writer: Writer, st: RawStats) -> None:
        writer.write(b"220 mx.hostile.example ESMTP\r\n")
        await writer.drain()
        await reader.readline()
        writer.write(b"250-mx.hostile.example\r\n250-PIPE")
        await writer.drain()
        reset(writer)

    with raw(behaviour, "127.0.3.111") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.INCONCLUSIVE
    assert out.result.reason.startswith("could not complete the greeting: connection lost")


def test_closes_after_every_refusal(good: ScriptedServer) -> None:
    def bend(line: str, state: dict[str, bool], n: int) -> bytes | None:
        if state.get("refused"):
            return None
        reply = closed_reply(line, state)
        state["refused"] = reply[:1] == b"5"
        return reply

    with raw(dialogue(bend), "127.0.3.112") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.CLOSED, out.result.reason
    assert out.connections > 1


def test_rset_answered_with_an_error(good: ScriptedServer) -> None:
    def bend(line: str, state: dict[str, bool], n: int) -> bytes | None:
        if line.upper() == "RSET":
            return b"500 5.5.1 RSET? Never heard of it\r\n"
        return closed_reply(line, state)

    with raw(dialogue(bend), "127.0.3.113") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.CLOSED, out.result.reason


def test_closes_right_after_the_banner(good: ScriptedServer) -> None:
    with raw(dialogue(lambda line, st, n: None), "127.0.3.114") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.INCONCLUSIVE
    assert out.result.reason == "could not complete the greeting: server closed the connection"


def test_554_banner(good: ScriptedServer) -> None:
    behaviour = dialogue(lambda line, s, n: None, banner=b"554 5.7.1 No SMTP service here\r\n")
    with raw(behaviour, "127.0.3.115") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.INCONCLUSIVE
    assert out.result.reason == "server refused the session: 554 5.7.1 No SMTP service here"


# -- framing: splits, sizes, bytes -----------------------------------------------------------


def test_multiline_replies_split_at_every_byte_boundary(good: ScriptedServer) -> None:
    """Every reply is multi-line and written in two segments; the split point walks through
    every offset of the replies over the session (reply n is split at n mod its length)."""
    ehlo = b"250-mx.hostile.example\r\n250-SIZE 1000\r\n250 8BITMIME\r\n"

    async def behaviour(reader: Reader, writer: Writer, st: RawStats) -> None:
        state: dict[str, bool] = {}
        replies = 0

        async def write(data: bytes) -> None:
            nonlocal replies
            replies += 1
            cut = replies % len(data)
            for part in (data[:cut], data[cut:]):
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.005)

        await write(b"220-mx.hostile.example ESMTP\r\n220 welcome\r\n")
        while (line := await command(reader, st)) is not None:
            reply = closed_reply(line, state)
            if line.upper().startswith("EHLO"):
                reply = ehlo
            elif reply.startswith(b"554"):
                reply = (
                    b"554-5.7.1 Relay access denied\r\n554-5.7.1 see the\r\n554 5.7.1 policy\r\n"
                )
            await write(reply)

    with raw(behaviour, "127.0.3.116") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.CLOSED, out.result.reason
    assert out.result.srvname == "mx.hostile.example"
    assert all(t.code == 554 for t in out.result.tests)


def _memory_peak(server: RawServer, good: ScriptedServer) -> tuple[Probed, int]:
    """The probe of a server that floods a reply, and the peak of Python memory meanwhile. The
    reply's size bound must end it, not the time: tracemalloc slows the reading several times,
    and a fresh-clone CI run (four workers on two cores) once needed more than the 2 s of
    OPTIONS to read the first megabyte, so each reply gets 20 s here."""
    tracemalloc.start()
    try:
        out = run(server, good, replace(OPTIONS, command_timeout=20))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return out, peak


CEILING = 8 * 1024 * 1024  # generous; a probe that buffered the reply would pass 10 MB


def test_ten_megabyte_ehlo_reply(good: ScriptedServer) -> None:
    async def huge(reader: Reader, writer: Writer, st: RawStats) -> None:
        writer.write(b"220 mx.hostile.example ESMTP\r\n")
        await reader.readline()
        await stream(writer, b"250-" + b"X" * 96 + b"\r\n", 10 * 1024 * 1024)
        writer.write(b"250 end\r\n")
        await writer.drain()

    with raw(huge, "127.0.3.117") as srv:
        out, peak = _memory_peak(srv, good)
    assert out.result.verdict is Verdict.INCONCLUSIVE
    # drained up to its bound, then a new connection greeted with HELO: as huge, so no dialogue
    assert out.result.reason == "reply longer than 1048576 bytes"
    assert out.connections == 2
    assert out.result.banner == "mx.hostile.example ESMTP"
    assert peak < CEILING


def test_endless_continuation_lines(good: ScriptedServer) -> None:
    async def endless(reader: Reader, writer: Writer, st: RawStats) -> None:
        writer.write(b"220 mx.hostile.example ESMTP\r\n")
        await reader.readline()
        while True:
            writer.write(b"250-and more\r\n" * 64)
            await writer.drain()

    with raw(endless, "127.0.3.118") as srv:
        out, peak = _memory_peak(srv, good)
    assert out.result.verdict is Verdict.INCONCLUSIVE
    assert out.result.reason == "reply longer than 1048576 bytes"
    assert out.result.banner == "mx.hostile.example ESMTP"
    assert peak < CEILING


def test_oversized_but_valid_ehlo_reply_is_drained(good: ScriptedServer) -> None:
    # 400 extension lines, about 100 KB: over the 256-line / 64 KiB bound of a kept reply, yet
    # a complete reply. It is read to its end, its first lines kept, and the probe goes on.
    big = b"250-mx.hostile.example\r\n" + b"250-X-PADDING " + b"p" * 240 + b"\r\n"
    many = b"250-mx.hostile.example\r\n" + big[24:] * 400 + b"250 8BITMIME\r\n"

    def bend(line: str, state: dict[str, bool], n: int) -> bytes | None:
        return many if line.upper().startswith("EHLO") else closed_reply(line, state)

    with raw(dialogue(bend), "127.0.3.134") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.CLOSED, out.result.reason
    assert out.result.esmtp is True and out.connections == 1
    assert out.result.banner == "mx.hostile.example ESMTP"
    notes = [text for who, text in out.result.transcript if who == "*"]
    assert any("more lines of this reply read, not kept" in n for n in notes), notes


def test_undrainable_ehlo_reply_goes_on_with_helo(good: ScriptedServer) -> None:
    # two megabytes of EHLO reply (over the drain bound): a new connection greets with HELO
    huge = b"250-X-PADDING " + b"p" * 1000 + b"\r\n"
    ehlo = b"250-mx.hostile.example\r\n" + huge * 2048 + b"250 8BITMIME\r\n"

    def bend(line: str, state: dict[str, bool], n: int) -> bytes | None:
        return ehlo if line.upper().startswith("EHLO") else closed_reply(line, state)

    with raw(dialogue(bend), "127.0.3.135") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.CLOSED, out.result.reason
    assert out.result.esmtp is False and out.connections == 2
    assert out.result.banner == "mx.hostile.example ESMTP"
    assert any(c.startswith("HELO") for c in out.commands), out.commands


def test_hundred_kilobyte_line(good: ScriptedServer) -> None:
    async def long_line(reader: Reader, writer: Writer, st: RawStats) -> None:
        writer.write(b"220 mx.hostile.example " + b"y" * 100_000 + b"\r\n")
        await writer.drain()
        await reader.read()

    with raw(long_line, "127.0.3.119") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.INCONCLUSIVE
    assert out.result.reason == "reply line longer than 8192 bytes"


def test_bare_lf_line_endings(good: ScriptedServer) -> None:
    def bend(line: str, state: dict[str, bool], n: int) -> bytes | None:
        return closed_reply(line, state).replace(b"\r\n", b"\n")

    with raw(dialogue(bend, banner=b"220 mx.hostile.example ESMTP\n"), "127.0.3.120") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.CLOSED, out.result.reason


def test_invalid_utf8(good: ScriptedServer) -> None:
    def bend(line: str, state: dict[str, bool], n: int) -> bytes | None:
        reply = closed_reply(line, state)
        return b"554 5.7.1 Relais \xc3\x28 refus\xe9\r\n" if reply.startswith(b"554") else reply

    banner = b"220 mx.hostile.example \xff\xfe ESMTP\r\n"
    with raw(dialogue(bend, banner=banner), "127.0.3.121") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.CLOSED, out.result.reason
    assert "\ufffd" in out.result.banner


def test_nul_bytes(good: ScriptedServer) -> None:
    def bend(line: str, state: dict[str, bool], n: int) -> bytes | None:
        reply = closed_reply(line, state)
        return b"554 5.7.1 Relay\x00denied\x00\r\n" if reply.startswith(b"554") else reply

    with raw(dialogue(bend, banner=b"220 mx.hostile\x00.example\r\n"), "127.0.3.122") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.CLOSED, out.result.reason
    assert all(t.code == 554 for t in out.result.tests)


def test_reply_code_out_of_range_in_banner(good: ScriptedServer) -> None:
    with raw(dialogue(closed_reply_n, banner=b"999 mx.hostile.example\r\n"), "127.0.3.123") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.INCONCLUSIVE
    assert out.result.reason == "reply code 999 out of range"


def closed_reply_n(line: str, state: dict[str, bool], n: int) -> bytes | None:
    return closed_reply(line, state)


def test_reply_code_out_of_range_to_rcpt(good: ScriptedServer) -> None:
    def bend(line: str, state: dict[str, bool], n: int) -> bytes | None:
        reply = closed_reply(line, state)
        return b"700 what is a recipient\r\n" if line.upper().startswith("RCPT") else reply

    with raw(dialogue(bend), "127.0.3.124") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.INCONCLUSIVE
    assert "reply code 700 out of range" in out.result.reason


def test_continuation_line_with_a_different_code(good: ScriptedServer) -> None:
    def bend(line: str, state: dict[str, bool], n: int) -> bytes | None:
        if line.upper().startswith("EHLO"):
            return b"250-mx.hostile.example\r\n251-PIPELINING\r\n250 8BITMIME\r\n"
        return closed_reply(line, state)

    with raw(dialogue(bend), "127.0.3.125") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.INCONCLUSIVE
    assert out.result.reason == "multi-line reply changed code from 250 to 251"


# -- semantics: odd answers, pipelining, early talkers ---------------------------------------


def test_accepts_everything(good: ScriptedServer) -> None:
    with serve(Script(relay_policy(True)), host="127.0.3.126") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.OPEN


def test_354_to_rcpt(good: ScriptedServer) -> None:
    def bend(line: str, state: dict[str, bool], n: int) -> bytes | None:
        if line.upper().startswith("RCPT"):
            return b"354 Start mail input; end with <CRLF>.<CRLF>\r\n"
        return closed_reply(line, state)

    with raw(dialogue(bend), "127.0.3.127") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.INCONCLUSIVE
    assert "relay tests not answered" in out.result.reason
    assert "(nmap-01: 354 Start mail input" in out.result.reason
    assert {t.outcome for t in out.result.tests} == {Outcome.ERROR}


def test_extra_unsolicited_reply_under_pipelining(good: ScriptedServer) -> None:
    """Two replies to MAIL: matched in order, the extra 250 would answer the first RCPT and
    a closed server would look open. The probe notices the reply no command asked for."""

    def bend(line: str, state: dict[str, bool], n: int) -> bytes | None:
        reply = closed_reply(line, state)
        return reply + b"250 2.1.0 Ok, and again\r\n" if line.upper().startswith("MAIL") else reply

    with raw(dialogue(bend), "127.0.3.128") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.INCONCLUSIVE
    assert out.result.reason == (
        "replies out of step with commands: server sent a reply no command asked for: "
        "'554 5.7.1 Relay access denied'"
    )
    assert {t.outcome for t in out.result.tests} == {Outcome.SKIPPED}


def test_replies_out_of_order_under_pipelining(good: ScriptedServer) -> None:
    """The server answers a pipelined batch with its replies reversed (RCPT refusals first,
    then MAIL's 250): never judged open."""

    async def behaviour(reader: Reader, writer: Writer, st: RawStats) -> None:
        writer.write(b"220 mx.hostile.example ESMTP\r\n")
        state: dict[str, bool] = {}
        while True:
            line = await command(reader, st)
            if line is None:
                return
            batch = [line]
            while True:  # whatever else the client wrote in the same batch
                try:
                    more = await asyncio.wait_for(command(reader, st), 0.05)
                except TimeoutError:
                    break
                if more is None:
                    break
                batch.append(more)
            replies = [closed_reply(b, state) for b in batch]
            writer.write(b"".join(reversed(replies)))
            await writer.drain()

    with raw(behaviour, "127.0.3.129") as srv:
        out = run(srv, good)
    assert out.result.verdict is not Verdict.OPEN
    if out.result.verdict is Verdict.INCONCLUSIVE:
        assert out.result.reason.startswith("replies out of step with commands")


def test_early_talker_answers_before_the_command(good: ScriptedServer) -> None:
    async def behaviour(reader: Reader, writer: Writer, st: RawStats) -> None:
        # the banner, the EHLO reply and a MAIL reply, all before any command
        writer.write(b"220 mx.hostile.example ESMTP\r\n" + EHLO + b"250 2.1.0 Ok\r\n")
        await writer.drain()
        state: dict[str, bool] = {}
        while (line := await command(reader, st)) is not None:
            writer.write(closed_reply(line, state))
            await writer.drain()

    with raw(behaviour, "127.0.3.130") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.INCONCLUSIVE
    assert out.result.reason.startswith("replies out of step with commands")


# -- STARTTLS --------------------------------------------------------------------------------


def _tls_offering(after_starttls: bytes | None) -> Behaviour:
    async def behaviour(reader: Reader, writer: Writer, st: RawStats) -> None:
        writer.write(b"220 mx.hostile.example ESMTP\r\n")
        state: dict[str, bool] = {}
        while (line := await command(reader, st)) is not None:
            verb = line.upper()
            if verb.startswith("EHLO"):
                writer.write(b"250-mx.hostile.example\r\n250-STARTTLS\r\n250 PIPELINING\r\n")
            elif verb == "STARTTLS":
                if after_starttls is None:
                    writer.write(b"220 2.0.0 Ready to start TLS\r\n")
                    await writer.drain()
                    await reader.read()  # never answers the ClientHello: a hung handshake
                    return
                writer.write(after_starttls)
                if after_starttls.startswith(b"220"):
                    await writer.drain()
                    return  # garbage instead of a ServerHello, then close
            else:
                writer.write(closed_reply(line, state))
            await writer.drain()

    return behaviour


def test_starttls_offered_then_refused_454(good: ScriptedServer) -> None:
    refuse = b"454 4.7.0 TLS not available due to local problem\r\n"
    with raw(_tls_offering(refuse), "127.0.3.131") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.CLOSED, out.result.reason
    assert (
        out.result.tls.error == "STARTTLS refused: 454 4.7.0 TLS not available due to local problem"
    )


def test_starttls_accepted_then_broken_handshake(good: ScriptedServer) -> None:
    broken = b"220 2.0.0 Ready to start TLS\r\nthis is not a TLS record\r\n"
    with raw(_tls_offering(broken), "127.0.3.132") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.CLOSED, out.result.reason
    assert (out.result.tls.error or "").startswith("TLS handshake failed")


def test_starttls_accepted_then_hung_handshake(good: ScriptedServer) -> None:
    """Engine fix: a handshake that times out now falls back to plaintext like a failed one
    (it used to retry TLS on every reconnect until the budget or the host bound ran out)."""
    with raw(_tls_offering(None), "127.0.3.133") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.CLOSED, out.result.reason
    assert out.result.tls.error == "TLS handshake failed: TLS handshake timed out"
    assert out.connections == 2


# -- IPv6 -----------------------------------------------------------------------------------


def test_ipv6_on_loopback(good: ScriptedServer) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe_socket:
            probe_socket.bind(("::1", 0))
    except OSError as exc:
        if IN_CI:
            pytest.fail(f"CI must run this test but ::1 is not usable: {exc}")
        pytest.skip(f"::1 is not usable here ({exc}); enable IPv6 on loopback")
    with serve(Script(relay_policy(True)), host="::1") as srv:
        out = run(srv, good)
    assert out.result.verdict is Verdict.OPEN
    assert out.result.address == "::1"
    assert any("[IPv6:::1]" in t.rcpt_to for t in out.result.tests)
