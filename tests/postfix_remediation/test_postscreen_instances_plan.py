"""postscreen and multi-instance decisions, pure (no Postfix): the session service behind a
postscreen listener (POSTSCREEN_README, smtpd_service_name), its warnings, and which
instances a run manages and with which policy (MULTI_INSTANCE_README)."""

from __future__ import annotations

import dataclasses

import pytest

from postfix_remediation.backend import backend
from postfix_remediation.test_plan import desired, make_facts
from relayguard.lab import module_utils

services = module_utils.load("postfix_services")
instances = module_utils.load("postfix_instances")

POSTSCREEN = {"smtp/inet": "postscreen", "smtpd/pass": "smtpd", "submission/inet": "smtpd"}


def screened(*overrides: tuple[str, str, str], master: dict[str, str] | None = None) -> object:
    """Facts of a host with postscreen on smtp/inet; overrides as (service/type, name, value)."""
    found = tuple(
        backend.MasterOverride(*where.split("/"), name, value) for where, name, value in overrides
    )
    return dataclasses.replace(
        make_facts(),  # type: ignore[call-overload]
        master_overrides=found,
        master_services=POSTSCREEN if master is None else master,
    )


def test_postscreen_hands_sessions_to_the_pass_service() -> None:
    facts = screened()
    found = [listener.as_dict() for listener in services.smtp_listeners(facts)]
    assert found[0]["session_service"] == "smtpd/pass"
    assert found[0]["postscreen_access_list"] == facts.expanded.get("postscreen_access_list", "")  # type: ignore[attr-defined]
    assert found[1] == {
        "service": "submission/inet",
        "program": "smtpd",
        "session_service": "submission/inet",
    }


def test_smtpd_service_name_on_the_postscreen_service_picks_its_pass_service() -> None:
    facts = screened(("smtp/inet", "smtpd_service_name", "smtpd2"))
    assert services.smtp_listeners(facts)[0].session_service == "smtpd2/pass"
    warnings = services.postscreen_warnings(facts, False)
    assert any("smtpd2/pass, which master.cf does not define" in w for w in warnings)


def test_pass_override_is_planned_there_and_names_postscreen() -> None:
    facts = screened(("smtpd/pass", "mynetworks", "0.0.0.0/0"))
    plan = backend.plan_relay(facts, desired(relay_allowed_networks=["127.0.0.0/8"]))
    change = next(c for c in plan.changes if c.service)
    assert change.target == "master.cf smtpd/pass -o mynetworks"
    assert "the smtpd postscreen on smtp/inet hands sessions to" in change.reason


def test_override_on_postscreen_is_a_warning_not_a_change() -> None:
    facts = screened(("smtp/inet", "mynetworks", "0.0.0.0/0"))
    plan = backend.plan_relay(facts, desired())
    assert not [c for c in plan.changes if c.service]
    assert any("runs postscreen, which never relays" in w for w in plan.warnings)


def test_a_new_mynetworks_is_said_to_change_who_skips_postscreen() -> None:
    facts = dataclasses.replace(
        screened(),  # type: ignore[call-overload]
        expanded={**screened().expanded, "postscreen_access_list": "permit_mynetworks"},  # type: ignore[attr-defined]
    )
    plan = backend.plan_relay(facts, desired(relay_allowed_networks=["10.9.0.0/16"]))
    assert any("lets mynetworks clients skip its tests" in w for w in plan.warnings)
    same = backend.plan_relay(facts, desired())
    assert not any("skip its tests" in w for w in same.warnings)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("some", "is not primary, all or a list"),
        ([], "is not primary, all or a list"),
        (["relative/dir"], "is not an absolute path"),
    ],
)
def test_instances_option_is_checked(value: object, problem: str) -> None:
    with pytest.raises(backend.InputError, match=problem):
        instances.validate_instances(value)


def test_instance_options_accept_only_policy_options() -> None:
    with pytest.raises(backend.InputError, match="not per instance"):
        instances.validate_instance_options({"/etc/postfix-out": {"config_dir": "/x"}})
    with pytest.raises(backend.InputError, match=r"instance_options\[/etc/postfix-out\]\.inbound"):
        backend.run_settings(
            {"instance_options": {"/etc/postfix-out": {"inbound_domains": ["bad domain"]}}},
            False,
            False,
        )


def test_chosen_instances() -> None:
    secondaries = ["/etc/postfix-out", "/etc/postfix-in"]
    primary = instances.validate_instances("primary")
    assert instances.chosen_dirs("/etc/postfix", secondaries, primary) == (
        ["/etc/postfix"],
        secondaries,
    )
    every = instances.validate_instances("all")
    assert instances.chosen_dirs("/etc/postfix", secondaries, every)[0] == [
        "/etc/postfix",
        *secondaries,
    ]
    listed = instances.validate_instances(["/etc/postfix-in"])
    assert instances.chosen_dirs("/etc/postfix", secondaries, listed) == (
        ["/etc/postfix-in"],
        ["/etc/postfix", "/etc/postfix-out"],
    )
    with pytest.raises(backend.InputError, match="neither config_dir"):
        instances.chosen_dirs("/etc/postfix", secondaries, instances.validate_instances(["/x"]))


def test_secondary_dirs_come_from_multi_instance_directories() -> None:
    facts = make_facts(multi_instance_directories="/etc/postfix-out, /etc/postfix-in")
    assert instances.secondary_dirs(facts) == ["/etc/postfix-out", "/etc/postfix-in"]
    broken = make_facts(multi_instance_directories="relative")
    with pytest.raises(backend.PostfixCommandError, match="multi_instance_directories"):
        instances.secondary_dirs(broken)
