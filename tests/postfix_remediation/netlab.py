"""The test network of the Postfix remediation tests: namespaces, veth pairs, sshd (real).

Topology of slot i (RFC 5737 documentation addresses; this machine's eth0 uses 192.0.2.0/24,
so the root namespace only ever gets 198.51.100.x and 203.0.113.x host routes)::

    controller (root namespace)             mail namespace              jump namespace
    controller 198.51.100.4i+1 ──veth── mail 198.51.100.4i+3 (Postfix :25, sshd :2222)
    app_server 198.51.100.4i+2 (2nd source)  203.0.113.253 ──veth── 203.0.113.254 (JUMP_INSIDE)
    jump_path  203.0.113.4i+1 ───────────────────────────veth──── jump 203.0.113.4i+2 (sshd :2222)

The jump host reaches the mail host through its own link, so Postfix sees it as JUMP_INSIDE:
an outsider. Links are point-to-point (/32 with a peer). Several runs of the suite may share
the machine (a CI clone beside a developer): each network takes a free slot under a lock, so
their root-namespace addresses never collide. Namespace names carry the creating pid;
`remove_stale()` deletes those whose process is gone (an interrupted run), nothing else.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Only inside the mail and jump namespaces: never in the root namespace, so fixed.
MAIL_INSIDE = "203.0.113.253"
JUMP_INSIDE = "203.0.113.254"
SSH_PORT = 2222
SLOTS = 32
SLOT_LOCK = Path("/run/lock/relayguard-rgpr-netlab.lock")


@dataclass(frozen=True)
class Addresses:
    """The root-namespace-facing addresses of one test network (slot `index`)."""

    index: int

    def _at(self, prefix: str, offset: int) -> str:
        return f"{prefix}.{4 * self.index + offset}"

    @property
    def controller(self) -> str:
        return self._at("198.51.100", 1)

    @property
    def app_server(self) -> str:
        return self._at("198.51.100", 2)

    @property
    def mail(self) -> str:
        return self._at("198.51.100", 3)

    @property
    def controller_lan(self) -> str:
        """The controller's LAN (controller, app server, mail host): what a site trusts."""
        return f"{self._at('198.51.100', 0)}/30"

    @property
    def jump_path(self) -> str:
        return self._at("203.0.113", 1)

    @property
    def jump(self) -> str:
        return self._at("203.0.113", 2)


def root_addresses() -> set[str]:
    listing = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    return {
        fields[3].split("/")[0]
        for fields in (line.split() for line in listing.stdout.splitlines())
        if len(fields) > 3
    }


@contextlib.contextmanager
def slot_lock() -> Iterator[None]:
    """Serialises choosing a slot (or a loopback address) and claiming it between processes."""
    path = SLOT_LOCK if SLOT_LOCK.parent.is_dir() else Path("/tmp") / SLOT_LOCK.name
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_NAME = re.compile(r"^rgpr-(\d+)-(\d+)-(mail|jump)$")
_counter = itertools.count(1)
COMMAND_TIMEOUT = 30.0


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=COMMAND_TIMEOUT)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def namespace_pids(name: str) -> list[int]:
    result = subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    return [int(pid) for pid in result.stdout.split() if pid.isdigit()]


def delete_namespace(name: str) -> None:
    """Kill what still runs in the namespace (only processes this suite started there), then
    delete it; its veth ends, and so their peers, go with it."""
    for _ in range(50):
        pids = namespace_pids(name)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=COMMAND_TIMEOUT)


def remove_stale() -> list[str]:
    """Delete namespaces an earlier, interrupted run of this suite left (creator pid gone)."""
    listing = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    removed = []
    for line in listing.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NAME.match(name)
        if match and not _alive(int(match.group(1))):
            delete_namespace(name)
            removed.append(name)
    return removed


@dataclass
class Namespace:
    name: str

    def argv(self, command: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *command]

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(command), check=True, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
        )

    def ip(self, *args: str) -> None:
        ip("-n", self.name, *args)


