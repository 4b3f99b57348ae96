"""Real, isolated Sendmail instances on this machine: create, start, stop, remove (lab equipment).

An instance is a directory (`relayguard.lab.sendmail.config`) whose sendmail.cf is made from
its sendmail.mc by m4 with sendmail-cf's macros, its maps by makemap and its aliases by
``sendmail -bi``, then run by root as ``sendmail -C ROOT/sendmail.cf -bd`` from the unpacked
sendmail-bin (`relayguard.lab.unpacked`; options: docs/sources.md#sendmail-op-guide). Needs
root, m4 and scripts/system-packages.sh's unpacked Sendmail.

    with SendmailInstance(root, "127.0.120.1", "closed") as server:
        ...  # server.banner, server.target, server.transcript_text()

Sendmail renames its processes ("sendmail: accepting connections"), so they are found by
their binary and their working directory, the instance's queue directory.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
from pathlib import Path
from types import TracebackType

from relayguard.lab import unpacked
from relayguard.lab.postfix.config import Listener, instance_name_for, validate_instance_name
from relayguard.lab.sendmail.config import SendmailLayout, render_files, render_mc
from relayguard.lab.sendmail.profiles import SendmailProfile, profile
from relayguard.lab.unpacked import LabMtaError

_MAPS = ("access", "mailertable")


def sendmail_binary() -> Path:
    return unpacked.unpacked_tool("sendmail", "usr/libexec/sendmail/sendmail")


def makemap_binary() -> Path:
    return unpacked.unpacked_tool("sendmail", "usr/libexec/sendmail/makemap")


def cf_dir() -> Path:
    path = unpacked.mta_root("sendmail") / "usr/share/sendmail/cf"
    if not (path / "m4" / "cf.m4").is_file():
        raise LabMtaError(f"{path} has no m4/cf.m4: {unpacked.INSTALL_HINT}")
    return path


def _run(argv: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def isolated(layout: SendmailLayout, hostname: str, argv: list[str]) -> list[str]:
    """`argv` run in UTS and mount namespaces of its own (unshare(1), root only).

    Host name: before it reads any configuration sendmail qualifies the machine's host name,
    and when that has no dot and no resolver knows it, it sleeps 60 s and retries ("My
    unqualified host name ... unknown; sleeping for retry", sendmail/daemon.c myhostname):
    each instance gets its own fully qualified name. Name service: the daemon looks up every
    client's address (gethostbyaddr, through the C library, not sendmail's service switch);
    the instance's own nsswitch.conf ("hosts: files") and resolv.conf (a name server on
    127.0.0.1) are bound over /etc's, so no query leaves loopback or waits on a resolver.
    """
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    script = (
        'hostname "$0" && mount --bind "$1" /etc/nsswitch.conf'
        ' && { [ ! -e /etc/resolv.conf ] || mount --bind "$2" /etc/resolv.conf; }'
        ' && shift 2 && exec "$@"'
    )
    files = [str(layout.file("nsswitch.conf")), str(layout.file("resolv.conf"))]
    return [
        unshare,
        "--uts",
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        script,
        hostname,
        *files,
        *argv,
    ]


WRAPPER = "sendmail-wrapper"


def write_wrapper(layout: SendmailLayout, hostname: str) -> Path:
    """ROOT/sendmail-wrapper: the unpacked sendmail run as the instance runs it (`isolated`:
    its own fully qualified host name and name service), for whatever validates a new
    sendmail.cf with ``sendmail -C cf -bt`` (the sendmail_relay module's sendmail_binary)."""
    wrapper = layout.file(WRAPPER)
    argv = isolated(layout, hostname, [str(sendmail_binary())])
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.join(argv)} "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    return wrapper


def build_cf(layout: SendmailLayout, hostname: str) -> None:
    """m4 sendmail.mc > sendmail.cf, then the maps (makemap) and aliases (sendmail -bi)."""
    m4 = shutil.which("m4")
    if m4 is None:
        raise LabMtaError("m4 not found: apt-get install m4")
    made = _run([m4, str(layout.mc)])
    if made.returncode != 0 or "ERROR" in made.stderr:
        raise LabMtaError(f"m4 refused {layout.mc}: {made.stderr.strip()}")
    candidate = layout.file(".sendmail.cf.new")
    candidate.write_text(made.stdout, encoding="utf-8")
    candidate.chmod(0o644)
    os.replace(candidate, layout.cf)
    for name in _MAPS:
        source = layout.file(name)
        result = _run(
            [str(makemap_binary()), "-C", str(layout.cf), "hash", str(source)],
            source.read_text(encoding="utf-8"),
        )
        if result.returncode != 0:
            raise LabMtaError(f"makemap hash {source} failed: {result.stderr.strip()}")
    aliases = _run(
        isolated(layout, hostname, [str(sendmail_binary()), "-C", str(layout.cf), "-bi"])
    )
    if aliases.returncode != 0:
        raise LabMtaError(f"sendmail -bi failed: {aliases.stderr.strip()}")


