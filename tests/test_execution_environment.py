"""The execution environment is made from the release artifacts: `scripts/ee.sh` (make ee)
builds the collection tarball and the engine's wheel and creates the ansible-builder context
(no container engine needed); the collection's own meta/execution-environment.yml carries the
Python requirements into any EE that includes it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


def _requirements(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    context = tmp_path_factory.mktemp("ee") / "context"
    proc = subprocess.run(
        [str(ROOT / "scripts" / "ee.sh"), str(context)],
        cwd=ROOT,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(Path.home()), "BIN": str(BIN)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return context


def test_the_context_holds_the_collection_artifact(context: Path) -> None:
    tarball = context / "_build" / "collections" / "relayguard-mail.tar.gz"
    with tarfile.open(tarball) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))  # type: ignore[arg-type]
        names = set(tar.getnames())
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == ("relayguard", "mail", VERSION)
    for member in (
        "plugins/modules/smtp_relay_probe.py",
        "meta/execution-environment.yml",
        "meta/ee-requirements.txt",
        "meta/ee-bindep.txt",
    ):
        assert member in names
    assert not [n for n in names if n.split("/", 1)[0] in {"src", "tests", ".venv"}]
    galaxy = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert galaxy["collections"] == [
        {"name": "/build/collections/relayguard-mail.tar.gz", "type": "file"}
    ]


def test_the_context_holds_the_engine_wheel(context: Path) -> None:
    wheels = sorted((context / "_build" / "wheels").glob("*.whl"))
    assert [w.name for w in wheels] == [f"relayguard-{VERSION}-py3-none-any.whl"]
    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
    assert "relayguard/probe/runner.py" in names
    assert not [n for n in names if n.startswith(("tests/", "plugins/"))]


def test_the_containerfile_is_pinned_and_needs_no_library_path_hacks(context: Path) -> None:
    containerfile = (context / "Containerfile").read_text()
    base = re.search(r'^ARG EE_BASE_IMAGE="([^"]+)"', containerfile, re.M)
    assert base, containerfile
    image = base.group(1)
    assert re.search(r":\d+\.\d+\.\d+$|@sha256:[0-9a-f]{64}$", image), image
    assert "latest" not in image
    assert "ANSIBLE_LIBRARY" not in containerfile
    assert "ANSIBLE_MODULE_UTILS" not in containerfile
    assert "/opt/relayguard" not in containerfile
    # The galaxy stage installs the tarball; the builder stage finds the engine's wheel.
    assert "COPY _build /build" in containerfile
    assert "ansible-galaxy collection install" in containerfile
    assert "ENV PIP_FIND_LINKS=/build/wheels" in containerfile


def test_ee_requirements_are_pyproject_runtime_deps_plus_the_engine() -> None:
    declared = PYPROJECT["project"]["dependencies"]
    runtime = [d for d in declared if not d.startswith("ansible-core")]
    listed = _requirements(ROOT / "meta" / "ee-requirements.txt")
    assert listed[0] == f"relayguard=={VERSION}"
    assert sorted(listed[1:]) == sorted(runtime)
    meta = yaml.safe_load((ROOT / "meta" / "execution-environment.yml").read_text())
    assert meta["dependencies"] == {
        "python": "meta/ee-requirements.txt",
        "system": "meta/ee-bindep.txt",
    }


def test_builder_introspection_of_the_installed_collection(context: Path, tmp_path: Path) -> None:
    """What the builder stage computes from the installed collection: the engine and its deps."""
    collections = tmp_path / "collections"
    proc = subprocess.run(
        [
            str(BIN / "ansible-galaxy"),
            "collection",
            "install",
            "--offline",
            "-p",
            str(collections),
            str(context / "_build" / "collections" / "relayguard-mail.tar.gz"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pip, bindep = tmp_path / "requirements.txt", tmp_path / "bindep.txt"
    proc = subprocess.run(
        [
            sys.executable,
            str(context / "_build" / "scripts" / "introspect.py"),
            "introspect",
            str(collections),
            f"--write-pip={pip}",
            f"--write-bindep={bindep}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    computed = {line.split("  #", 1)[0] for line in _requirements(pip)}
    assert f"relayguard=={VERSION}" in computed
    assert "pywinrm>=0.5.0" in computed
    assert "openssh-client [platform:dpkg]" in bindep.read_text()
