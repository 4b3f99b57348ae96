"""The records the twins' SMTP models speak in: who is connected, and what to answer.

`exchange55` and `exchange_modern` are pure functions from (state, session, command) to a
`Reply`; `smtp_twin` does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Disposition(StrEnum):
    """What the emulated server would do with the message for this recipient after DATA."""

    DELIVER = "deliver"  # a local mailbox
    RELAY = "relay"  # sent on to a foreign domain: the open-relay case
    NDR = "ndr"  # accepted, then a non-delivery report (5.5 "Do not reroute")
    NONE = "none"  # refused at RCPT


@dataclass(frozen=True)
class Reply:
    """One SMTP reply; `tarpit` marks error replies delayed by the connector's tarpit."""

    code: int
    text: str
    tarpit: bool = False
    disposition: Disposition = Disposition.NONE
    close: bool = False  # drop the connection after the reply

    def line(self) -> str:
        return f"{self.code} {self.text}"

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 400


@dataclass(frozen=True)
class SessionFacts:
    """What the server knows about the client when it decides."""

    client_ip: str
    server_ip: str
    authenticated_user: str | None = None

    @property
    def authenticated(self) -> bool:
        return self.authenticated_user is not None
