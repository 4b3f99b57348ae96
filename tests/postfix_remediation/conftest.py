"""Fixtures of the Postfix remediation tests: real Postfix instances, removed even on failure.

Loopback allocation (notes/common.md): Postfix remediation owns 127.0.70.0/24 — servers
127.0.70.1-99, the allowed "app server" client 127.0.70.100, outsiders 127.0.70.200.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.realserver import require_root, require_tool

from postfix_remediation import netlab
from relayguard.lab.postfix.instance import PostfixInstance, listening_endpoints, run_command, tool

APP_CLIENT = "127.0.70.100"
OUTSIDER = "127.0.70.200"
INBOUND_DOMAIN = "example.net"
_server_addresses = (f"127.0.70.{n}" for n in range(1, 100))


def public_tmpdir(prefix: str) -> Path:
    """A directory every parent of which others can search (Postfix daemons run as postfix),
    unlike pytest's tmp_path (mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


@pytest.fixture
def public_dir() -> Iterator[Path]:
    path = public_tmpdir("rgpr-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


PostfixFactory = Callable[..., PostfixInstance]


@pytest.fixture
def postfix_instance(public_dir: Path) -> Iterator[PostfixFactory]:
    """Start real Postfix instances on 127.0.70.x; each is stopped and removed at the end."""
    require_root()
    require_tool("postfix", "postconf", "postmap")
    started: list[PostfixInstance] = []

    def start(
        profile: str = "open_relay", overrides: Mapping[str, str] | None = None
    ) -> PostfixInstance:
        parameters = {"relay_domains": INBOUND_DOMAIN, **(overrides or {})}
        with netlab.slot_lock():  # another run of this suite may be choosing an address too
            taken = listening_endpoints()
            address = next(a for a in _server_addresses if (a, 25) not in taken)
            name = f"rgpr{os.getpid() % 100000}{address.rsplit('.', 1)[1]}"
            instance = PostfixInstance.from_profile(
                public_dir / name, address, profile, overrides=parameters, name=name
            )
            started.append(instance)
            instance.create()
            instance.start()
        return instance

    yield start
    errors = []
    for instance in started:
        try:
            instance.remove()
        except Exception as exc:  # keep removing the others
            errors.append(exc)
    assert not errors, errors


# --- the namespaced test network: mail host, jump host, real sshd ------------------------


@dataclass
class MailNetwork:
    """A built TestNetwork with its Postfix instance and sshd processes (all removed at end)."""

    network: netlab.TestNetwork
    work: Path
    client_key: Path
    mail_postfix: PostfixInstance | None = None
    servers: list[netlab.SshServer] = field(default_factory=list)

    @property
    def addr(self) -> netlab.Addresses:
        return self.network.addresses

    @property
    def target(self) -> str:
        """The mail host's SMTP service as the probe takes it."""
        return f"{self.addr.mail}:25"

    def jump_spec(self, port: int = netlab.SSH_PORT) -> str:
        return f"ssh://root@{self.addr.jump}:{port}"

    def trusting_controller_lan(self) -> dict[str, str]:
        """main.cf overrides of a mail host that (rightly) trusts the controller's LAN."""
        return {
            "mynetworks": f"127.0.0.1/32, {self.addr.controller_lan}",
            "relay_domains": INBOUND_DOMAIN,
        }

    def start_postfix(self, overrides: Mapping[str, str]) -> PostfixInstance:
        """A real Postfix instance in the mail namespace listening on the mail address:25."""
        instance = PostfixInstance.from_profile(
            self.work / "mx", self.addr.mail, "debian_default", overrides=overrides, name="mx"
        )
        self.mail_postfix = instance
        instance.create()
        started = run_command(
            self.network.mail.argv([tool("postfix"), "-c", str(instance.config_dir), "start"])
        )
        assert started.returncode == 0, started.output
        instance.wait_ready(30)
        return instance

    def start_sshd(
        self,
        namespace: netlab.Namespace,
        address: str,
        name: str,
        port: int = netlab.SSH_PORT,
        extra_config: str = "",
    ) -> netlab.SshServer:
        server = netlab.SshServer(
            namespace, address, self.work / name, self.client_key, port, extra_config
        )
        self.servers.append(server)
        return server.start()

    def start_jump_sshd(
        self, name: str = "jump-sshd", port: int = netlab.SSH_PORT, extra_config: str = ""
    ) -> netlab.SshServer:
        return self.start_sshd(self.network.jump, self.addr.jump, name, port, extra_config)

    def start_mail_sshd(self) -> netlab.SshServer:
        return self.start_sshd(self.network.mail, self.addr.mail, "mail-sshd")

    def close(self) -> None:
        try:
            for server in self.servers:
                server.stop()
            if self.mail_postfix is not None:
                self.mail_postfix.remove()
        finally:
            self.network.close()


@pytest.fixture
def mail_network() -> Iterator[MailNetwork]:
    """Namespaces + veths + a key pair; Postfix and sshd are started by the test as needed.
    Everything is stopped and removed when the test ends, passed or failed."""
    require_root()
    require_tool("ip", "sshd", "postfix", "postconf", "postmap")
    netlab.remove_stale()
    work = public_tmpdir("rgpr-net-")
    network = netlab.TestNetwork()
    lab = MailNetwork(network, work, work / "client_key")
    try:
        network.build()
        netlab.make_key(lab.client_key)
        yield lab
    finally:
        try:
            lab.close()
        finally:
            shutil.rmtree(work, ignore_errors=True)
