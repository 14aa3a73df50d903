"""Durable supervisor state in SQLite (WAL): jobs, job graphs and their steps, the jobs'
append-only events, the command audit log.

Every write commits before the caller acknowledges anything to a peer, so a
job that a client saw accepted survives a crash of the supervisor.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
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
    paused_by    TEXT NOT NULL DEFAULT '',
    kind         TEXT NOT NULL DEFAULT 'job'  -- 'job' (one program on one device) or 'graph' (ordered steps)
);
-- The ordered steps of a job graph: a device step runs its own job (job_id), a
-- hand-off step keeps its state here.
CREATE TABLE IF NOT EXISTS graph_steps (
    graph_id   INTEGER NOT NULL REFERENCES jobs(id),
    idx        INTEGER NOT NULL,
    kind       TEXT NOT NULL,               -- 'device' or 'handoff'
    label      TEXT NOT NULL,
    device     TEXT NOT NULL DEFAULT '',
    job_id     INTEGER REFERENCES jobs(id),
    mode       TEXT NOT NULL DEFAULT '',    -- hand-off: 'operator' or 'auto'
    transfer_s REAL NOT NULL DEFAULT 0,
    state      TEXT NOT NULL DEFAULT 'pending',
    reason     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (graph_id, idx)
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

JOB_COLUMNS = ("id", "name", "device", "state", "reason", "created", "updated", "n_ops", "confirmed_op", "line_base", "paused_by", "kind")
STEP_COLUMNS = ("graph_id", "idx", "kind", "label", "device", "job_id", "mode", "transfer_s", "state", "reason")
# Columns added after a release: a database written by an older supervisor gets them on open.
MIGRATIONS = {("jobs", "kind"): "ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'job'"}


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
    kind: str = "job"

    def summary(self) -> dict:
        return {k: getattr(self, k) for k in JOB_COLUMNS}


@dataclass
class StepRecord:
    """One step of a job graph as stored; a device step's progress is its job's."""

    graph_id: int
    idx: int
    kind: str
    label: str
    device: str
    job_id: int | None
    mode: str
    transfer_s: float
    state: str
    reason: str


@contextmanager
def _transaction(db: sqlite3.Connection):
    """One transaction: committed when the block ends, rolled back when it raises.

    ``with db:`` is not that on these connections: in autocommit mode
    (isolation_level=None) it opens no transaction, so every statement commits alone.
    IMMEDIATE takes the write lock at once (waiting out the planner thread's writes)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


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
        self._migrate()
        self.db.executescript(SCHEMA)
        self._audit_rows: list[tuple] = []

    def _migrate(self) -> None:
        for (table, column), statement in MIGRATIONS.items():
            columns = [row[1] for row in self.db.execute(f"PRAGMA table_info({table})")]
            if columns and column not in columns:
                self.db.execute(statement)

    def close(self) -> None:
        self.flush_audit()
        self.db.close()

    def add_job(self, name: str, device: str, n_ops: int, state: str, reason: str = "") -> int:
        with _transaction(self.db):
            return self._add_job(name, device, n_ops, state, reason)

    def _add_job(self, name: str, device: str, n_ops: int, state: str, reason: str = "", kind: str = "job") -> int:
        now = time.time()
        cur = self.db.execute(
            "INSERT INTO jobs (name, device, state, reason, created, updated, n_ops, kind) VALUES (?,?,?,?,?,?,?,?)",
            (name, device, state, reason, now, now, n_ops, kind),
        )
        self._event(cur.lastrowid, "created", {"state": state, "reason": reason, "n_ops": n_ops})
        return cur.lastrowid

    def add_graph(self, name: str, state: str, steps: list[dict]) -> int:
        """Insert a graph, its steps and a queued job per device step in one transaction.

        ``steps``: dicts of StepRecord fields (without graph_id, idx, job_id).
        """
        with _transaction(self.db):
            graph_id = self._add_job(name, "", 0, state, kind="graph")
            for idx, step in enumerate(steps):
                job_id = self._add_job(step["label"], step["device"], 0, "queued") if step["kind"] == "device" else None
                self.db.execute(
                    "INSERT INTO graph_steps (graph_id, idx, kind, label, device, job_id, mode, transfer_s) VALUES (?,?,?,?,?,?,?,?)",
                    (graph_id, idx, step["kind"], step["label"], step["device"], job_id, step.get("mode", ""), step.get("transfer_s", 0.0)),
                )
        return graph_id

    def steps(self, graph_id: int) -> list[StepRecord]:
        rows = self.db.execute(f"SELECT {', '.join(STEP_COLUMNS)} FROM graph_steps WHERE graph_id=? ORDER BY idx", (graph_id,))
        return [StepRecord(*row) for row in rows]

    def set_step(self, graph_id: int, idx: int, state: str, reason: str = "") -> None:
        """A hand-off step's state; the graph's event log records the change."""
        with _transaction(self.db):
            self.db.execute("UPDATE graph_steps SET state=?, reason=? WHERE graph_id=? AND idx=?", (state, reason, graph_id, idx))
            self._event(graph_id, f"step.{state}", {"index": idx, "reason": reason})

    def set_state(self, job_id: int, state: str, reason: str = "", **fields) -> None:
        sets = ", ".join(f"{k}=?" for k in fields)
        with _transaction(self.db):
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
        with _transaction(self.db):
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
            with _transaction(self.db):
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
            with _transaction(db):
                db.execute("INSERT OR REPLACE INTO job_sources (job_id, source) VALUES (?, ?)", (job_id, source))
        finally:
            db.close()

    def jobs(self, kind: str = "job") -> list[JobRecord]:
        rows = self.db.execute(f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs WHERE kind=? ORDER BY id", (kind,))
        return [JobRecord(*row) for row in rows]

    def events(self, job_id: int) -> list[dict]:
        rows = self.db.execute("SELECT ts, kind, detail FROM job_events WHERE job_id=? ORDER BY seq", (job_id,))
        return [{"ts": ts, "kind": kind, **json.loads(detail)} for ts, kind, detail in rows]
