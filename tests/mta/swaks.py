"""swaks, a client nobody here wrote, against a lab instance (loopback only)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from support.realserver import tool_path

# swaks exit statuses (swaks(1), "EXIT CODES"): 0 success, 24 no RCPT accepted.
SWAKS_OK = 0
SWAKS_NO_RECIPIENT = 24


@dataclass(frozen=True)
class SwaksRun:
    returncode: int
    transcript: str


def swaks(target: str, source: str, recipient: str, *, quit_after: str = "") -> SwaksRun:
    argv = [
        tool_path("swaks"),
        "--server",
        target,
        "--from",
        "sender@example.com",
        "--to",
        recipient,
        "--local-interface",
        source,
        "--timeout",
        "30",
    ]
    if quit_after:
        argv += ["--quit-after", quit_after]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=90, check=False)
    return SwaksRun(done.returncode, done.stdout + done.stderr)
