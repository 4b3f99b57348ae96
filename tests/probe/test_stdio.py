"""The one document a module or the CLI writes reaches the reader whole, even if something
sharing the pipe makes it non-blocking again after `blocking_stdio()` (src/relayguard/stdio.py;
docs/reliability.md, "The probe module's result, whole")."""

from __future__ import annotations

import subprocess
import sys
import time

SIZE = 1_000_000

_WRITER = f"""
import os
from relayguard.stdio import blocking_stdio
blocking_stdio()
os.set_blocking(1, False)  # a sharer of the pipe sets the flag again, after the reset
print("x" * {SIZE} + "END")
"""


def test_a_document_is_written_whole_when_the_pipe_turns_non_blocking_again() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    time.sleep(0.5)  # the reader comes late: the pipe (64 KiB) is full long before
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert len(out) == SIZE + len("END\n")
    assert out.endswith(b"END\n")


def test_stdout_is_replaced_once() -> None:
    code = (
        "import sys; from relayguard.stdio import blocking_stdio; blocking_stdio(); "
        "first = sys.stdout; blocking_stdio(); print(first is sys.stdout)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "True\n"
