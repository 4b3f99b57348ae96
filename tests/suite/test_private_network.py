"""As root, each test process runs on a network of its own (tests/support/private_network.py):
what lets `make test` run the lab's fixed loopback addresses on several workers at once."""

from __future__ import annotations

import os
import socket

import pytest
from support import private_network


def _parents_network() -> str:
    """The network of the process that started this one (a shell, or xdist's controller,
    which stays on the machine's network)."""
    return os.readlink(f"/proc/{os.getppid()}/ns/net")


@pytest.mark.skipif(not private_network.wanted(), reason="needs root (unshare CLONE_NEWNET)")
def test_this_process_is_on_a_private_network_with_its_loopback_up() -> None:
    assert private_network.entered()
    assert os.readlink("/proc/thread-self/ns/net") != _parents_network()
    with (
        socket.create_server(("127.0.58.254", 0)) as server,  # loopback is up
        socket.create_connection(server.getsockname(), timeout=5),
    ):
        pass


@pytest.mark.skipif(not private_network.wanted(), reason="needs root (setns CLONE_NEWNET)")
def test_a_child_can_be_started_on_the_machines_network() -> None:
    import subprocess

    here = os.readlink("/proc/thread-self/ns/net")
    there = subprocess.run(
        ["readlink", "/proc/self/ns/net"],
        capture_output=True,
        text=True,
        check=True,
        **private_network.on_host_network(),
    ).stdout.strip()
    assert there != here
    assert there == _parents_network()
