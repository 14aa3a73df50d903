"""The grbl 1.1 G-code parser: grbl's rules, positions, the simulator's timing, the tool path."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sim_mill import Mill

from ismctl import wire
from ismctl.gcode import GcodeError
from ismctl.grbl_gcode import moves, parse, parse_with_path
from ismctl.program import Program

ORIGIN = (0.0, 0.0, 0.0)


def test_ops_source_lines_and_positions():
    text = "%\n(setup)\nG21 G90 ; metric\n\nG0 X1 Y2 Z3\ng1 x4 (to x4) f600\nG91 G1 Z-1\n$H\nG90 G0 Z5\n"
    p = parse(text, "job", start=ORIGIN)
    assert p.device_class == "mill" and p.name == "job"
    assert p.commands == ("G21 G90", "G0 X1 Y2 Z3", "g1 x4  f600", "G91 G1 Z-1", "$H", "G90 G0 Z5")
    assert p.source_line.tolist() == [3, 5, 6, 7, 8, 9]
    assert p.position[:4].tolist() == [[0, 0, 0], [1, 2, 3], [4, 2, 3], [4, 2, 2]]
    # after homing the work position depends on offsets the host does not know
    assert np.isnan(p.position[4]).all()
    assert p.position[5, 2] == 5 and np.isnan(p.position[5, :2]).all()
    assert (p.layer == -1).all()


def test_units_work_offsets_and_g92():
    p = parse("G20 G0 X1\nG21 G92 X0\nG0 X2\nG55\nG0 Y1\nG53 G0 Z0\n", start=ORIGIN)
    assert p.position[0, 0] == pytest.approx(25.4)
    assert p.position[1, 0] == 0 and p.position[2, 0] == 2
    assert np.isnan(p.position[3]).all()          # G55: another, unknown, offset
    assert p.position[4, 1] == 1 and np.isnan(p.position[4, 0])
    assert np.isnan(p.position[5, 2])              # G53: machine coordinates
    unknown_start = parse("G0 Z5\n")
    assert np.isnan(unknown_start.position[0, :2]).all() and unknown_start.position[0, 2] == 5


def test_durations_follow_the_trapezoid_and_dwell():
    # 10 mm at 5 mm/s with 10 mm/s^2: 0.5 s up, 1.5 s cruise, 0.5 s down (the simulator's own figure)
    p = parse("G1 X10 F300\nG4 P1.5\nG0 X20\nM3 S1000\n", start=ORIGIN)
    rapid = 2 * 25 / 30 + (10 - 2 * 125 / 36) / (25 / 3)
    assert p.duration_s.tolist() == pytest.approx([2.5, 1.5, rapid, 0.0])
    # a diagonal rapid runs at the largest rate, 500 mm/min, along its path; acceleration
    # is limited per axis (10 mm/s^2 each), so along the diagonal it is 10 * sqrt(2)
    diag = parse("G0 X10 Y10\n", start=ORIGIN).duration_s[0]
    v, a = 500 / 60, 10 * math.sqrt(2)
    assert diag == pytest.approx(math.sqrt(200) / v + v / a)
    # settings in the job change later moves; limits passed in replace grbl's defaults
    faster = parse("$110=1000\nG0 X10\n", start=ORIGIN).duration_s[1]
    assert faster == pytest.approx(parse("G0 X10\n", limits={110: 1000}, start=ORIGIN).duration_s[0])
    assert faster < rapid
    # inverse time: F60 means one second per move
    assert parse("G93 G1 X3 F60\n", start=ORIGIN).duration_s[0] == pytest.approx(3 / 3 + 3 / 10)


def test_arcs_by_offsets_and_radius():
    full = parse("G0 X10 Y0\nG17 G2 X10 Y0 I-10 J0 F600\n", start=ORIGIN)
    v, a = 10.0, 10.0
    assert full.duration_s[1] == pytest.approx(2 * math.pi * 10 / v + v / a)
    by_radius = moves(parse("G0 X0 Y0\nG3 X10 Y0 R5 F600\n", start=ORIGIN))
    arc = by_radius.end[by_radius.op == 1]
    assert arc[:, 1].min() == pytest.approx(-5, abs=1e-3)   # counter-clockwise from (0,0) to (10,0) dips below
    assert np.hypot(arc[:, 0] - 5, arc[:, 1]) == pytest.approx(5)
    helix = moves(parse("G0 X5 Y0 Z0\nG18 G2 X5 Z0 Y-4 I0 K-5 F600\nG17 G3 X5 Y-4 Z-4 I-5 J0\n", start=ORIGIN))
    turn = helix.end[helix.op == 2]
    assert np.diff(turn[:, 2]) == pytest.approx(np.full(len(turn) - 1, -4 / len(turn)), rel=0.1)  # Z steps with the angle
    xz = helix.end[helix.op == 1]
    assert np.hypot(xz[:, 0] - 5, xz[:, 2] + 5) == pytest.approx(5)                    # G18: the arc lies in ZX


def test_moves_chord_tolerance_and_unknown_ends():
    m = moves(parse("G0 X10 Y0 Z1\nG2 X10 Y0 I-10 J0 F600\nG28\nG0 X1\n", start=ORIGIN), chord_tolerance=0.01)
    arc = m.op == 1
    mid = (m.start[arc] + m.end[arc]) / 2
    sag = 10 - np.hypot(mid[:, 0], mid[:, 1])
    assert sag.max() <= 0.01 and sag.max() > 0.005
    assert not m.rapid[arc].any() and m.rapid[m.op == 0].all()
    assert m.unplaced == 1 and 3 not in m.op      # after G28 the position is unknown
    program, path = parse_with_path(SIM_PROGRAM, "p", {110: 700}, ORIGIN)   # one pass, the same answers
    again = moves(program)
    assert np.array_equal(program.duration_s, parse(SIM_PROGRAM, "p", {110: 700}, ORIGIN).duration_s)
    assert np.array_equal(path.start, again.start) and np.array_equal(path.rapid, again.rapid)


def test_huge_arcs_flatten_into_a_bounded_number_of_chords():
    """A full circle of radius 1e14 mm (a 17-character I word grbl takes) once made the chord count
    infinite (OverflowError out of ``ismctl verify``); the count is capped, the points stay on the circle."""
    m = moves(parse("G2 X0 Y0 I100000000000000 F100", start=ORIGIN))
    assert 1000 < len(m) <= 1_000_001
    assert np.isfinite(m.end).all()
    assert np.hypot(m.end[:, 0] - 1e14, m.end[:, 1]) == pytest.approx(1e14, rel=1e-9)


def test_program_travels_the_wire_with_its_path():
    p = parse("G0 X10 Y0 Z1\nG2 X10 Y0 I-10 J0 F600\nG0 X20\n", "arc", limits={110: 900}, start=ORIGIN)
    body, arrays = p.to_wire()
    msg = wire.MessageFactory("s").make("job_start", {"job": 1, "start_op": 0, "line_base": 1, "n_ops": len(p),
                                                      "program": body}, arrays)
    out = wire.decode([bytes(f) for f in wire.encode(msg)])  # msgpack with strict (str) map keys
    back = Program.from_wire(out.body["program"], out.arrays)
    assert back.device_class == "mill" and np.array_equal(back.position, p.position)
    assert back.meta["limits"] == {"110": 900.0} and back.meta["start"] == [0.0, 0.0, 0.0]
    # the path (arcs from the start the program was parsed with) comes back the same from the received program
    sent, received = moves(p), moves(back)
    assert len(received) > 100 and np.array_equal(sent.end, received.end) and np.array_equal(sent.op, received.op)


@pytest.mark.parametrize("line, needle", [
    ("G1 X1 F100 X2", "error 25"),
    ("G0 G1 X1", "error 21"),
    ("M3 M5", "error 21"),
    ("G41 D1", "error 20"),
    ("G81 X1 Y1 Z-1 R1 F100", "error 20"),
    ("M6 T2", "error 20"),
    ("M7", "ENABLE_M7"),
    ("G10 P1 X0", "error 28"),
    ("G10 L2 P7 X0", "error 29"),
    ("G10 L2 P1", "error 26"),
    ("G1 X1", "error 22"),
    ("G2 X1 Y1 F100", "error 35"),
    ("G2 F100", "error 26"),
    ("G3 X10 Y0 R2 F100", "error 34"),
    ("G2 X10 Y0 I1 J0 F100", "error 33"),
    ("G4", "error 28"),
    ("G80 X1", "error 31"),
    ("G2 G53 X1 Y1 I1 F100", "error 30"),
    ("G1 X1 P2 F100", "error 36"),
    ("G92 G0 X1", "error 24"),
    ("G1 X1.2.3 F100", "error 1"),             # grbl reads X1.2, then meets '.'
    ("G1 X F100", "error 2"),
    ("X1 Q5", "error 20"),
    ("1 G0", "error 1"),
    ("T300", "error 38"),
    ("G1 F-5", "error 4"),
    ("G38.2 Z-5 F100", "probing"),
    ("G1 X1 F100 ?", "real-time"),
    ("G1 X1 F100 \x18", "control"),
    ("G1 X" + "1" * 80, "error 11"),
    ("$$", "not a job step"),
    ("$RST=*", "not a job step"),
    ("$999=1", "error 3"),
    ("$J=G91 X10", "error 16"),
    ("$J=", "error 16"),
])
def test_refused_lines_name_line_and_reason(line, needle):
    with pytest.raises(GcodeError) as err:
        parse(f"G21\nG0 X0 Y0 Z0\n{line}\nG0 X1\n", start=ORIGIN)
    assert err.value.line == 3 and needle in err.value.reason, err.value.reason
    assert "line 3" in str(err.value)


def test_grbl_rules_that_pass():
    p = parse("N10 G21 G90 G94 G17 G54 G40 G49 G61 G91.1 T1 S1000 M3 M8\n/G0 X1\n"
              "$J=G91 X5 F500\n$X\n$110=800\nG10 L20 P0 X0\nM2\n", start=ORIGIN)
    assert len(p) == 7
    assert p.position[2, 0] == 6 and p.position[5, 0] == 0


TOKENS = st.sampled_from(["G0", "G1", "G2", "G3", "G4", "G10", "L2", "L20", "G17", "G18", "G19", "G20", "G21",
                          "G28", "G28.1", "G30", "G53", "G54", "G55", "G80", "G90", "G91", "G92", "G92.1", "G93",
                          "G94", "M0", "M2", "M3", "M5", "M8", "M30", "X", "Y", "Z", "I", "J", "K", "R", "F", "P",
                          "S", "T", "N", "$H", "$X", "$J=", "$110=", "(c)", ";c", "/", "%", " "])
NUMBERS = st.sampled_from(["", "0", "1", "-1", "2.5", "-3.25", "10", "1e3", ".5", "-.", "100"])
LINES = st.lists(st.tuples(TOKENS, NUMBERS), max_size=6).map(lambda words: "".join(t + n + " " for t, n in words))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="GMXYZIJKRFPST0123456789.-+ ()$=;\n%abc?", max_size=120))
def test_garbage_is_refused_cleanly(text):
    try:
        p = parse(text)
    except GcodeError as exc:
        assert 1 <= exc.line <= text.count("\n") + 1
    else:
        assert len(p.duration_s) == len(p) and np.all(p.duration_s >= 0)
        moves(p)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LINES, max_size=8), st.booleans())
def test_grbl_like_programs_parse_or_name_a_line(lines, known_start):
    """Lines of grbl's own words in any order: refused with a line number, or a program whose
    times are finite and whose path has no unknown point."""
    try:
        p = parse("\n".join(lines), start=ORIGIN if known_start else None)
    except GcodeError as exc:
        assert 1 <= exc.line <= len(lines) and exc.reason
    else:
        assert np.isfinite(p.duration_s).all() and (p.duration_s >= 0).all()
        m = moves(p)
        assert np.isfinite(m.start).all() and np.isfinite(m.end).all()


SIM_PROGRAM = """\
G21 G90 G94
G0 X-10 Y-20 Z-2
M3 S9000
G1 Z-5 F200
G1 X-60 Y-25 F1200
G1 X-61 F900
G2 X-80 Y-25 I-9.5 J0 F600
G3 X-70 Y-35 R10
G91 G1 X3 Y3 Z1 F400
G90
G18 G2 X-57 Z-4 I5 K0 F500
G17
G4 P0.5
$110=900
G0 X-5 Y-5 Z-1
G1 X-5.2 F100
G20 G1 X-1 Y-1 F20
G21 G93 G1 X-20 Y-5 F6
G1 Z-3 F30
G94 G1 X-10 F800
M5
"""


def test_estimate_agrees_with_the_simulator(tmp_path):
    program = parse(SIM_PROGRAM, start=ORIGIN)
    log = tmp_path / "exec.log"
    with Mill("--speed", "max", "--exec-log", str(log), "--exec-log-times") as mill:
        mill.banner()
        for command in program.commands:
            assert mill.cmd(command) == ["ok"], command
        assert mill.cmd("G4 P0") == ["ok"]                    # ok once the last move has run
    logged = [row.split(" ", 1) for row in log.read_text().splitlines()]
    assert [text for _, text in logged[:-1]] == [c for c in program.commands if not c.startswith("$")]
    simulated = float(logged[-1][0]) - float(logged[0][0])
    estimated = program.estimated_s
    assert estimated == pytest.approx(simulated, rel=0.05), (estimated, simulated)
    print(f"estimated {estimated:.3f} s, simulator {simulated:.3f} s")
