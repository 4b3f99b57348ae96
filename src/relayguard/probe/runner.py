"""Probe one host: greet it, run every catalog entry once, survive drops and 421s.

Jobs (relay tests, conformance checks, controls) sit in one queue that workers drain, each
over its own SMTP connection. One worker starts; as soon as a reply is overdue (Exchange
tarpits error replies, 5 s by default) more are started, up to `connections_per_host`, so a
tarpitting host costs tarpit x refusals / connections instead of tarpit x refusals. A worker
that the server will not admit (too many connections from one client, e.g. Exchange's
MaxInboundConnectionPerSource) ends quietly and lowers the bound. Controls are queued only
when a routed form at their domain got a 2xx. When the server advertises PIPELINING (RFC 2920),
RSET, MAIL and RCPT go in one write. A connection the server drops or closes with 421 is
replaced (within a reconnect budget) and the interrupted job is retried once. What the replies
mean is decided in `judge`; this room only runs the dialogue.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass, field

from relayguard.probe import judge
from relayguard.probe.addresses import address_literal, srvname_from
from relayguard.probe.catalog import (
    CONFORMANCE_CHECKS,
    CONTROL_LOCAL_PART,
    RELAY_TESTS,
    AddressContext,
    CheckKind,
    ConformanceCheck,
    RelayTest,
    render,
)
from relayguard.probe.options import ProbeOptions
from relayguard.probe.reply import Reply
from relayguard.probe.results import HostResult, TlsInfo
from relayguard.probe.session import (
    ConnectFailed,
    ConnectionLost,
    NotSmtp,
    Opener,
    ReplyOversized,
    ReplyTimeout,
    SessionError,
    SmtpConnection,
    Transcript,
)
from relayguard.vocabulary import Outcome, Verdict


@dataclass(frozen=True)
class ControlProbe:
    """RCPT to an unknown mailbox at a domain the server calls its own (see judge.apply_control)."""

    domain: str

    @property
    def id(self) -> str:
        return f"control:{self.domain}"


Job = RelayTest | ConformanceCheck | ControlProbe


class ServiceClosing(SessionError):
    """The server answered 421: it is closing the transmission channel (RFC 5321 §4.2.2)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"server closing the channel: {reply.first_line}")
        self.reply = reply


class FreshConnectionNeeded(SessionError):
    """The job was not started (e.g. RSET failed); run it on a new connection."""


class OutOfStep(SessionError):
    """The server sent a reply no command asked for (an early talker, or more replies than
    commands under PIPELINING): replies can no longer be matched to commands (RFC 5321 §4.3.1,
    RFC 2920 §3.1), so no reply read on this host is trusted."""


class HostRefused(SessionError):
    """The host will not hold a dialogue with us at all (421/554 banner, EHLO and HELO refused)."""


@dataclass
class _Pending:
    """Jobs run together: envelope jobs sharing one MAIL FROM (one transaction, one RCPT
    each, RFC 5321 §3.3), or a single command check."""

    jobs: list[Job]
    attempts: int = 0


@dataclass
class _HostState:
    banner: str = ""
    srvname: str | None = None
    esmtp: bool | None = None
    context: AddressContext | None = None
    tls: TlsInfo = field(default_factory=TlsInfo)
    tls_mode: str = "verify"  # verify -> insecure (cert did not validate) -> off
    # the server answered "530 Must issue a STARTTLS command first": upgrade even when the
    # options say not to (RFC 3207 §4), since no relay test is answered in plaintext
    tls_required: bool = False
    # the EHLO reply could not be read (over the drain bound): new connections greet with HELO
    helo_only: bool = False


def _tls_context(mode: str) -> ssl.SSLContext:
    if mode == "verify":
        return ssl.create_default_context()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _sender_template(job: Job) -> str | None:
    """The MAIL FROM template of an envelope job; None for a command check."""
    if isinstance(job, ControlProbe):
        return "<{F}@{I}>"
    if isinstance(job, RelayTest):
        return job.mail_from
    return job.mail_from if job.kind is CheckKind.ENVELOPE else None


