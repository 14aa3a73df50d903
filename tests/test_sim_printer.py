"""The Marlin printer simulator, driven as a subprocess over a real pty or TCP port."""

from __future__ import annotations

import os
import re
import signal
import time
from functools import reduce
from operator import xor

import pytest

from firmware_sim.marlin import BANNER
from sim_helpers import REPO, Sim, checksum, framed

TEMP_LINE = re.compile(r"^T:\d+\.\d /\d+\.\d B:\d+\.\d /\d+\.\d T0:\d+\.\d /\d+\.\d @:\d+ B@:\d+$")


@pytest.fixture
def sim():
    with Sim("--speed", "max") as s:
        s.read_banner()
        yield s


# -- framing ------------------------------------------------------------------------

def test_banner_starts_with_start():
    with Sim("--speed", "max") as s:
        banner = s.read_banner()
    assert banner[0] == "start"
    assert banner[1] == "echo:Marlin 2.1.2.1"
    assert all(line.startswith("echo:") for line in banner[1:])


def test_numbered_lines_and_bare_lines(sim):
    assert sim.command("G90") == ["ok"]
    sim.write_line("M400")                       # no N: no line number check
    assert sim.until_ok() == ["ok"]
    assert sim.command("G91") == ["ok"]          # numbering continues at 2


@pytest.mark.parametrize("line, error", [
    ("N5 G1 X1*{cs}", "Error:Line Number is not Last Line Number+1, Last Line: 1"),
    ("N2 G1 X1*{bad}", "Error:checksum mismatch, Last Line: 1"),
    ("N2 G1 X1", "Error:No Checksum with line number, Last Line: 1"),
    ("G1 X1*{cs}", "Error:No Line Number with checksum, Last Line: 1"),
])
def test_line_errors_then_resend_and_ok(sim, line, error):
    sim.command("G90")
    body = line.split("*")[0]
    sim.write_line(line.format(cs=checksum(body), bad=(checksum(body) + 1) % 256))
    assert sim.until_ok() == [error, "Resend: 2", "ok"]
    sim.n = 1
    assert sim.command("G91") == ["ok"]          # the resent line is accepted


@pytest.mark.parametrize("line, next_n", [
    ("N100 M110", 101),
    ("M110 N100", 101),
    ("N101 M110 N100", 101),
    ("N-1 M110 N-1", 0),
])
def test_m110_variants(sim, line, next_n):
    body = line
    sim.write_line(f"{body}*{checksum(body)}" if body.startswith("N") else body)
    assert sim.until_ok() == ["ok"]
    sim.write_line(framed(next_n, "G90"))
    assert sim.until_ok() == ["ok"]


def test_printcore_style_m110_exact_bytes(sim):
    sim.write_line("N-1 M110 N-1*125")
    assert sim.until_ok() == ["ok"]
    sim.write_line(framed(0, "M105"))
    assert TEMP_LINE.match(sim.until_ok()[0][3:])


def test_comments_whitespace_and_unknown_command(sim):
    sim.write_line("G90 ; a comment also hides a checksum, so hosts strip it first")
    assert sim.until_ok() == ["ok"]
    sim.write_line("   M400   ; trailing comment")
    assert sim.until_ok() == ["ok"]
    assert sim.command("G29") == ['echo:Unknown command: "G29"', "ok"]
    sim.write_line("hello world")
    assert sim.until_ok() == ['echo:Unknown command: "hello world"', "ok"]


# -- reports ------------------------------------------------------------------------

def test_m105_format(sim):
    reply = sim.command("M105")
    assert len(reply) == 1 and reply[0].startswith("ok T:")
    assert TEMP_LINE.match(reply[0][3:])


def test_m115_capabilities(sim):
    reply = sim.command("M115")
    assert reply[0].startswith("FIRMWARE_NAME:Marlin 2.1.2.1 ")
    for cap in ("Cap:AUTOREPORT_TEMP:1", "Cap:EMERGENCY_PARSER:1", "Cap:THERMAL_PROTECTION:1"):
        assert cap in reply
    assert reply[-1] == "ok"