@dataclass
class TestNetwork:
    """The controller, mail and jump hosts of one test, removed by `close()`."""

    number: int = field(default_factory=lambda: next(_counter))
    created: list[str] = field(default_factory=list)
    addresses: Addresses = field(default_factory=lambda: Addresses(0))

    @property
    def tag(self) -> str:
        return f"{os.getpid()}-{self.number}"

    @property
    def mail(self) -> Namespace:
        return Namespace(f"rgpr-{self.tag}-mail")

    @property
    def jump(self) -> Namespace:
        return Namespace(f"rgpr-{self.tag}-jump")

    def _veth(self, suffix: str) -> str:
        # interface names have at most 15 characters: rg + 6 + 3 + suffix (2) + peer "p"
        return f"rg{os.getpid() % 1_000_000:06d}{self.number % 1000:03d}{suffix}"

    def build(self) -> TestNetwork:
        for ns in (self.mail, self.jump):
            ip("netns", "add", ns.name)
            self.created.append(ns.name)
            ns.ip("link", "set", "lo", "up")
        self._link(self._veth("j0"), self.jump, JUMP_INSIDE, self.mail, MAIL_INSIDE)
        with slot_lock():
            taken = root_addresses()
            free = [i for i in range(SLOTS) if Addresses(i).controller not in taken]
            if not free:
                raise RuntimeError(f"all {SLOTS} test network slots are in use")
            self.addresses = a = Addresses(free[0])
            self._link(self._veth("c0"), None, a.controller, self.mail, a.mail)
            self._link(self._veth("c1"), None, a.jump_path, self.jump, a.jump)
        # The app server: a second controller address the mail host routes back to.
        ip("addr", "add", f"{a.app_server}/32", "dev", self._veth("c0"))
        self.mail.ip("route", "add", f"{a.app_server}/32", "dev", self._veth("c0") + "p")
        # The jump host reaches the mail host's public address over its own link.
        self.jump.ip("route", "add", f"{a.mail}/32", "via", MAIL_INSIDE)
        return self

    def _link(
        self, name: str, left: Namespace | None, left_addr: str, right: Namespace, right_addr: str
    ) -> None:
        peer = name + "p"
        ip("link", "add", name, "type", "veth", "peer", "name", peer)
        if left is not None:
            ip("link", "set", name, "netns", left.name)
        ip("link", "set", peer, "netns", right.name)
        left_ip = (lambda *a: left.ip(*a)) if left is not None else (lambda *a: ip(*a))
        left_ip("addr", "add", left_addr, "peer", f"{right_addr}/32", "dev", name)
        left_ip("link", "set", name, "up")
        right.ip("addr", "add", right_addr, "peer", f"{left_addr}/32", "dev", peer)
        right.ip("link", "set", peer, "up")

    def close(self) -> None:
        for name in reversed(self.created):
            delete_namespace(name)
        self.created.clear()
        for suffix in ("c0", "c1"):
            subprocess.run(
                ["ip", "link", "del", self._veth(suffix)],
                capture_output=True,
                timeout=COMMAND_TIMEOUT,
            )


def wait_for_banner(address: str, port: int, prefix: bytes, timeout: float = 20.0) -> bytes:
    """Connect until the service greets with `prefix` (bounded); return the greeting."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=2.0) as sock:
                data = sock.recv(256)
                if data.startswith(prefix):
                    return data
                last = f"greeting {data[:60]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{address}:{port} did not greet within {timeout:g}s ({last})")


def make_key(path: Path, comment: str = "relayguard-test") -> Path:
    """An ed25519 key pair made with ssh-keygen (no passphrase); returns the private key."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=COMMAND_TIMEOUT,
    )
    return path


@dataclass
class SshServer:
    """A real sshd in a namespace with its own host key and authorized key, non-default config."""

    namespace: Namespace
    address: str
    directory: Path
    client_key: Path
    port: int = SSH_PORT
    extra_config: str = ""
    process: subprocess.Popen[bytes] | None = None

    @property
    def host_key(self) -> Path:
        return self.directory / "ssh_host_ed25519_key"

    @property
    def log(self) -> Path:
        return self.directory / "sshd.log"

    def known_hosts_line(self, key: Path | None = None) -> str:
        public = (key or self.host_key).with_suffix(".pub").read_text().split()
        return f"[{self.address}]:{self.port} {public[0]} {public[1]}\n"

    def start(self) -> SshServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.host_key.exists():
            make_key(self.host_key, "relayguard-test-host")
        authorized = self.directory / "authorized_keys"
        authorized.write_text(self.client_key.with_suffix(".pub").read_text())
        config = self.directory / "sshd_config"
        config.write_text(
            f"Port {self.port}\n"
            f"ListenAddress {self.address}\n"
            f"HostKey {self.host_key}\n"
            "PidFile none\n"
            f"AuthorizedKeysFile {authorized}\n"
            "StrictModes no\n"
            "UsePAM no\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\n"
            "X11Forwarding no\n"
            "PrintMotd no\n"
            "MaxStartups 50\n"
            "LogLevel VERBOSE\n"
            "Subsystem sftp internal-sftp\n" + self.extra_config
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        log = self.log.open("ab")
        self.process = subprocess.Popen(
            self.namespace.argv(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)]),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        try:
            wait_for_banner(self.address, self.port, b"SSH-2.0-")
        except TimeoutError as exc:
            self.stop()
            raise TimeoutError(f"{exc}; sshd log:\n{self.log.read_text()[-2000:]}") from None
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None
