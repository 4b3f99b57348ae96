"""The Windows Remote Shell service of a twin: one WS-Management request in, one response out.

Implements the shell lifecycle pywinrm drives ([MS-WSMV] 3.1.4): Create (a cmd shell) →
Command (a command line, run at once; its output waits ``delay`` seconds) → Send (stdin,
3.1.4.13: a script that reads its standard input runs once the stream is closed with
``End="true"``; to any other command the input is taken and ignored) → Receive (output in
chunks, CommandState Running/Done, the exit code) → Signal (terminate, ctrl_c) → Delete.
Anything else is answered with the SOAP fault Windows sends (``faults.py``). No HTTP here:
the server authenticates the caller and hands over the parsed request.

Output bytes are encoded in the shell's code page (pywinrm asks for 437, the OEM code page,
as Windows consoles use), so characters outside it arrive as ``?`` — as from a real host.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import dataclasses
import logging
import threading
from dataclasses import dataclass

from relayguard.lab.wsman import pserror
from relayguard.lab.wsman.cmdline import (
    Builtin,
    Refused,
    RunFile,
    RunScript,
    parse_command_line,
)
from relayguard.lab.wsman.dispatch import (
    CommandContext,
    CommandResult,
    PayloadHandler,
    ScriptSource,
    reads_stdin,
)
from relayguard.lab.wsman.faults import (
    ACTION_NOT_SUPPORTED,
    INVALID_PARAMETER,
    MISSING_SHELL_SELECTOR,
    OPERATION_TIMED_OUT,
    RESOURCE_NOT_FOUND,
    SCHEMA_VALIDATION,
    WsmanFault,
)
from relayguard.lab.wsman.fileops import ScriptFileError, load_script_file
from relayguard.lab.wsman.injection import FaultKind, FaultPlan
from relayguard.lab.wsman.payload import parse_header
from relayguard.lab.wsman.scratch import ScratchStore
from relayguard.lab.wsman.shells import Output, Shell, ShellTable, new_id
from relayguard.lab.wsman.soap import (
    ACTION_COMMAND,
    ACTION_CREATE,
    ACTION_DELETE,
    ACTION_RECEIVE,
    ACTION_SEND,
    ACTION_SIGNAL,
    RESOURCE_CMD_SHELL,
    SIGNAL_CTRL_C,
    SIGNAL_TERMINATE,
    WsmanRequest,
    command_response,
    create_response,
    delete_response,
    is_shell_element,
    receive_response,
    send_response,
    shell_child_text,
    signal_response,
)

log = logging.getLogger(__name__)

DEFAULT_OPERATION_TIMEOUT = 60.0  # WinRM MaxTimeoutms default: 60000

# A command line after resolution: a -File script has been loaded (or refused).
Resolved = RunScript | Builtin | Refused


class EndpointStopping(Exception):
    """The endpoint is shutting down; the request gets no answer."""


@dataclass(frozen=True)
class Caller:
    principal: str
    client_address: str


def encoded(result: CommandResult, codec: str) -> Output:
    """A command's result as the bytes a Receive hands out, in the shell's code page."""
    return Output(
        stdout=result.stdout.encode(codec, errors="replace"),
        stderr=result.stderr.encode(codec, errors="replace"),
        exit_code=result.exit_code,
        delay=result.delay_seconds,
    )


def output_codec(codepage: int) -> str:
    """The Python codec for a WINRS_CODEPAGE value (437 when unknown)."""
    name = "utf-8" if codepage == 65001 else f"cp{codepage}"
    try:
        codecs.lookup(name)
    except LookupError:
        return "cp437"
    return name


class WsmanService:
    def __init__(
        self,
        *,
        twin: str,
        hostname: str,
        endpoint_url: str,
        handler: PayloadHandler,
        scratch: ScratchStore,
        shells: ShellTable,
        faults: FaultPlan,
        stopping: threading.Event,
        max_operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
    ) -> None:
        self.twin = twin
        self.hostname = hostname
        self.endpoint_url = endpoint_url
        self.handler = handler
        self.scratch = scratch
        self.shells = shells
        self.faults = faults
        self.stopping = stopping
        self.max_operation_timeout = max_operation_timeout
        # commands awaiting their stdin: what runs once it is closed
        self._pending: dict[str, tuple[Resolved, CommandContext]] = {}

    # ------------------------------------------------------------------ dispatch

    def handle(self, request: WsmanRequest, caller: Caller) -> bytes:
        """The response envelope; raises WsmanFault or EndpointStopping."""
        if request.resource_uri.lower() != RESOURCE_CMD_SHELL:
            raise WsmanFault(RESOURCE_NOT_FOUND)
        if request.action == ACTION_CREATE:
            return self._create(request, caller)
        actions = {
            ACTION_COMMAND: self._command,
            ACTION_RECEIVE: self._receive,
            ACTION_SEND: self._send,
            ACTION_SIGNAL: self._signal,
            ACTION_DELETE: self._delete,
        }
        action = actions.get(request.action)
        if action is None:
            raise WsmanFault(ACTION_NOT_SUPPORTED)
        shell_id = request.selectors.get("ShellId")
        if not shell_id:
            raise WsmanFault(
                MISSING_SHELL_SELECTOR,
                "The Windows Remote Shell cannot process the request because it requires the "
                "following selector: ShellId.",
            )
        shell = self.shells.get(shell_id, caller.principal)
        return action(request, caller, shell)

    def command_op(self, request: WsmanRequest) -> str | None:
        """The payload op a Command request would run, or the Send request that closes a
        command's stdin would (for fault matching), if any."""
        if request.action == ACTION_SEND and request.body is not None:
            for stream in request.body:
                if stream.get("End", "").strip().lower() == "true":
                    pending = self._pending.get(stream.get("CommandId", "").upper())
                    if pending is not None:
                        return _payload_op(pending[0])
            return None
        if request.action != ACTION_COMMAND:
            return None
        return _payload_op(self._invocation(request))

    # ------------------------------------------------------------------ actions

    def _create(self, request: WsmanRequest, caller: Caller) -> bytes:
        if not is_shell_element(request.body, "Shell"):
            raise WsmanFault(SCHEMA_VALIDATION)
        try:
            codepage = int(request.options.get("WINRS_CODEPAGE", "437"))
        except ValueError:
            codepage = 437
        shell = self.shells.create(caller.principal, codepage)
        log.debug("twin %s: shell %s created for %s", self.twin, shell.shell_id, caller.principal)
        return create_response(
            request.message_id,
            self.endpoint_url,
            shell.shell_id,
            caller.principal,
            caller.client_address,
        )

    def _invocation(self, request: WsmanRequest) -> Resolved:
        """What the Command runs, with a -File script already loaded from the scratch store."""
        if not is_shell_element(request.body, "CommandLine"):
            raise WsmanFault(SCHEMA_VALIDATION)
        command = shell_child_text(request.body, "Command") or ""
        arguments = shell_child_text(request.body, "Arguments") or ""
        skip_cmd = request.options.get("WINRS_SKIP_CMD_SHELL", "FALSE").upper() == "TRUE"
        invocation = parse_command_line(command, arguments, skip_cmd_shell=skip_cmd)
        if not isinstance(invocation, RunFile):
            return invocation
        try:
            script = load_script_file(invocation.path, self.scratch)
        except ScriptFileError as exc:
            return Refused(stderr=exc.stderr, exit_code=exc.exit_code)
        return RunScript(script, ScriptSource.FILE, invocation.path)

    def _command(self, request: WsmanRequest, caller: Caller, shell: Shell) -> bytes:
        invocation = self._invocation(request)
        command_id = new_id()
        context = CommandContext(
            twin=self.twin,
            hostname=self.hostname,
            username=caller.principal,
            client_address=caller.client_address,
            shell_id=shell.shell_id,
            command_id=command_id,
            scratch=self.scratch,
        )
        op = _payload_op(invocation)
        injected = self.faults.take(frozenset({FaultKind.FAIL_COMMAND}), "Command", op)
        codec = output_codec(shell.codepage)
        awaits = isinstance(invocation, RunScript) and reads_stdin(invocation.script)
        if injected is None and awaits:
            # Runs once the client closes its stdin (Send End="true"), as a process blocked
            # reading standard input would; the Send that closes it runs it.
            command = self.shells.start_command(shell, command_id, Output(), awaiting_input=True)
            self._pending[command.command_id] = (invocation, context)
            log.debug("twin %s: command %s op=%s awaits stdin", self.twin, command_id, op)
            return command_response(request.message_id, command_id)
        if injected is not None:
            result = CommandResult(
                stderr=pserror.thrown_error(injected.message), exit_code=injected.exit_code
            )
        else:
            result = self._execute(invocation, context)
        self.shells.start_command(shell, command_id, encoded(result, codec))
        log.debug(
            "twin %s: command %s op=%s exit=%d delay=%.1fs",
            self.twin,
            command_id,
            op,
            result.exit_code,
            result.delay_seconds,
        )
        return command_response(request.message_id, command_id)

    def _send(self, request: WsmanRequest, caller: Caller, shell: Shell) -> bytes:
        """Stdin for a command ([MS-WSMV] 3.1.4.13, 3.1.4.1.31.1: base64 rsp:Stream
        elements named stdin, each naming its CommandId; End="true" closes the stream)."""
        if not is_shell_element(request.body, "Send") or request.body is None:
            raise WsmanFault(SCHEMA_VALIDATION)
        streams = list(request.body)
        if not streams:
            raise WsmanFault(SCHEMA_VALIDATION)
        for stream in streams:
            if not is_shell_element(stream, "Stream") or stream.get("Name") != "stdin":
                raise WsmanFault(INVALID_PARAMETER, "The Send request names no stdin stream.")
            command_id = stream.get("CommandId", "")
            if not command_id:
                raise WsmanFault(INVALID_PARAMETER, "The Send request names no CommandId.")
            try:
                data = base64.b64decode((stream.text or "").strip(), validate=True)
            except binascii.Error:
                raise WsmanFault(SCHEMA_VALIDATION) from None
            end = stream.get("End", "false").strip().lower() == "true"
            stdin = self.shells.feed(shell, command_id, data, end)
            if stdin is not None:
                self._run_with_input(shell, command_id.upper(), stdin)
        return send_response(request.message_id)

    def _run_with_input(self, shell: Shell, command_id: str, stdin: bytes) -> None:
        pending = self._pending.pop(command_id, None)
        if pending is None:
            return
        invocation, context = pending
        result = self._execute(invocation, dataclasses.replace(context, stdin=stdin))
        self.shells.finish(shell, command_id, encoded(result, output_codec(shell.codepage)))
        log.debug("twin %s: command %s ran on its stdin", self.twin, command_id)

    def _receive(self, request: WsmanRequest, caller: Caller, shell: Shell) -> bytes:
        if not is_shell_element(request.body, "Receive") or request.body is None:
            raise WsmanFault(SCHEMA_VALIDATION)
        stream = next(iter(request.body), None)
        command_id = stream.get("CommandId", "") if stream is not None else ""
        if not command_id:
            raise WsmanFault(INVALID_PARAMETER, "The Receive request names no CommandId.")
        timeout = min(
            request.operation_timeout or DEFAULT_OPERATION_TIMEOUT, self.max_operation_timeout
        )
        chunk = self.shells.receive(shell, command_id, timeout, self.stopping)
        if self.stopping.is_set():
            raise EndpointStopping
        if chunk is None:
            raise WsmanFault(OPERATION_TIMED_OUT)
        return receive_response(request.message_id, command_id.upper(), chunk)

    def _signal(self, request: WsmanRequest, caller: Caller, shell: Shell) -> bytes:
        if not is_shell_element(request.body, "Signal") or request.body is None:
            raise WsmanFault(SCHEMA_VALIDATION)
        command_id = request.body.get("CommandId", "")
        code = (shell_child_text(request.body, "Code") or "").strip()
        if code == SIGNAL_TERMINATE:
            self.shells.terminate(shell, command_id)
            self._pending.pop(command_id.upper(), None)
        elif code == SIGNAL_CTRL_C:
            self.shells.interrupt(shell, command_id)
        else:
            raise WsmanFault(INVALID_PARAMETER, f"Unsupported signal code {code!r}.")
        return signal_response(request.message_id)

    def _delete(self, request: WsmanRequest, caller: Caller, shell: Shell) -> bytes:
        self.shells.delete(shell.shell_id, caller.principal)
        return delete_response(request.message_id)

    # ------------------------------------------------------------------ running

    def _execute(self, invocation: Resolved, context: CommandContext) -> CommandResult:
        if isinstance(invocation, Refused):
            return CommandResult(
                stdout=invocation.stdout, stderr=invocation.stderr, exit_code=invocation.exit_code
            )
        if isinstance(invocation, Builtin):
            return CommandResult(stdout=self._builtin(invocation, context) + pserror.CRLF)
        context = dataclasses.replace(
            context, source=invocation.source, script_path=invocation.path
        )
        result = self._run_handler(invocation.script, context)
        if invocation.source is ScriptSource.ENCODED_COMMAND and result.stderr:
            # powershell.exe -EncodedCommand writes its error stream as CLIXML.
            return dataclasses.replace(result, stderr=pserror.clixml(result.stderr))
        return result

    def _run_handler(self, script: str, context: CommandContext) -> CommandResult:
        try:
            return self.handler(script, context)
        except Exception as exc:  # a bug in the lab's handler must not take the endpoint down
            log.exception("twin %s: payload handler raised", self.twin)
            return CommandResult(
                stderr=pserror.thrown_error(
                    f"relayguard twin: the payload handler failed ({type(exc).__name__})"
                ),
                exit_code=1,
            )

    def _builtin(self, builtin: Builtin, context: CommandContext) -> str:
        if builtin.name == "hostname":
            return self.hostname
        if builtin.name == "whoami":
            domain, _, user = context.username.rpartition("\\")
            return f"{domain or self.hostname}\\{user}".lower()
        return builtin.argument or "ECHO is on."


def _payload_op(invocation: Resolved) -> str | None:
    if not isinstance(invocation, RunScript):
        return None
    header = parse_header(invocation.script)
    return header.op if header else None
