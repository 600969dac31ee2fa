"""The local worker feeding the job table to a powertools SQS batch handler, and at-least-once for real.

The handler here is shaped like the verify handler: BatchProcessor over the SQS event, the result
stored once per job id (INSERT OR IGNORE), so running a job twice records it once. The last test
kills a worker process with SIGKILL in the middle of a job and shows the job finishing once in a
second process.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parser.models import SqsModel

from chalicelib.adapters.local_worker import SqsHandler, Worker, parse_job_body, sqs_event
from chalicelib.adapters.sqlite_db import SQLiteDatabase
from chalicelib.adapters.sqlite_queue import SQLiteJobQueue
from chalicelib.adapters.sqlite_reports import SQLiteReportStore
from chalicelib.core.ports import Job
from chalicelib.wiring import SystemClock
from tests.conftest import NOW, FixedClock

ROOT = Path(__file__).parents[2]
WAIT_SECONDS = 15.0
BASE_BACKOFF = 5.0

RESULTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS started (job_id TEXT NOT NULL, pid INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS results (job_id TEXT PRIMARY KEY, pid INTEGER NOT NULL, attempt INTEGER NOT NULL);
"""


def recording_handler(db: SQLiteDatabase, work_seconds: float = 0.0) -> SqsHandler:
    """Notes each start, works for `work_seconds`, then stores the result keyed by job id; fails jobs
    whose payload asks it to."""
    processor = BatchProcessor(event_type=EventType.SQS)

    def run_job(record: SQSRecord) -> None:
        job = parse_job_body(record.body, int(record.attributes.approximate_receive_count))
        db.connection.execute("INSERT INTO started (job_id, pid) VALUES (?, ?)", (job.job_id, os.getpid()))
        if job.payload.get("fail"):
            raise RuntimeError(f"job {job.job_id} failed as asked")
        time.sleep(work_seconds)
        db.connection.execute("INSERT OR IGNORE INTO results (job_id, pid, attempt) VALUES (?, ?, ?)",
                              (job.job_id, os.getpid(), job.attempts))

    def handler(event: dict, context: object) -> dict:
        return process_partial_response(event=event, record_handler=run_job, processor=processor, context=context)

    return handler


def worker_process(db_path: str, work_seconds: str, lease_seconds: str) -> None:
    """Entry point of a worker process for the kill test: runs until it is killed."""
    db = SQLiteDatabase(db_path, RESULTS_SCHEMA)
    worker = Worker(SQLiteJobQueue(db), recording_handler(db, float(work_seconds)), SystemClock(),
                    lease_seconds=int(lease_seconds), idle_sleep=0.05)
    worker.run(threading.Event())


@pytest.fixture
def db(tmp_path: Path) -> SQLiteDatabase:
    return SQLiteDatabase(tmp_path / "node.db", RESULTS_SCHEMA)


def rows(db: SQLiteDatabase, sql: str) -> list[tuple]:
    return db.connection.execute(sql).fetchall()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {WAIT_SECONDS} s")
        time.sleep(0.02)


def test_sqs_event_is_a_valid_sqs_event():
    """powertools' own SQS model accepts the event, so the Lambda handler accepts what the worker sends."""
    job = Job("0123abcd", "verify", {"ip": "192.0.2.1"}, attempts=2)
    [record] = SqsModel.model_validate(sqs_event([job], NOW)).Records
    assert record.messageId == "0123abcd"
    assert record.attributes.ApproximateReceiveCount == "2"
    assert record.eventSource == "aws:sqs"
    assert parse_job_body(record.body, 2) == job


def test_only_the_message_the_handler_reports_failed_is_retried(db):
    """Partial batch failure: the reported job comes back after its back-off, the others are done."""
    queue = SQLiteJobQueue(db, base_backoff=BASE_BACKOFF, clock=FixedClock())
    good = [queue.enqueue("verify", {"n": n}) for n in range(2)]
    bad = queue.enqueue("verify", {"fail": True})
    assert Worker(queue, recording_handler(db), FixedClock()).run_once() == 3
    assert queue.counts() == {"pending": 1, "leased": 0, "done": 2, "dead": 0}
    assert sorted(job_id for job_id, in rows(db, "SELECT job_id FROM results")) == sorted(good)
    [again] = queue.lease("w", 10, 60, NOW + timedelta(seconds=BASE_BACKOFF))
    assert (again.job_id, again.attempts) == (bad, 2)


def test_handler_that_raises_has_its_job_retried_and_the_worker_goes_on(db):
    """An invocation that fails as a whole retries its message, as Lambda does; the next job runs all the same."""
    def broken(event: dict, context: object) -> dict:
        raise ConnectionError("store unreachable")

    queue = SQLiteJobQueue(db, clock=FixedClock())
    queued = {queue.enqueue("verify", {"n": n}) for n in range(3)}
    assert Worker(queue, broken, FixedClock()).run_once() == 3
    assert queue.counts() == {"pending": 3, "leased": 0, "done": 0, "dead": 0}
    assert {job.job_id for job in queue.lease("w", 10, 60, NOW + timedelta(hours=1))} == queued


