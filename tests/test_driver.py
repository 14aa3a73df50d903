"""The printer driver process on its own: hostile supervisor traffic, a port that is not there yet."""

import random
import subprocess
import sys
import time

import pytest
import zmq
from conftest import REPO
from test_fuzz_wire import garbage

from ismctl import bus, wire
from ismctl.gcode import parse
from ismctl.wire import MessageFactory


def start_simulator(tmp_path, link, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "firmware_sim.printer", "--speed", "max", "--link", str(link), "--exec-log", str(tmp_path / "exec.log"), *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO, text=True,
    )  # fmt: skip


class FakeSupervisor:
    """A bare ROUTER standing where the supervisor would: the test is the supervisor."""

    def __init__(self):
        self.sock = bus.socket(zmq.Context.instance(), zmq.ROUTER)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.factory = MessageFactory("test-supervisor")
        self.identity = None

    def recv(self, timeout_s=10.0, want=None):
        deadline_msgs = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.sock.poll(100):
                continue
            ident, *frames = self.sock.recv_multipart()
            msg = wire.decode(frames)
            self.identity = ident
            if want is None or want(msg):
                return msg
            deadline_msgs.append(msg.t)
        raise AssertionError(f"no wanted message within {timeout_s} s (saw {deadline_msgs[-10:]})")

    def send(self, t, body=None, arrays=()):
        msg = self.factory.make(t, body, arrays)
        self.sock.send_multipart([self.identity, *wire.encode(msg)])
        return msg


