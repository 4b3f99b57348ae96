"""The exim_relay module: its documentation matches its spec, bad input is refused naming the
option; on a real open Exim check mode plans and enforce closes the wildcard that matches anyone
without relay_allow_removals (swaks refused afterwards), while a narrower network the plan drops
is named and refused unless allowed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from relayguard.lab import module_utils
from relayguard.lab.exim.instance import EximInstance, exim_binary

from .conftest import EXIM_SOURCE, _require_unpacked
from .swaks import SWAKS_NO_RECIPIENT, swaks

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "plugins" / "modules" / "exim_relay.py"
COLLECTIONS = REPO / "collections"
module_utils.load("relay_options")
exim_options = module_utils.load("exim_options")


def run_module(args: dict[str, Any], tmp_path: Path, check: bool = False) -> dict[str, Any]:
    arguments = {**args, "_ansible_check_mode": check, "_ansible_diff": True}
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": arguments}), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(MODULE), str(path)],
        env={**os.environ, "PYTHONPATH": str(COLLECTIONS)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_documentation_matches_the_spec() -> None:
    source = MODULE.read_text(encoding="utf-8")
    start = source.index('DOCUMENTATION = r"""') + len('DOCUMENTATION = r"""')
    documented = yaml.safe_load(source[start : source.index('"""', start)])["options"]
    spec = exim_options.EXIM_RELAY_SPEC
    assert set(documented) == set(spec)
    for name, option in spec.items():
        assert documented[name]["type"] == option["type"], name
        assert documented[name].get("default") == option.get("default"), name
        assert documented[name].get("required", False) == option.get("required", False), name


def test_a_bad_network_is_refused_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "exim.conf"
    config.write_text("hostlist relay_from_hosts = 0.0.0.0/0\n", encoding="utf-8")
    result = run_module(
        {"config": str(config), "style": "plain", "relay_allowed_networks": ["10.0.0.1/8"]},
        tmp_path,
    )
    assert result["failed"] and "relay_allowed_networks: '10.0.0.1/8'" in result["msg"]
    assert config.read_text(encoding="utf-8") == "hostlist relay_from_hosts = 0.0.0.0/0\n"


def test_a_legitimate_network_dropped_is_refused_without_allow_removals(tmp_path: Path) -> None:
    text = "hostlist relay_from_hosts = 127.0.0.1 : 0.0.0.0/0 : 10.9.0.0/16\n"
    config = tmp_path / "exim.conf"
    config.write_text(text, encoding="utf-8")
    args = {"config": str(config), "style": "plain", "relay_allowed_networks": ["10.20.0.0/16"]}
    refused = run_module(args, tmp_path)
    assert refused["failed"] and "relay_allow_removals" in refused["msg"], refused
    assert refused["removals"] == ["exim.conf relay_from_hosts: 10.9.0.0/16"]
    assert config.read_text(encoding="utf-8") == text  # nothing changed


@pytest.fixture
def open_exim(mta_lab: Path) -> Iterator[EximInstance]:
    _require_unpacked(exim_binary)
    with EximInstance(mta_lab / "exim-module", "127.0.110.11", "open_relay") as server:
        yield server


@pytest.mark.realserver
@pytest.mark.root
def test_module_plans_then_closes_a_real_exim(open_exim: EximInstance, tmp_path: Path) -> None:
    args = {
        "config": str(open_exim.config),
        "style": "plain",
        "exim_binary": str(exim_binary()),
        "pid_file": str(open_exim.layout.root / "exim.pid"),
        "relay_allowed_networks": ["10.20.0.0/16"],
    }
    before = open_exim.config.read_text(encoding="utf-8")

    planned = run_module(args, tmp_path, check=True)
    # 0.0.0.0/0 and ::/0 match anyone: closing them is the fix, not a removal to allow
    assert planned["changed"] and planned["removals"] == [], planned
    assert "0.0.0.0/0" not in planned["diff"]["after"].split("relay_from_hosts", 1)[1][:80]
    assert open_exim.config.read_text(encoding="utf-8") == before

    done = run_module(args, tmp_path)
    assert done["changed"] and done["reloaded"], done
    assert Path(done["backup_file"]).read_text(encoding="utf-8") == before
    open_exim.stop()  # restart rather than wait on the SIGHUP re-exec
    open_exim.start()
    run = swaks(open_exim.target, EXIM_SOURCE, "c@example.org", quit_after="RCPT")
    assert run.returncode == SWAKS_NO_RECIPIENT, run.transcript


def _backed_up(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "exim.conf"
    config.write_text("hostlist relay_from_hosts = 127.0.0.1\n", encoding="utf-8")
    copy = tmp_path / "exim.conf.relayguard-20240101T000000-1"
    copy.write_text("hostlist relay_from_hosts = 0.0.0.0/0\n", encoding="utf-8")
    return config, copy


def _restore(config: Path, pairs: list[dict[str, str]]) -> dict[str, Any]:
    return {"state": "restored", "config": str(config), "style": "plain", "backup_files": pairs}


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ("outside", "is outside the backup directory"),
        ("missing", "does not exist"),
        ("other-file", "is not a file this backend manages"),
    ],
)
def test_restore_refuses_a_copy_it_did_not_take_naming_it(
    tmp_path: Path, where: str, problem: str
) -> None:
    config, copy = _backed_up(tmp_path)
    path, given = str(config), str(copy)
    if where == "outside":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        given = str(elsewhere / copy.name)
        Path(given).write_text("anything\n", encoding="utf-8")
    elif where == "missing":
        given = str(copy) + "-gone"
    else:
        path = "/etc/passwd"
    result = run_module(_restore(config, [{"path": path, "copy": given}]), tmp_path)
    assert result["failed"] and problem in result["msg"], result
    assert (path if where == "other-file" else given) in result["msg"]
    assert config.read_text(encoding="utf-8") == "hostlist relay_from_hosts = 127.0.0.1\n"


def test_restore_in_check_mode_shows_the_diff_and_changes_nothing(tmp_path: Path) -> None:
    config, copy = _backed_up(tmp_path)
    pairs = [{"path": str(config), "copy": str(copy)}]
    result = run_module(_restore(config, pairs), tmp_path, check=True)
    assert result["changed"] and result["restored"] == [str(config)], result
    assert "0.0.0.0/0" in result["diff"][0]["after"]
    assert config.read_text(encoding="utf-8") == "hostlist relay_from_hosts = 127.0.0.1\n"


def test_restore_puts_the_file_back_byte_for_byte(tmp_path: Path) -> None:
    config, copy = _backed_up(tmp_path)
    pairs = [{"path": str(config), "copy": str(copy)}]
    # no daemon (no pid file): nothing to reload; plain style: nothing to regenerate
    result = run_module({**_restore(config, pairs), "pid_file": ""}, tmp_path)
    assert result["changed"] and not result.get("failed"), result
    assert config.read_bytes() == copy.read_bytes()
    again = run_module({**_restore(config, pairs), "pid_file": ""}, tmp_path)
    assert again["changed"] is False, again
