"""The local job queue: a durable job table with leases in the node's SQLite file.

A worker leases due jobs for a while; a job whose worker dies mid-way comes back when its lease
runs out, so every job runs at least once and handlers must be idempotent. Failures come back later
with exponential back-off, and a job out of tries goes to the dead letters with its last error for
an operator to read and requeue. Done jobs stay as the record until `purge_done`.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from ..core.ports import Clock, Job
from .sqlite_db import SQLiteDatabase

# `due_at` is when the job may next be leased: its start time while pending, the end of its lease
# while leased. One column and one index then find both new work and work whose worker died.
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'leased', 'done', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    due_at REAL NOT NULL,
    worker TEXT,
    dedupe_key TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, due_at);
CREATE INDEX IF NOT EXISTS jobs_by_dedupe_key ON jobs (dedupe_key) WHERE dedupe_key IS NOT NULL;
"""

STATES = ("pending", "leased", "done", "dead")
MAX_BACKOFF_SECONDS = 3600.0


def backoff_seconds(attempts: int, base: float, cap: float = MAX_BACKOFF_SECONDS) -> float:
    """base × 2^(attempts-1), capped: a failing job is retried soon, a persistently failing one rarely."""
    return min(base * 2 ** max(attempts - 1, 0), cap)


@dataclass(frozen=True)
class DeadLetter:
    """A job that ran out of tries, with the error of its last one, for an operator to read."""

    job: Job
    error: str
    failed_at: datetime


class SQLiteJobQueue:
    """`max_attempts` tries per job, the n-th retry `base_backoff × 2^(n-1)` seconds after its failure."""

    def __init__(self, db: SQLiteDatabase, max_attempts: int = 5, base_backoff: float = 5.0,
                 clock: Clock | None = None):
        self.db = db
        self.max_attempts = max_attempts
        self.base_backoff = base_backoff
        self._clock = clock
        db.ensure_schema(SCHEMA)

    def _now(self) -> float:
        return (self._clock.now() if self._clock else datetime.now(timezone.utc)).timestamp()

    # -- producers -------------------------------------------------------------------------------
    def enqueue(self, kind: str, payload: dict, delay_seconds: int = 0, dedupe_key: str | None = None) -> str:
        """A job whose dedupe_key is already pending or leased is dropped: that job will do the work."""
        now = self._now()
        job_id = uuid.uuid4().hex
        body = json.dumps(payload, separators=(",", ":"))
        with self.db.transaction() as conn:
            if dedupe_key is not None:
                row = conn.execute("SELECT job_id FROM jobs WHERE dedupe_key = ? AND state IN ('pending', 'leased')",
                                   (dedupe_key,)).fetchone()
                if row:
                    return row[0]
            conn.execute("INSERT INTO jobs (job_id, kind, payload, state, due_at, dedupe_key, created_at, updated_at)"
                         " VALUES (?, ?, ?, 'pending', ?, ?, ?, ?)",
                         (job_id, kind, body, now + delay_seconds, dedupe_key, now, now))
        return job_id

    # -- workers ---------------------------------------------------------------------------------
    def lease(self, worker: str, limit: int, lease_seconds: int, now: datetime) -> list[Job]:
        """Claim up to `limit` due jobs, oldest first, in one transaction so no two workers share one.

        Each leased job is charged a try, so a worker that dies holding several charges them all: the
        local worker leases one at a time. A lease that ran out on a job with no tries left sends it to
        the dead letters instead: a job that kills its worker every time must not loop for ever.
        """
        at = now.timestamp()
        with self.db.transaction() as conn:
            conn.execute("UPDATE jobs SET state = 'dead', updated_at = ?,"
                         " error = 'lease expired: its worker stopped during attempt ' || attempts"
                         " WHERE state = 'leased' AND due_at <= ? AND attempts >= ?", (at, at, self.max_attempts))
            rows = conn.execute("SELECT job_id, kind, payload, attempts FROM jobs"
                                " WHERE state IN ('pending', 'leased') AND due_at <= ? ORDER BY due_at LIMIT ?",
                                (at, limit)).fetchall()
            conn.executemany("UPDATE jobs SET state = 'leased', worker = ?, attempts = attempts + 1, due_at = ?,"
                             " updated_at = ? WHERE job_id = ?",
                             [(worker, at + lease_seconds, at, row[0]) for row in rows])
        return [Job(job_id, kind, json.loads(payload), attempts + 1) for job_id, kind, payload, attempts in rows]

    def complete(self, job_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE jobs SET state = 'done', updated_at = ? WHERE job_id = ?", (self._now(), job_id))

    def retry(self, job_id: str, error: str, now: datetime) -> None:
        """Back to pending after the back-off, or to the dead letters when the last try failed."""
        at = now.timestamp()
        with self.db.transaction() as conn:
            row = conn.execute("SELECT attempts FROM jobs WHERE job_id = ? AND state = 'leased'",
                               (job_id,)).fetchone()
            if row is None:
                return
            if row[0] >= self.max_attempts:
                conn.execute("UPDATE jobs SET state = 'dead', error = ?, updated_at = ? WHERE job_id = ?",
                             (error, at, job_id))
            else:
                due = at + backoff_seconds(row[0], self.base_backoff)
                conn.execute("UPDATE jobs SET state = 'pending', error = ?, due_at = ?, updated_at = ?"
                             " WHERE job_id = ?", (error, due, at, job_id))

    # -- operators -------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        rows = self.db.connection.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        return {state: 0 for state in STATES} | dict(rows.fetchall())

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The most recent dead jobs first."""
        rows = self.db.connection.execute(
            "SELECT job_id, kind, payload, attempts, error, updated_at FROM jobs WHERE state = 'dead'"
            " ORDER BY updated_at DESC LIMIT ?", (limit,))
        return [DeadLetter(Job(job_id, kind, json.loads(payload), attempts), error or "",
                           datetime.fromtimestamp(failed_at, timezone.utc))
                for job_id, kind, payload, attempts, error, failed_at in rows]

    def requeue_dead(self, job_id: str) -> bool:
        """Give a dead job a fresh set of tries, due now (after the operator fixed the cause)."""
        now = self._now()
        with self.db.transaction() as conn:
            return conn.execute("UPDATE jobs SET state = 'pending', attempts = 0, due_at = ?, updated_at = ?"
                                " WHERE job_id = ? AND state = 'dead'", (now, now, job_id)).rowcount == 1

    def purge_expired(self, now: datetime) -> int:
        """Forget the rows of the node's stores in this database that outlived their lifetime; how many."""
        return self.db.purge_expired(now)

    def purge_done(self, older_than: datetime) -> int:
        """Forget jobs finished before `older_than`; returns how many."""
        with self.db.transaction() as conn:
            return conn.execute("DELETE FROM jobs WHERE state = 'done' AND updated_at < ?",
                                (older_than.timestamp(),)).rowcount
