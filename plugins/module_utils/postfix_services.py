"""Postfix relay closure, the SMTP listeners (pure): which master.cf service really handles a
session, and what postscreen in front of it decides.

POSTSCREEN_README: with postscreen, the `inet` service on port 25 runs postscreen(8), which
screens the client and hands an allowed connection to the smtpd(8) of the `pass` service named
by `smtpd_service_name` (postconf(5), default `smtpd`: master.cf `smtpd pass ... smtpd`). That
smtpd makes the relay decision, so its `-o` overrides are the ones that count; postscreen
never relays. Its own `postscreen_access_list` (default `permit_mynetworks`) only lets
clients skip its tests, with the `mynetworks` of the postscreen service.

Standard library only (Python 3.7+).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from postfix_facts import PostfixFacts, split_list
else:
    try:  # as Ansible ships it: the collection's module_utils beside this file
        from ansible_collections.relayguard.mail.plugins.module_utils.postfix_facts import (
            PostfixFacts,
            split_list,
        )
    except ImportError:  # loaded by path outside Ansible (tests, the target-Python check)
        from postfix_facts import PostfixFacts, split_list

SMTP_PROGRAMS = ("smtpd", "postscreen")
PERMIT_MYNETWORKS = "permit_mynetworks"


def service_value(facts: PostfixFacts, service: str, name: str) -> str:
    """`name` as `service` sees it: its own `-o` override, else main.cf (expanded)."""
    for override in facts.master_overrides:
        if f"{override.service}/{override.service_type}" == service and override.name == name:
            return override.value
    return facts.expanded.get(name, "")


@dataclass(frozen=True)
class SmtpListener:
    """An `inet` service that takes SMTP connections, and the service whose smtpd handles
    its sessions (itself, or the `pass` service postscreen hands them to)."""

    service: str
    program: str
    session_service: str
    access_list: str = ""  # postscreen_access_list (postscreen only)
    trusted_networks: str = ""  # the mynetworks postscreen's permit_mynetworks uses

    def as_dict(self) -> dict[str, str]:
        result = {
            "service": self.service,
            "program": self.program,
            "session_service": self.session_service,
        }
        if self.program == "postscreen":
            result["postscreen_access_list"] = self.access_list
            result["postscreen_mynetworks"] = self.trusted_networks
        return result


def smtp_listeners(facts: PostfixFacts) -> list[SmtpListener]:
    """Every inet service running smtpd or postscreen, in master.cf order."""
    listeners = []
    for service, program in facts.master_services.items():
        if not service.endswith("/inet") or program not in SMTP_PROGRAMS:
            continue
        if program == "smtpd":
            listeners.append(SmtpListener(service, program, service))
            continue
        handoff = service_value(facts, service, "smtpd_service_name") or "smtpd"
        listeners.append(
            SmtpListener(
                service,
                program,
                f"{handoff}/pass",
                service_value(facts, service, "postscreen_access_list"),
                service_value(facts, service, "mynetworks"),
            )
        )
    return listeners


def screened_by(facts: PostfixFacts, service: str) -> list[str]:
    """The postscreen services that hand their sessions to `service` (a `pass` smtpd)."""
    return [
        listener.service
        for listener in smtp_listeners(facts)
        if listener.program == "postscreen" and listener.session_service == service
    ]


def describe_service(facts: PostfixFacts, service: str) -> str:
    """A service as a plan's reason names it: `smtpd/pass` says who feeds it sessions."""
    feeders = screened_by(facts, service)
    if feeders:
        return f"{service} service (the smtpd postscreen on {', '.join(feeders)} hands sessions to)"
    return f"{service} service"


def is_postscreen(facts: PostfixFacts, service: str) -> bool:
    return facts.master_services.get(service) == "postscreen"


def postscreen_warnings(facts: PostfixFacts, mynetworks_changes: bool) -> list[str]:
    """What postscreen's own parameters mean for the change (POSTSCREEN_README): a new
    main.cf mynetworks (`mynetworks_changes`) changes which clients skip its tests when its
    access list permits them and the service has no mynetworks of its own."""
    warnings = []
    for listener in smtp_listeners(facts):
        if listener.program != "postscreen":
            continue
        if listener.session_service not in facts.master_services:
            warnings.append(
                f"postscreen on {listener.service} hands sessions to {listener.session_service}, "
                "which master.cf does not define: no smtpd takes them"
            )
        own = service_value(facts, listener.service, "mynetworks") != facts.expanded.get(
            "mynetworks", ""
        )
        if PERMIT_MYNETWORKS in split_list(listener.access_list) and mynetworks_changes and not own:
            warnings.append(
                f"postscreen on {listener.service} lets mynetworks clients skip its tests "
                f"(postscreen_access_list = {listener.access_list}); the new mynetworks changes "
                "which clients those are (relaying is decided by "
                f"{listener.session_service}, not by postscreen)"
            )
    return warnings
