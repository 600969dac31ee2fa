"""Port scan check: which of the listed TCP ports accept a connection. Evidence, never proof.

A host's open ports do not show that it scans others, nor that it runs an open service, so the
verdict is always inconclusive: the open-port list and transcript are kept for the operator, while
reputations and the confirmed/refuted actions are left alone. One anonymous report must not get a
web server blocked.

A full connect and an immediate close, nothing sent. A refused connection is closed; no answer
within the timeout (or an unreachable network) is filtered. Both count as not open.
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from enum import StrEnum

from .result import CheckResult, Transcript, Verdict
from .tcp import PROBE_FAILURES, close, connect, describe_failure

# TCP services that are commonly abused when exposed: remote shells, mail, proxies, databases, caches.
DEFAULT_SCAN_PORTS = (21, 22, 23, 25, 53, 80, 110, 111, 135, 139, 143, 443, 445, 587, 1080, 1433, 2375,
                      3128, 3306, 3389, 5432, 5900, 6379, 8000, 8080, 8888, 9050, 9200, 11211, 27017)
DEFAULT_SCAN_CONCURRENCY = 64


class PortState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    FILTERED = "filtered"


async def _probe_port(ip: str, port: int, timeout: float, transcript: Transcript) -> PortState:
    try:
        async with asyncio.timeout(timeout):
            _, writer = await connect(ip, port)
    except ConnectionRefusedError:
        transcript.note(f"port {port} closed (connection refused)")
        return PortState.CLOSED
    except PROBE_FAILURES as exc:
        transcript.note(f"port {port} filtered ({describe_failure(exc)})")
        return PortState.FILTERED
    await close(writer)
    transcript.note(f"port {port} open")
    return PortState.OPEN


async def scan_ports(ip: str, ports: Sequence[int] = DEFAULT_SCAN_PORTS, timeout: float = 2.0,
                     probe_slots: asyncio.Semaphore | None = None) -> CheckResult:
    """Connect to each port, one per free slot of `probe_slots`, each bounded by `timeout`; always inconclusive."""
    ports = list(dict.fromkeys(ports))
    transcript = Transcript(f"{ip} tcp-connect")
    probe_slots = probe_slots or asyncio.Semaphore(DEFAULT_SCAN_CONCURRENCY)

    async def bounded(port: int) -> PortState:
        async with probe_slots:
            return await _probe_port(ip, port, timeout, transcript)

    states = dict(zip(ports, await asyncio.gather(*(bounded(port) for port in ports))))
    by_state = {state: sorted(port for port, s in states.items() if s is state) for state in PortState}
    details = {"open_ports": by_state[PortState.OPEN], "closed_ports": by_state[PortState.CLOSED],
               "filtered_ports": by_state[PortState.FILTERED]}
    open_ports = ", ".join(map(str, by_state[PortState.OPEN])) or "none"
    summary = f"open: {open_ports} (of {len(states)} ports probed); open ports alone prove no abuse"
    return CheckResult("port-scan", ip, Verdict.INCONCLUSIVE, summary, transcript.lines, details)
