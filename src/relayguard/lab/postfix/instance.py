"""Real, isolated Postfix instances on this machine: create, start, stop, remove (lab equipment).

An instance is a directory with its own main.cf/master.cf, queue, data and log (layout in
`relayguard.lab.postfix.config`), registered in the default instance's
`alternate_config_directories` and run with ``postfix -c DIR start``
(docs/sources.md#postfix-multi-instance). Its smtpd listens on one address and port given in
master.cf, e.g. 127.0.4.1:25, so many
instances share port 25 on different loopback addresses. Needs root and the Debian `postfix`
package.

    with PostfixInstance.from_profile(root, "127.0.4.1", "closed") as server:
        ...  # server.banner, server.hostname, server.maillog_text()

Every failure raises `PostfixError`, which carries the tail of the instance's maillog (Postfix
logs its fatal errors there, or only to syslog, which containers lack). `stop()` waits for
every process of the instance and kills leftovers by pid, so tests leave nothing running.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from relayguard.lab import module_utils
from relayguard.lab.postfix.config import (
    LAB_DOMAIN,
    InstanceLayout,
    Listener,
    base_parameters,
    instance_name_for,
    render_aliases,
    render_main_cf,
    render_master_cf,
    render_sasl_conf,
    sasl_parameters,
    split_list,
    validate_instance_name,
    validate_parameters,
    with_alternate,
    without_alternate,
)
from relayguard.lab.postfix.profiles import PostfixProfile, profile

if TYPE_CHECKING:  # plugins/module_utils/command_runner.py, checked by mypy under this name
    import command_runner
    from command_runner import CommandResult
else:
    command_runner = module_utils.load("command_runner")
    CommandResult = command_runner.CommandResult

DEFAULT_CONFIG_DIR = Path("/etc/postfix")
# Serialises read-modify-write of the default main.cf between processes (flock).
ALTERNATES_LOCK = Path("/run/lock/relayguard-postfix-alternates.lock")
_HEADER = "Written by relayguard.lab.postfix: an isolated lab instance. Edits are overwritten."
_DEFAULT_MAIN_CF = (
    "# Minimal default-instance main.cf written by relayguard.lab.postfix because none existed\n"
    '# (Debian\'s "No configuration" install). It only lists alternate instances; the default\n'
    "# instance itself is not started by relayguard.\n"
    "compatibility_level = 3.6\n"
)
_REPLY_LINE = re.compile(rb"^(\d{3})([ -])(.*)$")
_COMMAND_TIMEOUT = 60.0
# Postfix rereads a main.cf younger than 2 s in 300 ms steps until it is older (util/dict.c
# dict_load_file_xt, "pausing to let ... cool down"), guarding against half-written files.
_COOL_AGE_S = 10.0


def _cool(path: Path) -> None:
    """Backdate a file we replaced atomically, so Postfix reads it without waiting."""
    past = time.time() - _COOL_AGE_S
    os.utime(path, (past, past))


class PostfixError(RuntimeError):
    """A Postfix instance could not be created, started, stopped or removed.

    `maillog_tail` holds the last lines of the instance's maillog (may be empty); the string
    form includes it so a failing test shows why Postfix refused.
    """

    def __init__(self, message: str, maillog_tail: str = "") -> None:
        self.message = message
        self.maillog_tail = maillog_tail
        text = message
        if maillog_tail:
            text += "\n--- maillog tail ---\n" + maillog_tail
        super().__init__(text)


def tool(name: str, package: str = "postfix") -> str:
    """Absolute path of a Postfix program (also looks in /usr/sbin, which root's PATH may lack)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        raise PostfixError(f"{name} not found: apt-get install {package}")
    return found


def run_command(argv: Sequence[str], timeout: float = _COMMAND_TIMEOUT) -> CommandResult:
    """Run a Postfix command with its stdout and stderr on a pseudo-terminal, bounded in time:
    the postfix_relay module's own runner (plugins/module_utils/command_runner.py)."""
    try:
        return command_runner.run_on_pty(argv, timeout)
    except command_runner.CommandError as exc:
        raise PostfixError(str(exc)) from None


def _postconf(config_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("postconf"), "-c", str(config_dir), *args],
        capture_output=True,
        text=True,
        timeout=_COMMAND_TIMEOUT,
        check=False,
    )


