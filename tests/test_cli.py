"""The operator's commands as a person runs them: real `ismctl` subprocesses against a real cell."""

import math
import subprocess
import sys
import time

from conftest import DEMO_PART, REPO, wait_for
from test_supervisor import ismctl


def test_demo_command_passes_end_to_end(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ismctl", "demo", "--state-dir", str(tmp_path / "demo")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "executed all 7513 program lines exactly once" in out.stdout
    assert "job 1 completed" in out.stdout


def test_help_teaches_every_command():
    out = subprocess.run([sys.executable, "-m", "ismctl", "--help"], capture_output=True, text=True, cwd=REPO)
    for command in ("serve", "demo", "submit", "status", "jobs", "watch", "pause", "resume", "cancel", "estop", "reset"):
        assert command in out.stdout
    assert "examples:" in out.stdout


def test_pause_resume_cancel_and_watch(make_cell, tmp_path):
    cell = make_cell(speed=30).start()
    cell.wait_idle()
    out = ismctl(cell, "submit", str(DEMO_PART))
    assert out.returncode == 0 and "job 1 queued on printer: 7513 ops" in out.stdout
    wait_for(lambda: cell.job(1)["confirmed_op"] > 100, 60, "the job to run")
    first, t0 = cell.job(1)["confirmed_op"], time.monotonic()
    time.sleep(0.5)
    rate = (cell.job(1)["confirmed_op"] - first) / (time.monotonic() - t0)  # ops the printer confirms per second
    assert ismctl(cell, "pause").returncode == 0
    assert cell.job(1)["state"] == "paused" and cell.call("status")["state"] == "paused"
    held = cell.job(1)["confirmed_op"]
    seen = [held]

    def settled():
        seen.append(cell.job(1)["confirmed_op"])
        return len(seen) > 5 and seen[-1] == seen[-6]  # unchanged for half a second

    wait_for(settled, 10, "the paused job to settle", interval_s=0.1)
    # After the pause the driver's window (4 lines in flight) is confirmed, and `held` lags the driver by
    # what it had confirmed but not yet reported: it reports progress at most every 50 ms
    # (MarlinStreamer.progress_interval), and reports on the wire land after the pause's reply.  So: the
    # window, two report intervals at the rate just measured, and two for the wire.
    assert seen[-1] <= held + 4 + math.ceil(rate * 2 * 0.05) + 2
    time.sleep(1.0)
    assert cell.job(1)["confirmed_op"] == seen[-1]  # nothing more runs while paused
    assert ismctl(cell, "resume", "1").returncode == 0
    wait_for(lambda: cell.job(1)["confirmed_op"] > held + 50, 30, "the job to move again")
    status = ismctl(cell, "status")
    assert "printer" in status.stdout and "running" in status.stdout and "hotend" in status.stdout
    watch = subprocess.Popen([sys.executable, "-m", "ismctl", "watch", "1", "--config", str(cell.config_path), "--state-dir", str(cell.state_dir)],
                             stdout=subprocess.PIPE, text=True, cwd=REPO)
    time.sleep(3)
    cancel = ismctl(cell, "cancel", "1")
    assert cancel.returncode == 0
    shown, _ = watch.communicate(timeout=30)
    assert watch.returncode == 1  # the watched job did not complete
    assert "job 1 [" in shown and "layer" in shown and "XYZ" in shown and "job 1 cancelled" in shown
    assert ismctl(cell, "cancel", "1").returncode == 1  # already ended: refused, with a reason
    job = ismctl(cell, "job", "1")
    assert "cancelled" in job.stdout and "paused" in job.stdout
