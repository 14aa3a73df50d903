"""Move timing (ismctl.plan.motion) against a slow reference and against the simulator itself."""

from __future__ import annotations

import dataclasses
import math
from collections import deque

import numpy as np
import pytest

from firmware_sim.clock import VirtualClock
from firmware_sim.marlin import COMMANDS, NO_OK, Command, MarlinFirmware
from firmware_sim.motion import MotionConfig, Planner
from firmware_sim.printer import build_parser, motion_config
from firmware_sim.thermal import ThermalManager
from ismctl import config
from ismctl.config import ConfigError
from ismctl.gcode import parse
from ismctl.plan.model import PlanError
from ismctl.plan.motion import MotionLimits, layer_times, move_durations
from ismctl.supervisor.processes import ProcessManager
from sim_helpers import REPO, check_motion_estimate

DEMO = (REPO / "ismctl" / "data" / "demo-bracket.gcode").read_text()
MOVES = ("G0", "G1", "G2", "G3")


# -- a slow reference: the simulator's planner rules, queue and clock included ----------

def _trapezoid(length, v0, v1, vmax, a):
    d_acc = (vmax ** 2 - v0 ** 2) / (2 * a)
    d_dec = (vmax ** 2 - v1 ** 2) / (2 * a)
    if d_acc + d_dec <= length:
        return (vmax - v0) / a + (vmax - v1) / a + (length - d_acc - d_dec) / vmax
    peak = math.sqrt((2 * a * length + v0 ** 2 + v1 ** 2) / 2)
    return (peak - v0) / a + (peak - v1) / a


def reference_durations(delta, feed, limits, index=None, accel=None, restart=None, blocks=16):
    """Re-implements firmware_sim/motion.py's rules: a queue of ``blocks`` blocks, the clock
    standing still while the host fills it, advancing to the first block's end when full."""
    limits = [limits] if isinstance(limits, MotionLimits) else limits
    out = np.zeros(len(delta))
    queue = deque()
    now = 0.0
    for i, d in enumerate(np.asarray(delta, dtype=float)):
        lim = limits[0 if index is None else int(index[i])]
        if restart is not None and restart[i] and queue:
            now = max(now, queue[-1]["end"])          # synchronize: wait for the planner
        while queue and queue[0]["end"] <= now:
            queue.popleft()
        if len(queue) == blocks:
            now = queue[0]["end"]
            queue.popleft()
        d = list(d)
        if abs(d[3]) > 200:
            d[3] = 0.0                                 # too long extrusion prevented
        length = math.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2)
        if length < 1e-6:
            length = abs(d[3])
            if length < 1e-6:
                continue
            a, unit = lim.retract_accel, None
        else:
            a = lim.accel if d[3] else lim.travel_accel
            unit = [c / length for c in d[:3]]
        if accel is not None:
            a = accel[i]
        vmax = feed[i]
        for k in range(4):
            if abs(d[k]) > 1e-9:
                vmax = min(vmax, lim.max_feedrate[k] * length / abs(d[k]))
                a = min(a, lim.max_accel[k] * length / abs(d[k]))
        block = {"i": i, "length": length, "unit": unit, "vmax": vmax, "accel": a, "v_in": 0.0}
        prev = queue[-1] if queue else None
        if prev is None or prev["end"] <= now:
            block["start"] = now
        else:
            vj = 0.0
            if prev["unit"] and unit and prev["start"] > now:
                cos_theta = -sum(p * q for p, q in zip(prev["unit"], unit))
                vj = min(prev["vmax"], vmax)
                if cos_theta > 0.999999:
                    vj = 0.0
                elif cos_theta >= -0.999999:
                    sin_half = math.sqrt(0.5 * (1 - cos_theta))
                    vj = min(vj, math.sqrt(min(prev["accel"], a) * lim.junction_deviation
                                           * sin_half / (1 - sin_half)))
                vj = min(vj, math.sqrt(prev["v_in"] ** 2 + 2 * prev["accel"] * prev["length"]),
                         math.sqrt(2 * a * length))
                prev["end"] = prev["start"] + _trapezoid(prev["length"], prev["v_in"], vj,
                                                         prev["vmax"], prev["accel"])
                out[prev["i"]] = prev["end"] - prev["start"]
            block["v_in"] = vj
            block["start"] = prev["end"]
        block["end"] = block["start"] + _trapezoid(length, block["v_in"], 0.0, vmax, a)
        out[i] = block["end"] - block["start"]
        queue.append(block)
    return out


