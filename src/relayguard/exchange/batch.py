"""A batch of Exchange hosts at once: the per-host tasks over a bounded pool of threads.

What `modules/exchange_batch.py` runs, one call per batch of secure-relay.yml, in place of one
module process per host (docs/performance.md, scenario d: a module process per host and task
was most of the playbook's time). Each host's work is exactly what the single-host modules do
(`assess`, `relay_task.run_relay_task`, `patch_task.run_patch_task`); a host's failure is
that host's result, never the batch's, and the hosts never share a WinRM session.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from relayguard.exchange import connection
from relayguard.exchange.assess import assess_collected
from relayguard.exchange.current import ReadError, held_session, platform_of
from relayguard.exchange.facts import Collected, config_op
from relayguard.exchange.patch_level import PatchPolicy
from relayguard.exchange.patch_task import run_patch_task
from relayguard.exchange.relay_task import (
    TaskFailure,
    plan_from_documents,
    plans_from_documents,
    run_relay_task,
)
from relayguard.exchange.transport import TransportError, WinRMClient, WinRMOptions
from relayguard.validate import InputError

ClientFactory = Callable[[WinRMOptions], WinRMClient]
DEFAULT_WORKERS = 16
COMPUTER_NAME = "{computer_name}"
MAX_WORKERS = 256


@dataclass(frozen=True)
class HostRequest:
    """One host of the batch: its inventory name, exchange_relay's options (the WinRM
    connection included), for `apply` exchange_patch's options (None: no patch), and for
    `assess` the patch policy its patch level is judged by."""

    name: str
    relay: Mapping[str, Any]
    patch: Mapping[str, Any] | None = None
    patch_policy: str = PatchPolicy.LATEST.value


def failure(message: str, **details: Any) -> dict[str, Any]:
    return {"failed": True, "msg": message, "changed": False, **details}


def assess_host(request: HostRequest, client_factory: ClientFactory) -> dict[str, Any]:
    """exchange_facts for one host: `{facts, exposure, patch}`, or a failure naming the cause."""
    return _assess(request, client_factory)[0]


def _assess(
    request: HostRequest, client_factory: ClientFactory
) -> tuple[dict[str, Any], Collected | None]:
    """`assess_host`, and the documents its facts were made of (None over SMB, or when the
    host could not be read)."""
    collected: Collected | None = None
    try:
        options = connection.winrm_options(request.relay)
        policy = PatchPolicy(request.patch_policy)
    except InputError as exc:
        return failure(str(exc)), None
    except ValueError:
        choices = ", ".join(p.value for p in PatchPolicy)
        return failure(f"patch_policy {request.patch_policy!r} is not one of {choices}"), None
    if request.relay.get("channel") == "smb":
        try:
            smb = connection.smb_options(request.relay, options)
        except InputError as exc:
            return failure(str(exc)), None
        from relayguard.exchange.smb_channel import assess_smb  # impacket: only for SMB

        result = assess_smb(smb, policy=policy).to_dict()
    else:
        try:
            runner = connection.runner_for(request.relay, options, client_factory)
        except InputError as exc:
            return failure(str(exc)), None
        except TransportError as exc:  # the client refused the options
            return failure(str(exc), host=options.host), None
        assessment, collected = assess_collected(runner, options.host, policy=policy)
        result = assessment.to_dict()
    if result["error"] is not None:
        return failure(result["error"], host=result["host"]), None
    assessed = {
        "failed": False,
        "changed": False,
        "facts": result["facts"],
        "exposure": result["exposure"],
        "patch": result["patch"],
    }
    return assessed, collected


def plan_host(request: HostRequest, client_factory: ClientFactory) -> dict[str, Any]:
    """exchange_relay in check mode for one host: the planned changes, nothing written."""
    try:
        result = run_relay_task(request.relay, check_mode=True, client_factory=client_factory)
    except TaskFailure as exc:
        return failure(str(exc), **exc.details)
    result.pop("diff", None)
    return {"failed": False, **result, "changed": False}


def _plan_read(request: HostRequest, collected: Collected) -> dict[str, Any]:
    """`plan_host` over the documents the host's assessment read (`plan_from_documents`)."""
    assert collected.config is not None
    try:
        result = plan_from_documents(request.relay, collected.detect, collected.config)
    except TaskFailure as exc:
        return failure(str(exc), **exc.details)
    result.pop("diff", None)
    return {"failed": False, **result, "changed": False}


