"""An Exchange host's record after detection: what secure-relay.yml keeps of `exchange_batch`'s
detect result for the plan, the apply step and the report.

Pure: one host's detect result (`{facts, exposure, patch, plan}`, batch.detect_host) and the
site's patch packages in, the record out — the platform, the build and its explanation, the
patch level (required, installed, compliant), the planned changes with the patch among them,
the rule table's checks, and the package exchange_batch's apply installs. It was a set_fact of
about 60 lines of Jinja per host (roles/exchange_detect/tasks/main.yml), templated once per host
and task; here it is computed once per batch, beside the detect call (docs/performance.md).

The patch level:
- Exchange 5.5: msexcimc.exe (the IMS) decides; 5.5.2650.1 is the MS99-027 fix (KB Q237927),
  or the file version the configured package yields when one applies to the build.
- 2013 and later: the newest update of an accepted CU under relay_patch_policy, judged by
  patch_level.py (the detect result's `patch.required` and `patch.state`); the package is an
  update of the host's own CU (an SU never changes the CU).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any

MS99_027_FIX = "5.5.2650.1"  # KB Q237927: msexcimc.exe of the post-SP2 IMS fix
PATCH_STATES = {"present": True, "missing": False}  # else unknown (None)


def version_key(text: object) -> tuple[int, ...]:
    """A dotted version's numbers, for ordering ("15.2.1544.48" after "15.2.1544.9")."""
    return tuple(int(part) for part in re.findall(r"\d+", str(text)))


def applicable_package(
    packages: Sequence[Mapping[str, Any]], version: str
) -> Mapping[str, Any] | None:
    """Of the packages whose applies_to is a prefix of this build (5.5, 5.5.2448, 15.2.1544 or
    the whole build), the one yielding the highest file version — for 5.5 SP2 the SP4-level IMS
    (KB Q264330) over the MS99-027 hotfix alone (KB Q237927); for 2013+ an update of the CU."""
    parts = version.split(".")
    prefixes = {".".join(parts[:2]), ".".join(parts[:3]), version}
    matching = [p for p in packages if p.get("applies_to") in prefixes]
    if not matching:
        return None
    return max(matching, key=lambda p: version_key(p.get("file_version")))


def installed_version(facts: Mapping[str, Any]) -> str:
    """Exchange 5.5: the IMS binary's version (the build's, else msexcimc.exe's file version,
    else 0: not read); 2013+: the build ExSetup.exe reports."""
    if facts.get("platform") != "exchange55":
        return str(facts.get("version"))
    build = facts.get("build") or {}
    msexcimc = facts.get("msexcimc") or {}
    return str(build.get("msexcimc") or msexcimc.get("file_version") or "0")


def patch_state(detected: Mapping[str, Any], package: Mapping[str, Any] | None) -> dict[str, Any]:
    """required, installed, compliant (True, False, or None when the level is not known)."""
    facts = detected["facts"]
    installed = installed_version(facts)
    if facts.get("platform") == "exchange55":
        required: Any = package["file_version"] if package else MS99_027_FIX
        compliant: bool | None = version_key(installed) >= version_key(required)
    else:
        patch = detected.get("patch") or {}
        required = patch.get("required")
        compliant = PATCH_STATES.get(str(patch.get("state")))
    return {"required": required, "installed": installed, "compliant": compliant}


def build_record(detected: Mapping[str, Any]) -> dict[str, Any]:
    """The build as the report shows it, with a sentence: product, level, update, reasons."""
    facts = detected["facts"]
    build = facts.get("build")
    build = build if isinstance(build, Mapping) else {}
    product = build.get("product", "unknown build")
    update = build.get("security_update")
    reasons = "; ".join(str(r) for r in (detected.get("patch") or {}).get("reasons") or [])
    explanation = f"{product or ''} {build.get('level') or ''}{' ' + str(update) if update else ''}"
    return {
        "version": facts.get("version"),
        "product": build.get("product"),
        "level": build.get("level"),
        "source": build.get("source"),
        "explanation": f"{explanation} — {reasons}",
    }


def planned_changes(
    detected: Mapping[str, Any], patch: Mapping[str, Any], package: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """The plan's changes under the report's control ids, then the patch when it is missing."""
    plan = detected.get("plan") or {}
    changes = [
        {
            "control": f"exchange-{item['control']}",
            "target": item.get("target"),
            "before": item.get("before"),
            "after": item.get("after"),
            "applied": False,
        }
        for item in plan.get("changes") or []
    ]
    if patch["compliant"] is False:
        file = (package or {}).get("file") or "no package configured"
        changes.append(
            {
                "control": "exchange-patch",
                "target": posixpath.basename(str(file)),
                "before": patch["installed"],
                "after": patch["required"],
                "applied": False,
            }
        )
    return changes


def unclosable(
    patch: Mapping[str, Any], package: Mapping[str, Any] | None, build: Mapping[str, Any]
) -> str | None:
    """Why a missing fix cannot be closed by this run (no configured package for the build, or
    one that stops short of the required version), or None when it can or is not missing."""
    if patch["compliant"] is not False:
        return None
    short = f"{patch['installed']} is below {patch['required']}"
    if not package:
        version = build.get("version")
        return f"{short} and relay_exchange_patch_packages has no package for build {version}"
    if version_key(package.get("file_version")) < version_key(patch["required"]):
        file = posixpath.basename(str(package.get("file")))
        return f"{short} and {file} yields only {package.get('file_version')}"
    return None


def detect_record(
    detected: Mapping[str, Any],
    packages: Sequence[Mapping[str, Any]] = (),
    *,
    reboot: bool = False,
    connector: str | None = None,
) -> dict[str, Any]:
    """The host's record from its detect result (not a failed one): see the module's docstring.
    `connector` is the relay connector's name as planned (None on Exchange 5.5)."""
    facts = detected["facts"]
    package = applicable_package(packages, str(facts.get("version") or ""))
    patch = patch_state(detected, package)
    install = None
    if patch["compliant"] is False and package:
        install = {
            "package_src": package.get("file"),
            "sha256": package.get("sha256"),
            "target_version": package.get("file_version"),
            "reboot": reboot,
        }
    build = build_record(detected)
    return {
        "platform": facts.get("platform"),
        "rules": list((detected.get("exposure") or {}).get("checks") or []),
        "connector": connector if facts.get("platform") != "exchange55" else None,
        "build": build,
        "patch": patch,
        # a missing fix no configured package closes: the apply step fails the host with this
        "unclosable": unclosable(patch, package, build),
        "changes": planned_changes(detected, patch, package),
        "exchange_patch": install,
        "package": dict(package) if package else {},
    }
