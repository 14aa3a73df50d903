"""grbl's alarms, holds and resets through the whole cell: a real supervisor, the mill
driver process and the grbl simulator on a pty.  The states each case leads to are
the ones docs/mill-driver.md documents."""

from __future__ import annotations

import json
import os
import signal
import time

from conftest import wait_for

UNLOCK = "'$H'|'$X' to unlock"


def settings_file(tmp_path, **values) -> str:
    """The simulator's EEPROM with some ``$N`` settings (``s20=1`` is ``$20=1``)."""
    path = tmp_path / "grbl-eeprom.json"
    path.write_text(json.dumps({"settings": {key[1:]: value for key, value in values.items()}}))
    return str(path)


def start_mill_cell(make_cell, **kwargs):
    cell = make_cell(mill=True, printer=False, **kwargs).start()
    wait_for(lambda: cell.device_state("mill") == "idle", 30, "the mill to be idle")
    return cell


def mill(cell) -> dict:
    return cell.call("status")["devices"]["mill"]


def submit(cell, lines: list[str], name="mill-job.nc") -> int:
    reply = cell.call("submit", name=name, gcode="\n".join(lines) + "\n", device="mill")
    assert reply["result"] == "ok", reply
    return reply["job"]


def sim_pid(cell) -> int:
    return json.loads((cell.state_dir / "sim-mill.pid.json").read_text())["pid"]


def long_cut(n=30) -> list[str]:
    """A cut long enough to be caught moving: 3 mm moves, about 1.1 s each (virtual) at grbl's
    default 10 mm/s² acceleration."""
    return ["G21 G90", "M3 S9000", *[f"G1 X-{10 + (i % 2) * 3} Y-{i + 1} F1200" for i in range(n)], "M5"]


def cut_in_progress(make_cell):
    """A mill-only cell (simulated at 10x) caught in the middle of ``long_cut``: (cell, program, job id)."""
    cell = start_mill_cell(make_cell, mill_speed=10)
    program = long_cut()
    job_id = submit(cell, program)
    wait_for(lambda: mill(cell).get("firmware_state") == "Run", 20, "the mill to be running")
    return cell, program, job_id


def test_locked_at_power_up_then_home_then_soft_limit_alarm_then_reset_and_unlock(make_cell, tmp_path):
    cell = start_mill_cell(make_cell, mill_sim_args=("--settings", settings_file(tmp_path, s20=1, s22=1)))
    assert UNLOCK in mill(cell)["reason"] and mill(cell)["firmware_state"] == "Alarm"

    refused = cell.wait_job(submit(cell, ["G0 X-5"]), ("failed", "completed"))
    assert refused["state"] == "failed" and "the mill is locked" in refused["reason"] and UNLOCK in refused["reason"]
    assert not cell.mill_exec_log.exists() or cell.mill_exec_log.read_text() == ""

    homed = cell.wait_job(submit(cell, ["$H"], name="home"), ("failed", "completed"))
    assert homed["state"] == "completed"
    wait_for(lambda: mill(cell)["reason"] == "" and mill(cell)["firmware_state"] == "Idle", 10, "the lock to clear")
    assert mill(cell)["mpos"] == [-1.0, -1.0, -1.0]  # grbl's pull-off from the switches

    job = cell.wait_job(submit(cell, ["G0 X-5", "G0 X5", "G0 X-7"]), ("failed", "completed"))
    assert job["state"] == "failed"
    assert "ALARM:2 (Soft limit: Soft limit alarm. G-code motion target exceeds machine travel. Machine position retained." in job["reason"]
    assert cell.device_state("mill") == "fault" and cell.call("status")["state"] == "faulted"
    assert cell.mill_exec_log.read_text().splitlines() == ["G0 X-5"]  # the target outside travel never ran

    assert cell.call("reset")["result"] == "ok"
    wait_for(lambda: cell.device_state("mill") == "idle", 30, "the mill to reconnect")
    assert UNLOCK in mill(cell)["reason"]  # power-cycled with homing enabled: locked again
    assert cell.wait_job(submit(cell, ["$X"], name="unlock"), ("failed", "completed"))["state"] == "completed"
    wait_for(lambda: mill(cell)["reason"] == "", 10, "the unlock to clear the reason")


