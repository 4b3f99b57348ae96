"""The Exim backend on real Exim instances: closes an open relay through the common change
sequence (backup, apply, validate with exim -bV and exim -bh, reload, verify), and a plan that
would leave it open is refused by the -bh session and the file restored. swaks then checks
the running daemon from an untrusted loopback address."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from relayguard.lab import module_utils, unpacked
from relayguard.lab.exim.instance import EximInstance, exim_binary

from .conftest import EXIM_SOURCE, _require_unpacked
from .swaks import SWAKS_NO_RECIPIENT, SWAKS_OK, swaks

if TYPE_CHECKING:
    import exim_backend
    import exim_plan
    import relay_backend
else:
    relay_backend = module_utils.load("relay_backend")
    module_utils.load("exim_config")
    exim_plan = module_utils.load("exim_plan")
    exim_backend = module_utils.load("exim_backend")

pytestmark = [pytest.mark.realserver, pytest.mark.root]


@pytest.fixture
def open_exim(mta_lab: Path) -> Iterator[EximInstance]:
    _require_unpacked(exim_binary)
    with EximInstance(mta_lab / "exim-backend", "127.0.110.10", "open_relay") as server:
        yield server


def _backend(server: EximInstance) -> exim_backend.EximBackend:
    return exim_backend.EximBackend(
        str(server.config), str(exim_binary()), pid_file=str(server.layout.root / "exim.pid")
    )


def _greets_again(server: EximInstance) -> None:
    time.sleep(0.5)  # the daemon re-executes itself on SIGHUP
    unpacked.wait_greeting(server.listener, server.is_running, server.layout.mainlog)


def test_change_closes_the_open_exim_and_keeps_inbound_mail(open_exim: EximInstance) -> None:
    assert swaks(open_exim.target, EXIM_SOURCE, "a@example.org").returncode == SWAKS_OK
    backend = _backend(open_exim)
    desired = exim_plan.EximDesired(allowed_networks=("10.20.0.0/16",))
    facts = backend.facts(desired)
    plan = backend.plan(facts, desired)
    # what matches anyone is the relay being closed, not a removal
    assert plan.removals() == ()
    assert "closes 0.0.0.0/0, ::/0" in plan.changes[0].reason

    backup, reloaded = relay_backend.change(backend, facts, plan, desired)

    assert reloaded
    assert Path(backup.files[0][1]).read_text(encoding="utf-8") == facts.text
    _greets_again(open_exim)
    refused = swaks(open_exim.target, EXIM_SOURCE, "b@example.org", quit_after="RCPT")
    assert refused.returncode == SWAKS_NO_RECIPIENT, refused.transcript
    assert "550 relay not permitted" in refused.transcript
    inbound = swaks(open_exim.target, EXIM_SOURCE, f"inbound@{open_exim.hostname}")
    assert inbound.returncode == SWAKS_OK, inbound.transcript
    assert backend.plan(backend.facts(desired), desired).changed is False


def test_a_plan_that_leaves_it_open_is_refused_by_exim_bh_and_restored(
    open_exim: EximInstance,
) -> None:
    backend = _backend(open_exim)
    # 0.0.0.0/0 "allowed": the plan keeps it, so the -bh session still relays.
    desired = exim_plan.EximDesired(allowed_networks=("0.0.0.0/0", "10.20.0.0/16"))
    facts = backend.facts(desired)
    plan = backend.plan(facts, desired)
    assert plan.changed  # adds 10.20.0.0/16

    with pytest.raises(relay_backend.ChangeFailed, match="open relay") as failed:
        relay_backend.change(backend, facts, plan, desired)

    assert failed.value.restored
    assert open_exim.config.read_text(encoding="utf-8") == facts.text
