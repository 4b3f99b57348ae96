"""The relay probe: judge a host's relay behaviour from an untrusted vantage point over SMTP.

Rooms: `catalog` (the tests, as data), `addresses` (address forms and encodings), `reply`
(SMTP reply parsing), `session` (one SMTP connection), `runner` (one host), `fleet` (many
hosts), `judge` (pure outcome/verdict/RFC 2505 decisions), `results` (records and JSON).
"""

from relayguard.probe.fleet import probe_targets
from relayguard.probe.options import ProbeOptions
from relayguard.probe.results import HostResult, probe_document

__all__ = ["HostResult", "ProbeOptions", "probe_document", "probe_targets"]
