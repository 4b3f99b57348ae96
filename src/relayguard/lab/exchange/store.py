"""Persistence of one twin's state document: atomic writes, cross-process locking, reload.

Several processes touch a twin's state (the SMTP daemon reads it, the WinRM op handlers
write it), so every read-modify-write holds an exclusive `flock` on a sibling lock file,
every write goes to a temporary file that is fsynced and renamed over the document (a reader
sees the old or the new document, never half of one), and readers reload only when the
file's identity (inode, size, mtime) changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from relayguard.lab.exchange.state import TwinState, dumps, loads

T = TypeVar("T")


class StateStore:
    """The state document of one twin at `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._cached: TwinState | None = None
        self._cached_key: tuple[int, int, int] | None = None
        self._derived: dict[str, tuple[tuple[int, int, int], Any]] = {}

    def exists(self) -> bool:
        return self.path.exists()

    def _key(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def current(self) -> TwinState:
        """The document as it is on disk now (cached until the file changes)."""
        return self._current()[1]

    def _current(self) -> tuple[tuple[int, int, int], TwinState]:
        key = self._key()
        cached = self._cached
        if cached is None or key != self._cached_key:
            cached = loads(self.path.read_text(encoding="utf-8"))
            self._cached, self._cached_key = cached, key
        return key, cached

    def derived(self, name: str, compute: Callable[[TwinState], T]) -> T:
        """`compute(current())`, kept as `name` until the file changes, as `current()` is:
        for what a twin answers again and again in the same state (a read_config's CLIXML,
        most of the lab daemon's CPU in a read). `compute` must be a pure function of the
        state, and its result is shared: never modified."""
        key, state = self._current()
        found = self._derived.get(name)
        if found is not None and found[0] == key:
            value: T = found[1]
            return value
        value = compute(state)
        self._derived[name] = (key, value)
        return value

    def load(self) -> TwinState:
        """A fresh copy of the document, safe to modify."""
        return loads(self.path.read_text(encoding="utf-8"))

    def save(self, state: TwinState) -> None:
        with self._locked():
            self._write(state)

    def update(self, change: Callable[[TwinState], T]) -> T:
        """Apply `change` to a fresh copy under the lock and write it back atomically.

        If `change` raises, nothing is written.
        """
        with self._locked():
            state = self.load()
            result = change(state)
            self._write(state)
            return result

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _write(self, state: TwinState) -> None:
        text = dumps(state)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
