"""The port scan against real loopback sockets: one listening, one refusing."""
from __future__ import annotations

import asyncio

from chalicelib.checks import Verdict, scan_ports

LOOPBACK = "127.0.0.1"


def test_scan_is_confirmed_by_a_listening_port(silent_port, closed_port):
    result = asyncio.run(scan_ports(LOOPBACK, [closed_port, silent_port], timeout=1.0))
    assert result.verdict is Verdict.CONFIRMED
    assert result.details["open_ports"] == [silent_port]
    assert result.details["closed_ports"] == [closed_port]
    assert result.summary == f"open: {silent_port} (of 2 ports probed)"


def test_scan_with_no_open_port_is_refuted(closed_port):
    result = asyncio.run(scan_ports(LOOPBACK, [closed_port, closed_port], timeout=1.0))
    assert result.verdict is Verdict.REFUTED
    assert result.details["open_ports"] == []
    assert result.summary == "none of 1 ports probed is open"  # each port once, however often listed
