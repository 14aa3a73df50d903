"""Job graphs through a real cell: steps in order across hand-offs, confirm, failure, e-stop, restart.

Until a test names the mill, the graphs run both device steps on the one
printer (print, hand-off: turn the part over, print again): what is checked is
the order and the hand-off, which do not depend on the device class.
"""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO, wait_for
from test_supervisor import ismctl

from drivers.marlin import is_host_command
from ismctl.client import CommandFailed
from ismctl.gcode import parse
from ismctl.supervisor.graphs import GraphError, read_steps

FIRST = "G28\nG1 X10 Y10 F3000\nG1 X12 Y10 F3000\n"
SECOND = "G1 X20 Y20 F3000\nG1 X22 Y20 F3000\n"
TERMINAL = ("completed", "failed", "cancelled")


def executed(cell) -> list[str]:
    return [line for line in cell.exec_log.read_text().splitlines() if not is_host_command(line)]


def commands(text: str) -> list[str]:
    return [c for c in parse(text).commands if not is_host_command(c)]


def job_file(tmp_path, steps: str, name="job.toml") -> str:
    (tmp_path / "first.gcode").write_text(FIRST)
    (tmp_path / "second.gcode").write_text(SECOND)
    path = tmp_path / name
    path.write_text(steps)
    return str(path)


def submit_graph(cell, *steps, name="graph") -> dict:
    return cell.call("submit_graph", name=name, steps=list(steps))


def refused(cell, t: str, **body) -> dict:
    with pytest.raises(CommandFailed) as info:
        cell.call(t, **body)
    return info.value.reply.body


def test_print_operator_handoff_print_runs_in_order_and_confirm_releases_it(make_cell, tmp_path):
    cell = make_cell().start()
    cell.wait_idle()
    path = job_file(tmp_path, '[[steps]]\nfile = "first.gcode"\n[[steps]]\nhandoff = "operator"\n[[steps]]\nfile = "second.gcode"\n')
    out = ismctl(cell, "submit", path, "--json")
    assert out.returncode == 0, out.stderr
    import json

    reply = json.loads(out.stdout)
    graph, first_job, second_job = reply["job"], reply["steps"][0]["job"], reply["steps"][2]["job"]
    waiting = cell.wait_job(graph, ("waiting",) + TERMINAL)
    assert waiting["state"] == "waiting"
    assert waiting["reason"] == "waiting for operator: move the part from printer to printer"
    assert [s["state"] for s in waiting["steps"]] == ["completed", "waiting", "held"]
    assert cell.job(second_job)["state"] == "held"
    assert executed(cell) == commands(FIRST)  # the second step has not started
    status = ismctl(cell, "status")
    assert "waiting for operator: move the part" in status.stdout, status.stdout
    shown = ismctl(cell, "job", str(graph))
    assert "100%" in shown.stdout and "held" in shown.stdout and "step 2/3" in shown.stdout, shown.stdout

    plain = cell.call("submit", name="plain.gcode", gcode="G28\n")["job"]
    cell.wait_job(plain, TERMINAL)
    assert "not part of a job graph" in refused(cell, "confirm", job=plain)["error"]
    assert cell.job(second_job)["state"] == "held"  # the plain job ran on the printer; the graph still waits

    confirm = ismctl(cell, "confirm", str(graph))
    assert confirm.returncode == 0, confirm.stderr
    done = cell.wait_job(graph, TERMINAL)
    assert done["state"] == "completed", cell.log_tail()
    assert [s["state"] for s in done["steps"]] == ["completed", "done", "completed"]
    assert [s.get("percent") for s in done["steps"]] == [100.0, None, 100.0]
    assert executed(cell) == commands(FIRST) + ["G28"] + commands(SECOND)
    assert cell.job(first_job)["graph"] == graph and cell.job(second_job)["step"] == 2
    again = ismctl(cell, "confirm", str(graph))
    assert again.returncode == 1 and "not waiting" in again.stderr
    listing = ismctl(cell, "jobs")
    assert "step 3/3" in listing.stdout and "- step 1: first.gcode" in listing.stdout, listing.stdout
    kinds = [e["kind"] for e in cell.call("job", job=graph)["events"]]
    assert kinds.index("step.waiting") < kinds.index("step.done") < len(kinds) - 1 and kinds[-1] == "completed"