def test_m114_reports_position(sim):
    sim.command("G28")
    sim.command("G1 X10 Y5.5 Z1 F6000")
    sim.command("M400")
    assert sim.command("M114") == ["X:10.00 Y:5.50 Z:1.00 E:0.00 Count X:800 Y:440 Z:400", "ok"]


def test_m155_autoreport_without_ok():
    with Sim("--speed", "20") as s:
        s.read_banner()
        assert s.command("M155 S1") == ["ok"]
        t0 = time.monotonic()
        reports = [s.readline(5) for _ in range(3)]
        assert time.monotonic() - t0 < 2.0       # 1 virtual s = 50 ms real
        for line in reports:
            assert line.startswith(" ") and TEMP_LINE.match(line[1:]), line
        s.command("M155 S0")
        s.port.reset_input_buffer()
        s.port.timeout = 0.5
        assert s.port.read(100) == b""


def test_cold_extrusion_prevented(sim):
    sim.command("G28")
    assert sim.command("G1 X1 E5 F600") == ["echo: cold extrusion prevented", "ok"]
    sim.command("M400")
    assert sim.command("M114")[0].startswith("X:1.00 Y:0.00 Z:0.00 E:5.00")


# -- heaters ---------------------------------------------------------------------------

def test_m109_heats_in_modelled_time_with_busy_messages():
    with Sim("--speed", "max") as s:
        s.read_banner()
        reply = s.command("M109 S200", timeout=30)
        reports = [line for line in reply if line.startswith(" T:")]
        busy = [line for line in reply if line == "echo:busy: processing"]
        # first report at once, then one per virtual second; 25->200 C takes ~87 s,
        # plus the approach and the 10 s residency.
        assert 90 <= len(reports) <= 130, len(reports)
        assert abs(len(busy) - len(reports) / 2) <= 3
        reached = next(i for i, line in enumerate(reports) if float(line.split()[0][2:]) >= 199)
        assert 80 <= reached <= 105, reached
        assert reply[-1] == "ok"
        assert float(s.command("M105")[0].split()[1][2:]) == pytest.approx(200, abs=1.5)


def test_m113_changes_busy_interval():
    with Sim("--speed", "max") as s:
        s.read_banner()
        s.command("M113 S5")
        reply = s.command("G4 S21")
        assert reply.count("echo:busy: processing") == 4
        s.command("M113 S0")
        assert s.command("G4 S21") == ["ok"]


def test_busy_messages_real_time_at_speed():
    with Sim("--speed", "10") as s:
        s.read_banner()
        s.send("M109 S200")
        t0 = time.monotonic()
        lines = s.read_until(lambda line: line == "echo:busy: processing", timeout=5)
        assert 0.1 <= time.monotonic() - t0 <= 1.0      # 2 virtual s at speed 10
        assert lines[0].startswith(" T:")


def test_thermal_runaway_trips_and_halts():
    with Sim("--speed", "max", "--thermal-fault", "150") as s:
        s.read_banner()
        s.command("M109 S200", timeout=30)               # at target after ~100 s
        s.send("G4 S120")                                # heater dies at 150 s
        lines = s.read_until(lambda line: "kill() called" in line, timeout=30)
        assert lines[-2:] == ["Error:Thermal Runaway, system stopped! Heater_ID: 0",
                              "Error:Printer halted. kill() called!"]
        s.port.timeout = 0.5
        s.send("M105")
        assert s.port.read(100) == b""                   # halted: no more replies


def test_bed_heating_failed_when_heater_dead_from_start():
    with Sim("--speed", "max", "--thermal-fault", "0:bed") as s:
        s.read_banner()
        s.send("M190 S60")
        lines = s.read_until(lambda line: "kill() called" in line, timeout=30)
        assert lines[-2:] == ["Error:Heating failed, system stopped! Heater_ID: bed",
                              "Error:Printer halted. kill() called!"]


# -- emergency parser ----------------------------------------------------------------

def test_m112_halts_and_stays_halted(tmp_path):
    log = tmp_path / "exec.log"
    with Sim("--speed", "max", "--exec-log", str(log)) as s:
        s.read_banner()
        s.command("M104 S200")
        s.write_line("M112")
        assert s.readline() == "Error:Printer halted. kill() called!"
        s.port.timeout = 0.5
        for cmd in ("M105", "M999", "G28"):
            s.write_line(cmd)
            assert s.port.read(100) == b""
        assert s.proc.poll() is None
    assert log.read_text().splitlines() == ["M104 S200", "M112"]


