"""postfix_relay on a real multi-instance host (MULTI_INSTANCE_README, postmulti(1)): the
primary's main.cf lists a secondary instance in multi_instance_directories; only the
secondary is an open relay. `instances: primary` says which instance it left alone;
`instances: all` plans both, fixes the secondary in its own config dir, checks and reloads it
on its own, and swaks from an untrusted address is refused relay there while its inbound
mail is still delivered. 127.0.170.0/24 (sites170.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from postfix_remediation.backend import backend
from postfix_remediation.sites170 import (
    INBOUND,
    Factory,
    delivered,
    module_run,
    postconf,
    postfix170,
    relays,
    reload,
)
from relayguard.lab.postfix.instance import PostfixInstance

pytestmark = [pytest.mark.realserver, pytest.mark.root]
__all__ = ["postfix170"]  # the fixture, used by name

CLOSE = {"relay_allowed_networks": ["127.0.0.1/32"], "inbound_domains": [INBOUND]}


def _host(postfix170: Factory, secondary_domains: str = INBOUND) -> tuple[PostfixInstance, ...]:
    primary = postfix170("closed")
    secondary = postfix170("open_relay", {"relay_domains": secondary_domains})
    postconf(primary, "-e", f"multi_instance_directories = {secondary.config_dir}")
    postconf(secondary, "-e", "multi_instance_name = postfix-out", "multi_instance_enable = yes")
    return primary, secondary


def test_only_the_open_secondary_is_planned_fixed_and_reloaded(postfix170: Factory) -> None:
    primary, secondary = _host(postfix170)
    assert relays(secondary) and not relays(primary)
    primary_main = primary.layout.main_cf.read_bytes()

    alone = module_run(primary, check_mode=True, **CLOSE)  # instances: primary (default)
    assert not alone.changed  # type: ignore[attr-defined]
    assert any(
        f"{secondary.config_dir} (postfix-out)" in w and "instances: all" in w
        for w in alone.warnings  # type: ignore[attr-defined]
    ), alone.warnings  # type: ignore[attr-defined]

    planned = module_run(primary, check_mode=True, instances="all", **CLOSE)
    assert planned.changed  # type: ignore[attr-defined]
    assert {c["config_dir"] for c in planned.changes} == {str(secondary.config_dir)}  # type: ignore[attr-defined]
    reports = {i["config_dir"]: i for i in planned.instances}  # type: ignore[attr-defined]
    assert not reports[str(primary.config_dir)]["changed"]
    assert reports[str(secondary.config_dir)]["name"] == "postfix-out"
    assert reports[str(secondary.config_dir)]["enabled"] is True

    done = module_run(primary, instances="all", **CLOSE)
    secondary.wait_ready(30)
    reports = {i["config_dir"]: i for i in done.instances}  # type: ignore[attr-defined]
    mine = reports[str(secondary.config_dir)]
    assert mine["reloaded"] and str(mine["backup_file"]).startswith(str(secondary.config_dir))
    assert not reports[str(primary.config_dir)]["reloaded"]
    assert primary.layout.main_cf.read_bytes() == primary_main  # untouched
    assert secondary.postconf("mynetworks") == "127.0.0.1/32"
    assert not relays(secondary)  # refused at RCPT for the outsider
    assert delivered(secondary)  # its inbound mail still arrives
    assert not relays(primary) and delivered(primary)
    again = module_run(primary, check_mode=True, instances="all", **CLOSE)
    assert not again.changed  # type: ignore[attr-defined]


def test_each_instance_keeps_its_own_policy(postfix170: Factory) -> None:
    """The secondary relays for out.example: the task's inbound domains would remove it, so
    the run stops before either instance is written; instance_options gives it its own."""
    primary, secondary = _host(postfix170, secondary_domains="out.example")
    before = (primary.layout.main_cf.read_bytes(), secondary.layout.main_cf.read_bytes())
    with pytest.raises(backend.PlanError, match=re.escape(f"{secondary.config_dir}: ")):
        module_run(primary, instances="all", **CLOSE)  # no class to add example.net to there
    close = {**CLOSE, "inbound_domain_class": "relay_domains"}
    removes = f"{secondary.config_dir}: the plan removes main.cf relay_domains: out.example"
    with pytest.raises(backend.PlanError, match=re.escape(removes)):
        module_run(primary, instances="all", **close)
    after = (primary.layout.main_cf.read_bytes(), secondary.layout.main_cf.read_bytes())
    assert after == before  # nothing written on any instance
    own = {str(secondary.config_dir): {"inbound_domains": ["out.example"]}}
    done = module_run(primary, instances="all", instance_options=own, **CLOSE)
    secondary.wait_ready(30)
    assert done.removals == []  # type: ignore[attr-defined]
    assert secondary.postconf("relay_domains") == "out.example"
    assert not relays(secondary)
    with pytest.raises(backend.InputError, match="instance_options"):
        module_run(primary, instance_options={"/etc/postfix-nowhere": {}}, **CLOSE)


def test_a_failing_instance_puts_the_ones_already_changed_back(
    postfix170: Factory, tmp_path: Path
) -> None:
    """All or nothing: the primary is changed and reloaded, then the secondary's reload
    fails (a wrapper around the real postfix refuses `reload` for its directory only): the
    secondary is rolled back as always, and the primary is restored too."""
    primary, secondary = _host(postfix170)
    postconf(primary, "-e", "mynetworks = 0.0.0.0/0")
    reload(primary)
    before = (primary.layout.main_cf.read_bytes(), secondary.layout.main_cf.read_bytes())
    real = backend.PostfixTools.locate()
    wrapper = tmp_path / "postfix-failing-reload"
    wrapper.write_text(
        "#!/bin/sh\n"
        "for last; do :; done\n"
        f'if [ "$last" = reload ] && [ "$2" = "{secondary.config_dir}" ]; then\n'
        "  echo 'injected reload failure' >&2; exit 1\n"
        "fi\n"
        f'exec {real.postfix} "$@"\n'
    )
    wrapper.chmod(0o755)
    tools = backend.PostfixTools(real.postconf, str(wrapper), real.postmap)
    options = {"config_dir": str(primary.config_dir), "instances": "all", **CLOSE}
    with pytest.raises(backend.ApplyError) as caught:
        backend.run(options, check_mode=False, want_diff=False, tools_factory=lambda: tools)
    message = str(caught.value)
    assert message.startswith(f"{secondary.config_dir}: ") and "injected reload failure" in message
    assert f"the instances changed before it: {primary.config_dir} restored from" in message
    assert caught.value.rolled_back
    after = (primary.layout.main_cf.read_bytes(), secondary.layout.main_cf.read_bytes())
    assert after == before
    primary.wait_ready(30)
    assert relays(primary)  # its old (open) configuration is back and running