def test_auto_handoff_transfers_then_the_next_step_runs_and_watch_follows_the_steps(make_cell, tmp_path):
    cell = make_cell().start()
    cell.wait_idle()
    path = job_file(tmp_path, '[[steps]]\nfile = "first.gcode"\n[[steps]]\nhandoff = "auto"\ntransfer_s = 2\n[[steps]]\nfile = "second.gcode"\n')
    out = ismctl(cell, "submit", path, "--watch", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    # The first step may end before the watch subscribes; the step after the transfer is seen.
    assert "job 1 is " in out.stdout and "job 1 step 3/3 (second.gcode) [" in out.stdout, out.stdout
    assert "job 1 completed" in out.stdout
    graph = cell.call("job", job=1)
    assert [s["state"] for s in graph["job"]["steps"]] == ["completed", "done", "completed"]
    events = {e["kind"]: e for e in graph["events"]}
    assert events["step.transferring"]["reason"] == "moving the part from printer to printer"
    assert events["step.done"]["reason"] == "transferred in 2 s"
    started_second = [e for e in cell.call("job", job=3)["events"] if e["kind"] == "running"][0]
    assert events["step.done"]["ts"] <= started_second["ts"]
    assert executed(cell) == commands(FIRST) + commands(SECOND)


def test_pause_resume_cancel_and_estop_of_a_running_step(make_cell):
    cell = make_cell(speed=1).start()
    cell.wait_idle()
    # 1 mm moves at 10 mm/s: a cancelled step stops within the driver's window of 4 lines
    slow = {"name": "slow.gcode", "gcode": "G1 X1 F600\n" + "G1 X2\nG1 X1\n" * 300}
    reply = submit_graph(cell, slow, {"handoff": "operator"}, {"name": "second.gcode", "gcode": SECOND})
    graph, first_job, second_job = reply["job"], reply["steps"][0]["job"], reply["steps"][2]["job"]
    wait_for(lambda: cell.job(first_job)["state"] == "running", 30, "the first step to run")
    assert cell.call("pause", job=graph)["jobs"] == [first_job]  # a graph's id names its current step
    assert cell.job(first_job)["state"] == "paused" and cell.job(graph)["state"] == "running"
    assert cell.call("resume", job=graph)["jobs"] == [first_job]
    assert cell.job(first_job)["state"] == "running"
    cell.call("cancel", job=graph)
    ended = cell.job(graph)
    assert ended["state"] == "cancelled" and ended["reason"] == "cancelled by operator"
    assert [s["state"] for s in ended["steps"]] == ["cancelled", "cancelled", "cancelled"]
    assert "cancelled" in refused(cell, "cancel", job=graph)["error"]
    cell.wait_idle()  # the driver was told: the printer stops the cancelled step

    reply = submit_graph(cell, slow, {"handoff": "operator"}, {"name": "second.gcode", "gcode": SECOND})
    graph, first_job, second_job = reply["job"], reply["steps"][0]["job"], reply["steps"][2]["job"]
    wait_for(lambda: cell.job(first_job)["state"] == "running", 30, "the first step to run")
    cell.call("cancel", job=first_job)
    ended = cell.wait_job(graph, TERMINAL, timeout_s=30)
    assert ended["state"] == "cancelled"
    assert ended["reason"] == "step 1 (slow.gcode on printer) cancelled: cancelled by operator"
    later = cell.job(second_job)
    assert later["state"] == "cancelled" and later["reason"] == f"job graph {graph} ended: {ended['reason']}"
    assert [s["state"] for s in ended["steps"]] == ["cancelled", "cancelled", "cancelled"]
    assert commands(SECOND)[0] not in executed(cell)

    # An e-stop interrupts the running step as any job; after reset, resuming the graph resumes that step.
    cell.wait_idle()
    reply = submit_graph(cell, {"name": "short.gcode", "gcode": "G1 X1 F600\n" + "G1 X2\nG1 X1\n" * 20},
                         {"handoff": "auto", "transfer_s": 0}, {"name": "third.gcode", "gcode": "G1 X30 F3000\n"})
    graph, first_job = reply["job"], reply["steps"][0]["job"]
    wait_for(lambda: cell.job(first_job)["confirmed_op"] >= 2, 30, "the first step to run")
    cell.call("estop")
    assert cell.wait_job(first_job, ("interrupted",) + TERMINAL)["state"] == "interrupted"
    assert cell.job(graph)["state"] == "running"
    cell.client.timeout_s = 40
    cell.call("reset")
    cell.client.timeout_s = 5
    cell.wait_idle()
    assert cell.call("resume", job=graph)["jobs"] == [first_job]
    done = cell.wait_job(graph, TERMINAL, timeout_s=60)
    assert done["state"] == "completed", cell.log_tail()
    assert executed(cell)[-1] == "G1 X30 F3000"


def test_a_graph_is_checked_whole_before_anything_runs(make_cell):
    """Bad messages are refused naming the step and key; a step whose file does not plan fails the graph."""
    cell = make_cell().start()
    gcode = {"name": "a.gcode", "gcode": "G28\n"}
    for steps, arrays, expected in (
        ([], [], "steps: a job graph needs at least one step"),
        ([{"handoff": "operator"}, gcode], [], "steps[0].handoff: a hand-off moves the part between two device steps"),
        ([gcode, {"handoff": "operator"}, {"handoff": "auto"}, gcode], [], "steps[1].handoff"),
        ([gcode, {"handoff": "teleport"}, gcode], [], "steps[1].handoff: must be one of"),
        ([{**gcode, "device": "lathe"}], [], "steps[0].device: unknown device 'lathe'"),
        ([{**gcode, "colour": 3}], [], "steps[0].colour: unknown key"),
        ([{"name": "a.stl", "mesh": 1}], [np.zeros(3, np.uint8)], "steps[0].mesh: must index one of the message's 1 arrays"),
        ([{"name": "a.nc", "gcode": "G0 X1\n"}], [], "steps[0].device: this cell has no mill for a.nc"),
        ([{"name": "a.stl", "mesh": 0, "cam": {"operations": ["face"]}}], [np.zeros(3, np.uint8)], "steps[0].device: this cell has no mill"),
        ([3], [], "steps[0]: must be a map"),
    ):
        with pytest.raises(CommandFailed) as info:
            cell.client.call("submit_graph", arrays=arrays, name="g", steps=steps)
        assert info.value.result == "validation_error" and expected in info.value.reply.body["error"], (steps, info.value.reply.body)
    assert cell.call("jobs")["jobs"] == []  # nothing refused was stored

    body = refused(cell, "submit_graph", name="bad", steps=[
        {"name": "first.gcode", "gcode": FIRST}, {"handoff": "auto", "transfer_s": 0}, {"name": "broken.gcode", "gcode": "G28\nG1 X1.2.3\n"}])
    assert body["result"] == "validation_error" and body["step"] == 2 and body["line"] == 2
    assert "step 3 (broken.gcode on printer) failed" in body["error"] and "X1.2.3" in body["error"]
    graph = cell.job(body["job"])
    assert graph["state"] == "failed"
    assert [s["state"] for s in graph["steps"]] == ["cancelled", "cancelled", "failed"]
    time.sleep(0.5)
    assert not cell.exec_log.exists() or executed(cell) == []


def test_the_handoff_config_is_checked_naming_the_key(tmp_path):
    from ismctl import config as cellconfig

    path = tmp_path / "cell.toml"
    path.write_text('[cell]\nname = "c"\n[handoff]\nmode = "auto"\ntransfer_s = 2\n')
    assert cellconfig.load(path).handoff == cellconfig.HandoffConfig("auto", 2.0)
    for table, key in (('mode = "robot"', "handoff.mode"), ("transfer_s = -1", "handoff.transfer_s"), ("speed = 1", "handoff.speed")):
        path.write_text(f'[cell]\nname = "c"\n[handoff]\n{table}\n')
        with pytest.raises(cellconfig.ConfigError) as info:
            cellconfig.load(path)
        assert info.value.key == key


def test_read_steps_defaults_the_handoff_from_the_cell_config():
    steps = read_steps([{"name": "a.gcode", "gcode": "G28\n"}, {"handoff": "default"}, {"name": "b.nc", "gcode": "G0 X1\n"}],
                       [], {"printer": "printer", "mill": "mill"}, "auto", 7.5)
    assert [(s.kind, s.device, s.mode, s.transfer_s) for s in steps] == [
        ("device", "printer", "", 0.0), ("handoff", "", "auto", 7.5), ("device", "mill", "", 0.0)]
    with pytest.raises(GraphError, match=r"steps\[1\].transfer_s: only applies to an auto hand-off"):
        read_steps([steps_a := {"name": "a.gcode", "gcode": ""}, {"handoff": "operator", "transfer_s": 1}, steps_a], [], {"p": "printer"}, "auto", 1)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(
    st.dictionaries(st.sampled_from(["name", "gcode", "mesh", "cam", "handoff", "transfer_s", "device", "x"]),
                    st.one_of(st.none(), st.booleans(), st.integers(-2, 3), st.floats(allow_nan=True), st.text(max_size=8),
                              st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))),
    st.integers(), st.text(max_size=4)), max_size=5))
