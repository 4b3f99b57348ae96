"""The pure side of the Postfix lab: rendered files, alternates lists, profiles (no Postfix)."""

from __future__ import annotations

from pathlib import Path

import pytest

from relayguard.lab.postfix.config import (
    InstanceLayout,
    Listener,
    PostfixConfigError,
    base_parameters,
    instance_name_for,
    render_main_cf,
    render_master_cf,
    split_list,
    with_alternate,
    without_alternate,
)
from relayguard.lab.postfix.profiles import PROFILES, profile
from relayguard.vocabulary import Verdict

ROOT = Path("/srv/lab/closed-1")


def test_master_cf_binds_smtpd_to_the_listener_only() -> None:
    text = render_master_cf(Listener("127.0.4.1", 25), "header")
    inet = [line for line in text.splitlines() if " inet " in line]
    assert len(inet) == 1
    assert inet[0].split()[:2] == ["127.0.4.1:25", "inet"]
    assert inet[0].split()[-1] == "smtpd"
    assert render_master_cf(Listener("::1", 2525), "h").splitlines()[1].startswith("[::1]:2525")
    # maillog_file is written by postlogd, which must be a service of the instance
    assert any(line.split()[-1] == "postlogd" for line in text.splitlines())
    # no service runs chrooted (5th column): a lab instance has no jail
    services = [line.split() for line in text.splitlines() if not line.startswith("#")]
    assert {fields[4] for fields in services} == {"n"}


def test_main_cf_lines_and_refusals() -> None:
    text = render_main_cf({"mynetworks": "127.0.0.1/32", "smtpd_banner": ""}, "two\nlines")
    assert text.splitlines() == ["# two", "# lines", "mynetworks = 127.0.0.1/32", "smtpd_banner ="]
    with pytest.raises(PostfixConfigError, match="spans lines"):
        render_main_cf({"mynetworks": "0.0.0.0/0\nrelayhost = evil"}, "h")
    with pytest.raises(PostfixConfigError, match="not a Postfix parameter name"):
        render_main_cf({"my networks": "x"}, "h")


def test_layout_keeps_queue_and_data_outside_the_root_owned_config_tree() -> None:
    layout = InstanceLayout(ROOT)
    params = base_parameters(layout, Listener("127.0.4.1"), "closed-1")
    for key in ("queue_directory", "data_directory", "maillog_file"):
        assert not Path(params[key]).is_relative_to(layout.config_dir), key
    assert Path(params["maillog_file"]).is_relative_to(params["maillog_file_prefixes"])
    assert params["proxy_interfaces"] == "127.0.4.1"
    assert params["myhostname"] == "closed-1.relayguard.test"
    assert params["mynetworks"].split()[0] == "127.0.0.1/32"
    assert base_parameters(layout, Listener("::1"), "v6")["inet_protocols"] == "ipv6"


@pytest.mark.parametrize("bad", ["relative/dir", "/tmp/with space", "/tmp/a,b", "/tmp/$x"])
def test_layout_refuses_paths_main_cf_cannot_hold(bad: str) -> None:
    with pytest.raises(PostfixConfigError):
        InstanceLayout(Path(bad))


def test_listener_and_names_are_validated() -> None:
    with pytest.raises(PostfixConfigError):
        Listener("mail.example.com")
    with pytest.raises(PostfixConfigError):
        Listener("127.0.4.1", 0)
    assert instance_name_for(Path("/x/Open_Relay 2")) == "open-relay-2"


def test_alternates_are_added_once_and_removed_alone() -> None:
    existing = split_list("/etc/postfix-out, /etc/postfix-in\n\t/srv/x/config")
    assert existing == ["/etc/postfix-out", "/etc/postfix-in", "/srv/x/config"]
    added = with_alternate(existing, Path("/srv/y/config"))
    assert added == [*existing, "/srv/y/config"]
    assert with_alternate(added, Path("/srv/y/config/")) == added
    assert without_alternate(added, Path("/srv/x/config")) == [
        "/etc/postfix-out",
        "/etc/postfix-in",
        "/srv/y/config",
    ]
    assert without_alternate(existing, Path("/not/listed")) == existing


def test_profiles_say_what_a_probe_must_conclude() -> None:
    assert set(PROFILES) == {"open_relay", "closed", "debian_default", "drop_after_errors"}
    assert profile("open_relay").untrusted_verdict == Verdict.OPEN
    assert profile("open_relay").parameters["mynetworks"] == "0.0.0.0/0"
    debian = profile("debian_default").parameters["smtpd_relay_restrictions"]
    assert debian.split()[-1] == "defer_unauth_destination"
    drop = profile("drop_after_errors").parameters
    assert drop["smtpd_hard_error_limit"] == "3"
    assert (
        drop["smtpd_relay_restrictions"] == profile("closed").parameters["smtpd_relay_restrictions"]
    )
    for name in ("closed", "debian_default", "drop_after_errors"):
        assert profile(name).untrusted_verdict == Verdict.CLOSED
        assert profile(name).parameters["mynetworks"] == "127.0.0.1/32"
    with pytest.raises(KeyError, match="known: open_relay"):
        profile("exchange")
