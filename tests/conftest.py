"""Shared pytest configuration: make tests/support importable; the CI gate (no skips in CI);
each test process on a private network (support/private_network.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support import private_network  # noqa: E402
from support.ci_gate import pytest_runtest_makereport  # noqa: E402  (a hook, re-exported)

__all__ = ["pytest_runtest_makereport"]

_NETNS = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    if private_network.wanted():
        config.stash[_NETNS] = private_network.enter()


def pytest_report_header(config: pytest.Config) -> str | None:
    netns = config.stash.get(_NETNS, None)
    return f"private network namespace: {netns}" if netns else None


# Tests that share state outside the network (the filesystem, a system-wide registry) run on
# one worker: under `--dist loadgroup` each group goes to a single worker. Every other test
# file is its own group, so a file's module-scoped lab fleet is brought up once, on one worker.
_SHARED_GROUPS = {
    # Postfix's alternate-instance registry (multi_instance_directories in the system main.cf)
    # and its session lock: one session of these at a time (tests/postfix/conftest.py).
    "tests/postfix/": "postfix-lab",
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        path = item.nodeid.split("::", 1)[0]
        group = next((g for prefix, g in _SHARED_GROUPS.items() if path.startswith(prefix)), path)
        item.add_marker(pytest.mark.xdist_group(group))