def test_worker_thread_drains_the_queue_past_a_failing_batch_and_stops_when_asked(db):
    """`netimmune serve` runs the worker in a thread: a raising handler must not end that thread."""
    calls = []
    handle = recording_handler(db)

    def fails_first_time(event: dict, context: object) -> dict:
        calls.append(len(event["Records"]))
        if len(calls) == 1:
            raise RuntimeError("first batch fails")
        return handle(event, context)

    queue = SQLiteJobQueue(db, base_backoff=0.0)
    for n in range(4):
        queue.enqueue("verify", {"n": n})
    thread, stop = Worker(queue, fails_first_time, SystemClock(), max_jobs=2, idle_sleep=0.02).start_thread()
    try:
        wait_until(lambda: queue.counts()["done"] == 4, "all four jobs done")
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert len(rows(db, "SELECT * FROM results")) == 4


def test_a_job_that_kills_its_worker_uses_up_only_its_own_tries(db):
    """A job that takes its worker down (an OOM kill, a segfault: SystemExit here) comes back through its
    expired lease until it is a dead letter; the jobs queued around it each run once and are done."""
    clock = FixedClock()
    queue = SQLiteJobQueue(db, clock=clock)
    for payload in [{"n": 0}, {"n": 1}, {"n": 2}, {"kill": True}, {"n": 3}, {"n": 4}]:
        queue.enqueue("verify", payload)
        clock.moment += timedelta(seconds=1)
    runs: Counter[int] = Counter()

    def handler(event: dict, context: object) -> dict:
        for record in event["Records"]:
            job = parse_job_body(record["body"])
            if job.payload.get("kill"):
                raise SystemExit("the worker process died")
            runs[job.payload["n"]] += 1
        return {"batchItemFailures": []}

    worker = Worker(queue, handler, clock, lease_seconds=300)
    for _ in range(queue.max_attempts + 1):   # each time a restarted worker, once the lease ran out
        with contextlib.suppress(SystemExit):
            worker.run_once()
        clock.moment += timedelta(seconds=301)
    assert runs == {n: 1 for n in range(5)}
    assert queue.counts() == {"pending": 0, "leased": 0, "done": 5, "dead": 1}
    [letter] = queue.dead_letters()
    assert (letter.job.payload, letter.job.attempts) == ({"kill": True}, queue.max_attempts)
    assert "lease expired" in letter.error


def test_idle_worker_purges_jobs_finished_more_than_a_week_ago_and_rows_past_their_lifetime(db):
    clock = FixedClock()
    queue = SQLiteJobQueue(db, clock=clock)
    reports = SQLiteReportStore(db)
    reports.take({"client:192.0.2.1": 1}, 600, 60, NOW)
    for n in range(2):
        queue.enqueue("verify", {"n": n})
    Worker(queue, recording_handler(db), clock).run_once()
    clock.moment = NOW + timedelta(days=8)
    queue.enqueue("verify", {"n": 2})
    Worker(queue, recording_handler(db), clock).run_once()   # finished now: kept
    reports.take({"client:192.0.2.2": 1}, 600, 60, clock.moment)   # a window still open: kept
    thread, stop = Worker(queue, recording_handler(db), clock, idle_sleep=0.02).start_thread()
    try:
        wait_until(lambda: queue.counts()["done"] == 1, "the two old jobs purged")
    finally:
        stop.set()
        thread.join(timeout=5)
    assert queue.counts() == {"pending": 0, "leased": 0, "done": 1, "dead": 0}
    assert rows(db, "SELECT bucket FROM rate_windows") == [("client:192.0.2.2",)]


@pytest.fixture
def start_worker(db: SQLiteDatabase, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """`start_worker(work_seconds)` runs worker_process in a new Python process; all are killed afterwards."""
    processes: list[subprocess.Popen] = []

    def start(work_seconds: float, lease_seconds: int = 2) -> subprocess.Popen:
        log = open(tmp_path / f"worker-{len(processes)}.log", "wb")
        code = "import sys; from tests.integration.test_worker import worker_process; worker_process(*sys.argv[1:])"
        process = subprocess.Popen([sys.executable, "-c", code, db.path, str(work_seconds), str(lease_seconds)],
                                   cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.kill()
        process.wait(timeout=5)


def test_job_of_a_worker_killed_mid_job_completes_once_after_restart(db, start_worker):
    """The first worker takes a 2 s lease and dies (SIGKILL) in the middle of the job; once the lease
    runs out a second worker runs it again, and the result is recorded once, on the second attempt."""
    queue = SQLiteJobQueue(db)
    job_id = queue.enqueue("verify", {"ip": "192.0.2.1"})

    first = start_worker(work_seconds=30)
    wait_until(lambda: rows(db, "SELECT pid FROM started") == [(first.pid,)], "started by the first worker")
    first.kill()
    first.wait(timeout=5)
    assert queue.counts()["leased"] == 1

    second = start_worker(work_seconds=0)
    wait_until(lambda: queue.counts()["done"] == 1, "done after the restart")

    assert rows(db, "SELECT job_id, pid, attempt FROM results") == [(job_id, second.pid, 2)]
    assert rows(db, "SELECT pid FROM started ORDER BY rowid") == [(first.pid,), (second.pid,)]
    assert queue.counts() == {"pending": 0, "leased": 0, "done": 1, "dead": 0}