class SendmailInstance:
    """One isolated Sendmail daemon: `root` directory, SMTP on `address`:`port`."""

    def __init__(
        self,
        root: Path | str,
        address: str,
        lab_profile: SendmailProfile | str,
        port: int = 25,
        *,
        name: str | None = None,
    ) -> None:
        self.layout = SendmailLayout(Path(root).absolute())
        self.listener = Listener(address, port)
        self.profile = profile(lab_profile) if isinstance(lab_profile, str) else lab_profile
        self.name = validate_instance_name(name or instance_name_for(self.layout.root))
        self.banner: str | None = None

    def __repr__(self) -> str:
        return f"SendmailInstance({str(self.layout.root)!r}, {self.listener.endpoint!r})"

    @property
    def address(self) -> str:
        return self.listener.address

    @property
    def target(self) -> str:
        return self.listener.endpoint

    @property
    def hostname(self) -> str:
        return f"{self.name}.relayguard.test"

    def transcript_text(self) -> str:
        try:
            return self.layout.transcript.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def delivered(self, mailbox: str) -> str:
        """What the instance appended to `mailbox` (inbound, relayed)."""
        try:
            return (self.layout.mail_dir / mailbox).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def pids(self) -> list[int]:
        return instance_pids(self.layout)

    def is_running(self) -> bool:
        return bool(self.pids())

    def sendmail(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """Run the unpacked sendmail with this instance's sendmail.cf (``-C``)."""
        argv = [str(sendmail_binary()), "-C", str(self.layout.cf), *args]
        return _run(isolated(self.layout, self.hostname, argv), stdin)

    # -- lifecycle -----------------------------------------------------------------------

    def create(self) -> None:
        """Write the directories, the mc and its companions, and build sendmail.cf."""
        layout = self.layout
        layout.root.mkdir(parents=True, exist_ok=True)
        layout.root.chmod(0o755)
        for directory in (layout.spool, layout.transcript.parent, layout.mail_dir):
            directory.mkdir(exist_ok=True)
        layout.spool.chmod(0o700)
        mail = pwd.getpwnam("mail")
        os.chown(layout.mail_dir, mail.pw_uid, mail.pw_gid)
        mc = render_mc(layout, self.listener, self.name, self.profile, cf_dir())
        layout.mc.write_text(mc, encoding="utf-8")
        for name, text in render_files(layout, self.profile).items():
            path = layout.file(name)
            path.write_text(text, encoding="utf-8")
            path.chmod(0o755 if name == "deliver" else 0o644)
        build_cf(layout, self.hostname)
        write_wrapper(layout, self.hostname)

    def start(self, timeout: float = 30.0) -> str:
        """``sendmail -C cf -bd`` (no -q: no queue runner), then wait for its 220."""
        if not self.layout.cf.exists():
            raise LabMtaError(f"{self.layout.root} has no sendmail.cf: call create() first")
        if self.is_running():
            raise LabMtaError(f"{self!r} is already running (pids {self.pids()})")
        unpacked.refuse_taken(self.listener)
        result = self.sendmail("-bd", "-X", str(self.layout.transcript))
        if result.returncode != 0:
            raise LabMtaError(f"sendmail -bd failed: {result.stdout}{result.stderr}")
        said = f"sendmail -bd: {unpacked.exit_status(result.returncode)}"
        output = f"{result.stdout}{result.stderr}".strip()
        self.banner = unpacked.wait_greeting(
            self.listener,
            self.is_running,
            self.layout.transcript,
            timeout,
            said=f"{said}, said: {output}" if output else f"{said}, said nothing",
        )
        return self.banner

    def stop(self, timeout: float = 15.0) -> None:
        unpacked.stop_processes(self.pids, timeout)

    def remove(self) -> None:
        discard(self.layout.root)

    def __enter__(self) -> SendmailInstance:
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


def instance_pids(layout: SendmailLayout) -> list[int]:
    """Live sendmail processes working in the instance's queue directory."""
    try:
        binary = sendmail_binary()
    except LabMtaError:
        return []
    return unpacked.processes(binary, cwd=layout.spool)


def discard(root: Path) -> None:
    """Stop every process of the instance under `root` and delete it (any state)."""
    layout = SendmailLayout(root.absolute())
    unpacked.stop_processes(lambda: instance_pids(layout))
    shutil.rmtree(layout.root, ignore_errors=True)
