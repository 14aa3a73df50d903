"""The mill driver process: the shared runtime plus a grbl streamer on a pyserial URL.

    python -m drivers.mill --name mill --port /dev/ttyUSB0 --supervisor ipc:///…/drivers.sock

`ismctl serve` starts one per mill in the cell config; it can also run on the
mill's own computer, connecting to a supervisor elsewhere.  Device states and
what grbl's alarms do to jobs: docs/mill-driver.md.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time

from ismctl.program import Program

from .grbl import GrblClosed, GrblCommandError, GrblStreamer, StreamControl, is_system_command
from .runtime import JobOutcome, StreamingDevice, driver_arguments, run_driver
from .transport import open_port

log = logging.getLogger("ismctl.driver.mill")

CONNECT_TIMEOUT_S = 10.0
TELEMETRY_PERIOD_S = 0.25
MOVING_STATES = ("Run", "Jog", "Home")
UNLOCK_HINT = "'$H'|'$X' to unlock (`ismctl home` or `ismctl unlock`)"


class MillDevice(StreamingDevice):
    """A grbl 1.1 mill behind one serial URL (see drivers.runtime.Device)."""

    device_class = "mill"

    def __init__(self, url: str, baud: int, rx_buffer: int, status_interval: float = 0.2):
        self.url, self.baud, self.rx_buffer, self.status_interval = url, baud, rx_buffer, status_interval
        self.streamer: GrblStreamer | None = None
        self.control: StreamControl | None = None
        self._progress = None
        self._idle = threading.Event()  # no job is streaming
        self._idle.set()
        self._last_telemetry = 0.0
        self.build: dict = {}  # grbl's $I: version, options, planner blocks, RX buffer

    # ------------------------------------------------------------ connect
    def connect(self) -> dict:
        self.close()
        port = open_port(self.url, self.baud)
        self.streamer = GrblStreamer(port, rx_buffer=self.rx_buffer, on_event=self._on_event, status_interval=self.status_interval)
        try:
            parser = self._greet(self.streamer)
        except (TimeoutError, GrblClosed, GrblCommandError) as exc:
            self.close()
            raise ConnectionError(f"{self.url}: no grbl handshake: {exc}") from None
        s = self.streamer.settings
        return {"port": self.url, "firmware": self.streamer.welcome, "locked": self.streamer.locked, "parser": parser,
                "build": self.build, "rx_buffer": self.streamer.limit + 1,
                "homing": s.get(22) == "1", "soft_limits": s.get(20) == "1", "hard_limits": s.get(21) == "1",
                "travel_mm": [float(s.get(n, "nan")) for n in (130, 131, 132)]}

    def _greet(self, streamer: GrblStreamer) -> str:
        """Meet grbl in whatever state the last host left it, and leave it reset and empty.

        A machine still running a previous host's lines is waited for (a reset in
        motion loses its position); a held one is stopped and flushed; grbl in a
        critical alarm answers no '?' and only a reset brings it back."""
        try:
            state = streamer.wait_for(lambda: streamer.status.get("state"), 1.0, "no status report")
        except TimeoutError:
            state = None  # critical alarm (or a board still booting): the reset below answers
        if state in MOVING_STATES:
            log.warning("grbl is in state %s from a previous host: waiting for it to stop", state)
            streamer.wait_for(lambda: streamer.status.get("state") not in MOVING_STATES, CONNECT_TIMEOUT_S * 3, f"grbl still in {state}")
            state = streamer.status.get("state")
        if state == "Hold":
            streamer.stop_and_flush()
        else:
            streamer.soft_reset(CONNECT_TIMEOUT_S)
        streamer.read_settings(CONNECT_TIMEOUT_S)  # its answer follows the unlock message: the lock is known
        build = streamer.build_info(CONNECT_TIMEOUT_S)
        reported = build.get("rx_buffer")
        if reported is not None and reported < self.rx_buffer:
            # counting against a buffer larger than the board's would overflow it
            log.warning("grbl reports a %d-byte RX buffer, not the configured %d: counting against %d", reported, self.rx_buffer, reported)
            streamer.use_rx_buffer(reported)
        self.build = build
        return streamer.parser_state(CONNECT_TIMEOUT_S)

    # ------------------------------------------------------------- events
    def _on_event(self, kind: str, data: dict) -> None:
        """Called on the streamer's reader thread: translate, queue, return."""
        runtime = self.runtime
        streamer = self.streamer
        if kind == "progress":
            self._report_progress(data["op"])
        elif kind == "status":
            now = time.monotonic()
            if now - self._last_telemetry >= TELEMETRY_PERIOD_S:
                self._last_telemetry = now
                runtime.report("telemetry", **_telemetry(data))
        elif kind == "alarm":
            if streamer is not None and streamer.estopped:
                runtime.set_state("estop", f"emergency stop: {data['text']}")
            elif not data["expected"]:
                runtime.set_state("fault", data["text"])
        elif kind == "reset":
            if streamer is not None and streamer.estopped:
                if runtime.machine.state != "estop":  # else the ALARM:3 before this said it better
                    runtime.set_state("estop", "emergency stop: grbl was reset (0x18)")
            elif not data["expected"]:
                runtime.report("event", kind="firmware_reset", job=runtime.current_job)
        elif kind == "message":
            runtime.report("event", kind="message", text=data["text"], job=runtime.current_job)
        elif kind in ("error", "warning"):
            runtime.report("event", kind="warning", text=data["text"], op=data.get("op"), job=runtime.current_job)
        elif kind == "disconnected":
            runtime.link_lost(data.get("text", "serial link lost"))

    # --------------------------------------------------------------- jobs
    def job_trigger(self, program: Program) -> str:
        return "home" if len(program) and program.commands[0].strip().upper() == "$H" else "run"

    def attention(self) -> str:
        streamer = self.streamer
        if streamer is None or not streamer.locked:
            return ""
        return f"{streamer.alarm}; {UNLOCK_HINT}" if streamer.alarm else f"homing required: {UNLOCK_HINT}"

    def run_job(self, program: Program, start_op: int, line_base: int, resume: str, report) -> int:
        streamer = self.streamer
        if streamer is None:
            raise ConnectionError("not connected")
        if resume == "auto":
            # grbl numbers no lines: which of the lines it had taken ran is unknown, so a person decides.
            raise JobOutcome("interrupted", f"the mill's job was cut off and grbl cannot say which buffered lines ran; "
                             f"check the part, then `ismctl resume` (from op {start_op}) or `ismctl cancel`", start_op - 1)
        if streamer.locked and start_op < len(program) and not is_system_command(program.commands[start_op]):
            raise JobOutcome("failed", f"the mill is locked ({self.attention()}); nothing was sent", start_op - 1)
        if resume:
            self.runtime.report("event", kind="warning", job=self.runtime.current_job,
                                text=f"resuming at op {start_op}, after the last op grbl acknowledged; lines it had buffered were flushed")
        self._progress = report
        self._idle.clear()
        try:
            result = streamer.stream(program.commands, start_op, self.control)
        finally:
            self._progress = None
            self._idle.set()
        log.info("stream %s at op %d: %d lines, %d bytes sent (at most %d in grbl's buffer), %.2f s",
                 result.status, result.last_op, result.lines_sent, result.bytes_sent, result.peak_bytes, result.elapsed_s)
        return self.job_result(result)

    def pause(self) -> None:
        if self.control is not None and self.streamer is not None:
            self.control.pause()
            self.streamer.feed_hold()

    def resume(self) -> None:
        if self.control is not None and self.streamer is not None:
            self.streamer.cycle_start()
            self.control.resume()

    def safe_hold(self, final: bool) -> None:
        """Feed hold with the spindle stopped, then the job is released (held, flushed, unlocked).

        ``final`` waits for that to finish, since the process exits next; an idle
        mill whose spindle still turns is reset, which stops it."""
        streamer = self.streamer
        if streamer is None:
            return
        try:
            if not self._idle.is_set():
                streamer.feed_hold(spindle_stop=True)
                self.cancel()
            elif final and streamer.status.get("spindle"):
                streamer.soft_reset()
        except (GrblClosed, TimeoutError) as exc:
            log.error("could not hold the mill safe: %s", exc)
        if final and not self._idle.wait(15.0):
            log.error("the job did not stop within 15 s of the feed hold")

    def reset(self) -> None:
        """grbl's reset is the 0x18 byte; the runtime then connects afresh."""
        streamer, self.streamer = self.streamer, None
        if streamer is None:
            return
        try:
            streamer.realtime(b"\x18")
        except GrblClosed:
            pass
        streamer.close()


def _telemetry(status: dict) -> dict:
    """A status report as telemetry; ``firmware_state`` is grbl's own word (Run, Hold:0, Alarm...)."""
    state = status["state"] + (f":{status['substate']}" if status.get("substate") is not None else "")
    out = {"firmware_state": state}
    for key in ("mpos", "wpos", "feed", "spindle", "overrides", "planner_free", "rx_free"):
        if key in status:
            out[key] = status[key]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = driver_arguments("python -m drivers.mill", __doc__, baud=115200)
    ap.add_argument("--rx-buffer", type=int, default=128, help="bytes grbl's serial RX buffer holds (grbl 1.1 on a 328p: 128)")
    ap.add_argument("--status-interval", type=float, default=0.2, help="seconds between '?' status polls (>= 0.2: grbl asks for at most 5 Hz)")
    args = ap.parse_args(argv)
    if args.status_interval < 0.2:
        ap.error("--status-interval must be at least 0.2 s (grbl's docs: poll at no more than 5 Hz)")
    return run_driver(MillDevice(args.port, args.baud, args.rx_buffer, args.status_interval), args)


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
