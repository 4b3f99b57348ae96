"""The counts docs/reliability.md gives are the counts the named tests run: a test added or
removed there without the figure changing fails here (issue: figures in docs match what the
tests count)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RELIABILITY = ROOT / "docs" / "reliability.md"


def collected(path: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", path],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return [line for line in proc.stdout.splitlines() if "::" in line]


def figure(tests_cell: str) -> int:
    """The N of the row's "N / N" figure, for the row whose tests column is `tests_cell`."""
    for line in RELIABILITY.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[2] == tests_cell:
            match = re.match(r"(\d[\d,]*) / (\d[\d,]*)", cells[1])
            assert match, f"no 'N / N' figure in the row of {tests_cell}: {cells[1]!r}"
            assert match.group(1) == match.group(2), line
            return int(match.group(1).replace(",", ""))
    raise AssertionError(f"docs/reliability.md has no row for {tests_cell}")


@pytest.mark.parametrize(
    ("cell", "path", "count"),
    [
        # every test of the file is one hostile server behaviour
        ("`hostile/test_servers.py`", "tests/hostile/test_servers.py", "items"),
        # one property per test function (some are parametrized)
        ("`hostile/test_safety.py`", "tests/hostile/test_safety.py", "functions"),
        # every refused input, less the controls that prove the listeners count
        ("`hostile/test_inputs.py`", "tests/hostile/test_inputs.py", "items-less-controls"),
    ],
)
def test_reliability_figure_is_what_the_tests_count(cell: str, path: str, count: str) -> None:
    items = collected(path)
    if count == "functions":
        items = sorted({item.split("[", 1)[0] for item in items})
    elif count == "items-less-controls":
        items = [i for i in items if "::test_the_listener_does_see_" not in i]
    assert figure(cell) == len(items), (
        f"docs/reliability.md says {figure(cell)}, {path}: {len(items)}"
    )
