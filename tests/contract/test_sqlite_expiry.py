"""SQLite has no TTL: what DynamoDB's TTL deletes on AWS, the idle worker purges through the job queue, which
shares the node's database with the stores."""
from __future__ import annotations

from datetime import timedelta

from chalicelib.adapters.sqlite_db import SQLiteDatabase
from chalicelib.adapters.sqlite_queue import SQLiteJobQueue
from chalicelib.adapters.sqlite_reports import SQLiteReportStore
from chalicelib.adapters.sqlite_verification import SQLiteVerificationStore
from chalicelib.core.ports import Alert, Block
from tests.conftest import NOW

TABLES = ("rate_windows", "canaries", "scan_claims", "blocks", "alert_windows", "digest_alerts", "webhook_deliveries")


def test_purge_forgets_rows_past_their_lifetime_and_keeps_the_live_ones():
    db = SQLiteDatabase(":memory:")
    reports, verifications, queue = SQLiteReportStore(db), SQLiteVerificationStore(db), SQLiteJobQueue(db)

    def write_each_kind(at, ip: str) -> None:
        verifications.register_canary(f"nonce-{ip}", ip, at + timedelta(minutes=10))
        verifications.claim_scan(ip, at, 3600)
        verifications.block(Block(ip, "open-proxy", at + timedelta(hours=1), "confirmed", 10.0))
        verifications.count_alert(at)
        verifications.hold_for_digest(at, Alert("subject", "body", "short"))
        verifications.log_delivery(f"delivery-{ip}", "noc", "http://127.0.0.1/hook", 204, None, at)

    for n in range(100):   # limit_client runs before authentication: a row per client address
        reports.take({f"client:2001:db8::{n:x}": 1}, 600, 60, NOW)
    write_each_kind(NOW, "127.0.0.5")
    purged_at = NOW + timedelta(days=31)
    recent = purged_at - timedelta(minutes=1)
    reports.take({"client:192.0.2.1": 1}, 600, 60, recent)
    write_each_kind(recent, "127.0.0.6")

    assert queue.purge_expired(purged_at) == 100 + 6
    counts = {table: db.connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in TABLES}
    assert counts == dict.fromkeys(TABLES, 1)
    assert verifications.record_canary_hit("nonce-127.0.0.6", "127.0.0.6", purged_at)
    assert not verifications.claim_scan("127.0.0.6", purged_at, 3600)
    assert reports.take({"client:192.0.2.1": 600}, 600, 60, recent)["client:192.0.2.1"].granted == 599


def test_an_open_window_and_a_claim_inside_its_cool_down_survive_a_purge():
    db = SQLiteDatabase(":memory:")
    reports, verifications, queue = SQLiteReportStore(db), SQLiteVerificationStore(db), SQLiteJobQueue(db)
    reports.take({"key:a": 5}, 5, 60, NOW)
    verifications.claim_scan("127.0.0.5", NOW, 3600)
    queue.purge_expired(NOW + timedelta(seconds=59))
    assert reports.take({"key:a": 1}, 5, 60, NOW + timedelta(seconds=59))["key:a"].granted == 0
    assert not verifications.claim_scan("127.0.0.5", NOW + timedelta(seconds=59), 3600)
