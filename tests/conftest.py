"""Shared pytest configuration: make tests/support importable; the CI gate (no skips in CI);
each test process on a private network (support/private_network.py)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support import private_network
from support.ci_gate import pytest_runtest_makereport

__all__ = ["pytest_runtest_makereport"]

_NETNS = pytest.StashKey[str]()


def _xdist_controller(config: pytest.Config) -> bool:
    """This process hands tests to pytest-xdist workers and runs none itself: it stays on the
    machine's network, so each worker leaves that one (and can return to it: a package index)."""
    workers = config.getoption("numprocesses", default=None)
    return not hasattr(config, "workerinput") and workers not in (None, 0, "0")


def pytest_configure(config: pytest.Config) -> None:
    if private_network.wanted() and not _xdist_controller(config):
        netns = private_network.enter()
        config.stash[_NETNS] = netns
        # relayguard's per-host change lock is named after the host's address: on a private
        # network the same address is another worker's host, so each network its own locks
        inode = netns.strip("net:[]")
        os.environ.setdefault(
            "RELAYGUARD_LOCK_DIR", str(Path(tempfile.gettempdir()) / f"relayguard-locks-net{inode}")
        )


def pytest_report_header(config: pytest.Config) -> str | None:
    netns = config.stash.get(_NETNS, None)
    return f"private network namespace: {netns}" if netns else None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`--dist loadfile` (make test): whole files, shared groups together, heavy ones first."""
    if config.getvalue("dist") != "loadfile":
        return None
    from support.scheduling import FileGroupScheduling

    return FileGroupScheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    from support.scheduling import heavy_first

    heavy_first(items)
