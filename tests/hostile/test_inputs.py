"""Hostile and malformed values at every user-facing entry point: a clear one-line error
naming the field, no traceback, and no remote call (a listener that must see no connection).

Entry points: `relayguard probe` flags and targets, `relayguard facts`, `build`, `report`,
`lab`, and the option checking of the smtp_relay_probe, exchange_facts and postfix_relay
modules. exchange_relay and exchange_patch: tests/exchange_remediation/test_hostile_inputs.py.
NUL bytes are fed in-process only: a real argv cannot carry them (execve takes C strings).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support.scripted_smtp import Script, ScriptedServer, relay_policy, serve

from relayguard.cli import main
from relayguard.exchange.winrm_settings import winrm_settings
from relayguard.lab import module_utils
from relayguard.probe import confirm
from relayguard.probe.options import checked_options
from relayguard.probe.targets import TargetError, parse_target
from relayguard.validate import InputError

ROOT = Path(__file__).resolve().parents[2]
CANARY = Path("/tmp/relayguard-hostile-canary")

# The classes of hostile text every string field is fed.
HOSTILE = {
    "command-substitution": f"$(touch {CANARY})",
    "backticks": f"`touch {CANARY}`",
    "quotes": "a'b\"c",
    "newline": "mx.example.com\nMAIL FROM:<x@y>",
    "nul": "a\x00b",
    "semicolon": "a;b",
    "oversized": "a" * 5000,
    "idn": "bücher.example",
    "empty": "",
}


def cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def refused(code: int, out: str, err: str, command: str, field: str) -> None:
    """Exit 1, nothing on stdout, one stderr line naming the field, no traceback."""
    assert code == 1, (out, err)
    assert "Traceback" not in out + err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"relayguard {command}"), err
    assert field in last, err
    assert not CANARY.exists()


@pytest.fixture(scope="module")
def smtp() -> Iterator[ScriptedServer]:
    with serve(Script(relay_policy(False)), host="127.0.3.150") as srv:
        yield srv


# -- relayguard probe --------------------------------------------------------------------------

PROBE_FLAGS = [
    (flag, field, value)
    for flag, field in (
        ("--external-domain", "external_domain"),
        ("--local-domain", "local_domain"),
        ("--helo", "helo_name"),
        ("--source-address", "source_address"),
    )
    for value in HOSTILE.values()
] + [
    ("--local-domain", "local_domain", "[300.1.2.3]"),
    ("--local-domain", "local_domain", "[IPv6:zz::1]"),
    ("--source-address", "source_address", "10.0.0.0/8"),
    ("--timeout", "timeout", "0"),
    ("--timeout", "timeout", "-5"),
    ("--timeout", "timeout", "nan"),
    ("--timeout", "timeout", "1e9"),
    ("--host-timeout", "host_timeout", "inf"),
    ("--port", "port", "0"),
    ("--port", "port", "70000"),
    ("--port", "--port", "25;id"),
    ("--connections-per-host", "connections_per_host", "0"),
    ("--connections-per-host", "connections_per_host", "1000"),
    ("--max-hosts", "max_hosts_in_flight", "0"),
    ("--rcpts-per-transaction", "rcpts_per_transaction", "-1"),
    ("--timeout", "--timeout", "$(id)"),
    ("--sink", "sink", "127.0.3.151"),  # without --confirm
    ("--via", "via", "ssh://ops@jump.example;id"),
    ("--via", "via", "ftp://jump.example"),
]


@pytest.mark.parametrize(("flag", "field", "value"), PROBE_FLAGS)
def test_probe_flags(smtp: ScriptedServer, flag: str, field: str, value: str) -> None:
    before = smtp.stats.connections
    code, out, err = cli(["probe", f"{flag}={value}", smtp.target])
    refused(code, out, err, "probe", field)
    assert smtp.stats.connections == before


PROBE_TARGETS = [
    *HOSTILE.values(),
    "127.0.3.150:99999",
    "127.0.3.150:0",
    "[::1",
    "[::1]x",
    "1.2.3.4:abc",
    "10.0.0.0/8",
    "host name",
    "-oProxyCommand=id",
    "a..b",
    "-leading.example",
]


@pytest.mark.parametrize("target", PROBE_TARGETS)
def test_probe_targets(smtp: ScriptedServer, target: str) -> None:
    """A bad target refuses the whole run: the good target listed with it is not probed."""
    before = smtp.stats.connections
    code, out, err = cli(["probe", "--timeout", "2", smtp.target, "--", target])
    refused(code, out, err, "probe", "target")
    assert smtp.stats.connections == before


def test_probe_confirm_needs_an_ip_sink(smtp: ScriptedServer) -> None:
    before = smtp.stats.connections
    code, out, err = cli(["probe", "--confirm", "--sink", "sink.example;id", smtp.target])
    refused(code, out, err, "probe", "sink")
    assert smtp.stats.connections == before


def test_the_listener_does_see_a_valid_probe(smtp: ScriptedServer) -> None:
    """The control: the same invocation with good values reaches the server."""
    before = smtp.stats.connections
    code, _, err = cli(["probe", "--timeout", "2", smtp.target])
    assert code == 0, err
    assert smtp.stats.connections > before


# -- relayguard facts (WinRM) ----------------------------------------------------------------


@pytest.fixture
def winrm_listener() -> Iterator[tuple[int, Callable[[], int]]]:
    """A TCP listener standing in for WinRM; yields (port, count of connections made so far).

    The count drains the accept queue each time it is read, so a connection the client made
    before the assertion is counted (the kernel completes the handshake without an accept).
    """
    sock = socket.socket()
    sock.bind(("127.0.3.151", 0))
    sock.listen(8)
    sock.setblocking(False)
    seen = [0]

    def count() -> int:
        with contextlib.suppress(BlockingIOError):
            while True:
                sock.accept()[0].close()
                seen[0] += 1
        return seen[0]

    try:
        yield sock.getsockname()[1], count
    finally:
        sock.close()


FACTS_CASES = [
    ("host", ["HOST:" + v for v in HOSTILE.values()]),
    ("username", ["--username=" + v for v in ("a\nb", "a\x00b", "a;b", 'a"b', "a" * 300, "")]),
    ("command_timeout", ["--timeout=-1", "--timeout=nan", "--timeout=99999"]),
    ("ca_trust_path", ["--ca-trust-path=/nonexistent/ca.pem", "--ca-trust-path=a\x00b"]),
    ("--password-env", ["--password-env=not a name", "--password-env=$(id)"]),
    ("port", ["--port=0", "--port=65536"]),
    ("--port", ["--port=5986;id"]),
    ("--transport", ["--transport=basic;id"]),
]


@pytest.mark.parametrize(
    ("field", "arg"), [(field, arg) for field, args in FACTS_CASES for arg in args]
)
def test_facts_arguments(
    winrm_listener: tuple[int, Callable[[], int]],
    monkeypatch: pytest.MonkeyPatch,
    field: str,
    arg: str,
) -> None:
    port, connections = winrm_listener
    monkeypatch.setenv("RG_HOSTILE_PW", "not-the-real-one")
    host = arg[5:] if arg.startswith("HOST:") else "127.0.3.151"
    extra = [] if arg.startswith("HOST:") else [arg]
    argv = ["facts", "--username=admin", "--password-env=RG_HOSTILE_PW", f"--port={port}"]
    if arg.startswith("--port") or arg.startswith("--username") or arg.startswith("--password"):
        argv = [a for a in argv if not a.startswith(arg.split("=")[0] + "=")]
    code, out, err = cli([*argv, *extra, "--", host])
    refused(code, out, err, "facts", field)
    assert connections() == 0


def test_the_listener_does_see_a_valid_facts_call(
    winrm_listener: tuple[int, Callable[[], int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: with good values the same invocation reaches the listener (so the
    assertion above can fail)."""
    port, connections = winrm_listener
    monkeypatch.setenv("RG_HOSTILE_PW", "not-the-real-one")
    argv = ["facts", "--username=admin", "--password-env=RG_HOSTILE_PW", f"--port={port}"]
    code, _, _ = cli([*argv, "--timeout=3", "--", "127.0.3.151"])
    assert code != 0  # nothing answers WinRM there
    assert connections() >= 1


