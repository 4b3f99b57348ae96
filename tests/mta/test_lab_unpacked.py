"""How the lab waits for an Exim or Sendmail daemon it starts (relayguard.lab.unpacked).

The fresh-clone parallel run at 8e97dc0 failed once with "exim server at 127.0.58.10:25 exited
before answering" and nothing else: the daemon was alive, but the search of /proc that decides
"is it still running?" read its command line in the moment after execve(2) when the kernel
has switched the program but not yet laid out the arguments (empty cmdline,
docs/sources.md#linux-proc-cmdline). These tests pin the two halves of the fix (a daemon that
is our child is judged by its own state; the /proc search waits for the arguments) and that a
daemon that really fails says why: its exit status and the tails of its stderr and logs.
No root and no real MTA needed: the "servers" here are small programs this test starts.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relayguard.lab import unpacked
from relayguard.lab.postfix.config import Listener
from relayguard.lab.unpacked import LabMtaError


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _start(argv: list[str], stderr: Path) -> subprocess.Popen[bytes]:
    with open(stderr, "wb") as said:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=said, stderr=said)


def test_a_server_that_exits_at_once_names_its_status_and_its_stderr(
    tmp_path: Path, closed_port: int
) -> None:
    stderr = tmp_path / "daemon.stderr"
    paniclog = tmp_path / "paniclog"
    paniclog.write_text("", encoding="utf-8")
    script = "echo 'configuration error in line 7:' >&2; echo '  option unknown' >&2; exit 3"
    process = _start(["/bin/sh", "-c", script], stderr)
    process.wait(timeout=30)

    with pytest.raises(LabMtaError) as failure:
        # `running` says yes: the child's own status decides, not a search of /proc.
        unpacked.wait_greeting(
            Listener("127.0.0.1", closed_port),
            lambda: True,
            tmp_path / "mainlog",
            timeout=10,
            process=process,
            logs=(stderr, paniclog),
        )

    text = str(failure.value)
    first = text.splitlines()[0]
    assert f"127.0.0.1:{closed_port} exited before answering" in first, text
    assert f"pid {process.pid}: exit status 3" in first, text
    assert f"--- {stderr} (last 2 lines) ---" in text, text
    assert "configuration error in line 7:\n  option unknown" in text, text
    assert f"--- {paniclog}: empty ---" in text, text
    assert f"--- {tmp_path / 'mainlog'}: absent ---" in text, text
    assert failure.value.details in text and failure.value.message == first


def test_a_server_killed_by_a_signal_is_named_so(tmp_path: Path, closed_port: int) -> None:
    process = _start(["/bin/sh", "-c", "kill -KILL $$"], tmp_path / "daemon.stderr")

    with pytest.raises(LabMtaError, match=r"pid \d+: killed by SIGKILL"):
        unpacked.wait_greeting(
            Listener("127.0.0.1", closed_port),
            lambda: True,
            tmp_path / "mainlog",
            timeout=10,
            process=process,
        )


def test_what_the_start_command_said_is_in_the_error(tmp_path: Path, closed_port: int) -> None:
    """Sendmail's daemon is not our child: `running` decides, and what ``sendmail -bd``
    printed comes first in the error."""
    transcript = tmp_path / "transcript"
    transcript.write_text("line one\nline two\n", encoding="utf-8")

    with pytest.raises(LabMtaError) as failure:
        unpacked.wait_greeting(
            Listener("127.0.0.1", closed_port),
            lambda: False,
            transcript,
            timeout=10,
            said="sendmail -bd: exit status 0, said: daemon: cannot bind",
        )

    details = failure.value.details.splitlines()
    assert details[0] == "sendmail -bd: exit status 0, said: daemon: cannot bind"
    assert details[1:] == [f"--- {transcript} (last 2 lines) ---", "line one", "line two"]


GREETS_LATE = textwrap.dedent(
    """
    import socket, sys, time
    time.sleep(1.0)  # a daemon still loading: connections are refused meanwhile
    with socket.create_server(("127.0.0.1", int(sys.argv[1]))) as server:
        client, _ = server.accept()
        client.sendall(b"220 late.relayguard.test ESMTP\\r\\n")
        client.recv(100)
        client.close()
    """
)


def test_a_live_daemon_the_proc_search_does_not_see_yet_is_waited_for(closed_port: int) -> None:
    """The CI failure: the first connection is refused and the /proc search does not (yet)
    find the daemon. Its own state says it runs, so the start waits for its 220."""
    process = subprocess.Popen([sys.executable, "-c", GREETS_LATE, str(closed_port)])
    try:
        banner = unpacked.wait_greeting(
            Listener("127.0.0.1", closed_port),
            lambda: False,  # what the /proc search saw in the failed run
            Path("/nonexistent/mainlog"),
            timeout=30,
            process=process,
        )
    finally:
        process.kill()
        process.wait(timeout=30)
    assert banner == "220 late.relayguard.test ESMTP"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "relayguard-marker.conf"]
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait(timeout=30)


def _wait_for_arguments(pid: int) -> None:
    deadline = time.monotonic() + 10
    while b"relayguard-marker.conf" not in Path(f"/proc/{pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, "the sleeper never showed its arguments"
        time.sleep(0.01)


def test_the_proc_search_waits_for_the_arguments_of_a_just_started_program(
    sleeper: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after execve(2) /proc/PID/cmdline reads empty while /proc/PID/exe already names
    the new program: `processes` reads again until the arguments are there."""
    _wait_for_arguments(sleeper.pid)
    real = unpacked._read_cmdline
    empty_reads = {sleeper.pid: 3}

    def mid_exec(pid: int) -> bytes:
        if empty_reads.get(pid, 0) > 0:
            empty_reads[pid] -= 1
            return b""
        return real(pid)

    monkeypatch.setattr(unpacked, "_read_cmdline", mid_exec)

    found = unpacked.processes(Path(sys.executable), "relayguard-marker.conf")

    assert found == [sleeper.pid]
    assert empty_reads[sleeper.pid] == 0  # it did read the empty command line, three times


def test_the_proc_search_gives_up_on_arguments_that_never_come(
    sleeper: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bounded: a process whose command line stays empty is not the instance's."""
    _wait_for_arguments(sleeper.pid)
    real = unpacked._read_cmdline
    monkeypatch.setattr(unpacked, "ARGUMENTS_WAIT", 0.5)
    monkeypatch.setattr(
        unpacked, "_read_cmdline", lambda pid: b"" if pid == sleeper.pid else real(pid)
    )

    started = time.monotonic()
    assert unpacked.processes(Path(sys.executable), "relayguard-marker.conf") == []
    assert 0.5 <= time.monotonic() - started < 10


def test_exit_status_reads_as_a_person_says_it() -> None:
    assert unpacked.exit_status(0) == "exit status 0"
    assert unpacked.exit_status(1) == "exit status 1"
    assert unpacked.exit_status(-9) == "killed by SIGKILL"
    assert unpacked.exit_status(-15) == "killed by SIGTERM"
    assert unpacked.exit_status(-200) == "killed by signal 200"
