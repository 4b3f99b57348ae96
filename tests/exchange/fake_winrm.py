"""A fake pywinrm Protocol for transport unit tests: no network, scripted answers.

It decodes each `powershell -encodedcommand` command back into the script, checks the
command-line limit, and acts out the generic payload ops (file.append_chunk, file.run,
file.remove) on an in-memory file system; any other script gets the scripted answer.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable
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

    def protocol(self, _options: object) -> FakeProtocol:
        return FakeProtocol(self)

    def execute(self, script: str) -> Answer:
        self.scripts.append(script)
        op = payloads.script_op(script)
        if op in {"file.append_chunk", "file.run", "file.remove"}:
            params = payloads.decode_params(script)
            path = params["path"]
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
                return self.execute(text)
            if self.fail_remove:
                return b"", b"Access to the path is denied.", 1
            existed = self.files.pop(path, None) is not None
            return json.dumps({"path": path, "removed": existed}).encode(), b"", 0
        return self.answer(script)


class FakeProtocol:
    def __init__(self, host: FakeHost) -> None:
        self.host = host
        self._results: dict[str, Answer] = {}

    def open_shell(self) -> str:
        if self.host.open_errors:
            raise self.host.open_errors.pop(0)
        self.host.shells_opened += 1
        return f"shell-{self.host.shells_opened}"

    def run_command(self, shell_id: str, command: str) -> str:
        self.host.longest_command = max(self.host.longest_command, len(command))
        assert len(command) <= MAX_COMMAND_CHARS, len(command)
        if self.host.run_error is not None:
            raise self.host.run_error
        command_id = f"cmd-{len(self.host.scripts)}"
        self._results[command_id] = self.host.execute(decode_command(command))
        return command_id

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
