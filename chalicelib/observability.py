"""What the node tells CloudWatch and X-Ray (powertools): JSON logs, metrics and traces, kept out of core/.

- Logs: one JSON line per request and per job, under a correlation id (API Gateway's request id, the
  SQS message id); every `netimmune.*` logger writes through the same JSON handler, with that id.
- Metrics: counters gathered during an invocation and flushed at its end as CloudWatch embedded-metric
  (EMF) documents in the log: ReportsAccepted, ReportsRejected by reason (the refusal's error code),
  Verifications by verdict, AlertsSent. The middleware reads report outcomes from the intake answers;
  verifications and alerts are counted by decorators around the ports that record and send them. Only
  a node with a metrics namespace (on AWS) emits them; a local node prints none.
- Traces: a subsegment per invocation, and the AWS SDK calls inside it; only inside Lambda with
  X-Ray on, a no-op elsewhere.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import datetime

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from chalice.app import Request, Response

from .core.ports import Alert, Notifier, VerificationStore

SERVICE = "netimmune"
CORRELATION_ID = "correlation_id"
REPORT_ROUTES = frozenset({"/v1/reports", "/v1/reports/batch"})
REFER_ROUTE = "/v1/refer/{ip}"

logger = Logger(service=SERVICE)
_levels = logging.getLogger(SERVICE)  # the logger powertools writes through; asked directly, not via its proxy


@functools.cache
def tracer() -> Tracer:
    """Built on first use, not on import: the X-Ray SDK it loads would add a fifth of a second to every
    `netimmune` command. app.py builds it on import, so a Lambda pays for it in its init phase."""
    return Tracer(service=SERVICE)


Dimensions = tuple[tuple[str, str], ...]


class MetricCounts:
    """Counts by metric and dimensions, added up during an invocation and flushed once at its end."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, Dimensions]] = Counter()
        self._lock = threading.Lock()

    def count(self, name: str, value: int = 1, **dimensions: str) -> None:
        with self._lock:
            self._counts[name, tuple(sorted(dimensions.items()))] += value

    def flush(self, namespace: str | None) -> None:
        """One EMF document per metric and dimension value, as CloudWatch wants; without a namespace the
        counts are dropped."""
        if not self._counts:  # nothing counted, as on every referral: no lock taken
            return
        with self._lock:
            counts, self._counts = self._counts, Counter()
        if not namespace:
            return
        for (name, dimensions), value in sorted(counts.items()):
            with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=namespace,
                               default_dimensions={"service": SERVICE, **dict(dimensions)}):
                pass


metrics = MetricCounts()


class CountedNotifier:
    """A notifier that counts each alert it sent (AlertsSent)."""

    def __init__(self, notifier: Notifier, counts: MetricCounts) -> None:
        self.notifier = notifier
        self.counts = counts

    def send(self, alert: Alert) -> None:
        self.notifier.send(alert)
        self.counts.count("AlertsSent")


class CountedVerifications:
    """A verification store that counts each result it recorded (Verifications by verdict); all else passes
    through. A redelivered job records nothing, so it counts nothing either."""

    def __init__(self, store: VerificationStore, counts: MetricCounts) -> None:
        self.store = store
        self.counts = counts

    def record_verification(self, verification_id: str, ip: str, category: str, verdict: str, result: dict,
                            reputation_factor: float | None, now: datetime) -> bool:
        recorded = self.store.record_verification(verification_id, ip, category, verdict, result,
                                                  reputation_factor, now)
        if recorded:
            self.counts.count("Verifications", verdict=verdict)
        return recorded

    def __getattr__(self, name: str):
        return getattr(self.store, name)


def report_outcomes(route: str, status: int, body: str | bytes | None) -> Counter[str | None]:
    """What an intake answer did with each report it covers: None where it accepted one (new or an exact
    re-send), else the refusal's error code. A batch refused whole (too large, rate-limited) counts once."""
    if route not in REPORT_ROUTES:
        return Counter()
    try:
        answer = json.loads(body or "null")
    except ValueError:
        answer = None
    if route.endswith("/batch") and status == 200 and isinstance(answer, dict):
        return Counter(None if item["status"] < 300 else _error_code(item["answer"]) for item in answer["results"])
    return Counter([None if status < 300 else _error_code(answer)])


def _error_code(answer) -> str:
    try:
        return answer["error"]["code"]
    except (KeyError, TypeError):
        return "unknown"


_correlation_id: ContextVar[str | None] = ContextVar(CORRELATION_ID, default=None)


class _CorrelationStamp(logging.Filter):
    """Puts the id of the request or job being handled on each record the JSON handler writes (the
    formatter prints a record's extra attributes), so the id costs nothing unless a line is logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        correlation_id = _correlation_id.get()
        if correlation_id is not None:
            setattr(record, CORRELATION_ID, correlation_id)
        return True


logger.logger_handler.addFilter(_CorrelationStamp())


class correlated:  # noqa: N801 (used as a function: `with correlated(id):`)
    """Every log line inside carries correlation_id (per thread: a local node serves several at once). A class
    rather than a generator-based context manager: every request enters one, and this costs a third as much."""

    __slots__ = ("_correlation_id", "_token")

    def __init__(self, correlation_id: str | None):
        self._correlation_id = correlation_id

    def __enter__(self) -> None:
        self._token = _correlation_id.set(self._correlation_id)

    def __exit__(self, *exc_info) -> None:
        _correlation_id.reset(self._token)


def observe_request(request: Request, get_response: Callable[[Request], Response],
                    namespace: Callable[[], str | None], counts: MetricCounts = metrics) -> Response:
    """HTTP middleware, the only one a request passes (every referral runs it, so it stays lean): traced and
    its metrics flushed as any invocation, plus a log line under the request's id and the reports it took."""
    return observe_invocation(request, lambda _: _logged_and_counted(request, get_response, counts), namespace,
                              counts)


def _logged_and_counted(request: Request, get_response: Callable[[Request], Response],
                        counts: MetricCounts) -> Response:
    route = request.context.get("resourcePath", "")
    request_id = request.context.get("requestId") or getattr(request.lambda_context, "aws_request_id", None)
    started = time.perf_counter()
    with correlated(request_id):
        response = get_response(request)
        # referrals are the high-volume anonymous path, like DNS queries: logged only when debugging
        level = logging.DEBUG if route == REFER_ROUTE and response.status_code < 500 else logging.INFO
        if _levels.isEnabledFor(level):
            logger.log(level, "request", extra={"method": request.method, "route": route,
                                                "status": response.status_code,
                                                "duration_ms": round((time.perf_counter() - started) * 1000, 1)})
    if request.method == "POST":
        for reason, number in report_outcomes(route, response.status_code, response.body).items():
            if reason is None:
                counts.count("ReportsAccepted", number)
            else:
                counts.count("ReportsRejected", number, reason=reason)
    return response


def observe_invocation(event, get_response: Callable, namespace: Callable[[], str | None],
                       counts: MetricCounts = metrics):
    """Around every handler: traced (inside Lambda), and the invocation's metrics flushed at its end."""
    traced = tracer()
    trace = contextlib.nullcontext() if traced.disabled else traced.provider.in_subsegment(f"## {type(event).__name__}")
    with trace:
        try:
            return get_response(event)
        finally:
            counts.flush(namespace())


@contextlib.contextmanager
def observe_job(message_id: str) -> Iterator[None]:
    """Around one job of an SQS batch: its log lines under the message id, and its failure logged with the
    trace before the batch processor reports the message back to the queue."""
    with correlated(message_id):
        try:
            yield
        except Exception:
            logger.exception("job failed")
            raise
