"""PowerShell payloads (payload protocol v1): render `templates/<op>.ps1.j2` into a script.

Every rendered script starts with the header `# relayguard-payload: <op> v1`, carries its
parameters as one base64 JSON document on the single agreed `$RelayguardParams` line (values
are data, decoded inside the script, never interpolated into PowerShell code), and prints
exactly one JSON document. The templates receive no parameter values at all: Jinja2 only
places the header and the params line, so no value can reach the code (see
docs/sources.md#decision-payload-protocol-v1). Each template only reads or writes; every decision
stays in Python.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

PROTOCOL_VERSION = 1
TEMPLATE_DIR = Path(__file__).with_name("templates")
TEMPLATE_SUFFIX = ".ps1.j2"

OP_NAME = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+$")
HEADER_PREFIX = "# relayguard-payload: "
PARAMS_PREFIX = (
    "$RelayguardParams = [System.Text.Encoding]::UTF8.GetString("
    "[System.Convert]::FromBase64String('"
)
PARAMS_SUFFIX = "')) | ConvertFrom-Json"
_PARAMS_LINE = re.compile(
    "^" + re.escape(PARAMS_PREFIX) + r"(?P<b64>[A-Za-z0-9+/=]*)" + re.escape(PARAMS_SUFFIX) + "$"
)


class PayloadError(ValueError):
    """A payload cannot be rendered or its output cannot be read."""


@dataclass(frozen=True)
class RenderedPayload:
    """One script ready to send. The parameters are inside `script`; they are not kept
    separately so that a repr or a log line of a payload never shows their values."""

    op: str
    script: str

    def __repr__(self) -> str:
        return f"RenderedPayload(op={self.op!r}, {len(self.script)} chars)"


def header(op: str) -> str:
    return f"{HEADER_PREFIX}{op} v{PROTOCOL_VERSION}"


def encode_params(params: Mapping[str, Any]) -> str:
    """The base64 of the UTF-8 JSON of `params` (a JSON object; no NaN or infinity)."""
    if not isinstance(params, Mapping):
        raise PayloadError("payload parameters must be a mapping (a JSON object)")
    try:
        text = json.dumps(
            dict(params), ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True
        )
        raw = text.encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise PayloadError(f"payload parameters are not JSON-serialisable: {exc}") from None
    return base64.b64encode(raw).decode("ascii")


def params_line(params: Mapping[str, Any]) -> str:
    return f"{PARAMS_PREFIX}{encode_params(params)}{PARAMS_SUFFIX}"


def available_ops() -> tuple[str, ...]:
    """Every op with a template (files starting with "_" are layouts, not ops)."""
    names = (
        path.name[: -len(TEMPLATE_SUFFIX)]
        for path in TEMPLATE_DIR.glob(f"*{TEMPLATE_SUFFIX}")
        if not path.name.startswith("_")
    )
    return tuple(sorted(names))


_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
    # The output is PowerShell, not HTML, and no parameter value is ever a template variable.
    autoescape=False,  # noqa: S701
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(op: str, params: Mapping[str, Any]) -> RenderedPayload:
    """Render the template of `op` with `params` embedded as data."""
    if not OP_NAME.match(op):
        raise PayloadError(f"not an op name: {op!r}")
    try:
        template = _ENVIRONMENT.get_template(f"{op}{TEMPLATE_SUFFIX}")
    except jinja2.TemplateNotFound:
        raise PayloadError(f"no template for op {op!r}") from None
    script = template.render(header=header(op), params_line=params_line(params))
    if not script.isascii():
        # Windows PowerShell 5.1 reads BOM-less script files in the ANSI code page.
        raise PayloadError(f"template {op!r} rendered non-ASCII text")
    if script.splitlines()[0] != header(op):
        raise PayloadError(f"template {op!r} does not start with the payload header")
    return RenderedPayload(op=op, script=script)


def script_op(script: str) -> str | None:
    """The op named by line 1 of a script, or None when line 1 is not a header."""
    first = script.split("\n", 1)[0].rstrip("\r")
    match = re.match(r"^# relayguard-payload: (\S+) v(\d+)$", first)
    if match is None or not OP_NAME.match(match.group(1)):
        return None
    return match.group(1)


def decode_params(script: str) -> Any:
    """The parameters embedded in a rendered script (exactly one params line is required)."""
    found = [line for line in script.splitlines() if line.startswith("$RelayguardParams")]
    if len(found) != 1:
        raise PayloadError(f"expected exactly one $RelayguardParams line, found {len(found)}")
    match = _PARAMS_LINE.match(found[0])
    if match is None:
        raise PayloadError("the $RelayguardParams line is not in the agreed form")
    return json.loads(base64.b64decode(match.group("b64"), validate=True).decode("utf-8"))


def parse_output(stdout: str) -> Any:
    """The one JSON document a payload prints; PayloadError when there is none or more."""
    text = stdout.strip()
    if not text:
        raise PayloadError("the payload printed nothing (expected one JSON document)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"the payload output is not one JSON document: {exc.msg}") from None
