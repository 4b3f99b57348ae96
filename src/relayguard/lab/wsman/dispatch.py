"""The seam between the WinRM endpoint and what a twin *does*: payload handlers and ops.

Two levels, so the lab can plug in at either:

* ``PayloadHandler`` — what the endpoint calls for every PowerShell script it receives
  (decoded from ``-EncodedCommand``, read from a ``-File`` script, or ``-Command`` text):
  ``handler(script_text, CommandContext) -> CommandResult`` (stdout, stderr, exit code, and a
  delay that keeps the command "Running" — a service restart that takes time).
* ``PayloadDispatcher`` — the generic part of payload protocol v1 as a PayloadHandler: it reads
  the ``# relayguard-payload: <op> v1`` header and ``$RelayguardParams``, runs the built-in
  file ops (``file.append_chunk``, ``file.receive``, ``file.exec``, ``file.run``,
  ``file.remove``) over the twin's scratch directory (``file.receive`` and ``file.exec``
  read the command's standard input, ``reads_stdin``), and hands every other op to the
  handler registered for it in an ``OpRegistry``:
  ``handler(params, twin) -> JSON document | OpResult``, or ``raise OpError(...)``.
  The document is printed as one compact JSON document on stdout (exit 0); an OpError becomes
  a PowerShell-style terminating error on stderr with its exit code. A script without a known
  header fails as Windows would fail to run it ("The term '…' is not recognized …", exit 1).

Handler calls of one dispatcher are serialised (one lock), so op handlers may read-modify-write
their twin's state without locking of their own; delays do not hold the lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

from relayguard.lab.wsman import fileops, pserror
from relayguard.lab.wsman.payload import (
    OP_NAME,
    PROTOCOL_VERSION,
    PayloadError,
    parse_header,
    parse_payload,
)
from relayguard.lab.wsman.scratch import ScratchStore

log = logging.getLogger(__name__)

TwinT = TypeVar("TwinT")

# A file.run script may itself be file.run; real PowerShell would recurse, the twin stops here.
MAX_FILE_RUN_DEPTH = 4


class ScriptSource(StrEnum):
    """How a script reached PowerShell (it changes how errors are located and shipped)."""

    ENCODED_COMMAND = "encodedcommand"  # powershell -EncodedCommand (pywinrm run_ps)
    COMMAND = "command"  # powershell -Command <text>
    FILE = "file"  # powershell -File <path>


@dataclass(frozen=True)
class CommandContext:
    """Who runs a script, where, and how it arrived."""

    twin: str  # the twin's name (for messages and logs)
    hostname: str  # the host name the twin presents
    username: str  # authenticated principal, e.g. "LAB\\relayguard" or "relayguard"
    client_address: str
    shell_id: str
    command_id: str
    scratch: ScratchStore
    source: ScriptSource = ScriptSource.ENCODED_COMMAND
    script_path: str | None = None  # the Windows path for ScriptSource.FILE
    stdin: bytes | None = None  # what the client sent on stdin (Send), for ops that read it

    @property
    def location(self) -> str:
        """What PowerShell prints after "At " in an error record."""
        return self.script_path if self.script_path else "line"


@dataclass(frozen=True)
class CommandResult:
    """What a command leaves behind: its streams, exit code and how long it runs first."""

    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0
    delay_seconds: float = 0.0


class PayloadHandler(Protocol):
    """Runs one PowerShell script for the endpoint."""

    def __call__(self, script: str, context: CommandContext) -> CommandResult: ...


JsonDocument: TypeAlias = Mapping[str, Any] | list[Any]


@dataclass(frozen=True)
class OpResult:
    """An op's document plus how long the operation takes (e.g. a service restart)."""

    document: JsonDocument
    delay_seconds: float = 0.0


class OpError(Exception):
    """An op failed as the real script would: a message on stderr and a non-zero exit."""

    def __init__(
        self,
        message: str,
        *,
        exit_code: int = 1,
        delay_seconds: float = 0.0,
        error_id: str | None = None,
    ) -> None:
        super().__init__(message)
        if exit_code == 0:
            raise ValueError("an OpError needs a non-zero exit code")
        self.message = message
        self.exit_code = exit_code
        self.delay_seconds = delay_seconds
        self.error_id = error_id


OpOutput: TypeAlias = JsonDocument | OpResult
OpHandler: TypeAlias = Callable[[dict[str, Any], TwinT], OpOutput]

RESERVED_OPS = frozenset(
    {"file.append_chunk", "file.receive", "file.exec", "file.run", "file.remove"}
)


STDIN_OPS = frozenset({"file.receive", "file.exec"})


def reads_stdin(script: str) -> bool:
    """Whether the script reads its standard input to the end before it answers, so the
    command runs once the client closes stdin (``file.receive``, ``file.exec``)."""
    header = parse_header(script)
    return header is not None and header.op in STDIN_OPS