def test_emergency_parser_acts_while_queue_blocked_in_m109():
    with Sim("--speed", "5") as s:
        s.read_banner()
        s.send("M109 S200")
        s.read_until(lambda line: line.startswith(" T:"))
        s.send("G1 X5")                # queued behind M109
        s.send("M112")                 # acted on at once, ahead of the queue
        lines = s.read_until(lambda line: "kill() called" in line, timeout=5)
        assert "ok" not in lines


def test_m108_breaks_m109():
    with Sim("--speed", "5") as s:
        s.read_banner()
        s.send("M109 S200")
        s.read_until(lambda line: line.startswith(" T:"))
        t0 = time.monotonic()
        s.send("M108")
        lines = s.until_ok(timeout=5)
        assert time.monotonic() - t0 < 2
        assert s.until_ok(timeout=5) == ["ok"]           # the M108 line's own ok
        temp = float(s.command("M105")[0].split()[1][2:])
        assert temp < 100, lines


def test_reset_signal_prints_start_and_restarts_numbering(sim):
    sim.command("G90")
    sim.command("G90")
    sim.proc.send_signal(signal.SIGUSR1)
    assert sim.read_banner()[0] == "start"
    sim.n = 0
    assert sim.command("G90") == ["ok"]


def test_sigterm_exits_zero(sim):
    sim.proc.send_signal(signal.SIGTERM)
    assert sim.proc.wait(5) == 0


# -- fault injection and exec log ------------------------------------------------------

def _stream_with_resend(s: Sim, commands: list[str], timeout: float = 30) -> dict:
    """A host that honours Resend: one line in flight, ok advances, Resend rewinds."""
    sent = {}
    counts = {"resends": 0}
    n = 1
    deadline = time.monotonic() + timeout
    s.port.timeout = 0.3
    while n <= len(commands):
        sent[n] = framed(n, commands[n - 1])
        s.write_line(sent[n])
        resend = None
        while True:
            assert time.monotonic() < deadline, "stream stalled"
            try:
                line = s.readline(0.3)
            except TimeoutError:         # dropped line: nudge with the next one
                break
            if line.startswith("Resend:"):
                resend = int(line.split()[1])
                counts["resends"] += 1
            elif line.startswith("ok"):
                break
        n = resend if resend is not None else n + 1
    return counts


def test_exec_log_matches_sent_commands_under_faults(tmp_path):
    commands = [f"G1 X{i % 50} Y{i % 7} F6000" for i in range(300)]
    log = tmp_path / "exec.log"
    with Sim("--speed", "max", "--seed", "7", "--corrupt-rate", "0.1", "--drop-rate", "0.05",
             "--exec-log", str(log)) as s:
        s.read_banner()
        counts = _stream_with_resend(s, commands)
    assert counts["resends"] > 10
    assert log.read_text().splitlines() == commands


def _faulty_run(tmp_path, name: str) -> list[str]:
    replies = []
    with Sim("--speed", "max", "--seed", "3", "--corrupt-rate", "0.3", "--exec-log",
             str(tmp_path / name)) as s:
        s.read_banner()
        for i in range(1, 40):
            while True:                  # one line in flight; resend until accepted
                s.write_line(framed(i, f"G1 X{i}"))
                lines = s.until_ok()
                replies += lines
                if not (lines[-2:-1] and lines[-2].startswith("Resend")):
                    break
                assert lines[-2] == f"Resend: {i}", lines
    return replies


def test_faults_are_deterministic_for_a_seed(tmp_path):
    first = _faulty_run(tmp_path, "a.log")
    assert sum(line.startswith("Error:") for line in first) >= 5
    assert _faulty_run(tmp_path, "b.log") == first
    assert (tmp_path / "a.log").read_text() == (tmp_path / "b.log").read_text()
    assert (tmp_path / "a.log").read_text().splitlines() == [f"G1 X{i}" for i in range(1, 40)]


