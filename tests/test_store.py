"""The supervisor's SQLite store: what it promises to write together is written together."""

from __future__ import annotations

import sqlite3

import pytest

from ismctl.supervisor.store import Store


def test_a_graph_that_cannot_be_stored_whole_leaves_no_rows(tmp_path):
    store = Store(tmp_path / "cell.db")
    steps = [
        {"kind": "device", "label": "part.gcode", "device": "printer"},
        {"kind": "handoff", "label": None, "device": ""},  # NOT NULL label: the second step's insert fails
    ]
    with pytest.raises(sqlite3.IntegrityError, match="graph_steps.label"):
        store.add_graph("hybrid", "planning", steps)
    assert store.jobs(kind="graph") == []
    assert store.jobs() == []  # nor the queued job of the first step
    assert store.db.execute("SELECT COUNT(*) FROM graph_steps").fetchone()[0] == 0
    assert store.db.execute("SELECT COUNT(*) FROM job_events").fetchone()[0] == 0
    assert not store.db.in_transaction


def test_a_graph_is_stored_with_its_steps_and_their_jobs(tmp_path):
    store = Store(tmp_path / "cell.db")
    steps = [
        {"kind": "device", "label": "part.gcode", "device": "printer"},
        {"kind": "handoff", "label": "hand-off", "device": "", "mode": "auto", "transfer_s": 2.0},
        {"kind": "device", "label": "part.nc", "device": "mill"},
    ]
    graph_id = store.add_graph("hybrid", "planning", steps)
    reopened = Store(tmp_path / "cell.db")  # what another connection sees: committed
    stored = reopened.steps(graph_id)
    assert [(s.kind, s.label, s.device, s.mode, s.transfer_s) for s in stored] == [
        ("device", "part.gcode", "printer", "", 0.0),
        ("handoff", "hand-off", "", "auto", 2.0),
        ("device", "part.nc", "mill", "", 0.0),
    ]
    assert [r.name for r in reopened.jobs()] == ["part.gcode", "part.nc"]
    assert [r.id for r in reopened.jobs()] == [stored[0].job_id, stored[2].job_id]
    assert stored[1].job_id is None
