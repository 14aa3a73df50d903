"""The supervisor through its real sockets and the real CLI: validation, persistence, audit."""

import subprocess
import sys

from conftest import REPO, wait_for


def ismctl(cell, *args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "ismctl", *args, "--config", str(cell.config_path), "--state-dir", str(cell.state_dir)],
        capture_output=True, text=True, cwd=REPO, timeout=timeout,
    )


def test_malformed_gcode_fails_the_job_naming_the_line(make_cell, tmp_path):
    cell = make_cell().start()
    bad = tmp_path / "bad.gcode"
    bad.write_text("G28\nG1 X10 Y10 F3000\n; fine so far\nG1 X1.2.3 Y4\nG1 X5\n")
    out = ismctl(cell, "submit", str(bad))
    assert out.returncode == 1
    assert "line 4" in out.stderr and "X1.2.3" in out.stderr, out.stderr
    jobs = cell.call("jobs")["jobs"]
    assert [(j["state"], j["confirmed_op"]) for j in jobs] == [("failed", -1)]
    assert "line 4" in jobs[0]["reason"]


def test_jobs_survive_a_supervisor_restart(make_cell, tmp_path):
    cell = make_cell(speed=1).start()
    part = tmp_path / "slow.gcode"
    part.write_text("G28\nG4 S600\nG1 X10\n")
    assert ismctl(cell, "submit", str(part)).returncode == 0
    first = cell.call("jobs")["jobs"]
    cell.kill_serve()
    cell.start()
    again = cell.call("jobs")["jobs"]
    assert [j["id"] for j in again] == [j["id"] for j in first]
    listing = ismctl(cell, "jobs")
    assert listing.returncode == 0 and "slow.gcode" in listing.stdout


def test_unreachable_supervisor_is_a_clear_error(tmp_path):
    from conftest import Cell

    cell = Cell(tmp_path)
    out = ismctl(cell, "status", "--timeout", "0.5")
    assert out.returncode == 3 and "is `ismctl serve" in out.stderr


def test_bad_config_names_the_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[cell]\nname = "x"\n[devices.p]\nclass = "lathe"\nport = "sim"\n')
    out = subprocess.run([sys.executable, "-m", "ismctl", "status", "--config", str(cfg)], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2 and "devices.p.class" in out.stderr


def test_commands_are_audited_and_counted(make_cell):
    cell = make_cell().start()
    cell.call("ping")
    status = cell.call("status")
    assert status["counters"]["commands.ok"] >= 1
    import sqlite3

    db = sqlite3.connect(cell.state_dir / "ismctl.db")
    # the reply goes out first, the audit row within the same loop turn: it may land just after the reply
    wait_for(lambda: ("ping", "ok") in db.execute("SELECT type, result FROM audit").fetchall(), 5, "the audit row")


def test_planning_a_long_file_does_not_stall_heartbeats_or_estop(make_cell):
    """Planning runs off the supervisor's loop: during it, drivers stay connected and an e-stop goes through."""
    import threading
    import time

    cell = make_cell().start()
    cell.wait_idle()
    text = "G21\nG90\nM83\n" + "".join(f"G1 X{10 + i % 100 * 0.1:.1f} Y{10 + i // 100 % 100 * 0.1:.1f} E0.01 F6000\n" for i in range(600_000))
    from ismctl.client import CellClient

    submitter = CellClient(cell.config, timeout_s=300)
    replies = []
    thread = threading.Thread(target=lambda: replies.append(submitter.call("submit", name="long", gcode=text)))
    thread.start()
    time.sleep(0.5)
    assert cell.call("job", job=1)["job"]["state"] == "planning"  # answered while planning
    events = cell.client.events(("estop.confirmed",))
    time.sleep(0.1)
    cell.call("estop")
    assert events.next(timeout_s=5) is not None
    planning_seen = cell.call("job", job=1)["job"]["state"]
    thread.join(120)
    assert replies and replies[0]["n_ops"] == 600_003
    assert "is lost" not in cell.log_tail(200)  # no driver missed its heartbeats
    assert planning_seen in ("planning", "ready")
