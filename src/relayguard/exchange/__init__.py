"""Exchange room: the build catalog, the WinRM transport and the PowerShell payloads.

`catalog` explains an Exchange build from data (`builds.yml`), `payloads` renders the
read/write PowerShell scripts of payload protocol v1, and `transport` runs them on a host
over WinRM. Decisions live in pure functions; only `transport` talks to the network.
"""