# -- relayguard build / report / lab ---------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "field"),
    [
        *(([v], "version: not a version number") for v in HOSTILE.values() if v.strip()),
        (["15.2.1544.4", "--as-of=`id`"], "--as-of: not a date"),
        (["15.2.1544.4", "--as-of=2026-02-30"], "--as-of: not a date"),
        (["5.5.2653", "--msexcimc=$(id)"], "--msexcimc: not a version number"),
        (["5.5.2653", "--msexcimc=5.5.2653.;id"], "--msexcimc: not a version number"),
    ],
)
def test_build_arguments(args: list[str], field: str) -> None:
    code, out, err = cli(["build", *args])
    refused(code, out, err, "build", field)


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/nonexistent/report.json", "cannot read /nonexistent/report.json"),
        ("/etc/passwd", "/etc/passwd is not JSON"),
        ("$(id)", "cannot read $(id)"),
        ("a;b", "cannot read a;b"),
        pytest.param("x" * 5000, "cannot read"),
    ],
)
def test_report_arguments(path: str, named: str) -> None:
    code, out, err = cli(["report", path])
    refused(code, out, err, "report", named)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--first-address=$(id)"], "--first-address: '$(id)' is not an IP address"),
        (["--first-address=BAD"], "--first-address: 'BAD' is not an IP address"),
        (["--first-address=10.0.0.1"], "--first-address: '10.0.0.1' is outside the lab range"),
        (["--first-address=::1"], "--first-address: '::1' is outside the lab range"),
        (["--first-address=127.0.30.1;id"], "--first-address: '127.0.30.1;id' is not an IP"),
        (["--hosts=exchange2019:abc"], "--hosts"),
        (["--hosts=`id`:1"], "--hosts"),
        (["--hosts=postfix:0"], "--hosts"),
        (["--tarpit=-1"], "--tarpit"),
        (["--fleet=$(id)"], "--fleet"),
    ],
)
def test_lab_up_arguments(tmp_path: Path, args: list[str], named: str) -> None:
    """Nothing is started: the lab directory holds no state afterwards."""
    lab = tmp_path / "lab"
    code, out, err = cli(["lab", "up", f"--dir={lab}", *args])
    refused(code, out, err, "lab", named)
    assert not (lab / "state.json").exists()
    code, out, _ = cli(["lab", "status", f"--dir={lab}", "--json"])
    assert code == 1 and json.loads(out)["up"] is False


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["build", "5" * 5000], "version"),
        (["build", "5.5.2653", "--msexcimc=" + "5" * 5000], "--msexcimc"),
        (["build", "5.5.2653", "--as-of=" + "2" * 5000], "--as-of"),
        (
            ["lab", "up", "--dir=/nonexistent/relayguard-lab", "--first-address=" + "1" * 5000],
            "--first-address",
        ),
        (["probe", "--helo=" + "a" * 5000, "127.0.3.150"], "helo_name"),
    ],
)
def test_an_oversized_value_is_echoed_as_a_bounded_prefix(argv: list[str], field: str) -> None:
    """The error names the field and shows the first 64 characters and the length, not the
    whole 5,000-character value."""
    code, out, err = cli(argv)
    refused(code, out, err, argv[0], field)
    last = err.strip().splitlines()[-1]
    assert "…(5,000 characters)" in last
    assert len(last) < 300, last


