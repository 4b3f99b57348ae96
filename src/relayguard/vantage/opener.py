"""The probe engine's connection opener through an SSH jump host (built on LocalForward).

The engine asks an `Opener` for (reader, writer) streams to host:port; this one connects to
the jump host's local forwarder for that destination and waits until the forwarder reports
the channel open. A channel that cannot be opened becomes the engine's `ConnectFailed`
carrying the jump host's reason, so the host is judged `inconclusive` with that reason.

    with SshJump(vantage, settings) as jump:
        results = probe_targets(targets, options,
                                opener_factory=lambda o: ssh_opener(jump, o.connect_timeout))
"""

from __future__ import annotations

import asyncio

from relayguard.probe.session import READ_CHUNK, ConnectFailed, Opener, Streams
from relayguard.vantage.errors import VantageError
from relayguard.vantage.ssh import SshJump


def ssh_opener(jump: SshJump, connect_timeout: float) -> Opener:
    """An Opener whose connections leave from `jump` (which must be connected)."""

    async def open_via_jump(host: str, port: int) -> Streams:
        loop = asyncio.get_running_loop()
        try:
            forward = jump.forwarder(host, port)
        except (VantageError, OSError) as exc:
            raise ConnectFailed(str(exc)) from exc
        try:
            async with asyncio.timeout(connect_timeout):
                reader, writer = await asyncio.open_connection(
                    forward.host, forward.port, limit=READ_CHUNK * 4
                )
        except (TimeoutError, OSError) as exc:
            raise ConnectFailed(
                f"local forwarder for {forward.destination} via {jump.vantage} failed: {exc}"
            ) from exc
        client_port = int(writer.get_extra_info("sockname")[1])
        try:
            await loop.run_in_executor(None, forward.wait_channel, client_port, connect_timeout)
        except VantageError as exc:
            writer.close()
            raise ConnectFailed(str(exc)) from exc
        return reader, writer

    return open_via_jump
