"""The CI gate as a pytest plugin: with CI=true, a skipped test is a failed test.

CI installs everything `.ci/run` needs and runs as root, so a test that skips there hides a
missing install step (the brief: "in CI a test that needs a real server must run, never
skip"). Outside CI a skip stays a skip, with the reason that says what to install.
An expected failure (xfail) is not a skip and is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _reason(longrepr: Any) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None]:
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} skipped with CI=true ({_reason(report.longrepr)}); "
            "CI must run every test: install what the reason names in .ci/run"
        )
