"""What the lab's Exim and Sendmail instances share: the unpacked packages, their processes.

Debian's MTAs conflict (one mail-transport-agent package at a time,
docs/sources.md#debian-mta-conflicts), so beside the installed
Postfix the lab runs Exim and Sendmail from their Debian packages unpacked with ``dpkg -x`` by
scripts/system-packages.sh into the checkout's ``.mta/exim4`` and ``.mta/sendmail`` (or
``$RELAYGUARD_MTA_DIR``). Each instance is a directory with its own configuration, spool and
log, run by root with the MTA's "alternate configuration file" option (``exim -C``,
``sendmail -C``), listening on one loopback address.

An instance's processes are found by what they run (the unpacked binary) and the
configuration file on their command line, so `stop_processes` can stop a half-started
instance or one an interrupted run left behind, and leaves nothing running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from relayguard.lab.postfix.config import Listener
from relayguard.lab.postfix.instance import listening_endpoints

CHECKOUT = Path(__file__).resolve().parents[3]
INSTALL_HINT = "run scripts/system-packages.sh as root (apt-get download + dpkg -x into .mta/)"


class LabMtaError(RuntimeError):
    """An Exim or Sendmail lab instance could not be created, started or stopped.

    `details` holds what the server itself said (`evidence`: the tails of its stderr and
    logs, each headed by its path), included in the message after the first line.
    """

    def __init__(self, message: str, details: str = "") -> None:
        self.message = message
        self.details = details
        super().__init__(message + (f"\n{details}" if details else ""))


def mta_root(name: str) -> Path:
    """The unpacked tree of `name` ("exim4" or "sendmail")."""
    base = Path(os.environ.get("RELAYGUARD_MTA_DIR") or CHECKOUT / ".mta")
    return base / name


def unpacked_tool(name: str, relative: str) -> Path:
    """An unpacked program, e.g. ``unpacked_tool("exim4", "usr/sbin/exim4")``."""
    path = mta_root(name) / relative
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise LabMtaError(f"{path} not found: {INSTALL_HINT}")
    return path


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def evidence(files: Iterable[Path], said: str = "", lines: int = 25) -> str:
    """What a server said about itself: `said` (e.g. what its start command printed), then
    the last `lines` lines of each file, headed by its path; a missing or empty file is named
    as such, so a reader knows it was looked at."""
    parts = [said.rstrip()] if said.strip() else []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            parts.append(f"--- {path}: absent ---")
            continue
        except OSError as exc:
            parts.append(f"--- {path}: unreadable ({exc.strerror}) ---")
            continue
        kept = text.splitlines()[-lines:]
        if not kept:
            parts.append(f"--- {path}: empty ---")
        else:
            parts.append(f"--- {path} (last {len(kept)} lines) ---\n" + "\n".join(kept))
    return "\n".join(parts)


def exit_status(returncode: int) -> str:
    """How a child ended, as subprocess reports it: "exit status 1", "killed by SIGKILL"."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def _how_it_ended(process: subprocess.Popen[bytes] | None) -> str:
    """The daemon's end, when it is our child: its pid and exit status."""
    returncode = process.poll() if process is not None else None
    if process is None or returncode is None:
        return ""
    return f"; pid {process.pid}: {exit_status(returncode)}"


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return status[status.rfind(")") + 2 : status.rfind(")") + 3] not in {"Z", "X"}


# How long `processes` waits for a just-executed program's arguments to become readable.
ARGUMENTS_WAIT = 2.0


def _read_cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _arguments(pid: int) -> list[bytes]:
    """The arguments of `pid` (/proc/PID/cmdline), waiting (bounded) while they read empty.

    Right after execve(2) the kernel has already switched the process to the new program
    (/proc/PID/exe names it) and closed its close-on-exec descriptors, which is what lets
    subprocess.Popen return, but has not yet laid out the new argument list: until then
    cmdline reads empty (docs/sources.md#linux-proc-cmdline). A daemon found by the
    configuration file on its command line is, for that moment, nobody's; on a busy machine
    the moment lasts long enough for a lab start to mistake its own daemon for one that died.
    A live process of a real program always has at least argv[0], so empty means "not yet".
    """
    deadline = time.monotonic() + ARGUMENTS_WAIT
    while True:
        raw = _read_cmdline(pid)
        if raw or time.monotonic() >= deadline or not _alive(pid):
            return raw.split(b"\0")
        time.sleep(0.01)


