"""The sink: an SMTP listener the probe runs itself, keeping what arrives as evidence.

Delivery confirmation (issue 11, `confirm`) addresses its one test message to
`relaytest@[sink-ip]` with the envelope sender also at the sink, so whatever a probed server
does with it — relay it, or send a non-delivery report (NDR) back to the sender — ends here.
The sink keeps a bounded record of each message (envelope, selected headers, the DSN fields of
an NDR, the relayguard tokens it mentions) and never stores or forwards the body.
`arrival_kind` tells our own message from a bounce; it is pure.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from email import message_from_bytes
from email.message import Message
from email.policy import compat32
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, Envelope, Session

# What the confirmation puts in envelopes and headers: `relayguard.<run id>.<host index>`.
TOKEN_PATTERN = re.compile(rb"relayguard\.([0-9a-f]{16})\.([0-9]{1,5})")
MAX_MESSAGE_BYTES = 256 * 1024  # a test message is ~1 KiB; an NDR quoting it a few KiB
MAX_MESSAGES = 200
MAX_HEADERS = 40
MAX_HEADER_VALUE = 300
KEPT_HEADERS = (
    "received",
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "content-type",
    "auto-submitted",
    "x-relayguard-run",
    "x-relayguard-token",
)
# Fields of an RFC 3464 delivery-status report worth showing (per message and per recipient).
DSN_FIELDS = (
    "reporting-mta",
    "final-recipient",
    "original-recipient",
    "action",
    "status",
    "remote-mta",
    "diagnostic-code",
)

ArrivalKind = Literal["relayed", "bounce"]


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as the sink received it (bounded: selected headers, no body)."""

    peer: str
    helo: str
    mail_from: str  # "" for the null reverse-path <> (RFC 5321 §4.5.5: bounces use it)
    rcpt_tos: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    content_type: str
    report_type: str
    message_id: str
    size: int
    tokens: tuple[str, ...]  # every relayguard token found in envelope or content
    dsn: tuple[tuple[str, str], ...] = ()  # the delivery-status fields of an NDR
    original_headers: tuple[tuple[str, str], ...] = ()  # headers of the message it returns
    received_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "peer": self.peer,
            "helo": self.helo,
            "mail_from": f"<{self.mail_from}>",
            "rcpt_to": [f"<{r}>" for r in self.rcpt_tos],
            "headers": [list(h) for h in self.headers],
            "content_type": self.content_type,
            "report_type": self.report_type or None,
            "message_id": self.message_id or None,
            "size": self.size,
            "dsn": [list(f) for f in self.dsn],
            "original_headers": [list(h) for h in self.original_headers],
        }


def _clip(value: str) -> str:
    value = " ".join(value.split())
    return value if len(value) <= MAX_HEADER_VALUE else value[:MAX_HEADER_VALUE] + "…"


