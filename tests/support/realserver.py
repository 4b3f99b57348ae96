"""Gatekeeping for tests that need a real server or tool.

Outside CI a missing tool skips the test with a reason that says what to install; in CI
(``CI=true``) the same absence is a failure, because CI installs everything `.ci/run` needs.
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# tool -> what to install (Debian package) so the skip reason is actionable
_PACKAGES = {
    "postfix": "postfix",
    "postconf": "postfix",
    "nmap": "nmap",
    "swaks": "swaks",
    "sshd": "openssh-server",
    "ip": "iproute2",
    "chromium": "chromium",
    "nsd": "nsd",
    "smbclient": "smbclient",
    "net": "samba-common-bin",
    "saslpasswd2": "sasl2-bin libsasl2-modules",
}


def _which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")


def require_tool(*tools: str) -> None:
    """Skip (or fail, in CI) unless every tool is installed."""
    missing = [t for t in tools if _which(t) is None]
    if not missing:
        return
    pkgs = sorted({_PACKAGES.get(t, t) for t in missing})
    message = f"needs {', '.join(missing)}: apt-get install {' '.join(pkgs)}"
    if IN_CI:
        pytest.fail(f"CI must run this test but {message}")
    pytest.skip(message)


def require_root() -> None:
    """Skip (or fail, in CI) unless running as root."""
    if os.geteuid() == 0:
        return
    if IN_CI:
        pytest.fail("CI runs as root; this test needs root (network namespaces, port 25)")
    pytest.skip("needs root (network namespaces, postfix instances): run `sudo make test`")


def tool_path(tool: str) -> str:
    require_tool(tool)
    found = _which(tool)
    assert found is not None
    return found
