"""The execution environment definition builds a context with ansible-builder (no engine)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ansible_builder_creates_the_context(tmp_path: Path) -> None:
    context = tmp_path / "context"
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-builder"),
            "create",
            "-f",
            str(ROOT / "execution-environment.yml"),
            "-c",
            str(context),
            "--output-filename",
            "Containerfile",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (context / "Containerfile").read_text()
    assert "pip install --no-cache-dir /opt/relayguard" in containerfile
    build = context / "_build"
    assert (build / "relayguard" / "pyproject.toml").is_file()
    assert (build / "relayguard" / "src" / "relayguard" / "probe" / "runner.py").is_file()
    assert (build / "relayguard" / "modules" / "smtp_relay_probe.py").is_file()
    assert "pywinrm" in (build / "requirements.txt").read_text()
    assert "openssh-client" in (build / "bindep.txt").read_text()


def test_ee_requirements_match_the_package_dependencies() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    runtime = {d for d in declared if not d.startswith("ansible-core")}
    lines = (ROOT / "ee" / "requirements.txt").read_text().splitlines()
    listed = {line for line in lines if line and not line.startswith("#")}
    assert listed == runtime
