"""Fixtures for the report tests: an 8-host enforce run and a 3-host audit run."""

from __future__ import annotations

from typing import Any

import pytest

from report.samples import audit_report, fleet_report


@pytest.fixture
def fleet_doc() -> dict[str, Any]:
    return fleet_report()


@pytest.fixture
def audit_doc() -> dict[str, Any]:
    return audit_report()


def host(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(h for h in doc["hosts"] if h["host"] == name)
    return found
