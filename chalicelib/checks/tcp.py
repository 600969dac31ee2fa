"""The TCP plumbing the probes share: connect with a byte limit, close without hanging, name failures."""
from __future__ import annotations

import asyncio
import contextlib

READ_LIMIT = 16 * 1024  # the most a probe buffers from a target in one read
CLOSE_WAIT = 1.0


class ProtocolViolation(Exception):
    """The target answered with bytes that are not the protocol the probe speaks."""


# What a target can do to a probe; each ends the probe with a note, never the check.
PROBE_FAILURES = (OSError, TimeoutError, EOFError, asyncio.LimitOverrunError, ProtocolViolation)


async def connect(ip: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(ip, port, limit=READ_LIMIT)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(*PROBE_FAILURES):
        await asyncio.wait_for(writer.wait_closed(), CLOSE_WAIT)


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, asyncio.IncompleteReadError):
        return f"connection closed after {len(exc.partial)} bytes of a reply"
    if isinstance(exc, asyncio.LimitOverrunError):
        return "reply too long"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
