"""postfix_relay on real Postfix instances configured the ways sites configure them (issue 18).

Loopback allocation: 127.0.140.0/24 — servers 127.0.140.1-99, the allowed "app server"
127.0.140.100, the outsider 127.0.140.200. Each test starts its own instances (root) and
judges the server with real SMTP from the outsider address, before and after the change:

* a partner relay_domains entry survives and is still accepted from outside;
* SASL relay (permit_sasl_authenticated, AUTH offered) survives by default;
* a master.cf override that opens the relay is planned and closed in master.cf;
* a cidr: mynetworks table is read and the plan names what replacing it drops;
* a plan that removes a destination or a network is refused without relay_allow_removals.
"""

from __future__ import annotations

import os
import re
import shutil
import smtplib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from support.realserver import require_root, require_tool

from postfix_remediation import netlab
from postfix_remediation.backend import backend
from postfix_remediation.conftest import public_tmpdir
from postfix_remediation.relaycheck import TIMEOUT, rcpt_code
from postfix_remediation.sites170 import postconf, reload
from relayguard.lab import module_utils
from relayguard.lab.postfix.instance import PostfixInstance, listening_endpoints

pytestmark = [pytest.mark.realserver, pytest.mark.root]

APP = "127.0.140.100"
OUTSIDER = "127.0.140.200"
INBOUND = "example.net"
PARTNER = "partner.example"
FOREIGN = "relaytest@elsewhere.example"
_addresses = (f"127.0.140.{n}" for n in range(1, 100))

Factory = Callable[..., PostfixInstance]


