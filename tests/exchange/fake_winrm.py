"""A fake pywinrm Protocol for transport unit tests: no network, scripted answers.

It decodes each `powershell -encodedcommand` command back into the script, checks the
command-line limit, and acts out the generic payload ops (file.append_chunk, file.receive and
file.exec — their data on stdin, sent with send_command_input —, file.run, file.remove) on an
in-memory file system; any other script gets the scripted answer.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from relayguard.exchange import payloads
from relayguard.exchange.transport import MAX_COMMAND_CHARS, POWERSHELL_PREFIX

Answer = tuple[bytes, bytes, int]


def decode_command(command: str) -> str:
    assert command.startswith(POWERSHELL_PREFIX), command[:40]
    return base64.b64decode(command[len(POWERSHELL_PREFIX) :]).decode("utf-16-le")


@dataclass
class FakeHost:
    """State shared by every protocol object the client builds for one host."""

    answer: Callable[[str], Answer] = lambda script: (b'{"ok":true}', b"", 0)
    files: dict[str, bytes] = field(default_factory=dict)
    scripts: list[str] = field(default_factory=list)  # every script run, in order
    ran_files: list[str] = field(default_factory=list)
    shells_opened: int = 0
    shells_closed: int = 0
    longest_command: int = 0
    open_errors: list[BaseException] = field(default_factory=list)
    run_error: BaseException | None = None
    receive_errors: list[BaseException] = field(default_factory=list)
    fail_remove: bool = False
    corrupt_append: bool = False
    sends: list[int] = field(default_factory=list)  # the size of every Send's stdin
    send_errors: list[BaseException] = field(default_factory=list)

    def protocol(self, _options: object) -> FakeProtocol:
        return FakeProtocol(self)

    def execute(self, script: str, stdin: bytes = b"") -> Answer:
        self.scripts.append(script)
        op = payloads.script_op(script)
        if op in {"file.append_chunk", "file.receive", "file.exec", "file.run", "file.remove"}:
            params = payloads.decode_params(script)
            path = params["path"]
            if op == "file.exec":
                packed = b"".join(base64.b64decode(line) for line in stdin.split())
                if self.corrupt_append:
                    packed += b"x"
                digest = hashlib.sha256(packed).hexdigest().upper()
                if (digest, len(packed)) != (params["sha256"], params["length"]):
                    return b"", b"relayguard: the script arrived as something else", 1
                self.ran_files.append(path)
                text = gzip.decompress(packed).removeprefix(b"\xef\xbb\xbf").decode("utf-8")
                return self.execute(text)  # the file is removed whatever happens
            if op == "file.receive":
                data = b"".join(base64.b64decode(line) for line in stdin.split())
                if self.corrupt_append:
                    data += b"x"
                self.files[path] = data
                digest = hashlib.sha256(data).hexdigest().upper()
                body = {"path": path, "length": len(data), "sha256": digest}
                return json.dumps(body).encode(), b"", 0
            if op == "file.append_chunk":
                chunk = base64.b64decode(params["chunk_b64"])
                self.files[path] = self.files.get(path, b"") + chunk
                length = len(self.files[path]) + (1 if self.corrupt_append else 0)
                body = {"path": path, "appended": len(chunk), "length": length}
                return json.dumps(body).encode(), b"", 0
            if op == "file.run":
                if params.get("unpack_from"):  # gunzip into path, the packed file removed
                    self.files[path] = gzip.decompress(self.files.pop(params["unpack_from"]))
                self.ran_files.append(path)
                text = self.files[path].removeprefix(b"\xef\xbb\xbf").decode("utf-8")
                answer = self.execute(text)
                if params.get("remove"):
                    self.files.pop(path, None)
                return answer
            if self.fail_remove:
                return b"", b"Access to the path is denied.", 1
            existed = self.files.pop(path, None) is not None
            return json.dumps({"path": path, "removed": existed}).encode(), b"", 0
        return self.answer(script)


class FakeProtocol:
    def __init__(self, host: FakeHost) -> None:
        self.host = host
        self._results: dict[str, Answer] = {}
        self._pending: dict[str, tuple[str, bytearray]] = {}

    def open_shell(self) -> str:
        if self.host.open_errors:
            raise self.host.open_errors.pop(0)
        self.host.shells_opened += 1
        return f"shell-{self.host.shells_opened}"

    def run_command(
        self,
        shell_id: str,
        command: str,
        arguments: Iterable[str] = (),
        console_mode_stdin: bool = True,
    ) -> str:
        self.host.longest_command = max(self.host.longest_command, len(command))
        assert len(command) <= MAX_COMMAND_CHARS, len(command)
        if self.host.run_error is not None:
            raise self.host.run_error
        script = decode_command(command)
        command_id = f"cmd-{len(self.host.scripts)}-{len(self._pending)}"
        if payloads.script_op(script) in {"file.receive", "file.exec"}:
            assert not console_mode_stdin  # stdin is a pipe, as pywinrm sends it for input
            self._pending[command_id] = (script, bytearray())
        else:
            self._results[command_id] = self.host.execute(script)
        return command_id

    def send_command_input(
        self, shell_id: str, command_id: str, stdin_input: bytes, end: bool = False
    ) -> None:
        if self.host.send_errors:
            raise self.host.send_errors.pop(0)
        self.host.sends.append(len(stdin_input))
        script, received = self._pending[command_id]
        received.extend(stdin_input)
        if end:
            del self._pending[command_id]
            self._results[command_id] = self.host.execute(script, bytes(received))

    def get_command_output_raw(
        self, shell_id: str, command_id: str
    ) -> tuple[bytes, bytes, int, bool]:
        if self.host.receive_errors:
            raise self.host.receive_errors.pop(0)
        out, err, code = self._results.pop(command_id)
        return out, err, code, True

    def cleanup_command(self, shell_id: str, command_id: str) -> None:
        return None

    def close_shell(self, shell_id: str) -> None:
        self.host.shells_closed += 1