# -- module option checking (the library functions the modules call first) -------------------

PROBE_OPTIONS: list[tuple[str, Any]] = [
    *(("external_domain", v) for v in HOSTILE.values()),
    *(("local_domain", v) for v in HOSTILE.values()),
    *(("helo_name", v) for v in HOSTILE.values()),
    *(("source_address", v) for v in HOSTILE.values()),
    ("port", "25"),
    ("port", 25.0),
    ("port", True),
    ("port", [25]),
    ("timeout", "30"),
    ("timeout", None),
    ("host_timeout", {"a": 1}),
    ("connections_per_host", 2.5),
    ("starttls", "yes"),
    ("pipelining", 1),
    ("mail_from_local", "a b"),
    ("rcpt_to_local", "$(id)"),
    ("rcpt_to_local", "x" * 65),
]


@pytest.mark.parametrize(("field", "value"), PROBE_OPTIONS)
def test_smtp_relay_probe_options(field: str, value: Any) -> None:
    with pytest.raises(InputError) as caught:
        checked_options(**{field: value})
    named = {"mail_from_local": "from", "rcpt_to_local": "to"}.get(field, field)
    assert str(caught.value).startswith(f"{named}: ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("value", [*HOSTILE.values(), "10.0.0.0/8", "[::1"])
def test_smtp_relay_probe_targets(value: str) -> None:
    with pytest.raises(TargetError) as caught:
        parse_target(value)
    assert str(caught.value).startswith("target ")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((True, None, 120), "sink"),
        ((True, "sink.example", 120), "sink"),
        ((True, "$(id)", 120), "sink"),
        ((True, "127.0.3.151", -1), "confirm_timeout"),
        (("yes", "127.0.3.151", 120), "confirm"),
        ((False, "127.0.3.151", 120), "sink"),
    ],
)
def test_smtp_relay_probe_confirm_settings(args: tuple[Any, Any, Any], field: str) -> None:
    with pytest.raises(InputError) as caught:
        confirm.checked_settings(*args)
    assert str(caught.value).startswith(f"{field}: ")


