"""Standard output that takes a whole document, whatever the process did before writing it.

O_NONBLOCK belongs to an open file description, not to a process: an event loop, a child
process or a library that shares the description and made it non-blocking leaves it so for
everyone. A non-blocking pipe takes at most its buffer (64 KiB on Linux, pipe(7)) before a
write fails part-way; a probe result of 73 KB then reaches Ansible cut short ("Module result
deserialization failed: No end of json char found"). The writers call `blocking_stdio()` first.
"""

from __future__ import annotations

import io
import os
import sys


def blocking_stdio() -> None:
    """Make stdout and stderr blocking again, where they are files (call before writing)."""
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
