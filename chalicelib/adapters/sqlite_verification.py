"""Verification state in SQLite: canaries, scan claims, results with their effects, blocks, alert counts."""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime

from ..core.ports import Alert, Block, HeldAlert
from .sqlite_db import SQLiteDatabase
from .sqlite_reports import SCHEMA as REPORTS_SCHEMA, _epoch, _moment

SCHEMA = """
CREATE TABLE IF NOT EXISTS canaries (
    nonce TEXT PRIMARY KEY,
    ip TEXT NOT NULL,
    expires REAL NOT NULL,
    hit_at REAL,
    hit_from TEXT
);
CREATE TABLE IF NOT EXISTS scan_claims (
    ip TEXT PRIMARY KEY,
    claimed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS verifications (
    verification_id TEXT PRIMARY KEY,
    ip TEXT NOT NULL,
    category TEXT NOT NULL,
    verdict TEXT NOT NULL,
    result TEXT NOT NULL,
    recorded REAL NOT NULL,
    actions_done INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS verifications_by_case ON verifications (ip, category, recorded);
CREATE TABLE IF NOT EXISTS blocks (
    ip TEXT NOT NULL,
    category TEXT NOT NULL,
    until REAL NOT NULL,
    reason TEXT NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (ip, category)
);
CREATE TABLE IF NOT EXISTS alert_windows (
    window_start REAL PRIMARY KEY,
    count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    webhook TEXT NOT NULL,
    url TEXT NOT NULL,
    status INTEGER,
    error TEXT,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS digest_alerts (
    id INTEGER PRIMARY KEY,
    window_start REAL NOT NULL,
    alert TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS actions_done (
    action_key TEXT PRIMARY KEY,
    done_at REAL NOT NULL
);
"""

# The rows DynamoDB's TTL deletes on AWS (docs/aws.md, "Item types"), kept as long; `:now` is epoch seconds. The
# scan cool-down is a setting this store does not see: a claim is kept longer than any sensible cool-down.
DAY = 24 * 3600
EXPIRED = (
    f"DELETE FROM canaries WHERE expires < :now - {DAY}",
    f"DELETE FROM scan_claims WHERE claimed_at < :now - {30 * DAY}",
    "DELETE FROM blocks WHERE until < :now",
    f"DELETE FROM alert_windows WHERE window_start < :now - {7 * DAY}",
    f"DELETE FROM digest_alerts WHERE window_start < :now - {7 * DAY}",
    f"DELETE FROM webhook_deliveries WHERE at < :now - {30 * DAY}",
    f"DELETE FROM actions_done WHERE done_at < :now - {14 * DAY}",
)