def test_disconnect_creates_new_pty_and_keeps_state(tmp_path):
    link = tmp_path / "printer"
    with Sim("--speed", "max", "--disconnect-after", "3", "--link", str(link)) as s:
        assert os.readlink(link) == s.address
        s.read_banner()
        s.command("M104 S180")
        s.command("G28")
        s.send("G1 X7 F6000")                        # third line: cable pulled
        new_address = s.proc.stdout.readline().strip()
        assert new_address.startswith("/dev/") and new_address != s.address
        assert os.readlink(link) == new_address
        s.port.close()
        s.port = Sim.open(str(link))
        time.sleep(0.3)
        s.port.reset_input_buffer()
        s.command("M400")                            # numbering continues: N4
        assert s.command("M114")[0].startswith("X:7.00 Y:0.00")
        assert "/180.0" in s.command("M105")[0]
    assert not link.exists()


def test_garbage_never_crashes(sim):
    junk = bytes(range(256)) * 3 + b"N\n*\nN-\nM\nG\nT\n;;;\n\x08\x08\nN1 M110*\n" + b"X" * 5000
    sim.port.write(junk + b"\n")
    sim.port.write(b"\xff\xfe M105\r\n")
    sim.port.timeout = 0.5
    time.sleep(0.5)
    sim.port.reset_input_buffer()
    sim.write_line(framed(-1, "M110 N-1"))
    sim.read_until(lambda line: line == "ok")
    sim.n = -1
    assert sim.command("G90") == ["ok"]
    assert sim.proc.poll() is None


def test_tcp_mode_and_reconnect():
    with Sim("--speed", "max", "--tcp", "127.0.0.1:0") as s:
        assert re.match(r"socket://127\.0\.0\.1:\d+$", s.address)
        s.read_banner()
        assert s.command("G90") == ["ok"]
        s.port.close()
        s.port = Sim.open(s.address)                 # firmware kept running: no start
        assert s.command("G91") == ["ok"]


def test_advanced_ok():
    with Sim("--speed", "max", "--advanced-ok") as s:
        s.read_banner()
        assert s.command("G1 X5 F600") == ["ok N1 P15 B3"]
        s.write_line("M400")
        assert s.until_ok() == ["ok P16 B3"]


def test_help_documents_every_option():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "firmware_sim.printer", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for option in ("--tcp", "--link", "--speed", "--advanced-ok", "--seed", "--corrupt-rate",
                   "--drop-rate", "--reply-noise", "--disconnect-after", "--disconnect-rate",
                   "--thermal-fault", "--exec-log", "Example session"):
        assert option in out


# -- an independent host -------------------------------------------------------------

def test_printcore_prints_a_file_to_the_end(tmp_path):
    """Printrun's printcore (pip install --no-deps printrun appdirs) drives the pty."""
    printcore = pytest.importorskip(
        "printrun.printcore", reason="printrun not installed: pip install --no-deps printrun appdirs")
    gcoder = pytest.importorskip("printrun.gcoder")
    body = ["G28", "M104 S200", "M140 S60", "M109 S200", "M190 S60", "G92 E0", "M83"]
    body += [f"G1 X{10 + i % 40} Y{10 + (i * 7) % 40} E0.05 F3000 ; move {i}" for i in range(400)]
    body += ["M400", "M104 S0", "M140 S0", "M84"]
    log = tmp_path / "exec.log"
    with Sim("--speed", "max", "--exec-log", str(log), connect=False) as s:
        host = printcore.printcore(s.address, 115200)
        try:
            deadline = time.monotonic() + 20
            while not host.online:
                assert time.monotonic() < deadline, "printcore never came online"
                time.sleep(0.05)
            host.startprint(gcoder.LightGCode(body))
            while host.printing:
                assert time.monotonic() < deadline + 40, "print did not finish"
                time.sleep(0.05)
        finally:
            host.disconnect()
    executed = [line for line in log.read_text().splitlines() if not line.startswith(("M105", "M110"))]
    assert executed == [line.split(";")[0].strip() for line in body]


# -- reply noise (firmware -> host) ------------------------------------------------------