def detect_host(request: HostRequest, client_factory: ClientFactory) -> dict[str, Any]:
    """assess, then (when the host could be assessed) plan, in one call of the batch: the
    assessment's `{facts, exposure, patch}` and the plan under `plan`. The connector name is
    known only once the host is assessed: `{computer_name}` in the request's
    relay_connector_name is the computer name read (the inventory name when none was).
    Exchange 5.5 has no relay connector of relayguard's: no connector name for it.

    The plan is made from the documents the assessment read (one read of the host, one
    WinRM shell: docs/performance.md); over SMB, with a platform forced or for
    `state: restored` it reads the host again as exchange_relay does."""
    assessed, collected = _assess(request, client_factory)
    if assessed["failed"]:
        return {**assessed, "plan": None}
    relay = dict(request.relay)
    facts = assessed["facts"]
    name = relay.get("relay_connector_name")
    if facts["platform"] == "exchange55":
        relay["relay_connector_name"] = None
    elif isinstance(name, str) and COMPUTER_NAME in name:
        computer = facts.get("computer_name") or request.name
        relay["relay_connector_name"] = name.replace(COMPUTER_NAME, str(computer))
    planning = HostRequest(request.name, relay, None, request.patch_policy)
    if _reusable(relay, collected):
        assert collected is not None
        planned = _plan_read(planning, collected)
    else:
        planned = plan_host(planning, client_factory)
    connector = relay.get("relay_connector_name")
    return {**assessed, "plan": planned, "failed": bool(planned["failed"]), "connector": connector}


def _reusable(relay: Mapping[str, Any], collected: Collected | None) -> bool:
    """Whether exchange_relay would plan from the very documents the assessment read: the
    options plan from documents, and its read_config is the one of the platform detected."""
    if collected is None or collected.config is None or not plans_from_documents(relay):
        return False
    try:
        platform = platform_of(collected.detect)
    except ReadError:
        return False
    return config_op(collected.detect) == f"{platform.value}.read_config"


class _SharedClients:
    """A client factory that makes one client per endpoint and holds its session open until
    `close`: a host's relay step and patch step share one WinRM shell (one TLS and NTLM
    handshake, one Create and Delete) instead of opening one each. A shell that saw an error
    is given up all the same (`WinRMClient.session`), so a step after a failure starts
    afresh."""

    def __init__(self, factory: ClientFactory) -> None:
        self._factory = factory
        self._clients: dict[tuple[WinRMOptions, str | None], WinRMClient] = {}
        self._sessions = contextlib.ExitStack()

    def __call__(self, options: WinRMOptions) -> WinRMClient:
        secret = None if options.password is None else options.password.reveal()
        key = (dataclasses.replace(options, password=None), secret)
        client = self._clients.get(key)
        if client is None:
            client = self._factory(options)
            self._sessions.enter_context(held_session(client))
            self._clients[key] = client
        return client

    def close(self) -> None:
        self._sessions.close()


def apply_host(
    request: HostRequest, client_factory: ClientFactory, *, check_mode: bool
) -> dict[str, Any]:
    """exchange_relay, then exchange_patch when asked and the relay step succeeded, over one
    WinRM session."""
    shared = _SharedClients(client_factory)
    try:
        return _apply_steps(request, shared, check_mode=check_mode)
    finally:
        shared.close()


def _apply_steps(
    request: HostRequest, client_factory: ClientFactory, *, check_mode: bool
) -> dict[str, Any]:
    try:
        relay: dict[str, Any] = {
            "failed": False,
            **run_relay_task(request.relay, check_mode=check_mode, client_factory=client_factory),
        }
    except TaskFailure as exc:
        relay = failure(str(exc), **exc.details)
    patch: dict[str, Any] | None = None
    if request.patch is not None and not relay["failed"]:
        params = {**request.relay, **request.patch}
        try:
            patch = {
                "failed": False,
                **run_patch_task(params, check_mode=check_mode, client_factory=client_factory),
            }
        except TaskFailure as exc:
            patch = failure(str(exc), **exc.details)
    return {"relay": relay, "patch": patch}


def run_batch(
    requests: Sequence[HostRequest],
    work: Callable[[HostRequest], dict[str, Any]],
    max_workers: int = DEFAULT_WORKERS,
) -> dict[str, dict[str, Any]]:
    """`work` for every host, at most `max_workers` at a time; results by inventory name.
    Hosts of the batch that reach one server (two inventory names for one address) are worked
    one after the other, never at once: the server's change lock (hostlock.py) would refuse
    the second as "another run", though it is this one."""
    names = [r.name for r in requests]
    if len(set(names)) != len(names):
        raise InputError("hosts", names, "names a host twice")
    if not 1 <= max_workers <= MAX_WORKERS:
        raise InputError("max_workers", max_workers, f"is not between 1 and {MAX_WORKERS}")
    if not requests:
        return {}
    servers = {server_of(r): threading.Lock() for r in requests}

    def one(request: HostRequest) -> dict[str, Any]:
        with servers[server_of(request)]:
            return work(request)

    with ThreadPoolExecutor(max_workers=min(max_workers, len(requests))) as pool:
        results = list(pool.map(one, requests))
    return dict(zip(names, results, strict=True))


def server_of(request: HostRequest) -> str:
    """The server a request reaches (its change lock is named after this address)."""
    return str(request.relay.get("winrm_host") or request.name).strip().lower()
