"""Port scan check: which of the listed TCP ports accept a connection; confirmed when any does.

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
                     concurrency: int = 64) -> CheckResult:
    """Connect to each port, at most `concurrency` at once, each bounded by `timeout`."""
    ports = list(dict.fromkeys(ports))
    transcript = Transcript(f"{ip} tcp-connect")
    limit = asyncio.Semaphore(concurrency)

    async def bounded(port: int) -> PortState:
        async with limit:
            return await _probe_port(ip, port, timeout, transcript)

    states = dict(zip(ports, await asyncio.gather(*(bounded(port) for port in ports))))
    by_state = {state: sorted(port for port, s in states.items() if s is state) for state in PortState}
    details = {"open_ports": by_state[PortState.OPEN], "closed_ports": by_state[PortState.CLOSED],
               "filtered_ports": by_state[PortState.FILTERED]}
    if by_state[PortState.OPEN]:
        summary = f"open: {', '.join(map(str, by_state[PortState.OPEN]))} (of {len(states)} ports probed)"
        return CheckResult("port-scan", ip, Verdict.CONFIRMED, summary, transcript.lines, details)
    return CheckResult("port-scan", ip, Verdict.REFUTED, f"none of {len(states)} ports probed is open",
                       transcript.lines, details)
