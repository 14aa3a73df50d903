"""The device-independent half of every driver process.

The main thread owns the DEALER socket to the supervisor (ZeroMQ sockets are
not thread-safe): it registers, exchanges heartbeats, and turns supervisor
commands into calls on the device.  A device thread keeps the serial link up
(reconnecting with backoff) and runs jobs.  Reports from the device side reach
the main thread through a queue plus a self-pipe that wakes its poll at once,
so an e-stop confirmation is never delayed by a poll timeout.

What is specific to a device class lives behind :class:`Device`.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import zmq

from ismctl import bus, wire
from ismctl.logs import setup_logging
from ismctl.machines import DEVICE, Refused, StateModel
from ismctl.program import Program, ProgramError
from ismctl.wire import Message, Result

from .transport import Backoff, PortUnavailable, StreamControl

log = logging.getLogger("ismctl.driver")


class JobOutcome(Exception):
    """Raised by a device when a job cannot go on; ``state`` is failed, cancelled or interrupted."""

    def __init__(self, state: str, reason: str, last_op: int):
        super().__init__(reason)
        self.state, self.reason, self.last_op = state, reason, last_op


@dataclass
class IncomingJob:
    """A job whose program is still arriving, one chunk message at a time."""

    job: int
    n_ops: int
    start_op: int
    line_base: int
    resume: str  # "" for a fresh start, else who resumes it: "auto" (the cell) or "operator"
    received: int = 0
    parts: list = field(default_factory=list)


class Device(Protocol):
    """What a device class provides; every method but run_job returns quickly."""

    device_class: str

    def connect(self) -> dict:
        """Open the port and greet the firmware; raise PortUnavailable or ConnectionError."""

    def run_job(self, program: Program, start_op: int, line_base: int, resume: str, report) -> int:
        """Stream the program from start_op (exactly: resume finds the firmware's place); return the last op. Blocks.

        ``resume`` is "" for a fresh start, "auto" when the cell resumes on its own
        (which must stop if the device lost its state), "operator" when a person asked."""

    def job_trigger(self, program: Program) -> str:
        """The device-machine trigger a job starts with: "run", or "home" for a homing cycle."""

    def attention(self) -> str:
        """What the operator must do before the device runs a job ("" when nothing), e.g. grbl's
        "'$H'|'$X' to unlock"; reported as the reason of the idle state."""

    def accept_job(self) -> None:
        """A job was accepted (on the driver's loop, before its thread runs it): a pause or cancel
        from now on applies to it, also one that arrives before run_job starts streaming."""

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def cancel(self) -> None: ...
    def emergency_stop(self) -> None: ...
    def safe_hold(self, final: bool) -> None:
        """Stop feeding the device and hold it safe.  ``final``: the driver is stopping for good, so
        also switch off what must not run unattended (heaters, spindle); otherwise (the supervisor
        is away) keep what a resume needs."""

    def reset(self) -> None: ...
    def close(self) -> None: ...
    def attach(self, runtime: "DriverRuntime") -> None:
        """Receive the runtime, whose set_state() and report() the device calls from any thread."""


class StreamingDevice:
    """What every device that streams through one ``streamer`` does alike: the runtime it reports
    to, and cancel / e-stop / close of the running job (``control``: a StreamControl)."""

    streamer = None
    control = None
    runtime: "DriverRuntime | None" = None
    _progress = None  # run_job's report(op) while a job streams

    def attach(self, runtime: "DriverRuntime") -> None:
        self.runtime = runtime

    def accept_job(self) -> None:
        """The accepted job's StreamControl, made now: run_job streams under it, so a pause or cancel
        that comes between the job_start and the stream's first line is not lost (nor sent to the
        last job's finished control)."""
        self.control = StreamControl()

    def _report_progress(self, op: int) -> None:
        """On the reader thread: take ``_progress`` once, since run_job clears it on its own thread."""
        report = self._progress
        if report is not None:
            report(op)

    def cancel(self) -> None:
        if self.control is not None:
            self.control.cancel()

    def emergency_stop(self) -> None:
        if self.streamer is not None:
            self.streamer.emergency_stop()

    def close(self) -> None:
        streamer, self.streamer = self.streamer, None
        if streamer is not None:
            streamer.close()

    @staticmethod
    def job_result(result) -> int:
        """A stream's end (``status``, ``reason``, ``last_op``) as run_job returns it: the last op when
        completed; ConnectionError when the link broke (the job pauses); JobOutcome otherwise."""
        if result.status == "completed":
            return result.last_op
        if result.status == "disconnected":
            raise ConnectionError(result.reason)
        raise JobOutcome("cancelled" if result.status == "cancelled" else "failed", result.reason, result.last_op)


class DriverRuntime:
    def __init__(self, device: Device, name: str, supervisor: str, heartbeat_s: float = 0.5):
        self.device = device
        self.name = name
        self.ctx = zmq.Context.instance()
        self.endpoint = supervisor
        self.factory = wire.MessageFactory(f"driver:{name}:{os.getpid()}")
        self.machine = StateModel(DEVICE)
        self._state_lock = threading.Lock()
        self.heartbeat_s = heartbeat_s
        self.reports: queue.SimpleQueue = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.current_job: int | None = None
        self.incoming: IncomingJob | None = None  # a program arriving in chunks
        self.stop = threading.Event()
        self.connected = threading.Event()
        self.reset_requested = threading.Event()
        self.holding = False  # the supervisor is gone: the job is released, not ended
        self.final_stop = True  # False when the supervisor died: hold the job for its resume
        self.replies = bus.ReplyCache(256)
        self._last_register = 0.0
        self.sock = self._connect_socket()
        device.attach(self)

    def _connect_socket(self) -> zmq.Socket:
        sock = bus.socket(self.ctx, zmq.DEALER)
        sock.connect(self.endpoint)
        return sock

    # ------------------------------------------------------ device-side API
    def report(self, t: str, **body) -> None:
        """Thread-safe: queue a message for the supervisor and wake the main loop."""
        self.reports.put((t, body))
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # the pipe is full, so the loop is already awake

    def link_lost(self, reason: str) -> None:
        """The serial link broke: reconnect (with backoff) and say so."""
        self.connected.clear()
        self.set_state("lost", reason)

    def set_state(self, trigger: str, reason: str = "") -> None:
        """Thread-safe: the reader, device and main threads all move the device machine."""
        with self._state_lock:
            try:
                self.machine.trigger_or_refuse(trigger)
            except Refused:
                return  # already there, or not meaningful from here: nothing to report
            state = self.machine.state
        self.report("device_state", state=state, reason=reason)

    # ---------------------------------------------------------- main thread
    def run(self) -> int:
        def stop(signum, _frame):
            # SIGHUP: our supervisor died (PR_SET_PDEATHSIG); keep what the job needs to resume (heaters).
            self.final_stop = signum != signal.SIGHUP
            self.stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, stop)
        self._register()  # before the device thread reports anything
        registered_at = time.monotonic()
        worker = threading.Thread(target=self._device_loop, name=f"{self.name}-device", daemon=True)
        worker.start()
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        last_heard = time.monotonic()
        next_heartbeat = 0.0
        while not self.stop.is_set():
            ready = dict(poller.poll(self.heartbeat_s * 250))
            now = time.monotonic()
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            self._send_reports()
            if self.sock in ready:
                while self.sock.poll(0):
                    msg = self._recv()
                    if msg is not None:
                        last_heard = now
                        self._handle(msg)
            if now - last_heard > 3 * self.heartbeat_s:
                if not self.holding:
                    log.warning("supervisor lost: holding the device safe and re-registering")
                    self.holding = True
                    self.device.safe_hold(final=False)
                if now - registered_at > self.heartbeat_s * 2:
                    # A new socket: the old one may queue stale messages for a dead peer.
                    poller.unregister(self.sock)
                    self.sock.close(0)
                    self.sock = self._connect_socket()
                    poller.register(self.sock, zmq.POLLIN)
                    self._register()
                    registered_at = now
            elif self.holding and self.current_job is None:
                self.holding = False
            if now >= next_heartbeat:
                self._send("heartbeat", {"state": self.machine.state})
                next_heartbeat = now + self.heartbeat_s
        log.info("stopping: holding the device safe (%s)", "for good" if self.final_stop else "kept for resume")
        self.holding = True
        self.device.safe_hold(final=self.final_stop)
        self._send_reports()
        self.device.close()
        self.sock.close(linger=200)
        return 0

    def _reregister(self) -> None:
        """Register again, at most once per heartbeat interval (every message sent meanwhile draws the same answer)."""
        now = time.monotonic()
        if now - self._last_register >= self.heartbeat_s:
            log.warning("the supervisor no longer knows this driver: registering again")
            self._register()

    def _register(self) -> None:
        self._last_register = time.monotonic()
        self._send("register", {"device": self.name, "device_class": self.device.device_class, "pid": os.getpid(), "state": self.machine.state})

    def _send(self, t: str, body: dict, arrays=()) -> None:
        try:
            self.sock.send_multipart(wire.encode(self.factory.make(t, body, arrays)), flags=zmq.NOBLOCK)
        except zmq.Again:
            pass  # nobody is listening; heartbeats and registration recover

    def _send_reports(self) -> None:
        while True:
            try:
                t, body = self.reports.get_nowait()
            except queue.Empty:
                return
            self._send(t, body)

    def _recv(self) -> Message | None:
        frames = self.sock.recv_multipart()
        try:
            return wire.decode(frames)
        except wire.WireError as exc:
            log.warning("refused a message from the supervisor: %s", exc.reason)
            self._send("reply", {"result": Result.INVALID.value, "error": exc.reason})
            return None

    def _handle(self, msg: Message) -> None:
        if msg.t in ("heartbeat", "reply"):
            if msg.t == "reply" and msg.body.get("error") == "register first":
                self._reregister()  # the supervisor took us for lost (it was busy): we are still here
            elif msg.t == "reply" and msg.body.get("result") != "ok":
                log.warning("supervisor answered %s: %s", msg.body.get("result"), msg.body.get("error", ""))
            return
        if msg.t == "estop":  # first, before any bookkeeping
            self.device.emergency_stop()
        cached = self.replies.get(msg.src, msg.id)
        if cached is not None:
            self.sock.send_multipart(wire.encode(cached))
            return
        result, error = self._command(msg)
        reply = self.factory.reply(msg, result, error)
        self.replies.put(msg.src, msg.id, reply)
        self.sock.send_multipart(wire.encode(reply))

    def _command(self, msg: Message) -> tuple[Result, str]:
        t, body = msg.t, msg.body
        if t == "estop":
            return Result.OK, ""
        if t == "job_start":
            if self.current_job is not None and self.current_job != body["job"]:
                return Result.BUSY, f"already running job {self.current_job}"
            self.current_job = body["job"]
            self.device.accept_job()
            resume = "auto" if body.get("auto") else "operator" if body.get("resume") else ""
            self.incoming = IncomingJob(body["job"], body["n_ops"], body["start_op"], body["line_base"], resume)
            return self._take_chunk(0, body["program"], msg.arrays)
        if t == "job_chunk":
            if self.incoming is None or body["job"] != self.incoming.job:
                return Result.VALIDATION_ERROR, f"no job {body['job']} is being received"
            return self._take_chunk(body["offset"], body["program"], msg.arrays)
        if body.get("job") not in (None, self.current_job):
            return Result.VALIDATION_ERROR, f"job {body.get('job')} is not running here"
        actions = {
            "job_pause": lambda: (self.device.pause(), self.set_state("pause")),
            "job_resume": lambda: (self.device.resume(), self.set_state("run")),
            "job_cancel": self.device.cancel,
            "device_reset": self.reset_requested.set,
        }
        if t not in actions:
            return Result.INVALID, f"{t!r} is not a driver command"
        actions[t]()
        return Result.OK, ""

    def _take_chunk(self, offset: int, program_body: dict, arrays) -> tuple[Result, str]:
        incoming = self.incoming
        try:
            chunk = Program.from_wire(program_body, arrays)
        except ProgramError as exc:
            self.incoming, self.current_job = None, None
            return Result.VALIDATION_ERROR, f"bad program chunk at op {offset}: {exc}"
        if offset != incoming.received:
            self.incoming, self.current_job = None, None
            return Result.VALIDATION_ERROR, f"program chunk at op {offset}, expected op {incoming.received}"
        incoming.parts.append(chunk)
        incoming.received += len(chunk)
        if incoming.received >= incoming.n_ops:
            self.incoming = None
            program = Program.concat(incoming.parts) if len(incoming.parts) > 1 else incoming.parts[0]
            self.jobs.put((incoming.job, program, incoming.start_op, incoming.line_base, incoming.resume))
        return Result.OK, ""

    # -------------------------------------------------------- device thread
    def _device_loop(self) -> None:
        backoff = Backoff()
        while not self.stop.is_set():
            if not self.connected.is_set():
                self.set_state("connect")
                try:
                    info = self.device.connect()
                except (PortUnavailable, ConnectionError, OSError) as exc:
                    delay = backoff.next()
                    self.set_state("lost", str(exc))
                    self.report("event", kind="connect_failed", reason=str(exc), retry_s=delay)
                    self.stop.wait(delay)
                    continue
                backoff.reset()
                self.connected.set()
                self.reset_requested.clear()
                self.set_state("connected", self.device.attention())
                self.report("event", kind="connected", **info)
            try:
                job = self.jobs.get(timeout=0.1)
            except queue.Empty:
                if self.reset_requested.is_set():
                    self._reset_device()
                continue
            self._run_job(*job)

    def _reset_device(self) -> None:
        self.reset_requested.clear()
        self.device.reset()
        self.connected.clear()
        self.set_state("reset")

    def _run_job(self, job_id: int, program: Program, start_op: int, line_base: int, resume: str) -> None:
        self.set_state(self.device.job_trigger(program))
        state, reason, last_op = "completed", "", start_op - 1
        try:
            last_op = self.device.run_job(program, start_op, line_base, resume, lambda op: self.report("progress", job=job_id, op=op))
        except JobOutcome as outcome:
            state, reason, last_op = outcome.state, outcome.reason, outcome.last_op
        except (ConnectionError, OSError) as exc:
            # The link broke mid-job: the supervisor pauses the job and resumes it on reconnect.
            log.warning("job %d: serial link lost: %s", job_id, exc)
            self.current_job = None
            self.link_lost(f"serial link lost: {exc}")
            return
        self.current_job = None
        if self.machine.state not in ("estop", "fault"):
            self.set_state("done", self.device.attention())
        if self.holding and state == "cancelled":
            log.info("job %d released at op %d while the supervisor is away", job_id, last_op)
            return
        self.report("job_end", job=job_id, state=state, reason=reason, op=last_op)


def driver_arguments(prog: str, doc: str, baud: int) -> argparse.ArgumentParser:
    """The options every driver process takes (its device class adds its own)."""
    ap = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="device name, as in the cell config")
    ap.add_argument("--port", required=True, help="pyserial URL: /dev/ttyACM0, socket://host:port, a simulator's pty")
    ap.add_argument("--baud", type=int, default=baud, help=f"serial baud rate (default {baud})")
    ap.add_argument("--supervisor", required=True, help="the supervisor's driver endpoint (tcp:// or ipc://)")
    ap.add_argument("--heartbeat", type=float, default=0.5, help="heartbeat interval in seconds")
    ap.add_argument("--log-file", type=Path, help="also log to this file")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap


def run_driver(device: Device, args: argparse.Namespace) -> int:
    """Log set-up, then the runtime's loop until a signal stops it."""
    setup_logging(args.log_file, args.verbose)
    return DriverRuntime(device, args.name, args.supervisor, args.heartbeat).run()