def test_hard_limit_alarm_faults_the_mill_and_fails_the_job(make_cell, tmp_path):
    cell = start_mill_cell(make_cell, mill_sim_args=("--settings", settings_file(tmp_path, s21=1)))
    job = cell.wait_job(submit(cell, ["G21 G90", "G1 X-150 F3000", "G0 X-1"]), ("failed", "completed"))
    assert job["state"] == "failed"
    assert "ALARM:1 (Hard limit: Hard limit has been triggered. Machine position is likely lost" in job["reason"]
    assert cell.device_state("mill") == "fault" and "Re-homing is highly recommended" in mill(cell)["reason"]


def test_feed_hold_during_a_cut_then_resume_completes_exactly(make_cell):
    cell, program, job_id = cut_in_progress(make_cell)
    assert cell.call("pause", job=job_id)["result"] == "ok"
    wait_for(lambda: cell.job(job_id)["state"] == "paused" and cell.device_state("mill") == "paused", 10, "the job to pause")
    wait_for(lambda: mill(cell)["firmware_state"] == "Hold:0", 10, "grbl's hold to complete")
    held = mill(cell)["mpos"]
    time.sleep(0.6)  # a few status polls
    assert mill(cell)["mpos"] == held and mill(cell)["firmware_state"] == "Hold:0"
    assert cell.call("resume", job=job_id)["result"] == "ok"
    job = cell.wait_job(job_id, ("completed", "failed"), 60)
    assert job["state"] == "completed" and job["confirmed_op"] == len(program) - 1
    assert cell.mill_exec_log.read_text().splitlines() == program  # every block once, none lost to the hold
    assert cell.device_state("mill") == "idle"


def test_reset_while_moving_is_alarm_3(make_cell):
    cell, _, job_id = cut_in_progress(make_cell)
    os.kill(sim_pid(cell), signal.SIGUSR1)  # the simulator's reset button: as 0x18
    job = cell.wait_job(job_id, ("failed", "completed"), 20)
    assert job["state"] == "failed"
    assert "ALARM:3 (Abort during cycle: Reset while in motion. Machine position is likely lost" in job["reason"]
    assert cell.device_state("mill") == "fault"
    assert cell.call("reset")["result"] == "ok"
    wait_for(lambda: cell.device_state("mill") == "idle", 30, "the mill to reconnect")


def test_cancel_during_a_cut_holds_flushes_and_unlocks(make_cell):
    cell, program, job_id = cut_in_progress(make_cell)
    assert cell.call("cancel", job=job_id)["result"] == "ok"
    job = cell.wait_job(job_id, ("cancelled", "failed", "completed"), 20)
    assert job["state"] == "cancelled"
    wait_for(lambda: cell.device_state("mill") == "idle", 10, "the mill to be idle")
    ran = cell.mill_exec_log.read_text().splitlines()
    assert ran == program[:len(ran)] and len(ran) < len(program)
    time.sleep(0.5)
    assert mill(cell)["reason"] == "" and mill(cell)["firmware_state"] == "Idle"  # stopped under control: unlocked
    assert cell.wait_job(submit(cell, ["G0 X-2"]), ("completed", "failed"))["state"] == "completed"


def test_estop_while_moving_stops_at_once_and_interrupts_the_job(make_cell):
    cell, _, job_id = cut_in_progress(make_cell)
    assert cell.call("estop")["result"] == "ok"
    wait_for(lambda: cell.device_state("mill") == "estop", 10, "the mill's e-stop")
    assert cell.job(job_id)["state"] == "interrupted"
    assert "ALARM:3" in mill(cell)["reason"]
    assert cell.call("reset")["result"] == "ok"
    wait_for(lambda: cell.device_state("mill") == "idle", 30, "the mill to reconnect")


def test_cancelling_a_jog_stops_it_without_a_reset(make_cell, tmp_path):
    stats = tmp_path / "mill-stats.json"
    cell = start_mill_cell(make_cell, mill_speed=4, mill_sim_args=("--stats", str(stats)))
    job_id = submit(cell, ["$J=G91 G21 X-100 F300"], name="jog")
    wait_for(lambda: mill(cell).get("firmware_state") == "Jog", 20, "the mill to jog")
    assert cell.call("cancel", job=job_id)["result"] == "ok"
    assert cell.wait_job(job_id, ("cancelled", "failed", "completed"), 20)["state"] == "cancelled"
    wait_for(lambda: mill(cell)["firmware_state"] == "Idle", 10, "the jog to stop")
    assert -100 < mill(cell)["mpos"][0] < 0 and mill(cell)["reason"] == ""  # stopped short, never locked
    cell.stop()  # a clean shutdown: the simulator writes its counters
    counters = json.loads(stats.read_text())["counters"]
    assert counters["alarms"] == 0 and counters["resets"] == 1  # only the driver's reset on connecting