def test_read_steps_refuses_any_bad_steps_with_a_graph_error(steps):
    """What a hostile client can put in submit_graph's steps: a GraphError naming the step, nothing else."""
    arrays = [np.zeros(4, np.uint8), np.zeros(2, np.float64)]
    try:
        specs = read_steps(steps, arrays, {"printer": "printer", "mill": "mill"}, "operator", 5.0)
    except GraphError as exc:
        assert str(exc).startswith("steps")
    else:
        assert specs and all(s.kind in ("device", "handoff") for s in specs)


def test_estop_and_pause_at_a_handoff(make_cell):
    """Pause or e-stop during an auto transfer hands it to the operator; a waiting hand-off stays
    waiting through an e-stop, and confirm is refused until the cell is reset."""
    cell = make_cell().start()
    cell.wait_idle()
    waits = submit_graph(cell, {"name": "a.gcode", "gcode": FIRST}, {"handoff": "operator"}, {"name": "b.gcode", "gcode": SECOND})["job"]
    cell.wait_job(waits, ("waiting",) + TERMINAL)
    assert "`ismctl confirm 1`" in refused(cell, "pause", job=waits)["error"]  # nothing runs to pause
    slow = {"handoff": "auto", "transfer_s": 600}
    paused = submit_graph(cell, {"name": "c.gcode", "gcode": "G28\n"}, slow, {"name": "d.gcode", "gcode": "G28\n"})["job"]
    cell.wait_job(paused, ("transferring",) + TERMINAL)
    assert ismctl(cell, "pause", str(paused)).returncode == 0
    assert cell.job(paused)["state"] == "waiting"
    assert cell.job(paused)["reason"] == "transfer stopped by operator pause; waiting for operator: move the part from printer to printer"
    assert "confirm" in refused(cell, "resume", job=paused)["error"]  # the way on is confirm, not resume

    stopped = submit_graph(cell, {"name": "e.gcode", "gcode": "G28\n"}, slow, {"name": "f.gcode", "gcode": "G28\n"})["job"]
    cell.wait_job(stopped, ("transferring",) + TERMINAL)
    cell.call("estop")
    assert refused(cell, "confirm", job=waits)["result"] == "busy"
    assert cell.job(waits)["state"] == "waiting"  # the hand-off is a person's act: an e-stop does not undo it
    assert cell.job(stopped)["reason"].startswith("transfer stopped by e-stop; waiting for operator")
    cell.client.timeout_s = 40
    assert cell.call("reset")["state"] == "ready"  # right after the e-stop: it waits for the halt, then resets
    cell.client.timeout_s = 5
    cell.wait_idle()
    for graph in (waits, paused, stopped):
        cell.call("confirm", job=graph)
        assert cell.wait_job(graph, TERMINAL)["state"] == "completed", cell.log_tail()


