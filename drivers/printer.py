"""The printer driver process: the shared runtime plus a Marlin streamer on a pyserial URL.

    python -m drivers.printer --name printer --port /dev/ttyACM0 --supervisor ipc:///…/drivers.sock

`ismctl serve` starts one per printer in the cell config; it can also run on
the printer's own computer, connecting to a supervisor elsewhere.
"""

from __future__ import annotations

import logging
import signal
import sys
import time

from ismctl.program import Program

from .marlin import MarlinStreamer, StreamControl, StreamerClosed
from .runtime import JobOutcome, StreamingDevice, driver_arguments, run_driver
from .transport import open_port

log = logging.getLogger("ismctl.driver.printer")

HANDSHAKE_TIMEOUT_S = 10.0
HEATERS_OFF = ("M104 S0", "M140 S0")
HEATERS_OFF_TIMEOUT_S = 2.0
TELEMETRY_PERIOD_S = 0.25
HEAT_AND_WAIT = frozenset({"M109", "M190", "M191"})  # busy on one of these: the device is heating


class PrinterDevice(StreamingDevice):
    """A Marlin printer behind one serial URL (see drivers.runtime.Device)."""

    device_class = "printer"

    def __init__(self, url: str, baud: int, window: int):
        self.url, self.baud, self.window = url, baud, window
        self.streamer: MarlinStreamer | None = None
        self.control: StreamControl | None = None
        self._progress = None
        self._program: Program | None = None
        self._last_telemetry = 0.0

    def connect(self) -> dict:
        self.close()
        port = open_port(self.url, self.baud)
        self.streamer = MarlinStreamer(port, window=self.window, on_event=self._on_event)
        try:
            info = self.streamer.handshake(timeout=HANDSHAKE_TIMEOUT_S)
        except (TimeoutError, StreamerClosed) as exc:
            self.streamer.close()
            self.streamer = None
            raise ConnectionError(f"{self.url}: no Marlin handshake: {exc}") from None
        return {"port": self.url, "firmware": info.get("firmware_name") or "unknown", "autoreport": bool(info.get("autoreport"))}

    def _on_event(self, kind: str, data: dict) -> None:
        """Called on the streamer's reader thread: translate, queue, return."""
        runtime = self.runtime
        if kind == "progress":
            self._report_progress(data["op"])
            if runtime.machine.state == "heating":
                runtime.set_state("run")
        elif kind == "busy":
            program, streamer = self._program, self.streamer
            if program is not None and streamer is not None:
                waiting_on = streamer.last_confirmed_op + 1
                if 0 <= waiting_on < len(program) and program.commands[waiting_on].split(" ", 1)[0].upper() in HEAT_AND_WAIT:
                    runtime.set_state("heat")
        elif kind == "telemetry":
            now = time.monotonic()
            if now - self._last_telemetry >= TELEMETRY_PERIOD_S:  # a fast simulator reports 100s per second
                self._last_telemetry = now
                runtime.report("telemetry", **data)
        elif kind == "resend":
            runtime.report("event", kind="resend", line=data.get("line"), op=data.get("op"), job=runtime.current_job)
        elif kind == "warning":
            runtime.report("event", kind="warning", text=data.get("text", ""), op=data.get("op"), job=runtime.current_job)
        elif kind == "fault":
            runtime.set_state("fault", data.get("text", "firmware fault"))
        elif kind == "halted":
            runtime.set_state("estop", data.get("text", "firmware halted"))
        elif kind == "disconnected":
            runtime.link_lost(data.get("text", "serial link lost"))
        elif kind == "reset":
            runtime.report("event", kind="firmware_reset", job=runtime.current_job)

    def run_job(self, program: Program, start_op: int, line_base: int, resume: str, report) -> int:
        streamer = self.streamer
        if streamer is None:
            raise ConnectionError("not connected")
        fresh = True
        if resume:
            try:
                last_line = streamer.probe_last_line()
            except TimeoutError as exc:
                raise ConnectionError(f"firmware did not answer the line-number probe: {exc}") from None
            if line_base - 1 <= last_line < line_base + len(program):
                start_op, fresh = last_line + 1 - line_base, False
                log.info("resuming at op %d: the firmware accepted line %d last", start_op, last_line)
            elif resume == "auto":
                # Reset firmware has lost temperatures, position and its queue: a person decides.
                raise JobOutcome("interrupted", f"the firmware was reset while the job was away (it is at line {last_line}); "
                                 f"check the part, then `ismctl resume` (from op {start_op}) or `ismctl cancel`", start_op - 1)
            else:
                log.warning("firmware is at line %d, not in this job's lines (it was reset): resuming from the "
                            "supervisor's last confirmed op, %d, as the operator asked", last_line, start_op)
                self.runtime.report("event", kind="warning", job=self.runtime.current_job,
                                    text=f"firmware was reset (last line {last_line}); resuming from confirmed op {start_op}")
        self._progress, self._program = report, program
        try:
            result = streamer.stream(program.commands, start_op, line_base, self.control, fresh=fresh)
        finally:
            self._progress = self._program = None
        log.info("stream %s at op %d: %d lines sent, %d resends, %d probes, %.2f s",
                 result.status, result.last_op, result.lines_sent, result.resends, result.probes, result.elapsed_s)
        return self.job_result(result)

    def job_trigger(self, program: Program) -> str:
        return "run"  # heating shows up later, when the firmware says busy on M109/M190

    def attention(self) -> str:
        return ""

    def pause(self) -> None:
        if self.control is not None:
            self.control.pause()

    def resume(self) -> None:
        if self.control is not None:
            self.control.resume()

    def safe_hold(self, final: bool) -> None:
        """Stop feeding the firmware (lines in flight finish); for good (``final``): heaters off too."""
        self.cancel()
        if final and self.streamer is not None:
            for cmd in HEATERS_OFF:
                try:  # wait for each ok: the process may exit right after this
                    self.streamer.query(cmd, timeout=HEATERS_OFF_TIMEOUT_S)
                except (StreamerClosed, TimeoutError) as exc:
                    log.error("could not switch the heaters off (%s): %s", cmd, exc)
                    return

    def reset(self) -> None:
        """After a kill the board needs a reset: pulse DTR (the auto-reset line of Arduino-style boards)."""
        streamer, self.streamer = self.streamer, None
        if streamer is None:
            return
        try:
            streamer.port.dtr = True
            streamer.port.dtr = False
        except (OSError, ValueError, AttributeError):
            pass  # a pty or socket has no reset line; a simulator is power-cycled by its supervisor
        streamer.close()


def main(argv: list[str] | None = None) -> int:
    ap = driver_arguments("python -m drivers.printer", __doc__, baud=250000)
    ap.add_argument("--window", type=int, default=4, help="lines in flight (Marlin's BUFSIZE is 4)")
    args = ap.parse_args(argv)
    return run_driver(PrinterDevice(args.port, args.baud, args.window), args)


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
