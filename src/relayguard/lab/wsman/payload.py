"""Payload protocol v1, the twin's side: read the header and the parameters of a script.

The contract (docs/sources.md#decision-payload-protocol-v1): line 1 of every
relayguard script is ``# relayguard-payload: <op> v1``; the script holds exactly one line

    $RelayguardParams = [System.Text.Encoding]::UTF8.GetString(
        [System.Convert]::FromBase64String('<b64 of UTF-8 JSON>')) | ConvertFrom-Json

(on one line). Parameters are data: the twin decodes them exactly as that line would on
Windows PowerShell 5.1 and never evaluates anything else in the script. Decoding failures are
reported the way that line fails on Windows (``FromBase64String`` FormatException,
``ConvertFrom-Json`` ArgumentException); a script that breaks the contract itself (no params
line, two of them) is reported as a twin diagnostic so a rendering bug is caught early.

Pure functions; no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from relayguard.lab.wsman import pserror

PROTOCOL_VERSION = 1

OP_NAME = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+$")
_HEADER = re.compile(
    r"^# relayguard-payload: (?P<op>[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+) v(?P<version>\d+)[ \t]*$"
)
_PARAMS_LINE = re.compile(
    r"^\$RelayguardParams = \[System\.Text\.Encoding\]::UTF8\.GetString\("
    r"\[System\.Convert\]::FromBase64String\('(?P<b64>[^']*)'\)\) \| ConvertFrom-Json[ \t]*$"
)
_PARAMS_MENTION = re.compile(r"^\s*\$RelayguardParams\s*=", re.IGNORECASE)
_BASE64_TEXT = re.compile(r"^[A-Za-z0-9+/\s]*={0,2}\s*$")

# Windows PowerShell 5.1's ConvertFrom-Json uses JavaScriptSerializer with its default
# MaxJsonLength of 2097152 characters; longer input fails.
MAX_JSON_LENGTH = 2_097_152


class PayloadError(Exception):
    """The script cannot run as a payload; `stderr` is what the twin prints, exit code 1."""

    def __init__(self, stderr: str) -> None:
        super().__init__(stderr.splitlines()[0] if stderr else "payload error")
        self.stderr = stderr


@dataclass(frozen=True)
class Header:
    op: str
    version: int


@dataclass(frozen=True)
class Payload:
    op: str
    params: dict[str, Any]


def parse_header(script: str) -> Header | None:
    """The header of line 1, or None when line 1 is not a relayguard header."""
    first = script.lstrip("\ufeff").split("\n", 1)[0].rstrip("\r")
    match = _HEADER.match(first)
    if match is None:
        return None
    return Header(op=match.group("op"), version=int(match.group("version")))


def _twin_diagnostic(op: str, problem: str) -> str:
    return pserror.thrown_error(
        f"relayguard twin: payload '{op}' {problem} (payload protocol v{PROTOCOL_VERSION})",
        "RelayguardPayloadContract",
    )


def _base64_failure(message: str) -> str:
    return pserror.method_exception("FromBase64String", 1, message, "FormatException")


def decode_params(encoded: str) -> Any:
    """Decode the base64 JSON of the params line as PowerShell 5.1 would (any JSON value)."""
    # [Convert]::FromBase64String ignores white space and needs a length that is a multiple
    # of four with at most two '=' of padding.
    compact = re.sub(r"\s", "", encoded)
    if not _BASE64_TEXT.match(encoded):
        raise PayloadError(
            _base64_failure(
                "The input is not a valid Base-64 string as it contains a non-base 64 "
                "character, more than two padding characters, or an illegal character among "
                "the padding characters. "
            )
        )
    try:
        raw = base64.b64decode(compact, validate=True) if len(compact) % 4 == 0 else None
    except binascii.Error:
        raw = None
    if raw is None:
        raise PayloadError(_base64_failure("Invalid length for a Base-64 char array or string."))
    # Encoding.UTF8.GetString replaces invalid sequences with U+FFFD rather than failing.
    text = raw.decode("utf-8", errors="replace")
    if len(text) > MAX_JSON_LENGTH:
        raise PayloadError(
            pserror.cmdlet_error(
                "ConvertFrom-Json",
                "Error during serialization or deserialization using the JSON "
                "JavaScriptSerializer. The length of the string exceeds the value set on the "
                "maxJsonLength property.",
                "NotSpecified: (:) [ConvertFrom-Json], InvalidOperationException",
                "System.InvalidOperationException,"
                "Microsoft.PowerShell.Commands.ConvertFromJsonCommand",
            )
        )
    try:
        return json.loads(text)
    except ValueError:
        raise PayloadError(
            pserror.cmdlet_error(
                "ConvertFrom-Json",
                "Invalid JSON primitive: .",
                "NotSpecified: (:) [ConvertFrom-Json], ArgumentException",
                "System.ArgumentException,Microsoft.PowerShell.Commands.ConvertFromJsonCommand",
            )
        ) from None


def parse_payload(script: str, header: Header) -> Payload:
    """The op and its parameters; raises PayloadError for a broken params line."""
    lines = script.replace("\r\n", "\n").split("\n")
    mentions = [line for line in lines if _PARAMS_MENTION.match(line)]
    if not mentions:
        raise PayloadError(_twin_diagnostic(header.op, "has no $RelayguardParams line"))
    if len(mentions) > 1:
        raise PayloadError(_twin_diagnostic(header.op, "has more than one $RelayguardParams line"))
    match = _PARAMS_LINE.match(mentions[0])
    if match is None:
        raise PayloadError(
            _twin_diagnostic(header.op, "has a $RelayguardParams line not in the agreed form")
        )
    params = decode_params(match.group("b64"))
    if not isinstance(params, dict):
        raise PayloadError(_twin_diagnostic(header.op, "has parameters that are not a JSON object"))
    return Payload(op=header.op, params=params)
