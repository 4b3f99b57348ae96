"""The built-in file ops of payload protocol v1, and loading a ``-File`` script.

``file.append_chunk`` ({"path", "chunk_b64"}) appends decoded bytes to a file,
``file.receive`` ({"path", "sha256", "length"}) writes a new file from the command's standard
input (base64 lines, sent with WS-Man Send) and checks its length and SHA-256,
``file.exec`` ({"path", "sha256", "length"}) gets a gzip-compressed script on its standard
input, checks it, unpacks it into ``path`` (a new file), runs it as ``file.run`` does and
removes it, ``file.remove`` ({"path"}) deletes a file, and ``file.run`` ({"path"}, optionally
``unpack_from``: a gzip file to unpack into ``path`` first, then removed) runs it the way
``powershell -NoProfile -File <path>`` would — the dispatcher does the running; this module
loads the script the way powershell.exe does, with its refusals: a path without the ``.ps1``
extension, or a file that does not exist, stops powershell.exe before any script runs (exit
code -196608).

What the file ops print (one JSON document) is the twin's side of the contract:
append → ``{"path": <path>, "length": <bytes now in the file>}``,
receive → ``{"path": <path>, "length": <bytes>, "sha256": <upper-case hex>}``,
remove → ``{"path": <path>, "removed": true|false}``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import hashlib
import zlib
from typing import Any

from relayguard.lab.wsman import pserror
from relayguard.lab.wsman.scratch import (
    ScratchError,
    ScratchStore,
    decode_script_file,
    normalize_windows_path,
    windows_extension,
)


class FileOpError(Exception):
    """A file op failed; the message is what the script reports on stderr."""


class ScriptFileError(Exception):
    """powershell.exe refused to run a -File script; stderr text and exit code as it reports."""

    def __init__(self, stderr: str, exit_code: int = pserror.CLI_ERROR_EXIT) -> None:
        super().__init__(stderr.splitlines()[0] if stderr else "script file error")
        self.stderr = stderr
        self.exit_code = exit_code


def path_param(params: dict[str, Any]) -> str:
    path = params.get("path")
    if not isinstance(path, str) or not path:
        raise FileOpError("relayguard twin: parameter 'path' must be a non-empty string")
    return path


def append_chunk(params: dict[str, Any], scratch: ScratchStore) -> dict[str, Any]:
    path = path_param(params)
    chunk = params.get("chunk_b64")
    if not isinstance(chunk, str):
        raise FileOpError("relayguard twin: parameter 'chunk_b64' must be a string")
    try:
        data = base64.b64decode(chunk, validate=True)
    except binascii.Error:
        raise FileOpError(_BASE64_FAILURE) from None
    try:
        length = scratch.append(path, data)
    except ScratchError as exc:
        raise FileOpError(str(exc)) from None
    return {"path": path, "length": length}


_BASE64_FAILURE = (
    'Exception calling "FromBase64String" with "1" argument(s): "The input is not a '
    "valid Base-64 string as it contains a non-base 64 character, more than two padding "
    'characters, or an illegal character among the padding characters. "'
)


def _expected(params: dict[str, Any], op: str) -> tuple[str, int]:
    digest, length = params.get("sha256"), params.get("length")
    if not isinstance(digest, str) or not isinstance(length, int) or isinstance(length, bool):
        raise FileOpError(f"relayguard twin: {op} needs 'sha256' (a string) and 'length'")
    return digest.upper(), length


def receive_into(
    path: str, expected: tuple[str, int], stdin: bytes | None, scratch: ScratchStore
) -> dict[str, Any]:
    """What file.receive's script does with its standard input: a new file (FileMode
    CreateNew: an existing one is an error) from the base64 lines, its length and SHA-256
    checked; on any failure the file is removed."""
    if scratch.exists(path):
        raise FileOpError(
            f'Exception calling "Open" with "4" argument(s): "The file \'{path}\' already exists."'
        )
    digest = hashlib.sha256()
    length = 0
    try:
        for line in (stdin or b"").decode("ascii", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                data = base64.b64decode(line.strip(), validate=True)
            except binascii.Error:
                raise FileOpError(_BASE64_FAILURE) from None
            digest.update(data)
            length = scratch.append(path, data)
        if length == 0:
            scratch.append(path, b"")
        held = (digest.hexdigest().upper(), length)
        if held != expected:
            raise FileOpError(
                f"The upload to '{path}' holds {held[1]} bytes with SHA-256 {held[0]}, not the "
                f"{expected[1]} bytes with SHA-256 {expected[0]} that were sent; removed."
            )
    except ScratchError as exc:
        with contextlib.suppress(ScratchError):
            scratch.remove(path)
        raise FileOpError(str(exc)) from None
    except FileOpError:
        with contextlib.suppress(ScratchError):
            scratch.remove(path)
        raise
    return {"path": path, "length": length, "sha256": held[0]}


def receive(params: dict[str, Any], stdin: bytes | None, scratch: ScratchStore) -> dict[str, Any]:
    return receive_into(path_param(params), _expected(params, "file.receive"), stdin, scratch)


def receive_script(params: dict[str, Any], stdin: bytes | None, scratch: ScratchStore) -> None:
    """What file.exec does before it runs anything: the gzip bytes of the base64 lines on its
    stdin checked (length, SHA-256), unpacked into a new file at ``path``."""
    path = path_param(params)
    want = _expected(params, "file.exec")
    try:
        packed = b"".join(
            base64.b64decode(line.strip(), validate=True)
            for line in (stdin or b"").decode("ascii", errors="replace").splitlines()
            if line.strip()
        )
    except binascii.Error:
        raise FileOpError(_BASE64_FAILURE) from None
    got = (hashlib.sha256(packed).hexdigest().upper(), len(packed))
    if got != want:
        raise FileOpError(
            f"relayguard: the script arrived as {got[0]}/{got[1]} (SHA-256/bytes), "
            f"not {want[0]}/{want[1]}"
        )
    if scratch.exists(path):
        raise FileOpError(
            f'Exception calling "Open" with "4" argument(s): "The file \'{path}\' already exists."'
        )
    try:
        scratch.append(path, _gunzip(packed))
    except ScratchError as exc:
        raise FileOpError(str(exc)) from None


def remove(params: dict[str, Any], scratch: ScratchStore) -> dict[str, Any]:
    path = path_param(params)
    try:
        removed = scratch.remove(path)
    except ScratchError as exc:
        raise FileOpError(str(exc)) from None
    return {"path": path, "removed": removed}


def unpack(params: dict[str, Any], scratch: ScratchStore) -> None:
    """file.run's ``unpack_from``: gunzip that file into ``path``; the packed file is removed
    whatever happens, as the template's ``finally`` does."""
    packed = params.get("unpack_from")
    if packed in (None, ""):
        return
    if not isinstance(packed, str):
        raise FileOpError("relayguard twin: parameter 'unpack_from' must be a string")
    path = path_param(params)
    try:
        data = _gunzip(scratch.read(packed))
        scratch.remove(path)
        scratch.append(path, data)
    except ScratchError as exc:
        raise FileOpError(str(exc)) from None
    finally:
        with contextlib.suppress(ScratchError):
            scratch.remove(packed)


def load_script_file(path: str, scratch: ScratchStore) -> str:
    """The text of the script `powershell -File <path>` would run; raises ScriptFileError."""
    if windows_extension(path) != ".ps1":
        raise ScriptFileError(
            f"Processing -File '{path}' failed because the file does not have a '.ps1' "
            "extension. Specify a valid Windows PowerShell script file name, and then try "
            f"again.{pserror.CRLF}"
        )
    try:
        normalize_windows_path(path)
        data = scratch.read(path)
    except ScratchError:
        raise ScriptFileError(
            f"The argument '{path}' to the -File parameter does not exist. Provide the path to "
            f"an existing '.ps1' file as an argument to the -File parameter.{pserror.CRLF}"
        ) from None
    return decode_script_file(data)


def _gunzip(packed: bytes) -> bytes:
    """GZipStream's CopyTo, with the error PowerShell prints for a stream that is not gzip."""
    try:
        return gzip.decompress(packed)
    except (OSError, EOFError, zlib.error):
        raise FileOpError(
            'Exception calling "CopyTo" with "1" argument(s): "The magic number in GZip header '
            'is not correct. Make sure you are passing in a GZip stream."'
        ) from None