def processes(binary: Path, marker: str = "", cwd: Path | None = None) -> list[int]:
    """Live processes running `binary` with `marker` (the instance's configuration file path)
    as one of their arguments, or (`cwd`) working in that directory."""
    wanted = os.path.realpath(binary)
    directory = os.path.realpath(cwd) if cwd is not None else None
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if os.path.realpath(f"/proc/{pid}/exe") != wanted:
                continue
            argv = _arguments(pid)
            here = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        mine = (marker and marker.encode() in argv) or (directory is not None and here == directory)
        if mine and _alive(pid):
            found.append(pid)
    return sorted(found)


def _wait_gone(find: Callable[[], list[int]], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = find()
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def stop_processes(find: Callable[[], list[int]], timeout: float = 15.0) -> None:
    """SIGTERM every process `find` lists, wait (bounded), SIGKILL what is left."""
    for pid in find():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in _wait_gone(find, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    survivors = _wait_gone(find, 5.0)
    if survivors:
        raise LabMtaError(f"processes survived SIGKILL: {survivors}")


def refuse_taken(listener: Listener) -> None:
    if (listener.address, listener.port) in listening_endpoints():
        raise LabMtaError(f"{listener.endpoint} is already in use by another listener")


def read_greeting(listener: Listener, timeout: float) -> str:
    """Connect, read the 220 greeting (single or multi-line), say QUIT; the last line."""
    family = socket.AF_INET6 if listener.is_ipv6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((listener.address, listener.port))
        buffer = b""
        while not (buffer.endswith(b"\n") and _last_line(buffer)[3:4] == b" "):
            chunk = sock.recv(4096)
            if not chunk or len(buffer) > 65536:
                raise OSError("connection closed before the greeting ended")
            buffer += chunk
        with contextlib.suppress(OSError):
            sock.sendall(b"QUIT\r\n")
    line = _last_line(buffer).decode("utf-8", "replace")
    if not line.startswith("220"):
        raise LabMtaError(f"{listener.endpoint} greeted with {line!r}, not 220")
    return line


def _last_line(buffer: bytes) -> bytes:
    lines = [line.rstrip(b"\r") for line in buffer.split(b"\n") if line.strip()]
    return lines[-1] if lines else b""


def wait_greeting(
    listener: Listener,
    running: Callable[[], bool],
    log: Path,
    timeout: float = 30.0,
    *,
    process: subprocess.Popen[bytes] | None = None,
    logs: Sequence[Path] = (),
    said: str = "",
) -> str:
    """Wait (bounded) until `listener` greets with 220; fail early when nothing runs.

    `process` is the daemon when it is our own child (Exim's ``-bdf``): then whether it
    still runs is its own state (no search of /proc that a just-started program can slip
    through, see `_arguments`), and its exit status is in the error. Otherwise `running`
    decides. The error carries the server's own word (`evidence`): `said`, then the tails of
    `logs` (stderr, panic log) and of `log`.
    """
    deadline = time.monotonic() + timeout
    last_error = "no attempt made"
    while time.monotonic() < deadline:
        try:
            return read_greeting(listener, min(5.0, max(deadline - time.monotonic(), 0.1)))
        except OSError as exc:
            last_error = str(exc) or type(exc).__name__
        gone = process.poll() is not None if process is not None else not running()
        if gone:
            raise LabMtaError(
                f"{listener.endpoint} exited before answering ({last_error})"
                + _how_it_ended(process),
                evidence([*logs, log], said),
            )
        time.sleep(0.1)
    raise LabMtaError(
        f"{listener.endpoint} did not greet within {timeout:g}s ({last_error})",
        evidence([*logs, log], said),
    )
