"""What a Windows host makes of a WinRS command line: cmd.exe, then powershell.exe.

Pure parsing, no execution. A WinRS Command carries ``rsp:Command`` and optional
``rsp:Arguments``; unless ``WINRS_SKIP_CMD_SHELL`` is TRUE, Windows runs the line through
``cmd.exe /c``, whose line limit is 8191 characters (KB830473) — the reason pywinrm's
``run_ps`` fails on scripts of more than about 3 KB (pywinrm issues #184, #87) with
"The command line is too long."; without cmd.exe the CreateProcess limit of 32767 applies.

Recognised programs: ``powershell[.exe]`` (by name or full path) with the Windows PowerShell
5.1 CLI parameters (case-insensitive, unambiguous prefixes, ``-e``/``-ec`` for
``-EncodedCommand``), and the cmd built-ins ``echo``, ``hostname`` and ``whoami``. Anything
else is "not recognized as an internal or external command" with cmd's exit code 9009.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from relayguard.lab.wsman import pserror
from relayguard.lab.wsman.dispatch import ScriptSource

CMD_LINE_LIMIT = 8191  # cmd.exe, KB830473
CREATE_PROCESS_LIMIT = 32767
CMD_NOT_FOUND_EXIT = 9009


@dataclass(frozen=True)
class RunScript:
    """Run PowerShell script text (from -EncodedCommand, -Command, or a loaded -File)."""

    script: str
    source: ScriptSource
    path: str | None = None  # the Windows path of a -File script


@dataclass(frozen=True)
class RunFile:
    """Run the script at a Windows path (``powershell -File``)."""

    path: str


@dataclass(frozen=True)
class Builtin:
    """A cmd.exe built-in or small system tool the twin answers itself."""

    name: str  # "echo", "hostname", "whoami"
    argument: str


@dataclass(frozen=True)
class Refused:
    """The line fails before anything runs; stdout/stderr/exit as Windows reports them."""

    stderr: str
    exit_code: int
    stdout: str = ""


Invocation = RunScript | RunFile | Builtin | Refused


def split_arguments(line: str) -> list[str]:
    """Split a command line as CommandLineToArgvW does (quotes and backslashes)."""
    args: list[str] = []
    current: list[str] = []
    in_quotes = False
    have_token = False
    i = 0
    while i < len(line):
        char = line[i]
        if char == "\\":
            run = len(line[i:]) - len(line[i:].lstrip("\\"))
            if i + run < len(line) and line[i + run] == '"':
                current.append("\\" * (run // 2))
                if run % 2:
                    current.append('"')
                    i += run + 1
                else:
                    i += run
                have_token = True
                continue
            current.append("\\" * run)
            i += run
            have_token = True
            continue
        if char == '"':
            in_quotes = not in_quotes
            have_token = True
        elif char in " \t" and not in_quotes:
            if have_token:
                args.append("".join(current))
                current, have_token = [], False
        else:
            current.append(char)
            have_token = True
        i += 1
    if have_token:
        args.append("".join(current))
    return args


def _program_name(token: str) -> str:
    name = re.split(r"[\\/]", token)[-1].lower()
    return name[:-4] if name.endswith(".exe") else name


# powershell.exe (5.1) parameters: full name -> takes a value. Resolution by unambiguous
# prefix, with the aliases PowerShell documents or accepts in practice.
_PS_PARAMETERS = {
    "command": False,
    "configurationname": True,
    "encodedcommand": True,
    "executionpolicy": True,
    "file": True,
    "inputformat": True,
    "mta": False,
    "noexit": False,
    "nologo": False,
    "noninteractive": False,
    "noprofile": False,
    "outputformat": True,
    "psconsolefile": True,
    "sta": False,
    "version": True,
    "windowstyle": True,
}
_PS_ALIASES = {
    "c": "command",
    "e": "encodedcommand",
    "ec": "encodedcommand",
    "ep": "executionpolicy",
    "ex": "executionpolicy",
    "f": "file",
    "nop": "noprofile",
    "noni": "noninteractive",
    "o": "outputformat",
    "v": "version",
    "w": "windowstyle",
}


def _ps_parameter(token: str) -> str | None:
    if not token.startswith(("-", "/")) or len(token) < 2:
        return None
    name = token[1:].lower()
    if name in _PS_ALIASES:
        return _PS_ALIASES[name]
    matches = [full for full in _PS_PARAMETERS if full.startswith(name)]
    return matches[0] if len(matches) == 1 else None


def _cli_refusal(message: str) -> Refused:
    return Refused(stderr=message + pserror.CRLF, exit_code=pserror.CLI_ERROR_EXIT)


def parse_powershell(args: list[str]) -> Invocation:
    """The PowerShell CLI: what runs for ``powershell <args>``."""
    i = 0
    while i < len(args):
        parameter = _ps_parameter(args[i])
        if parameter is None:
            # The first token that is not a parameter starts the command text.
            return RunScript(" ".join(args[i:]), ScriptSource.COMMAND)
        takes_value = _PS_PARAMETERS[parameter]
        value = args[i + 1] if i + 1 < len(args) else None
        if takes_value and value is None:
            return _cli_refusal(f"Missing argument for parameter '-{parameter}'.")
        if parameter == "encodedcommand":
            assert value is not None
            try:
                script = base64.b64decode(value, validate=True).decode("utf-16-le")
            except (binascii.Error, UnicodeDecodeError):
                return _cli_refusal(
                    "Cannot process the command because the value specified with "
                    "-EncodedCommand is not properly encoded. The value must be Base64 encoded."
                )
            return RunScript(script.lstrip("\ufeff"), ScriptSource.ENCODED_COMMAND)
        if parameter == "command":
            return RunScript(" ".join(args[i + 1 :]), ScriptSource.COMMAND)
        if parameter == "file":
            assert value is not None
            return RunFile(value)
        i += 2 if takes_value else 1
    return RunScript("", ScriptSource.COMMAND)


def parse_command_line(
    command: str, arguments: str = "", *, skip_cmd_shell: bool = False
) -> Invocation:
    """What a Windows host runs for a WinRS Command (``rsp:Command`` + ``rsp:Arguments``)."""
    line = f"{command} {arguments}".strip() if arguments else command.strip()
    limit = CREATE_PROCESS_LIMIT if skip_cmd_shell else CMD_LINE_LIMIT
    if len(line) > limit:
        return Refused(stderr=f"The command line is too long.{pserror.CRLF}", exit_code=1)
    tokens = split_arguments(line)
    if not tokens:
        return Refused(stderr="", exit_code=0)
    program = _program_name(tokens[0])
    if program == "powershell":
        return parse_powershell(tokens[1:])
    if program in ("hostname", "whoami"):
        return Builtin(program, "")
    if program == "echo" and not skip_cmd_shell:
        # cmd's echo prints the rest of the line verbatim.
        rest = line.split(None, 1)
        return Builtin("echo", rest[1] if len(rest) == 2 else "")
    return Refused(
        stderr=(
            f"'{tokens[0]}' is not recognized as an internal or external command,{pserror.CRLF}"
            f"operable program or batch file.{pserror.CRLF}"
        ),
        exit_code=CMD_NOT_FOUND_EXIT,
    )
