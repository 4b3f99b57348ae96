"""How Windows PowerShell 5.1 words its errors, and how it ships them over WinRM.

Pure text functions. The error record layout (message, ``At line:N char:M``, the source line
with a ``~~~`` marker, ``CategoryInfo``, ``FullyQualifiedErrorId``) is what ``powershell.exe``
prints for an error record on a redirected stderr. When the script arrived through
``-EncodedCommand``, PowerShell writes stderr as CLIXML (``#< CLIXML`` then ``<S S="Error">``
lines with CR LF escaped as ``_x000D__x000A_``); pywinrm's ``Session.run_ps`` turns that back
into text (``Session._clean_error_msg``). The sample in pywinrm's test fixtures recorded from
Windows shows the format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.sax.saxutils import escape

CRLF = "\r\n"

# Exit code of powershell.exe when its own command line is unusable (missing -File script,
# bad -EncodedCommand): 0xFFFD0000, printed by cmd.exe as -196608.
CLI_ERROR_EXIT = -196608

_COMMENT_BLOCK = re.compile(r"<#.*?#>", re.DOTALL)
_ASSIGNMENT = re.compile(r"^\$[\w:{}]+\s*[-+*/%]?=\s*")
_COMMAND_WORD = re.compile(r"[A-Za-z_][\w.\\:-]*")


@dataclass(frozen=True)
class ScriptPosition:
    """Where an error points: the source line, its number and the offending text."""

    line_number: int  # 1-based
    column: int  # 1-based
    line: str
    text: str


def error_record(
    message: str,
    position: ScriptPosition | None,
    location: str,
    category: str,
    error_id: str,
) -> str:
    """One error record as PowerShell prints it; `location` is ``line`` or a script path."""
    lines = [message]
    if position is not None:
        lines.append(f"At {location}:{position.line_number} char:{position.column}")
        lines.append(f"+ {position.line}")
        marker = " " * (position.column - 1) + "~" * max(1, len(position.text))
        lines.append(f"+ {marker}")
    lines.append(f"    + CategoryInfo          : {category}")
    lines.append(f"    + FullyQualifiedErrorId : {error_id}")
    return CRLF.join(lines) + CRLF + " " + CRLF


def first_command(script: str) -> ScriptPosition | None:
    """The first word of the script PowerShell would run as a command, with its position.

    Skips blank lines, comments and variable assignments whose value is not a command
    (``$x = [Type]::Call()``, ``$x = 'text'``); the twin cannot run PowerShell, so this is
    what its "not recognized" error names.
    """
    source = script.replace("\r\n", "\n")
    # Blank out block comments but keep their newlines, so line numbers stay right.
    cleaned = _COMMENT_BLOCK.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), source)
    for number, (raw, line) in enumerate(
        zip(source.split("\n"), cleaned.split("\n"), strict=True), start=1
    ):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        offset = len(line) - len(line.lstrip())
        rest = line[offset:]
        assignment = _ASSIGNMENT.match(rest)
        if assignment:
            offset += assignment.end()
            rest = line[offset:]
        word = _COMMAND_WORD.match(rest)
        if word is None:
            continue
        return ScriptPosition(number, offset + 1, raw.rstrip(), word.group())
    return None


def command_not_found(script: str, location: str = "line") -> str:
    """The CommandNotFoundException record for the script's first command."""
    position = first_command(script)
    term = position.text if position else (script.strip().split() or ["<empty>"])[0]
    message = (
        f"{term} : The term '{term}' is not recognized as the name of a cmdlet, function, "
        "script file, or operable program. Check the spelling of the name, or if a path was "
        "included, verify that the path is correct and try again."
    )
    return error_record(
        message,
        position,
        location,
        f"ObjectNotFound: ({term}:String) [], CommandNotFoundException",
        "CommandNotFoundException",
    )


def thrown_error(message: str, error_id: str | None = None) -> str:
    """A terminating error as ``throw "<message>"`` in a script reports it."""
    return error_record(
        message,
        None,
        "line",
        f"OperationStopped: ({message[:40]}:String) [], RuntimeException",
        error_id or message,
    )


def method_exception(method: str, arguments: int, message: str, exception: str) -> str:
    """A .NET method failure, as ``Exception calling "M" with "N" argument(s)`` reports it."""
    return error_record(
        f'Exception calling "{method}" with "{arguments}" argument(s): "{message}"',
        None,
        "line",
        "NotSpecified: (:) [], MethodInvocationException",
        exception,
    )


def cmdlet_error(cmdlet: str, message: str, category: str, error_id: str) -> str:
    """A non-terminating cmdlet error (``Cmdlet : message``)."""
    return error_record(f"{cmdlet} : {message}", None, "line", category, error_id)


def clixml(stderr_text: str) -> str:
    """Stderr text as powershell.exe writes it for ``-EncodedCommand`` (CLIXML)."""
    if not stderr_text:
        return ""
    lines = stderr_text.split(CRLF)
    if lines and lines[-1] == "":
        lines.pop()
    objects = "".join(f'<S S="Error">{escape(line)}_x000D__x000A_</S>' for line in lines)
    return (
        f"#< CLIXML{CRLF}"
        f'<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        f"{objects}</Objs>"
    )
