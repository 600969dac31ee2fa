"""Delegations and tokens in SQLite, with longest-prefix match answered by one index seek.

Delegations nest or are disjoint, so their address ranges can be flattened into non-overlapping
intervals, each owned by the most specific delegation covering it. `referral_index` holds those
intervals keyed by (family, first address); a lookup is then one seek for the interval starting at or
before the address, instead of one probe per prefix length. Every write recomputes the intervals of
the ranges it touches, inside the same transaction.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime

from ..core.ports import DelegationMatch, Role, StaleDelegation, StoredToken
from ..protocol.delegation import Delegation, parse_delegation
from ..protocol.encoding import format_time, parse_time
from ..protocol.prefixes import IPAddress, IPNetwork, address_range, contains
from .sqlite_db import SQLiteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS delegations (
    id INTEGER PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('held', 'granted')),
    family INTEGER NOT NULL,
    first BLOB NOT NULL,
    last BLOB NOT NULL,
    plen INTEGER NOT NULL,
    prefix TEXT NOT NULL,
    serial INTEGER NOT NULL,
    not_after TEXT NOT NULL,
    document TEXT NOT NULL,
    chain TEXT NOT NULL DEFAULT '[]',
    parent_id INTEGER,
    UNIQUE (family, first, plen, role)
);
CREATE INDEX IF NOT EXISTS delegations_by_role ON delegations (role, family, first);
CREATE TABLE IF NOT EXISTS referral_index (
    family INTEGER NOT NULL,
    first BLOB NOT NULL,
    last BLOB NOT NULL,
    delegation_id INTEGER NOT NULL,
    PRIMARY KEY (family, first)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    label TEXT NOT NULL,
    created TEXT NOT NULL
);
"""

# Held sorts before granted on the same prefix: a node that delegates its whole prefix refers it on.
_ROLE_DEPTH = {"held": 0, "granted": 1}

# One seek: the interval starting at or before the address. Its end is checked in Python, since a
# `last >= ?` in the WHERE clause would make SQLite scan backwards through the family on a miss.
_LONGEST_MATCH = """
SELECT d.role, d.document, COALESCE(p.chain, d.chain), CAST(strftime('%s', d.not_after) AS INTEGER), r.last
FROM referral_index AS r
JOIN delegations AS d ON d.id = r.delegation_id
LEFT JOIN delegations AS p ON p.id = d.parent_id
WHERE r.family = ? AND r.first <= ? ORDER BY r.first DESC LIMIT 1
"""
_ROLES = {role.value: role for role in Role}


def _width(family: int) -> int:
    return 4 if family == 4 else 16


