"""plugins/module_utils/command_runner.py: the one pty runner of the postfix_relay backend and
the lab's Postfix instances (it used to be two copies that had drifted apart).

What each copy did better is kept and checked here: a command that cannot start closes both
ends of the pty (the backend's), output written just before the command exits is drained, not
lost (the lab's), output is bounded in size (the backend's) and time.
"""

from __future__ import annotations

import os
from types import ModuleType

import pytest

from postfix_remediation.backend import backend
from relayguard.lab import module_utils
from relayguard.lab.postfix import instance

runner: ModuleType = module_utils.load("command_runner")


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_stderr_is_a_terminal_and_captured_with_the_exit_status() -> None:
    result = runner.run_on_pty(["sh", "-c", "[ -t 2 ] && echo 'fatal: on a tty' >&2; exit 3"], 30)
    assert (result.output, result.returncode) == ("fatal: on a tty", 3)
    assert result.summary() == "fatal: on a tty"


def test_output_written_just_before_exit_is_not_lost() -> None:
    for _ in range(20):
        assert runner.run_on_pty(["sh", "-c", "echo one; echo two >&2"], 30).output == "one\ntwo"


def test_a_command_that_cannot_start_leaks_no_descriptor() -> None:
    before = _open_fds()
    with pytest.raises(runner.CommandError, match=r"cannot run /nonexistent/postconf: "):
        runner.run_on_pty(["/nonexistent/postconf"], 30)
    assert _open_fds() == before


def test_output_is_bounded() -> None:
    # 3 MB written; at most OUTPUT_LIMIT plus one read is kept, and the command still ends
    result = runner.run_on_pty(["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x"], 60)
    assert result.returncode == 0
    assert runner.OUTPUT_LIMIT <= len(result.output) <= runner.OUTPUT_LIMIT + 4096


def test_a_hung_command_is_bounded() -> None:
    before = _open_fds()
    with pytest.raises(runner.CommandError, match=r"sleep 30 did not finish within 0\.5s"):
        runner.run_on_pty(["sleep", "30"], 0.5)
    assert _open_fds() == before


def test_an_empty_output_summarises_as_the_exit_status() -> None:
    assert runner.run_on_pty(["false"], 30).summary() == "exit status 1, no message"


def test_both_sides_use_this_runner_and_speak_their_own_error() -> None:
    assert backend.CommandResult is runner.CommandResult
    assert instance.CommandResult is runner.CommandResult
    with pytest.raises(backend.PostfixCommandError, match=r"did not finish within 0\.5s"):
        backend.run_command(["sleep", "30"], timeout=0.5)
    with pytest.raises(instance.PostfixError, match="cannot run /nonexistent/postfix"):
        instance.run_command(["/nonexistent/postfix"])
