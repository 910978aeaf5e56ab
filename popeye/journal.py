"""The job journal: every accepted upload, durable before it is acknowledged.

A local SQLite database in ``state_dir`` (the shared MySQL schema is not
ours to change).  ``/processor/process`` writes the job here before it
answers, the runner resumes whatever is unfinished when it starts, and the
job records its step, retries and end here, so a crash or a restart loses
nothing and a second notification never starts a second job.

Each thread uses its own connection; writes are short transactions in WAL
mode with ``synchronous=FULL``, so an acknowledged job survives a power cut,
not only a crash of the process.
"""

import os
import sqlite3
import threading
import time
from datetime import datetime, timezone
from typing import Any

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
DUPLICATE_SKIPPED = "duplicate-skipped"
FAILED = "failed"
#: Another process (an old Popeye, a second host) holds the upload's lock.
BUSY = "busy"
ACTIVE = (QUEUED, RUNNING)
STATES = (QUEUED, RUNNING, DONE, DUPLICATE_SKIPPED, FAILED, BUSY)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    uuid TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    state TEXT NOT NULL,
    step TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    bytes_done INTEGER NOT NULL DEFAULT 0,
    bytes_total INTEGER,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, updated);
"""


def job_view(entry: dict[str, Any]) -> dict[str, Any]:
    """A journal entry for people: timestamps in ISO 8601 UTC, progress in percent."""
    view = dict(entry)
    for key in ("created", "updated", "finished"):
        if view[key] is not None:
            view[key] = datetime.fromtimestamp(view[key], timezone.utc).isoformat(timespec="seconds")
    total = view["bytes_total"]
    view["progress"] = round(100 * view["bytes_done"] / total, 1) if total else None
    return view


class QueueFull(Exception):
    """As many jobs as the runner may hold are queued or running."""


class Journal:
    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._local = threading.local()
        self._db().executescript(SCHEMA)
        self.close()  # a connection must not outlive a fork (twistd daemonizing)

    def close(self) -> None:
        """Close this thread's connection; the next use opens a new one."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def _db(self) -> sqlite3.Connection:
        """This thread's connection, in autocommit mode (transactions are explicit)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    def _transaction(self) -> "_Transaction":
        return _Transaction(self._db())

    def admit(self, uuid: str, path: str, capacity: int) -> tuple[str, bool]:
        """Record a notification: ``(state, True)`` when this call queued the
        job, ``(state, False)`` when it was already queued or running.

        A finished job for the same uuid is queued again (its files were put
        back for a retry).  Raises :class:`QueueFull` at ``capacity``.
        """
        now = time.time()
        with self._transaction() as db:
            row = db.execute("SELECT state FROM jobs WHERE uuid = ?", (uuid,)).fetchone()
            if row is not None and row["state"] in ACTIVE:
                return row["state"], False
            (active,) = db.execute(
                "SELECT count(*) FROM jobs WHERE state IN (?, ?)", ACTIVE
            ).fetchone()
            if active >= capacity:
                raise QueueFull(f"Job queue is full ({capacity} jobs); try again later")
            db.execute(
                "INSERT INTO jobs (uuid, path, state, created, updated) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (uuid) DO UPDATE SET path = excluded.path, state = excluded.state, "
                "step = NULL, last_error = NULL, bytes_done = 0, bytes_total = NULL, "
                "created = excluded.created, updated = excluded.updated, finished = NULL",
                (uuid, path, QUEUED, now, now),
            )
        return QUEUED, True

    def unfinished(self) -> list[dict[str, Any]]:
        """Jobs queued or running when the last process ended, oldest first."""
        rows = self._db().execute("SELECT * FROM jobs WHERE state IN (?, ?) ORDER BY created", ACTIVE)
        return [dict(r) for r in rows]

    def get(self, uuid: str) -> dict[str, Any] | None:
        row = self._db().execute("SELECT * FROM jobs WHERE uuid = ?", (uuid,)).fetchone()
        return dict(row) if row else None

    def recent(self, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        query, args = "SELECT * FROM jobs", []
        if state:
            query, args = query + " WHERE state = ?", [state]
        rows = self._db().execute(query + " ORDER BY updated DESC LIMIT ?", [*args, limit])
        return [dict(r) for r in rows]

    def count(self, *states: str) -> int:
        marks = ", ".join("?" * len(states))
        return self._db().execute(f"SELECT count(*) FROM jobs WHERE state IN ({marks})", states).fetchone()[0]

    def check_writable(self) -> None:
        """Take the write lock and let it go: raises if the journal cannot be written."""
        with self._transaction():
            pass

    def _update(self, uuid: str, assignments: str, *args: Any) -> None:
        with self._transaction() as db:
            db.execute(f"UPDATE jobs SET {assignments}, updated = ? WHERE uuid = ?", (*args, time.time(), uuid))

    def started(self, uuid: str) -> None:
        self._update(uuid, "state = ?, attempts = attempts + 1", RUNNING)

    def entered(self, uuid: str, step: str) -> None:
        self._update(uuid, "step = ?", step)

    def retried(self, uuid: str, error: str) -> None:
        self._update(uuid, "retries = retries + 1, last_error = ?", error)

    def progressed(self, uuid: str, done: int, total: int) -> None:
        self._update(uuid, "bytes_done = ?, bytes_total = ?", done, total)

    def requeued(self, uuid: str) -> None:
        """Interrupted by a shutdown: the next start runs it again."""
        self._update(uuid, "state = ?", QUEUED)

    def finished(self, uuid: str, state: str, error: str | None = None) -> None:
        self._update(uuid, "state = ?, last_error = coalesce(?, last_error), finished = ?", state, error, time.time())

    def prune(self, older_than: float) -> int:
        """Forget finished jobs that ended before ``older_than`` (epoch seconds)."""
        with self._transaction() as db:
            marks = ", ".join("?" * len(ACTIVE))
            return db.execute(
                f"DELETE FROM jobs WHERE state NOT IN ({marks}) AND finished < ?", (*ACTIVE, older_than)
            ).rowcount


class _Transaction:
    """``with``: one ``BEGIN IMMEDIATE`` transaction, committed or rolled back.

    IMMEDIATE takes the write lock at the start, so the check-then-insert of
    :meth:`Journal.admit` cannot interleave with another admission.
    """

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, _value, _traceback) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
