"""Fixtures: real Exim (127.0.110.x) and Sendmail (127.0.120.x) lab instances, root only.

Each profile listens on .1 (open_relay) or .2 (closed) of its MTA's range; the probe and swaks
speak from .200 (untrusted: every profile trusts 127.0.0.1 only, or everyone). Instances live
for the session and are always removed. They need scripts/system-packages.sh's unpacked
Exim and Sendmail (.mta/): outside CI a missing one skips with that hint, in CI it fails.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.realserver import IN_CI, require_root, require_tool

from relayguard.lab.exim.instance import EximInstance, exim_binary
from relayguard.lab.sendmail.instance import SendmailInstance, sendmail_binary
from relayguard.lab.unpacked import LabMtaError

EXIM_ADDRESSES = {"open_relay": "127.0.110.1", "closed": "127.0.110.2"}
EXIM_SOURCE = "127.0.110.200"
SENDMAIL_ADDRESSES = {"open_relay": "127.0.120.1", "closed": "127.0.120.2"}
SENDMAIL_SOURCE = "127.0.120.200"


def _require_unpacked(find: object) -> None:
    try:
        find()  # type: ignore[operator]
    except LabMtaError as exc:
        if IN_CI:
            pytest.fail(f"CI must run this test: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def mta_lab() -> Iterator[Path]:
    """A world-searchable directory for this session's instances (Exim's unprivileged
    deliveries must reach their mailboxes, which pytest's 0700 tmp_path does not allow)."""
    require_root()
    require_tool("swaks")
    root = Path(tempfile.mkdtemp(prefix="relayguard-mta-tests-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _exim(mta_lab: Path, name: str) -> Iterator[EximInstance]:
    _require_unpacked(exim_binary)
    with EximInstance(mta_lab / f"exim-{name}", EXIM_ADDRESSES[name], name) as server:
        yield server


def _sendmail(mta_lab: Path, name: str) -> Iterator[SendmailInstance]:
    _require_unpacked(sendmail_binary)
    require_tool("m4")
    with SendmailInstance(mta_lab / f"sm-{name}", SENDMAIL_ADDRESSES[name], name) as server:
        yield server


@pytest.fixture(scope="session")
def exim_open(mta_lab: Path) -> Iterator[EximInstance]:
    yield from _exim(mta_lab, "open_relay")


@pytest.fixture(scope="session")
def exim_closed(mta_lab: Path) -> Iterator[EximInstance]:
    yield from _exim(mta_lab, "closed")


@pytest.fixture(scope="session")
def sendmail_open(mta_lab: Path) -> Iterator[SendmailInstance]:
    yield from _sendmail(mta_lab, "open_relay")


@pytest.fixture(scope="session")
def sendmail_closed(mta_lab: Path) -> Iterator[SendmailInstance]:
    yield from _sendmail(mta_lab, "closed")