def random_moves(rng, n):
    """Mixed moves: runs of short segments, long travels, E-only, zero moves, reversals."""
    kind = rng.integers(0, 6, n)
    delta = rng.normal(0, 1, (n, 4)) * rng.choice([0.05, 0.5, 5.0, 50.0], (n, 1))
    delta[:, 3] = np.abs(delta[:, 3]) * 0.05
    delta[kind == 0, 3] = 0.0                        # travel
    delta[kind == 1, :3] = 0.0                       # retract / prime
    delta[kind == 1, 3] = rng.choice([-0.8, 0.8], (kind == 1).sum())
    delta[kind == 2] = 0.0                           # nothing to do
    delta[kind == 3, 2] = 0.0
    delta[kind == 4] = -np.roll(delta, 1, axis=0)[kind == 4]   # straight back
    delta[rng.random(n) < 0.02, 3] = 250.0           # refused by the firmware
    feed = rng.uniform(5, 400, n)
    return delta, feed


def test_defaults_are_the_simulators():
    cfg, lim = MotionConfig(), MotionLimits()
    for name in ("max_feedrate", "max_accel", "accel", "retract_accel", "travel_accel",
                 "junction_deviation"):
        value = getattr(cfg, name)
        assert getattr(lim, name) == (tuple(value) if isinstance(value, list) else value)


@pytest.mark.parametrize("seed", range(4))
def test_kernel_equals_reference(seed):
    rng = np.random.default_rng(seed)
    delta, feed = random_moves(rng, 300)
    limits = [MotionLimits(), MotionLimits(max_feedrate=(150, 120, 8, 40), max_accel=(900, 1500, 50, 4000),
                                           accel=700, retract_accel=1200, travel_accel=2500,
                                           junction_deviation=0.05)]
    index = rng.integers(0, 2, len(delta))
    restart = rng.random(len(delta)) < 0.05
    got = move_durations(delta, feed, limits, limits_index=index, restart=restart)
    want = reference_durations(delta, feed, limits, index=index, restart=restart)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert got[np.all(np.abs(delta) < 1e-7, axis=1)].sum() == 0


def test_accel_override_equals_reference():
    rng = np.random.default_rng(9)
    delta, feed = random_moves(rng, 200)
    accel = rng.uniform(200, 5000, len(delta))
    got = move_durations(delta, feed, MotionLimits(), accel)
    np.testing.assert_allclose(got, reference_durations(delta, feed, MotionLimits(), accel=accel),
                               rtol=1e-9, atol=1e-12)


def test_small_cases_by_hand():
    lim = MotionLimits()
    # 10 mm at 50 mm/s, 3000 mm/s^2: accelerate 0.41 mm, cruise, decelerate
    (t,) = move_durations(np.array([[10.0, 0, 0, 0]]), np.array([50.0]), lim)
    assert t == pytest.approx(10 / 50 + 50 / 3000)
    # two collinear moves flow through at full speed; a reversal stops in between
    straight = move_durations(np.array([[10.0, 0, 0, 0], [10.0, 0, 0, 0]]), np.full(2, 50.0), lim)
    back = move_durations(np.array([[10.0, 0, 0, 0], [-10.0, 0, 0, 0]]), np.full(2, 50.0), lim)
    # the first block after an empty planner starts at once: its exit is not re-planned
    assert straight.sum() == pytest.approx(back.sum())
    three = move_durations(np.array([[10.0, 0, 0, 0]] * 3), np.full(3, 50.0), lim)
    assert three[0] == pytest.approx(10 / 50 + 50 / 3000)     # stops: the one after it started
    assert three[1] + three[2] == pytest.approx(20 / 50 + 50 / 3000)
    # Z is capped at 5 mm/s
    (tz,) = move_durations(np.array([[0, 0, 2.0, 0]]), np.array([50.0]), lim)
    assert tz == pytest.approx(2 / 5 + 5 / 100)