@pytest.fixture
def driven(tmp_path):
    """A printer simulator (its exec log in tmp_path) and a printer driver reporting to a FakeSupervisor."""
    link = tmp_path / "printer.tty"
    sim = start_simulator(tmp_path, link)
    sim.stdout.readline()
    fake = FakeSupervisor()
    driver = subprocess.Popen(
        [sys.executable, "-m", "drivers.printer", "--name", "printer", "--port", str(link), "--supervisor", f"tcp://127.0.0.1:{fake.port}", "--heartbeat", "0.2"],
        cwd=REPO, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield fake, driver
    finally:
        driver.terminate()
        driver.wait(10)
        sim.terminate()
        sim.wait(10)


def test_driver_survives_garbage_and_still_prints(driven, tmp_path):
    fake, driver = driven
    reg = fake.recv(want=lambda m: m.t == "register")
    assert reg.body["device"] == "printer" and reg.body["device_class"] == "printer"
    fake.send("reply", {"result": "ok"})
    fake.recv(want=lambda m: m.t == "device_state" and m.body["state"] == "idle")
    rng = random.Random(99)
    for _ in range(200):
        fake.sock.send_multipart([fake.identity, *garbage(rng)])
        fake.send("heartbeat")
    invalid = []
    # the driver keeps heartbeating, so the drain is bounded by time; it ends as soon as 150 replies are in,
    # and 30 s leaves room for a loaded CI machine (5 s failed once under load)
    deadline = time.monotonic() + 30
    while len(invalid) < 150 and time.monotonic() < deadline:
        if fake.sock.poll(100):
            _, *frames = fake.sock.recv_multipart()
            msg = wire.decode(frames)
            if msg.t == "reply" and msg.body["result"] == "invalid":
                invalid.append(msg.body["error"])
    assert len(invalid) >= 150 and driver.poll() is None
    program = parse("G28\nM104 S0\nG1 X10 Y10 F3000\nG1 X20 Y10\nG4 P10\n")
    body, arrays = program.to_wire()
    start = fake.send("job_start", {"job": 1, "start_op": 0, "line_base": 1001, "resume": False, "n_ops": len(program), "program": body}, arrays)
    ack = fake.recv(want=lambda m: m.t == "reply" and m.re == start.id)
    assert ack.body["result"] == "ok"
    end = fake.recv(want=lambda m: m.t == "job_end")
    assert (end.body["job"], end.body["state"], end.body["op"]) == (1, "completed", len(program) - 1)
    # a retried command (same id) is answered again, not executed again
    fake.sock.send_multipart([fake.identity, *wire.encode(start)])
    again = fake.recv(want=lambda m: m.t == "reply" and m.re == start.id)
    assert again.body == ack.body
    executed = (tmp_path / "exec.log").read_text().splitlines()
    assert executed.count("G1 X20 Y10") == 1


def test_missing_port_is_retried_with_backoff_then_prints(make_cell, tmp_path):
    link = tmp_path / "later.tty"
    cell = make_cell(port=str(link)).start()
    events = cell.client.events(("device.connect_failed",))
    retries = []
    while len(retries) < 4:
        got = events.next(timeout_s=10)
        assert got is not None, "no connect_failed events while the port is missing"
        retries.append(got[1]["retry_s"])
        assert cell.device_state() in ("disconnected", "connecting")
    assert retries == sorted(retries) and retries[-1] > retries[0]  # backing off
    assert str(link) in got[1]["reason"]
    sim = start_simulator(tmp_path, link)
    try:
        cell.wait_idle(timeout_s=30)
        job = cell.call("submit", name="late", gcode="G28\nG1 X5 Y5 F3000\n")["job"]
        assert cell.wait_job(job, ("completed", "failed"))["state"] == "completed"
    finally:
        sim.terminate()
        sim.wait(10)


def test_cable_pull_mid_job_reconnects_and_finishes_exactly(make_cell):
    from test_end_to_end import PROGRAM, assert_exact, submit_demo

    cell = make_cell(speed="max", extra_sim_args=("--disconnect-after", "3000")).start()
    job = submit_demo(cell)
    done = cell.wait_job(job, ("completed", "failed", "cancelled"))
    assert done["state"] == "completed", cell.log_tail()
    kinds = [e["kind"] for e in cell.call("job", job=job)["events"]]
    assert "paused" in kinds  # the link loss was seen and the job resumed
    assert done["confirmed_op"] == len(PROGRAM) - 1
    assert_exact(cell)


def test_a_cancel_or_pause_right_behind_the_job_start_is_not_lost(driven, tmp_path):
    """job_start, then job_pause or job_cancel at once: the driver takes both on its loop before its job
    thread has begun the stream, which used to create the job's control only then (the pause or cancel
    went to the last job's finished control, and the job ran to its end)."""
    fake, driver = driven
    long = parse("G28\n" + "G1 X10 Y10 F3000\nG1 X20 Y10\n" * 10_000)
    body, arrays = long.to_wire()

    def recv_beating(want, timeout_s):
        """The next wanted message, heartbeating meanwhile (a silent supervisor makes the driver hold)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            fake.send("heartbeat")
            if fake.sock.poll(100):
                _, *frames = fake.sock.recv_multipart()
                msg = wire.decode(frames)
                if want(msg):
                    return msg
        raise AssertionError(f"no wanted message within {timeout_s} s")

    def executed():
        return (tmp_path / "exec.log").read_text().splitlines()

    fake.recv(want=lambda m: m.t == "register")
    fake.send("reply", {"result": "ok"})
    recv_beating(lambda m: m.t == "device_state" and m.body["state"] == "idle", 10)
    for job, then in ((1, "job_cancel"), (2, "job_pause")):
        ran = len(executed())
        fake.send("job_start", {"job": job, "start_op": 0, "line_base": 1, "resume": False, "n_ops": len(long), "program": body}, arrays)
        fake.send(then, {"job": job})
        if then == "job_pause":
            with pytest.raises(AssertionError):  # paused (a loaded machine may let its first lines through)
                recv_beating(lambda m: m.t == "job_end", 1.0)
            paused_at = len(executed())
            with pytest.raises(AssertionError):
                recv_beating(lambda m: m.t == "job_end", 0.5)
            assert len(executed()) == paused_at  # nothing runs while paused
            fake.send("job_cancel", {"job": job})
        end = recv_beating(lambda m: m.t == "job_end", 30)
        assert (end.body["job"], end.body["state"]) == (job, "cancelled")
        # not lost: the job stopped near its start (a few lines when the loop is slow), not at op 20000
        assert end.body["op"] < len(long) // 4 and len(executed()) - ran < len(long) // 4
    assert driver.poll() is None


def test_a_cancel_between_accepting_a_job_and_streaming_it_is_honoured(tmp_path):
    """The deterministic half of the test above: on a real printer device and simulator, a cancel that
    comes after the job was accepted and before run_job streams stops the job before its first line."""
    from drivers.printer import PrinterDevice
    from drivers.runtime import JobOutcome

    link = tmp_path / "printer.tty"
    sim = start_simulator(tmp_path, link)
    sim.stdout.readline()
    device = PrinterDevice(str(link), 250000, 4)
    try:
        device.connect()
        program = parse("G1 X10 Y10 F3000\nG1 X20 Y10\n" * 50)
        device.accept_job()
        device.cancel()  # the job thread has not begun: run_job must stream under the cancelled control
        with pytest.raises(JobOutcome) as outcome:
            device.run_job(program, 0, 1, "", lambda op: None)
        assert outcome.value.state == "cancelled" and outcome.value.last_op == -1
        device.accept_job()  # the next job starts afresh: the last job's cancel does not carry over
        assert device.run_job(program, 0, 1, "", lambda op: None) == len(program) - 1
    finally:
        device.close()
        sim.terminate()
        sim.wait(10)
