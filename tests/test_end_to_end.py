"""The whole chain with real processes: serve -> ZeroMQ -> driver -> pty -> simulator.

Each test ends by comparing the simulator's executed-command log with the
program: nothing lost, nothing doubled.
"""

import json
import os
import signal

import numpy as np

from conftest import DEMO_PART, wait_for

from drivers.marlin import is_host_command
from ismctl.client import CommandFailed
from ismctl.execlog import compare_exec_log
from ismctl.gcode import parse

PROGRAM = parse(DEMO_PART.read_text()).commands


def assert_exact(cell):
    mismatch = compare_exec_log(PROGRAM, cell.exec_log.read_text().splitlines(), is_host_command)
    assert mismatch == "", mismatch


def submit_demo(cell) -> int:
    cell.wait_idle()
    return cell.call("submit", name=DEMO_PART.name, gcode=DEMO_PART.read_text())["job"]


def event_kinds(cell, job_id):
    return [e["kind"] for e in cell.call("job", job=job_id)["events"]]


def test_demo_part_prints_exactly_through_line_noise(make_cell):
    assert len(PROGRAM) >= 5000
    cell = make_cell(speed="max", corrupt_rate=0.002, drop_rate=0.0005, seed=11).start()
    job = submit_demo(cell)
    done = cell.wait_job(job, ("completed", "failed", "cancelled"))
    assert done["state"] == "completed", cell.log_tail()
    assert done["confirmed_op"] == len(PROGRAM) - 1
    assert_exact(cell)
    assert "resend" in event_kinds(cell, job)  # the noise really was there, and was repaired


def test_driver_killed_mid_job_resumes_exactly(make_cell):
    cell = make_cell(speed=60, corrupt_rate=0.002, seed=3).start()
    job = submit_demo(cell)
    wait_for(lambda: cell.job(job)["confirmed_op"] > 2500, 60, "the job to pass op 2500")
    old = cell.driver_pid()
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: cell.job(job)["paused_by"] == "driver-lost" or cell.job(job)["state"] == "paused", 10, "the job to pause")
    done = cell.wait_job(job, ("completed", "failed", "cancelled"))
    assert done["state"] == "completed", cell.log_tail()
    assert cell.driver_pid() != old
    kinds = event_kinds(cell, job)
    assert "paused" in kinds and kinds.count("running") == 2
    assert_exact(cell)


def test_supervisor_killed_mid_job_is_interrupted_then_resumes_exactly(make_cell):
    cell = make_cell(speed=60, seed=5).start()
    job = submit_demo(cell)
    wait_for(lambda: cell.job(job)["confirmed_op"] > 2500, 60, "the job to pass op 2500")
    cell.kill_serve(signal.SIGKILL)
    cell.start()
    assert cell.job(job)["state"] == "interrupted"
    cell.wait_idle()
    cell.call("resume", job=job)
    done = cell.wait_job(job, ("completed", "failed", "cancelled"))
    assert done["state"] == "completed", cell.log_tail()
    assert_exact(cell)


def test_estop_halts_latches_and_reset_recovers(make_cell):
    cell = make_cell(speed=20).start()
    job = submit_demo(cell)
    wait_for(lambda: cell.job(job)["confirmed_op"] > 50, 60, "the job to run")
    events = cell.client.events(("estop.confirmed",))
    import time

    time.sleep(0.1)
    assert cell.call("estop")["devices"] == ["printer"]
    confirmed = events.next(timeout_s=5)
    assert confirmed is not None and confirmed[1]["devices"] == ["printer"]
    status = cell.call("status")
    assert status["state"] == "estopped" and status["devices"]["printer"]["state"] == "estop"
    assert cell.job(job)["state"] == "interrupted"
    assert "M112" in cell.exec_log.read_text().splitlines()
    # latched: nothing new starts until reset
    from ismctl.client import CommandFailed

    for command, body in (("submit", {"name": "x", "gcode": "G28\n"}), ("resume", {"job": job})):
        try:
            cell.call(command, **body)
            raise AssertionError(f"{command} was accepted while e-stopped")
        except CommandFailed as exc:
            assert exc.result == "busy"
    cell.client.timeout_s = 40
    assert cell.call("reset")["state"] == "ready"
    cell.wait_idle()
    # the reset printer takes a new job
    small = cell.call("submit", name="after-reset", gcode="G28\nG1 X10 Y10 F3000\n")["job"]
    assert cell.wait_job(small, ("completed", "failed"))["state"] == "completed"


