"""A database file written before the intake layout (rowid tables, reports indexed by case and time) still
opens as it is: every row reads back, and intake goes on from where it stood."""
from __future__ import annotations

from dataclasses import replace

from chalicelib.adapters.sqlite_db import SQLiteDatabase
from chalicelib.adapters.sqlite_reports import SQLiteReportStore
from chalicelib.adapters.sqlite_verification import SQLiteVerificationStore
from chalicelib.core.ports import Outcome, ReportRecord
from tests.conftest import NOW

DAY = 24 * 3600
EPOCH = NOW.timestamp()

# The layout as released before, verbatim: what files in the field hold.
OLD_SCHEMA = """
CREATE TABLE reports (report_id TEXT PRIMARY KEY, digest TEXT NOT NULL, ip TEXT NOT NULL, category TEXT NOT NULL,
    reporter TEXT NOT NULL, rank TEXT NOT NULL, observed REAL NOT NULL, received REAL NOT NULL,
    envelope TEXT NOT NULL, answer TEXT NOT NULL);
CREATE INDEX reports_by_case ON reports (ip, category, received);
CREATE TABLE cases (ip TEXT NOT NULL, category TEXT NOT NULL, status TEXT NOT NULL, first_seen REAL NOT NULL,
    last_seen REAL NOT NULL, resolved_at REAL, reports INTEGER NOT NULL, verification TEXT,
    threshold_fired INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (ip, category));
CREATE INDEX cases_by_status ON cases (status, last_seen);
CREATE TABLE contributions (ip TEXT NOT NULL, category TEXT NOT NULL, reporter TEXT NOT NULL, rank TEXT NOT NULL,
    observed REAL NOT NULL, counted_at REAL NOT NULL, reports INTEGER NOT NULL, PRIMARY KEY (ip, category, reporter));
CREATE TABLE reporters (key TEXT PRIMARY KEY, reputation REAL NOT NULL DEFAULT 1.0, rank_override TEXT,
    confirmed INTEGER NOT NULL DEFAULT 0, refuted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE rate_windows (bucket TEXT PRIMARY KEY, window_start INTEGER NOT NULL, count INTEGER NOT NULL);
"""


def old_file(path) -> None:
    db = SQLiteDatabase(path, OLD_SCHEMA)
    with db.transaction() as conn:
        conn.execute("INSERT INTO reports VALUES ('r1', 'd1', '127.0.0.5', 'spam', 'ed25519:a', 'anonymous', ?, ?, "
                     "'{\"report\": {}}', '{\"report_id\": \"r1\"}')", (EPOCH, EPOCH))
        conn.execute("INSERT INTO cases VALUES ('127.0.0.5', 'spam', 'confirmed', ?, ?, NULL, 1, '{\"verdict\": 1}', 1)",
                     (EPOCH, EPOCH))
        conn.execute("INSERT INTO contributions VALUES ('127.0.0.5', 'spam', 'ed25519:a', 'anonymous', ?, ?, 1)",
                     (EPOCH, EPOCH))
        conn.execute("INSERT INTO reporters (key, reputation) VALUES ('ed25519:a', 2.0)")
        conn.execute("INSERT INTO rate_windows VALUES ('key:ed25519:a', 60, 3)")
    db.connection.close()


def test_an_old_file_keeps_its_reports_cases_and_standing(tmp_path):
    old_file(tmp_path / "node.db")
    store = SQLiteReportStore(SQLiteDatabase(tmp_path / "node.db"))
    assert store.get_report("r1").digest == "d1"
    case = store.get_case("127.0.0.5", "spam")
    assert (case.status, case.reports, case.verification) == ("confirmed", 1, {"verdict": 1})
    assert [(c.reporter, c.reputation) for c in case.contributions] == [("ed25519:a", 2.0)]
    assert [r.report_id for r in store.case_reports("127.0.0.5", "spam")] == ["r1"]


def test_an_old_file_goes_on_taking_reports(tmp_path):
    old_file(tmp_path / "node.db")
    store = SQLiteReportStore(SQLiteDatabase(tmp_path / "node.db"))
    again = ReportRecord("r1", "d1", "127.0.0.5", "spam", "ed25519:a", "anonymous", NOW, NOW, "{}", "{}")
    new = replace(again, report_id="r2")
    assert [o for o, _ in store.record_reports([again, new], DAY)] == [Outcome.DUPLICATE, Outcome.NEW]
    assert store.get_case("127.0.0.5", "spam").reports == 2
    assert store.db.connection.execute("SELECT * FROM rate_windows").fetchall() == [("key:ed25519:a", 60, 3)]



def test_an_old_file_gains_the_columns_added_since_and_its_verifying_cases_take_their_verdict(tmp_path):
    old_file(tmp_path / "node.db")
    db = SQLiteDatabase(tmp_path / "node.db")
    with db.transaction() as conn:
        conn.execute("UPDATE cases SET status = 'verifying'")   # a verification queued before the upgrade
    store = SQLiteReportStore(db)
    assert store.get_case("127.0.0.5", "spam").awaiting is None
    SQLiteReportStore(SQLiteDatabase(tmp_path / "node.db"))   # a second process opening the file adds nothing twice
    SQLiteVerificationStore(db).record_verification("v0", "127.0.0.5", "spam", "refuted", {}, 0.5, NOW)
    assert store.get_case("127.0.0.5", "spam").status == "refuted"
    assert store.await_verification("127.0.0.5", "spam", "v1", NOW)
    assert store.get_case("127.0.0.5", "spam").awaiting == "v1"