def test_bad_inputs_are_named():
    with pytest.raises(PlanError, match="feedrate"):
        move_durations(np.ones((2, 4)), np.array([10.0, 0.0]), MotionLimits())
    with pytest.raises(PlanError, match=r"\(n, 4\)"):
        move_durations(np.ones((2, 3)), np.ones(2), MotionLimits())
    with pytest.raises(PlanError, match="limits_index"):
        move_durations(np.ones((2, 4)), np.ones(2), [MotionLimits()] * 2)
    with pytest.raises(PlanError, match="move 1: delta"):
        move_durations(np.array([[1.0, 0, 0, 0], [np.nan, 0, 0, 0]]), np.ones(2), MotionLimits())


def test_layer_times_sums_per_layer():
    durations = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    layer = np.array([-1, 0, 0, 2, 2])
    expected = [sum(d for d, k in zip(durations, layer) if k == j) for j in range(3)]
    assert layer_times(durations, layer).tolist() == expected


# -- the limits and the firmware's M-codes ------------------------------------------------

def test_from_table_names_the_key():
    lim = MotionLimits.from_table({"max_feedrate": [200, 200, 10, 30], "accel": 800}, "dev.motion")
    assert lim.max_feedrate == (200.0, 200.0, 10.0, 30.0) and lim.accel == 800.0
    for table, key in (({"acel": 1.0}, "dev.motion.acel"), ({"accel": 0}, "dev.motion.accel"),
                       ({"max_accel": [1, 2, 3]}, "dev.motion.max_accel"),
                       ({"junction_deviation": "x"}, "dev.motion.junction_deviation"),
                       ({"travel_accel": True}, "dev.motion.travel_accel")):
        with pytest.raises(PlanError) as err:
            MotionLimits.from_table(table, "dev.motion")
        assert err.value.key == key and key in str(err.value)


@pytest.mark.parametrize("text", ["M204 P500 S1000", "M204 S1000 P500 R700 T900", "M204 P-5 T0",
                                  "M201 X500 E5000", "M203 Z10 Y-1", "M205 J0.05", "M205 J0.5",
                                  "M205 X8"])
def test_after_command_is_the_firmwares(text):
    cfg = MotionConfig()
    fw = type("Fw", (), {"planner": Planner(cfg)})()
    cmd = Command(text, None, False)
    COMMANDS[cmd.name](fw, cmd)
    lim = MotionLimits().after_command(cmd.name, cmd.params)
    assert dataclasses.astuple(lim) == dataclasses.astuple(
        MotionLimits(tuple(cfg.max_feedrate), tuple(cfg.max_accel), cfg.accel, cfg.retract_accel,
                     cfg.travel_accel, cfg.junction_deviation))


# -- against the simulator's own code --------------------------------------------------

def firmware_motion_s(commands) -> float:
    """The simulator's firmware run in-process on a max-speed clock (heater waits skipped):
    virtual seconds from the first move until the planner is empty."""
    clock = VirtualClock(math.inf)
    fw = MarlinFirmware(clock, ThermalManager(), Planner(MotionConfig()))
    fw.allow_cold_extrude = True
    start = None
    for text in commands:
        cmd = Command(text, None, False)
        if cmd.name in ("M109", "M190"):
            result = fw._synchronize()
        elif cmd.name in COMMANDS:
            if start is None and cmd.name in MOVES:
                start = clock.now()
            result = COMMANDS[cmd.name](fw, cmd)
        else:
            continue
        if result is not None and result is not NO_OK:
            for wake in result:
                clock.jump_to(wake)
    for wake in fw._synchronize():
        clock.jump_to(wake)
    return clock.now() - start


def zigzag_gcode(n=6000, seed=3) -> str:
    """Tiny segments (0.05-0.6 mm) turning by small and sharp angles, with retracts and hops."""
    rng = np.random.default_rng(seed)
    lines = ["G90", "M82", "G92 E0", "G1 Z0.2 F600"]
    x, y, e, heading = 100.0, 100.0, 0.0, 0.0
    for i in range(n):
        heading += rng.choice([0.05, -0.05, 0.6, -2.5])
        step = rng.uniform(0.05, 0.6)
        x += step * math.cos(heading)
        y += step * math.sin(heading)
        e += step * 0.033
        feed = rng.choice([1200, 2400, 4800, 9000])
        lines.append(f"G1 X{x:.3f} Y{y:.3f} E{e:.5f} F{feed}")
        if i % 500 == 499:
            lines += [f"G1 E{e - 0.8:.5f} F1500", f"G1 Z{0.2 + (i + 1) / 2500:.3f} F600",
                      f"G0 X{x + 5:.3f} Y{y:.3f} F9000", f"G1 E{e:.5f} F1500"]
            x += 5
    return "\n".join(lines) + "\n"