def test_clean_shutdown_pauses_jobs_heaters_off_and_stops_children(make_cell):
    cell = make_cell(speed=20).start()
    job = submit_demo(cell)
    wait_for(lambda: cell.job(job)["confirmed_op"] > 200, 60, "the job to run")
    cell.kill_serve(signal.SIGTERM)
    assert cell.serve.returncode == 0
    assert not list(cell.state_dir.glob("*.pid.json")), "simulators were not stopped"
    assert cell.child_pids(str(cell.state_dir)) == []
    tail = cell.exec_log.read_text().splitlines()[-4:]
    assert "M104 S0" in tail and "M140 S0" in tail
    cell.start()
    assert cell.job(job)["state"] == "interrupted"


def test_program_longer_than_one_message_chunk_prints_exactly(make_cell):
    from ismctl.supervisor.core import CHUNK_OPS

    lines = ["G21", "G90", "M83"] + [f"G1 X{10 + i % 100 * 0.1:.1f} Y{10 + i // 100 % 100 * 0.1:.1f} E0.01 F6000" for i in range(CHUNK_OPS + 20_000)]
    text = "\n".join(lines) + "\n"
    cell = make_cell(speed="max").start()
    cell.wait_idle()
    job = cell.call("submit", name="long", gcode=text)["job"]
    done = cell.wait_job(job, ("completed", "failed", "cancelled"), timeout_s=300)
    assert done["state"] == "completed", cell.log_tail()
    mismatch = compare_exec_log(parse(text).commands, cell.exec_log.read_text().splitlines(), is_host_command)
    assert mismatch == "", mismatch


def test_firmware_reset_mid_job_interrupts_for_an_operator_then_resumes_exactly(make_cell):
    """A power-cycled printer has lost its heaters, position and queue: the cell must not carry on by itself."""
    import json

    cell = make_cell(speed=60, seed=9).start()
    job = submit_demo(cell)
    wait_for(lambda: cell.job(job)["confirmed_op"] > 2500, 60, "the job to pass op 2500")
    sim_pid = json.loads((cell.state_dir / "sim-printer.pid.json").read_text())["pid"]
    os.kill(sim_pid, signal.SIGKILL)
    interrupted = cell.wait_job(job, ("interrupted", "completed", "failed"), timeout_s=60)
    assert interrupted["state"] == "interrupted", cell.log_tail()
    assert "firmware was reset" in interrupted["reason"]
    cell.wait_idle()
    cell.call("resume", job=job)
    done = cell.wait_job(job, ("completed", "failed", "cancelled", "interrupted"))
    assert done["state"] == "completed", cell.log_tail()
    # Nothing is lost.  A command the dead firmware executed but never acknowledged
    # cannot be known to the host, so up to one window of ops may run twice, no more.
    # (Program lines that look like host commands, Cura's M105, are set aside on both sides.)
    executed = [line for line in cell.exec_log.read_text().splitlines() if not is_host_command(line)]
    program = [c for c in PROGRAM if not is_host_command(c)]
    resumed_at = sum(1 for c in PROGRAM[: interrupted["confirmed_op"] + 1] if not is_host_command(c))
    repeated = len(executed) - len(program)
    assert 0 <= repeated <= 4
    assert executed[: resumed_at + repeated] == program[: resumed_at + repeated]
    assert executed[resumed_at + repeated :] == program[resumed_at:]


