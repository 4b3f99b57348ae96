"""One change at a time per host: a controller-side lock around every Exchange write.

Two relayguard runs (two operators, an AWX schedule beside a change window) must not
interleave changes on one server. Each write task holds an exclusive `flock` on
`<lock dir>/<host>.lock` for its whole duration; a second task for the same host fails at
once, naming the lock and who holds it. The kernel drops the lock when its process dies, so
a killed run never leaves a stale lock: the next run takes it, reads the host as it is and
converges (planning is from current state; the killed run's backup stays on disk).
The lock covers runs from this controller (or controllers sharing the lock directory, set
with RELAYGUARD_LOCK_DIR on a shared file system).
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class HostLocked(Exception):
    """Another run holds this host's lock."""


def lock_dir() -> Path:
    configured = os.environ.get("RELAYGUARD_LOCK_DIR")
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"relayguard-locks-{os.getuid()}"


@contextmanager
def host_lock(host: str, directory: Path | None = None) -> Iterator[Path]:
    """Hold `host`'s lock for the duration of the block; HostLocked if another run has it."""
    where = directory or lock_dir()
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = where / f"{_SAFE.sub('_', host.lower())}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another run"
            raise HostLocked(
                f"{host}: another relayguard run is changing this host ({holder}; lock {path}); "
                "nothing was changed — run again when it has finished"
            ) from None
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.pwrite(fd, f"pid {os.getpid()} since {stamp}".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
