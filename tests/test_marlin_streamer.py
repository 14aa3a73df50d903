"""The Marlin streamer against the real simulator subprocess, over a real pty."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from drivers.marlin import MarlinStreamer, StreamControl, checksum, frame, frame_lines, parse_position, parse_temperatures
from drivers.transport import WRITE_NOW_WAIT_S, Backoff, PortUnavailable, open_port, write_now
from ismctl.gcode import parse

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "ismctl" / "data" / "demo-bracket.gcode"

# Extra simulator arguments for the demo-part runs (real heating from 25 degC).
WARM = ()


class Sim:
    def __init__(self, tmp_path: Path, *args: str):
        self.log = tmp_path / f"exec-{time.monotonic_ns()}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "firmware_sim.printer", "--exec-log", str(self.log), *args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.path = self.proc.stdout.readline().strip()
        if not self.path:
            raise RuntimeError("simulator did not start: " + self.proc.stderr.read())

    def executed(self) -> list[str]:
        return self.log.read_text().split("\n")[:-1] if self.log.exists() else []

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def sim_factory(tmp_path):
    sims = []

    def make(*args):
        s = Sim(tmp_path, *args)
        sims.append(s)
        return s

    yield make
    for s in sims:
        s.stop()


@pytest.fixture(scope="module")
def demo():
    return parse(DEMO.read_text(), "demo-bracket")


class Events:
    def __init__(self):
        self.items = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)

    def __call__(self, kind, data):
        with self.cond:
            self.items.append((time.monotonic(), kind, data))
            self.cond.notify_all()

    def of(self, kind):
        with self.lock:
            return [d for _t, k, d in self.items if k == kind]

    def wait(self, pred, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, k, d in self.items:
                    if pred(k, d):
                        return t, d
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"event not seen; got {[k for _t, k, _d in self.items][-20:]}")
                self.cond.wait(left)


def connect(path, **kw):
    ev = Events()
    s = MarlinStreamer(open_port(path), on_event=ev, **kw)
    info = s.handshake(10)
    return s, ev, info


# ------------------------------------------------------------------- unit bits

def test_framing():
    assert frame(-1, "M110 N-1") == b"N-1 M110 N-1*125\n"  # what printcore sends
    assert checksum(b"N1 M105") == 38
    cmds = ["G1 X10 Y10", "M117 Hi there", "T0"]
    assert frame_lines(cmds, 7) == [frame(7 + i, c) for i, c in enumerate(cmds)]


def test_parse_reports():
    assert parse_temperatures(b"ok T:21.2 /0.0 B:20.1 /60.0 T0:21.2 /0.0 @:0 B@:0") == {
        "hotend": (21.2, 0.0), "bed": (20.1, 60.0)}
    assert parse_temperatures(b" T:180.5 /200.0 B:60.0 /60.0 @:127 B@:0 W:?")["hotend"] == (180.5, 200.0)
    assert parse_position(b"X:10.00 Y:20.00 Z:0.20 E:1.00 Count X:800 Y:1600 Z:80") == {
        "X": 10.0, "Y": 20.0, "Z": 0.2, "E": 1.0}


def test_open_port_errors_and_backoff():
    with pytest.raises(PortUnavailable) as ei:
        open_port("/dev/does-not-exist-ismctl")
    assert ei.value.url == "/dev/does-not-exist-ismctl"
    b = Backoff(0.2, 5.0)
    assert [b.next() for _ in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    b.reset()
    assert b.next() == 0.2


def test_write_now_waits_for_a_full_pty_instead_of_failing():
    """pyserial's descriptor is non-blocking: a pty nobody has read refuses with EAGAIN, which is no broken
    link; the e-stop byte goes out once the other side reads (it failed a mill test's setup under load)."""
    import pty
    import tty

    master, slave = pty.openpty()
    tty.setraw(slave)
    port = open_port(os.ttyname(slave))
    try:
        refused = 0
        while refused < 5:  # fill the pty until it refuses even one byte, five times 10 ms apart (the
            try:            # kernel moves bytes on to the reading side a little later: room comes back)
                os.write(port.fd, b"x" * (4096 if refused == 0 else 1))
                refused = 0
            except BlockingIOError:
                refused += 1
                time.sleep(0.01)
        reader = threading.Timer(0.2, lambda: os.read(master, 1 << 16))  # the other side reads, once
        reader.start()
        t0 = time.monotonic()
        write_now(port, b"M112\n")
        assert 0.1 < time.monotonic() - t0 < WRITE_NOW_WAIT_S
        reader.join()
        tail = b""
        while tail[-5:] != b"M112\n":  # every byte of it, after the filler
            tail += os.read(master, 1 << 16)
    finally:
        port.close()
        os.close(master)
        os.close(slave)


# ----------------------------------------------------------------- streaming

def test_handshake_and_query(sim_factory):
    sim = sim_factory("--speed", "max")
    s, ev, info = connect(sim.path)
    try:
        assert info["firmware_name"].startswith("Marlin")
        assert info["caps"]["AUTOREPORT_TEMP"] and info["autoreport"]
        assert info["handshake_commands"][-2:] == ["M115", "M155 S1"]
        pos = s.get_position()
        assert set(pos) >= {"X", "Y", "Z", "E"}
        temps = s.get_temperatures()
        assert temps["hotend"][0] == pytest.approx(25.0, abs=1)
        assert s.probe_last_line() == 0
    finally:
        s.close()


def test_stream_demo_exact_under_faults(sim_factory, demo):
    sim = sim_factory("--speed", "max", *WARM, "--seed", "11", "--corrupt-rate", "0.002", "--drop-rate", "0.0005")
    s, ev, info = connect(sim.path, ok_timeout=3.0)
    try:
        r = s.stream(demo.commands, 0, 1)
    finally:
        s.close()
    assert r.status == "completed", r
    assert r.last_op == len(demo) - 1
    assert r.resends > 0  # the faults did happen
    assert ev.of("progress")[-1]["op"] == len(demo) - 1
    # the log is exactly: our handshake, the M110, then the program, each once, in order
    assert sim.executed() == info["handshake_commands"] + ["M110 N0"] + list(demo.commands)


def test_stream_from_middle_with_line_base(sim_factory, demo):
    sim = sim_factory("--speed", "max", *WARM)
    cmds = demo.commands[:400]
    s, ev, info = connect(sim.path)
    try:
        r = s.stream(cmds, start_op=100, line_base=5000)
    finally:
        s.close()
    assert r.status == "completed" and r.last_op == 399
    assert sim.executed() == info["handshake_commands"] + ["M110 N5099"] + list(cmds[100:])


def test_kill_and_resume_exact(sim_factory, demo):
    """A driver that dies mid-job: a new one probes the firmware and continues exactly."""
    sim = sim_factory("--speed", "max", *WARM, "--seed", "3", "--corrupt-rate", "0.002")
    cmds = demo.commands
    a, ev_a, info_a = connect(sim.path)
    half = len(cmds) // 2
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("a", a.stream(cmds, 0, 1)))
    t.start()
    ev_a.wait(lambda k, d: k == "progress" and d["op"] >= half, 30)
    a.close()  # the process "crashes": port closed, lines may be in flight
    t.join(10)
    assert result["a"].status == "disconnected"
    b, ev_b, info_b = connect(sim.path)
    try:
        last = b.probe_last_line()
        assert half <= last <= len(cmds)
        r = b.stream(cmds, start_op=last + 1 - 1, line_base=1, fresh=False)
    finally:
        b.close()
    assert r.status == "completed", r
    log = sim.executed()
    assert log == (info_a["handshake_commands"] + ["M110 N0"] + list(cmds[:last])
                   + info_b["handshake_commands"] + list(cmds[last:]))


