"""Standard output that takes a whole document, whatever the process did before writing it.

O_NONBLOCK belongs to an open file description, not to a process: an event loop, a child
process or a library that shares the description and made it non-blocking leaves it so for
everyone. A non-blocking pipe takes at most its buffer (64 KiB on Linux, pipe(7)) before a
write fails part-way ("EAGAIN ... the write would block", write(2)); Python's `print` then
loses the rest, and a probe result of 73 KB reaches Ansible cut short ("Module result
deserialization failed: No end of json char found", exit status 0). The writers call
`blocking_stdio()` first.

Putting the flag back was not enough: under load the cut came back (twice in one parallel run
of the suite) — something sharing the description set the flag again between the reset and
the write. So stdout is also replaced by a writer that never gives up on a byte: a partial or
refused write(2) waits until the pipe is writable (select(2)) and goes on, whatever the flag
is at that moment.
"""

from __future__ import annotations

import io
import os
import select
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

_WAIT_S = 1.0  # wake up now and then even if no writability is signalled


class WholeWriter(io.RawIOBase):
    """A raw stream over a file descriptor whose write() writes every byte or raises."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            try:
                done += os.write(self._fd, view[done:])
            except BlockingIOError:
                select.select([], [self._fd], [], _WAIT_S)
        return done


def blocking_stdio() -> None:
    """Make stdout and stderr blocking again, where they are files, and make stdout write
    whole documents even if the flag changes again (call before writing the document)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
        except (AttributeError, ValueError, io.UnsupportedOperation):
            continue  # replaced by an in-memory stream (tests): nothing to do
        try:
            if not os.get_blocking(fd):
                os.set_blocking(fd, True)
        except OSError:
            continue
    _whole_stdout()


def _whole_stdout() -> None:
    stream = sys.stdout
    if isinstance(getattr(stream, "buffer", None), io.BufferedWriter) and isinstance(
        getattr(stream.buffer, "raw", None), WholeWriter
    ):
        return  # already whole
    try:
        fd = stream.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return  # an in-memory stream (tests)
    stream.flush()
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(WholeWriter(fd)),
        encoding=stream.encoding or "utf-8",
        errors=stream.errors or "strict",
        line_buffering=bool(stream.line_buffering),
    )
