"""Running named checks together: order, shared concurrency cap, and failures kept as results."""
from __future__ import annotations

import asyncio
import time

import pytest

from chalicelib.checks import Verdict, run_checks

LOOPBACK = "127.0.0.1"


def test_checks_run_by_name_return_results_in_the_order_asked(pproxy, canary, silent_port):
    proxy_port = pproxy("http")
    results = asyncio.run(run_checks(LOOPBACK, ["port-scan", "open-proxy"], options={
        "port-scan": {"ports": [silent_port]},
        "open-proxy": {"canary": canary, "ports": [proxy_port], "timeout": 1.0},
    }))
    assert [(r.check, r.verdict) for r in results] == [("port-scan", Verdict.CONFIRMED),
                                                       ("open-proxy", Verdict.CONFIRMED)]


def test_a_failing_check_becomes_an_error_result_beside_the_others(closed_port):
    """The proxy check without a canary cannot run; the scan's evidence is still returned."""
    options = {"port-scan": {"ports": [closed_port]}}
    results = asyncio.run(run_checks(LOOPBACK, ["open-proxy", "port-scan"], options))
    assert [r.verdict for r in results] == [Verdict.ERROR, Verdict.REFUTED]
    assert "canary" in results[0].summary


def test_a_check_overrunning_its_budget_is_an_error(silent_port):
    """A tarpit holds every probe until its timeout; the runner's budget ends the check first."""
    [result] = asyncio.run(run_checks(LOOPBACK, ["open-relay"], options={"open-relay": {"ports": [silent_port]}},
                                      budget=0.3))
    assert result.verdict is Verdict.ERROR
    assert result.summary == "did not finish within 0.3 s"


def test_shared_semaphore_caps_how_many_checks_run_at_once(silent_port):
    """With one slot, two checks that each wait out a 0.3 s timeout cannot overlap."""
    options = {"open-relay": {"ports": [silent_port], "timeout": 0.3},
               "open-resolver": {"port": silent_port, "timeout": 0.3, "tries": 1}}
    started = time.monotonic()
    results = asyncio.run(run_checks(LOOPBACK, ["open-relay", "open-resolver"], options, limit=asyncio.Semaphore(1)))
    assert time.monotonic() - started >= 0.6
    assert [r.verdict for r in results] == [Verdict.REFUTED, Verdict.REFUTED]


def test_unknown_check_name_is_refused_before_anything_runs():
    with pytest.raises(ValueError, match="unknown check"):
        asyncio.run(run_checks(LOOPBACK, ["open-telnet"]))
