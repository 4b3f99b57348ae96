"""Each test process (each pytest-xdist worker) in a network namespace of its own, as root.

The lab and the real-server tests listen on fixed loopback addresses (127.0.4.1:25 for a
Postfix profile, 127.0.58.10 for a playbook fleet …): two processes running them at once
would collide. A new network namespace has a loopback of its own (the whole of 127.0.0.0/8
and ::1), so each worker gets its own copy of every address and the workers never see each
other's listeners — that is what lets `make test` run the suite on several workers without
giving every test file an address range per worker. unshare(2), CLONE_NEWNET: "Unshare the
network namespace, so that the calling process is moved into a new network namespace which
is not shared with any previously existing process"; the loopback starts down, so it is
brought up before the first test.

Traffic stays where the brief wants it: on this private loopback, or in the namespaces the
netns tests create (`ip netns` names are global and already carry the creating pid).
Filesystem state stays shared (Postfix's alternate-instance registry, the lock files), which
is why the tests that use it are grouped onto one worker (`xdist_group`, see conftest.py).

Only as root (unshare(CLONE_NEWNET) needs CAP_SYS_ADMIN); otherwise nothing happens and the
Makefile does not ask for workers. RELAYGUARD_TEST_NETNS=0 turns it off.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from typing import Any

CLONE_NEWNET = 0x40000000  # <sched.h>


def wanted() -> bool:
    return (
        sys.platform.startswith("linux")
        and os.geteuid() == 0
        and os.environ.get("RELAYGUARD_TEST_NETNS", "1") != "0"
    )


_entered: list[str] = []
_host_network: list[int] = []  # a descriptor of the namespace this process left


def entered() -> bool:
    """This process runs on a private network (enter() succeeded)."""
    return bool(_entered)


def enter() -> str:
    """Moves this process into a new network namespace with its loopback up; returns the
    namespace's inode (for the log), or raises naming what failed."""
    libc = ctypes.CDLL(None, use_errno=True)
    _host_network.append(os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC))
    if libc.unshare(CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare(CLONE_NEWNET) failed: {os.strerror(errno)}")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)
    _entered.append(os.readlink("/proc/thread-self/ns/net"))
    return _entered[-1]


def _rejoin_host_network() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(_host_network[0], CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns(CLONE_NEWNET) failed: {os.strerror(errno)}")


def on_host_network() -> dict[str, Any]:
    """subprocess.run keyword arguments that start the child on the machine's own network
    (the one this process left): for a setup step that must reach a package index, such as
    pip installing a clean controller's ansible-core. Nothing when this process never left."""
    if not _host_network:
        return {}
    return {"preexec_fn": _rejoin_host_network, "pass_fds": (_host_network[0],)}
