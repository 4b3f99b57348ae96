"""The SOAP faults the twin's WS-Management service answers with, as Windows words them.

Data, not code: each fault is the SOAP 1.2 code/subcode pair, the reason text and the
WSManFault code a Windows WinRM service puts in ``s:Detail``. Codes and texts come from the
Windows SDK header ``wsmerror.h`` (FACILITY_WINRM 0x33; the comment above each define names
the subcode); the shell-not-found detail text is the one Windows sends (seen verbatim in
WinRb/WinRM issues #253 and #273, pypsrp issue #22); the TimedOut fault matches the sample
in pywinrm's own tests. pywinrm turns code 2150858793 into ``WinRMOperationTimeoutError`` and
retries the Receive, which is why long operations are modelled with it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FaultSpec:
    """One kind of WS-Management fault."""

    code: str  # SOAP 1.2 fault code: "s:Sender" or "s:Receiver"
    subcode: str  # e.g. "w:InvalidSelectors"
    reason: str  # s:Reason text
    wsman_code: int  # f:WSManFault/@Code (an HRESULT as an unsigned decimal)


class WsmanFault(Exception):
    """Raised inside the service; the server turns it into a SOAP fault (HTTP 500)."""

    def __init__(self, spec: FaultSpec, detail: str | None = None) -> None:
        super().__init__(detail or spec.reason)
        self.spec = spec
        self.detail = detail or spec.reason


# wsmerror.h ERROR_WSMAN_ACTION_NOT_SUPPORTED 0x80338013 ("wsa, code=Sender, ActionNotsupported")
ACTION_NOT_SUPPORTED = FaultSpec(
    "s:Sender",
    "a:ActionNotSupported",
    "The WS-Management service does not support the action specified in the request.",
    0x80338013,
)

# wsmerror.h ERROR_WSMAN_RESOURCE_NOT_FOUND 0x80338000
RESOURCE_NOT_FOUND = FaultSpec(
    "s:Sender",
    "w:DestinationUnreachable",
    "The WS-Management service cannot process the request. The service cannot find the "
    "resource identified by the resource URI and selectors.",
    0x80338000,
)

# wsmerror.h ERROR_WSMAN_UNEXPECTED_SELECTORS 0x8033805B = 2150858843, the code Windows sends
# with the shell-not-found detail below.
SHELL_NOT_FOUND = FaultSpec(
    "s:Sender",
    "w:InvalidSelectors",
    "The WS-Management service cannot process the request because the request contained "
    "invalid selectors for the resource.",
    0x8033805B,
)


def shell_not_found_detail(shell_id: str) -> str:
    """The f:Message Windows sends for a ShellId it does not know (see module docstring)."""
    return (
        f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the "
        "shell was not found on the server. Possible causes are: the specified ShellId is "
        "incorrect or the shell no longer exists on the server. Provide the correct ShellId or "
        "create a new shell and retry the operation."
    )


# wsmerror.h ERROR_WSMAN_INSUFFCIENT_SELECTORS 0x8033805A (sic)
MISSING_SHELL_SELECTOR = FaultSpec(
    "s:Sender",
    "w:InvalidSelectors",
    "The WS-Management service cannot process the request because the request did not "
    "contain all required selectors.",
    0x8033805A,
)

# wsmerror.h ERROR_WSMAN_OPERATION_TIMEDOUT 0x80338029 ("wsman, code=Receiver, Timedout")
OPERATION_TIMED_OUT = FaultSpec(
    "s:Receiver",
    "w:TimedOut",
    "The WS-Management service cannot complete the operation within the time specified in "
    "OperationTimeout.  ",
    0x80338029,
)


def quota_max_shells(limit: int) -> FaultSpec:
    """wsmerror.h ERROR_WSMAN_QUOTA_MAX_SHELLS 0x803381A5 (subcode as ERROR_WSMAN_QUOTA_LIMIT)."""
    return FaultSpec(
        "s:Sender",
        "w:QuotaLimit",
        "The WS-Management service cannot process the request. This user is allowed a maximum "
        f"number of {limit} concurrent shells, which has been exceeded. Close existing shells "
        "or raise the quota for this user. ",
        0x803381A5,
    )


# wsmerror.h ERROR_WSMAN_SCHEMA_VALIDATION_ERROR 0x80338041 (also in pywinrm's tests)
SCHEMA_VALIDATION = FaultSpec(
    "s:Sender",
    "w:SchemaValidationError",
    "The SOAP XML in the message does not match the corresponding XML schema definition. "
    "Change the XML and retry.",
    0x80338041,
)

# An unknown CommandId or signal code. Modelled: the exact fault Windows sends here is not
# verified; Win32 ERROR_INVALID_PARAMETER (87) with the DSP0226 InvalidParameter subcode.
INVALID_PARAMETER = FaultSpec(
    "s:Sender",
    "w:InvalidParameter",
    "The parameter is incorrect. ",
    87,
)

# A bug in the twin itself (never expected): wsmerror.h ERROR_WSMAN_PROVIDER_FAILURE 0x80338003
INTERNAL_ERROR = FaultSpec(
    "s:Receiver",
    "w:InternalError",
    "An error was encountered inside the plugin.",
    0x80338003,
)