def test_pause_resume_cancel(sim_factory, demo):
    sim = sim_factory("--speed", "max", *WARM)
    s, ev, info = connect(sim.path)
    ctl = StreamControl()
    out = {}
    try:
        ctl.pause()
        t = threading.Thread(target=lambda: out.setdefault("r", s.stream(demo.commands, 0, 1, ctl)))
        t.start()
        time.sleep(0.3)
        assert len(sim.executed()) <= len(info["handshake_commands"]) + 1  # nothing but the M110
        ctl.resume()
        ev.wait(lambda k, d: k == "progress" and d["op"] >= 1000, 30)
        ctl.cancel()
        t.join(15)
        r = out["r"]
        assert r.status == "cancelled"
        done = sim.executed()[len(info["handshake_commands"]) + 1:]
        assert done == list(demo.commands[:r.last_op + 1])
        assert r.last_op < len(demo) - 1
    finally:
        s.close()


def test_emergency_stop(sim_factory):
    sim = sim_factory("--speed", "5")
    cmds = ["G28"] + [f"G1 X{10 + i % 50} Y{10 + (i * 7) % 50} F3000" for i in range(500)]
    s, ev, info = connect(sim.path)
    out = {}
    try:
        t = threading.Thread(target=lambda: out.setdefault("r", s.stream(cmds, 0, 1)))
        t.start()
        ev.wait(lambda k, d: k == "progress" and d["op"] >= 40, 60)
        s.emergency_stop()
        t_halt, data = ev.wait(lambda k, d: k == "halted", 5)
        t.join(5)
    finally:
        s.close()
    assert "kill" in data["text"] or "halted" in data["text"]
    assert out["r"].status == "halted"
    assert not ev.of("fault")  # an e-stop we asked for is not reported as a fault
    assert out["r"].last_op < len(cmds) - 1
    assert len(sim.executed()) < len(info["handshake_commands"]) + 1 + len(cmds)


