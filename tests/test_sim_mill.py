"""The grbl 1.1h mill simulator, driven as a subprocess over a real pty (or TCP)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest
from sim_helpers import REPO, Sim

from firmware_sim.grbl import WELCOME

STATUS = re.compile(
    r"^<(Idle|Run|Hold:[01]|Jog|Alarm|Door:[0-3]|Check|Home|Sleep)"
    r"\|[MW]Pos:(-?\d+\.\d{3}),(-?\d+\.\d{3}),(-?\d+\.\d{3})"
    r"(\|Bf:\d+,\d+)?"
    r"\|FS:\d+,\d+"
    r"(\|WCO:-?\d+\.\d{3},-?\d+\.\d{3},-?\d+\.\d{3})?"
    r"(\|Ov:\d+,\d+,\d+(\|A:[SCFM]+)?)?>$")
UNLOCK = "[MSG:'$H'|'$X' to unlock]"


class Mill(Sim):
    def __init__(self, *args, **kw):
        super().__init__(*args, module="firmware_sim.mill", **kw)

    def line(self, timeout: float = 10.0) -> str:
        text = self.readline(timeout)
        assert text.endswith("\r"), f"grbl lines end in CR LF: {text!r}"
        return text[:-1]

    def lines_until(self, predicate, timeout: float = 10.0) -> list[str]:
        out = []
        while True:
            out.append(self.line(timeout))
            if predicate(out[-1]):
                return out

    def banner(self) -> list[str]:
        return self.lines_until(lambda text: text == WELCOME)

    def cmd(self, text: str, timeout: float = 10.0) -> list[str]:
        """Send one line; its reply lines up to and including ok / error:N."""
        self.port.write(text.encode("latin-1") + b"\n")
        return self.lines_until(lambda t: t == "ok" or t.startswith("error:"), timeout)

    def status(self) -> str:
        self.port.write(b"?")
        text = self.lines_until(lambda t: t.startswith("<"))[-1]
        assert STATUS.match(text), text
        return text

    def state(self) -> str:
        return self.status()[1:].split("|")[0]

    def mpos(self) -> list[float]:
        m = STATUS.match(self.status())
        return [float(m.group(i)) for i in (2, 3, 4)]

    def wait_state(self, *states: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if state in states:
                return state
            time.sleep(0.02)
        raise TimeoutError(f"state never became {states}")


@pytest.fixture
def mill():
    with Mill("--speed", "max") as m:
        m.banner()
        yield m


def test_banner_on_start():
    with Mill("--speed", "max") as m:
        assert m.banner() == ["", WELCOME]


def test_banner_over_tcp():
    with Mill("--speed", "max", "--tcp", "127.0.0.1:0") as m:
        assert m.address.startswith("socket://127.0.0.1:")
        assert m.banner() == ["", WELCOME]
        assert m.cmd("G21") == ["ok"]


def test_help_teaches():
    out = subprocess.run([sys.executable, "-m", "firmware_sim.mill", "--help"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert "Example session" in out and "--settings" in out and "--exec-log" in out


@pytest.mark.parametrize("line, reply", [
    ("G21", "ok"),
    ("", "ok"),
    ("(just a comment)", "ok"),
    ("g1 x-1 f100 ; lower case and a comment", "ok"),
    ("1", "error:1"),
    ("G1 X", "error:2"),
    ("$Q", "error:3"),
    ("$1=-5", "error:4"),
    ("$H", "error:5"),
    ("$0=2", "error:6"),
    ("$20=1", "error:10"),
    ("G1 X-1 Y-1 Z-1 F100 (" + "x" * 80 + ")", "ok"),
    ("G1 X-1.000000 Y-1.000000 Z-1.000000 F100.000000 " + "G21 " * 15, "error:11"),
    ("G5", "error:20"),
    ("B2", "error:20"),
    ("G0 G1 X-1", "error:21"),
    ("G1 X-1", "error:22"),
    ("G54.5", "error:23"),
    ("G1 X-1 X-2 F100", "error:25"),
    ("G4", "error:28"),
    ("G53 G2 X-1 R1 F10", "error:30"),
    ("G80 X-1", "error:31"),
    ("G0 X-1 P5", "error:36"),
])
def test_ok_and_error_codes(mill, line, reply):
    assert mill.cmd(line)[-1] == reply


def test_homing_lock_only_at_power_up(mill):
    assert mill.cmd("$22=1") == ["ok"]
    mill.port.write(b"\x18")                  # a soft reset keeps the state (Idle)
    assert mill.banner() == ["", WELCOME]
    assert mill.state() == "Idle"


def test_status_report_format_and_refresh(mill):
    first, second = mill.status(), mill.status()
    assert first == "<Idle|MPos:0.000,0.000,0.000|FS:0,0|WCO:0.000,0.000,0.000>"
    assert second == "<Idle|MPos:0.000,0.000,0.000|FS:0,0|Ov:100,100,100>"
    later = [mill.status() for _ in range(8)]
    assert all("WCO" not in s and "Ov" not in s for s in later)
    assert "WCO:" in mill.status()                        # every 10th report while idle
    assert mill.cmd("$10=3") == ["ok"]                    # MPos + buffer state
    assert re.match(r"^<Idle\|MPos:[^|]+\|Bf:15,128\|FS:0,0", mill.status())
    assert mill.cmd("$10=2") == ["ok"]                    # WPos
    assert mill.cmd("G10 L2 P1 X-5") == ["ok"]
    assert mill.status().startswith("<Idle|WPos:5.000,0.000,0.000|Bf:15,128|")


def test_realtime_status_inside_a_line(mill):
    mill.port.write(b"G1 X-2 F10?0\n")            # '?' never enters the line buffer
    assert STATUS.match(mill.line())
    assert mill.line() == "ok"
    assert mill.cmd("$G")[0] == "[GC:G1 G54 G17 G21 G90 G94 M5 M9 T0 F100 S0]"


def test_query_commands(mill):
    assert mill.cmd("$I") == ["[VER:1.1h.20190830:]", "[OPT:V,15,128]", "ok"]
    offsets = mill.cmd("$#")
    assert offsets[0] == "[G54:0.000,0.000,0.000]" and offsets[-1] == "ok"
    assert "[TLO:0.000]" in offsets and "[PRB:0.000,0.000,0.000:0]" in offsets
    assert mill.cmd("M3 S1200") == ["ok"]
    assert mill.cmd("$G")[0] == "[GC:G0 G54 G17 G21 G90 G94 M3 M9 T0 F0 S1200]"
    assert mill.status().endswith("|FS:0,1200|WCO:0.000,0.000,0.000>")
    assert mill.status().endswith("|Ov:100,100,100|A:S>")
    assert mill.cmd("$")[0].startswith("[HLP:$$ $# $G $I")


def test_settings_list_and_persistence(tmp_path):
    path = tmp_path / "eeprom.json"
    with Mill("--speed", "max", "--settings", str(path)) as m:
        m.banner()
        listing = m.cmd("$$")
        assert listing[-1] == "ok"
        values = dict(line.split("=") for line in listing[:-1])
        assert list(values)[:3] == ["$0", "$1", "$2"] and list(values)[-1] == "$132"
        assert values["$0"] == "10" and values["$10"] == "1" and values["$11"] == "0.010"
        assert values["$110"] == "500.000" and values["$130"] == "200.000"
        assert len(values) == 34
        assert m.cmd("$110=1200.5") == ["ok"]
        assert m.cmd("$22=1") == ["ok"]
        assert m.cmd("$20=1") == ["ok"]
        assert m.cmd("G10 L2 P2 X-3") == ["ok"]
    with Mill("--speed", "max", "--settings", str(path)) as m:
        assert m.banner()[-1] == WELCOME
        assert m.line() == UNLOCK                 # homing enabled: power-up alarm lock
        values = dict(line.split("=") for line in m.cmd("$$")[:-1])
        assert values["$110"] == "1200.500" and values["$22"] == "1" and values["$20"] == "1"
        assert "[G55:-3.000,0.000,0.000]" in m.cmd("$#")


def test_check_mode(mill):
    assert mill.cmd("$C") == ["[MSG:Enabled]", "ok"]
    assert mill.state() == "Check"
    assert mill.cmd("G1 X-50 F100") == ["ok"]
    assert mill.cmd("G1 X-50 Q1") == ["error:20"]
    assert mill.state() == "Check" and mill.mpos() == [0.0, 0.0, 0.0]
    assert mill.cmd("$C") == ["[MSG:Disabled]", "ok"]
    assert mill.banner() == ["", WELCOME]     # leaving check mode soft-resets
    assert mill.state() == "Idle"


def test_soft_limit_alarm_then_unlock(mill):
    assert mill.cmd("$22=1") == ["ok"]
    assert mill.cmd("$20=1") == ["ok"]
    assert mill.cmd("$J=G91 X10 F100") == ["error:15"]   # a jog past travel is refused
    mill.port.write(b"G0 X5\n")                         # machine travel is 0..-200
    assert mill.line() == "ALARM:2"
    assert mill.line() == "[MSG:Reset to continue]"
    mill.port.write(b"?G0 X-1\n")                     # nothing is answered, not even '?'
    mill.port.write(b"\x18")
    assert mill.banner() == ["", WELCOME]
    assert mill.line() == UNLOCK
    assert mill.cmd("G0 X-1") == ["error:9"]            # G-code locked out during alarm
    assert mill.cmd("$X") == ["[MSG:Caution: Unlocked]", "ok"]
    assert mill.state() == "Idle"
    assert mill.cmd("G0 X-5") == ["ok"]


def test_homing_sets_machine_position(mill):
    assert mill.cmd("$22=1") == ["ok"]
    assert mill.cmd("$H") == ["ok"]
    assert mill.mpos() == [-1.0, -1.0, -1.0]


def test_hard_limit_alarm():
    with Mill("--speed", "max") as m:
        m.banner()
        assert m.cmd("$21=1") == ["ok"]
        # powered up mid-travel: 100 mm from the switches, beyond them at 150
        m.port.write(b"G1 X150 F3000\n")
        lines = m.lines_until(lambda t: t.startswith("ALARM"))
        assert lines[-1] == "ALARM:1"
        assert m.line() == "[MSG:Reset to continue]"


def test_jog_and_jog_cancel():
    with Mill("--speed", "2") as m:
        m.banner()
        assert m.cmd("$J=G91 X-100 F600") == ["ok"]
        assert m.wait_state("Jog") == "Jog"
        assert m.cmd("G0 X-1") == ["error:9"]
        while m.mpos()[0] > -1:
            time.sleep(0.02)
        m.port.write(b"\x85")
        assert m.wait_state("Idle") == "Idle"
        stopped = m.mpos()[0]
        assert -100 < stopped < 0
        assert m.cmd("G91 G0 X-1") == ["ok"]          # the parser follows where the jog stopped
        m.wait_state("Idle")
        assert m.mpos()[0] == pytest.approx(stopped - 1)


def test_reset_while_moving_raises_alarm_3():
    with Mill("--speed", "1") as m:
        m.banner()
        assert m.cmd("G1 X-100 F100") == ["ok"]
        m.wait_state("Run")
        m.port.write(b"\x18")
        assert m.lines_until(lambda t: t == WELCOME) == ["ALARM:3", "", WELCOME]
        assert m.line() == UNLOCK
        assert m.state() == "Alarm"
        assert m.cmd("G0 X-1") == ["error:9"]


def test_feed_hold_and_resume():
    with Mill("--speed", "4") as m:
        m.banner()
        assert m.cmd("G1 X-150 F600") == ["ok"]
        m.wait_state("Run")
        while m.mpos()[0] > -1:
            time.sleep(0.02)
        m.port.write(b"!")
        seen = []
        while not seen or seen[-1] != "Hold:0":
            seen.append(m.state())
        assert set(seen) <= {"Run", "Hold:1", "Hold:0"} and "Hold:0" in seen
        held = m.mpos()
        time.sleep(0.3)
        assert m.mpos() == held and m.state() == "Hold:0"   # does not move while held
        assert -150 < held[0] < 0
        m.port.write(b"~")
        assert m.wait_state("Run", "Idle") in ("Run", "Idle")
        deadline = time.monotonic() + 20
        while m.mpos()[0] >= held[0] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert m.mpos()[0] < held[0]
        m.port.write(b"\x18")


def _program(n: int) -> list[str]:
    lines = ["G21 G90 G94", "M3 S8000", "G0 Z-5"]
    for i in range(n - 5):
        x, y = -((i * 7) % 100) - 1, -((i * 13) % 80) - 1
        lines.append(f"G1 X{x}.{i % 10} Y{y}.5 F{1200 + (i % 5) * 300}")
    lines += ["G0 Z-1", "M5"]
    return lines


def test_character_counting_stream_never_overflows(tmp_path):
    program = _program(500)
    log, stats = tmp_path / "exec.log", tmp_path / "stats.json"
    with Mill("--speed", "max", "--exec-log", str(log), "--stats", str(stats)) as m:
        m.banner()
        in_flight, replies, sent = [], [], 0
        while len(replies) < len(program):
            while sent < len(program) and sum(in_flight) + len(program[sent]) + 1 <= 127:
                data = program[sent].encode() + b"\n"
                m.port.write(data)
                in_flight.append(len(data))
                sent += 1
            reply = m.line()
            replies.append(reply)
            in_flight.pop(0)
        assert replies == ["ok"] * len(program)
    assert log.read_text().splitlines() == program
    counters = json.loads(stats.read_text())["counters"]
    assert counters["rx_overflows"] == 0 and counters["ok"] == len(program)


def test_overflowing_host_is_detected(tmp_path):
    program = _program(120)
    stats = tmp_path / "stats.json"
    with Mill("--speed", "1", "--stats", str(stats)) as m:
        m.banner()
        assert m.cmd("$10=3") == ["ok"]
        m.port.write("".join(line + "\n" for line in program).encode())   # no flow control
        m.port.write(b"?")          # real-time: answered once every byte before it was read
        m.lines_until(lambda t: t.startswith("<"))
        m.port.write(b"\x18")
        m.lines_until(lambda t: t == WELCOME)
    counters = json.loads(stats.read_text())["counters"]
    assert counters["rx_overflows"] >= 1 and counters["rx_overflow_bytes"] > 1000


def test_seeded_line_faults():
    with Mill("--speed", "max", "--drop-rate", "1") as m:
        m.banner()
        m.port.write(b"G21\n")                  # the line vanishes: no reply at all
        assert m.status().startswith("<Idle|")   # real-time bytes still get through
    with Mill("--speed", "max", "--corrupt-rate", "1", "--seed", "7") as m:
        m.banner()
        replies = [m.cmd("G1 X-1 F100")[-1] for _ in range(5)]
        assert all(r == "ok" or re.fullmatch(r"error:\d+", r) for r in replies)


def test_virtual_timing_of_moves_dwell_and_spinup(tmp_path):
    log = tmp_path / "exec.log"
    with Mill("--speed", "max", "--spinup", "2.5", "--exec-log", str(log),
              "--exec-log-times") as m:
        m.banner()
        for line in ("G1 X-10 F300", "G4 P0", "G4 P1", "M3 S1000", "G0 X-20", "M5"):
            assert m.cmd(line) == ["ok"]
    times = {text: float(t) for t, text in (row.split(" ", 1) for row in log.read_text().splitlines())}
    # 10 mm at 5 mm/s with 10 mm/s^2: 0.5 s up, 1.5 s cruise, 0.5 s down; G4 waits for it
    assert times["G1 X-10 F300"] == pytest.approx(0.0)
    assert times["G4 P0"] == pytest.approx(2.5)
    assert times["G4 P1"] == pytest.approx(3.5)
    assert times["M3 S1000"] == pytest.approx(6.0)          # 2.5 s spin-up
    # G0 runs at $110 = 500 mm/min: 10 mm take 2 * 0.8333 + 3.0556 / 8.3333 s; M5 waits for it
    assert times["M5"] - times["G0 X-20"] == pytest.approx(2 * 25 / 30 + (10 - 2 * 125 / 36) / (25 / 3))
