"""A real authoritative DNS server (NLnet Labs NSD) on a loopback address, for one test.

NSD serves the zone files it is given from a private directory, unprivileged port, no
control socket, no database; it runs in the foreground and is stopped on the way out.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from support.realserver import tool_path

_CONFIG = """server:
    ip-address: {address}
    port: {port}
    do-ip6: {ip6}
    username: ""
    chroot: ""
    database: ""
    zonesdir: "{directory}"
    zonelistfile: "{directory}/zone.list"
    xfrdfile: "{directory}/xfrd.state"
    pidfile: "{directory}/nsd.pid"
    logfile: "{directory}/nsd.log"
    server-count: 1
    verbosity: 1
remote-control:
    control-enable: no
"""


def _answers(address: str, port: int, zone: str) -> bool:
    import dns.message
    import dns.query

    try:
        dns.query.udp(dns.message.make_query(zone, "SOA"), address, timeout=0.5, port=port)
    except (OSError, EOFError, dns.exception.Timeout):
        return False
    return True


@contextmanager
def nsd_serving(
    directory: Path, zones: Mapping[str, str], address: str, port: int
) -> Iterator[tuple[str, int]]:
    """NSD answering for `zones` (name -> zone file text) on address:port until the block ends."""
    import dns.exception  # noqa: F401  (dns.query's errors)

    nsd = tool_path("nsd")
    config = _CONFIG.format(
        address=address, port=port, ip6="yes" if ":" in address else "no", directory=directory
    )
    for name, text in zones.items():
        (directory / f"{name}.zone").write_text(text, encoding="ascii")
        config += f'zone:\n    name: "{name}"\n    zonefile: "{name}.zone"\n'
    (directory / "nsd.conf").write_text(config, encoding="ascii")
    proc = subprocess.Popen(
        [nsd, "-d", "-c", str(directory / "nsd.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not _answers(address, port, next(iter(zones))):
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (
                    (directory / "nsd.log").read_text(errors="replace")
                    if (directory / "nsd.log").exists()
                    else ""
                )
                raise RuntimeError(f"nsd did not answer on {address}:{port}: {log[-2000:]}")
            time.sleep(0.1)
        yield address, port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