def test_busy_during_heat_and_wait_does_not_time_out(sim_factory):
    sim = sim_factory("--speed", "40")
    cmds = ["M104 S200", "M109 S200", "G28", "G1 X10 Y10 F3000", "M104 S0"]
    s, ev, info = connect(sim.path, ok_timeout=0.5)
    try:
        r = s.stream(cmds, 0, 1)
    finally:
        s.close()
    assert r.status == "completed", r
    assert r.probes == 0  # busy kept the link alive: no probe, no resend
    assert r.resends == 0
    assert ev.of("busy")
    assert any("hotend" in d for d in ev.of("telemetry"))
    assert sim.executed()[-len(cmds):] == cmds


def test_thermal_fault_is_reported(sim_factory):
    sim = sim_factory("--speed", "50", "--thermal-fault", "20:hotend")
    cmds = ["M104 S200", "M109 S200", "G4 S300", "G1 X10 F3000"]
    s, ev, info = connect(sim.path)
    try:
        r = s.stream(cmds, 0, 1)
    finally:
        s.close()
    assert r.status in ("fault", "halted")
    faults = ev.of("fault")
    assert faults and ("Thermal" in faults[0]["text"] or "Heating failed" in faults[0]["text"])
    assert ev.of("halted")
    assert "G1 X10 F3000" not in sim.executed()


def test_unknown_command_is_a_warning(sim_factory):
    sim = sim_factory("--speed", "max")
    cmds = ["G28", "M900 K0.05", "G1 X5 F3000"]
    s, ev, info = connect(sim.path)
    try:
        r = s.stream(cmds, 0, 1)
    finally:
        s.close()
    assert r.status == "completed"
    w = [d for d in ev.of("warning") if "Unknown command" in d["text"]]
    assert w and w[0]["op"] == 1


def test_last_line_rejected_with_a_garbled_resend_is_not_lost():
    """A scripted firmware (a protocol scenario the simulator cannot produce on demand):
    the last line arrives corrupted and the `Resend:` that follows is garbled by line
    noise.  The error's `ok` must not finish the job: the end-of-stream probe finds
    that line 3 never ran, and it is sent again."""
    import os
    import tty

    import serial

    from drivers.marlin import MarlinStreamer

    master, slave = os.openpty()
    tty.setraw(slave)
    executed, state = [], {"last": 0, "rejected": False}

    def answer(line: bytes) -> bytes:
        last = state["last"]
        if line.startswith(b"N2147480000"):
            return b"Error:Line Number is not Last Line Number+1, Last Line: %d\nResend: %d\nok\n" % (last, last + 1)
        if line.startswith(b"N"):
            n = int(line[1:line.index(b" ")])
            cmd = line[line.index(b" ") + 1:line.rindex(b"*")]
            if n == 3 and not state["rejected"]:
                state["rejected"] = True
                return b"Error:checksum mismatch, Last Line: %d\nRgsend: %d\nok\n" % (last, last + 1)
            if n != last + 1 and b"M110" not in cmd:
                return b"Error:Line Number is not Last Line Number+1, Last Line: %d\nResend: %d\nok\n" % (last, last + 1)
            state["last"] = n if b"M110" not in cmd else int(cmd.split(b"N")[1])
            executed.append(cmd.decode())
        else:
            executed.append(line.decode())
        if line.endswith(b"M115"):
            return b"FIRMWARE_NAME:Scripted\nok\n"
        return b"ok T:25.0 /0.0 B:25.0 /0.0\n" if line.endswith(b"M105") else b"ok\n"

    def firmware():
        buf = b""
        while True:
            try:
                buf += os.read(master, 4096)
            except OSError:
                return
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line:
                    os.write(master, answer(line))

    threading.Thread(target=firmware, daemon=True).start()
    streamer = MarlinStreamer(serial.Serial(os.ttyname(slave), 115200, timeout=0.1), ok_timeout=2)
    try:
        os.write(master, b"start\n")
        streamer.handshake(5)
        result = streamer.stream(["G1 X1", "G1 X2", "G1 X3"], 0, 1)
    finally:
        streamer.close()
        os.close(master)
    assert result.status == "completed"
    assert [c for c in executed if c.startswith("G1")] == ["G1 X1", "G1 X2", "G1 X3"]


def test_an_ok_with_one_flipped_bit_is_still_an_ok():
    from drivers.marlin import _looks_like_ok

    for line in (b"ok", b"ok T:20.0 /0.0", b"oc", b"Ok", b"ok N5 P15 B3", b"o+", b"ok\x00"):
        assert _looks_like_ok(line), line
    for line in (b"", b"o", b"on", b"Oc", b"echo:busy", b"Error:x", b"ol T:1"):
        assert not _looks_like_ok(line), line
