"""The SMTP listener of an Exchange twin: aiosmtpd doing the I/O, the state deciding every reply.

Each command re-reads the twin's state document (cheaply: only when the file changed), so a
write over WinRM is seen by the next command. The listener follows the emulated service: it
is closed while MSExchangeIMC / MSExchangeFrontEndTransport is stopped or restarting.
Replies come from `exchange55` / `exchange_modern`; this module only moves bytes, applies the
tarpit and logs what happened to each accepted message (`<name>.mail.jsonl`); `delivery`
passes accepted mail on (relay to an IP literal, NDR to the sender) on loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

from relayguard.lab.exchange import delivery, smtp55, smtp_modern
from relayguard.lab.exchange.dialogue import Reply, SessionFacts
from relayguard.lab.exchange.mailpath import MailPath, PathSyntaxError, parse_path
from relayguard.lab.exchange.state import ReceiveConnector, TwinState
from relayguard.lab.exchange.store import StateStore

log = logging.getLogger(__name__)

LOGICAL_PORT = 25  # connector bindings speak of port 25 whatever port the twin listens on


class TwinEnvelope(Envelope):
    """An envelope that also remembers what happened to each recipient."""

    def __init__(self) -> None:
        super().__init__()
        self.mail_given = False
        self.dispositions: list[tuple[str, str]] = []


@dataclass
class TwinHandler:
    """Decides replies for one twin from its state; shared by all its connections."""

    store: StateStore
    mail_log: Path | None = None
    delivery_port: int = 25  # where relayed mail and NDRs go on the destination's address
    _broken_cache: tuple[TwinState | None, bool] = field(default=(None, False))
    _sending: set[asyncio.Task[None]] = field(default_factory=set)

    def state(self) -> TwinState:
        return self.store.current()

    def legit_flow_broken(self, state: TwinState) -> bool:
        if self._broken_cache[0] is not state:  # the store hands out one object per version
            self._broken_cache = (state, state.legit_flow_broken())
        return self._broken_cache[1]

    def tarpit_seconds(self, state: TwinState, conn: ReceiveConnector | None) -> float:
        if state.lab.tarpit_seconds is not None:
            return state.lab.tarpit_seconds
        return smtp_modern.tarpit_seconds(conn) if conn is not None else 0.0

    def _log(self, entry: dict[str, Any]) -> None:
        if self.mail_log is not None:
            with self.mail_log.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")

    def record(self, state: TwinState, envelope: TwinEnvelope, client_ip: str) -> str:
        message_id = uuid.uuid4().hex
        self._log(
            {
                "time": time.time(),
                "twin": state.name,
                "client": client_ip,
                "mail_from": envelope.mail_from,
                "recipients": [{"rcpt": r, "disposition": d} for r, d in envelope.dispositions],
                "message_id": message_id,
            }
        )
        return message_id

    def pass_on(self, state: TwinState, server: TwinSMTP, envelope: TwinEnvelope) -> None:
        """Relay to IP-literal destinations and bounce to the sender, in the background."""
        outgoing = delivery.plan_outgoing(
            str(envelope.mail_from or ""),
            envelope.dispositions,
            envelope.original_content or b"",
            server_name=server.hostname,
            client_ip=server.facts.client_ip,
            helo=str(server._sess().host_name or ""),
        )
        for message in outgoing:
            task = asyncio.create_task(self._send(state.name, message, server))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, twin: str, message: delivery.Outgoing, server: TwinSMTP) -> None:
        result = await delivery.send(
            message, self.delivery_port, server.facts.server_ip, server.hostname
        )
        self._log(
            {
                "time": time.time(),
                "twin": twin,
                "event": message.kind,
                "to_host": f"{message.host}:{self.delivery_port}",
                "mail_from": message.mail_from,
                "rcpt_to": list(message.rcpt_tos),
                "result": result,
            }
        )

    async def handle_DATA(self, server: TwinSMTP, session: Session, envelope: Any) -> str:
        state = self.state()
        message_id = self.record(state, envelope, server.facts.client_ip)
        self.pass_on(state, server, envelope)
        if state.modern is not None:
            return smtp_modern.data_reply(state.modern, message_id).line()
        return smtp55.data_reply().line()

    def authenticate(
        self, server: Any, session: Session, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        state = self.state()
        if state.exchange55 is None or not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = data.login.decode("utf-8", "replace")
        password = data.password.decode("utf-8", "replace")
        ok = smtp55.check_password(state.exchange55, user, password)
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)


class TwinSMTP(SMTP):
    """aiosmtpd's protocol with the twin's greeting, EHLO, MAIL and RCPT."""

    def __init__(self, twin: TwinHandler, **kwargs: Any) -> None:
        super().__init__(twin, **kwargs)
        self.twin = twin
        self.facts = SessionFacts(client_ip="", server_ip="")
        self.connector: ReceiveConnector | None = None

    def _create_envelope(self) -> TwinEnvelope:
        return TwinEnvelope()

    def _sess(self) -> Session:
        assert self.session is not None
        return self.session

    def _env(self) -> TwinEnvelope:
        assert isinstance(self.envelope, TwinEnvelope)
        return self.envelope

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _reset(self) -> None:
        self.envelope = self._create_envelope()

    def _facts(self) -> SessionFacts:
        user = self._sess().auth_data if self._sess().authenticated else None
        return SessionFacts(
            client_ip=self.facts.client_ip,
            server_ip=self.facts.server_ip,
            authenticated_user=str(user) if user is not None else None,
        )

    async def _handle_client(self) -> None:
        peer: Any = self._sess().peer
        assert self.transport is not None
        sock = self.transport.get_extra_info("sockname")
        self.facts = SessionFacts(client_ip=str(peer[0]), server_ip=str(sock[0]))
        state = self.twin.state()
        if state.exchange55 is not None:
            text = smtp55.greeting(state.exchange55)
        else:
            assert state.modern is not None
            connector = smtp_modern.select_connector(state.modern, self.facts, LOGICAL_PORT)
            if connector is None:
                await self.push(smtp_modern.no_connector_reply().line())
                self._close()
                return
            over = smtp_modern.connection_limit_reply(connector, *self.served(connector))
            if over is not None:
                await self.push(over.line())
                self._close()
                return
            self.connector = connector  # served: counted from now on
            text = smtp_modern.greeting(state.modern, self.connector)
        self.hostname, _, self.__ident__ = text.partition(" ")
        await super()._handle_client()

    def served(self, connector: ReceiveConnector) -> tuple[int, int]:
        """Connections `connector` serves now: from this client's address, and in all."""
        return 0, 0

    async def _reply(self, reply: Reply, state: TwinState) -> None:
        if reply.tarpit:
            delay = self.twin.tarpit_seconds(state, self.connector)
            if delay > 0:
                await asyncio.sleep(delay)
        await self.push(reply.line())
        if reply.close:
            self._close()

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        if not hostname:
            await self.push("501 5.5.4 Invalid domain name")
            return
        self._reset()
        self._sess().extended_smtp = True
        self._sess().host_name = hostname
        state = self.twin.state()
        if state.exchange55 is not None:
            lines = smtp55.ehlo_lines(state.exchange55, self.facts)
        else:
            assert state.modern is not None
            assert self.connector is not None
            lines = smtp_modern.ehlo_lines(state.modern, self.connector, self.facts)
        # One write, as a real server sends it: clients that read a multi-line reply with a
        # single read (nmap's smtp-open-relay, docs/sources.md#nmap-weaknesses) must not be
        # desynchronised.
        await self.push("\r\n".join(lines))

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        if not hostname:
            await self.push("501 5.5.4 Invalid domain name")
            return
        self._reset()
        self._sess().extended_smtp = False
        self._sess().host_name = hostname
        state = self.twin.state()
        if state.exchange55 is not None:
            await self.push(smtp55.helo_line(state.exchange55, self.facts))
        else:
            assert state.modern is not None
            assert self.connector is not None
            await self.push(smtp_modern.helo_line(state.modern, self.connector, self.facts))

    @syntax("ETRN node")
    async def smtp_ETRN(self, arg: str | None) -> None:
        """RFC 1985: the 5.5 IMS supports ETRN (it advertises it); Exchange 2013+ does not."""
        state = self.twin.state()
        if state.exchange55 is None:
            await self.push("500 5.3.3 Unrecognized command")
        elif not arg:
            await self.push("501 Syntax: ETRN node")
        else:
            await self.push(f"251 OK no messages waiting for node {arg.strip()}")

    async def _path(self, arg: str | None, keyword: str) -> MailPath | None:
        try:
            path, _params = parse_path(arg or "", keyword)
        except PathSyntaxError:
            await self.push("501 5.5.4 Invalid arguments")
            return None
        return path

    @syntax("MAIL FROM: <address>")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        envelope = self._env()
        if envelope.mail_given:
            await self.push("503 5.5.2 Sender already specified")
            return
        path = await self._path(arg, "FROM:")
        if path is None:
            return
        state = self.twin.state()
        if state.exchange55 is not None:
            reply = smtp55.mail_reply(state.exchange55, path)
        else:
            assert self.connector is not None
            reply = smtp_modern.mail_reply(self.connector, self._facts(), path)
        if reply.ok:
            envelope.mail_given = True
            envelope.mail_from = path.text or "<>"
        await self._reply(reply, state)

    @syntax("RCPT TO: <address>")
    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        envelope = self._env()
        if not envelope.mail_given:
            await self.push("503 5.5.2 Need mail command")
            return
        path = await self._path(arg, "TO:")
        if path is None:
            return
        state = self.twin.state()
        broken = self.twin.legit_flow_broken(state)
        if state.exchange55 is not None:
            reply = smtp55.rcpt_reply(
                state.exchange55, self._facts(), path, legit_flow_broken=broken
            )
        else:
            assert state.modern is not None
            assert self.connector is not None
            reply = smtp_modern.rcpt_reply(
                state.modern, self.connector, self._facts(), path, legit_flow_broken=broken
            )
        if reply.ok:
            envelope.rcpt_tos.append(path.text)
            envelope.dispositions.append((path.text, reply.disposition.value))
        await self._reply(reply, state)