def _noisy_replies(n: int) -> list[str]:
    with Sim("--speed", "max", "--seed", "5", "--reply-noise", "0.2") as s:
        for _ in BANNER:                 # noise keeps the line count, not the text
            s.readline()
        replies = []
        for _ in range(n):               # one reply line per bare G90, noisy or not
            s.write_line("G90")
            replies.append(s.readline())
        return replies


def test_reply_noise_flips_one_bit_per_hit_line_deterministically():
    replies = _noisy_replies(60)
    hit = [line for line in replies if line != "ok"]
    assert 3 <= len(hit) <= 30, replies
    for line in hit:                     # exactly one bit of one byte differs
        raw = line.encode("latin-1")
        assert len(raw) == 2 and sum(bin(a ^ b).count("1") for a, b in zip(raw, b"ok")) == 1
    assert _noisy_replies(60) == replies


def test_streamer_survives_reply_noise_and_line_noise(tmp_path):
    """The demo part through MarlinStreamer with noise both ways: exact exec log."""
    from drivers.marlin import MarlinStreamer, is_host_command
    from drivers.transport import open_port
    from ismctl.execlog import compare_exec_log
    from ismctl.gcode import parse

    program = parse((REPO / "ismctl" / "data" / "demo-bracket.gcode").read_text(), "demo")
    log = tmp_path / "exec.log"
    events = []
    with Sim("--speed", "max", "--seed", "11", "--reply-noise", "0.002", "--corrupt-rate",
             "0.002", "--exec-log", str(log), connect=False) as s:
        # A garbled "ok" is invisible to the streamer: the line it answered stays in
        # the window until a probe after ok_timeout clears it.  At --speed max nothing
        # legitimately keeps the firmware silent for 2 s, so don't wait the default 10.
        streamer = MarlinStreamer(open_port(s.address), ok_timeout=2.0,
                                  on_event=lambda kind, data: events.append((kind, data)))
        try:
            streamer.handshake(10)
            result = streamer.stream(program.commands, 0, 1)
        finally:
            streamer.close()
    assert result.status == "completed", (result, [e for e in events if e[0] != "progress"][-20:])
    assert compare_exec_log(program.commands, log.read_text().splitlines(), is_host_command) == ""


# -- the framing fast path ---------------------------------------------------------------

def test_frame_fast_path_equals_general_path():
    """_frame's one-regex fast path gives exactly what the general Marlin checks give."""
    import random
    from firmware_sim.clock import VirtualClock
    from firmware_sim.marlin import MarlinFirmware
    from firmware_sim.motion import MotionConfig, Planner
    from firmware_sim.thermal import ThermalManager

    def firmware():
        return MarlinFirmware(VirtualClock(float("inf")), ThermalManager(), Planner(MotionConfig()))

    def outcome(fw, cmd):
        fields = None if cmd is None else (cmd.text, cmd.n, cmd.name, cmd.params, cmd.string_arg)
        return fields, fw.last_n, fw.take_output()

    rng = random.Random(1)
    mutations = b"NGMTXYZEFSP0123456789 .-+*;\x08eM\xb2\t"
    a, b = firmware(), firmware()
    a.take_output(), b.take_output()
    for _ in range(20000):
        cmd = rng.choice([b"G1", b"G0", b"G01", b"M104", b"T0", b"M117", b"M110", b"G29.1", b"g1"])
        tokens = [bytes([rng.choice(b"XYZEFSPNxT")])
                  + rng.choice([b"", b"1", b"-2.5", b".5", b"5.", b"+3", b"1e5", b"-.", b"nan", b"1_0"])
                  for _ in range(rng.randint(0, 5))]
        line = b"N%d%s%s%s" % (rng.choice([5, 5, 5, 6, -1]), rng.choice([b" ", b"  ", b""]), cmd,
                               b"".join(rng.choice([b" ", b"  "]) + t for t in tokens))
        cs = reduce(xor, line, 0) ^ (rng.random() < 0.2)
        line += b"*%d" % cs
        if rng.random() < 0.3:
            i = rng.randrange(len(line))
            line = line[:i] + bytes([rng.choice(mutations)]) + line[i + 1:]
        a.last_n = b.last_n = 4
        assert outcome(a, a._frame(line, False)) == outcome(b, b._frame_general(line, False)), line