def test_a_waiting_graph_survives_a_supervisor_restart(make_cell):
    cell = make_cell().start()
    cell.wait_idle()
    reply = submit_graph(cell, {"name": "first.gcode", "gcode": FIRST}, {"handoff": "operator"}, {"name": "second.gcode", "gcode": SECOND})
    graph = reply["job"]
    cell.wait_job(graph, ("waiting",) + TERMINAL)
    cell.kill_serve(signal.SIGKILL)
    cell.start()
    assert cell.job(graph)["state"] == "waiting"
    assert cell.job(reply["steps"][2]["job"])["state"] == "held"
    cell.wait_idle()
    cell.call("confirm", job=graph)
    assert cell.wait_job(graph, TERMINAL)["state"] == "completed", cell.log_tail()
    assert executed(cell) == commands(FIRST) + commands(SECOND)


def test_a_transfer_cut_short_by_a_restart_waits_for_the_operator(tmp_path):
    """The supervisor's books on the same SQLite file, opened again as a restarted supervisor opens them."""
    from ismctl.supervisor import planners
    from ismctl.supervisor.graphs import GraphBook
    from ismctl.supervisor.jobs import JobBook
    from ismctl.supervisor.store import Store

    def open_books():
        store = Store(tmp_path / "ismctl.db")
        book = JobBook(store, parser_for=lambda device: planners.parser("printer"))
        return store, book, GraphBook(store, book, lambda topic, **body: None)

    store, book, graphs = open_books()
    specs = read_steps([{"name": "a.gcode", "gcode": FIRST}, {"handoff": "auto", "transfer_s": 600}, {"name": "b.gcode", "gcode": SECOND}],
                       [], {"printer": "printer"}, "operator", 5.0)
    graph = graphs.submit("g", specs, lambda spec: spec.gcode)
    wait_for(lambda: (book.poll_planning(), graphs.tick(0.0), graph.state == "running")[-1], 30, "the graph to be planned")
    first = graphs.current_job(graph)
    book.transition(first, "start")
    book.transition(first, "complete")
    graphs.tick(1.0)
    assert graph.state == "transferring"
    book.planner.shutdown()
    store.close()

    store, book, graphs = open_books()
    book.load()
    graphs.load()
    again = graphs.get(graph.id)
    assert again.state == "waiting"  # only an operator knows where the part is
    assert again.record.reason == "the supervisor stopped during the transfer; waiting for operator: move the part from printer to printer"
    assert graphs.confirm(again, 2.0) == "" and graphs.current_job(again).state == "ready"
    book.planner.shutdown()
    store.close()


