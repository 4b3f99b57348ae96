"""The collection artifact: what `ansible-galaxy collection build` puts in it, and that it
installs and works on a controller with nothing of relayguard but the tarball.

The "clean controller" is a virtual environment made with the controller's Python holding only
ansible-core (the same version as .venv's), cached under .venv-cache/ keyed by that version so
repeated runs cost one `pip install`. Every ansible command runs from an empty directory, with
HOME and the collections path pointed into tmp, so neither this repository's ansible.cfg, its
collections/ link, ~/.ansible nor the editable relayguard package can leak in.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import warnings
from collections.abc import Iterator
from importlib.metadata import version as dist_version
from pathlib import Path

import pytest
import yaml
from support import private_network

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CORE_VERSION = dist_version("ansible-core")
PY = f"{sys.version_info.major}.{sys.version_info.minor}"
CACHE = ROOT / ".venv-cache" / f"ansible-core-{CORE_VERSION}-py{PY}"

# The official SemVer 2.0.0 pattern (semver.org).
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)

# What the artifact may hold at its top level: the collection's own directories and files.
ALLOWED_TOP = {
    "MANIFEST.json",
    "FILES.json",
    "README.md",
    "CHANGELOG.rst",
    "LICENSE",
    "changelogs",
    "docs",
    "inventory",
    "meta",
    "playbooks",
    "plugins",
    "roles",
}
# Never in the artifact, wherever they sit.
FORBIDDEN_PARTS = {
    "src",
    "tests",
    ".venv",
    ".git",
    ".lab",
    "collections",
    "reports",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
}
SECRETS = {"inventory/example/vault-password.txt"}


def _galaxy() -> dict[str, object]:
    data = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    assert isinstance(data, dict)
    return data


def _run(
    cmd: list[str], *, env: dict[str, str], cwd: Path, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    galaxy = _galaxy()
    tarball = out / f"{galaxy['namespace']}-{galaxy['name']}-{galaxy['version']}.tar.gz"
    assert tarball.is_file(), sorted(p.name for p in out.iterdir())
    return tarball


@pytest.fixture(scope="module")
def fresh_python() -> Path:
    """A venv with only ansible-core, made with the controller's Python (cached by version)."""
    stamp = CACHE / ".complete"
    with _locked(CACHE.parent / f"{CACHE.name}.lock"):
        if not stamp.is_file():
            shutil.rmtree(CACHE, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(CACHE)], check=True, timeout=300)
            subprocess.run(
                [
                    str(CACHE / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    f"ansible-core=={CORE_VERSION}",
                ],
                check=True,
                timeout=900,
                # the package index is on the machine's network, not a worker's private one
                **private_network.on_host_network(),
            )
            stamp.write_text(CORE_VERSION + "\n")
    return CACHE / "bin"


@pytest.fixture(scope="module")
def clean(
    tmp_path_factory: pytest.TempPathFactory, artifact: Path, fresh_python: Path
) -> tuple[dict[str, str], Path]:
    """The clean controller's environment, with the artifact installed; returns (env, cwd)."""
    base = tmp_path_factory.mktemp("controller")
    home, cwd, collections = base / "home", base / "work", base / "collections"
    for d in (home, cwd, collections):
        d.mkdir()
    env = {
        "PATH": f"{fresh_python}:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_LOCAL_TEMP": str(base / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_PYTHON_INTERPRETER": str(fresh_python / "python"),
    }
    proc = _run(
        [
            str(fresh_python / "ansible-galaxy"),
            "collection",
            "install",
            "--offline",
            "-p",
            str(collections),
            str(artifact),
        ],
        env=env,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = collections / "ansible_collections" / "relayguard" / "mail"
    assert (installed / "MANIFEST.json").is_file(), proc.stdout + proc.stderr
    return env, cwd


def _members(tarball: Path) -> list[str]:
    with tarfile.open(tarball) as tar:
        return [m.name.removeprefix("./") for m in tar.getmembers()]


def test_galaxy_version_is_semver_and_equals_pyproject() -> None:
    galaxy = str(_galaxy()["version"])
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert SEMVER.match(galaxy), f"galaxy.yml version {galaxy!r} is not SemVer"
    assert galaxy == pyproject, f"galaxy.yml {galaxy} != pyproject.toml {pyproject}"


def test_artifact_holds_the_collection_and_nothing_else(artifact: Path) -> None:
    names = _members(artifact)
    top = {n.split("/", 1)[0] for n in names if n}
    assert top <= ALLOWED_TOP, f"unexpected top-level entries: {sorted(top - ALLOWED_TOP)}"
    leaked = sorted(n for n in names if FORBIDDEN_PARTS & set(n.split("/")))
    assert not leaked, f"build_ignore lets these in: {leaked[:20]}"
    assert not SECRETS & set(names)
    assert not [n for n in names if n.endswith((".pyc", ".tar.gz", ".egg-info"))]
    with tarfile.open(artifact) as tar:
        links = [m.name for m in tar.getmembers() if m.issym() or m.islnk()]
        manifest = json.load(tar.extractfile("MANIFEST.json"))  # type: ignore[arg-type]
        files = json.load(tar.extractfile("FILES.json"))  # type: ignore[arg-type]
    assert not links, f"links in the artifact (the collections/ loop?): {links}"
    info = manifest["collection_info"]
    galaxy = _galaxy()
    assert (info["namespace"], info["name"], info["version"]) == (
        galaxy["namespace"],
        galaxy["name"],
        galaxy["version"],
    )
    listed = {f["name"] for f in files["files"]}
    # FILES.json is the artifact's own inventory: every module and the playbook are in it.
    modules = {f"plugins/modules/{p.name}" for p in (ROOT / "plugins" / "modules").glob("*.py")}
    assert modules, "no modules in plugins/modules"
    assert modules <= listed, sorted(modules - listed)
    assert "playbooks/secure_relay.yml" in listed
    assert "meta/runtime.yml" in listed
    assert not {f for f in listed - {"."} if f.split("/", 1)[0] not in ALLOWED_TOP}
    assert not SECRETS & listed


def test_the_clean_controller_has_no_relayguard_engine(fresh_python: Path) -> None:
    proc = subprocess.run(
        [str(fresh_python / "python"), "-c", "import relayguard"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode != 0 and "No module named 'relayguard'" in proc.stderr


def test_ansible_doc_for_every_module(clean: tuple[dict[str, str], Path]) -> None:
    env, cwd = clean
    bindir = Path(env["PATH"].split(":", 1)[0])
    proc = _run([str(bindir / "ansible-doc"), "-l", "-j", "relayguard.mail"], env=env, cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = set(json.loads(proc.stdout))
    expected = {f"relayguard.mail.{p.stem}" for p in (ROOT / "plugins" / "modules").glob("*.py")}
    assert listed == expected, proc.stderr
    failures = {}
    for name in sorted(listed):
        doc = _run([str(bindir / "ansible-doc"), "-j", name], env=env, cwd=cwd)
        problem = doc.returncode != 0 or "WARNING" in doc.stderr or "ERROR" in doc.stderr
        if not problem:
            parsed = json.loads(doc.stdout).get(name, {})
            problem = not parsed.get("doc", {}).get("short_description")
        if problem:
            failures[name] = (doc.stdout[-500:] + doc.stderr)[-1500:]
    assert not failures, json.dumps(failures, indent=1)


def test_ansible_doc_for_the_roles_argument_specs(clean: tuple[dict[str, str], Path]) -> None:
    env, cwd = clean
    bindir = Path(env["PATH"].split(":", 1)[0])
    roles = sorted(
        p.parent.parent.name
        for p in (ROOT / "roles").glob("*/meta/argument_specs.y*ml")
        if p.suffix in {".yml", ".yaml"}
    )
    if not roles:
        # Not a skip: with CI=true a skip fails the run. The argument specs are added to the
        # roles separately; until then there is nothing for `ansible-doc -t role` to show.
        warnings.warn("no role has meta/argument_specs.yml yet", stacklevel=1)
        return
    failures = {}
    for role in roles:
        name = f"relayguard.mail.{role}"
        doc = _run([str(bindir / "ansible-doc"), "-t", "role", "-j", name], env=env, cwd=cwd)
        if (
            doc.returncode != 0
            or "ERROR" in doc.stderr
            or name not in json.loads(doc.stdout or "{}")
        ):
            failures[name] = (doc.stdout[-500:] + doc.stderr)[-1500:]
    assert not failures, json.dumps(failures, indent=1)


def test_the_playbook_passes_syntax_check_by_fqcn(clean: tuple[dict[str, str], Path]) -> None:
    env, cwd = clean
    bindir = Path(env["PATH"].split(":", 1)[0])
    proc = _run(
        [
            str(bindir / "ansible-playbook"),
            "relayguard.mail.secure_relay",
            "--syntax-check",
            "-i",
            "localhost,",
        ],
        env=env,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ERROR" not in proc.stderr, proc.stderr


def test_a_module_without_the_engine_says_what_is_required(
    clean: tuple[dict[str, str], Path],
) -> None:
    """missing_required_lib: a clear failure naming relayguard, not a MODULE FAILURE traceback.

    The target is the loopback discard port: nothing leaves this machine even if it ran.
    """
    env, cwd = clean
    bindir = Path(env["PATH"].split(":", 1)[0])
    proc = _run(
        [
            str(bindir / "ansible"),
            "localhost",
            "-m",
            "relayguard.mail.smtp_relay_probe",
            "-a",
            "targets=127.0.0.1:1",
        ],
        env=env,
        cwd=cwd,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "FAILED" in out, out
    assert "Traceback" not in out, out
    assert "MODULE FAILURE" not in out, out
    assert re.search(r"relayguard.{0,200}required|required.{0,200}relayguard", out, re.S), out