def test_driver_holds_when_its_supervisor_goes_silent_then_resumes_exactly(make_cell):
    """Heartbeats the other way: a frozen supervisor makes the driver stop feeding the firmware."""
    import time

    cell = make_cell(speed=60, seed=13).start()
    job = submit_demo(cell)
    wait_for(lambda: cell.job(job)["confirmed_op"] > 2500, 60, "the job to pass op 2500")
    size_before = cell.exec_log.stat().st_size
    cell.serve.send_signal(signal.SIGSTOP)
    try:
        time.sleep(3.0)  # 15 heartbeat intervals: the driver has given up on its supervisor
        held = cell.exec_log.stat().st_size
        time.sleep(1.0)
        assert cell.exec_log.stat().st_size == held > size_before  # holding: nothing more is fed
    finally:
        cell.serve.send_signal(signal.SIGCONT)
    done = cell.wait_job(job, ("completed", "failed", "cancelled", "interrupted"))
    assert done["state"] == "completed", cell.log_tail()
    assert "paused" in event_kinds(cell, job)
    assert_exact(cell)


def test_device_shows_heating_while_the_firmware_waits_for_temperature(make_cell):
    cell = make_cell(speed=20).start()
    cell.wait_idle()
    job = cell.call("submit", name="heat", gcode="M104 S200\nM109 S200\nG28\nG1 X10 Y10 F3000\nM104 S0\n")["job"]
    wait_for(lambda: cell.device_state() == "heating", 30, "the printer to show heating")
    assert cell.job(job)["state"] == "running"
    assert cell.wait_job(job, ("completed", "failed"))["state"] == "completed"
    assert cell.device_state() == "idle"


def test_commands_real_slicers_emit_run_through_the_cell(make_cell):
    """PrusaSlicer/Cura start, layer and end code: accepted, streamed, executed as written."""
    from pathlib import Path

    text = (Path(__file__).parent / "data" / "slicer-commands.gcode").read_text()
    program = parse(text).commands
    cell = make_cell(speed="max").start()
    cell.wait_idle()
    job = cell.call("submit", name="slicer", gcode=text)["job"]
    assert cell.wait_job(job, ("completed", "failed"))["state"] == "completed", cell.log_tail()
    assert compare_exec_log(program, cell.exec_log.read_text().splitlines(), is_host_command) == ""


def test_mesh_submitted_to_the_cell_is_sliced_and_prints_exactly(make_cell, tmp_path):
    """`ismctl submit part.stl`: the cell slices with its profile, stores the G-code, prints it to completed."""
    import subprocess
    import sys

    import trimesh

    from ismctl.plan import fdm
    from ismctl.plan.fdm_settings import SliceSettings

    stl = tmp_path / "tube.stl"
    trimesh.creation.annulus(r_min=4.0, r_max=7.0, height=2.0, sections=48).export(stl)
    cell = make_cell(speed="max", corrupt_rate=0.002, seed=5).start()
    cell.wait_idle()
    done = subprocess.run([sys.executable, "-m", "ismctl", "submit", str(stl), "--config", str(cell.config_path),
                           "--state-dir", str(cell.state_dir), "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)["job"]
    assert cell.wait_job(job, ("completed", "failed"), timeout_s=300)["state"] == "completed", cell.log_tail()
    expected = fdm.slice_file(stl, SliceSettings()).program  # the cell's profile is the built-in one
    assert compare_exec_log(expected.commands, cell.exec_log.read_text().splitlines(), is_host_command) == ""


def test_a_broken_mesh_fails_its_job_with_the_reason(make_cell):
    cell = make_cell(speed="max").start()
    reply_error = None
    try:
        cell.client.call("submit_mesh", arrays=[np.frombuffer(b"solid x\nfacet oops\n", np.uint8)], name="bad.stl")
    except CommandFailed as exc:
        reply_error = exc.reply.body
    assert reply_error is not None and reply_error["result"] == "validation_error"
    assert "bad.stl" in reply_error["error"]
    assert cell.job(reply_error["job"])["state"] == "failed"