def test_a_bad_job_file_is_refused_by_the_cli_naming_the_key(make_cell, tmp_path):
    cell = make_cell()  # not started: the job file is checked before any cell is asked
    path = job_file(tmp_path, '[[steps]]\nfile = "first.gcode"\ndevice = "lathe"\n')
    out = ismctl(cell, "submit", path)
    assert out.returncode == 2 and "steps[0].device: unknown device 'lathe' (this cell has: printer)" in out.stderr, out.stderr


def test_help_teaches_confirm_and_job_files():
    out = subprocess.run([sys.executable, "-m", "ismctl", "confirm", "--help"], capture_output=True, text=True, cwd=REPO)
    assert "waiting for operator" in out.stdout and "ismctl confirm 4" in out.stdout
    top = subprocess.run([sys.executable, "-m", "ismctl", "--help"], capture_output=True, text=True, cwd=REPO)
    assert "hybrid.toml" in top.stdout and "confirm" in top.stdout


def test_the_example_job_prints_the_bracket_then_drills_it_on_the_mill(make_cell):
    """configs/hybrid-example.toml: mesh sliced for the printer, operator hand-off, CAM and grbl G-code on the mill."""
    import json

    from ismctl import grbl_gcode
    from ismctl.execlog import compare_exec_log
    from ismctl.plan import fdm
    from ismctl.plan.cam import plan_cam_from_table
    from ismctl.plan.fdm_settings import SliceSettings

    example = REPO / "configs" / "hybrid-example.toml"
    cell = make_cell(mill=True).start()
    cell.wait_idle()
    cell.wait_idle(name="mill")
    out = ismctl(cell, "submit", str(example), "--json", timeout=300)
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    graph = reply["job"]
    assert [(s["kind"], s["device"]) for s in reply["steps"]] == [("device", "printer"), ("handoff", ""), ("device", "mill"), ("device", "mill")]
    waiting = cell.wait_job(graph, ("waiting",) + TERMINAL, timeout_s=120)
    assert waiting["reason"] == "waiting for operator: move the part from printer to mill"
    assert not cell.mill_exec_log.exists() or cell.mill_exec_log.read_text() == ""
    assert ismctl(cell, "confirm", str(graph)).returncode == 0
    assert cell.wait_job(graph, TERMINAL, timeout_s=120)["state"] == "completed", cell.log_tail()

    printed = fdm.slice_file(example.parent / "hybrid-example" / "bracket.stl", SliceSettings()).program
    assert compare_exec_log(printed.commands, cell.exec_log.read_text().splitlines(), is_host_command) == ""
    faced = plan_cam_from_table(example.parent / "hybrid-example" / "bracket.stl", {"operations": ["face"], "stock": "+1"},
                                tool="flat-6", material=cell.config.devices["mill"].material)
    drilled = grbl_gcode.parse((example.parent / "hybrid-example" / "bore.nc").read_text(), "bore.nc")
    assert cell.mill_exec_log.read_text().splitlines() == list(grbl_gcode.parse(faced.gcode).commands + drilled.commands)
    status = ismctl(cell, "status")
    assert "mill" in status.stdout and "spindle" in status.stdout and "hotend" in status.stdout, status.stdout
    bore = ismctl(cell, "submit", str(example.parent / "hybrid-example" / "bore.nc"))  # grbl G-code: to the mill by its name
    assert bore.returncode == 0 and "queued on mill: 11 ops" in bore.stdout, bore.stderr
    to_mill = ismctl(cell, "submit", str(example.parent / "hybrid-example" / "bracket.stl"), "--device", "mill")
    assert to_mill.returncode == 1 and "mill is a mill; meshes are sliced for a printer" in to_mill.stderr, to_mill.stderr
    mesh = np.frombuffer((example.parent / "hybrid-example" / "bracket.stl").read_bytes(), np.uint8)
    with pytest.raises(CommandFailed) as info:
        cell.client.call("submit_graph", arrays=[mesh], name="bad cam", steps=[{"name": "bracket.stl", "mesh": 0, "cam": {"colour": "red"}}])
    assert info.value.result == "validation_error"
    assert "step 1 (bracket.stl on mill) failed: steps[0].cam: colour: unknown key" in info.value.reply.body["error"]


