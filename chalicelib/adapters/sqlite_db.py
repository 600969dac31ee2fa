"""One SQLite database file shared by the SQLite adapters: WAL, a connection per thread, schema on open."""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path


class SQLiteDatabase:
    """Connections are per thread (waitress serves from a thread pool); writes use BEGIN IMMEDIATE."""

    def __init__(self, path: str | Path, schema: str = ""):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._schemas: list[str] = []
        self._expiries: list[str] = []
        if schema:
            self.ensure_schema(schema)

    def ensure_schema(self, schema: str) -> None:
        if schema not in self._schemas:
            self._schemas.append(schema)
            self.connection.executescript(schema)

    def add_columns(self, table: str, columns: dict[str, str]) -> None:
        """Give a table made by an older release the columns added since (name: declaration), once: CREATE ...
        IF NOT EXISTS leaves an existing table as it is."""
        with self.transaction() as conn:  # BEGIN IMMEDIATE: a second process opening the file waits, then sees them
            present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            for name, declaration in columns.items():
                if name not in present:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")

    def expire(self, *deletes: str) -> None:
        """Register DELETEs of rows past their lifetime (`:now` is the time in epoch seconds) for purge_expired:
        SQLite has no TTL, so the idle worker runs them where DynamoDB's TTL deletes the same items on AWS."""
        self._expiries.extend(delete for delete in deletes if delete not in self._expiries)

    def purge_expired(self, now: datetime) -> int:
        """Run every registered DELETE in one transaction; how many rows went."""
        with self.transaction() as conn:
            return sum(conn.execute(delete, {"now": now.timestamp()}).rowcount for delete in self._expiries)

    @property
    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # an acknowledged write survives power loss
            conn.execute("PRAGMA foreign_keys=ON")
            # checkpoint every 16 MB of WAL rather than 4: a batch of reports writes about 12 MB, and pages that
            # several batches touch (index pages, cases) are then copied into the database once, not per batch
            conn.execute("PRAGMA wal_autocheckpoint=4000")
            conn.execute("PRAGMA mmap_size=1073741824")  # reads from the OS page cache without a syscall each
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT. Inside another transaction of this thread it is a savepoint instead: the
        writes of several stores then commit once (one sync to disk), and a failure inside undoes only its own.

        Some errors (SQLITE_FULL, SQLITE_IOERR, …) make SQLite roll back the whole transaction itself: the error
        is then raised as it came, and every enclosing transaction fails as well instead of committing nothing.
        """
        conn = self.connection
        nested = conn.in_transaction
        conn.execute("SAVEPOINT nested" if nested else "BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO nested" if nested else "ROLLBACK")
                if nested:
                    conn.execute("RELEASE nested")
            raise
        if not conn.in_transaction:
            raise sqlite3.OperationalError("SQLite rolled this transaction back after an error inside it")
        conn.execute("RELEASE nested" if nested else "COMMIT")
