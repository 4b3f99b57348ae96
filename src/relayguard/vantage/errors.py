"""What can go wrong on the way through a vantage point, as exceptions with one clear line.

The probe turns any of them into an `inconclusive` verdict with `str(exc)` as the reason.
Messages name the jump host and the destination, never a key's content or a passphrase.
"""

from __future__ import annotations


class VantageError(Exception):
    """Base: the path through the vantage point failed; `str()` says why."""


class SshConnectFailed(VantageError):
    """The jump host could not be reached or the SSH handshake failed."""


class HostKeyUnknown(VantageError):
    """The jump host's key is not in known_hosts and was not explicitly accepted."""


class HostKeyMismatch(VantageError):
    """The jump host offered a key different from the one known_hosts records for it."""


class SshAuthFailed(VantageError):
    """The jump host refused every key offered (key file, agent, default keys)."""


class ChannelOpenFailed(VantageError):
    """The jump host could not open a direct-tcpip channel to the destination."""
