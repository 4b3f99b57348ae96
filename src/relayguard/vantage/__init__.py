"""Vantage points: where the probe's SMTP connections leave from (here: an SSH jump host).

Rooms: `spec` (parse and validate ``ssh://user@host[:port]``), `ssh` (the paramiko connection
to the jump host, host keys, authentication), `forward` (a local listener that pipes each
accepted connection into a new SSH channel), `opener` (the probe engine's connection opener
built on the forwarder, so the probe keeps one SMTP engine for every path), `through` (probe
targets from one vantage point, `inconclusive` with the reason when it cannot be used).
"""

from relayguard.vantage.errors import (
    ChannelOpenFailed,
    HostKeyMismatch,
    HostKeyUnknown,
    SshAuthFailed,
    SshConnectFailed,
    VantageError,
)
from relayguard.vantage.forward import LocalForward
from relayguard.vantage.opener import ssh_opener
from relayguard.vantage.spec import SshVantage, parse_vantage
from relayguard.vantage.ssh import SshJump, SshSettings, key_fingerprint
from relayguard.vantage.through import probe_through

__all__ = [
    "ChannelOpenFailed",
    "HostKeyMismatch",
    "HostKeyUnknown",
    "LocalForward",
    "SshAuthFailed",
    "SshConnectFailed",
    "SshJump",
    "SshSettings",
    "SshVantage",
    "VantageError",
    "key_fingerprint",
    "parse_vantage",
    "probe_through",
    "ssh_opener",
]
