"""The lab fleet's real mail servers (Postfix, Exim, Sendmail): one interface to start, check
and discard them by platform. Exchange hosts are twins served by the lab daemon instead.

Each real server lives under ``.lab/<platform>/<host>/`` and listens on its address:25.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from relayguard.vocabulary import Platform

REAL_PLATFORMS = frozenset({Platform.POSTFIX, Platform.EXIM, Platform.SENDMAIL})


class ServerError(RuntimeError):
    """A real lab server could not be started or discarded (one line, no secrets)."""


class RealServer(Protocol):
    def create(self) -> None: ...
    def start(self, timeout: float = 30.0) -> str: ...
    def is_running(self) -> bool: ...


def is_real(platform: Platform | str) -> bool:
    return platform in REAL_PLATFORMS


def server(platform: Platform | str, root: Path, address: str, profile: str) -> RealServer:
    """The instance object of a real server (not yet created or started)."""
    if platform == Platform.POSTFIX:
        from relayguard.lab.postfix.instance import PostfixInstance

        return PostfixInstance.from_profile(root, address, profile, port=25)
    if platform == Platform.EXIM:
        from relayguard.lab.exim.instance import EximInstance

        return EximInstance(root, address, profile)
    if platform == Platform.SENDMAIL:
        from relayguard.lab.sendmail.instance import SendmailInstance

        return SendmailInstance(root, address, profile)
    raise ServerError(f"{platform} is not a real lab server")


def ensure_running(platform: Platform | str, root: Path, address: str, profile: str) -> None:
    """Create and start the server unless it already runs."""
    instance = server(platform, root, address, profile)
    try:
        if not instance.is_running():
            instance.create()
            instance.start()
    except (RuntimeError, OSError, KeyError) as exc:
        raise ServerError(f"{platform} server at {address}: {exc}") from None


def discard(platform: Platform | str, root: Path) -> None:
    """Stop every process of the server under `root` and delete it (any state)."""
    try:
        if platform == Platform.POSTFIX:
            from relayguard.lab.postfix.instance import discard_instance

            discard_instance(root)
        elif platform == Platform.EXIM:
            from relayguard.lab.exim.instance import discard as discard_exim

            discard_exim(root)
        elif platform == Platform.SENDMAIL:
            from relayguard.lab.sendmail.instance import discard as discard_sendmail

            discard_sendmail(root)
    except RuntimeError as exc:
        raise ServerError(f"{platform} server under {root}: {exc}") from None
