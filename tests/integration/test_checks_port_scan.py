"""The port scan against real loopback sockets: one listening, one refusing."""
from __future__ import annotations

import asyncio

from chalicelib.checks import Verdict, scan_ports

LOOPBACK = "127.0.0.1"


def test_open_port_is_evidence_but_never_confirms_a_report(silent_port, closed_port):
    """A listening web server does not show that its host scans others: the verdict stays inconclusive,
    so one report cannot get the host blocked or its reporter rewarded. The open port is kept as evidence."""
    result = asyncio.run(scan_ports(LOOPBACK, [closed_port, silent_port], timeout=1.0))
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.details["open_ports"] == [silent_port]
    assert result.details["closed_ports"] == [closed_port]
    assert any(line.endswith(f"port {silent_port} open") for line in result.transcript)
    assert result.summary == f"open: {silent_port} (of 2 ports probed); open ports alone prove no abuse"


def test_no_open_port_never_refutes_a_report(closed_port):
    """A scanner need not listen on anything, so closed ports do not clear it either."""
    result = asyncio.run(scan_ports(LOOPBACK, [closed_port, closed_port], timeout=1.0))
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.details["open_ports"] == []
    assert result.summary.startswith("open: none (of 1 ports probed)")  # each port once, however often listed
