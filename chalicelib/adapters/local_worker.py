"""The local worker: drains the job table through the same handler the Lambda SQS event source calls.

Each job is dressed as an SQS event of one record, so the handler (with powertools' BatchProcessor and
partial batch failures) cannot tell a local node from one on AWS: one code path, tested once. The
handler's `batchItemFailures` decide what is retried; everything else is done.

Jobs are leased, run and settled one at a time. A lease charges the job a try, and a worker that dies
gives back what it holds only when the lease runs out: with a batch leased at once, a job that kills
its worker would charge, re-run and at last dead-letter the jobs leased with it. Alone, every try a
job is charged is its own.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from ..core.ports import Clock, Job, LocalJobQueue

SqsHandler = Callable[[dict, object], dict | None]

QUEUE_ARN = "arn:aws:sqs:local:000000000000:netimmune-verify"
REGION = "local"
KEEP_DONE = timedelta(days=7)   # finished jobs stay readable this long, then the idle worker purges them
PURGE_EVERY = 3600.0

log = logging.getLogger("netimmune.worker")


def job_body(job: Job) -> str:
    """The message body, the contract between whoever queues a job and the handler that runs it."""
    return json.dumps({"kind": job.kind, "payload": job.payload, "job_id": job.job_id}, separators=(",", ":"))


def parse_job_body(body: str, attempts: int = 0) -> Job:
    """The job a message body carries; `attempts` is the record's ApproximateReceiveCount."""
    message = json.loads(body)
    return Job(message["job_id"], message["kind"], message["payload"], attempts)


def sqs_event(jobs: list[Job], received: datetime | None = None) -> dict:
    """An SQS event as Lambda delivers it, one record per job; the job id is message id and receipt handle."""
    millis = str(int((received or datetime.now(timezone.utc)).timestamp() * 1000))
    records = []
    for job in jobs:
        body = job_body(job)
        records.append({
            "messageId": job.job_id,
            "receiptHandle": job.job_id,
            "body": body,
            "attributes": {"ApproximateReceiveCount": str(job.attempts), "SentTimestamp": millis,
                           "SenderId": "local", "ApproximateFirstReceiveTimestamp": millis},
            "messageAttributes": {},
            "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": QUEUE_ARN,
            "awsRegion": REGION,
        })
    return {"Records": records}


@dataclass
class LocalContext:
    """The Lambda context a handler may read (powertools' logger and idempotency do); the time left is
    the lease, which a handler must finish within as a Lambda must within its timeout."""

    function_name: str
    deadline: float  # time.monotonic() when the lease runs out
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:netimmune-worker"
    memory_limit_in_mb: int = 0
    log_group_name: str = "local"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self.deadline - time.monotonic()) * 1000), 0)


class Worker:
    def __init__(self, queue: LocalJobQueue, handler: SqsHandler, clock: Clock, name: str | None = None,
                 max_jobs: int = 10, lease_seconds: int = 300, idle_sleep: float = 0.5):
        self.queue = queue
        self.handler = handler
        self.clock = clock
        self.name = name or f"worker-{os.getpid()}"
        self.max_jobs = max_jobs
        self.lease_seconds = lease_seconds
        self.idle_sleep = idle_sleep

    def run_once(self) -> int:
        """Run due jobs one after another, at most max_jobs; returns how many were handled."""
        for handled in range(self.max_jobs):
            if not self.run_next():
                return handled
        return self.max_jobs

    def run_next(self) -> bool:
        """Lease one due job, hand it to the handler, settle it; False when none was due.

        A handler that raises fails the job, as Lambda retries every message of a failed invocation.
        """
        now = self.clock.now()
        leased = self.queue.lease(self.name, 1, self.lease_seconds, now)
        if not leased:
            return False
        job = leased[0]
        context = LocalContext(self.name, time.monotonic() + self.lease_seconds)
        try:
            response = self.handler(sqs_event([job], now), context)
        except Exception as exc:
            log.exception("handler failed job %s", job.job_id)
            error = f"handler raised {exc!r}"
        else:
            failed = {item["itemIdentifier"] for item in (response or {}).get("batchItemFailures", [])}
            error = "handler reported it in batchItemFailures" if job.job_id in failed else None
        if error is None:
            self.queue.complete(job.job_id)
        else:
            self.queue.retry(job.job_id, error, self.clock.now())
        return True

    def run(self, stop: threading.Event) -> None:
        """Drain until `stop` is set; an error (even the queue's) is logged and the loop goes on. When idle,
        at most once an hour, it purges jobs finished more than KEEP_DONE ago and rows past their lifetime
        (SQLite has no TTL), so the database stays small."""
        next_purge = 0.0
        while not stop.is_set():
            try:
                handled = self.run_once()
                if not handled and time.monotonic() >= next_purge:
                    next_purge = time.monotonic() + PURGE_EVERY
                    now = self.clock.now()
                    self.queue.purge_done(now - KEEP_DONE)
                    self.queue.purge_expired(now)
            except Exception:
                log.exception("worker %s failed to run a job", self.name)
                handled = 0
            if not handled:
                stop.wait(self.idle_sleep)

    def start_thread(self) -> tuple[threading.Thread, threading.Event]:
        """Run in a daemon thread beside the HTTP server (`netimmune serve`); set the event to stop it."""
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), name=self.name, daemon=True)
        thread.start()
        return thread, stop