def motion_estimate(program) -> float:
    moves = [i for i, c in enumerate(program.commands) if c.split()[0] in MOVES]
    return float(program.duration_s[moves[0]:moves[-1] + 1].sum())


@pytest.mark.parametrize("text", [DEMO, zigzag_gcode()], ids=["demo-part", "zigzag"])
def test_parse_estimate_equals_the_simulators_firmware(text):
    program = parse(text)
    simulated = firmware_motion_s(program.commands)
    assert motion_estimate(program) == pytest.approx(simulated, rel=5e-3)
    assert motion_estimate(program) == pytest.approx(simulated, rel=1e-6)   # in fact exact


def test_kernel_equals_the_simulators_planner_with_its_queue():
    """The Planner class itself, 16 blocks, ``now`` moved to the first block's end when full."""
    rng = np.random.default_rng(5)
    delta, feed = random_moves(rng, 2000)
    delta[:, 3] = np.where(np.abs(delta[:, 3]) > 200, 0.0, delta[:, 3])
    planner = Planner(MotionConfig())
    now, position = 0.0, np.zeros(4)
    for d, f in zip(delta, feed):
        if planner.free(now) == 0:
            now = planner.next_free_time()
        position = position + d
        planner.add_move(list(position), f, now)
    total = move_durations(delta, feed, MotionLimits()).sum()
    assert total == pytest.approx(planner.idle_time(), rel=1e-9)


def test_parse_uses_the_given_limits():
    slow = MotionLimits(max_feedrate=(50, 50, 5, 25), accel=500, travel_accel=500)
    text = zigzag_gcode(300)
    assert parse(text, limits=slow).meta["estimated_s"] > 1.2 * parse(text).meta["estimated_s"]
    # the file's own M203/M204 win over the device's limits, as on the machine
    assert parse(DEMO, limits=slow).meta["estimated_s"] == parse(DEMO).meta["estimated_s"]


# -- the device config and the simulator's options ---------------------------------------

CELL = """
[cell]
name = "t"
[devices.p1]
class = "printer"
port = "sim"
[devices.p1.sim]
speed = "max"
"""


def test_device_motion_table_reaches_the_simulator(tmp_path):
    path = tmp_path / "cell.toml"
    path.write_text(CELL + "[devices.p1.motion]\nmax_feedrate = [200, 200, 12.5, 40]\n"
                           "accel = 1234.5\njunction_deviation = 0.02\n")
    cfg = config.load(path, state_dir=tmp_path / "s")
    motion = cfg.devices["p1"].motion
    assert motion == MotionLimits(max_feedrate=(200, 200, 12.5, 40), accel=1234.5, junction_deviation=0.02)
    args = ProcessManager(cfg)._simulator_args(cfg.devices["p1"])
    sim_cfg = motion_config(build_parser().parse_args(args[3:]))
    assert (tuple(sim_cfg.max_feedrate), tuple(sim_cfg.max_accel), sim_cfg.accel, sim_cfg.retract_accel,
            sim_cfg.travel_accel, sim_cfg.junction_deviation) == dataclasses.astuple(motion)


@pytest.mark.parametrize("table, key", [("acel = 5", "devices.p1.motion.acel"),
                                        ("accel = -5", "devices.p1.motion.accel"),
                                        ("max_feedrate = [1, 2]", "devices.p1.motion.max_feedrate"),
                                        ("junction_deviation = 3", "devices.p1.motion.junction_deviation")])
def test_bad_motion_table_names_the_key(tmp_path, table, key):
    path = tmp_path / "cell.toml"
    path.write_text(CELL + "[devices.p1.motion]\n" + table + "\n")
    with pytest.raises(ConfigError) as err:
        config.load(path, state_dir=tmp_path / "s")
    assert err.value.key == key and key in str(err.value)


def test_demo_cell_documents_the_default_limits():
    assert config.load(REPO / "configs" / "demo-cell.toml").devices["printer"].motion == MotionLimits()


# -- end to end: the estimate against the simulator subprocess ----------------------------

def test_demo_part_estimate_within_5_percent_of_the_simulator(tmp_path):
    estimated, simulated = check_motion_estimate(parse(DEMO), tmp_path / "exec.log")
    assert estimated == pytest.approx(simulated, rel=1e-3)
