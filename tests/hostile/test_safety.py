"""Probe safety: no DATA without --confirm, the per-host connection bound, only listed
addresses are ever contacted (not the second address of a name, not a host a hostile banner
or EHLO reply names)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from support.hostile import RawServer, closed_reply, dialogue, tarpit
from support.scripted_smtp import Script, ScriptedServer, relay_policy, serve

from relayguard.probe import ProbeOptions, probe_targets
from relayguard.probe.catalog import CONFORMANCE_CHECKS, RELAY_TESTS
from relayguard.vocabulary import Verdict

OPTIONS = ProbeOptions(command_timeout=2, host_timeout=60, local_domain="hostile.example")
# Every verb the probe may send without --confirm (docs/probe.md "What it sends").
ALLOWED = {"EHLO", "HELO", "STARTTLS", "MAIL", "RCPT", "RSET", "VRFY", "EXPN", "ETRN", "QUIT"}


def _accepts_data(session: Any, line: str) -> bytes | None:
    if line.upper() == "DATA":
        return b"354 go ahead\r\n"
    return relay_policy(True)(session, line)


@pytest.mark.parametrize("pipelining", [True, False])
def test_no_data_is_ever_sent_without_confirm(pipelining: bool) -> None:
    with serve(Script(_accepts_data), host="127.0.3.140") as srv:
        (result,) = probe_targets([srv.target], replace(OPTIONS, pipelining=pipelining))
        verbs = {c.split(" ", 1)[0].split(":", 1)[0].upper() for c in srv.stats.commands}
    assert result.verdict is Verdict.OPEN
    assert "DATA" not in verbs
    assert verbs <= ALLOWED


@pytest.mark.parametrize("bound", [1, 2, 3])
def test_the_per_host_connection_bound_holds_under_a_tarpit(bound: int) -> None:
    options = replace(OPTIONS, connections_per_host=bound, slow_reply_s=0.1)
    with RawServer(tarpit(0.15), "127.0.3.141") as srv:
        (result,) = probe_targets([srv.target], options)
        most = srv.stats.max_concurrent
    assert result.verdict is Verdict.CLOSED, result.reason
    assert 1 <= most <= bound


def test_connections_stay_within_the_reconnect_budget() -> None:
    """A server that hangs up after every refusal costs a connection per test at worst."""

    def one_refusal(line: str, state: dict[str, bool], n: int) -> bytes | None:
        if state.get("refused"):
            return None
        reply = closed_reply(line, state)
        state["refused"] = reply[:1] == b"5"
        return reply

    with RawServer(dialogue(one_refusal), "127.0.3.142") as srv:
        (result,) = probe_targets([srv.target], replace(OPTIONS, rcpts_per_transaction=1))
        connections = srv.stats.connections
    controls = sum(1 for t in RELAY_TESTS if t.control)
    assert result.verdict is Verdict.CLOSED, result.reason
    assert connections <= len(RELAY_TESTS) + len(CONFORMANCE_CHECKS) + controls + 4


@contextmanager
def sentinel(host: str, ports: list[int]) -> Iterator[list[int]]:
    """Listeners on `host` that must never be connected to; yields the accepted count."""
    accepted: list[int] = [0]
    sockets = []
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except PermissionError:  # port 25 needs root (CI runs as root)
            sock.close()
            continue
        sock.listen(16)
        sock.setblocking(False)
        sockets.append(sock)
    try:
        yield accepted
    finally:
        for sock in sockets:
            try:
                while True:
                    conn, _ = sock.accept()
                    conn.close()
                    accepted[0] += 1
            except BlockingIOError:
                pass
            sock.close()


def test_hosts_named_by_a_hostile_server_are_never_contacted() -> None:
    """Banner, EHLO, a 251 forward and a 421 all name 127.0.3.250; nothing connects there."""
    other = "127.0.3.250"

    def naming(line: str, state: dict[str, bool], n: int) -> bytes | None:
        verb = line.split(" ", 1)[0].upper()
        if verb == "EHLO":
            return f"250-{other}\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n".encode()
        if verb == "RCPT" and n > 6:
            return f"421 4.3.0 busy, try [{other}] or smtp://{other}:25\r\n".encode()
        if verb == "RCPT":
            return f"251 2.1.5 User not local; will forward to <relaytest@[{other}]>\r\n".encode()
        return closed_reply(line, state)

    banner = f"220 {other} ESMTP, or use mx2.[{other}]\r\n".encode()
    with (
        RawServer(dialogue(naming, banner=banner), "127.0.3.143") as srv,
        sentinel(other, [srv.port, 25, 587]) as accepted,
    ):
        (result,) = probe_targets([srv.target], OPTIONS)
    assert result.address == "127.0.3.143"
    assert result.verdict is Verdict.OPEN  # 251 to a foreign recipient is relaying
    assert accepted[0] == 0


def test_a_name_with_several_addresses_uses_only_the_first(monkeypatch: Any) -> None:
    real = asyncio.base_events.BaseEventLoop.getaddrinfo

    with (
        serve(Script(relay_policy(False)), host="127.0.3.144") as first,
        ScriptedServer(Script(relay_policy(False)), "127.0.3.145", first.port) as second,
    ):

        async def fake(self: Any, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host == "multi.hostile.test":
                return [
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.3.144", port)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.3.145", port)),
                ]
            return await real(self, host, port, *args, **kwargs)

        # the resolver is faked on the standard loop's class (uvloop's cannot be patched)
        monkeypatch.setenv("RELAYGUARD_EVENT_LOOP", "asyncio")
        monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", fake)
        (result,) = probe_targets([f"multi.hostile.test:{first.port}"], OPTIONS)
        used, unused = first.stats.connections, second.stats.connections
    assert result.verdict is Verdict.CLOSED, result.reason
    assert result.address == "127.0.3.144"
    assert used >= 1
    assert unused == 0
