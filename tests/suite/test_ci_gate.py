"""The CI gate fails a skipped test when CI=true and leaves it a skip otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SUPPORT = Path(__file__).resolve().parents[1] / "support"

SAMPLE = """
import pytest

def test_skips():
    pytest.skip("needs swaks: apt-get install swaks")

@pytest.mark.skipif(True, reason="needs nmap")
def test_marked():
    pass

@pytest.mark.xfail(reason="known", strict=False)
def test_xfails():
    assert False

def test_passes():
    pass
"""


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(SUPPORT)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "ci_gate", "-q", "-rA", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_in_ci_every_skip_fails(tmp_path: Path) -> None:
    done = _run(tmp_path, "true")
    assert done.returncode == 1, done.stdout
    # a skip in the call phase is a failure; a skipif marker (setup phase) an error
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in done.stdout, done.stdout
    assert "needs swaks: apt-get install swaks" in done.stdout
    assert "CI must run every test" in done.stdout


def test_outside_ci_a_skip_stays_a_skip(tmp_path: Path) -> None:
    done = _run(tmp_path, None)
    assert done.returncode == 0, done.stdout
    assert "1 passed, 2 skipped, 1 xfailed" in done.stdout, done.stdout