class SQLiteVerificationStore:
    def __init__(self, db: SQLiteDatabase, reputation_floor: float = 0.05, reputation_ceiling: float = 2.0):
        self.db = db
        self.floor, self.ceiling = reputation_floor, reputation_ceiling
        db.ensure_schema(REPORTS_SCHEMA)
        db.ensure_schema(SCHEMA)
        db.expire(*EXPIRED)

    def register_canary(self, nonce: str, ip: str, expires: datetime) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO canaries (nonce, ip, expires) VALUES (?, ?, ?)", (nonce, ip, _epoch(expires)))

    def record_canary_hit(self, nonce: str, peer: str, now: datetime) -> bool:
        with self.db.transaction() as conn:
            return conn.execute("UPDATE canaries SET hit_at = COALESCE(hit_at, ?), hit_from = COALESCE(hit_from, ?) "
                                "WHERE nonce = ? AND expires >= ?", (_epoch(now), peer, nonce, _epoch(now))).rowcount > 0

    def canary_hit(self, nonce: str) -> bool:
        row = self.db.connection.execute("SELECT hit_at FROM canaries WHERE nonce = ?", (nonce,)).fetchone()
        return bool(row and row[0] is not None)

    def claim_scan(self, ip: str, now: datetime, cooldown_seconds: int) -> bool:
        with self.db.transaction() as conn:
            return conn.execute(
                "INSERT INTO scan_claims (ip, claimed_at) VALUES (?, ?) ON CONFLICT (ip) DO UPDATE SET "
                "claimed_at = excluded.claimed_at WHERE claimed_at <= excluded.claimed_at - ?",
                (ip, _epoch(now), cooldown_seconds)).rowcount > 0

    def fire_threshold_once(self, ip: str, category: str) -> bool:
        """`threshold_fired` keeps the case's last_seen when it fired (0: never). A resolution after that sets
        resolved_at to at least that, and a reopening report is newer still: so a case fires once per episode."""
        with self.db.transaction() as conn:
            return conn.execute("UPDATE cases SET threshold_fired = last_seen WHERE ip = ? AND category = ? AND "
                                "status != 'resolved' AND threshold_fired <= COALESCE(resolved_at, 0)",
                                (ip, category)).rowcount > 0

    def record_verification(self, verification_id: str, ip: str, category: str, verdict: str, result: dict,
                            reputation_factor: float | None, now: datetime) -> bool:
        """A verdict judges the claims counted since the case's last judging verdict (all of them the first
        time): a reporter whose contribution was judged already is left alone until it reports again."""
        status = verdict if verdict in ("confirmed", "refuted") else "inconclusive"
        with self.db.transaction() as conn:
            last_judged = conn.execute("SELECT MAX(recorded) FROM verifications WHERE ip = ? AND category = ? "
                                       "AND verdict IN ('confirmed', 'refuted')", (ip, category)).fetchone()[0]
            if conn.execute("INSERT INTO verifications (verification_id, ip, category, verdict, result, recorded) "
                            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                            (verification_id, ip, category, verdict, json.dumps(result), _epoch(now))).rowcount == 0:
                return False
            # a case set verifying before cases kept `awaiting` takes the first verdict that comes
            conn.execute("UPDATE cases SET status = ?, verification = ? WHERE ip = ? AND category = ? "
                         "AND status = 'verifying' AND COALESCE(awaiting, ?) = ?",
                         (status, json.dumps(result), ip, category, verification_id, verification_id))
            if reputation_factor is not None:
                column = "confirmed" if reputation_factor >= 1 else "refuted"
                conn.execute(f"UPDATE reporters SET reputation = MIN(?, MAX(?, reputation * ?)), {column} = {column} + 1 "
                             "WHERE key IN (SELECT reporter FROM contributions WHERE ip = ? AND category = ? "
                             "AND counted_at > COALESCE(?, -1))",
                             (self.ceiling, self.floor, reputation_factor, ip, category, last_judged))
        return True

    def verification(self, verification_id: str) -> dict | None:
        row = self.db.connection.execute("SELECT verdict, result, actions_done FROM verifications WHERE "
                                         "verification_id = ?", (verification_id,)).fetchone()
        return {"verdict": row[0], "result": json.loads(row[1]), "actions_done": bool(row[2])} if row else None

    def mark_actions_done(self, verification_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE verifications SET actions_done = 1 WHERE verification_id = ?", (verification_id,))

    def action_done(self, action_key: str) -> bool:
        return self.db.connection.execute("SELECT 1 FROM actions_done WHERE action_key = ?",
                                          (action_key,)).fetchone() is not None

    def mark_action_done(self, action_key: str, now: datetime) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO actions_done VALUES (?, ?) ON CONFLICT DO NOTHING", (action_key, _epoch(now)))

    def block(self, entry: Block) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO blocks VALUES (?, ?, ?, ?, ?) ON CONFLICT (ip, category) DO UPDATE SET "
                         "until = MAX(until, excluded.until), reason = excluded.reason, score = excluded.score",
                         (entry.ip, entry.category, _epoch(entry.until), entry.reason, entry.score))

    def unblock(self, ip: str, category: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM blocks WHERE ip = ? AND category = ?", (ip, category))

    def blocklist(self, now: datetime) -> list[Block]:
        rows = self.db.connection.execute("SELECT ip, category, until, reason, score FROM blocks WHERE until > ? "
                                          "ORDER BY ip, category", (_epoch(now),))
        return [Block(ip, category, _moment(until), reason, score) for ip, category, until, reason, score in rows]

    def count_alert(self, window_start: datetime) -> int:
        with self.db.transaction() as conn:
            return conn.execute("INSERT INTO alert_windows VALUES (?, 1) ON CONFLICT (window_start) DO UPDATE SET "
                                "count = count + 1 RETURNING count", (_epoch(window_start),)).fetchone()[0]

    def hold_for_digest(self, window_start: datetime, alert: Alert) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO digest_alerts (window_start, alert) VALUES (?, ?)",
                         (_epoch(window_start), json.dumps(asdict(alert))))

    def held_for_digest(self, window_start: datetime) -> list[HeldAlert]:
        rows = self.db.connection.execute("SELECT id, alert FROM digest_alerts WHERE window_start = ? ORDER BY id",
                                          (_epoch(window_start),))
        return [HeldAlert(str(held_id), Alert(**json.loads(alert))) for held_id, alert in rows]

    def clear_digest(self, window_start: datetime, held_ids: Iterable[str]) -> None:
        with self.db.transaction() as conn:
            conn.executemany("DELETE FROM digest_alerts WHERE window_start = ? AND id = ?",
                             [(_epoch(window_start), int(held_id)) for held_id in held_ids])

    def log_delivery(self, delivery_id: str, webhook: str, url: str, status: int | None, error: str | None,
                     at: datetime) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO webhook_deliveries (delivery_id, webhook, url, status, error, at) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (delivery_id, webhook, url, status, error, _epoch(at)))

    def deliveries(self, limit: int = 100) -> list[dict]:
        rows = self.db.connection.execute("SELECT delivery_id, webhook, url, status, error, at FROM "
                                          "webhook_deliveries ORDER BY id DESC LIMIT ?", (limit,))
        return [{"delivery_id": d, "webhook": w, "url": u, "status": s, "error": e, "at": _moment(a)}
                for d, w, u, s, e, a in rows]
