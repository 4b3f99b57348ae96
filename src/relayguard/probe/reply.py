"""SMTP reply parsing with smtplib's semantics, fed bytes however they arrive.

A reply is one or more lines `DDD-text` ending with a line `DDD text` (RFC 5321 §4.2).
As in smtplib, the code comes from each line's first three characters and the text of
all lines is joined with newlines. Unlike a single `recv()`, the parser keeps partial lines
across segments, tolerates bare LF, and bounds line length and reply size so a hostile
server cannot make the probe buffer without limit: past 256 lines or 64 KiB a reply is read
on to its end (up to MAX_DRAIN_BYTES) keeping only its first lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LINE_BYTES = 8192  # RFC 5321 §4.5.3.1.5 allows 512; be generous, but bounded
MAX_REPLY_LINES = 256
MAX_REPLY_BYTES = 64 * 1024
# A reply over the two bounds above is still read to its end (its first lines kept, the rest
# counted and dropped), up to this many bytes: an oversized but valid EHLO reply does not end
# the dialogue; a reply that never ends does.
MAX_DRAIN_BYTES = 1024 * 1024

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


class ProtocolError(Exception):
    """The peer sent something that is not an SMTP reply."""


class ReplyTooLong(ProtocolError):
    """A line over the line bound, or a reply over the drain bound."""


@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]
    dropped: int = 0  # lines read past the size bounds and not kept

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def first_line(self) -> str:
        return f"{self.code} {self.lines[0] if self.lines else ''}".rstrip()

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 enhanced status code of the first line, if any."""
        match = _ENHANCED.match(self.lines[0]) if self.lines else None
        return ".".join(match.groups()) if match else None

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 300

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    def render(self) -> str:
        """The reply as it would appear on the wire (for transcripts and evidence)."""
        if not self.lines:
            return str(self.code)
        last = len(self.lines) - 1
        return "\n".join(
            f"{self.code}{' ' if i == last else '-'}{line}" for i, line in enumerate(self.lines)
        )


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


class ReplyParser:
    """Incremental parser: `feed()` bytes, get every complete reply so far."""

    def __init__(
        self,
        max_line: int = MAX_LINE_BYTES,
        max_lines: int = MAX_REPLY_LINES,
        max_bytes: int = MAX_REPLY_BYTES,
        max_drain: int = MAX_DRAIN_BYTES,
    ) -> None:
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._code: int | None = None
        self._reply_bytes = 0
        self._max_line = max_line
        self._max_lines = max_lines
        self._max_bytes = max_bytes
        self._max_drain = max(max_drain, max_bytes)
        self._dropped = 0
        # an error met after complete replies in the same segment: raised on the next feed,
        # so the replies before it still count (a 220 to STARTTLS followed by junk)
        self._error: ProtocolError | None = None

    @property
    def pending(self) -> bool:
        """True when part of a reply has arrived but not its last line."""
        return bool(self._buffer) or bool(self._lines)

    def feed(self, data: bytes) -> list[Reply]:
        """Every reply completed by `data`. A protocol error raises at once when no reply was
        completed before it in `data`, else on the next call."""
        if self._error is not None:
            raise self._error
        replies: list[Reply] = []
        try:
            self._feed(data, replies)
        except ProtocolError as exc:
            if not replies:
                raise
            self._error = exc
            self._buffer.clear()
        return replies

    def _feed(self, data: bytes, replies: list[Reply]) -> None:
        self._buffer.extend(data)
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self._max_line:
                    raise ReplyTooLong(f"reply line longer than {self._max_line} bytes")
                return
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            reply = self._line(raw.rstrip(b"\r"))
            if reply is not None:
                replies.append(reply)

    def _line(self, raw: bytes) -> Reply | None:
        if len(raw) > self._max_line:
            raise ReplyTooLong(f"reply line longer than {self._max_line} bytes")
        self._reply_bytes += len(raw) + 2
        if self._reply_bytes > self._max_drain:
            raise ReplyTooLong(f"reply longer than {self._max_drain} bytes")
        head = raw[:3]
        if len(head) < 3 or not head.isdigit() or raw[3:4] not in (b"", b" ", b"-"):
            raise ProtocolError(f"not an SMTP reply line: {_decode(raw[:80])!r}")
        code = int(head)
        if not 100 <= code <= 599:
            raise ProtocolError(f"reply code {code} out of range")
        if self._code is not None and code != self._code:
            raise ProtocolError(f"multi-line reply changed code from {self._code} to {code}")
        self._code = code
        if self._reply_bytes > self._max_bytes or len(self._lines) >= self._max_lines:
            self._dropped += 1  # drained: validated, counted, not kept
        else:
            self._lines.append(_decode(raw[4:]).strip(" \t"))
        if raw[3:4] == b"-":
            return None
        reply = Reply(code, tuple(self._lines), self._dropped)
        self._lines = []
        self._code = None
        self._reply_bytes = 0
        self._dropped = 0
        return reply
