"""Running named checks together: order, the shared cap on probe connections, and failures kept as results."""
from __future__ import annotations

import asyncio
import time

import pytest

from chalicelib.checks import Verdict, run_checks
from chalicelib.checks.runner import ProbeScanner

LOOPBACK = "127.0.0.1"


def test_checks_run_by_name_return_results_in_the_order_asked(pproxy, canary, silent_port):
    proxy_port = pproxy("http")
    results = asyncio.run(run_checks(LOOPBACK, ["port-scan", "open-proxy"], options={
        "port-scan": {"ports": [silent_port]},
        "open-proxy": {"canary": canary, "ports": [proxy_port], "timeout": 1.0},
    }))
    assert [(r.check, r.verdict) for r in results] == [("port-scan", Verdict.INCONCLUSIVE),
                                                       ("open-proxy", Verdict.CONFIRMED)]


def test_a_failing_check_becomes_an_error_result_beside_the_others(closed_port):
    """The proxy check without a canary cannot run; the scan's evidence is still returned."""
    options = {"port-scan": {"ports": [closed_port]}}
    results = asyncio.run(run_checks(LOOPBACK, ["open-proxy", "port-scan"], options))
    assert [r.verdict for r in results] == [Verdict.ERROR, Verdict.INCONCLUSIVE]
    assert "canary" in results[0].summary
    assert results[1].details["closed_ports"] == [closed_port]


def test_a_check_overrunning_its_budget_is_an_error(silent_port):
    """A tarpit holds every probe until its timeout; the runner's budget ends the check first."""
    [result] = asyncio.run(run_checks(LOOPBACK, ["open-relay"], options={"open-relay": {"ports": [silent_port]}},
                                      budget=0.3))
    assert result.verdict is Verdict.ERROR
    assert result.summary == "did not finish within 0.3 s"


def test_probe_cap_bounds_connections_not_checks(canary, silent_port):
    """With a cap of 1, the proxy check's four protocols and the relay's session each hold the one slot
    while a tarpit keeps them waiting out their 0.2 s timeout: five connections, one after another."""
    options = {"open-proxy": {"canary": canary, "ports": [silent_port], "timeout": 0.2},
               "open-relay": {"ports": [silent_port], "timeout": 0.2}}
    started = time.monotonic()
    results = ProbeScanner(concurrency=1).scan(LOOPBACK, ["open-proxy", "open-relay"], options)
    assert time.monotonic() - started >= 5 * 0.2
    assert [r.verdict for r in results] == [Verdict.INCONCLUSIVE, Verdict.INCONCLUSIVE]


def test_unknown_check_name_is_refused_before_anything_runs():
    with pytest.raises(ValueError, match="unknown check"):
        asyncio.run(run_checks(LOOPBACK, ["open-telnet"]))
