"""Real Postfix instances on 127.0.170.0/24 for the postscreen, multi-instance and SASL tests
(issue 18): servers 127.0.170.1-99, the allowed "app server" 127.0.170.100, the outsider
127.0.170.200. Each instance is removed at the end, passed or failed.

The server is judged with swaks (a client nobody here wrote) from the outsider address:
relaying is refused at RCPT (swaks exit 24), mail to the inbound domain is accepted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.realserver import require_root, require_tool, tool_path

from postfix_remediation import netlab
from postfix_remediation.backend import backend
from postfix_remediation.conftest import public_tmpdir
from relayguard.lab.postfix.instance import PostfixInstance, listening_endpoints, tool

APP = "127.0.170.100"
OUTSIDER = "127.0.170.200"
INBOUND = "example.net"
FOREIGN = "relaytest@elsewhere.example"
_addresses = tuple(f"127.0.170.{n}" for n in range(1, 100))

# swaks(1) "EXIT CODES": 0 success, 24 no recipients accepted, 28 authentication failed
SWAKS_OK = 0
SWAKS_NO_RECIPIENT = 24

Factory = Callable[..., PostfixInstance]


@pytest.fixture
def postfix170() -> Iterator[Factory]:
    """Start real Postfix instances on 127.0.170.x (PostfixInstance.from_profile's keyword
    arguments pass through: postscreen, sasl_users)."""
    require_root()
    require_tool("postfix", "postconf", "postmap", "swaks")
    started: list[tuple[PostfixInstance, Path]] = []

    def start(
        profile: str, overrides: Mapping[str, str] | None = None, **options: object
    ) -> PostfixInstance:
        root = public_tmpdir("rg170-")
        with netlab.slot_lock():
            taken = listening_endpoints()
            address = next(a for a in _addresses if (a, 25) not in taken)
            name = f"rg170-{os.getpid() % 100000}-{address.rsplit('.', 1)[1]}"
            instance = PostfixInstance.from_profile(
                root / name,
                address,
                profile,
                overrides={"relay_domains": INBOUND, **(overrides or {})},
                name=name,
                **options,  # type: ignore[arg-type]
            )
            started.append((instance, root))
            instance.create()
            instance.start()
        return instance

    yield start
    errors = []
    for instance, root in started:
        try:
            instance.remove()
        except Exception as exc:  # keep removing the others
            errors.append(exc)
        shutil.rmtree(root, ignore_errors=True)
    assert not errors, errors


@dataclass(frozen=True)
class Swaks:
    returncode: int
    transcript: str


def swaks(
    instance: PostfixInstance,
    recipient: str,
    source: str = OUTSIDER,
    *,
    auth: tuple[str, str] | None = None,
    deliver: bool = False,
) -> Swaks:
    """One swaks session from `source`; it quits after RCPT unless `deliver` (DATA is sent
    only for mail to the inbound domain). With `auth` (user, password) it logs in with AUTH
    PLAIN first; the password is hidden in the transcript (--auth-hide-password)."""
    argv = [
        tool_path("swaks"),
        "--server",
        instance.target,
        "--local-interface",
        source,
        "--from",
        "sender@example.com",
        "--to",
        recipient,
        "--timeout",
        "30",
    ]
    if not deliver:
        argv += ["--quit-after", "RCPT"]
    if auth is not None:
        user, password = auth
        argv += ["--auth", "PLAIN", "--auth-user", user, "--auth-password", password]
        argv += ["--auth-hide-password"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=90, check=False)
    return Swaks(done.returncode, done.stdout + done.stderr)


def relays(instance: PostfixInstance, **options: object) -> bool:
    """Whether the outsider (or `source`) gets a foreign recipient accepted; anything but
    accepted-or-refused-at-RCPT fails the test with the transcript."""
    run = swaks(instance, FOREIGN, **options)  # type: ignore[arg-type]
    expected = (SWAKS_OK, SWAKS_NO_RECIPIENT)
    assert run.returncode in expected, (run.transcript, instance.maillog_tail())
    return run.returncode == SWAKS_OK


def delivered(instance: PostfixInstance, source: str = OUTSIDER) -> bool:
    """Mail to the inbound domain is accepted whole (DATA answered 250)."""
    run = swaks(instance, f"postmaster@{INBOUND}", source, deliver=True)
    return run.returncode == SWAKS_OK and "250 2.0.0 Ok: queued" in run.transcript


def module_run(instance: PostfixInstance, check_mode: bool = False, **options: object) -> object:
    """The module's body (postfix_relay_backend.run) on the instance."""
    result = backend.run(
        {"config_dir": str(instance.config_dir), **options}, check_mode=check_mode, want_diff=True
    )
    if getattr(result, "reloaded", False):
        # an idle smtpd serves one more connection with the old configuration after a
        # reload: let the lab's greeting be that connection (PostfixInstance.update does too)
        instance.wait_ready(30)
    return result


def postconf(instance: PostfixInstance, *args: str) -> str:
    done = subprocess.run(
        [tool("postconf"), "-c", str(instance.config_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def reload(instance: PostfixInstance) -> None:
    subprocess.run(
        [tool("postfix"), "-c", str(instance.config_dir), "reload"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    instance.wait_ready(30)
