"""What a twin does with mail it accepted: relay it on, or send a non-delivery report.

The SMTP models decide a disposition per recipient at RCPT time (`dialogue.Disposition`);
after DATA the twin acts on it, as the emulated server would:
- `relay` to a recipient at an IP-literal domain (`user@[127.0.48.250]`, RFC 5321 §4.1.3):
  the message, with a Received: line on top, is delivered over SMTP to that address;
- `ndr` (Exchange 5.5 in "Do not reroute" mode, an unknown local mailbox): a delivery-status
  report (RFC 3464, multipart/report) goes to the envelope sender from the null
  reverse-path (RFC 5321 §4.5.5), when the sender's domain is an IP literal.

Test equipment: only destinations in 127.0.0.0/8 are ever contacted (anything else is logged
as not sent), one attempt each, bounded in size and time. Planning is pure; `send` does I/O.
"""

from __future__ import annotations

import asyncio
import ipaddress
import smtplib
import uuid
from dataclasses import dataclass
from email.utils import formatdate

from relayguard.lab.exchange.dialogue import Disposition

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
MAX_CONTENT = 1024 * 1024  # larger messages are not passed on
SEND_TIMEOUT = 10.0
MAX_QUOTED_HEADERS = 16 * 1024
# The 5.5 IMS's NDR text for mail it cannot route when "Do not reroute" is set (lab choice of
# wording; the IMS reported it as a non-delivery from the MTA, not as an SMTP reply).
NDR_DIAGNOSTIC = "No transport provider was available for delivery to this recipient."


def loopback_literal(domain: str) -> str | None:
    """The IPv4 address of a `[a.b.c.d]` domain literal inside 127.0.0.0/8, else None."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    try:
        address = ipaddress.ip_address(domain[1:-1])
    except ValueError:
        return None
    return str(address) if address in LOOPBACK else None


def _domain(address: str) -> str:
    return address.rpartition("@")[2] if "@" in address else ""


@dataclass(frozen=True)
class Outgoing:
    """One message the twin sends on: to `host` port 25 (or the lab's delivery port)."""

    kind: str  # "relay" or "ndr"
    host: str
    mail_from: str  # "" = the null reverse-path
    rcpt_tos: tuple[str, ...]
    content: bytes


def received_line(helo: str, client_ip: str, server_name: str, date: str) -> bytes:
    """The trace line a relay adds on top (RFC 5321 §4.4)."""
    return (
        f"Received: from {helo or 'unknown'} ([{client_ip}]) by {server_name} with ESMTP;\r\n"
        f"\t{date}\r\n"
    ).encode("ascii", "replace")


def _header_block(content: bytes) -> bytes:
    end = content.find(b"\r\n\r\n")
    block = content if end < 0 else content[: end + 2]
    return block[:MAX_QUOTED_HEADERS]


def _subject(headers: bytes) -> str:
    for line in headers.decode("utf-8", "replace").split("\r\n"):
        if line.lower().startswith("subject:"):
            return line[8:].strip()[:200]
    return ""


def render_ndr(
    sender: str, failed: tuple[str, ...], content: bytes, server_name: str, date: str
) -> bytes:
    """A delivery-status report for `failed` recipients, quoting the original headers
    (RFC 3464 §2, RFC 6522: text/rfc822-headers)."""
    boundary = f"ndr-{uuid.uuid4().hex}"
    original = _header_block(content)
    subject = _subject(original)
    lines = [
        f"From: System Administrator <postmaster@{server_name}>",
        f"To: <{sender}>",
        f"Subject: Undeliverable: {subject}",
        f"Date: {date}",
        f"Message-ID: <{uuid.uuid4().hex}@{server_name}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "Your message did not reach some or all of the intended recipients.",
        f"      Subject:  {subject}",
        "The following recipient(s) could not be reached:",
        *[f"      {rcpt}\r\n            {NDR_DIAGNOSTIC}" for rcpt in failed],
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {server_name}",
        "",
    ]
    for rcpt in failed:
        lines += [
            f"Final-Recipient: rfc822; {rcpt}",
            "Action: failed",
            "Status: 5.0.0",
            f"Diagnostic-Code: X-Exchange; {NDR_DIAGNOSTIC}",
            "",
        ]
    lines += [f"--{boundary}", "Content-Type: text/rfc822-headers", ""]
    text = "\r\n".join(lines).encode("ascii", "replace") + b"\r\n"
    return text + original + f"\r\n--{boundary}--\r\n".encode("ascii")


def plan_outgoing(
    mail_from: str,
    dispositions: list[tuple[str, str]],
    content: bytes,
    *,
    server_name: str,
    client_ip: str,
    helo: str,
    date: str | None = None,
) -> list[Outgoing]:
    """What to send after DATA (pure): relays grouped by destination, then at most one NDR."""
    if len(content) > MAX_CONTENT:
        return []
    date = date or formatdate(usegmt=True)
    out: list[Outgoing] = []
    relays: dict[str, list[str]] = {}
    for rcpt, disposition in dispositions:
        host = loopback_literal(_domain(rcpt))
        if disposition == Disposition.RELAY.value and host is not None:
            relays.setdefault(host, []).append(rcpt)
    sender = "" if mail_from in ("", "<>") else mail_from
    trace = received_line(helo, client_ip, server_name, date)
    for host, rcpts in relays.items():
        out.append(Outgoing("relay", host, sender, tuple(rcpts), trace + content))
    failed = tuple(r for r, d in dispositions if d == Disposition.NDR.value)
    bounce_host = loopback_literal(_domain(sender)) if sender else None
    if failed and bounce_host is not None:  # never bounce a bounce (null sender)
        report = render_ndr(sender, failed, content, server_name, date)
        out.append(Outgoing("ndr", bounce_host, "", (sender,), report))
    return out


def _send_blocking(message: Outgoing, port: int, source: str | None, helo: str) -> str:
    if ipaddress.ip_address(message.host) not in LOOPBACK:  # belt and braces: lab only
        return "not sent: destination outside 127.0.0.0/8"
    bind = (source, 0) if source else None
    with smtplib.SMTP(
        message.host, port, local_hostname=helo, timeout=SEND_TIMEOUT, source_address=bind
    ) as client:
        refused = client.sendmail(message.mail_from, list(message.rcpt_tos), message.content)
    return f"sent ({len(refused)} recipients refused)" if refused else "sent"


async def send(message: Outgoing, port: int, source: str | None, helo: str) -> str:
    """One delivery attempt (bounded by SEND_TIMEOUT per step); returns what happened."""
    try:
        return await asyncio.to_thread(_send_blocking, message, port, source, helo)
    except (OSError, smtplib.SMTPException) as exc:
        return f"not sent: {type(exc).__name__}: {exc}"[:300]