def test_a_database_from_before_job_graphs_is_migrated(tmp_path):
    import sqlite3

    from ismctl.supervisor.store import Store

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, name TEXT NOT NULL, device TEXT NOT NULL, state TEXT NOT NULL, "
                "reason TEXT NOT NULL DEFAULT '', created REAL NOT NULL, updated REAL NOT NULL, n_ops INTEGER NOT NULL, "
                "confirmed_op INTEGER NOT NULL DEFAULT -1, line_base INTEGER NOT NULL DEFAULT 0, paused_by TEXT NOT NULL DEFAULT '')")
    old.execute("INSERT INTO jobs (name, device, state, created, updated, n_ops) VALUES ('old.gcode', 'printer', 'completed', 0, 0, 3)")
    old.commit()
    old.close()
    store = Store(path)
    assert [(j.name, j.kind) for j in store.jobs()] == [("old.gcode", "job")] and store.jobs(kind="graph") == []
    graph = store.add_graph("g", "planning", [{"kind": "device", "label": "a.gcode", "device": "printer"},
                                              {"kind": "handoff", "label": "hand-off", "device": "", "mode": "auto", "transfer_s": 1.0}])
    assert [(s.kind, s.job_id is not None) for s in store.steps(graph)] == [("device", True), ("handoff", False)]
    store.close()


def test_a_running_graph_lists_its_step_and_the_steps_progress(capsys):
    from ismctl.cli import _print_jobs

    step = {"kind": "device", "state": "running", "percent": 45.3}
    _print_jobs([{"id": 1, "kind": "graph", "name": "g", "state": "running", "device": "printer,mill", "reason": "", "step": 2,
                  "n_steps": 4, "steps": [{}, {}, step, {}], "n_ops": 0, "confirmed_op": -1},
                 {"id": 4, "kind": "job", "name": "bore.nc", "state": "running", "device": "mill", "reason": "", "graph": 1, "step": 2,
                  "n_ops": 11, "confirmed_op": 4}])
    lines = capsys.readouterr().out.splitlines()
    assert "step 3/4 45%" in lines[1] and "5/11" in lines[2] and "- step 3: bore.nc" in lines[2]