def _kept(message: Message, names: Sequence[str]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for name, value in message.items():
        if name.lower() in names and len(out) < MAX_HEADERS:
            out.append((name, _clip(str(value))))
    return tuple(out)


def _dsn_parts(message: Message) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """The delivery-status fields and the returned message's headers of a multipart/report
    (RFC 3464 §2: message/delivery-status; RFC 6522: text/rfc822-headers or message/rfc822)."""
    fields: list[tuple[str, str]] = []
    original: tuple[tuple[str, str], ...] = ()
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            payload = part.get_payload()
            blocks = payload if isinstance(payload, list) else []
            if not blocks:
                raw = part.get_payload(decode=True)
                text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
                blocks = [
                    message_from_bytes(b.encode(), policy=compat32) for b in text.split("\n\n")
                ]
            for block in blocks:
                if isinstance(block, Message):
                    fields.extend(_kept(block, DSN_FIELDS))
        elif kind in ("text/rfc822-headers", "message/rfc822") and not original:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                original = _kept(payload[0], KEPT_HEADERS)
            else:
                raw = part.get_payload(decode=True)
                if isinstance(raw, bytes):
                    original = _kept(message_from_bytes(raw, policy=compat32), KEPT_HEADERS)
    return tuple(fields[:MAX_HEADERS]), original


def read_message(
    peer: str, helo: str, mail_from: str, rcpt_tos: Sequence[str], content: bytes
) -> ReceivedMessage:
    """The bounded record of one received message (pure: no clock, no I/O)."""
    message = message_from_bytes(content, policy=compat32)
    envelope = " ".join([mail_from, *rcpt_tos]).encode("utf-8", "replace")
    found = TOKEN_PATTERN.findall(envelope + b"\n" + content)
    tokens = tuple(sorted({f"{run.decode()}.{int(n)}" for run, n in found}))
    content_type = message.get_content_type()
    report_type = str(message.get_param("report-type") or "") if message.is_multipart() else ""
    dsn, original = _dsn_parts(message) if content_type == "multipart/report" else ((), ())
    return ReceivedMessage(
        peer=peer,
        helo=helo,
        mail_from=mail_from,
        rcpt_tos=tuple(rcpt_tos),
        headers=_kept(message, KEPT_HEADERS),
        content_type=content_type,
        report_type=report_type.lower(),
        message_id=_clip(str(message.get("Message-ID", ""))).strip(),
        size=len(content),
        tokens=tokens,
        dsn=dsn,
        original_headers=original,
    )


def arrival_kind(message: ReceivedMessage, token: str, message_id: str) -> ArrivalKind | None:
    """What `message` says about the test message carrying `token` and `message_id`.

    `relayed`: it is our message itself (our Message-ID, a real sender, not a report).
    `bounce`: it refers to our message and is a bounce — the null reverse-path (RFC 5321
    §4.5.5), a delivery-status report (RFC 3464, multipart/report), or any other message
    quoting our token or Message-ID (an NDR that breaks those rules is still an NDR).
    None: it is about something else.
    """
    if token not in message.tokens and message_id not in message.message_id:
        return None
    is_report = message.content_type == "multipart/report"
    if message.mail_from and not is_report and message.message_id == message_id:
        return "relayed"
    return "bounce"


def _reverse_path(mail_from: str | None) -> str:
    """aiosmtpd keeps `MAIL FROM:<>` as "<>"; the record keeps the null path as ""."""
    text = (mail_from or "").strip()
    return "" if text in ("", "<>") else text.strip("<>")


class _SinkHandler:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return self.sink.receive(session, envelope)


@dataclass
class Sink:
    """The listener: start it, read `messages`, wait for more with `wait_for_change`."""

    host: str
    port: int
    max_messages: int = MAX_MESSAGES
    messages: list[ReceivedMessage] = field(default_factory=list)
    refused: int = 0
    _server: asyncio.base_events.Server | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def receive(self, session: Session, envelope: Envelope) -> str:
        if len(self.messages) >= self.max_messages:
            self.refused += 1
            return "452 4.3.1 relayguard sink is full"
        content = envelope.original_content or b""
        peer: Any = session.peer
        record = read_message(
            str(peer[0]) if isinstance(peer, tuple) else str(peer),
            str(session.host_name or ""),
            _reverse_path(envelope.mail_from),
            [str(r) for r in envelope.rcpt_tos],
            content,
        )
        self.messages.append(replace(record, received_at=time.monotonic()))
        self._changed.set()
        return "250 2.0.0 kept as evidence by the relayguard sink"

    def _protocol(self) -> SMTP:
        return SMTP(
            _SinkHandler(self),
            hostname="relayguard-sink",
            data_size_limit=MAX_MESSAGE_BYTES,
            decode_data=False,
            timeout=60,
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, host=self.host, port=self.port, reuse_address=True
        )

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), timeout=5)

    async def wait_for_change(self, timeout: float) -> None:
        """Return when a message arrived since the last call, or after `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout=max(timeout, 0.0))
        self._changed.clear()