def postconf_value(config_dir: Path, name: str, *, expand: bool = False) -> str:
    """A parameter's value in `config_dir`'s main.cf (Postfix default when unset)."""
    result = _postconf(config_dir, "-hx" if expand else "-h", name)
    if result.returncode != 0:
        raise PostfixError(f"postconf -c {config_dir} {name} failed: {result.stderr.strip()}")
    return result.stdout.strip()


@cache
def daemon_directory() -> Path:
    """Where Postfix's daemons live (Debian: /usr/lib/postfix/sbin)."""
    result = subprocess.run(
        [tool("postconf"), "-dh", "daemon_directory"],
        capture_output=True,
        text=True,
        timeout=_COMMAND_TIMEOUT,
        check=False,
    )
    return Path(result.stdout.strip() or "/usr/lib/postfix/sbin")


# --- the default instance's alternate_config_directories -------------------------------


@contextlib.contextmanager
def _alternates_lock() -> Iterator[None]:
    lock_path = ALTERNATES_LOCK
    if not lock_path.parent.is_dir():
        lock_path = Path(tempfile.gettempdir()) / lock_path.name
    with open(lock_path, "a", encoding="ascii") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ensure_default_main_cf(default_config_dir: Path) -> None:
    main_cf = default_config_dir / "main.cf"
    if main_cf.exists():
        return
    default_config_dir.mkdir(parents=True, exist_ok=True)
    temporary = main_cf.with_name(f".main.cf.relayguard.{os.getpid()}")
    temporary.write_text(_DEFAULT_MAIN_CF, encoding="ascii")
    temporary.chmod(0o644)
    os.replace(temporary, main_cf)
    _cool(main_cf)


def registered_alternates(default_config_dir: Path = DEFAULT_CONFIG_DIR) -> list[str]:
    """The entries of the default instance's alternate_config_directories, as written."""
    if not (default_config_dir / "main.cf").exists():
        return []
    return split_list(postconf_value(default_config_dir, "alternate_config_directories"))


def _set_alternates(default_config_dir: Path, entries: list[str]) -> None:
    if entries:
        args = ["-e", f"alternate_config_directories = {', '.join(entries)}"]
    else:
        args = ["-X", "alternate_config_directories"]
    result = _postconf(default_config_dir, *args)
    if result.returncode != 0:
        raise PostfixError(
            f"could not update {default_config_dir}/main.cf: {result.stderr.strip()}"
        )
    _cool(default_config_dir / "main.cf")  # postconf -e/-X replaces it atomically too


def register_alternate(config_dir: Path, default_config_dir: Path = DEFAULT_CONFIG_DIR) -> None:
    """List `config_dir` in the default main.cf (idempotent; other entries kept).

    `postfix -c DIR` refuses a DIR the default instance does not list. When Debian's "No
    configuration" install left no /etc/postfix/main.cf, a minimal one is written first.
    """
    with _alternates_lock():
        _ensure_default_main_cf(default_config_dir)
        current = registered_alternates(default_config_dir)
        wanted = with_alternate(current, config_dir)
        if wanted != current:
            _set_alternates(default_config_dir, wanted)


def unregister_alternate(config_dir: Path, default_config_dir: Path = DEFAULT_CONFIG_DIR) -> None:
    """Drop `config_dir` from the default main.cf's alternates (idempotent; others kept)."""
    with _alternates_lock():
        current = registered_alternates(default_config_dir)
        wanted = without_alternate(current, config_dir)
        if wanted != current:
            _set_alternates(default_config_dir, wanted)


# --- processes ---------------------------------------------------------------------------


