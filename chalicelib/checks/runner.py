"""Run named checks against one address under a shared cap on probe connections and a time budget each.

The cap counts connections, not checks: every probe connection of every check (a port of the scan, a
protocol on a port of the proxy check, an SMTP session, the resolver's socket) holds one slot of the
one semaphore while it is open, so a verification never has more than that many open at once.

A check that raises, or overruns its budget, becomes an `error` result instead of an exception,
so one broken probe never loses the others' evidence.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from .open_proxy import check_open_proxy
from .open_relay import check_open_relay
from .open_resolver import check_open_resolver
from .port_scan import scan_ports
from .result import CheckResult, Verdict

Check = Callable[..., Awaitable[CheckResult]]

CHECKS: Mapping[str, Check] = MappingProxyType({
    "open-proxy": check_open_proxy,
    "open-relay": check_open_relay,
    "open-resolver": check_open_resolver,
    "port-scan": scan_ports,
})

DEFAULT_CONCURRENCY = 4
# Seconds of wall clock per check, a backstop behind each probe's own timeouts; under the 120 s the verify
# function may run on AWS, so a check that hangs still leaves time to record its error
CHECK_BUDGET = 90.0


async def run_check(name: str, ip: str, options: Mapping[str, Any], limit: asyncio.Semaphore,
                    budget: float = CHECK_BUDGET) -> CheckResult:
    """One check with its keyword options (e.g. `canary`, `ports`); each of its connections holds a slot of `limit`."""
    try:
        async with asyncio.timeout(budget):
            return await CHECKS[name](ip, **options, probe_slots=limit)
    except TimeoutError:
        return CheckResult(name, ip, Verdict.ERROR, f"did not finish within {budget:g} s")
    except Exception as exc:  # any failure of the check itself becomes its error result
        return CheckResult(name, ip, Verdict.ERROR, f"check failed: {type(exc).__name__}: {exc}")


async def run_checks(ip: str, names: Iterable[str], options: Mapping[str, Mapping[str, Any]] | None = None,
                     limit: asyncio.Semaphore | None = None, budget: float = CHECK_BUDGET) -> list[CheckResult]:
    """Run each named check once, together, results in the order of `names`.

    `options[name]` holds that check's keyword arguments; the open-proxy check needs `canary`.
    `limit` caps the probe connections open at once across all these checks.
    """
    names = list(dict.fromkeys(names))
    unknown = [name for name in names if name not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s): {', '.join(unknown)}; known: {', '.join(CHECKS)}")
    options = options or {}
    limit = limit or asyncio.Semaphore(DEFAULT_CONCURRENCY)
    return list(await asyncio.gather(*(run_check(name, ip, options.get(name, {}), limit, budget) for name in names)))


class ProbeScanner:
    """The checks as the node's scanner port: one verification has at most `concurrency` probe connections open."""

    def __init__(self, concurrency: int = DEFAULT_CONCURRENCY):
        self.concurrency = concurrency

    def scan(self, ip: str, checks: Iterable[str], options: Mapping[str, Mapping[str, Any]]) -> list[CheckResult]:
        return asyncio.run(run_checks(ip, checks, options, asyncio.Semaphore(self.concurrency)))
