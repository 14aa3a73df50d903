"""State machines: allowed transitions, refusals with reasons, the e-stop latch."""

import pytest

from ismctl.machines import CELL, DEVICE, JOB, Refused, StateModel, mermaid


def test_estop_latches_until_reset_and_interlock_gives_reason():
    cell = StateModel(CELL)
    cell.trigger_or_refuse("online")
    cell.trigger_or_refuse("job_started")
    unsafe = ["printer is estop"]
    cell.interlock("reset", lambda: unsafe[0] if unsafe else "")
    cell.trigger_or_refuse("estop")
    for trigger in ("job_started", "resume", "idle", "online"):
        with pytest.raises(Refused):
            cell.trigger_or_refuse(trigger)
    with pytest.raises(Refused, match="printer is estop"):
        cell.trigger_or_refuse("reset")
    assert cell.state == "estopped"
    unsafe.clear()
    cell.trigger_or_refuse("reset")
    assert cell.state == "ready"


def test_job_lifecycle_and_terminal_states():
    job = StateModel(JOB)
    for trigger in ("plan", "planned", "start", "pause", "interrupt", "requeue", "start", "complete"):
        job.trigger_or_refuse(trigger)
    assert job.state == "completed"
    with pytest.raises(Refused, match="cannot cancel while completed"):
        job.trigger_or_refuse("cancel")


def test_device_estop_from_anywhere_and_force():
    dev = StateModel(DEVICE)
    dev.trigger_or_refuse("estop")
    assert dev.state == "estop"
    with pytest.raises(Refused):
        dev.trigger_or_refuse("run")
    with pytest.raises(Refused, match="unknown device state"):
        dev.force("flying")


def test_diagrams_cover_every_state():
    for table in (CELL, DEVICE, JOB):
        text = mermaid(table)
        for state in table.states:
            assert state in text
