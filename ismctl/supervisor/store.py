"""Durable supervisor state in SQLite (WAL): jobs, their append-only events, the command audit log.

Every write commits before the caller acknowledges anything to a peer, so a
job that a client saw accepted survives a crash of the supervisor.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    device       TEXT NOT NULL,
    state        TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT '',
    created      REAL NOT NULL,
    updated      REAL NOT NULL,
    n_ops        INTEGER NOT NULL,
    confirmed_op INTEGER NOT NULL DEFAULT -1,
    line_base    INTEGER NOT NULL DEFAULT 0,
    paused_by    TEXT NOT NULL DEFAULT ''
);
-- Apart from jobs, so that progress and state updates never rewrite a large program.
CREATE TABLE IF NOT EXISTS job_sources (
    job_id INTEGER PRIMARY KEY REFERENCES jobs(id),
    source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS job_events (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    ts     REAL NOT NULL,
    kind   TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS audit (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    ts     REAL NOT NULL,
    src    TEXT NOT NULL,
    msg_id INTEGER,
    type   TEXT NOT NULL,
    result TEXT NOT NULL,
    error  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS job_events_by_job ON job_events(job_id, seq);
"""

JOB_COLUMNS = ("id", "name", "device", "state", "reason", "created", "updated", "n_ops", "confirmed_op", "line_base", "paused_by")


@dataclass
class JobRecord:
    id: int
    name: str
    device: str
    state: str
    reason: str
    created: float
    updated: float
    n_ops: int
    confirmed_op: int
    line_base: int
    paused_by: str

    def summary(self) -> dict:
        return {k: getattr(self, k) for k in JOB_COLUMNS}


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=30.0)  # the planner thread writes too
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


class Store:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = _connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        self._audit_rows: list[tuple] = []

    def close(self) -> None:
        self.flush_audit()
        self.db.close()

    def add_job(self, name: str, device: str, n_ops: int, state: str, reason: str = "") -> int:
        now = time.time()
        with self.db:
            cur = self.db.execute(
                "INSERT INTO jobs (name, device, state, reason, created, updated, n_ops) VALUES (?,?,?,?,?,?,?)",
                (name, device, state, reason, now, now, n_ops),
            )
            job_id = cur.lastrowid
            self._event(job_id, "created", {"state": state, "reason": reason, "n_ops": n_ops})
        return job_id

    def set_state(self, job_id: int, state: str, reason: str = "", **fields) -> None:
        sets = ", ".join(f"{k}=?" for k in fields)
        with self.db:
            self.db.execute(
                f"UPDATE jobs SET state=?, reason=?, updated=?{', ' + sets if sets else ''} WHERE id=?",
                (state, reason, time.time(), *fields.values(), job_id),
            )
            self._event(job_id, state, {"reason": reason, **fields})

    def update(self, job_id: int, **fields) -> None:
        """Change job columns that are bookkeeping, not a state change (no event)."""
        sets = ", ".join(f"{k}=?" for k in fields)
        self.db.execute(f"UPDATE jobs SET {sets}, updated=? WHERE id=?", (*fields.values(), time.time(), job_id))

    def set_progress(self, job_id: int, confirmed_op: int) -> None:
        self.db.execute("UPDATE jobs SET confirmed_op=?, updated=? WHERE id=? AND confirmed_op<?", (confirmed_op, time.time(), job_id, confirmed_op))

    def event(self, job_id: int, kind: str, detail: dict) -> None:
        with self.db:
            self._event(job_id, kind, detail)

    def _event(self, job_id: int, kind: str, detail: dict) -> None:
        self.db.execute("INSERT INTO job_events (job_id, ts, kind, detail) VALUES (?,?,?,?)", (job_id, time.time(), kind, json.dumps(detail)))

    def audit(self, src: str, msg_id: int | None, type_: str, result: str, error: str = "") -> None:
        """Queue an audit row; :meth:`flush_audit` writes the queue in one transaction.

        The reply goes out first and the row follows within one loop turn, so
        that auditing costs the operator no latency.
        """
        self._audit_rows.append((time.time(), src, msg_id, type_, result, error))

    def flush_audit(self) -> None:
        if self._audit_rows:
            rows, self._audit_rows = self._audit_rows, []
            with self.db:
                self.db.executemany("INSERT INTO audit (ts, src, msg_id, type, result, error) VALUES (?,?,?,?,?,?)", rows)

    def job(self, job_id: int) -> JobRecord | None:
        row = self.db.execute(f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return JobRecord(*row) if row else None

    def source(self, job_id: int) -> str | None:
        row = self.db.execute("SELECT source FROM job_sources WHERE job_id=?", (job_id,)).fetchone()
        return row[0] if row else None

    def save_source(self, job_id: int, source: str) -> None:
        """Write a job's program text on a connection of its own: callable from the planner thread."""
        db = _connect(self.path)
        try:
            with db:
                db.execute("INSERT OR REPLACE INTO job_sources (job_id, source) VALUES (?, ?)", (job_id, source))
        finally:
            db.close()

    def jobs(self) -> list[JobRecord]:
        return [JobRecord(*row) for row in self.db.execute(f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs ORDER BY id")]

    def events(self, job_id: int) -> list[dict]:
        rows = self.db.execute("SELECT ts, kind, detail FROM job_events WHERE job_id=? ORDER BY seq", (job_id,))
        return [{"ts": ts, "kind": kind, **json.loads(detail)} for ts, kind, detail in rows]
