"""How the twins read the argument of `MAIL FROM:` / `RCPT TO:` (RFC 5321 §4.1.2 paths).

The twins need the raw path, not a library's normalised address: whether a server relays
`relaytest%example.com@[127.0.30.1]` or `"IMCEASMTP-..."@corp.example` depends on the exact
form. This parser keeps the source route, the quoting and the local part as sent.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MailPath:
    """A reverse-path or forward-path as the client wrote it."""

    text: str  # the address without angle brackets, exactly as sent
    local: str  # local part, unquoted if it was a quoted string
    domain: str  # after the last unquoted "@" ("" if none)
    quoted: bool  # the local part was a quoted string
    route: tuple[str, ...]  # RFC 821 source route hops ("@a,@b:" prefix)
    bracketed: bool  # the client used angle brackets

    @property
    def null(self) -> bool:
        return self.text == ""


class PathSyntaxError(ValueError):
    """The argument is not a path at all."""


def parse_path(arg: str, keyword: str) -> tuple[MailPath, str]:
    """Split `FROM:<a@b> SIZE=10` into the path and the parameter text after it."""
    rest = arg.strip()
    if rest[: len(keyword)].upper() != keyword:
        raise PathSyntaxError(f"expected {keyword}")
    rest = rest[len(keyword) :].lstrip()
    if rest.startswith("<"):
        end = _closing_bracket(rest)
        inner, params = rest[1:end], rest[end + 1 :].strip()
        bracketed = True
    else:
        inner, _, params = rest.partition(" ")
        bracketed = False
        if not inner:
            raise PathSyntaxError("empty path")
    return _split(inner, bracketed), params


def _closing_bracket(text: str) -> int:
    quoted = False
    escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            return i
    raise PathSyntaxError("missing '>'")


def _split(inner: str, bracketed: bool) -> MailPath:
    route: tuple[str, ...] = ()
    mailbox = inner
    if inner.startswith("@") and ":" in inner:
        hops, _, mailbox = inner.partition(":")
        route = tuple(h.strip().lstrip("@") for h in hops.split(","))
    at = _last_unquoted_at(mailbox)
    if at < 0:
        local, domain = mailbox, ""
    else:
        local, domain = mailbox[:at], mailbox[at + 1 :]
    quoted = len(local) >= 2 and local.startswith('"') and local.endswith('"')
    if quoted:
        local = local[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return MailPath(
        text=inner,
        local=local,
        domain=domain,
        quoted=quoted,
        route=route,
        bracketed=bracketed,
    )


def _last_unquoted_at(text: str) -> int:
    quoted = False
    escaped = False
    last = -1
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "@" and not quoted:
            last = i
    return last


def decode_imcea(local: str) -> tuple[str, str] | None:
    """Decode an IMCEA local part (MS-OXCMAIL 2.1.3.1.8): `IMCEASMTP-a+40b+2Ec` -> (SMTP, a@b.c).

    `+HH` is a hex-encoded character and `_` stands for `/`. None if it is not IMCEA.
    """
    if not local.upper().startswith("IMCEA") or "-" not in local:
        return None
    addr_type, _, encoded = local[5:].partition("-")
    out: list[str] = []
    i = 0
    while i < len(encoded):
        ch = encoded[i]
        if ch == "+" and i + 2 < len(encoded) + 1 and _is_hex(encoded[i + 1 : i + 3]):
            out.append(chr(int(encoded[i + 1 : i + 3], 16)))
            i += 3
            continue
        out.append("/" if ch == "_" else ch)
        i += 1
    return addr_type.upper(), "".join(out)


def _is_hex(text: str) -> bool:
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)
