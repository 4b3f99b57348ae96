"""The lab's Postfix instance library on a real Postfix: lifecycle, registration, failures.

Addresses 127.0.4.10-127.0.4.19 (servers) and 127.0.4.210 (client), apart from the profile
fixtures' 127.0.4.1-4.
"""

from __future__ import annotations

import os
import signal
import smtplib
import socket
from pathlib import Path

import pytest
from support.realserver import require_root, require_tool

from relayguard.lab.postfix.instance import (
    PostfixError,
    PostfixInstance,
    register_alternate,
    registered_alternates,
    unregister_alternate,
)

pytestmark = [pytest.mark.realserver, pytest.mark.root]

CLIENT = "127.0.4.210"


@pytest.fixture
def lab(postfix_lab: Path, request: pytest.FixtureRequest) -> Path:
    require_root()
    require_tool("postfix")
    directory = postfix_lab / request.node.name.replace("_", "-")[:40]
    directory.mkdir()
    directory.chmod(0o755)
    return directory


def _refuses(address: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(5)
        return sock.connect_ex((address, port)) != 0


def test_lifecycle_serves_the_profile_then_leaves_nothing(lab: Path) -> None:
    server = PostfixInstance.from_profile(lab / "life", "127.0.4.10", "closed")
    with server:
        assert server.banner == "220 life.relayguard.test ESMTP Postfix"
        assert str(server.config_dir) in registered_alternates()
        assert server.is_running()
        assert server.postconf("mynetworks") == "127.0.0.1/32"
        with smtplib.SMTP(timeout=10, source_address=(CLIENT, 0)) as client:
            client.connect(server.address, server.port)
            client.ehlo("client.example.net")
            assert client.mail("<antispam@example.com>")[0] == 250
            code, reply = client.rcpt("<relaytest@example.com>")
        assert (code, b"Relay access denied" in reply) == (554, True)
        assert f"[{CLIENT}]" in server.maillog_text()
    assert server.pids() == []
    assert str(server.config_dir) not in registered_alternates()
    assert not server.layout.root.exists()
    assert _refuses(server.address, server.port)


def test_registration_is_idempotent_and_keeps_other_entries(lab: Path) -> None:
    other = lab / "someone-elses-instance" / "config"
    register_alternate(other)
    try:
        server = PostfixInstance(lab / "reg", "127.0.4.11")
        server.create()
        server.create()  # again: still listed once
        listed = registered_alternates()
        assert listed.count(str(server.config_dir)) == 1
        assert str(other) in listed
        server.remove()
        assert str(server.config_dir) not in registered_alternates()
        assert str(other) in registered_alternates()
    finally:
        unregister_alternate(other)
    assert str(other) not in registered_alternates()


def test_start_failure_reports_the_maillog(lab: Path) -> None:
    # An IPv4 listener with IPv4 disabled: `postfix start` only says "mail system startup
    # failed"; master's reason is in the maillog, and the error must carry it.
    server = PostfixInstance(lab / "v6only", "127.0.4.12", overrides={"inet_protocols": "ipv6"})
    try:
        server.create()
        with pytest.raises(PostfixError) as failure:
            server.start(timeout=20)
        assert "bad hostname or network address: 127.0.4.12:25" in failure.value.maillog_tail
        assert "bad hostname or network address" in str(failure.value)
        assert server.pids() == []
    finally:
        server.remove()


def test_a_taken_listener_is_refused(lab: Path) -> None:
    # Postfix's master binds with SO_REUSEPORT: without this check a second instance would
    # start and silently share the first one's connections.
    with PostfixInstance(lab / "first", "127.0.4.17") as first:
        second = PostfixInstance(lab / "second", "127.0.4.17")
        try:
            second.create()
            with pytest.raises(PostfixError, match=r"127\.0\.4\.17:25 is already in use"):
                second.start()
            assert second.pids() == []
            assert first.is_running()
        finally:
            second.remove()


def test_stop_kills_an_instance_that_ignores_postfix_stop(lab: Path) -> None:
    server = PostfixInstance(lab / "stuck", "127.0.4.13")
    with server:
        master = int(server.layout.master_pid_file.read_text().strip())
        os.kill(master, signal.SIGSTOP)  # SIGTERM from `postfix stop` now stays pending
        server.stop(timeout=2)
        assert server.pids() == []
        assert _refuses(server.address, server.port)


def test_update_reconfigures_a_running_instance(lab: Path) -> None:
    with PostfixInstance.from_profile(lab / "upd", "127.0.4.14", "debian_default") as server:
        assert server.banner == "220 upd.relayguard.test ESMTP Postfix (Debian/GNU)"
        server.update({"smtpd_banner": "$myhostname ESMTP remediated"})
        assert server.banner == "220 upd.relayguard.test ESMTP remediated"
        assert server.postconf("smtpd_banner") == "upd.relayguard.test ESMTP remediated"


def test_a_misspelt_parameter_is_refused(lab: Path) -> None:
    server = PostfixInstance(lab / "typo", "127.0.4.15", overrides={"mynetwork": "0.0.0.0/0"})
    try:
        with pytest.raises(PostfixError, match="unused parameter: mynetwork"):
            server.create()
    finally:
        server.remove()


def test_a_private_parent_directory_is_refused(tmp_path: Path) -> None:
    require_root()
    require_tool("postfix")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    server = PostfixInstance(private / "x", "127.0.4.16")
    with pytest.raises(PostfixError, match="not world-searchable"):
        server.create()
    assert not (private / "x").exists()
