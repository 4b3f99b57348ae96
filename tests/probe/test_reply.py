"""Reply parsing: however the bytes arrive, the same replies come out; limits hold."""

from __future__ import annotations

import pytest

from relayguard.probe.reply import ProtocolError, Reply, ReplyParser, ReplyTooLong

EHLO = b"250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"


def feed_in_pieces(data: bytes, size: int) -> list[Reply]:
    parser = ReplyParser()
    out: list[Reply] = []
    for i in range(0, len(data), size):
        out.extend(parser.feed(data[i : i + size]))
    assert not parser.pending
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13, len(EHLO)])
def test_multiline_split_at_any_boundary(size: int) -> None:
    (reply,) = feed_in_pieces(EHLO, size)
    assert reply.code == 250
    assert reply.lines == ("mx.example.net", "PIPELINING", "SIZE 10240000", "8BITMIME")
    assert reply.text == "mx.example.net\nPIPELINING\nSIZE 10240000\n8BITMIME"  # smtplib's


def test_every_split_point_of_two_replies() -> None:
    data = EHLO + b"221 2.0.0 Bye\r\n"
    for cut in range(len(data) + 1):
        parser = ReplyParser()
        replies = parser.feed(data[:cut]) + parser.feed(data[cut:])
        assert [r.code for r in replies] == [250, 221], cut


def test_bare_lf_and_code_only_lines() -> None:
    replies = ReplyParser().feed(b"250-first\n250\n354 go ahead\n")
    assert [(r.code, r.lines) for r in replies] == [(250, ("first", "")), (354, ("go ahead",))]


def test_enhanced_status_and_classes() -> None:
    (reply,) = ReplyParser().feed(b"550 5.7.1 Unable to relay\r\n")
    assert reply.enhanced == "5.7.1" and reply.permanent and not reply.positive
    assert reply.first_line == "550 5.7.1 Unable to relay"


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    (reply,) = ReplyParser().feed(b"220 caf\xe9 \xff\xfe ready\r\n")
    assert reply.code == 220 and "\ufffd" in reply.text


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 400 Bad Request\r\n",
        b"\x00\x01\x02binary\r\n",
        b"25 short\r\n",
        b"250-a\r\n251 b\r\n",  # code changed mid-reply
        b"999 nope\r\n",
    ],
)
def test_non_smtp_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        ReplyParser().feed(data)


def test_line_and_reply_bounds() -> None:
    parser = ReplyParser(max_line=100)
    with pytest.raises(ProtocolError, match="longer than 100"):
        parser.feed(b"250-" + b"x" * 200)  # no newline yet: still refused once over the bound
    # over 256 lines: read to its end, the first 256 lines kept, the rest counted
    many = b"".join(b"250-line\r\n" for _ in range(300)) + b"250 end\r\n"
    (reply,) = ReplyParser().feed(many)
    assert len(reply.lines) == 256 and reply.dropped == 45
    assert reply.code == 250
    # ...but never past the drain bound
    with pytest.raises(ReplyTooLong, match="reply longer than 2000 bytes"):
        ReplyParser(max_bytes=1000, max_drain=2000).feed(many)


def test_render_round_trip() -> None:
    (reply,) = ReplyParser().feed(EHLO)
    (again,) = ReplyParser().feed(reply.render().replace("\n", "\r\n").encode() + b"\r\n")
    assert again == reply
