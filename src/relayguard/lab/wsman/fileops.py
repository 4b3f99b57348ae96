"""The built-in file ops of payload protocol v1, and loading a ``-File`` script.

``file.append_chunk`` ({"path", "chunk_b64"}) appends decoded bytes to a file,
``file.remove`` ({"path"}) deletes it, and ``file.run`` ({"path"}, optionally
``unpack_from``: a gzip file to unpack into ``path`` first, then removed) runs it the way
``powershell -NoProfile -File <path>`` would — the dispatcher does the running; this module
loads the script the way powershell.exe does, with its refusals: a path without the ``.ps1``
extension, or a file that does not exist, stops powershell.exe before any script runs (exit
code -196608).

What the file ops print (one JSON document) is the twin's side of the contract:
append → ``{"path": <path>, "length": <bytes now in the file>}``,
remove → ``{"path": <path>, "removed": true|false}``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
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
        raise FileOpError(
            'Exception calling "FromBase64String" with "1" argument(s): "The input is not a '
            "valid Base-64 string as it contains a non-base 64 character, more than two padding "
            'characters, or an illegal character among the padding characters. "'
        ) from None
    try:
        length = scratch.append(path, data)
    except ScratchError as exc:
        raise FileOpError(str(exc)) from None
    return {"path": path, "length": length}


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
        data = gzip.decompress(scratch.read(packed))
        scratch.remove(path)
        scratch.append(path, data)
    except ScratchError as exc:
        raise FileOpError(str(exc)) from None
    except (OSError, EOFError, zlib.error):
        raise FileOpError(
            'Exception calling "CopyTo" with "1" argument(s): "The magic number in GZip header '
            'is not correct. Make sure you are passing in a GZip stream."'
        ) from None
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
