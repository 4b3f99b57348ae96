"""Lab patch packages: stand-ins for the Exchange 5.5 IMS hotfix and the 15.x security updates.

A real hotfix is a Microsoft binary the lab cannot ship. A lab package is a small file that the
twin's installer (`exchange.install_patch`) understands: JSON naming the product build it
applies to, the file it replaces and the version it yields. Clients treat it like any package:
upload it in chunks, check its SHA-256, install it, verify the file version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAGIC = "relayguard-lab-package/1"


@dataclass(frozen=True)
class LabPackage:
    """What the twin's installer reads from a package file."""

    FileName: str  # e.g. "IMS-Q237927-x86.exe"
    Product: str  # "Exchange 5.5" / "Exchange 2019" / ...
    AppliesTo: str  # the build prefix it installs on: "5.5.2448" or "15.2.1544"
    TargetFile: str  # "msexcimc.exe" or "ExSetup.exe"
    FileVersion: str  # the version the target file has after the install
    KB: str
    PackageName: str
    RebootRequired: bool = False
    InstallSeconds: float = 1.0  # the service is down this long during the install

    def content(self) -> bytes:
        doc = {"magic": MAGIC, **self.__dict__}
        # Padding makes the package larger than pywinrm's command line: it must be chunked.
        return (json.dumps(doc, indent=1) + "\n" + "#" * 12000 + "\n").encode()


def parse_package(data: bytes) -> LabPackage | None:
    """The package in `data`, or None if it is not a lab package (a corrupt installer)."""
    try:
        text = data.decode("utf-8")
        doc: Any = json.loads(text[: text.index("\n#")] if "\n#" in text else text)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.pop("magic", None) != MAGIC:
        return None
    try:
        return LabPackage(**doc)
    except TypeError:
        return None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest().upper()  # the install script prints upper-case hex


DEFAULT_PACKAGES = (
    LabPackage(
        FileName="IMS-Q237927-SP2-x86.exe",
        Product="Exchange 5.5",
        AppliesTo="5.5.2448",
        TargetFile="msexcimc.exe",
        FileVersion="5.5.2650.1",  # the MS99-027 fix level (KB Q237927)
        KB="Q237927",
        PackageName="Exchange 5.5 SP2 IMS fix for encapsulated address relay (MS99-027)",
    ),
    LabPackage(
        FileName="IMS-SP4-level-x86.exe",
        Product="Exchange 5.5",
        AppliesTo="5.5",
        TargetFile="msexcimc.exe",
        # The SP4 IMS build (KB Q158530: SP4 = 5.5.2653); first fixed the quoted "IMCEA ..."
        # relay of KB Q264330. The revision .0 is a lab value.
        FileVersion="5.5.2653.0",
        KB="Q264330",
        PackageName="Exchange 5.5 IMS at the SP4 level (KB Q264330, quoted IMCEA relay)",
    ),
    LabPackage(
        FileName="Exchange2019-CU14-SU-lab.msp",
        Product="Exchange 2019",
        AppliesTo="15.2.1544",
        TargetFile="ExSetup.exe",
        FileVersion="15.2.1544.14",  # lab value, not a catalogue fact
        KB="KB0000001",
        PackageName="Security Update For Exchange Server 2019 CU14 (lab package)",
        RebootRequired=True,
    ),
    # The newest update of each CU the lab's twins run (HealthChecker's build dictionary,
    # Sep26SUv2; docs/sources.md#healthchecker-build-detection): secure-relay.yml picks, of
    # the packages of a host's CU, the one yielding the highest build. KBs are lab values.
    LabPackage(
        FileName="Exchange2019-CU14-Sep26SUv2-lab.msp",
        Product="Exchange 2019",
        AppliesTo="15.2.1544",
        TargetFile="ExSetup.exe",
        FileVersion="15.2.1544.48",
        KB="KB0000003",
        PackageName="Security Update For Exchange Server 2019 CU14 Sep26SUv2 (lab package)",
        RebootRequired=True,
    ),
    LabPackage(
        FileName="Exchange2019-CU15-Sep26SUv2-lab.msp",
        Product="Exchange 2019",
        AppliesTo="15.2.1748",
        TargetFile="ExSetup.exe",
        FileVersion="15.2.1748.53",
        KB="KB0000004",
        PackageName="Security Update For Exchange Server 2019 CU15 Sep26SUv2 (lab package)",
        RebootRequired=True,
    ),
    LabPackage(
        FileName="Exchange2016-CU23-Sep26SUv2-lab.msp",
        Product="Exchange 2016",
        AppliesTo="15.1.2507",
        TargetFile="ExSetup.exe",
        FileVersion="15.1.2507.75",
        KB="KB0000005",
        PackageName="Security Update For Exchange Server 2016 CU23 Sep26SUv2 (lab package)",
        RebootRequired=True,
    ),
    LabPackage(
        FileName="Exchange2016-CU23-SU-lab.msp",
        Product="Exchange 2016",
        AppliesTo="15.1.2507",
        TargetFile="ExSetup.exe",
        FileVersion="15.1.2507.44",  # lab value
        KB="KB0000002",
        PackageName="Security Update For Exchange Server 2016 CU23 (lab package)",
        RebootRequired=True,
    ),
)


def write_packages(directory: Path) -> list[dict[str, str]]:
    """Write the default lab packages; their names, paths and SHA-256 for `lab up`'s JSON."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for package in DEFAULT_PACKAGES:
        data = package.content()
        path = directory / package.FileName
        path.write_bytes(data)
        out.append(
            {
                "file": str(path),
                "product": package.Product,
                "applies_to": package.AppliesTo,
                "file_version": package.FileVersion,
                "sha256": sha256(data),
            }
        )
    return out
