"""Postfix commands run on a pseudo-terminal: their stderr (only printed to a tty) is kept."""

from __future__ import annotations

import pytest

from relayguard.lab.postfix.instance import PostfixError, run_command


def test_stderr_is_a_terminal_and_captured_with_the_exit_status() -> None:
    # Postfix prints fatal errors on stderr only when isatty(2); without that, no syslog
    # on this machine means they would vanish.
    result = run_command(["sh", "-c", "[ -t 2 ] && echo 'fatal: on a tty' >&2; exit 3"])
    assert result.output == "fatal: on a tty"
    assert result.returncode == 3


def test_output_written_just_before_exit_is_not_lost() -> None:
    for _ in range(20):
        assert run_command(["sh", "-c", "echo one; echo two >&2"]).output == "one\ntwo"


def test_a_hung_command_is_bounded() -> None:
    with pytest.raises(PostfixError, match=r"did not finish within 0\.5s"):
        run_command(["sleep", "30"], timeout=0.5)
