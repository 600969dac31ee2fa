"""The local worker: drains the job table through the same handler the Lambda SQS event source calls.

Each leased batch is dressed as an SQS event, so the handler (with powertools' BatchProcessor and
partial batch failures) cannot tell a local node from one on AWS: one code path, tested once. The
handler's `batchItemFailures` decide what is retried; everything else is done.
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
                 batch_size: int = 10, lease_seconds: int = 300, idle_sleep: float = 0.5):
        self.queue = queue
        self.handler = handler
        self.clock = clock
        self.name = name or f"worker-{os.getpid()}"
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.idle_sleep = idle_sleep

    def run_once(self) -> int:
        """Lease a batch, hand it to the handler, settle each job; returns how many jobs were handled.

        A handler that raises fails the whole batch, as Lambda retries every message of a failed invocation.
        """
        now = self.clock.now()
        jobs = self.queue.lease(self.name, self.batch_size, self.lease_seconds, now)
        if not jobs:
            return 0
        context = LocalContext(self.name, time.monotonic() + self.lease_seconds)
        try:
            response = self.handler(sqs_event(jobs, now), context)
        except Exception as exc:
            log.exception("handler failed a batch of %d jobs", len(jobs))
            failed, error = {job.job_id for job in jobs}, f"handler raised {exc!r}"
        else:
            failed = {item["itemIdentifier"] for item in (response or {}).get("batchItemFailures", [])}
            error = "handler reported it in batchItemFailures"
        for job in jobs:
            if job.job_id in failed:
                self.queue.retry(job.job_id, error, self.clock.now())
            else:
                self.queue.complete(job.job_id)
        return len(jobs)

    def run(self, stop: threading.Event) -> None:
        """Drain until `stop` is set; an error (even the queue's) is logged and the loop goes on. When idle,
        at most once an hour, it purges jobs finished more than KEEP_DONE ago, so the table stays small."""
        next_purge = 0.0
        while not stop.is_set():
            try:
                handled = self.run_once()
                if not handled and time.monotonic() >= next_purge:
                    next_purge = time.monotonic() + PURGE_EVERY
                    self.queue.purge_done(self.clock.now() - KEEP_DONE)
            except Exception:
                log.exception("worker %s failed to run a batch", self.name)
                handled = 0
            if not handled:
                stop.wait(self.idle_sleep)

    def start_thread(self) -> tuple[threading.Thread, threading.Event]:
        """Run in a daemon thread beside the HTTP server (`netimmune serve`); set the event to stop it."""
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), name=self.name, daemon=True)
        thread.start()
        return thread, stop
