"""Preflight reachability (relay_reachability, `relayguard.reachability`): one call per batch
connects to every host's SMTP and management endpoints at once; a host that does not answer
ends `unreachable` in the report, with the endpoint and the cause, and the others go on."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml

from playbook.fleet import lab_fleet
from relayguard.probe.targets import TargetError
from relayguard.reachability import endpoint, reach_all


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens on it any more


def test_reach_all_tells_answering_from_refusing_and_connects_once_per_endpoint() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        here = endpoint("smtp", f"127.0.0.1:{port}")
        gone = endpoint("smtp", f"127.0.0.1:{closed_port()}")
        found = reach_all([here, gone, here], timeout=5)
        listener.settimeout(1)
        listener.accept()[0].close()
        with pytest.raises(TimeoutError):
            listener.accept()  # the repeated endpoint was tried once
    assert [r.reachable for r in found] == [True, False, True]
    assert found[1].error and "refused" in found[1].error.lower()
    assert found[0].endpoint == f"127.0.0.1:{port}"


@pytest.mark.parametrize(
    "value",
    ["$(reboot):25", "mail`id`:25", "a b:25", "mail\x00:25", "mail;rm:25", "", "[::1]", "mail",
     "mail:0", "mail:70000", "mail:x", 25, None, "x" * 300 + ":25"],
)  # fmt: skip
def test_a_bad_endpoint_is_refused_naming_the_field(value: object) -> None:
    with pytest.raises(TargetError, match=r"^hosts\[ex1\]\.management: "):
        endpoint("hosts[ex1].management", value)


def test_smtp_without_a_port_means_port_25() -> None:
    assert endpoint("smtp", "mail.example.net", 25).port == 25
    assert endpoint("smtp", "[::1]:2525").host == "::1"


def test_an_unreachable_host_ends_unreachable_and_the_rest_of_the_batch_goes_on(
    tmp_path: Path,
) -> None:
    with lab_fleet("exchange2019/compliant:1", "127.0.38.1") as fleet:
        twin = fleet.hosts[0]
        gone = "127.0.38.250"  # nothing listens there
        extra = tmp_path / "gone.yml"
        extra.write_text(
            yaml.safe_dump(
                {
                    "exchange_modern": {
                        "hosts": {
                            "ex-gone": {
                                "ansible_host": gone,
                                "relayguard_smtp": f"{gone}:25",
                                "ansible_user": twin["username"],
                                "ansible_password": twin["password"],
                            }
                        }
                    }
                }
            )
        )
        run = fleet.playbook("-i", str(extra), extra={"relay_mode": "audit"})
        assert run.returncode != 0, run.explain()
        hosts = fleet.report_hosts()
        assert hosts[twin["name"]]["status"] == "compliant", hosts[twin["name"]]
        assert hosts["ex-gone"]["status"] == "unreachable", hosts["ex-gone"]
        error = hosts["ex-gone"]["error"]
        assert f"SMTP {gone}:25 does not answer" in error and "refused" in error.lower(), error
        assert hosts["ex-gone"]["before"] is None  # never probed
        report = json.loads((fleet.reports / "latest" / "report.json").read_text())
        assert report["summary"]["by_status"]["unreachable"] == 1
