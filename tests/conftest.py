"""Shared pytest configuration: make tests/support importable; the CI gate (no skips in CI)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from support.ci_gate import pytest_runtest_makereport  # a hook, re-exported for pytest

__all__ = ["pytest_runtest_makereport"]