def _is_zombie(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True
    # The state letter follows the parenthesised command name, which may contain spaces.
    return status[status.rfind(")") + 2 : status.rfind(")") + 3] in {"Z", "X"}


def _mail_config_of(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    for entry in environ.split(b"\0"):
        if entry.startswith(b"MAIL_CONFIG="):
            return entry.split(b"=", 1)[1].decode("utf-8", "replace")
    return None


def instance_pids(layout: InstanceLayout) -> list[int]:
    """Live Postfix processes of this instance: Postfix daemons that run in its queue
    directory (master and every child chdir there) or carry its MAIL_CONFIG."""
    daemons = str(daemon_directory()) + "/"
    queue_dir = os.path.realpath(layout.queue_dir)
    config_dir = os.path.realpath(layout.config_dir)
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if not os.readlink(f"/proc/{pid}/exe").startswith(daemons):
                continue
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:  # gone, or a kernel thread
            continue
        mail_config = _mail_config_of(pid)
        same_config = mail_config is not None and os.path.realpath(mail_config) == config_dir
        if (cwd == queue_dir or same_config) and not _is_zombie(pid):
            found.append(pid)
    return sorted(found)


def _wait_until_gone(layout: InstanceLayout, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = instance_pids(layout)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def _maillog_tail(layout: InstanceLayout, lines: int = 25) -> str:
    try:
        text = layout.maillog.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def stop_instance(layout: InstanceLayout, timeout: float = 20.0) -> None:
    """Stop every process of the instance: ``postfix stop``, then SIGKILL by pid if needed.

    Works from the directory alone, so a test's cleanup can stop a half-created instance or
    one left behind by an interrupted run.
    """
    if not instance_pids(layout):
        return
    if layout.main_cf.exists():
        with contextlib.suppress(PostfixError):
            run_command([tool("postfix"), "-c", str(layout.config_dir), "stop"], timeout=timeout)
    leftovers = _wait_until_gone(layout, timeout)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    survivors = _wait_until_gone(layout, 5.0)
    if survivors:
        raise PostfixError(
            f"Postfix processes of {layout.root} survived SIGKILL: {survivors}",
            _maillog_tail(layout),
        )


def discard_instance(root: Path, default_config_dir: Path = DEFAULT_CONFIG_DIR) -> None:
    """Stop, unregister and delete the instance under `root` (whatever state it is in)."""
    layout = InstanceLayout(root.absolute())
    stop_instance(layout)
    unregister_alternate(layout.config_dir, default_config_dir)
    shutil.rmtree(layout.root, ignore_errors=True)


# --- the listener --------------------------------------------------------------------------

_TCP_LISTEN = "0A"  # include/net/tcp_states.h TCP_LISTEN, as /proc/net/tcp prints it


def _proc_net_address(hex_address: str) -> str:
    """/proc/net/tcp{,6} local address (32-bit words in host byte order) as text."""
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw))


def listening_endpoints() -> set[tuple[str, int]]:
    """(address, port) of every TCP socket listening on this machine (Linux /proc)."""
    found: set[tuple[str, int]] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == _TCP_LISTEN:
                address, port = fields[1].split(":")
                found.add((_proc_net_address(address), int(port, 16)))
    return found


def _refuse_taken(listener: Listener) -> None:
    # Postfix's master sets SO_REUSEPORT, so a second instance on a taken address:port starts
    # happily and the kernel shares connections between the two: refuse before starting.
    if (listener.address, listener.port) in listening_endpoints():
        raise PostfixError(f"{listener.endpoint} is already in use by another listener")


# --- readiness ---------------------------------------------------------------------------


def read_banner(listener: Listener, timeout: float) -> str:
    """Connect, read the whole 220 greeting, say QUIT; return the greeting's last line.

    Raises OSError when nothing answers and PostfixError when the greeting is not 220.
    """
    family = socket.AF_INET6 if listener.is_ipv6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((listener.address, listener.port))
        buffer = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                raise OSError("connection closed before the greeting ended")
            buffer += chunk
            if len(buffer) > 65536:
                raise PostfixError(f"greeting from {listener.endpoint} is too long")
            lines = buffer.split(b"\n")
            finished = [m for m in map(_REPLY_LINE.match, (x.rstrip(b"\r") for x in lines)) if m]
            if finished and finished[-1].group(2) == b" " and buffer.endswith(b"\n"):
                last = finished[-1]
                break
        with contextlib.suppress(OSError):
            sock.sendall(b"QUIT\r\n")
    text = last.group(0).decode("utf-8", "replace")
    if last.group(1) != b"220":
        raise PostfixError(f"{listener.endpoint} greeted with {text!r}, not 220")
    return text


# --- the instance ------------------------------------------------------------------------


def _check_searchable(path: Path) -> None:
    """Postfix daemons run as mail_owner: every directory above the instance must let
    others search it (o+x), or they cannot reach their queue and data directories."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            raise PostfixError(
                f"{parent} is not world-searchable (mode {stat.filemode(mode)}); "
                f"Postfix's daemons could not reach {path}: put the instance elsewhere"
            )


def _write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.chmod(0o644)
    os.replace(temporary, path)
    _cool(path)


class PostfixInstance:
    """One isolated Postfix instance: `root` directory, smtpd on `address`:`port`.

    `overrides` are main.cf parameters applied over the lab's plumbing
    (`postfix_config.base_parameters`); profiles supply the usual ones. With `postscreen`,
    postscreen(8) answers on the listener and hands clients to an `smtpd pass` service
    (POSTSCREEN_README). With `sasl_users` (name -> password), smtpd offers AUTH PLAIN/LOGIN
    checked against the instance's own Cyrus sasldb (SASL_README; needs sasl2-bin and
    libsasl2-modules). Use as a context manager (create + start, then remove) or call
    create/start/stop/remove yourself.
    """

    def __init__(
        self,
        root: Path | str,
        address: str,
        port: int = 25,
        overrides: Mapping[str, str] | None = None,
        *,
        name: str | None = None,
        default_config_dir: Path = DEFAULT_CONFIG_DIR,
        postscreen: bool = False,
        sasl_users: Mapping[str, str] | None = None,
    ) -> None:
        self.layout = InstanceLayout(Path(root).absolute())
        self.postscreen = postscreen
        self.sasl_users: dict[str, str] = dict(sasl_users or {})
        self.listener = Listener(address, port)
        self.name = validate_instance_name(name or instance_name_for(self.layout.root))
        self.overrides: dict[str, str] = dict(overrides or {})
        validate_parameters(self.overrides)
        self.default_config_dir = default_config_dir
        self.banner: str | None = None

    @classmethod
    def from_profile(
        cls,
        root: Path | str,
        address: str,
        lab_profile: PostfixProfile | str,
        port: int = 25,
        overrides: Mapping[str, str] | None = None,
        *,
        name: str | None = None,
        postscreen: bool = False,
        sasl_users: Mapping[str, str] | None = None,
    ) -> PostfixInstance:
        """An instance configured as `lab_profile` (a PostfixProfile or its name), plus
        `overrides` on top."""
        chosen = profile(lab_profile) if isinstance(lab_profile, str) else lab_profile
        merged = {**chosen.parameters, **(overrides or {})}
        return cls(
            root, address, port, merged, name=name, postscreen=postscreen, sasl_users=sasl_users
        )

    def __repr__(self) -> str:
        return f"PostfixInstance({str(self.layout.root)!r}, {self.listener.endpoint!r})"

    # -- facts ---------------------------------------------------------------------------

    @property
    def config_dir(self) -> Path:
        return self.layout.config_dir

    @property
    def address(self) -> str:
        return self.listener.address

    @property
    def port(self) -> int:
        return self.listener.port

    @property
    def target(self) -> str:
        """``address:port`` as relayguard probe takes it (``[v6]:port`` for IPv6)."""
        return self.listener.endpoint

    @property
    def parameters(self) -> dict[str, str]:
        """Every main.cf parameter this instance writes (plumbing, then overrides)."""
        plumbing = base_parameters(self.layout, self.listener, self.name)
        if self.postscreen:
            # postscreen greets new clients after this wait (default 6 s): keep tests quick.
            plumbing["postscreen_greet_wait"] = "1s"
        if self.sasl_users:
            plumbing.update(sasl_parameters(self.layout))
        return {**plumbing, **self.overrides}

    @property
    def hostname(self) -> str:
        """myhostname as configured (may contain $references if an override set it so)."""
        return self.parameters["myhostname"]

    def postconf(self, name: str) -> str:
        """A parameter's effective value, expanded, as Postfix sees it."""
        return postconf_value(self.config_dir, name, expand=True)

    def maillog_text(self) -> str:
        try:
            return self.layout.maillog.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def maillog_tail(self, lines: int = 25) -> str:
        return _maillog_tail(self.layout, lines)

    def pids(self) -> list[int]:
        return instance_pids(self.layout)

    def is_running(self) -> bool:
        return bool(self.pids())

    # -- lifecycle -----------------------------------------------------------------------

    def create(self) -> None:
        """Write the instance's directories and files and register it (idempotent)."""
        layout = self.layout
        _check_searchable(layout.root)
        owner = pwd.getpwnam(self.parameters.get("mail_owner", "postfix"))
        for directory in (layout.root, layout.config_dir, layout.queue_dir, layout.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o755)
        layout.data_dir.mkdir(exist_ok=True)
        os.chown(layout.data_dir, owner.pw_uid, owner.pw_gid)
        layout.data_dir.chmod(0o700)
        self._write_config()
        register_alternate(layout.config_dir, self.default_config_dir)
        self._check_config()

    def _write_config(self) -> None:
        _write(self.layout.main_cf, render_main_cf(self.parameters, _HEADER))
        master = render_master_cf(self.listener, _HEADER, postscreen=self.postscreen)
        _write(self.layout.master_cf, master)
        _write(self.layout.aliases, render_aliases())
        if self.sasl_users:
            self._write_sasl()

    def _write_sasl(self) -> None:
        """smtpd.conf and a sasldb holding `sasl_users`, readable by smtpd (mail_owner's
        group) and nobody else."""
        layout = self.layout
        layout.sasl_dir.mkdir(exist_ok=True)
        layout.sasl_dir.chmod(0o755)
        _write(layout.sasl_dir / "smtpd.conf", render_sasl_conf(layout))
        saslpasswd2 = tool("saslpasswd2", "sasl2-bin libsasl2-modules")
        for user, password in self.sasl_users.items():
            done = subprocess.run(
                [saslpasswd2, "-f", str(layout.sasldb), "-c", "-p", "-u", LAB_DOMAIN, user],
                input=password,
                capture_output=True,
                text=True,
                timeout=_COMMAND_TIMEOUT,
                check=False,
            )
            if done.returncode != 0:  # the password is never part of the message
                raise PostfixError(f"saslpasswd2 could not add {user!r}: {done.stderr.strip()}")
        group = pwd.getpwnam(self.parameters.get("mail_owner", "postfix")).pw_gid
        os.chown(layout.sasldb, 0, group)
        layout.sasldb.chmod(0o640)

    def _check_config(self) -> None:
        # postconf names parameters nothing uses: almost always a typo in an override.
        result = _postconf(self.config_dir, "-n")
        unused = [line for line in result.stderr.splitlines() if "unused parameter" in line]
        if result.returncode != 0 or unused:
            problem = "\n".join(unused) or result.stderr.strip()
            raise PostfixError(f"main.cf of {self.layout.root} is not valid: {problem}")

    def _postfix(self, action: str, timeout: float = _COMMAND_TIMEOUT) -> CommandResult:
        return run_command([tool("postfix"), "-c", str(self.config_dir), action], timeout)

    def start(self, timeout: float = 30.0) -> str:
        """``postfix -c DIR start``, then wait (bounded) until the 220 greeting answers.

        Returns the greeting line (also kept in `banner`).
        """
        if not self.layout.main_cf.exists():
            raise PostfixError(f"{self.layout.root} has no main.cf: call create() first")
        if self.is_running():
            raise PostfixError(f"{self!r} is already running (pids {self.pids()})")
        _refuse_taken(self.listener)
        register_alternate(self.config_dir, self.default_config_dir)
        result = self._postfix("start", timeout)
        if result.returncode != 0:
            raise PostfixError(
                f"postfix -c {self.config_dir} start failed (exit {result.returncode}): "
                f"{result.output}",
                self.maillog_tail(),
            )
        self.banner = self.wait_ready(timeout)
        return self.banner

    def wait_ready(self, timeout: float = 30.0) -> str:
        """Wait (bounded) until the listener greets with 220; return the greeting line."""
        deadline = time.monotonic() + timeout
        last_error = "no attempt made"
        while time.monotonic() < deadline:
            try:
                return read_banner(self.listener, min(5.0, max(deadline - time.monotonic(), 0.1)))
            except OSError as exc:
                last_error = str(exc) or type(exc).__name__
            if not self.is_running():
                raise PostfixError(
                    f"{self!r} exited before answering ({last_error})", self.maillog_tail()
                )
            time.sleep(0.1)
        raise PostfixError(
            f"{self.listener.endpoint} did not greet within {timeout:g}s ({last_error})",
            self.maillog_tail(),
        )

    def update(self, overrides: Mapping[str, str]) -> None:
        """Change main.cf parameters; a running instance reloads and greets again."""
        validate_parameters(overrides)
        self.overrides.update(overrides)
        self._write_config()
        self._check_config()
        if self.is_running():
            result = self._postfix("reload")
            if result.returncode != 0:
                raise PostfixError(f"postfix reload failed: {result.output}", self.maillog_tail())
            self.banner = self.wait_ready()

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the instance and wait until none of its processes is left (bounded)."""
        stop_instance(self.layout, timeout)

    def remove(self) -> None:
        """Stop, drop the alternate_config_directories entry, delete the directory."""
        discard_instance(self.layout.root, self.default_config_dir)

    def __enter__(self) -> PostfixInstance:
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
