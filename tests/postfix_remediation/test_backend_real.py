"""postfix_relay's backend against real Postfix instances (root; 127.0.70.0/24).

The module body is `backend.run(options, check_mode, want_diff)`; these tests call it as the
module does, then judge the server with the real probe and real SMTP.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from postfix_remediation.backend import backend
from postfix_remediation.conftest import APP_CLIENT, INBOUND_DOMAIN, OUTSIDER, PostfixFactory
from postfix_remediation.relaycheck import rcpt_code, verdict
from relayguard.lab.postfix.instance import PostfixInstance

pytestmark = [pytest.mark.realserver, pytest.mark.root]

CLOSE = {
    "relay_allowed_networks": ["127.0.0.1/32", f"{APP_CLIENT}/32"],
    "inbound_domains": [INBOUND_DOMAIN],
    "relay_refusal": "permanent",
}


def options(instance: PostfixInstance, **extra: object) -> dict[str, object]:
    return {"config_dir": str(instance.config_dir), **CLOSE, **extra}


def main_cf(instance: PostfixInstance) -> bytes:
    return instance.layout.main_cf.read_bytes()


def backups(instance: PostfixInstance) -> list[Path]:
    return sorted((instance.config_dir / "relayguard-backups").glob("main.cf.*"))


def fault_tools(directory: Path, verb: str, failing_call: int) -> object:
    """Real Postfix programs, except that `postfix ... <verb>` fails on its Nth call.

    Fault injection at the process boundary: everything else runs the real `postfix`.
    """
    real = backend.PostfixTools.locate()
    wrapper = directory / f"postfix-failing-{verb}"
    wrapper.write_text(
        "#!/bin/sh\n"
        "for last; do :; done\n"
        f'if [ "$last" = "{verb}" ]; then\n'
        f'  n=$(( $(cat "{directory}/calls-{verb}" 2>/dev/null || echo 0) + 1 ))\n'
        f'  echo "$n" > "{directory}/calls-{verb}"\n'
        f'  if [ "$n" -eq {failing_call} ]; then\n'
        f'    echo "postfix: fatal: injected {verb} failure (test)" >&2; exit 1\n'
        "  fi\n"
        "fi\n"
        f'exec {real.postfix} "$@"\n'
    )
    wrapper.chmod(0o755)
    return backend.PostfixTools(real.postconf, str(wrapper), real.postmap)


def test_four_passes_close_the_relay_and_keep_legitimate_mail(
    postfix_instance: PostfixFactory,
) -> None:
    server = postfix_instance("open_relay")
    assert verdict(server.target, OUTSIDER) == "open"
    original = main_cf(server)

    checked = backend.run(options(server), check_mode=True, want_diff=True)
    assert checked.changed
    # permit_sasl_authenticated stays (relay_authenticated: keep), so only mynetworks changes
    assert {c["parameter"] for c in checked.changes} == {"mynetworks"}
    assert "-mynetworks = 0.0.0.0/0" not in checked.diff["before"]  # plain text, not a patch
    assert "mynetworks = 0.0.0.0/0\n" in checked.diff["before"]
    assert f"mynetworks = 127.0.0.1/32, {APP_CLIENT}/32\n" in checked.diff["after"]
    assert main_cf(server) == original and not backups(server)
    assert verdict(server.target, OUTSIDER) == "open"

    applied = backend.run(options(server), check_mode=False, want_diff=True)
    assert applied.changed and applied.reloaded
    assert applied.backup_file is not None
    assert Path(applied.backup_file).read_bytes() == original
    assert server.postconf("mynetworks") == f"127.0.0.1/32, {APP_CLIENT}/32"

    assert verdict(server.target, OUTSIDER) == "closed"
    assert verdict(server.target, APP_CLIENT) == "open"  # the allowed network still relays
    assert rcpt_code(server.address, 25, f"postmaster@{INBOUND_DOMAIN}", OUTSIDER) == 250
    assert rcpt_code(server.address, 25, "someone@example.com", OUTSIDER) == 554

    rechecked = backend.run(options(server), check_mode=True, want_diff=True)
    assert not rechecked.changed and rechecked.changes == []
    settled = main_cf(server)
    reapplied = backend.run(options(server), check_mode=False, want_diff=False)
    assert not reapplied.changed and reapplied.backup_file is None and not reapplied.reloaded
    assert main_cf(server) == settled and len(backups(server)) == 1


def test_a_backup_postfix_check_rejects_is_not_installed(
    postfix_instance: PostfixFactory, public_dir: Path
) -> None:
    server = postfix_instance("open_relay")
    first = backend.run(options(server), check_mode=False, want_diff=False)
    closed_cf = main_cf(server)
    broken = public_dir / "broken-main.cf"
    broken.write_bytes(Path(first.backup_file).read_bytes() + b"this line is not a parameter\n")

    with pytest.raises(backend.ApplyError) as caught:
        backend.run(
            {"config_dir": str(server.config_dir), "state": "restored", "backup_file": str(broken)},
            check_mode=False,
            want_diff=False,
        )
    message = str(caught.value)
    assert "postfix check rejected the backup" in message
    assert "missing '=' after attribute name" in message  # what Postfix said, via the pty
    assert "main.cf put back as it was" in message and "reloaded" in message
    assert caught.value.rolled_back
    assert main_cf(server) == closed_cf
    assert server.is_running()
    server.wait_ready(10)
    assert verdict(server.target, OUTSIDER) == "closed"

    # The good backup restores the original, open configuration; then nothing is left to do.
    restore = {
        "config_dir": str(server.config_dir),
        "state": "restored",
        "backup_file": os.path.basename(str(first.backup_file)),
    }
    checked = backend.run(restore, check_mode=True, want_diff=True)
    assert checked.changed and "0.0.0.0/0" in checked.diff["after"]
    assert main_cf(server) == closed_cf
    restored = backend.run(restore, check_mode=False, want_diff=False)
    assert restored.changed and restored.reloaded
    assert main_cf(server) == Path(first.backup_file).read_bytes()
    assert verdict(server.target, OUTSIDER) == "open"
    assert not backend.run(restore, check_mode=False, want_diff=False).changed


@pytest.mark.parametrize(("verb", "call"), [("check", 2), ("reload", 1)])
def test_a_failure_after_the_write_restores_the_backup(
    postfix_instance: PostfixFactory, public_dir: Path, verb: str, call: int
) -> None:
    """`postfix check` (the 1st call is the pre-check) or `postfix reload` fails after
    main.cf was written: main.cf is put back byte for byte and Postfix keeps the old policy."""
    server = postfix_instance("open_relay")
    original = main_cf(server)
    tools = fault_tools(public_dir, verb, call)

    with pytest.raises(backend.ApplyError) as caught:
        backend.run(options(server), check_mode=False, want_diff=False, tools_factory=lambda: tools)
    assert f"injected {verb} failure" in str(caught.value)
    assert "main.cf restored from" in str(caught.value)
    assert caught.value.rolled_back
    assert main_cf(server) == original
    assert Path(caught.value.backup_file).read_bytes() == original
    assert not (server.config_dir / "relayguard-backups" / ".relayguard-pending.json").exists()
    assert server.is_running()
    assert verdict(server.target, OUTSIDER) == "open"  # still the old configuration

    # Without the fault, the next run converges.
    assert backend.run(options(server), check_mode=False, want_diff=False).changed
    assert verdict(server.target, OUTSIDER) == "closed"


def test_a_main_cf_postfix_check_rejects_is_not_touched(postfix_instance: PostfixFactory) -> None:
    server = postfix_instance("open_relay")
    original = main_cf(server)
    subprocess.run(
        ["postconf", "-c", str(server.config_dir), "-e", "myhostname=not a host name"],
        check=True,
        capture_output=True,
    )
    broken = main_cf(server)
    with pytest.raises(backend.ApplyError) as caught:
        backend.run(options(server), check_mode=False, want_diff=False)
    assert "postfix check fails before any change, so nothing was written" in str(caught.value)
    assert "myhostname" in str(caught.value)
    assert not caught.value.wrote
    assert main_cf(server) == broken and not backups(server)
    assert server.is_running()
    # `postfix stop` refuses this main.cf too; mend it so the teardown stops Postfix cleanly.
    server.layout.main_cf.write_bytes(original)


@pytest.mark.parametrize(
    "hostile",
    [
        {"relay_allowed_networks": ["10.0.0.0/8 0.0.0.0/0"]},
        {"relay_allowed_networks": ["10.0.0.0/8,0.0.0.0/0"]},
        {"relay_allowed_networks": ["10.0.0.0/8\nmynetworks = 0.0.0.0/0"]},
        {"relay_allowed_networks": ["$inet_interfaces"]},
        {"relay_allowed_networks": ["10.0.0.0/8\0"]},
        {"inbound_domains": ["example.net\nrelay_domains = gmail.com"]},
        {"inbound_domains": ["example.net, gmail.com"]},
        {"inbound_domains": ["$myhostname"]},
        {"backup_dir": "/tmp/x\n"},
    ],
)
def test_hostile_values_are_refused_before_anything_is_written(
    postfix_instance: PostfixFactory, hostile: dict[str, object]
) -> None:
    server = postfix_instance("open_relay")
    before = main_cf(server)
    mtime = server.layout.main_cf.stat().st_mtime_ns
    field = next(iter(hostile))
    with pytest.raises(backend.InputError) as caught:
        backend.run(options(server, **hostile), check_mode=False, want_diff=False)
    assert str(caught.value).startswith(field)
    assert main_cf(server) == before and server.layout.main_cf.stat().st_mtime_ns == mtime
    assert not (server.config_dir / "relayguard-backups").exists()
    assert verdict(server.target, OUTSIDER) == "open"


def test_a_second_run_while_one_holds_the_lock_changes_nothing(
    postfix_instance: PostfixFactory,
) -> None:
    server = postfix_instance("open_relay")
    before = main_cf(server)
    policy = backend.BackupPolicy(str(server.config_dir / "relayguard-backups"))
    with policy.lock(str(server.config_dir)), pytest.raises(backend.ApplyError) as caught:
        backend.run(options(server), check_mode=False, want_diff=False)
    assert "another postfix_relay run is changing" in str(caught.value)
    assert not caught.value.wrote
    assert main_cf(server) == before


def test_a_run_killed_after_writing_is_completed_by_the_next(
    postfix_instance: PostfixFactory,
) -> None:
    server = postfix_instance("open_relay")
    directory = str(server.config_dir / "relayguard-backups")
    policy = backend.BackupPolicy(directory)
    tools = backend.PostfixTools.locate()
    # What a run killed between `postconf -e` and `postfix reload` leaves behind:
    facts = backend.read_facts(tools, str(server.config_dir), [INBOUND_DOMAIN])
    plan = backend.plan_relay(facts, backend.desired_state(CLOSE))
    backup = policy.create(facts.main_cf)
    policy.mark_pending({"config_dir": str(server.config_dir), "backup_file": backup})
    backend.postconf_edit(tools, str(server.config_dir), plan.settings())

    checked = backend.run(options(server), check_mode=True, want_diff=False)
    assert checked.changed and checked.changes == []
    completed = backend.run(options(server), check_mode=False, want_diff=False)
    assert completed.changed and completed.reloaded
    assert any("interrupted" in m for m in completed.messages)
    assert policy.pending() is None
    assert verdict(server.target, OUTSIDER) == "closed"
    assert not backend.run(options(server), check_mode=False, want_diff=False).changed


def test_only_backup_keep_backups_are_kept(postfix_instance: PostfixFactory) -> None:
    server = postfix_instance("open_relay")
    made = []
    for refusal in ("permanent", "temporary", "permanent", "temporary"):
        result = backend.run(
            options(server, relay_refusal=refusal, backup_keep=2), check_mode=False, want_diff=False
        )
        made.append(result.backup_file)
    assert [str(p) for p in backups(server)] == made[-2:]


def test_debian_default_instance_gets_5xx_and_adds_missing_inbound_domain(
    postfix_instance: PostfixFactory,
) -> None:
    server = postfix_instance("debian_default", {"relay_domains": ""})
    assert rcpt_code(server.address, 25, "someone@example.com", OUTSIDER) == 454
    desired = options(
        server,
        relay_refusal="keep",
        inbound_domains=["example.org"],
        inbound_domain_class="relay_domains",
    )
    result = backend.run(desired, check_mode=False, want_diff=False)
    assert server.postconf("relay_domains") == "example.org"
    assert server.postconf("smtpd_relay_restrictions") == (  # as Debian wrote it: kept
        "permit_mynetworks permit_sasl_authenticated defer_unauth_destination"
    )
    assert result.changed
    assert rcpt_code(server.address, 25, "someone@example.com", OUTSIDER) == 454  # kept 4xx
    assert rcpt_code(server.address, 25, "postmaster@example.org", OUTSIDER) == 250
    assert shutil.which("postconf") is not None
