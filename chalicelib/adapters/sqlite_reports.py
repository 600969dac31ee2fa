"""Reports, cases, reporter standing and rate windows in SQLite; every intake batch is one transaction."""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

from ..core.ports import Allowance, Case, Contribution, Outcome, ReportRecord
from .sqlite_db import SQLiteDatabase

# Laid out for batch intake, where each page a commit touches is written twice (to the WAL, then by the
# checkpoint): cases, contributions and rate windows are keyed by what they are looked up by, without a
# rowid, and reports are indexed by case without the time. Files made before keep the layout they were
# made with (CREATE ... IF NOT EXISTS): the statements below work on both.
SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    report_id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    ip TEXT NOT NULL,
    category TEXT NOT NULL,
    reporter TEXT NOT NULL,
    rank TEXT NOT NULL,
    observed REAL NOT NULL,
    received REAL NOT NULL,
    envelope TEXT NOT NULL,
    answer TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_by_case ON reports (ip, category);
CREATE TABLE IF NOT EXISTS cases (
    ip TEXT NOT NULL,
    category TEXT NOT NULL,
    status TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    resolved_at REAL,
    reports INTEGER NOT NULL,
    verification TEXT,
    threshold_fired INTEGER NOT NULL DEFAULT 0,
    awaiting TEXT,
    awaiting_since REAL,
    PRIMARY KEY (ip, category)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cases_by_status ON cases (status, last_seen);
CREATE TABLE IF NOT EXISTS contributions (
    ip TEXT NOT NULL,
    category TEXT NOT NULL,
    reporter TEXT NOT NULL,
    rank TEXT NOT NULL,
    observed REAL NOT NULL,
    counted_at REAL NOT NULL,
    reports INTEGER NOT NULL,
    PRIMARY KEY (ip, category, reporter)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reporters (
    key TEXT PRIMARY KEY,
    reputation REAL NOT NULL DEFAULT 1.0,
    rank_override TEXT,
    confirmed INTEGER NOT NULL DEFAULT 0,
    refuted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rate_windows (
    bucket TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    count INTEGER NOT NULL
) WITHOUT ROWID;
"""

# A reporter's contribution restarts (rank, counted_at) once its last counted report is a window old, and keeps
# the newest observation: a report about something seen long ago must not age the reporter's fresh one.
_COUNT_CONTRIBUTION = """
INSERT INTO contributions (ip, category, reporter, rank, observed, counted_at, reports)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1)
ON CONFLICT (ip, category, reporter) DO UPDATE SET
    reports = reports + 1,
    rank = CASE WHEN excluded.counted_at >= counted_at + ?7 THEN excluded.rank ELSE rank END,
    observed = CASE WHEN excluded.counted_at >= counted_at + ?7 THEN MAX(observed, excluded.observed) ELSE observed END,
    counted_at = CASE WHEN excluded.counted_at >= counted_at + ?7 THEN excluded.counted_at ELSE counted_at END
"""

# One row per case per batch: `reports` new reports, first received at first_seen, last at last_seen
_OPEN_CASE = """
INSERT INTO cases (ip, category, status, first_seen, last_seen, reports) VALUES (?, ?, 'received', ?, ?, ?)
ON CONFLICT (ip, category) DO UPDATE SET
    reports = reports + excluded.reports,
    last_seen = MAX(last_seen, excluded.last_seen),
    status = CASE WHEN status = 'resolved' AND excluded.last_seen > resolved_at THEN 'received' ELSE status END
"""


# Columns added to cases since the first release, for files made before
ADDED_CASE_COLUMNS = {"awaiting": "TEXT", "awaiting_since": "REAL"}

# Intake's rate windows last a minute; a row is forgotten an hour after its window began.
RATE_WINDOW_KEPT_SECONDS = 3600
EXPIRED = f"DELETE FROM rate_windows WHERE window_start < :now - {RATE_WINDOW_KEPT_SECONDS}"


def _epoch(moment: datetime) -> float:
    return moment.timestamp()


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


class SQLiteReportStore:
    def __init__(self, db: SQLiteDatabase):
        self.db = db
        db.ensure_schema(SCHEMA)
        db.add_columns("cases", ADDED_CASE_COLUMNS)
        db.expire(EXPIRED)

    def record_reports(self, records: Sequence[ReportRecord], count_window_seconds: int) -> list[tuple[Outcome, str]]:
        """One transaction, one statement per kind of row for the whole batch (executemany), one row per case."""
        results: list[tuple[Outcome, str]] = []
        with self.db.transaction() as conn:
            known = self._known(conn, [r.report_id for r in records])
            fresh: list[ReportRecord] = []
            for record in records:
                if record.report_id in known:
                    digest, answer = known[record.report_id]
                    results.append((Outcome.DUPLICATE if digest == record.digest else Outcome.CONFLICT, answer))
                    continue
                known[record.report_id] = (record.digest, record.answer_json)
                fresh.append(record)
                results.append((Outcome.NEW, record.answer_json))
            rows, cases, contributions = [], {}, []
            for r in fresh:
                observed, received = r.observed.timestamp(), r.received.timestamp()
                rows.append((r.report_id, r.digest, r.ip, r.category, r.reporter, r.rank, observed, received,
                             r.envelope_json, r.answer_json))
                case = cases.get((r.ip, r.category))
                if case is None:
                    cases[r.ip, r.category] = [r.ip, r.category, received, received, 1]
                else:
                    case[3] = max(case[3], received)
                    case[4] += 1
                contributions.append((r.ip, r.category, r.reporter, r.rank, observed, received, count_window_seconds))
            conn.executemany("INSERT INTO reports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.executemany(_OPEN_CASE, cases.values())
            conn.executemany("INSERT INTO reporters (key) VALUES (?) ON CONFLICT (key) DO NOTHING",
                             [(key,) for key in dict.fromkeys(r.reporter for r in fresh)])
            conn.executemany(_COUNT_CONTRIBUTION, contributions)
        return results

    @staticmethod
    def _known(conn: sqlite3.Connection, report_ids: list[str]) -> dict[str, tuple[str, str]]:
        """Digest and first answer of the report ids already stored, in chunks under SQLite's variable limit."""
        known: dict[str, tuple[str, str]] = {}
        unique = list(dict.fromkeys(report_ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            rows = conn.execute("SELECT report_id, digest, answer FROM reports WHERE report_id IN "
                                f"({','.join('?' * len(chunk))})", chunk)
            known.update({report_id: (digest, answer) for report_id, digest, answer in rows})
        return known

    def get_report(self, report_id: str) -> ReportRecord | None:
        row = self.db.connection.execute("SELECT * FROM reports WHERE report_id = ?", (report_id,)).fetchone()
        return self._report(row) if row else None

    @staticmethod
    def _report(row) -> ReportRecord:
        return ReportRecord(row[0], row[1], row[2], row[3], row[4], row[5], _moment(row[6]), _moment(row[7]),
                            row[8], row[9])

    def case_reports(self, ip: str, category: str) -> list[ReportRecord]:
        rows = self.db.connection.execute(
            "SELECT * FROM reports WHERE ip = ? AND category = ? ORDER BY received, rowid", (ip, category))
        return [self._report(row) for row in rows]

    def get_case(self, ip: str, category: str) -> Case | None:
        cases = self._cases("WHERE ip = ? AND category = ?", (ip, category), 1)
        return cases[0] if cases else None

    def list_cases(self, ip: str | None = None, status: str | None = None, limit: int = 500) -> list[Case]:
        clauses, args = [], []
        for column, value in (("ip", ip), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        return self._cases(where + " ORDER BY last_seen DESC", tuple(args), limit)

    def _cases(self, where: str, args: tuple, limit: int) -> list[Case]:
        conn = self.db.connection
        rows = conn.execute("SELECT ip, category, status, first_seen, last_seen, reports, verification, awaiting, "
                            f"awaiting_since FROM cases {where} LIMIT ?", (*args, limit)).fetchall()
        cases = []
        for ip, category, status, first, last, count, verification, awaiting, awaiting_since in rows:
            contributions = tuple(
                Contribution(key, rank, _moment(observed), _moment(counted), n, reputation, override)
                for key, rank, observed, counted, n, reputation, override in conn.execute(
                    "SELECT c.reporter, c.rank, c.observed, c.counted_at, c.reports, "
                    "COALESCE(r.reputation, 1.0), r.rank_override FROM contributions AS c "
                    "LEFT JOIN reporters AS r ON r.key = c.reporter WHERE c.ip = ? AND c.category = ?",
                    (ip, category)))
            cases.append(Case(ip, category, status, _moment(first), _moment(last), count, contributions,
                              json.loads(verification) if verification else None, awaiting,
                              None if awaiting_since is None else _moment(awaiting_since)))
        return cases

    def set_case_status(self, ip: str, category: str, status: str, verification: dict | None = None) -> bool:
        with self.db.transaction() as conn:
            changed = conn.execute(
                "UPDATE cases SET status = ?, verification = COALESCE(?, verification), resolved_at = "
                "CASE WHEN ? = 'resolved' THEN last_seen ELSE resolved_at END WHERE ip = ? AND category = ?",
                (status, json.dumps(verification) if verification is not None else None, status, ip,
                 category)).rowcount
        return bool(changed)

    def await_verification(self, ip: str, category: str, verification_id: str, now: datetime) -> bool:
        with self.db.transaction() as conn:
            return conn.execute("UPDATE cases SET status = 'verifying', awaiting = ?, awaiting_since = ? "
                                "WHERE ip = ? AND category = ? AND status != 'resolved'",
                                (verification_id, _epoch(now), ip, category)).rowcount > 0

    def set_rank_override(self, reporter: str, rank: str | None) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO reporters (key, rank_override) VALUES (?, ?) ON CONFLICT (key) "
                         "DO UPDATE SET rank_override = excluded.rank_override", (reporter, rank))

    def take(self, counts: Mapping[str, int], limit: int, window_seconds: int, now: datetime) -> dict[str, Allowance]:
        """Per 300 buckets one read of their windows and one multi-row upsert of what was granted (a batch from
        600 reporter keys is four statements, not 600), in one transaction: BEGIN IMMEDIATE keeps the read and
        the write together.

        A bucket's row holds its latest window, which never moves back: when the clock steps back, a request
        stamped in an earlier window counts against the stored one instead of starting that window afresh."""
        start = int(now.timestamp()) // window_seconds * window_seconds
        items = list(counts.items())
        windows: dict[str, int] = {}  # the start of the window each bucket counts against
        granted: dict[str, int] = {}
        with self.db.transaction() as conn:
            for first in range(0, len(items), 300):
                chunk = items[first:first + 300]
                stored = {bucket: (window, used) for bucket, window, used in conn.execute(
                    f"SELECT bucket, window_start, count FROM rate_windows WHERE bucket IN "
                    f"({','.join('?' * len(chunk))})", [bucket for bucket, _ in chunk])}
                for bucket, count in chunk:
                    window, used = stored.get(bucket, (start, 0))
                    if window < start:  # that window is over: this one starts empty
                        window, used = start, 0
                    windows[bucket] = window
                    granted[bucket] = min(count, max(0, limit - used))
                rows = [(bucket, windows[bucket], granted[bucket]) for bucket, _ in chunk if granted[bucket]]
                if rows:
                    conn.execute(
                        "INSERT INTO rate_windows (bucket, window_start, count) VALUES "
                        + ", ".join(["(?, ?, ?)"] * len(rows))
                        + " ON CONFLICT (bucket) DO UPDATE SET count = CASE WHEN window_start = excluded.window_start "
                        "THEN count + excluded.count ELSE excluded.count END, window_start = excluded.window_start",
                        [value for row in rows for value in row])
        answers = {}
        for bucket, count in counts.items():
            wait = max(1, int(windows[bucket] + window_seconds - now.timestamp()) + 1)
            answers[bucket] = Allowance(granted[bucket], None if granted[bucket] == count else wait)
        return answers