def _advertises(ehlo: list[str] | None, keyword: str) -> bool:
    """Whether an EHLO reply (first line, then extension lines) lists `keyword`."""
    return bool(ehlo) and any(
        line.split()[0].upper() == keyword for line in (ehlo or [])[1:] if line.split()
    )


def _subject(der: bytes | None) -> str | None:
    if der is None:
        return None
    from cryptography import x509

    try:
        return x509.load_der_x509_certificate(der).subject.rfc4514_string()
    except ValueError:
        return None


class HostProbe:
    """The run of the whole catalog against one resolved host address."""

    def __init__(
        self,
        target: str,
        address: str,
        port: int,
        options: ProbeOptions,
        opener: Opener,
        relay_tests: tuple[RelayTest, ...] = RELAY_TESTS,
        checks: tuple[ConformanceCheck, ...] = CONFORMANCE_CHECKS,
    ) -> None:
        self.target = target
        self.address = address
        self.port = port
        self.options = options
        self.opener = opener
        self.relay_tests = relay_tests
        self.checks = checks
        jobs: list[Job] = [*relay_tests, *checks]
        self.queue: deque[_Pending] = deque(self._batches(jobs))
        self.transcript = Transcript()
        self.state = _HostState()
        self.test_records: dict[str, judge.TestRecord] = {}
        self.check_records: dict[str, judge.CheckRecord] = {}
        self.control_replies: dict[str, Reply | None] = {}
        self.host_failure: str | None = None
        self.out_of_step = False  # replies could not be matched to commands: trust none
        self.connections = 0
        # one connection per job at worst (a server that hangs up after every refusal),
        # controls included, plus a few for greetings that fail
        controls = sum(1 for t in relay_tests if t.control)
        self.reconnect_budget = len(jobs) + controls + 4
        self._greet_lock = asyncio.Lock()
        self._workers: set[asyncio.Task[None]] = set()
        self._bound = max(1, options.connections_per_host)
        self._slow = False  # replies were seen to be slow (a tarpit)
        self._closing = False  # run() is ending: no new workers
        self._controls: set[str] = set()  # domains whose control is queued or answered

    # -- connections -------------------------------------------------------------------
    async def _connect(self) -> SmtpConnection:
        self.connections += 1
        where = f"[{self.address}]" if ":" in self.address else self.address
        self.transcript.add("*", f"connection {self.connections} to {where}:{self.port}")
        reader, writer = await self.opener(self.address, self.port)
        conn = SmtpConnection(reader, writer, self.options.command_timeout, self.transcript)
        try:
            if self.options.implicit_tls(self.port):
                await self._implicit_tls(conn)
            await self._greet(conn)
        except BaseException:
            await conn.close(polite=False)
            raise
        conn.on_slow = self._reply_overdue
        conn.slow_after = self.options.slow_reply_s
        return conn

    async def _greet(self, conn: SmtpConnection) -> None:
        banner = await conn.read_reply()
        if not self.state.banner:
            self.state.banner = banner.text  # kept whatever happens next
        if banner.code == 421:
            raise HostRefused(f"service not available at connect: {banner.first_line}")
        if banner.code != 220:
            raise HostRefused(f"server refused the session: {banner.first_line}")
        esmtp = await self._hello(conn)
        conn.pipelining = _advertises(esmtp, "PIPELINING") and self.options.pipelining
        conn.starttls_offered = _advertises(esmtp, "STARTTLS")
        async with self._greet_lock:
            if self.state.context is None:
                self.state.srvname = srvname_from(banner.first_line, esmtp[0] if esmtp else None)
                self.state.esmtp = bool(esmtp)
                local = self.options.local_domain or self.state.srvname
                self.state.context = AddressContext(
                    from_local=self.options.mail_from_local,
                    to_local=self.options.rcpt_to_local,
                    external_domain=self.options.external_domain,
                    ip=self.address,
                    srvname=self.state.srvname or address_literal(self.address),
                    local_domain=local or address_literal(self.address),
                )
        if (
            (self.options.starttls or self.state.tls_required)
            and self.state.tls_mode != "off"
            and conn.starttls_offered
            and not conn.tls
        ):
            await self._starttls(conn)

    async def _implicit_tls(self, conn: SmtpConnection) -> None:
        """TLS before the banner (port 465, RFC 8314 §3.3). The certificate is recorded, not
        verified: the probe asks whether the port relays, not whether to trust it."""
        try:
            await conn.starttls(_tls_context("insecure"), None)
        except (ssl.SSLError, ConnectionError, OSError, ReplyTimeout) as exc:
            self.state.tls = TlsInfo(offered=True, implicit=True, error=f"TLS failed: {exc}")
            raise HostRefused(f"implicit TLS on port {self.port} failed: {exc}") from exc
        self.state.tls = TlsInfo(
            offered=True,
            established=True,
            implicit=True,
            subject=_subject(conn.peer_certificate()),
        )

    def _upgrade_first(self, conn: SmtpConnection, mail: Reply) -> bool:
        """True when MAIL met "530 Must issue a STARTTLS command first" on a plaintext
        connection that can still be upgraded: the job goes, unanswered, to a new connection
        that starts TLS first. Otherwise the 530 is recorded (an error, not a refusal)."""
        if not judge.tls_required(mail) or conn.tls or self.state.tls_required:
            return False
        if not conn.starttls_offered or self.state.tls_mode == "off":
            return False
        self.state.tls_required = True
        return True

    async def _hello(self, conn: SmtpConnection) -> list[str] | None:
        """EHLO, falling back to HELO when EHLO is refused; returns EHLO lines or None.

        An EHLO reply too large to read even by draining it (reply.MAX_DRAIN_BYTES) leaves the
        connection out of step: the next connection greets with HELO (RFC 5321 §4.1.1.1)."""
        if self.state.helo_only:
            await self._helo(conn, None)
            return None
        try:
            reply = await conn.command(f"EHLO {self.options.helo}")
        except ReplyOversized as exc:
            self.state.helo_only = True
            raise FreshConnectionNeeded(f"EHLO reply unreadable ({exc}): retry with HELO") from exc
        if reply.code == 421:
            raise ServiceClosing(reply)
        if reply.positive:
            return [reply.first_line, *reply.lines[1:]]
        await self._helo(conn, reply)
        return None

    async def _helo(self, conn: SmtpConnection, ehlo: Reply | None) -> None:
        helo = await conn.command(f"HELO {self.options.helo}")
        if helo.code == 421:
            raise ServiceClosing(helo)
        if not helo.positive:
            refused = f"{ehlo.first_line} / " if ehlo else ""
            raise HostRefused(f"EHLO and HELO refused: {refused}{helo.first_line}")
        return None

    async def _starttls(self, conn: SmtpConnection) -> None:
        reply = await conn.command("STARTTLS")
        if reply.code != 220:
            self.state.tls = TlsInfo(offered=True, error=f"STARTTLS refused: {reply.first_line}")
            self.state.tls_mode = "off"
            if reply.code == 421:
                raise ServiceClosing(reply)
            return
        mode = self.state.tls_mode
        try:
            await conn.starttls(_tls_context(mode), self.target if mode == "verify" else None)
        except ssl.SSLCertVerificationError as exc:
            self.state.tls = TlsInfo(offered=True, validated=False, error=exc.verify_message)
            self.state.tls_mode = "insecure"  # record the subject on the next connection
            raise FreshConnectionNeeded(
                f"certificate did not validate: {exc.verify_message}"
            ) from exc
        except (ssl.SSLError, ConnectionError, OSError, ReplyTimeout) as exc:
            # a handshake that fails or hangs is not retried: the next connection goes on in
            # plaintext (opportunistic TLS, RFC 3207 §4.1), instead of spending every reconnect
            self.state.tls = TlsInfo(offered=True, error=f"TLS handshake failed: {exc}")
            self.state.tls_mode = "off"
            raise FreshConnectionNeeded(f"TLS handshake failed: {exc}") from exc
        previous = self.state.tls
        self.state.tls = TlsInfo(
            offered=True,
            established=True,
            validated=True if mode == "verify" else previous.validated,
            subject=_subject(conn.peer_certificate()),
            error=previous.error,
        )
        again = await conn.command(f"EHLO {self.options.helo}")
        if again.positive:
            lines = [again.first_line, *again.lines[1:]]
            conn.pipelining = _advertises(lines, "PIPELINING") and self.options.pipelining
        else:
            raise (
                ServiceClosing(again)
                if again.code == 421
                else HostRefused(f"EHLO after STARTTLS refused: {again.first_line}")
            )

    # -- jobs ----------------------------------------------------------------------------
    def _batches(self, jobs: list[Job]) -> list[_Pending]:
        """Envelope jobs grouped by sender template, at most `rcpts_per_transaction` each."""
        size = max(1, self.options.rcpts_per_transaction)
        groups: dict[str, list[Job]] = {}
        singles: list[_Pending] = []
        for job in jobs:
            sender = _sender_template(job)
            if sender is None:
                singles.append(_Pending([job]))
            else:
                groups.setdefault(sender, []).append(job)
        batches = [
            _Pending(group[i : i + size])
            for group in groups.values()
            for i in range(0, len(group), size)
        ]
        if batches and len(batches[0].jobs) > 1:
            # a first transaction of one RCPT measures the reply time before a batch of
            # several is committed to one connection (a tarpit would serialise it)
            first = batches[0]
            batches[0:1] = [_Pending(first.jobs[:1]), _Pending(first.jobs[1:])]
        return batches + singles

    def _recipient(self, job: Job) -> str:
        assert self.state.context is not None
        if isinstance(job, ControlProbe):
            return f"<{CONTROL_LOCAL_PART}@{job.domain}>"
        if isinstance(job, RelayTest | ConformanceCheck):
            return render(job.rcpt_to, self.state.context)
        raise AssertionError(job)

    def _record(self, job: Job, mail: Reply, rcpt: Reply | None, attempts: int) -> None:
        assert self.state.context is not None
        ctx = self.state.context
        if isinstance(job, ControlProbe):
            self.control_replies[job.domain] = rcpt
        elif isinstance(job, RelayTest):
            deciding = rcpt if rcpt is not None else mail
            outcome = judge.classify_envelope(mail, rcpt)
            if job.control and outcome is Outcome.RELAYED:
                self._queue_control(render(job.control, ctx))
            self.test_records[job.id] = judge.TestRecord(
                id=job.id,
                nmap=job.nmap,
                exercises=job.exercises,
                source=job.source,
                mail_from=render(job.mail_from, ctx),
                rcpt_to=render(job.rcpt_to, ctx),
                outcome=outcome,
                code=deciding.code,
                reply=deciding.text,
                attempts=attempts,
                decided_at=judge.decided_at(mail),
            )
        else:
            mail_from, rcpt_to = render(job.mail_from, ctx), render(job.rcpt_to, ctx)
            self.check_records[job.id] = judge.CheckRecord(
                job, (f"MAIL FROM:{mail_from}", f"RCPT TO:{rcpt_to}"), mail, rcpt
            )

    def _queue_control(self, domain: str) -> None:
        """Queue the control envelope for `domain` once a routed form addressed there got a
        2xx: only then does `judge.apply_control` read its reply, so a server that refuses
        every form is never sent one (on a tarpit, each control is one more delayed refusal).
        Controls queued together share a transaction, as they did when sent up front."""
        if domain in self._controls:
            return
        self._controls.add(domain)
        job = ControlProbe(domain)
        last = self.queue[-1] if self.queue else None
        if (
            last is not None
            and not self._slow
            and last.jobs
            and isinstance(last.jobs[0], ControlProbe)
            and len(last.jobs) < max(1, self.options.rcpts_per_transaction)
        ):
            last.jobs.append(job)  # not started yet: it joins that transaction
        else:
            self.queue.append(_Pending([job]))

    def _expect_quiet(self, conn: SmtpConnection, before_send: bool) -> None:
        """Nothing may be waiting unasked for: a queued 421 (sent with the previous reply)
        means the next job starts on a new connection; anything else is out of step."""
        extra = conn.queued()
        if extra is None:
            return
        if extra.code == 421:
            if before_send:
                conn.take_queued()
                raise FreshConnectionNeeded(f"server closing the channel: {extra.first_line}")
            return
        conn.take_queued()
        raise OutOfStep(f"server sent a reply no command asked for: {extra.first_line[:120]!r}")

    async def _reset(self, conn: SmtpConnection, sent: bool) -> None:
        """Read (and, unless already sent, send) RSET; a failure means 'not started'."""
        try:
            reply = await (conn.read_reply() if sent else conn.command("RSET"))
        except (ConnectionLost, ReplyTimeout) as exc:
            raise FreshConnectionNeeded(f"RSET failed: {exc}") from exc
        if not reply.positive:
            raise FreshConnectionNeeded(f"RSET answered {reply.first_line}")

    async def _transaction(self, conn: SmtpConnection, pending: _Pending) -> None:
        """RSET (after an earlier transaction), MAIL, then one RCPT per job. With PIPELINING
        all go in one write and replies are matched in order (RFC 2920 §3.1). RCPT replies
        count only when MAIL was accepted, as in nmap. Answered jobs leave `pending`, so an
        interruption requeues only the rest."""
        assert self.state.context is not None
        sender_template = _sender_template(pending.jobs[0])
        assert sender_template is not None
        mail_from = render(sender_template, self.state.context)
        recipients = [self._recipient(job) for job in pending.jobs]
        reset = conn.in_transaction
        self._expect_quiet(conn, before_send=True)
        if conn.pipelining:
            lines = [f"MAIL FROM:{mail_from}", *(f"RCPT TO:{r}" for r in recipients)]
            await conn.send(*(["RSET"] if reset else []), *lines)
            if reset:
                await self._reset(conn, sent=True)
            conn.in_transaction = True
            mail = await conn.read_reply()
        else:
            if reset:
                await self._reset(conn, sent=False)
            conn.in_transaction = True
            mail = await conn.command(f"MAIL FROM:{mail_from}")
        if mail.code == 421:
            raise ServiceClosing(mail)
        if self._upgrade_first(conn, mail):
            raise FreshConnectionNeeded("the server requires STARTTLS first (RFC 3207 §4)")
        attempts = pending.attempts + 1
        for index, recipient in enumerate(recipients):
            if conn.pipelining:
                rcpt = await conn.read_reply()
            elif mail.positive:
                rcpt = await conn.command(f"RCPT TO:{recipient}")
            else:
                rcpt = None
            if not mail.positive:
                self._record(pending.jobs[0], mail, None, attempts)
                pending.jobs.pop(0)
                continue
            assert rcpt is not None
            if rcpt.code == 421:
                raise ServiceClosing(rcpt)
            if rcpt.code == 452 and index > 0:
                # "too many recipients" (RFC 5321 §4.5.3.1.10): the rest go in a new
                # transaction, not counted as an attempt; replies already sent are drained
                rest = _Pending(pending.jobs, pending.attempts)
                for _ in recipients[index + 1 :] if conn.pipelining else ():
                    await conn.read_reply()
                pending.jobs = []
                self.queue.appendleft(rest)
                return
            self._record(pending.jobs[0], mail, rcpt, attempts)
            pending.jobs.pop(0)
        if conn.pipelining:
            self._expect_quiet(conn, before_send=False)

    async def _run_job(self, conn: SmtpConnection, pending: _Pending) -> None:
        assert self.state.context is not None
        job = pending.jobs[0]
        if _sender_template(job) is not None:
            await self._transaction(conn, pending)
            return
        assert isinstance(job, ConformanceCheck)
        line = render(job.command, self.state.context)
        self._expect_quiet(conn, before_send=True)
        reply = await conn.command(line)
        if reply.code == 421:
            raise ServiceClosing(reply)
        self.check_records[job.id] = judge.CheckRecord(job, (line,), None, reply)
        pending.jobs.pop(0)

    def _give_up(self, pending: _Pending, reason: str, reply: Reply | None = None) -> None:
        for job in pending.jobs:
            self._give_up_job(job, pending.attempts, reason, reply)
        pending.jobs = []

    def _give_up_job(self, job: Job, attempts: int, reason: str, reply: Reply | None) -> None:
        if isinstance(job, ControlProbe):
            self.control_replies[job.domain] = None
        elif isinstance(job, RelayTest):
            ctx = self.state.context
            outcome = Outcome.ERROR
            if reply is not None and reply.code == 421:
                outcome = Outcome.DEFERRED  # still 421 after a retry: not accepted, transient
            self.test_records[job.id] = judge.TestRecord(
                id=job.id,
                nmap=job.nmap,
                exercises=job.exercises,
                source=job.source,
                mail_from=render(job.mail_from, ctx) if ctx else job.mail_from,
                rcpt_to=render(job.rcpt_to, ctx) if ctx else job.rcpt_to,
                outcome=outcome,
                code=reply.code if reply else None,
                reply=reply.text if reply else "",
                attempts=attempts,
                error=reason,
            )
        else:
            self.check_records[job.id] = judge.CheckRecord(job, (), None, reply, error=reason)

    async def _open(self, extra: bool) -> SmtpConnection | None:
        """A greeted connection, or None when this worker should stop.

        The first worker's failures decide the host's fate; an extra worker that cannot get
        in (the server limits connections per client) just ends and lowers the bound. Over the
        bound (it was lowered), an extra worker ends instead of reconnecting and the first one
        waits for the others to end, so a connection is replaced only within the bound."""
        while self.queue and self.host_failure is None:
            if len(self._active()) > self._bound:
                if extra:
                    return None
                await self._others_end()
                continue
            if self.reconnect_budget <= 0:
                while self.queue:
                    self._give_up(self.queue.popleft(), "reconnect budget exhausted")
                return None
            self.reconnect_budget -= 1
            try:
                return await self._connect()
            except FreshConnectionNeeded:
                continue
            except (ConnectFailed, HostRefused, NotSmtp, ServiceClosing) as exc:
                if extra:  # turned away (421 at connect): the connections open are the bound
                    self._bound = max(1, min(self._bound, len(self._active()) - 1))
                    return None
                if self.connections == 1 or isinstance(exc, (HostRefused, NotSmtp)):
                    self.host_failure = str(exc)
                    return None
            except (ConnectionLost, ReplyTimeout) as exc:
                if extra:
                    return None
                if self.state.context is None and self.connections >= 3:
                    self.host_failure = f"could not complete the greeting: {exc}"
                    return None
        return None

    async def _others_end(self) -> None:
        """Wait until another worker of this host has ended."""
        others = [task for task in self._active() if task is not asyncio.current_task()]
        if others:
            await asyncio.wait(others, return_when=asyncio.FIRST_COMPLETED)

    def _active(self) -> list[asyncio.Task[None]]:
        return [task for task in self._workers if not task.done()]

    def _spawn(self, extra: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._worker(extra))
        self._workers.add(task)

    def _reply_overdue(self) -> None:
        """A reply has been awaited `slow_reply_s` and is still not here (a tarpit): one RCPT
        per transaction from now on, spread over as many connections as the bound allows, so
        the waits overlap. Called while the slow reply is awaited, so the new connections
        start their own delayed replies at once instead of after it."""
        if self.state.context is None or self._closing:
            return
        if not self._slow:
            self._slow = True
            singles = [_Pending([job], p.attempts) for p in self.queue for job in p.jobs]
            self.queue = deque(singles)
        while len(self._active()) < self._bound and len(self.queue) > len(self._active()):
            self._spawn(extra=True)

    async def _worker(self, extra: bool = False) -> None:
        conn: SmtpConnection | None = None
        try:
            while self.queue and self.host_failure is None:
                if conn is None:
                    conn = await self._open(extra)
                    if conn is None:
                        return
                if not self.queue:
                    break
                pending = self.queue.popleft()
                waiting = len(pending.jobs)
                try:
                    await self._run_job(conn, pending)
                except OutOfStep as exc:
                    self.out_of_step = True
                    self.host_failure = f"replies out of step with commands: {exc}"
                    await conn.close(polite=False)
                    conn = None
                except FreshConnectionNeeded:
                    self.queue.appendleft(pending)  # not started: no attempt spent
                    await conn.close(polite=False)
                    conn = None
                except (ConnectionLost, ReplyTimeout, ServiceClosing, NotSmtp) as exc:
                    await conn.close(polite=False)
                    conn = None
                    if isinstance(exc, ReplyTimeout):
                        # slower than the reply time bound: more connections would only
                        # time out side by side, so from now on one connection at a time
                        self._bound = 1
                    if not pending.jobs:  # everything was answered before the drop
                        continue
                    if len(pending.jobs) < waiting:
                        # progress (a server that hangs up after N errors): the rest goes on
                        # a new connection without spending an attempt
                        self.queue.appendleft(pending)
                        continue
                    pending.attempts += 1
                    reply = exc.reply if isinstance(exc, ServiceClosing) else None
                    if pending.attempts <= self.options.max_retries_per_test:
                        self.queue.appendleft(pending)
                    else:
                        self._give_up(pending, str(exc), reply)
        except asyncio.CancelledError:
            if conn is not None:
                await conn.close(polite=False)
                conn = None
            raise
        finally:
            if conn is not None:
                await conn.close(polite=True)

    async def run(self) -> HostResult:
        started = time.monotonic()
        self._spawn(extra=False)
        try:
            async with asyncio.timeout(self.options.host_timeout):
                while active := self._active():
                    await asyncio.wait(active)
        except TimeoutError:
            self.host_failure = f"host time bound of {self.options.host_timeout:g}s reached"
        finally:
            self._closing = True
            for task in self._workers:
                task.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
        return self._result(time.monotonic() - started)

    def _result(self, duration: float) -> HostResult:
        if self.out_of_step:  # no reply can be matched to its command: none is evidence
            self.test_records.clear()
            self.check_records.clear()
            self.control_replies.clear()
        tests = []
        for test in self.relay_tests:
            record = self.test_records.get(test.id)
            if record is None:
                ctx = self.state.context
                record = judge.TestRecord(
                    id=test.id,
                    nmap=test.nmap,
                    exercises=test.exercises,
                    source=test.source,
                    mail_from=render(test.mail_from, ctx) if ctx else test.mail_from,
                    rcpt_to=render(test.rcpt_to, ctx) if ctx else test.rcpt_to,
                    outcome=Outcome.SKIPPED,
                    attempts=0,
                    error=self.host_failure or "not run",
                )
            if test.control and self.state.context is not None:
                domain = render(test.control, self.state.context)
                record = judge.apply_control(
                    record,
                    f"<{CONTROL_LOCAL_PART}@{domain}>",
                    self.control_replies.get(domain),
                )
            tests.append(record)
        checks = [self.check_records[c.id] for c in self.checks if c.id in self.check_records]
        verdict, reason = judge.verdict(tests, self.host_failure)
        found = judge.findings(tests, checks, self.options.local_domain is not None)
        spoofing = judge.own_domain_sender(
            self.check_records.get(judge.OWN_DOMAIN_CHECK), self.options.local_domain is not None
        )
        if verdict is Verdict.INCONCLUSIVE and self.host_failure is None and not tests:
            reason = "no relay test in the catalog"
        return HostResult(
            target=self.target,
            address=self.address,
            port=self.port,
            verdict=verdict,
            reason=reason,
            vantage=self.options.vantage,
            banner=self.state.banner,
            srvname=self.state.srvname,
            local_domain=self.state.context.local_domain if self.state.context else None,
            esmtp=self.state.esmtp,
            tls=self.state.tls,
            tests=tuple(tests),
            rfc2505=tuple(found),
            sender=(spoofing,) if spoofing else (),
            transcript=tuple(self.transcript.entries),
            connections=self.connections,
            duration_s=duration,
        )
