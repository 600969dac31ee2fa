"""The LocalJobQueue contract, run against every adapter in QUEUE_FACTORIES.

Time is explicit: the queue's clock stamps enqueues, and each lease or retry is given its `now`,
so back-off, delays and lease expiry are proved without sleeping.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from chalicelib.adapters.sqlite_db import SQLiteDatabase
from chalicelib.adapters.sqlite_queue import SQLiteJobQueue
from tests.conftest import NOW

MAX_ATTEMPTS = 3
BASE_BACKOFF = 10.0
LEASE = 60


class SettableClock:
    def __init__(self, moment: datetime):
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


QUEUE_FACTORIES: dict[str, Callable[..., SQLiteJobQueue]] = {
    "sqlite": lambda clock: SQLiteJobQueue(SQLiteDatabase(":memory:"), MAX_ATTEMPTS, BASE_BACKOFF, clock),
}


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(NOW)


@pytest.fixture(params=sorted(QUEUE_FACTORIES))
def queue(request, clock):
    return QUEUE_FACTORIES[request.param](clock)


def later(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def test_enqueued_job_is_leased_with_its_payload_and_done_after_complete(queue):
    """The round trip a worker makes: the payload comes back as queued, and a done job is not leased again."""
    job_id = queue.enqueue("verify", {"ip": "192.0.2.1", "checks": ["open_proxy"]})
    [job] = queue.lease("w1", 10, LEASE, NOW)
    assert (job.job_id, job.kind, job.payload, job.attempts) == (
        job_id, "verify", {"ip": "192.0.2.1", "checks": ["open_proxy"]}, 1)
    queue.complete(job_id)
    assert queue.lease("w1", 10, LEASE, later(LEASE * 10)) == []
    assert queue.counts() == {"pending": 0, "leased": 0, "done": 1, "dead": 0}


def test_lease_is_exclusive_and_limited(queue):
    """Two workers leasing at the same moment never get the same job; each takes at most its limit."""
    queued = {queue.enqueue("verify", {"n": n}) for n in range(5)}
    first = queue.lease("w1", 3, LEASE, NOW)
    second = queue.lease("w2", 3, LEASE, NOW)
    assert len(first) == 3 and len(second) == 2
    assert {job.job_id for job in first} | {job.job_id for job in second} == queued
    assert queue.lease("w3", 3, LEASE, NOW) == []


def test_expired_lease_makes_job_leasable_again_with_one_more_attempt(queue):
    """A worker that dies holding a job gives it back when its lease runs out, not before."""
    job_id = queue.enqueue("verify", {})
    queue.lease("dead-worker", 1, LEASE, NOW)
    assert queue.lease("w2", 1, LEASE, later(LEASE - 1)) == []
    [again] = queue.lease("w2", 1, LEASE, later(LEASE))
    assert (again.job_id, again.attempts) == (job_id, 2)


def test_retry_waits_for_exponential_backoff(queue):
    """The n-th failure waits base × 2^(n-1): not due a moment before, due at that moment."""
    job_id = queue.enqueue("verify", {})
    failed_at = NOW
    for attempt, wait in [(1, BASE_BACKOFF), (2, 2 * BASE_BACKOFF)]:
        [job] = queue.lease("w1", 1, LEASE, failed_at)
        assert job.attempts == attempt
        queue.retry(job_id, "timeout", failed_at)
        assert queue.counts()["pending"] == 1
        assert queue.lease("w1", 1, LEASE, failed_at + timedelta(seconds=wait - 1)) == []
        failed_at += timedelta(seconds=wait)
    [job] = queue.lease("w1", 1, LEASE, failed_at)
    assert job.attempts == MAX_ATTEMPTS


def test_job_out_of_attempts_is_a_dead_letter_with_its_error(queue):
    """The last failure is kept for the operator, and the job is never leased again on its own."""
    job_id = queue.enqueue("verify", {"ip": "192.0.2.7"})
    moment = NOW
    for attempt in range(1, MAX_ATTEMPTS + 1):
        queue.lease("w1", 1, LEASE, moment)
        queue.retry(job_id, f"refused on try {attempt}", moment)
        moment += timedelta(hours=2)
    assert queue.lease("w1", 1, LEASE, moment) == []
    assert queue.counts() == {"pending": 0, "leased": 0, "done": 0, "dead": 1}
    [letter] = queue.dead_letters()
    assert (letter.job.job_id, letter.job.payload, letter.job.attempts, letter.error) == (
        job_id, {"ip": "192.0.2.7"}, MAX_ATTEMPTS, f"refused on try {MAX_ATTEMPTS}")


def test_job_whose_worker_dies_on_every_attempt_ends_dead(queue):
    """A job that kills its worker would otherwise come back for ever through expired leases."""
    queue.enqueue("verify", {})
    for attempt in range(MAX_ATTEMPTS):
        assert len(queue.lease("w1", 1, LEASE, later(attempt * LEASE))) == 1
    assert queue.lease("w1", 1, LEASE, later(MAX_ATTEMPTS * LEASE)) == []
    [letter] = queue.dead_letters()
    assert "lease expired" in letter.error


def test_requeued_dead_letter_gets_fresh_attempts(queue, clock):
    """Once an operator fixed the cause, a dead job runs again, due now, with its tries restored."""
    job_id = queue.enqueue("verify", {})
    for attempt in range(MAX_ATTEMPTS):
        queue.lease("w1", 1, LEASE, later(attempt * 7200))
        queue.retry(job_id, "boom", later(attempt * 7200))
    clock.moment = later(86400)
    assert queue.requeue_dead(job_id) is True
    assert queue.requeue_dead(job_id) is False
    [job] = queue.lease("w1", 1, LEASE, clock.moment)
    assert (job.job_id, job.attempts) == (job_id, 1)


def test_dedupe_key_drops_duplicate_while_pending_or_leased_but_not_after_done(queue):
    """Ten reports about one address queue one verification; a later report may queue another."""
    first = queue.enqueue("verify", {"n": 1}, dedupe_key="verify:192.0.2.1")
    assert queue.enqueue("verify", {"n": 2}, dedupe_key="verify:192.0.2.1") == first
    queue.lease("w1", 10, LEASE, NOW)
    assert queue.enqueue("verify", {"n": 3}, dedupe_key="verify:192.0.2.1") == first
    assert queue.enqueue("verify", {"n": 4}, dedupe_key="verify:192.0.2.2") != first
    queue.complete(first)
    second = queue.enqueue("verify", {"n": 5}, dedupe_key="verify:192.0.2.1")
    assert second != first
    assert queue.counts() == {"pending": 2, "leased": 0, "done": 1, "dead": 0}


def test_delayed_job_is_not_due_before_its_delay(queue):
    queue.enqueue("digest", {}, delay_seconds=300)
    assert queue.lease("w1", 1, LEASE, later(299)) == []
    [job] = queue.lease("w1", 1, LEASE, later(300))
    assert job.kind == "digest"


def test_counts_every_state(queue):
    for n in range(5):
        queue.enqueue("verify", {"n": n})
    done, retried, _ = queue.lease("w1", 3, LEASE, NOW)
    queue.complete(done.job_id)
    queue.retry(retried.job_id, "refused", NOW)
    assert queue.counts() == {"pending": 3, "leased": 1, "done": 1, "dead": 0}


def test_purge_done_forgets_only_old_done_jobs(queue, clock):
    """Done jobs stay as the record for a while; purging them leaves live work alone."""
    old = queue.enqueue("verify", {})
    queue.lease("w1", 1, LEASE, NOW)
    queue.complete(old)
    clock.moment = later(86400)
    recent = queue.enqueue("verify", {})
    queue.lease("w1", 1, LEASE, clock.moment)
    queue.complete(recent)
    queue.enqueue("verify", {})
    assert queue.purge_done(older_than=later(3600)) == 1
    assert queue.counts() == {"pending": 1, "leased": 0, "done": 1, "dead": 0}
