"""The lab: test equipment — emulated Exchange hosts and real Postfix instances.

Rooms: `exchange` (the twins), `wsman` (their WinRM endpoint), `postfix` (real instances),
`fleet` (a fleet's planning, directory, daemon and command); `ca` is shared by wsman and
fleet. The lab imports only `relayguard.vocabulary` from the product, and the product never
imports the lab (tests/suite/test_boundaries.py); `relayguard lab` is plugged into the
command line by entry point.
"""
