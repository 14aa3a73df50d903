"""Our CAM G-code read by an independent interpreter: LinuxCNC's standalone ``rs274``.

``rs274 -g in.nc out.txt`` (stdin closed: no interactive prompt) interprets a
whole program and writes the canonical machining calls, one per line, with 4
decimals.  We write coordinates with 3, so its STRAIGHT_TRAVERSE /
STRAIGHT_FEED / ARC_FEED end points must equal our Program's positions
exactly at 0.1 µm granularity (compared within 0.05 µm), and an arc's centre
must be the start plus our I J.  Any error makes rs274 exit 1 and print the
offending line.  Debian package: linuxcnc-uspace (.ci/run installs it).
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess

import numpy as np
import pytest

from cam_parts import block_with_pocket_and_holes
from sim_helpers import need_outside_tool
from ismctl.plan.cam import plan_cam

RS274 = shutil.which("rs274")
need_outside_tool(RS274 is not None, "LinuxCNC's rs274", "apt-get install linuxcnc-uspace")

CANON = re.compile(r"^\s*\d+ N\.\.\.\.\. (STRAIGHT_TRAVERSE|STRAIGHT_FEED|ARC_FEED)\((.*)\)$")


@pytest.fixture(scope="module")
def block():
    return block_with_pocket_and_holes()


def interpret(tmp_path, gcode: str) -> list[tuple[str, list[float]]]:
    src, out = tmp_path / "part.nc", tmp_path / "canon.txt"
    src.write_text(gcode)
    run = subprocess.run([RS274, "-g", str(src), str(out)], stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, f"rs274 refused our program:\n{run.stdout[-2000:]}{run.stderr[-2000:]}"
    calls = []
    for line in out.read_text().splitlines():
        m = CANON.match(line)
        if m:
            calls.append((m.group(1), [float(v) for v in m.group(2).split(",")]))
    return calls


PROGRAMS = {
    "milled (face, pocket, profile)": dict(tool="flat-3"),
    "zigzag, conventional, finishing allowance": dict(tool="flat-3", pocket_style="zigzag", climb=False,
                                                      finish_allowance=0.2, operations=("pocket", "profile")),
    "ball end mill in aluminium": dict(tool="ball-3", material="aluminium-6061", operations=("face", "profile")),
    "peck drilling": dict(tool="drill-3"),
}


@pytest.mark.parametrize("options", PROGRAMS.values(), ids=PROGRAMS.keys())
def test_rs274_runs_our_program_to_the_same_positions(tmp_path, block, options):
    result = plan_cam(block, **options)
    program = result.program
    calls = interpret(tmp_path, result.gcode)
    motion = [i for i, c in enumerate(program.commands) if c.split()[0] in ("G0", "G1", "G2", "G3")]
    assert len(calls) == len(motion) > 10
    kinds = {"G0": "STRAIGHT_TRAVERSE", "G1": "STRAIGHT_FEED", "G2": "ARC_FEED", "G3": "ARC_FEED"}
    worst = 0.0
    for i, (kind, values) in zip(motion, calls):
        code = program.commands[i].split()[0]
        assert kind == kinds[code], (program.commands[i], kind)
        end = np.array(values[:3]) if kind != "ARC_FEED" else np.array([values[0], values[1], values[5]])
        ours = program.position[i]
        known = ~np.isnan(ours)
        worst = max(worst, float(np.max(np.abs(end[known] - ours[known]), initial=0.0)))
        if kind == "ARC_FEED":
            ij = dict(re.findall(r"([IJ])(-?[\d.]+)", program.commands[i]))
            start = program.position[i - 1]
            centre = start[:2] + [float(ij["I"]), float(ij["J"])]
            assert values[2:4] == pytest.approx(centre, abs=5e-8)
            assert values[4] == (1 if code == "G3" else -1)  # rs274: 1 counter-clockwise, -1 clockwise
    assert worst <= 5e-8  # 4 printed decimals: equal at 0.1 µm


def test_rs274_and_our_positions_agree_on_arc_lengths(tmp_path, block):
    """The helix arcs' radii: start and end lie on the circle rs274 computed (no 'radius differs' trouble)."""
    result = plan_cam(block, tool="flat-3", operations=("pocket",))
    calls = interpret(tmp_path, result.gcode)
    arcs = [(v, i) for i, (k, v) in enumerate(calls) if k == "ARC_FEED"]
    assert arcs
    ends = [np.array(v[:2]) for k, v in calls]
    for values, n in arcs:
        r_end = math.dist(values[:2], values[2:4])
        r_start = math.dist(ends[n - 1], values[2:4])
        assert abs(r_end - r_start) < 2e-3