@pytest.fixture
def site_postfix() -> Iterator[Factory]:
    """Real Postfix instances on 127.0.140.x, removed at the end even on failure."""
    require_root()
    require_tool("postfix", "postconf", "postmap")
    started: list[tuple[PostfixInstance, Path]] = []

    def start(profile: str, overrides: Mapping[str, str] | None = None) -> PostfixInstance:
        root = public_tmpdir("rgps-")
        with netlab.slot_lock():
            taken = listening_endpoints()
            address = next(a for a in _addresses if (a, 25) not in taken)
            name = f"rgps{os.getpid() % 100000}{address.rsplit('.', 1)[1]}"
            instance = PostfixInstance.from_profile(
                root / name, address, profile, overrides=dict(overrides or {}), name=name
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


def run(instance: PostfixInstance, check_mode: bool = False, **options: object) -> object:
    result = backend.run(
        {"config_dir": str(instance.config_dir), **options}, check_mode=check_mode, want_diff=True
    )
    if getattr(result, "reloaded", False):
        drain(instance)
    return result


def drain(instance: PostfixInstance, connections: int = 4) -> None:
    """An smtpd that sat idle through a reload serves one more connection with the old
    configuration before it exits, and earlier checks can leave several idle: let a few lab
    greetings, one after the other, be those connections (PostfixInstance.update() makes
    one; a fresh-clone CI run once met a second stale smtpd after a restore)."""
    for _ in range(connections):
        instance.wait_ready(30)


def accepted(instance: PostfixInstance, recipient: str, source: str = OUTSIDER) -> bool:
    return rcpt_code(instance.address, instance.port, recipient, source) == 250


def smtpd_service(instance: PostfixInstance) -> str:
    """The lab's smtpd service as postconf -M names it (e.g. 127.0.140.1:25/inet)."""
    for line in postconf(instance, "-M").splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[7] == "smtpd":
            return f"{fields[0]}/{fields[1]}"
    raise AssertionError("no smtpd service in master.cf")


def test_partner_relay_domain_survives_and_is_accepted_from_outside(
    site_postfix: Factory,
) -> None:
    server = site_postfix("open_relay", {"relay_domains": f"{INBOUND}, {PARTNER}"})
    assert accepted(server, FOREIGN)  # open before
    assert accepted(server, f"postmaster@{PARTNER}")
    close = {
        "relay_allowed_networks": ["127.0.0.1/32", f"{APP}/32"],
        "inbound_domains": [INBOUND],
        "relay_partner_domains": [PARTNER],
    }
    result = run(server, **close)
    assert result.removals == []  # type: ignore[attr-defined]
    assert PARTNER in server.postconf("relay_domains")
    assert not accepted(server, FOREIGN)  # closed for the outsider
    assert accepted(server, f"postmaster@{PARTNER}")  # the partner still gets its mail
    assert accepted(server, f"postmaster@{INBOUND}")
    assert accepted(server, FOREIGN, source=APP)  # the allowed network still relays


def test_partner_missing_from_relay_domains_is_added(site_postfix: Factory) -> None:
    server = site_postfix("closed", {"relay_domains": INBOUND})
    assert not accepted(server, f"postmaster@{PARTNER}")
    result = run(server, relay_partner_domains=[PARTNER])
    assert [c["parameter"] for c in result.changes] == ["relay_domains"]  # type: ignore[attr-defined]
    assert server.postconf("relay_domains") == f"{INBOUND}, {PARTNER}"
    code = rcpt_code(server.address, server.port, f"postmaster@{PARTNER}", OUTSIDER)
    assert code == 250, (code, server.maillog_tail())


def test_removing_a_destination_is_refused_without_relay_allow_removals(
    site_postfix: Factory,
) -> None:
    server = site_postfix("open_relay", {"relay_domains": f"{INBOUND}, {PARTNER}"})
    main_cf = server.layout.main_cf.read_bytes()
    close = {"relay_allowed_networks": ["127.0.0.1/32"], "inbound_domains": [INBOUND]}
    planned = run(server, check_mode=True, **close)
    assert planned.removals == [f"main.cf relay_domains: {PARTNER}"]  # type: ignore[attr-defined]
    assert f"# removes: main.cf relay_domains: {PARTNER}" in planned.diff["after"]  # type: ignore[attr-defined]
    with pytest.raises(backend.PlanError, match=re.escape(f"main.cf relay_domains: {PARTNER}")):
        run(server, **close)
    assert server.layout.main_cf.read_bytes() == main_cf  # nothing changed
    assert accepted(server, f"postmaster@{PARTNER}")
    done = run(server, relay_allow_removals=True, **close)
    assert done.removals == [f"main.cf relay_domains: {PARTNER}"]  # type: ignore[attr-defined]
    assert not accepted(server, f"postmaster@{PARTNER}")  # removed, as the inventory allowed


def _offers_auth(instance: PostfixInstance) -> bool:
    with smtplib.SMTP(
        instance.address, instance.port, timeout=TIMEOUT, source_address=(OUTSIDER, 0)
    ) as smtp:
        smtp.ehlo("client.example.com")
        return smtp.has_extn("auth")


def test_sasl_relay_survives_by_default(site_postfix: Factory) -> None:
    """permit_sasl_authenticated stays in the running server's relay decision and AUTH is
    still offered, while unauthenticated relaying is closed (relay_authenticated: keep)."""
    server = site_postfix("open_relay", {"smtpd_sasl_auth_enable": "yes", "relay_domains": INBOUND})
    assert _offers_auth(server)
    before = server.postconf("smtpd_relay_restrictions")
    assert "permit_sasl_authenticated" in before
    result = run(server, relay_allowed_networks=["127.0.0.1/32"], inbound_domains=[INBOUND])
    assert result.changed  # type: ignore[attr-defined]
    assert server.postconf("smtpd_relay_restrictions") == before
    assert result.removals == []  # type: ignore[attr-defined]
    assert not accepted(server, FOREIGN)  # closed without authentication
    assert _offers_auth(server)
    removed = run(server, relay_authenticated=False)  # the inventory says so: then it goes
    assert "permit_sasl_authenticated" not in server.postconf("smtpd_relay_restrictions")
    assert removed.removals == []  # type: ignore[attr-defined]


# Only mynetworks: Postfix >= 2.10 will not start an smtpd whose relay and recipient lists
# lack a gate that no permit precedes ("specify at least one working instance of:
# reject_unauth_destination, ..."), so `-o smtpd_relay_restrictions=permit` breaks the
# service rather than opening it; the pure tests cover restriction overrides.
@pytest.mark.parametrize(("override", "value"), [("mynetworks", "0.0.0.0/0")])
def test_master_cf_override_relay_is_planned_and_closed_where_it_is(
    site_postfix: Factory, override: str, value: str
) -> None:
    server = site_postfix("closed", {"relay_domains": INBOUND})
    service = smtpd_service(server)
    postconf(server, "-P", f"{service}/{override}={value}")
    reload(server)
    assert accepted(server, FOREIGN)  # the override opens the relay; main.cf is closed
    close = {"relay_allowed_networks": ["127.0.0.1/32"], "inbound_domains": [INBOUND]}
    planned = run(server, check_mode=True, **close)
    targets = [c["target"] for c in planned.changes]  # type: ignore[attr-defined]
    assert targets == [f"master.cf {service} -o {override}"]
    run(server, **close)
    assert not accepted(server, FOREIGN)
    assert accepted(server, f"postmaster@{INBOUND}")
    after = postconf(server, "-P")
    assert f"{service}/{override} = {value}\n" not in after
    assert not run(server, check_mode=True, **close).changed  # type: ignore[attr-defined]


def test_master_cf_restore_puts_the_override_back(site_postfix: Factory) -> None:
    server = site_postfix("closed", {"relay_domains": INBOUND})
    service = smtpd_service(server)
    postconf(server, "-P", f"{service}/mynetworks=0.0.0.0/0")
    reload(server)
    master_cf = server.layout.master_cf.read_bytes()
    done = run(server, relay_allowed_networks=["127.0.0.1/32"])
    assert server.layout.master_cf.read_bytes() != master_cf
    backup = done.backup_file  # type: ignore[attr-defined]
    run(server, state="restored", backup_file=backup)
    assert server.layout.master_cf.read_bytes() == master_cf
    assert accepted(server, FOREIGN)  # the old (open) configuration is back, as asked


def test_cidr_mynetworks_table_is_read_and_the_plan_names_what_it_drops(
    site_postfix: Factory,
) -> None:
    table_dir = public_tmpdir("rgps-cidr-")
    try:
        table = table_dir / "trusted.cidr"
        table.write_text("# trusted networks\n127.0.0.1/32 OK\n10.20.0.0/16 OK\n0.0.0.0/0 OK\n")
        server = site_postfix("closed", {"mynetworks": f"cidr:{table}", "relay_domains": INBOUND})
        assert accepted(server, FOREIGN)  # 0.0.0.0/0 in the table: open
        close = {"relay_allowed_networks": ["127.0.0.1/32"], "inbound_domains": [INBOUND]}
        planned = run(server, check_mode=True, **close)
        change = next(c for c in planned.changes if c["parameter"] == "mynetworks")  # type: ignore[attr-defined]
        assert f"replaces cidr:{table} (entries: 127.0.0.1/32, 10.20.0.0/16, 0.0.0.0/0)" in str(
            change["reason"]
        )
        assert change["removes"] == ["10.20.0.0/16"]
        assert "closes 0.0.0.0/0" in str(change["reason"])
        with pytest.raises(backend.PlanError, match=r"10\.20\.0\.0/16"):
            run(server, **close)
        assert accepted(server, FOREIGN)  # refused: nothing changed
        run(server, relay_allow_removals=True, **close)
        assert not accepted(server, FOREIGN)
        assert table.read_text().count("OK") == 3  # the table itself is never edited
    finally:
        shutil.rmtree(table_dir, ignore_errors=True)


def test_the_backend_protocol_drives_a_real_postfix(site_postfix: Factory) -> None:
    """relay_backend.change() over PostfixBackend: backup, apply, `postfix check`, reload,
    verify; when verification finds the plan did not reach the desired state, the backup
    (main.cf and master.cf) is put back and Postfix reloaded with it."""
    relay_backend = module_utils.load("relay_backend")
    server = site_postfix("open_relay", {"relay_domains": INBOUND})
    tools = backend.PostfixTools.locate()
    policy = backend.BackupPolicy(str(server.config_dir / "relayguard-backups"))
    postfix = backend.PostfixBackend(tools, str(server.config_dir), policy)
    original = server.layout.main_cf.read_bytes()
    closed = backend.desired_state({"relay_allowed_networks": ["127.0.0.1/32"]})
    stricter = backend.desired_state(
        {"relay_allowed_networks": ["127.0.0.1/32"], "relay_authenticated": False}
    )

    facts = postfix.facts(closed)
    with pytest.raises(relay_backend.ChangeFailed) as caught:
        relay_backend.change(postfix, facts, postfix.plan(facts, closed), stricter)
    assert caught.value.restored and "still to change" in str(caught.value)
    assert server.layout.main_cf.read_bytes() == original
    drain(server)
    assert accepted(server, FOREIGN)  # the open configuration is back, as it was

    facts = postfix.facts(closed)
    backup, reloaded = relay_backend.change(postfix, facts, postfix.plan(facts, closed), closed)
    assert reloaded and backup.primary is not None
    server.wait_ready(30)
    assert not accepted(server, FOREIGN)
    assert postfix.verify(closed) is None
