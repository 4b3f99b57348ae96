"""Run a command with its stdout and stderr on a pseudo-terminal, bounded in time and size.

Postfix commands print their warnings and fatal errors on stderr only when it is a terminal,
and to syslog always (docs/sources.md#postfix-stderr-tty); the pty makes "what happened"
reportable on a host without a syslog daemon, and in the module's result.

One implementation for both sides: the postfix_relay backend on the managed host
(postfix_relay_backend.py) and the lab's real Postfix instances (relayguard.lab.postfix).
Standard library only; runs on every Python the targets ship (3.7+, see
tests/postfix_remediation/test_target_pythons.py).
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

OUTPUT_LIMIT = 1_000_000  # bytes of output kept; the rest is read and dropped
POLL_SECONDS = 0.2


class CommandError(Exception):
    """The command could not be started or did not finish in time."""


@dataclass(frozen=True)
class CommandResult:
    """What a command printed (stdout and stderr together) and its exit status."""

    argv: tuple[str, ...]
    returncode: int
    output: str

    def summary(self) -> str:
        """The output on one line (its last 600 characters), or the bare exit status."""
        text = " ".join(line.strip() for line in self.output.splitlines() if line.strip())
        return text[-600:] if text else f"exit status {self.returncode}, no message"


def _drain(fd: int) -> Iterator[bytes]:
    """Whatever is already readable on `fd`, without waiting."""
    while select.select([fd], [], [], 0)[0]:
        try:
            data = os.read(fd, 4096)
        except OSError:  # EIO: every writer closed the terminal
            return
        if not data:
            return
        yield data


def _keep(chunks: list[bytes], data: bytes) -> None:
    if sum(len(c) for c in chunks) < OUTPUT_LIMIT:
        chunks.append(data)


def _timed_out(proc: subprocess.Popen[bytes], argv: Sequence[str], timeout: float) -> CommandError:
    proc.kill()
    proc.wait()
    return CommandError(f"{' '.join(argv)} did not finish within {timeout:g}s")


def _read_until_done(
    proc: subprocess.Popen[bytes],
    master_fd: int,
    argv: Sequence[str],
    timeout: float,
) -> list[bytes]:
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timed_out(proc, argv, timeout)
        if select.select([master_fd], [], [], min(remaining, POLL_SECONDS))[0]:
            try:
                data = os.read(master_fd, 4096)
            except OSError:  # EIO: every writer closed the terminal
                data = b""
            if data:
                _keep(chunks, data)
                continue
            break  # end of file: every writer closed the terminal
        # Nothing pending. A daemon the command starts (`postfix start`) may keep the
        # terminal open, so the command's own exit ends the read, not end of file; what it
        # wrote just before exiting may still be buffered, so drain that first.
        if proc.poll() is not None:
            for data in _drain(master_fd):
                _keep(chunks, data)
            break
    try:
        proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
    except subprocess.TimeoutExpired:
        raise _timed_out(proc, argv, timeout) from None
    return chunks


def run_on_pty(argv: Sequence[str], timeout: float) -> CommandResult:
    """Run `argv` (no shell) with stdin from /dev/null and stdout+stderr on a new pty.

    `CommandError` when it cannot start or runs longer than `timeout` seconds (it is killed).
    The output is decoded as UTF-8 (undecodable bytes replaced), CRLF turned into LF, stripped.
    """
    master_fd, slave_fd = pty.openpty()
    try:
        # not AnsibleModule.run_command: Postfix reports only to a terminal (above)
        proc = subprocess.Popen(  # pylint: disable=ansible-bad-function
            list(argv), stdin=subprocess.DEVNULL, stdout=slave_fd, stderr=slave_fd
        )
    except OSError as exc:
        os.close(master_fd)
        raise CommandError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    finally:
        os.close(slave_fd)
    try:
        chunks = _read_until_done(proc, master_fd, argv, timeout)
    finally:
        os.close(master_fd)
    output = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n").strip()
    return CommandResult(tuple(argv), proc.returncode, output)
