"""The NetBIOS session service in front of a 5.5 twin's SMB on port 139, as Windows NT 4.0
answers it (NT 4.0 has no SMB over TCP 445: direct hosting came with Windows 2000).

A session opens with a session request naming the called server (RFC 1002 section 4.3.2).
A Windows server accepts the called name "*SMBSERVER" and its own NetBIOS name; any other
name gets a negative session response, "called name not present" (RFC 1002 section 4.3.4;
Microsoft's "CIFS Server Implementation", docs/sources.md#netbios-session). impacket's server
accepts every name, so the twin checks it first and then hands the connection to impacket.
"""

from __future__ import annotations

import socket
import struct

from impacket import nmb, smbserver

NETBIOS_SESSION_PORT = 139
SESSION_REQUEST = 0x81
POSITIVE_RESPONSE = 0x82
NEGATIVE_RESPONSE = 0x83
CALLED_NAME_NOT_PRESENT = 0x82  # RFC 1002 section 4.3.4, the negative response's error code
ANY_SERVER = "*SMBSERVER"


def _read(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def called_name(trailer: bytes) -> str:
    """The called name of a session request's trailer (first-level decoded, RFC 1001 section
    14.1), without its padding and its suffix byte."""
    _, name, _ = nmb.decode_name(trailer[:34])
    return str(name)[:15].rstrip()


def handler_for(server_name: str) -> type[smbserver.SMBSERVERHandler]:
    """impacket's connection handler behind a session request check for `server_name`."""
    accepted = {ANY_SERVER, server_name.upper()}

    class NetbiosSessionHandler(smbserver.SMBSERVERHandler):  # type: ignore[misc]
        def handle(self) -> None:
            header = _read(self.request, 4)
            if header is None or header[0] != SESSION_REQUEST:
                return  # on 139 a session starts with its request: anything else is dropped
            length = struct.unpack(">H", header[2:4])[0] + ((header[1] & 1) << 16)
            trailer = _read(self.request, length)
            if trailer is None or len(trailer) < 34:
                return
            if called_name(trailer).upper() not in accepted:
                self.request.sendall(bytes([NEGATIVE_RESPONSE, 0, 0, 1, CALLED_NAME_NOT_PRESENT]))
                return
            self.request.sendall(bytes([POSITIVE_RESPONSE, 0, 0, 0]))
            super().handle()

    return NetbiosSessionHandler
