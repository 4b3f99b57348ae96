"""Real, isolated Exim instances on this machine: create, start, stop, remove (lab equipment).

An instance is a directory with its own exim.conf, spool and log (`relayguard.lab.exim.config`)
run by root as ``exim4 -C ROOT/exim.conf -bdf`` from the unpacked exim4-daemon-light
(`relayguard.lab.unpacked`); its daemon listens on one address and port (local_interfaces,
daemon_smtp_ports). Needs root and scripts/system-packages.sh's unpacked Exim.

    with EximInstance(root, "127.0.110.1", "closed") as server:
        ...  # server.banner, server.target, server.mainlog_text()

``exim -C FILE -bV`` checks the file before the daemon starts (docs/sources.md#exim-spec).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from relayguard.lab import unpacked
from relayguard.lab.exim.config import EximLayout, render
from relayguard.lab.exim.profiles import EximProfile, profile
from relayguard.lab.postfix.config import Listener, instance_name_for, validate_instance_name
from relayguard.lab.unpacked import LabMtaError

EXIM_USER = "Debian-exim"  # exim4-base's system user; the binary looks it up at start
# Debian's Exim keeps root for a -C file listed here (its compiled-in TRUSTED_CONFIG_LIST;
# the file must be root's and not group/world-writable), so the daemon can bind port 25 again
# when SIGHUP makes it re-execute itself, as a system Exim does on reload.
TRUSTED_CONFIGS = Path("/etc/exim4/trusted_configs")
_TRUSTED_LOCK = Path("/run/lock/relayguard-exim-trusted.lock")


@contextlib.contextmanager
def _trusted_lock() -> Iterator[None]:
    fallback = Path(tempfile.gettempdir()) / _TRUSTED_LOCK.name
    lock = _TRUSTED_LOCK if _TRUSTED_LOCK.parent.is_dir() else fallback
    with open(lock, "a", encoding="ascii") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _set_trusted(config: Path, present: bool) -> None:
    """List `config` in TRUSTED_CONFIGS (or drop it), keeping every other line."""
    with _trusted_lock():
        try:
            lines = TRUSTED_CONFIGS.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        wanted = [line for line in lines if line.strip() != str(config)]
        if present:
            wanted.append(str(config))
        if wanted == lines:
            return
        TRUSTED_CONFIGS.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        temporary = TRUSTED_CONFIGS.with_name(f".trusted_configs.{os.getpid()}")
        temporary.write_text("".join(f"{line}\n" for line in wanted), encoding="utf-8")
        temporary.chmod(0o644)
        os.replace(temporary, TRUSTED_CONFIGS)


def exim_binary() -> Path:
    return unpacked.unpacked_tool("exim4", "usr/sbin/exim4")


class EximInstance:
    """One isolated Exim daemon: `root` directory, SMTP on `address`:`port`, a lab profile."""

    def __init__(
        self,
        root: Path | str,
        address: str,
        lab_profile: EximProfile | str,
        port: int = 25,
        *,
        name: str | None = None,
    ) -> None:
        self.layout = EximLayout(Path(root).absolute())
        self.listener = Listener(address, port)
        self.profile = profile(lab_profile) if isinstance(lab_profile, str) else lab_profile
        self.name = validate_instance_name(name or instance_name_for(self.layout.root))
        self.banner: str | None = None

    def __repr__(self) -> str:
        return f"EximInstance({str(self.layout.root)!r}, {self.listener.endpoint!r})"

    @property
    def address(self) -> str:
        return self.listener.address

    @property
    def target(self) -> str:
        return self.listener.endpoint

    @property
    def hostname(self) -> str:
        return f"{self.name}.relayguard.test"

    @property
    def config(self) -> Path:
        return self.layout.config

    def mainlog_text(self) -> str:
        try:
            return self.layout.mainlog.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def delivered(self, mailbox: str) -> str:
        """What the instance appended to its mailbox `mailbox` ("relayed" for relayed mail)."""
        try:
            return (self.layout.mail_dir / mailbox).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def pids(self) -> list[int]:
        return unpacked.processes(exim_binary(), str(self.layout.config))

    def is_running(self) -> bool:
        return bool(self.pids())

    def exim(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """Run the unpacked exim4 with this instance's configuration (``-C``)."""
        return subprocess.run(
            [str(exim_binary()), "-C", str(self.layout.config), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    # -- lifecycle -----------------------------------------------------------------------

    def create(self) -> None:
        """Write the directories and exim.conf, and check it with ``exim -bV``."""
        layout = self.layout
        owner = pwd.getpwnam(EXIM_USER)
        layout.root.mkdir(parents=True, exist_ok=True)
        layout.root.chmod(0o755)
        for directory in (layout.spool, layout.log_dir, layout.mail_dir):
            directory.mkdir(exist_ok=True)
            os.chown(directory, owner.pw_uid, owner.pw_gid)
            directory.chmod(0o750)
        self.write_config(render(layout, self.listener, self.name, self.profile, exim_binary()))
        _set_trusted(layout.config, True)

    def write_config(self, text: str) -> None:
        """Replace exim.conf (root-owned, as Exim wants a -C file) after ``exim -bV`` accepts
        it; a running daemon rereads it on SIGHUP (`reload`)."""
        candidate = self.layout.root / ".exim.conf.new"
        candidate.write_text(text, encoding="utf-8")
        candidate.chmod(0o644)
        result = subprocess.run(
            [str(exim_binary()), "-C", str(candidate), "-bV"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            candidate.unlink()
            raise LabMtaError(f"exim -bV refused the configuration: {result.stdout}{result.stderr}")
        os.replace(candidate, self.layout.config)

    def start(self, timeout: float = 30.0) -> str:
        """Start the daemon (foreground mode, detached from us) and wait for its 220."""
        if not self.layout.config.exists():
            raise LabMtaError(f"{self.layout.root} has no exim.conf: call create() first")
        if self.is_running():
            raise LabMtaError(f"{self!r} is already running (pids {self.pids()})")
        unpacked.refuse_taken(self.listener)
        # -bdf: daemon in the foreground (no double fork), no -q: no queue runner. It is our
        # child, so a start that fails has an exit status; what it says before its logs
        # open goes to ROOT/exim.stderr.
        with open(self.layout.stderr, "wb") as said:
            process = subprocess.Popen(
                [str(exim_binary()), "-C", str(self.layout.config), "-bdf"],
                stdin=subprocess.DEVNULL,
                stdout=said,
                stderr=said,
                start_new_session=True,
            )
        self.banner = unpacked.wait_greeting(
            self.listener,
            self.is_running,
            self.layout.mainlog,
            timeout,
            process=process,
            logs=(self.layout.stderr, self.layout.paniclog),
        )
        return self.banner

    def reload(self) -> None:
        """SIGHUP: the daemon re-executes itself with the (new) configuration."""
        for pid in unpacked.processes(exim_binary(), "-bdf"):
            if str(self.layout.config) in _cmdline(pid):
                os.kill(pid, signal.SIGHUP)

    def stop(self, timeout: float = 15.0) -> None:
        unpacked.stop_processes(self.pids, timeout)

    def remove(self) -> None:
        discard(self.layout.root)

    def __enter__(self) -> EximInstance:
        try:
            self.create()
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.remove()


def discard(root: Path) -> None:
    """Stop every process of the instance under `root` and delete it (any state)."""
    layout = EximLayout(root.absolute())
    if layout.config.exists():
        try:
            binary = exim_binary()
        except LabMtaError:
            binary = None
        if binary is not None:
            unpacked.stop_processes(lambda: unpacked.processes(binary, str(layout.config)))
    _set_trusted(layout.config, False)
    shutil.rmtree(layout.root, ignore_errors=True)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