def listening_wanted(state: TwinState, now: float) -> bool:
    """The emulated SMTP service answers only while it is running and not restarting."""
    x = state.exchange55 or state.modern
    if x is None:
        return False
    return x.Service.Status == "Running" and now >= x.Service.restart_until


class TwinListener:
    """One twin's SMTP listener, opened and closed as its emulated service starts and stops."""

    def __init__(
        self,
        store: StateStore,
        host: str,
        port: int,
        mail_log: Path | None,
        delivery_port: int = 25,
    ) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.handler = TwinHandler(store, mail_log, delivery_port)
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[TwinSMTP] = set()

    @property
    def listening(self) -> bool:
        return self._server is not None

    def _protocol(self) -> TwinSMTP:
        state = self.store.current()
        is55 = state.exchange55 is not None
        proto = _TrackedSMTP(
            self,
            self.handler,
            hostname=state.name,
            auth_require_tls=False,
            authenticator=self.handler.authenticate if is55 else None,
            auth_exclude_mechanism=["PLAIN"] if is55 else ["PLAIN", "LOGIN"],
            data_size_limit=37748736,
            timeout=300,
        )
        return proto

    async def start(self) -> None:
        if self._server is None:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                self._protocol, host=self.host, port=self.port, reuse_address=True
            )

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for proto in list(self._connections):
                if isinstance(proto.transport, asyncio.Transport):
                    proto.transport.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=5)

    async def sync(self, now: float | None = None) -> None:
        """Open or close the listener to match the emulated service's state."""
        try:
            state = self.store.current()
        except (OSError, ValueError) as exc:
            log.warning("twin %s: cannot read state: %s", self.host, exc)
            return
        if listening_wanted(state, time.time() if now is None else now):
            await self.start()
        else:
            await self.stop()


class _TrackedSMTP(TwinSMTP):
    def __init__(self, listener: TwinListener, twin: TwinHandler, **kwargs: Any) -> None:
        super().__init__(twin, **kwargs)
        self._listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._listener._connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._listener._connections.discard(self)
        super().connection_lost(exc)

    def served(self, connector: ReceiveConnector) -> tuple[int, int]:
        others = [
            p
            for p in self._listener._connections
            if p is not self and p.connector is not None and p.connector.Name == connector.Name
        ]
        same = sum(1 for p in others if p.facts.client_ip == self.facts.client_ip)
        return same, len(others)


async def run_listeners(listeners: list[TwinListener], stop: asyncio.Event) -> None:
    """Keep every listener in step with its twin's service state until `stop` is set."""
    try:
        while not stop.is_set():
            await asyncio.gather(*(lst.sync() for lst in listeners))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.2)
    finally:
        await asyncio.gather(*(lst.stop() for lst in listeners), return_exceptions=True)
