"""Payload ops of the Exchange 5.5 twin: the IMS registry parameters and Routing tab.

`exchange55.read_config` prints what `Get-ItemProperty` finds under the IMS `Parameters` key
(KB Q193922) plus the Routing tab; `exchange55.write_config` sets or removes those values the
way `Set-ItemProperty -Type DWord/MultiString` / `Remove-ItemProperty` would (the registry
does not check `net;mask` syntax: the IMS skips malformed lines when it starts).
See docs/payloads.md for the exact shapes.
"""

from __future__ import annotations

from typing import Any

from relayguard.lab.exchange.oplib import TwinContext, fail, require_exchange55
from relayguard.lab.exchange.state import Exchange55, RoutingEntry, TwinState, to_jsonable

PARAMETERS_KEY = "HKLM:\\SYSTEM\\CurrentControlSet\\Services\\MSExchangeIMC\\Parameters"
# The IMS object in the Exchange directory (docs/sources.md#exchange55-routing-storage)
ROUTING_SOURCE = "directory"
_MULTI_SZ = ("RelayAllowList", "RelayDenyList", "RelayLocalIPList")
DWORD_MAX = 0xFFFFFFFF


def config_document(x: Exchange55) -> dict[str, Any]:
    p = x.Parameters
    return {
        "Parameters": {
            "Path": PARAMETERS_KEY,
            "RelayFlags": p.RelayFlags,
            "RelayAllowList": p.RelayAllowList,
            "RelayDenyList": p.RelayDenyList,
            "RelayLocalIPList": p.RelayLocalIPList,
        },
        "Routing": {
            "Source": ROUTING_SOURCE,
            "RerouteIncoming": x.Routing.RerouteIncoming,
            "RoutingList": to_jsonable(x.Routing.RoutingList),
        },
        "Service": {
            "Name": x.Service.Name,
            "Status": x.Service.Status,
            "StartType": x.Service.StartType,
        },
        "ImcFileVersion": x.ImcFileVersion,
    }


def read_config(params: dict[str, Any], ctx: TwinContext) -> dict[str, Any]:
    return config_document(require_exchange55(ctx.store.current()))


def write_config(params: dict[str, Any], ctx: TwinContext) -> dict[str, Any]:
    """Validate everything first, then write (a refused value changes nothing)."""
    unknown = set(params) - {"Parameters", "Routing"}
    if unknown:
        fail(f"A parameter cannot be found that matches parameter name '{sorted(unknown)[0]}'.")
    new_params = _parameters(params.get("Parameters"))
    new_routing = _routing(params.get("Routing"))

    def apply(state: TwinState) -> dict[str, Any]:
        x = require_exchange55(state)
        for name, value in new_params.items():
            setattr(x.Parameters, name, value)
        if new_routing is not None:
            reroute, routing_list = new_routing
            if reroute is not None:
                x.Routing.RerouteIncoming = reroute
            if routing_list is not None:
                x.Routing.RoutingList = routing_list
        return config_document(x)

    return ctx.store.update(apply)


def _parameters(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail('Cannot convert the "Parameters" value to type "System.Collections.Hashtable".')
    out: dict[str, Any] = {}
    for name, item in value.items():
        if name == "RelayFlags":
            if item is not None and (
                isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= DWORD_MAX
            ):
                fail(
                    f'Cannot convert value "{item}" to type "System.UInt32". Error: "Value was '
                    'either too large or too small for a UInt32."'
                )
            out[name] = item
        elif name in _MULTI_SZ:
            if item is not None and (
                not isinstance(item, list) or not all(isinstance(v, str) for v in item)
            ):
                fail(f'Cannot convert value "{item}" to type "System.String[]".')
            out[name] = None if item is None else list(item)
        else:
            fail(f"Property {name} does not exist at path {PARAMETERS_KEY}.")
    return out


def _routing(value: Any) -> tuple[bool | None, list[RoutingEntry] | None] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        fail('Cannot convert the "Routing" value to type "System.Collections.Hashtable".')
    reroute = value.get("RerouteIncoming")
    if reroute is not None and not isinstance(reroute, bool):
        fail(f'Cannot convert value "{reroute}" to type "System.Boolean".')
    entries = value.get("RoutingList")
    routing_list: list[RoutingEntry] | None = None
    if entries is not None:
        if not isinstance(entries, list):
            fail("RoutingList must be a list of {Domain, Action, Host} entries.")
        routing_list = []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("Domain"), str):
                fail(f"Invalid routing entry {entry!r}: Domain is required.")
            action = entry.get("Action", "Inbound")
            if action not in ("Inbound", "Reroute"):
                fail(f"Invalid routing action {action!r}: expected Inbound or Reroute.")
            domain = entry["Domain"].strip()
            if not domain or " " in domain:
                fail(f"Invalid routing domain {domain!r}.")
            routing_list.append(
                RoutingEntry(Domain=domain, Action=action, Host=str(entry.get("Host", "")))
            )
    return reroute, routing_list