class OpRegistry(Generic[TwinT]):
    """Op name → handler. One registry can serve every twin of a kind."""

    def __init__(self) -> None:
        self._handlers: dict[str, OpHandler[TwinT]] = {}

    def register(self, op: str, handler: OpHandler[TwinT]) -> None:
        if not OP_NAME.match(op):
            raise ValueError(f"invalid op name {op!r} (expected e.g. 'exchange.detect')")
        if op in RESERVED_OPS:
            raise ValueError(f"op {op!r} is built into the dispatcher")
        if op in self._handlers:
            raise ValueError(f"op {op!r} is already registered")
        self._handlers[op] = handler

    def handler(self, op: str) -> OpHandler[TwinT] | None:
        return self._handlers.get(op)

    @property
    def ops(self) -> frozenset[str]:
        return frozenset(self._handlers) | RESERVED_OPS


def json_stdout(document: JsonDocument) -> str:
    """One compact JSON document and the newline PowerShell's output adds."""
    plain = dict(document) if isinstance(document, Mapping) else document
    return json.dumps(plain, separators=(",", ":"), ensure_ascii=False, allow_nan=False) + (
        pserror.CRLF
    )


def op_failure(error: OpError) -> CommandResult:
    return CommandResult(
        stderr=pserror.thrown_error(error.message, error.error_id),
        exit_code=error.exit_code,
        delay_seconds=error.delay_seconds,
    )


def not_recognized(script: str, context: CommandContext) -> CommandResult:
    return CommandResult(stderr=pserror.command_not_found(script, context.location), exit_code=1)


class PayloadDispatcher(Generic[TwinT]):
    """Payload protocol v1 as a PayloadHandler, over an op registry and one twin."""

    def __init__(self, registry: OpRegistry[TwinT], twin: TwinT) -> None:
        self.registry = registry
        self.twin = twin
        self._lock = threading.Lock()

    def __call__(self, script: str, context: CommandContext) -> CommandResult:
        return self._run(script, context, depth=0)

    def _run(self, script: str, context: CommandContext, depth: int) -> CommandResult:
        header = parse_header(script)
        if header is None or header.version != PROTOCOL_VERSION:
            return not_recognized(script, context)
        is_builtin = header.op in RESERVED_OPS
        handler = self.registry.handler(header.op)
        if handler is None and not is_builtin:
            log.info("twin %s: no handler for op %s", context.twin, header.op)
            return not_recognized(script, context)
        try:
            payload = parse_payload(script, header)
        except PayloadError as exc:
            return CommandResult(stderr=exc.stderr, exit_code=1)
        if is_builtin:
            return self._file_op(payload.op, payload.params, context, depth)
        assert handler is not None
        return self._call(payload.op, handler, payload.params, context)

    def _file_op(
        self, op: str, params: dict[str, Any], context: CommandContext, depth: int
    ) -> CommandResult:
        try:
            if op == "file.append_chunk":
                return CommandResult(
                    stdout=json_stdout(fileops.append_chunk(params, context.scratch))
                )
            if op == "file.remove":
                return CommandResult(stdout=json_stdout(fileops.remove(params, context.scratch)))
            if op == "file.receive":
                document = fileops.receive(params, context.stdin, context.scratch)
                return CommandResult(stdout=json_stdout(document))
            path = fileops.path_param(params)
            if depth >= MAX_FILE_RUN_DEPTH:
                raise fileops.FileOpError(
                    f"relayguard twin: file.run nested deeper than {MAX_FILE_RUN_DEPTH} levels"
                )
            if op == "file.exec":
                fileops.receive_script(params, context.stdin, context.scratch)
            else:
                fileops.unpack(params, context.scratch)
        except fileops.FileOpError as exc:
            return op_failure(OpError(str(exc)))
        try:
            try:
                script = fileops.load_script_file(path, context.scratch)
            except fileops.ScriptFileError as exc:
                return CommandResult(stderr=exc.stderr, exit_code=exc.exit_code)
            inner = dataclasses.replace(
                context, source=ScriptSource.FILE, script_path=path, stdin=None
            )
            return self._run(script, inner, depth + 1)
        finally:
            if op == "file.exec":  # the template's finally: the script file goes
                with contextlib.suppress(fileops.FileOpError):
                    fileops.remove({"path": path}, context.scratch)

    def _call(
        self,
        op: str,
        handler: OpHandler[TwinT],
        params: dict[str, Any],
        context: CommandContext,
    ) -> CommandResult:
        try:
            with self._lock:
                output = handler(params, self.twin)
            result = output if isinstance(output, OpResult) else OpResult(output)
            stdout = json_stdout(result.document)
        except OpError as exc:
            log.info("twin %s: op %s failed (exit %d)", context.twin, op, exc.exit_code)
            return op_failure(exc)
        except Exception as exc:  # a bug in an op handler: say so, do not crash the endpoint
            log.exception("twin %s: op %s raised", context.twin, op)
            return op_failure(
                OpError(f"relayguard twin: op '{op}' failed inside the twin ({type(exc).__name__})")
            )
        log.debug("twin %s: op %s ok", context.twin, op)
        return CommandResult(stdout=stdout, delay_seconds=result.delay_seconds)