def flatten(spans: Iterable[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Non-overlapping (first, last, owner) intervals from nested spans sorted outermost-first.

    A sweep with a stack of open spans: each address goes to the innermost span covering it.
    """
    out: list[tuple[int, int, int]] = []
    stack: list[tuple[int, int]] = []
    cursor = 0

    def close_until(position: int) -> None:
        nonlocal cursor
        while stack and stack[-1][0] < position:
            end, owner = stack.pop()
            if cursor <= end:
                out.append((cursor, end, owner))
                cursor = end + 1

    for first, last, owner in spans:
        close_until(first)
        if stack and cursor < first:
            out.append((cursor, first - 1, stack[-1][1]))
        cursor = first
        stack.append((last, owner))
    close_until(1 << 129)
    return out


class SQLiteDelegationStore:
    """`rebuild_threshold`: a batch larger than this rebuilds a family's index in one sweep."""

    def __init__(self, db: SQLiteDatabase, rebuild_threshold: int = 1000):
        self.db = db
        self.rebuild_threshold = rebuild_threshold
        db.ensure_schema(SCHEMA)

    # -- reads -----------------------------------------------------------------------------------
    def longest_match(self, ip: IPAddress) -> DelegationMatch | None:
        packed = ip.packed
        row = self.db.connection.execute(_LONGEST_MATCH, (ip.version, packed)).fetchone()
        if row is None or row[4] < packed:
            return None
        return DelegationMatch(_ROLES[row[0]], row[1], row[2], row[3])

    def list_delegations(self, role: Role | None = None) -> list[DelegationMatch]:
        sql = ("SELECT d.role, d.document, COALESCE(p.chain, d.chain), CAST(strftime('%s', d.not_after) AS INTEGER) "
               "FROM delegations AS d LEFT JOIN delegations AS p ON p.id = d.parent_id")
        args: tuple = ()
        if role is not None:
            sql += " WHERE d.role = ?"
            args = (role.value,)
        rows = self.db.connection.execute(sql + " ORDER BY d.family, d.first, d.plen", args)
        return [DelegationMatch(Role(r[0]), r[1], r[2], r[3]) for r in rows]

    def granting(self) -> AbstractContextManager:
        """BEGIN IMMEDIATE: one writer at a time, so no other grant comes between the check and the save."""
        return self.db.transaction()

    def overlapping_grants(self, prefix: IPNetwork) -> list[Delegation]:
        """Two index reads: the grants that start inside prefix (within it, or it exactly or a wider one starting
        where it starts: prefixes are aligned), and those starting where a wider prefix around it would."""
        family, first, last = address_range(prefix)
        value, bits = int(prefix.network_address), prefix.max_prefixlen
        starts = {(value >> (bits - n) << (bits - n)).to_bytes(bits // 8, "big") for n in range(prefix.prefixlen)}
        starts = sorted(start for start in starts if start < first)
        conn = self.db.connection
        rows = conn.execute("SELECT document FROM delegations WHERE role = 'granted' AND family = ? "
                            "AND first BETWEEN ? AND ?", (family, first, last)).fetchall()
        if starts:
            rows += conn.execute("SELECT document FROM delegations WHERE role = 'granted' AND family = ? AND first IN "
                                 f"({', '.join('?' * len(starts))})", (family, *starts)).fetchall()
        found = [parse_delegation(json.loads(document)) for document, in rows]
        return [d for d in found if contains(d.prefix, prefix) or contains(prefix, d.prefix)]

    def next_serial(self, prefix: IPNetwork) -> int:
        family, first, _ = address_range(prefix)
        row = self.db.connection.execute(
            "SELECT MAX(serial) FROM delegations WHERE family = ? AND first = ? AND plen = ?",
            (family, first, prefix.prefixlen)).fetchone()
        return 1 if row[0] is None else row[0] + 1

    # -- writes ----------------------------------------------------------------------------------
    def save_delegations(self, role: Role, delegations: Iterable[Delegation],
                         chains: Sequence[Sequence[dict]] | None = None) -> None:
        items = list(delegations)
        chains = chains if chains is not None else [()] * len(items)
        with self.db.transaction() as conn:
            for delegation, chain in zip(items, chains, strict=True):
                self._upsert(conn, role, delegation, chain)
            if len(items) > self.rebuild_threshold:
                self._relink_parents(conn)
                for family in {d.prefix.version for d in items}:
                    self._rebuild_family(conn, family)
            else:
                for delegation in items:
                    self._relink_parents(conn, delegation.prefix)
                    self._reindex(conn, delegation.prefix)

    def remove_delegation(self, role: Role, prefix: IPNetwork) -> bool:
        family, first, _ = address_range(prefix)
        with self.db.transaction() as conn:
            gone = conn.execute("DELETE FROM delegations WHERE role = ? AND family = ? AND first = ? "
                                "AND plen = ?", (role.value, family, first, prefix.prefixlen)).rowcount
            if gone:
                self._relink_parents(conn, prefix)
                self._reindex(conn, prefix)
        return bool(gone)

    def _upsert(self, conn: sqlite3.Connection, role: Role, d: Delegation, chain: Sequence[dict]) -> None:
        family, first, last = address_range(d.prefix)
        row = conn.execute("SELECT serial FROM delegations WHERE role = ? AND family = ? AND first = ? "
                           "AND plen = ?", (role.value, family, first, d.prefix.prefixlen)).fetchone()
        if row and row[0] > d.serial:
            raise StaleDelegation(f"{d.prefix} already has serial {row[0]}, newer than {d.serial}")
        conn.execute(
            "INSERT INTO delegations (role, family, first, last, plen, prefix, serial, not_after, document, chain)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (family, first, plen, role) DO UPDATE SET"
            " serial = excluded.serial, not_after = excluded.not_after, document = excluded.document,"
            " chain = excluded.chain",
            (role.value, family, first, last, d.prefix.prefixlen, str(d.prefix), d.serial,
             format_time(d.not_after), json.dumps(d.document, separators=(",", ":")),
             json.dumps(list(chain), separators=(",", ":"))))

    def _relink_parents(self, conn: sqlite3.Connection, prefix: IPNetwork | None = None) -> None:
        """Point each granted delegation (under prefix, or all) at the held one whose chain it extends."""
        where, args = "", ()
        if prefix is not None:
            family, first, last = address_range(prefix)
            where, args = " AND g.family = ? AND g.first >= ? AND g.last <= ?", (family, first, last)
        conn.execute(
            "UPDATE delegations AS g SET parent_id = (SELECT h.id FROM delegations AS h"
            " WHERE h.role = 'held' AND h.family = g.family AND h.first <= g.first AND h.last >= g.last"
            " ORDER BY h.plen DESC LIMIT 1) WHERE g.role = 'granted'" + where, args)

    def _spans(self, conn: sqlite3.Connection, sql: str, args: tuple) -> list[tuple[int, int, int]]:
        rows = conn.execute(sql + " ORDER BY first, plen, role = 'granted'", args)
        return [(int.from_bytes(f, "big"), int.from_bytes(l, "big"), i) for f, l, i in rows]

    def _rebuild_family(self, conn: sqlite3.Connection, family: int) -> None:
        conn.execute("DELETE FROM referral_index WHERE family = ?", (family,))
        spans = self._spans(conn, "SELECT first, last, id FROM delegations WHERE family = ?", (family,))
        self._insert_intervals(conn, family, flatten(spans))

    def _reindex(self, conn: sqlite3.Connection, prefix: IPNetwork) -> None:
        """Recompute the intervals inside prefix; trim the enclosing intervals it cuts into."""
        family, first, last = address_range(prefix)
        lo, hi = int.from_bytes(first, "big"), int.from_bytes(last, "big")
        width = _width(family)
        cut = conn.execute("SELECT first, last, delegation_id FROM referral_index WHERE family = ? AND "
                           "first < ? ORDER BY first DESC LIMIT 1", (family, first)).fetchall()
        cut += conn.execute("SELECT first, last, delegation_id FROM referral_index WHERE family = ? AND "
                            "first >= ? AND first <= ?", (family, first, last)).fetchall()
        conn.execute("DELETE FROM referral_index WHERE family = ? AND first >= ? AND first <= ?",
                     (family, first, last))
        kept = []
        for row_first, row_last, owner in cut:
            start, end = int.from_bytes(row_first, "big"), int.from_bytes(row_last, "big")
            if start < lo <= end:
                kept.append((start, lo - 1, owner))
            if end > hi:
                kept.append((max(start, hi + 1), end, owner))
        if any(start < lo for start, _, _ in kept):
            conn.execute("DELETE FROM referral_index WHERE family = ? AND first < ? AND last >= ?",
                         (family, first, first))
        enclosing = [(prefix.supernet(new_prefix=k).network_address.packed, k) for k in range(prefix.prefixlen)]
        ancestors = " OR (first, plen) IN (VALUES " + ",".join(["(?, ?)"] * len(enclosing)) + ")"
        spans = self._spans(
            conn, "SELECT first, last, id FROM delegations WHERE family = ? AND ((first >= ? AND first <= ?)"
            + (ancestors if enclosing else "") + ")",
            (family, first, last, *[value for pair in enclosing for value in pair]))
        inside = [(max(s, lo), min(e, hi), o) for s, e, o in flatten(spans) if e >= lo and s <= hi]
        self._insert_intervals(conn, family, kept + inside, width)

    @staticmethod
    def _insert_intervals(conn: sqlite3.Connection, family: int,
                          intervals: Iterable[tuple[int, int, int]], width: int | None = None) -> None:
        width = width or _width(family)
        conn.executemany(
            "INSERT INTO referral_index (family, first, last, delegation_id) VALUES (?, ?, ?, ?)",
            ((family, s.to_bytes(width, "big"), e.to_bytes(width, "big"), o) for s, e, o in intervals))


class SQLiteTokenStore:
    def __init__(self, db: SQLiteDatabase):
        self.db = db
        db.ensure_schema(SCHEMA)

    def save_token(self, token_hash: str, role: str, label: str, created: datetime) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO tokens (token_hash, role, label, created) VALUES (?, ?, ?, ?)",
                         (token_hash, role, label, format_time(created)))

    def token_role(self, token_hash: str) -> str | None:
        row = self.db.connection.execute("SELECT role FROM tokens WHERE token_hash = ?",
                                         (token_hash,)).fetchone()
        return row[0] if row else None

    def list_tokens(self) -> list[StoredToken]:
        rows = self.db.connection.execute("SELECT token_hash, role, label, created FROM tokens")
        return [StoredToken(token_hash, role, label, parse_time(created)) for token_hash, role, label, created in rows]

    def delete_token(self, token_hash: str) -> bool:
        with self.db.transaction() as conn:
            return conn.execute("DELETE FROM tokens WHERE token_hash = ?", (token_hash,)).rowcount > 0
