"""Fixtures: one real Postfix instance per lab profile on 127.0.4.x:25 (root only).

Addresses (this room's range is 127.0.4.0-127.0.9.255): profiles on 127.0.4.1.., the probe
speaks from 127.0.4.200, nmap from 127.0.4.201, so the instances' maillogs tell them apart.
Instances live for the session and are always removed; a session lock keeps two test runs
(say, two engineers' `make test`) from fighting over the same addresses, and lets a run
discard what an interrupted earlier run left behind.
"""

from __future__ import annotations

import fcntl
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from support import private_network
from support.realserver import require_root, require_tool

from relayguard.lab.postfix.instance import PostfixInstance, discard_instance, registered_alternates

PROFILE_ADDRESSES = {
    "open_relay": "127.0.4.1",
    "closed": "127.0.4.2",
    "debian_default": "127.0.4.3",
    "drop_after_errors": "127.0.4.4",
}
PROBE_SOURCE = "127.0.4.200"  # untrusted: every profile trusts 127.0.0.1 only (or everyone)
NMAP_SOURCE = "127.0.4.201"
TRUSTED_SOURCE = "127.0.0.1"

_ROOT_PREFIX = "relayguard-postfix-tests-"
_SESSION_LOCK = Path("/run/lock/relayguard-postfix-tests.lock")
_LOCK_WAIT_S = 540.0


def _discard_leftovers() -> None:
    """Remove instances an interrupted run of these tests left registered (we hold the lock,
    so no live run owns them)."""
    temp = Path(tempfile.gettempdir())
    for entry in registered_alternates():
        config = Path(entry)
        run_root = config.parent.parent
        if (
            config.name == "config"
            and run_root.parent == temp
            and run_root.name.startswith(_ROOT_PREFIX)
        ):
            discard_instance(config.parent)
            shutil.rmtree(run_root, ignore_errors=True)


def _take_session_lock(lock: IO[str], lock_path: Path) -> None:
    """Alone (an exclusive lock): discard what an interrupted run left, then share the lock.
    On a private network (support/private_network.py: each pytest-xdist worker has its own
    127.0.4.x) several sessions may run at once, so a session that finds others running
    shares the lock and leaves their instances alone; without one, sessions take turns."""
    shared = private_network.entered()
    deadline = time.monotonic() + _LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _discard_leftovers()
            if shared:
                fcntl.flock(lock, fcntl.LOCK_SH)
            return
        except BlockingIOError:
            if shared:
                fcntl.flock(lock, fcntl.LOCK_SH)  # other sessions, each on its own network
                return
            if time.monotonic() > deadline:
                pytest.fail(f"another test run holds {lock_path} (Postfix on 127.0.4.x)")
            time.sleep(1.0)


@pytest.fixture(scope="session")
def postfix_lab() -> Iterator[Path]:
    """A world-searchable directory for this session's instances (Postfix's daemons must
    reach them, which pytest's 0700 tmp_path does not allow)."""
    require_root()
    require_tool("postfix", "postconf")
    lock_path = (
        _SESSION_LOCK if _SESSION_LOCK.parent.is_dir() else Path("/tmp") / _SESSION_LOCK.name
    )
    with open(lock_path, "a", encoding="ascii") as lock:
        _take_session_lock(lock, lock_path)
        root = Path(tempfile.mkdtemp(prefix=_ROOT_PREFIX))
        root.chmod(0o755)
        try:
            yield root
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _serve(postfix_lab: Path, profile_name: str) -> Iterator[PostfixInstance]:
    server = PostfixInstance.from_profile(
        postfix_lab / profile_name.replace("_", "-"),
        PROFILE_ADDRESSES[profile_name],
        profile_name,
    )
    with server:  # create + start; remove (stop, kill leftovers, unregister) on the way out
        yield server


@pytest.fixture(scope="session")
def open_relay_server(postfix_lab: Path) -> Iterator[PostfixInstance]:
    yield from _serve(postfix_lab, "open_relay")


@pytest.fixture(scope="session")
def closed_server(postfix_lab: Path) -> Iterator[PostfixInstance]:
    yield from _serve(postfix_lab, "closed")


@pytest.fixture(scope="session")
def debian_default_server(postfix_lab: Path) -> Iterator[PostfixInstance]:
    yield from _serve(postfix_lab, "debian_default")


@pytest.fixture(scope="session")
def drop_after_errors_server(postfix_lab: Path) -> Iterator[PostfixInstance]:
    yield from _serve(postfix_lab, "drop_after_errors")
