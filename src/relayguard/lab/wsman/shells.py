"""Remote shells and their commands: what a WinRM service remembers between requests.

A shell belongs to the user who created it (another user's ShellId is "not found", as on
Windows), holds commands, and counts against ``MaxShellsPerUser`` (30 on Windows Server 2012
and later; over it, the QuotaLimit fault). A command's output is fixed when it starts; it
becomes readable ``delay`` seconds later, which is how a long operation looks from the
client: Receive waits up to the request's OperationTimeout, then answers with the TimedOut
fault that pywinrm retries. Output goes out in chunks, so a large output spans several
Receive responses in state Running before the last one says Done with the exit code.

A command that reads its standard input (``awaiting_input``) runs only once its stdin is
closed: Send requests ([MS-WSMV] 3.1.4.13) append to it, the one with ``End="true"`` hands it
to the command's ``on_input_end``; until then a Receive waits, as for a process blocked
reading stdin.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from relayguard.lab.wsman.faults import (
    INVALID_PARAMETER,
    SHELL_NOT_FOUND,
    WsmanFault,
    quota_max_shells,
    shell_not_found_detail,
)
from relayguard.lab.wsman.soap import StreamChunk

DEFAULT_MAX_SHELLS_PER_USER = 30
RECEIVE_CHUNK_BYTES = 48 * 1024  # per Receive, both streams together (fits MaxEnvelopeSize)
CTRL_C_EXIT = 0xC000013A  # STATUS_CONTROL_C_EXIT


def new_id() -> str:
    return str(uuid.uuid4()).upper()


@dataclass(frozen=True)
class Output:
    """What a command leaves to be received: its streams as bytes, exit code, delay."""

    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int = 0
    delay: float = 0.0


@dataclass
class Command:
    command_id: str
    stdout: bytes
    stderr: bytes
    exit_code: int
    ready_at: float  # monotonic time from which output can be received
    stdout_sent: int = 0
    stderr_sent: int = 0
    awaiting_input: bool = False  # runs once its stdin is closed (Send End="true")
    stdin: bytearray = field(default_factory=bytearray)
    stdin_closed: bool = False

    def next_chunk(self, limit: int = RECEIVE_CHUNK_BYTES) -> StreamChunk:
        """The next slice of output; Done once everything has been handed out."""
        out = self.stdout[self.stdout_sent : self.stdout_sent + limit]
        err = self.stderr[self.stderr_sent : self.stderr_sent + max(0, limit - len(out))]
        self.stdout_sent += len(out)
        self.stderr_sent += len(err)
        done = self.stdout_sent >= len(self.stdout) and self.stderr_sent >= len(self.stderr)
        return StreamChunk(stdout=out, stderr=err, done=done, exit_code=self.exit_code)


@dataclass
class Shell:
    shell_id: str
    owner: str
    codepage: int
    commands: dict[str, Command] = field(default_factory=dict)


class ShellTable:
    """All shells of one endpoint. Every method is thread-safe (one condition variable)."""

    def __init__(
        self,
        changed: threading.Condition,
        *,
        max_shells_per_user: int = DEFAULT_MAX_SHELLS_PER_USER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._changed = changed
        self._shells: dict[str, Shell] = {}
        self.max_shells_per_user = max_shells_per_user
        self.clock = clock

    def create(self, owner: str, codepage: int) -> Shell:
        with self._changed:
            owned = sum(1 for s in self._shells.values() if s.owner.casefold() == owner.casefold())
            if owned >= self.max_shells_per_user:
                raise WsmanFault(quota_max_shells(self.max_shells_per_user))
            shell = Shell(shell_id=new_id(), owner=owner, codepage=codepage)
            self._shells[shell.shell_id] = shell
            return shell

    def get(self, shell_id: str, owner: str) -> Shell:
        with self._changed:
            shell = self._shells.get(shell_id.upper())
            if shell is None or shell.owner.casefold() != owner.casefold():
                raise WsmanFault(SHELL_NOT_FOUND, shell_not_found_detail(shell_id))
            return shell

    def delete(self, shell_id: str, owner: str) -> None:
        with self._changed:
            shell = self.get(shell_id, owner)
            del self._shells[shell.shell_id]
            shell.commands.clear()  # a Receive still waiting on one of them ends now
            self._changed.notify_all()

    def count(self) -> int:
        with self._changed:
            return len(self._shells)

    def start_command(
        self, shell: Shell, command_id: str, output: Output, *, awaiting_input: bool = False
    ) -> Command:
        with self._changed:
            command = Command(
                command_id=command_id,
                stdout=output.stdout,
                stderr=output.stderr,
                exit_code=output.exit_code,
                ready_at=math.inf if awaiting_input else self.clock() + max(0.0, output.delay),
                awaiting_input=awaiting_input,
            )
            shell.commands[command.command_id] = command
            return command

    def feed(self, shell: Shell, command_id: str, data: bytes, end: bool) -> bytes | None:
        """Append `data` to a command's stdin; with `end`, close it and return everything a
        command awaiting its input was sent (None otherwise: not complete, or not read)."""
        with self._changed:
            command = self.command(shell, command_id)
            if command.stdin_closed:
                raise WsmanFault(
                    INVALID_PARAMETER, f"The stdin of command {command_id} is already closed."
                )
            if command.awaiting_input:
                command.stdin.extend(data)
            if not end:
                return None
            command.stdin_closed = True
            return bytes(command.stdin) if command.awaiting_input else None

    def finish(self, shell: Shell, command_id: str, output: Output) -> None:
        """A command that awaited its input has run: its output becomes receivable."""
        with self._changed:
            command = shell.commands.get(command_id.upper())
            if command is None:  # terminated or its shell deleted meanwhile
                return
            command.stdout, command.stderr = output.stdout, output.stderr
            command.exit_code = output.exit_code
            command.stdin = bytearray()
            command.awaiting_input = False
            command.ready_at = self.clock() + max(0.0, output.delay)
            self._changed.notify_all()

    def command(self, shell: Shell, command_id: str) -> Command:
        with self._changed:
            command = shell.commands.get(command_id.upper())
            if command is None:
                raise WsmanFault(INVALID_PARAMETER, f"No command {command_id} in this shell.")
            return command

    def receive(
        self, shell: Shell, command_id: str, timeout: float, stopping: threading.Event
    ) -> StreamChunk | None:
        """The next output chunk, waiting up to `timeout` for the command to be ready.

        None when the wait timed out (the caller answers with the TimedOut fault) or the
        endpoint is stopping.
        """
        with self._changed:
            command = self.command(shell, command_id)
            deadline = self.clock() + timeout
            while not stopping.is_set() and command.command_id in shell.commands:
                now = self.clock()
                if now >= command.ready_at:
                    return command.next_chunk()
                if now >= deadline:
                    return None
                self._changed.wait(min(command.ready_at, deadline) - now)
            if command.command_id not in shell.commands:
                raise WsmanFault(INVALID_PARAMETER, f"No command {command_id} in this shell.")
            return None

    def interrupt(self, shell: Shell, command_id: str) -> None:
        """ctrl_c: the command ends now with STATUS_CONTROL_C_EXIT and no more output."""
        with self._changed:
            command = self.command(shell, command_id)
            command.stdout = command.stdout[: command.stdout_sent]
            command.stderr = command.stderr[: command.stderr_sent]
            command.exit_code = CTRL_C_EXIT
            command.awaiting_input, command.stdin_closed = False, True
            command.ready_at = min(command.ready_at, self.clock())
            self._changed.notify_all()

    def terminate(self, shell: Shell, command_id: str) -> None:
        """terminate: the command is closed and forgotten."""
        with self._changed:
            command = self.command(shell, command_id)
            del shell.commands[command.command_id]
            self._changed.notify_all()

    def clear(self) -> None:
        with self._changed:
            self._shells.clear()
            self._changed.notify_all()
