"""WinRM message encryption over HTTP: the ``multipart/encrypted`` framing of [MS-WSMV] 2.2.9.1.

With NTLM (Negotiate, 2.2.9.1.1) each SOAP message travels sealed by the authentication
context, in a two-part MIME body:

    --Encrypted Boundary\\r\\n
    \\tContent-Type: application/HTTP-SPNEGO-session-encrypted\\r\\n
    \\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=<plain length>\\r\\n
    --Encrypted Boundary\\r\\n
    \\tContent-Type: application/octet-stream\\r\\n
    <signature length: 4 bytes LE><signature><sealed message>--Encrypted Boundary--\\r\\n

NTLM sealing is RC4, so the sealed message is exactly ``Length`` bytes; the parser uses that
instead of searching for the boundary inside binary data. Pure functions: the seal/unseal
operations come from the connection's authentication context.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
BOUNDARY = b"--Encrypted Boundary"
CONTENT_TYPE = f'multipart/encrypted;protocol="{PROTOCOL}";boundary="Encrypted Boundary"'

_LENGTH = re.compile(rb"Length=(\d+)")
_OCTET_HEADER = b"\tContent-Type: application/octet-stream\r\n"


class EncryptionError(Exception):
    """A body that is not a well-formed encrypted WinRM message."""


def is_encrypted(content_type: str) -> bool:
    lowered = content_type.lower()
    return lowered.startswith("multipart/encrypted") and PROTOCOL.lower() in lowered


def decrypt(body: bytes, unwrap: Callable[[bytes], bytes]) -> bytes:
    """The plain SOAP message of an encrypted body; `unwrap(signature + sealed)`."""
    start = BOUNDARY + b"\r\n"
    if not body.startswith(start):
        raise EncryptionError("missing MIME boundary")
    header_end = body.find(start, len(start))
    if header_end < 0:
        raise EncryptionError("missing second MIME part")
    length_match = _LENGTH.search(body[len(start) : header_end])
    if length_match is None:
        raise EncryptionError("missing OriginalContent length")
    length = int(length_match.group(1))
    position = header_end + len(start)
    if not body.startswith(_OCTET_HEADER, position):
        raise EncryptionError("missing octet-stream part header")
    position += len(_OCTET_HEADER)
    if len(body) < position + 4:
        raise EncryptionError("truncated message")
    (signature_length,) = struct.unpack_from("<I", body, position)
    position += 4
    sealed_end = position + signature_length + length
    if len(body) < sealed_end or signature_length > 1024:
        raise EncryptionError("truncated message")
    plain = unwrap(body[position:sealed_end])
    if len(plain) != length:
        raise EncryptionError("decrypted length does not match OriginalContent")
    return plain


def encrypt(plain: bytes, wrap: Callable[[bytes], bytes], signature_length: int = 16) -> bytes:
    """An encrypted body for `plain`; `wrap` returns signature + sealed (NTLM: 16 bytes)."""
    wrapped = wrap(plain)
    return (
        BOUNDARY + b"\r\n"
        b"\tContent-Type: " + PROTOCOL.encode() + b"\r\n"
        b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
        + str(len(plain)).encode()
        + b"\r\n"
        + BOUNDARY
        + b"\r\n"
        + _OCTET_HEADER
        + struct.pack("<I", signature_length)
        + wrapped
        + BOUNDARY
        + b"--\r\n"
    )
