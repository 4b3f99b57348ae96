"""Payload rendering: the header, parameters as data, and a real PowerShell parse of every
template (payload protocol v1, docs/sources.md#decision-payload-protocol-v1)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from relayguard.exchange import payloads
from relayguard.exchange.payloads import PayloadError, decode_params, render

from .powershell_syntax import assert_parses, syntax_errors

HOSTILE_STRINGS = [
    "'; Remove-Item -Recurse -Force C:\\ ; '",
    '"; Stop-Computer -Force; "',
    "$(Stop-Computer -Force)",
    "${env:COMPUTERNAME}",
    "`$(Invoke-Expression 'calc')`",
    "back`tick`n`0`r",
    "line one\nline two\r\nline three\rend",
    "semi;colon;;$null;",
    "nul\x00byte\x00",
    "')) | Invoke-Expression #",
    "'@\n$RelayguardParams = 'evil'\n@'",
    "#>\n<# comment #>\nStop-Computer",
    "Überprüfung ☃ — 😀 \u202e bidi \ufeff bom",
    "\u2018smart\u2019 \u201cquotes\u201d",  # PowerShell treats these as quote characters
    "\\\\?\\UNC\\evil\\share\\x.ps1",
    "a" * 20000,
]

HOSTILE_PARAMS = {
    "path": HOSTILE_STRINGS[0],
    "chunk_b64": HOSTILE_STRINGS[2],
    "values": HOSTILE_STRINGS,
    "nested": {"key'; rm -r /": {"$(x)": [1, 2.5, True, None, "`"]}},
    "$(Stop-Computer)": "key is hostile too",
    "empty": "",
    "big": 2**53,
}


def _without_params_line(script: str) -> list[str]:
    return [line for line in script.splitlines() if not line.startswith("$RelayguardParams")]


@pytest.mark.parametrize("op", payloads.available_ops())
@pytest.mark.parametrize("value", HOSTILE_STRINGS, ids=range(len(HOSTILE_STRINGS)))
def test_hostile_string_arrives_as_data(op: str, value: str) -> None:
    params = {"path": value, "chunk_b64": value}
    script = render(op, params).script
    assert decode_params(script) == params
    # The value changes the params line and nothing else: it cannot become code.
    benign = render(op, {"path": "C:\\x.ps1", "chunk_b64": "QQ=="}).script
    assert _without_params_line(script) == _without_params_line(benign)
    assert script.isascii()
    assert_parses(script)


@pytest.mark.parametrize("op", payloads.available_ops())
def test_hostile_structure_round_trips(op: str) -> None:
    script = render(op, HOSTILE_PARAMS).script
    assert decode_params(script) == HOSTILE_PARAMS
    assert "Stop-Computer" not in script
    assert "Remove-Item -Recurse" not in script
    assert_parses(script)


def test_params_line_is_the_agreed_form() -> None:
    params = {"path": "C:\\Windows\\Temp\\x.ps1"}
    lines = render("file.remove", params).script.splitlines()
    assert lines[0] == "# relayguard-payload: file.remove v1"
    matching = [line for line in lines if "$RelayguardParams =" in line]
    assert len(matching) == 1
    encoded = base64.b64encode(json.dumps(params, separators=(",", ":")).encode()).decode()
    assert matching[0] == (
        "$RelayguardParams = [System.Text.Encoding]::UTF8.GetString("
        f"[System.Convert]::FromBase64String('{encoded}')) | ConvertFrom-Json"
    )


def test_every_template_is_found_and_renders_parseable_powershell() -> None:
    """Every op template in templates/ (new ones included automatically) renders to a
    script with the header on line 1, one params line, and no PowerShell syntax error."""
    names = sorted(
        path.name.removesuffix(".ps1.j2")
        for path in payloads.TEMPLATE_DIR.glob("*.ps1.j2")
        if not path.name.startswith("_")
    )
    assert names == list(payloads.available_ops())
    assert {"file.append_chunk", "file.run", "file.remove"} <= set(names)
    for op in names:
        script = render(op, {"path": "C:\\t\\a.ps1", "chunk_b64": "QUJD"}).script
        assert payloads.script_op(script) == op
        assert script.startswith(f"# relayguard-payload: {op} v1\n")
        assert sum(line.startswith("$RelayguardParams") for line in script.splitlines()) == 1
        assert_parses(script)


# Cmdlets newer than PowerShell 3.0 — the oldest the 2013+ payloads meet (stock Windows Server
# 2012) — with the version that brought them (Microsoft Learn, each cmdlet's page).
NEWER_THAN_PS3 = {"Get-FileHash": "4.0", "ConvertFrom-String": "5.0", "Compress-Archive": "5.0"}


def test_templates_use_nothing_newer_than_powershell_3() -> None:
    for path in payloads.TEMPLATE_DIR.glob("*.ps1.j2"):
        text = re.sub(r"\{#.*?#\}", "", path.read_text(encoding="utf-8"), flags=re.S).lower()
        text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        used = [f"{c} (PowerShell {v})" for c, v in NEWER_THAN_PS3.items() if c.lower() in text]
        assert not used, f"{path.name}: {used}"


def test_templates_never_see_parameter_values() -> None:
    """Only the header and the params line are template variables (grep the sources)."""
    for path in Path(payloads.TEMPLATE_DIR).glob("*.ps1.j2"):
        text = path.read_text(encoding="utf-8")
        variables = {
            chunk.split("}}")[0].strip() for chunk in text.split("{{")[1:] if "}}" in chunk
        }
        assert variables <= {"header", "params_line"}, (path.name, variables)


def test_syntax_checker_catches_errors() -> None:
    """The parse check is able to fail: a broken script is reported."""
    assert syntax_errors("if ($x { Write-Output 'a' ") != []
    assert syntax_errors("function f {\n    param($a)\n    $a\n}\nf 1\n") == []


@pytest.mark.parametrize("op", ["../etc/passwd", "file.Run", "file", "file.run;x", ""])
def test_bad_op_names_are_refused(op: str) -> None:
    with pytest.raises(PayloadError):
        render(op, {})


def test_unknown_op_is_refused() -> None:
    with pytest.raises(PayloadError, match="no template"):
        render("exchange.no_such_op", {})


@pytest.mark.parametrize(
    "params",
    [["a list"], {"x": float("nan")}, {"x": "lone \ud800 surrogate"}, {"x": object()}],
    ids=["not-a-mapping", "nan", "surrogate", "object"],
)
def test_unserialisable_params_are_refused(params: object) -> None:
    with pytest.raises(PayloadError):
        render("file.remove", params)  # type: ignore[arg-type]


def test_payload_repr_hides_the_parameters() -> None:
    payload = render("file.remove", {"path": "secret-looking-value"})
    assert "secret-looking-value" not in repr(payload)


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [('{"a":1}', {"a": 1}), ('  {"a":[1,2]}\r\n', {"a": [1, 2]}), ("[]", []), ("true", True)],
)
def test_parse_output_reads_one_document(stdout: str, expected: object) -> None:
    assert payloads.parse_output(stdout) == expected


@pytest.mark.parametrize(
    "stdout", ["", "   \r\n", '{"a":1}{"b":2}', '{"a":1}\n{"b":2}', "WARNING: x"]
)
def test_parse_output_refuses_anything_but_one_document(stdout: str) -> None:
    with pytest.raises(PayloadError):
        payloads.parse_output(stdout)


def test_decode_params_refuses_two_params_lines() -> None:
    script = render("file.remove", {"path": "a"}).script
    doubled = script + script.splitlines()[1] + "\n"
    with pytest.raises(PayloadError, match="exactly one"):
        decode_params(doubled)
