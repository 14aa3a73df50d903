"""A CAM program streamed through the grbl mill simulator (a real subprocess on a real pty): every line
executed without an error, the tool where our Program says, and our time estimate equal to its virtual clock."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sim_helpers import Sim

from cam_parts import block_with_pocket_and_holes
from firmware_sim.grbl import WELCOME
from ismctl.plan.cam import plan_cam
from ismctl.grbl_gcode import block_times
from ismctl.plan.cam_settings import GRBL_ACCEL, GRBL_MAX_RATE

RX_BUFFER = 127  # grbl's serial ring holds 127 bytes: character counting keeps what is in flight below it


def test_cam_program_runs_on_the_simulated_mill_without_an_error(tmp_path):
    result = plan_cam(block_with_pocket_and_holes(), tool="flat-6", depth_of_cut=2.0)
    assert any(c.startswith("G3") for c in result.program.commands)  # helices too
    program = list(result.program.commands)
    log, stats = tmp_path / "exec.log", tmp_path / "stats.json"
    with Sim("--speed", "max", "--exec-log", str(log), "--exec-log-times", "--stats", str(stats),
             module="firmware_sim.mill") as sim:
        while sim.readline().rstrip("\r") != WELCOME:
            pass
        in_flight, replies, sent = [], [], 0
        while len(replies) < len(program):
            while sent < len(program) and sum(in_flight) + len(program[sent]) + 1 <= RX_BUFFER:
                data = program[sent].encode() + b"\n"
                sim.port.write(data)
                in_flight.append(len(data))
                sent += 1
            replies.append(sim.readline(timeout=30).rstrip("\r"))
            in_flight.pop(0)
        sim.port.write(b"?")
        status = sim.readline(timeout=30).rstrip("\r")
        while not status.startswith("<"):
            status = sim.readline(timeout=30).rstrip("\r")
    errors = [(program[i], r) for i, r in enumerate(replies) if r != "ok"]
    assert not errors
    blocks = [line for line in program if not line.startswith("(")]  # a comment-only line is an empty block
    logged = [line.split(" ", 1) for line in log.read_text().splitlines()]
    assert [text for _, text in logged] == blocks  # every block executed, in order
    # M3 and M5 wait for the planner to empty: between them the virtual clock ran every move
    times = {text: float(t) for t, text in logged if text in ("M5",) or text.endswith(" M3")}
    ran = times["M5"] - times[next(text for text in times if text.endswith(" M3"))]
    # our Program leaves the moves from the unknown start untimed; the simulator starts at machine 0,0,0
    pos = result.program.position
    first = [i for i, c in enumerate(program) if c.split()[0] in ("G0", "G1") and np.isnan(pos[i - 1]).any()]
    assert len(first) == 2  # up to the safe height, then over to the first cut
    starts = np.array([np.nan_to_num(pos[i - 1]) for i in first])
    ends = np.array([np.nan_to_num(pos[i]) for i in first])
    untimed = block_times(ends - starts, np.full(len(first), -1.0), np.full(len(first), -1.0),  # rapids
                          np.array(GRBL_MAX_RATE) / 60.0, np.array(GRBL_ACCEL)).sum()
    print(f"simulated {ran:.3f} s, estimated {result.program.estimated_s + untimed:.3f} s")
    assert ran == pytest.approx(result.program.estimated_s + untimed, rel=1e-3)
    counters = json.loads(stats.read_text())["counters"]
    assert counters["errors"] == 0 and counters["alarms"] == 0 and counters["rx_overflows"] == 0
    mpos = [float(v) for v in status.split("MPos:")[1].split("|")[0].split(",")]
    assert np.allclose(mpos, result.program.position[-1], atol=1e-3)  # where our Program says the tool ends
