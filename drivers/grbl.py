"""grbl 1.1 host streamer: the heart of the mill driver.

One :class:`GrblStreamer` owns an open serial port (see ``drivers.transport``).
A reader thread parses every line grbl sends; a poller thread asks for a status
report (``?``) every ``status_interval`` seconds (grbl's docs: no more than 5 Hz);
the thread that calls :meth:`GrblStreamer.stream` sends program lines.  Every
line write goes through one lock; real-time bytes (``? ! ~`` 0x18 0x85 0x9E)
need none, since grbl takes them out of the byte stream before its RX buffer.

Line discipline (docs/mill-driver.md tells the whole story):

* **Character counting**: grbl's serial RX buffer holds ``rx_buffer - 1`` bytes
  (127 of 128).  The streamer remembers the byte length of every line sent and
  not yet answered, and sends the next one only while the sum plus its length
  fits.  Every ``ok`` or ``error:N`` answers the oldest outstanding line, in
  order, so the buffer can never overflow (grbl drops overflowing bytes
  silently, and a damaged line may run as something else).
* ``$`` system commands other than ``$J=`` jogs (settings, ``$H``, ``$X``, ...)
  are sent and waited for alone, once everything before them has been answered
  and grbl reports Idle or Alarm: grbl refuses them while moving (error:8), and
  its EEPROM writes stop the serial interrupt (grbl's docs: never stream settings).
* An ``ok`` means the block is in grbl's planner, not that it has run; the last
  op grbl acknowledged is what progress reports.  A stream is complete once every
  line is acknowledged and two status reports in a row say Idle.
* ``error:N`` on a program line fails the stream naming the op, the line and
  grbl's own text; the machine is held and flushed (see :meth:`stop_and_flush`),
  never left to run the lines behind the bad one.  ``ALARM:N`` ends it with
  grbl's alarm text.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .transport import LineLink, StreamControl, write_now

__all__ = [
    "GrblStreamer",
    "GrblResult",
    "GrblCommandError",
    "GrblClosed",
    "ERRORS",
    "ALARMS",
    "describe_error",
    "describe_alarm",
    "parse_status",
    "is_system_command",
    "check_line",
    "StreamControl",
]

WELCOME_PREFIX = "Grbl "  # "Grbl 1.1h ['$' for help]"
MSG_UNLOCK = "[MSG:'$H'|'$X' to unlock]"
MSG_UNLOCKED = "[MSG:Caution: Unlocked]"

RT_STATUS, RT_HOLD, RT_START, RT_RESET = b"?", b"!", b"~", b"\x18"
RT_JOG_CANCEL, RT_SPINDLE_STOP = b"\x85", b"\x9e"
#: States in which grbl runs nothing and takes ``$`` commands.
STILL_STATES = ("Idle", "Alarm", "Check")
#: Characters grbl acts on wherever they appear, even inside a comment.
REALTIME_CHARS = frozenset("?!~\x18")

#: grbl 1.1 error codes: (short message, description), worded as grbl's doc/csv/error_codes_en_US.csv.
ERRORS = {
    1: ("Expected command letter", "G-code words consist of a letter and a value. Letter was not found."),
    2: ("Bad number format", "Missing the expected G-code word value or numeric value format is not valid."),
    3: ("Invalid statement", "Grbl '$' system command was not recognized or supported."),
    4: ("Value < 0", "Negative value received for an expected positive value."),
    5: ("Setting disabled", "Homing cycle failure. Homing is not enabled via settings."),
    6: ("Value < 3 usec", "Minimum step pulse time must be greater than 3usec."),
    7: ("EEPROM read fail. Using defaults", "An EEPROM read failed. Auto-restoring affected EEPROM to default values."),
    8: ("Not idle", "Grbl '$' command cannot be used unless Grbl is IDLE. Ensures smooth operation during a job."),
    9: ("G-code lock", "G-code commands are locked out during alarm or jog state."),
    10: ("Homing not enabled", "Soft limits cannot be enabled without homing also enabled."),
    11: ("Line overflow", "Max characters per line exceeded. Received command line was not executed."),
    12: ("Step rate > 30kHz", "Grbl '$' setting value cause the step rate to exceed the maximum supported."),
    13: ("Check Door", "Safety door detected as opened and door state initiated."),
    14: ("Line length exceeded", "Build info or startup line exceeded EEPROM line length limit. Line not stored."),
    15: ("Travel exceeded", "Jog target exceeds machine travel. Jog command has been ignored."),
    16: ("Invalid jog command", "Jog command has no '=' or contains prohibited g-code."),
    17: ("Setting disabled", "Laser mode requires PWM output."),
    20: ("Unsupported command", "Unsupported or invalid g-code command found in block."),
    21: ("Modal group violation", "More than one g-code command from same modal group found in block."),
    22: ("Undefined feed rate", "Feed rate has not yet been set or is undefined."),
    23: ("Invalid gcode ID:23", "G-code command in block requires an integer value."),
    24: ("Invalid gcode ID:24", "More than one g-code command that requires axis words found in block."),
    25: ("Invalid gcode ID:25", "Repeated g-code word found in block."),
    26: ("Invalid gcode ID:26", "No axis words found in block for g-code command or current modal state which requires them."),
    27: ("Invalid gcode ID:27", "Line number value is invalid."),
    28: ("Invalid gcode ID:28", "G-code command is missing a required value word."),
    29: ("Invalid gcode ID:29", "G59.x work coordinate systems are not supported."),
    30: ("Invalid gcode ID:30", "G53 only allowed with G0 and G1 motion modes."),
    31: ("Invalid gcode ID:31", "Axis words found in block when no command or current modal state uses them."),
    32: ("Invalid gcode ID:32", "G2 and G3 arcs require at least one in-plane axis word."),
    33: ("Invalid gcode ID:33", "Motion command target is invalid."),
    34: ("Invalid gcode ID:34", "Arc radius value is invalid."),
    35: ("Invalid gcode ID:35", "G2 and G3 arcs require at least one in-plane offset word."),
    36: ("Invalid gcode ID:36", "Unused value words found in block."),
    37: ("Invalid gcode ID:37", "G43.1 dynamic tool length offset is not assigned to configured tool length axis."),
    38: ("Invalid gcode ID:38", "Tool number greater than max supported value."),
}

#: grbl 1.1 alarm codes, worded as grbl's doc/csv/alarm_codes_en_US.csv.
ALARMS = {
    1: ("Hard limit", "Hard limit has been triggered. Machine position is likely lost due to sudden halt. Re-homing is highly recommended."),
    2: ("Soft limit", "Soft limit alarm. G-code motion target exceeds machine travel. Machine position retained. Alarm may be safely unlocked."),
    3: ("Abort during cycle", "Reset while in motion. Machine position is likely lost due to sudden halt. Re-homing is highly recommended."),
    4: ("Probe fail", "Probe fail. Probe is not in the expected initial state before starting probe cycle when G38.2 and G38.3 is not triggered and G38.4 and G38.5 is triggered."),
    5: ("Probe fail", "Probe fail. Probe did not contact the workpiece within the programmed travel for G38.2 and G38.4."),
    6: ("Homing fail", "Homing fail. The active homing cycle was reset."),
    7: ("Homing fail", "Homing fail. Safety door was opened during homing cycle."),
    8: ("Homing fail", "Homing fail. Pull off travel failed to clear limit switch. Try increasing pull-off setting or check wiring."),
    9: ("Homing fail", "Homing fail. Could not find limit switch within search distances. Try increasing max travel, decreasing pull-off distance, or check wiring."),
}


def describe_error(code: int) -> str:
    """``error:22 (Undefined feed rate: Feed rate has not yet been set or is undefined.)``"""
    short, text = ERRORS.get(code, ("Unknown error", "Not a grbl 1.1 error code."))
    return f"error:{code} ({short}: {text})"


def describe_alarm(code: int) -> str:
    """``ALARM:2 (Soft limit: Soft limit alarm. G-code motion target exceeds ...)``"""
    short, text = ALARMS.get(code, ("Unknown alarm", "Not a grbl 1.1 alarm code."))
    return f"ALARM:{code} ({short}: {text})"


def is_system_command(line: str) -> bool:
    """A ``$`` line grbl must get alone and idle (settings, ``$H``, ``$X``...); ``$J=`` jogs stream like G-code."""
    text = line.lstrip()
    return text.startswith("$") and not text[:3].upper() == "$J="


def check_line(line: str, limit: int) -> str | None:
    """Why grbl cannot be sent ``line`` as it is (None: it can)."""
    data = line.encode("utf-8", "replace")
    if len(data) + 1 > limit:
        return f"is {len(data) + 1} bytes with its newline; grbl's serial buffer takes {limit}"
    bad = sorted(REALTIME_CHARS.intersection(line))
    if bad:
        return f"contains {bad[0]!r}, which grbl acts on as a real-time command wherever it appears"
    if not line.isascii():
        return "contains non-ASCII characters, which grbl does not read"
    return None


_STATUS_FIELD = re.compile(r"([A-Za-z]+):(.*)")


def parse_status(line: str) -> dict | None:
    """``<Run|MPos:1.000,2.000,3.000|Bf:15,128|FS:500,8000|WCO:0.000,0.000,0.000>`` -> a dict.

    Keys: state ("Hold" for Hold:0/1), substate (int or None), mpos or wpos (list),
    planner_free, rx_free, feed, spindle, wco, overrides [feed, rapid, spindle],
    accessories (text), line (Ln), pins (Pn).  None when the line is not a report."""
    if not (line.startswith("<") and line.endswith(">")):
        return None
    parts = line[1:-1].split("|")
    state, _, sub = parts[0].partition(":")
    out: dict = {"state": state, "substate": int(sub) if sub.isdigit() else None}
    try:
        for part in parts[1:]:
            m = _STATUS_FIELD.fullmatch(part)
            if m is None:
                continue
            key, value = m.groups()
            numbers = lambda: [float(v) for v in value.split(",")]  # noqa: E731
            if key in ("MPos", "WPos", "WCO"):
                out[key.lower()] = numbers()
            elif key == "Bf":
                out["planner_free"], out["rx_free"] = (int(v) for v in value.split(","))
            elif key in ("FS", "F"):
                values = numbers()
                out["feed"] = values[0]
                if len(values) > 1:
                    out["spindle"] = values[1]
            elif key == "Ov":
                out["overrides"] = [int(v) for v in value.split(",")]
            elif key == "A":
                out["accessories"] = value
            elif key == "Ln":
                out["line"] = int(value)
            elif key == "Pn":
                out["pins"] = value
    except ValueError:
        return None
    return out


class GrblClosed(ConnectionError):
    """The serial link went away (port closed, device unplugged, simulator died)."""


class GrblCommandError(RuntimeError):
    """A command grbl answered with ``error:N`` (or could not answer: alarm, reset)."""

    def __init__(self, command: str, text: str, code: int | None = None):
        super().__init__(f"{command!r}: {text}")
        self.command, self.text, self.code = command, text, code


@dataclass
class GrblResult:
    """How a stream ended: ``status`` completed | cancelled | failed | alarm | halted | reset | disconnected."""

    status: str
    last_op: int  # the last op grbl acknowledged (start_op - 1 when none)
    reason: str = ""
    lines_sent: int = 0
    bytes_sent: int = 0
    peak_bytes: int = 0  # the most bytes unacknowledged at once: what grbl's RX buffer held at most
    elapsed_s: float = 0.0


@dataclass(eq=False)
class _Pending:
    """One line sent and not yet answered: a program op (op >= 0) or a command (query set)."""

    nbytes: int
    op: int = -1
    text: str = ""
    query: "_Query | None" = None


@dataclass(eq=False)
class _Query:
    command: str
    done: threading.Event = field(default_factory=threading.Event)
    lines: list = field(default_factory=list)
    error: str | None = None
    code: int | None = None


class GrblStreamer(LineLink):
    """Host side of grbl 1.1's serial protocol over an open pyserial port.

    ``on_event(kind, data)`` is called from the reader thread (keep it cheap) with
    kinds ``progress`` {"op"}, ``status`` (parse_status's dict), ``message``
    {"text"}, ``alarm`` {"code", "text", "expected"}, ``reset`` {"expected"},
    ``error`` {"op", "line", "code", "text"}, ``warning`` {"text", "op"} (a line the reader
    could not take), ``disconnected`` {"text"}.
    """

    closed_error = GrblClosed

    def __init__(self, port, *, rx_buffer: int = 128, on_event: Callable[[str, dict], None] | None = None,
                 status_interval: float = 0.2, progress_interval: float = 0.05, start_threads: bool = True):
        if status_interval < 0.2:
            raise ValueError("grbl's docs ask hosts to poll status at no more than 5 Hz (status_interval >= 0.2 s)")
        super().__init__(port, on_event)
        self.limit = rx_buffer - 1  # grbl's ring keeps one slot free (see use_rx_buffer)
        self.status_interval = status_interval
        self.progress_interval = progress_interval
        self.welcome: str | None = None
        self.settings: dict[int, str] = {}
        self.status: dict = {}
        self.locked = False  # grbl is in its alarm lock: '$H'|'$X' to unlock
        self.alarm: str | None = None  # the last alarm's description, until unlocked or reset
        self._wco = [0.0, 0.0, 0.0]
        self._fifo: deque[_Pending] = deque()
        self._inflight = 0  # bytes of the lines in _fifo: what sits in grbl's RX buffer
        self._peak = 0  # the stream's highest _inflight
        self._acked_op = -1
        self._error: str | None = None
        self._error_op = -1  # the op grbl rejected
        self._alarms = 0  # counters the stream compares against its start
        self._welcomes = 0
        self._statuses = 0
        self._idle_reports = 0  # STILL_STATES reports in a row since the last answer
        self._expect_reset = False  # we sent 0x18 ourselves (cancel, e-stop, reset)
        self._estop = False
        self._last_progress_t = 0.0
        if start_threads:
            self.start()

    # ------------------------------------------------------------------ I/O
    def start(self) -> None:
        if not self._threads:
            self._start_thread(self._read_loop, "grbl-reader")
            self._start_thread(self._poll_loop, "grbl-status")

    def realtime(self, byte: bytes) -> None:
        """Write one real-time byte at once: grbl picks it out ahead of its buffer, so no lock, no count."""
        try:
            write_now(self.port, byte)
        except (OSError, ValueError, AttributeError) as exc:
            self._link_lost(f"write failed: {exc}")
            raise GrblClosed(str(exc)) from None

    def _link_lost(self, text: str) -> None:
        with self._cv:
            self._fail_pending(f"serial link lost: {text}")
        super()._link_lost(text)

    def _poll_loop(self) -> None:
        """``?`` every status_interval: telemetry, and how a stream learns grbl is idle."""
        while not self._closed and self._link_error is None:
            try:
                self.realtime(RT_STATUS)
            except GrblClosed:
                return
            with self._cv:
                self._cv.wait_for(lambda: self._closed, self.status_interval)

    # ---------------------------------------------------------------- reader
    def _handle(self, raw: bytes) -> None:
        line = raw.decode("latin-1")
        if line == "ok" or line.startswith("error:"):
            self._on_answer(line)
        elif line.startswith("<"):
            self._on_status(line)
        elif line.startswith("ALARM:"):
            self._on_alarm(line)
        elif line.startswith(WELCOME_PREFIX) and "help" in line:
            self._on_welcome(line)
        else:
            self._on_feedback(line)

    def _on_answer(self, line: str) -> None:
        events = []
        with self._cv:
            if not self._fifo:
                events.append(("message", {"text": f"grbl answered {line!r} to nothing this host sent"}))
            else:
                item = self._fifo.popleft()
                self._inflight -= item.nbytes
                code = int(line[6:]) if line.startswith("error:") and line[6:].isdigit() else None
                failed = line != "ok"
                if not failed and item.text.strip().upper() in ("$X", "$H"):
                    self.locked, self.alarm = False, None
                if item.query is not None:
                    if failed:
                        item.query.error, item.query.code = describe_error(code) if code is not None else line, code
                    item.query.done.set()
                elif failed:
                    if self._error is None:
                        self._error_op = item.op
                        self._error = f"op {item.op} ({item.text!r}): grbl answered {describe_error(code) if code is not None else line}"
                        events.append(("error", {"op": item.op, "line": item.text, "code": code, "text": self._error}))
                else:
                    self._acked_op = item.op
                    now = time.monotonic()
                    if now - self._last_progress_t >= self.progress_interval:
                        self._last_progress_t = now
                        events.append(("progress", {"op": item.op}))
                self._idle_reports = 0  # a report from before this answer says nothing about after it
            self._cv.notify_all()
        for event in events:
            self._emit(*event)

    def _on_status(self, line: str) -> None:
        status = parse_status(line)
        if status is None:
            self._emit("message", {"text": f"unreadable status report {line!r}"})
            return
        if "wco" in status:
            self._wco = status["wco"]
        if "mpos" in status:
            status["wpos"] = [round(m - w, 3) for m, w in zip(status["mpos"], self._wco)]
        elif "wpos" in status:
            status["mpos"] = [round(p + w, 3) for p, w in zip(status["wpos"], self._wco)]
        with self._cv:
            self.status = status
            self._statuses += 1
            self._idle_reports = self._idle_reports + 1 if status["state"] in STILL_STATES else 0
            self.locked = status["state"] == "Alarm"  # grbl's lock is its Alarm state
            if not self.locked:
                self.alarm = None
            self._cv.notify_all()
        self._emit("status", status)

    def _on_alarm(self, line: str) -> None:
        code = int(line[6:]) if line[6:].isdigit() else 0
        text = describe_alarm(code)
        with self._cv:
            self._alarms += 1
            self.alarm, self.locked = text, True
            expected = self._expect_reset and code in (3, 6)
            self._cv.notify_all()
        self._emit("alarm", {"code": code, "text": text, "expected": expected})

    def _on_welcome(self, line: str) -> None:
        with self._cv:
            self.welcome = line
            self._welcomes += 1
            expected, self._expect_reset = self._expect_reset, False
            self._fail_pending("grbl was reset (its serial buffer and planner were flushed)")
            self._cv.notify_all()
        self._emit("reset", {"expected": expected})

    def _fail_pending(self, why: str) -> None:
        """Every outstanding line is void (called with the lock held)."""
        for item in self._fifo:
            if item.query is not None:
                item.query.error = why
                item.query.done.set()
        self._fifo.clear()
        self._inflight = 0

    def _on_feedback(self, line: str) -> None:
        with self._cv:
            if line == MSG_UNLOCK:
                self.locked = True
            elif line == MSG_UNLOCKED:
                self.locked, self.alarm = False, None
            elif line.startswith("$") and "=" in line:
                number, _, value = line[1:].partition("=")
                if number.isdigit():
                    self.settings[int(number)] = value
            head = self._fifo[0] if self._fifo else None
            if head is not None and head.query is not None:
                head.query.lines.append(line)
        if line.startswith("[MSG:"):
            self._emit("message", {"text": line[5:-1]})

    # --------------------------------------------------------------- commands
    def wait_for(self, predicate, timeout: float, what: str):
        """Wait (reader-driven) until ``predicate()`` holds; raise TimeoutError naming ``what``."""
        with self._cv:
            deadline = time.monotonic() + timeout
            while not (value := predicate()):
                self._check_link()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{what} within {timeout:g} s")
                self._cv.wait(min(left, 0.1))
            return value

    def wait_idle(self, timeout: float = 30.0) -> str:
        """Until grbl has answered everything and says Idle, Alarm or Check twice in a row; returns the state."""
        self.wait_for(lambda: not self._fifo and self._idle_reports >= 2, timeout, "grbl did not report Idle")
        return self.status["state"]

    def command(self, text: str, timeout: float = 30.0) -> list[str]:
        """Send one line alone and wait for its answer: the lines before its ``ok``.

        ``$`` system commands wait for grbl to be idle first.  Raises
        GrblCommandError on ``error:N`` (with grbl's text), TimeoutError, GrblClosed."""
        if is_system_command(text):
            self.wait_idle(timeout)
        query = _Query(text)
        data = text.encode("ascii") + b"\n"
        with self._cv:
            self.wait_for(lambda: not self._fifo, timeout, f"grbl did not answer the lines before {text!r}")
            self._fifo.append(_Pending(len(data), text=text, query=query))
            self._inflight += len(data)
        self._write(data)
        if not query.done.wait(timeout):
            raise TimeoutError(f"no answer to {text!r} within {timeout:g} s")
        self._check_link()
        if query.error is not None:
            raise GrblCommandError(text, query.error, query.code)
        return query.lines

    def read_settings(self, timeout: float = 10.0) -> dict[int, str]:
        """``$$``: grbl's settings as {number: text}."""
        self.command("$$", timeout)
        return dict(self.settings)

    def parser_state(self, timeout: float = 10.0) -> str:
        """``$G``: the G-code parser's modal state, e.g. ``G0 G54 G17 G21 G90 G94 M5 M9 T0 F0 S0``."""
        for line in self.command("$G", timeout):
            if line.startswith("[GC:"):
                return line[4:-1]
        return ""

    def build_info(self, timeout: float = 10.0) -> dict:
        """``$I``: {"version", "options", "planner_blocks", "rx_buffer"} as far as grbl reports them.

        grbl 1.1 prints ``[VER:1.1h.20190830:]`` and ``[OPT:V,15,128]``: option letters,
        planner blocks, serial RX buffer bytes."""
        info: dict = {}
        for line in self.command("$I", timeout):
            if line.startswith("[VER:"):
                info["version"] = line[5:-1].split(":", 1)[0]
            elif line.startswith("[OPT:"):
                fields = line[5:-1].split(",")
                info["options"] = fields[0]
                if len(fields) >= 3 and fields[1].isdigit() and fields[2].isdigit():
                    info["planner_blocks"], info["rx_buffer"] = int(fields[1]), int(fields[2])
        return info

    def use_rx_buffer(self, size: int) -> None:
        """Count against an RX buffer of ``size`` bytes (grbl keeps one slot free)."""
        if size < 16:
            raise ValueError(f"an RX buffer of {size} bytes cannot hold a G-code line")
        self.limit = size - 1

    def soft_reset(self, timeout: float = 5.0) -> None:
        """0x18 and wait for the welcome: grbl stops, flushes its buffers and the planner."""
        with self._cv:
            seen = self._welcomes
            self._expect_reset = True
        self.realtime(RT_RESET)
        self.wait_for(lambda: self._welcomes > seen, timeout, "no welcome after the soft reset")

    def emergency_stop(self) -> None:
        """0x18 at once: no lock, no wait (grbl stops its steppers and spindle in its reset).

        The flags are set before the byte goes out, so the reader takes the ALARM:3 and
        welcome it causes as ours; the lock is only taken afterwards, to wake a stream."""
        self._estop = self._expect_reset = True
        try:
            self.realtime(RT_RESET)
        except GrblClosed:
            pass  # the link is gone: nothing more can be sent anyway
        with self._cv:
            self._cv.notify_all()

    def feed_hold(self, spindle_stop: bool = False) -> None:
        """``!`` (and 0x9E, grbl's spindle stop during a hold, restored by ``~``)."""
        self.realtime(RT_HOLD + (RT_SPINDLE_STOP if spindle_stop else b""))

    def cycle_start(self) -> None:
        self.realtime(RT_START)

    def stop_and_flush(self, hold_timeout: float = 10.0) -> bool:
        """Stop a (possibly) moving machine without losing its position, then empty grbl.

        A jog is cancelled with 0x85 (grbl ends it under control, nothing else to flush).
        Otherwise ``!`` decelerates under control; once grbl reports the hold complete
        (Hold:0) or Idle, 0x18 flushes the planner and the serial buffer (grbl calls
        that a reset in motion, ALARM:3, but the tool was standing still, so the
        position is good and ``$X`` unlocks).  When the hold never completes, the
        reset still happens but the lock is left for the operator to home.
        Returns True when grbl ends unlocked."""
        if self.status.get("state") == "Jog":
            return self._cancel_jog(hold_timeout)
        was_locked = self.locked
        stopped = False
        before = self._statuses
        try:
            self.feed_hold()
            # a report asked for after the '!' (the one before may be in flight) that shows the tool still
            self.wait_for(lambda: self._statuses > before + 1 and self._standing_still(), hold_timeout, "the feed hold did not complete")
            stopped = True
        except TimeoutError:
            pass
        self.soft_reset()
        if was_locked or not self.locked:
            return not self.locked
        if stopped:
            self.command("$X")
        return not self.locked

    def _cancel_jog(self, timeout: float) -> bool:
        """0x85: grbl decelerates the jog and drops the jog blocks behind it; no reset, no lock."""
        before = self._statuses
        self.realtime(RT_JOG_CANCEL)
        self.wait_for(lambda: self._statuses > before + 1 and self.status["state"] in STILL_STATES, timeout, "the jog did not stop")
        return not self.locked

    def _standing_still(self) -> bool:
        state = self.status.get("state")
        return state in STILL_STATES or (state == "Hold" and self.status.get("substate") == 0)

    # ---------------------------------------------------------------- stream
    @property
    def acked_op(self) -> int:
        return self._acked_op

    @property
    def estopped(self) -> bool:
        return self._estop

    def stream(self, commands: Sequence[str], start_op: int = 0, control: StreamControl | None = None) -> GrblResult:
        """Send ops ``start_op..`` of ``commands``; block until grbl has run them all (or the
        stream is cancelled, fails, alarms, is reset or loses its link)."""
        t0 = time.monotonic()
        n_ops = len(commands)
        if not 0 <= start_op <= n_ops:
            raise ValueError(f"start_op {start_op} outside 0..{n_ops}")
        for op in range(start_op, n_ops):
            problem = check_line(commands[op], self.limit)
            if problem:
                return GrblResult("failed", start_op - 1, f"op {op} ({commands[op]!r}) {problem}")
        control = control if control is not None else StreamControl()
        control._attach(self._cv)
        with self._cv:
            self._acked_op = start_op - 1
            self._peak = 0
            self._error = None
            alarms, welcomes = self._alarms, self._welcomes
        nxt, lines_sent, bytes_sent = start_op, 0, 0
        status, reason = "completed", ""
        try:
            while True:
                batch: list[_Pending] = []
                with self._cv:
                    while True:
                        outcome = self._outcome(alarms, welcomes)
                        if outcome is not None:
                            status, reason = outcome
                            break
                        if control.cancelled:
                            status, reason = "cancelled", "cancelled"
                            break
                        if nxt >= n_ops and not self._fifo and self._idle_reports >= 2:
                            break  # every line acknowledged, and grbl has run them
                        if nxt < n_ops and not control.paused:
                            batch = self._take(commands, nxt)
                            if batch:
                                nxt += len(batch)
                                break
                        self._cv.wait(0.1)
                if not batch:
                    break
                data = b"".join(item.text.encode("ascii") + b"\n" for item in batch)
                self._write(data)
                lines_sent += len(batch)
                bytes_sent += len(data)
        except GrblClosed as exc:
            status, reason = "disconnected", str(exc)
        if status in ("cancelled", "failed"):
            try:
                self.stop_and_flush()
            except (TimeoutError, GrblClosed, GrblCommandError) as exc:
                reason += f"; then stopping grbl failed: {exc}"
        last = self._acked_op if self._error is None else min(self._acked_op, self._error_op - 1)
        self._emit("progress", {"op": last})
        return GrblResult(status, last, reason, lines_sent, bytes_sent, self._peak, time.monotonic() - t0)

    def _outcome(self, alarms: int, welcomes: int) -> tuple[str, str] | None:
        """Why the stream must end now (None: it goes on); called with the lock held."""
        if self._link_error is not None:
            return "disconnected", self._link_error
        if self._closed:
            return "disconnected", "streamer closed"
        if self._estop:
            return "halted", "emergency stop"
        if self._alarms > alarms:
            head = self._fifo[0] if self._fifo else None
            at = f" (first line not acknowledged: op {head.op}, {head.text!r})" if head is not None and head.op >= 0 else ""
            return "alarm", f"{self.alarm}{at}"
        if self._welcomes > welcomes:
            return "reset", "grbl was reset during the job: its buffer and planner were flushed"
        if self._error is not None:
            return "failed", self._error
        return None

    def _take(self, commands: Sequence[str], nxt: int) -> list[_Pending]:
        """The lines that fit in grbl's RX buffer now (called with the lock held).

        A ``$`` command goes alone: after everything before it is answered and grbl idles."""
        if self._fifo and self._fifo[-1].op >= 0 and is_system_command(self._fifo[-1].text):
            return []  # a system command is out: nothing follows it until it is answered
        batch = []
        for op in range(nxt, len(commands)):
            text = commands[op]
            if is_system_command(text):
                if batch or self._fifo or self._idle_reports < 2:
                    break
                batch.append(self._pend(op, text))
                break
            nbytes = len(text) + 1
            if self._inflight + nbytes > self.limit:
                break
            batch.append(self._pend(op, text))
        return batch

    def _pend(self, op: int, text: str) -> _Pending:
        item = _Pending(len(text) + 1, op, text)
        self._fifo.append(item)
        self._inflight += item.nbytes
        self._peak = max(self._peak, self._inflight)
        return item