EXCHANGE_FACTS: list[tuple[str, str, Any]] = [
    *(("host", "target", v) for v in HOSTILE.values()),
    ("host", "target", 42),
    ("port", "port", "5986"),
    ("port", "port", 0),
    ("transport", "transport", "ntlm;id"),
    ("server_cert_validation", "server_cert_validation", "no"),
    ("username", "user", "a\r\nb"),
    ("username", "user", 7),
    ("ca_trust_path", "ca_trust_path", "/nonexistent"),
    ("operation_timeout", "operation_timeout", 2.5),
    ("connect_timeout", "connect_timeout", "10"),
    ("command_timeout", "command_timeout", -1),
]


@pytest.mark.parametrize(("field", "kwarg", "value"), EXCHANGE_FACTS)
def test_exchange_facts_options(field: str, kwarg: str, value: Any) -> None:
    kwargs: dict[str, Any] = {"target": "127.0.3.151", kwarg: value}
    target = kwargs.pop("target")
    with pytest.raises(InputError) as caught:
        winrm_settings(target, **kwargs)
    assert str(caught.value).startswith(f"{field}: ")


def _postfix_backend() -> ModuleType:
    module_utils.load("command_runner")  # what the backend imports outside Ansible
    path = ROOT / "plugins" / "module_utils" / "postfix_relay_backend.py"
    spec = importlib.util.spec_from_file_location("hostile_postfix_backend", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


POSTFIX: list[tuple[str, Any]] = [
    *(("relay_allowed_networks", [v]) for v in HOSTILE.values()),
    ("relay_allowed_networks", ["10.0.0.1/8"]),
    ("relay_allowed_networks", ["10.0.0.0/33"]),
    ("relay_allowed_networks", ["10.0.0.0/8, 0.0.0.0/0"]),
    ("relay_allowed_networks", "10.0.0.0/8"),
    ("relay_allowed_networks", [8]),
    *(("inbound_domains", [v]) for v in HOSTILE.values()),
    ("inbound_domains", ["example.com."]),
    ("inbound_domains", ["192.0.2.1"]),
    ("relay_authenticated", "yes"),
    ("relay_refusal", "reject;id"),
    ("config_dir", "etc/postfix"),
    ("config_dir", "/etc/postfix/../../tmp"),
    ("config_dir", "/etc/postfix\x00"),
    ("config_dir", "/etc/$(id)"),
    ("backup_keep", "10"),
    ("backup_keep", True),
    ("backup_keep", 0),
    ("state", "absent"),
]


@pytest.mark.parametrize(("field", "value"), POSTFIX)
def test_postfix_relay_options(tmp_path: Path, field: str, value: Any) -> None:
    """Refused before anything is read or written: main.cf and the backups stay as they were."""
    backend = _postfix_backend()
    config = tmp_path / "postfix"
    config.mkdir()
    (config / "main.cf").write_text("mynetworks = 127.0.0.0/8\n")
    options: dict[str, Any] = {
        "state": "present",
        "config_dir": str(config),
        "relay_allowed_networks": ["192.0.2.0/24"],
        "inbound_domains": ["example.net"],
        field: value,
    }
    with pytest.raises(backend.InputError) as caught:
        backend.run(options, False, False)
    assert field in str(caught.value).split(":")[0]
    assert "\n" not in str(caught.value)
    assert (config / "main.cf").read_text() == "mynetworks = 127.0.0.0/8\n"
    assert sorted(os.listdir(config)) == ["main.cf"]


def test_smtp_relay_probe_module_refuses_without_probing(
    smtp: ScriptedServer, tmp_path: Path
) -> None:
    """The module itself (run as Ansible runs it): wrong types and hostile values fail the
    task with the field named, and the listed server sees no connection."""
    before = smtp.stats.connections
    for field, value in (
        ("external_domain", "$(id)"),
        ("port", "twenty-five"),
        ("timeout", [1]),
        ("local_domain", "a\nb"),
    ):
        args = tmp_path / "args.json"
        args.write_text(
            json.dumps({"ANSIBLE_MODULE_ARGS": {"targets": [smtp.target], field: value}})
        )
        proc = subprocess.run(
            [sys.executable, str(ROOT / "plugins" / "modules" / "smtp_relay_probe.py"), str(args)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        result = json.loads(proc.stdout)
        assert result["failed"] is True
        assert field in result["msg"]
        assert "Traceback" not in proc.stdout + proc.stderr
    assert smtp.stats.connections == before
