"""Marlin host streamer: the heart of the printer driver.

One :class:`MarlinStreamer` owns an open serial port (see ``drivers.transport``).
A reader thread parses every line the firmware sends; the thread that calls
:meth:`MarlinStreamer.stream` sends program lines; every serial write goes
through one lock (except the e-stop, which must never wait).

Line discipline (see docs/printer-driver.md for the whole story):

* op ``i`` of a program is sent as ``N<line_base+i> <command>*<checksum>``; a fresh
  stream starts with ``N<L-1> M110 N<L-1>*cs`` so the firmware expects line ``L``.
* up to ``window`` lines are in flight (sent, not yet answered).  Everything the
  firmware answers is accounted in order in one FIFO of outstanding items: a
  plain ``ok`` answers the oldest item.  Bare lines we send ourselves (``M105``
  polls, ``query``) are items in the same FIFO, so their ``ok`` never
  confirms a program line.
* ``Resend: n`` (after ``Error:checksum mismatch`` / ``Line Number is not Last Line
  Number+1`` / ``No Checksum``): lines ``< n`` were accepted; every outstanding line
  ``>= n`` is void (flushed, or will itself draw an error); the ``ok`` right after
  the ``Resend`` belongs to the error and confirms nothing.  We rewind to ``n``
  once per error burst: the void lines still in the pipe each draw another
  ``Resend: n`` (a resend storm), and exactly that many repeats are ignored.  Only
  a ``Resend`` beyond that budget - the firmware rejecting the *retransmitted*
  line - rewinds again.  A line is only ever sent again because the firmware
  asked for it.
* silence with lines in flight (no ``ok``, no ``busy``) for ``ok_timeout`` seconds
  (``recovery_timeout`` during an error burst) is not answered by a blind resend:
  the streamer *probes* the firmware's last accepted line number with a line that
  can never be accepted (``N2147480000 M105*cs``) and continues right after it.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .transport import LineLink, StreamControl, write_now

__all__ = [
    "MarlinStreamer",
    "StreamControl",
    "StreamResult",
    "StreamerClosed",
    "frame",
    "checksum",
    "frame_lines",
    "parse_temperatures",
    "parse_position",
    "PROBE_LINE_NUMBER",
    "is_host_command",
]

#: What the streamer sends on its own account (handshake, auto-report set-up,
#: temperature polls); ``M110 N<n>`` line-number resets come on top.
HOST_COMMANDS = frozenset({"M105", "M115", "M155 S1"})


def _looks_like_ok(line: bytes) -> bool:
    """``ok``, also with one bit flipped by line noise in its two letters (``oc``, ``Ok``).

    Marlin sends no other line within one bit of ``ok`` followed by a space or
    the end of the line; missing a noisy ``ok`` would cost a timeout and a probe.
    """
    if line[:2] == b"ok":
        return True
    if len(line) < 2 or (len(line) > 2 and line[2:3] != b" "):
        return False
    flipped = (line[0] ^ 0x6F) | ((line[1] ^ 0x6B) << 8)
    return flipped != 0 and flipped & (flipped - 1) == 0


def is_host_command(cmd: str) -> bool:
    """True for a command the streamer itself sends, not a program line."""
    return cmd in HOST_COMMANDS or cmd.startswith("M110 N")


#: A line number the firmware can never expect: the probe line is always rejected.
PROBE_LINE_NUMBER = 2147480000

# Outstanding items in the FIFO: program lines are their line number (int); bare
# commands we send (M105 polls, queries, immediate commands) are other objects.
class _Bare:
    __slots__ = ("what",)

    def __init__(self, what: str):
        self.what = what

    def __repr__(self):
        return f"<bare {self.what}>"


_POLL = _Bare("M105 poll")


def _is_line(x) -> bool:
    return type(x) is int

_RE_RESEND = re.compile(rb"(?:Resend|rs)[: ]\s*N?(-?\d+)", re.I)
_RE_LAST_LINE = re.compile(rb"Last Line:\s*(-?\d+)")
_RE_TEMP = re.compile(rb"(?<![A-Za-z@])(T\d?|B|C):\s*(-?[\d.]+)\s*(?:/\s*(-?[\d.]+))?")
_RE_POS = re.compile(rb"([XYZE]):\s*(-?[\d.]+)")
_RE_NAME = re.compile(rb"FIRMWARE_NAME:\s*(.*?)(?:\s+(?:SOURCE_CODE_URL|PROTOCOL_VERSION|MACHINE_TYPE|EXTRUDER_COUNT|UUID):|$)")
_RE_CAP = re.compile(rb"Cap:([A-Z0-9_]+):\s*([01])")
_RE_ADV_OK = re.compile(rb"\bN(-?\d+)")

_LINE_ERRORS = (b"checksum", b"Line Number", b"No Checksum", b"No Line Number", b"Last Line")


class StreamerClosed(ConnectionError):
    """The serial link went away (port closed, device unplugged, simulator died)."""


def checksum(data: bytes) -> int:
    """Marlin's checksum: XOR of every byte."""
    c = 0
    for b in data:
        c ^= b
    return c


def frame(line: int, command: str | bytes) -> bytes:
    """``N<line> <command>*<cs>\\n``."""
    cmd = command.encode("utf-8") if isinstance(command, str) else command
    body = b"N%d %s" % (line, cmd)
    return b"%s*%d\n" % (body, checksum(body))


def frame_lines(commands: Sequence[str], first_line: int) -> list[bytes]:
    """Frame many commands at once (numbered from ``first_line``), checksums vectorised."""
    n = len(commands)
    if n == 0:
        return []
    bodies = [b"N%d %s" % (first_line + i, c.encode("utf-8")) for i, c in enumerate(commands)]
    blob = np.frombuffer(b"".join(bodies), dtype=np.uint8)
    lens = np.fromiter((len(b) for b in bodies), dtype=np.int64, count=n)
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    cs = np.bitwise_xor.reduceat(blob, starts).tolist()
    return [b"%s*%d\n" % (b, c) for b, c in zip(bodies, cs)]


def parse_temperatures(line: bytes) -> dict | None:
    """``ok T:21.2 /0.0 B:20.1 /60.0 @:0 B@:0`` -> {"hotend": (21.2, 0.0), "bed": (20.1, 60.0)}."""
    if b"T:" not in line and b"B:" not in line:
        return None
    out = {}
    for key, cur, target in _RE_TEMP.findall(line):
        try:
            val = (float(cur), float(target) if target else None)
        except ValueError:
            continue
        if key == b"T" or key == b"T0":
            out.setdefault("hotend", val)
        elif key == b"B":
            out["bed"] = val
        elif key == b"C":
            out["chamber"] = val
        elif key[:1] == b"T":
            out["hotend" + key[1:].decode()] = val
    return out or None


def parse_position(line: bytes) -> dict | None:
    """M114 ``X:10.00 Y:20.00 Z:0.20 E:1.00 Count X:800 ...`` -> {"X": 10.0, ...}."""
    head = line.split(b"Count", 1)[0]
    pos = {k.decode(): float(v) for k, v in _RE_POS.findall(head)}
    return pos if len(pos) >= 3 else None


@dataclass
class StreamResult:
    """How a stream ended: ``status`` completed | cancelled | fault | halted | disconnected."""

    status: str
    last_op: int  # last op the firmware confirmed (ok); -1 / start_op-1 when none
    reason: str = ""
    lines_sent: int = 0
    resends: int = 0
    probes: int = 0
    elapsed_s: float = 0.0


@dataclass(eq=False)
class _Query:
    done: threading.Event = field(default_factory=threading.Event)
    lines: list = field(default_factory=list)
    want: bytes | None = None  # a marker that must be seen before the final ok counts
    seen_want: bool = False


class MarlinStreamer(LineLink):
    """Host side of Marlin's serial protocol over an open pyserial port.

    ``on_event(kind, data)`` is called from the reader thread (keep it cheap) with
    kinds ``progress`` {"op"}, ``telemetry`` {"hotend", "bed", "pos"}, ``busy``
    {"text"}, ``warning`` {"text", "op"}, ``fault`` {"text", "op"}, ``halted``
    {"text"}, ``reset`` {}, ``resend`` {"line", "op"}, ``disconnected`` {"text"}.
    """

    closed_error = StreamerClosed

    def __init__(self, port, *, window: int = 4, on_event: Callable[[str, dict], None] | None = None,
                 ok_timeout: float = 10.0, recovery_timeout: float = 1.0, poll_interval: float = 1.0,
                 progress_interval: float = 0.05, start_reader: bool = True):
        if window < 1:
            raise ValueError("window must be >= 1")
        super().__init__(port, on_event)
        self.window = window
        self.ok_timeout = ok_timeout
        self.recovery_timeout = recovery_timeout
        self.poll_interval = poll_interval
        self.progress_interval = progress_interval
        self.info: dict = {"firmware_name": None, "caps": {}, "autoreport": False}
        self.telemetry: dict = {}
        # stream state (guarded by _cv)
        self._fifo: deque = deque()  # outstanding items: line numbers, or _POLL
        self._streaming = False
        self._next = 0  # next line number to send
        self._confirmed = -(2 ** 62)  # highest line confirmed by an ok
        self._resend_budget = 0
        self._burst_line: int | None = None  # line the current error burst rewound to
        self._swallow_ok = False
        self._last_rx = time.monotonic()
        self._fault: str | None = None
        self._halted: str | None = None
        self._reset_seen = False
        self._probe_answer: int | None = None
        self._probe_waiting = False
        self._queries: deque = deque()
        self._seen_alive = threading.Event()
        self._line_base = 0
        self._resends = 0
        self._estop = False
        self._last_progress_t = 0.0
        self._stray_poll_oks = 0
        if start_reader:
            self.start()

    # ------------------------------------------------------------------ I/O
    def start(self) -> None:
        if not self._threads:
            self._start_thread(self._read_loop, "marlin-reader")

    def _link_lost(self, text: str) -> None:
        super()._link_lost(text)
        for q in list(self._queries):
            q.done.set()

    def _op_of(self, line: int | None) -> int | None:
        if line is None:
            return None
        return line - self._line_base

    # ---------------------------------------------------------------- reader
    def _handle(self, line: bytes) -> None:
        now = time.monotonic()
        if _looks_like_ok(line):
            self._last_rx = now
            self._on_ok(line)
            return
        if self._queries:
            q = self._queries[0]
            q.lines.append(line)
            if q.want is not None and q.want in line:
                q.seen_want = True
        if line.startswith(b"echo:busy") or line.startswith(b"busy:"):
            self._last_rx = now
            self._emit("busy", {"text": line.decode("utf-8", "replace")})
            return
        if line.startswith(b"Resend") or line.startswith(b"rs "):
            m = _RE_RESEND.search(line)
            if m:
                self._last_rx = now
                self._on_resend(int(m.group(1)))
            return
        if line.startswith(b"Error:") or line.startswith(b"!!"):
            self._last_rx = now
            self._on_error(line)
            return
        if line.startswith(b"T:") or line.startswith(b" T:") or line.startswith(b"B:"):
            self._seen_alive.set()
            self._telemetry(line)
            return
        if line.startswith(b"echo:"):
            if b"Unknown command" in line:
                with self._cv:
                    op = self._op_of(self._oldest_line())
                self._emit("warning", {"text": line[5:].decode("utf-8", "replace"), "op": op})
            return
        if line == b"start":
            self._seen_alive.set()
            with self._cv:
                self._reset_seen = True
                was_streaming = self._streaming
                self._cv.notify_all()
            self._emit("reset", {"streaming": was_streaming})
            return
        if line.startswith(b"FIRMWARE_NAME"):
            m = _RE_NAME.search(line)
            if m:
                self.info["firmware_name"] = m.group(1).decode("utf-8", "replace").strip()
            self.info["m115"] = line.decode("utf-8", "replace")
            return
        if line.startswith(b"Cap:"):
            m = _RE_CAP.match(line)
            if m:
                self.info["caps"][m.group(1).decode()] = m.group(2) == b"1"
            return
        if line.startswith(b"X:") and b"Y:" in line:
            pos = parse_position(line)
            if pos:
                self.telemetry["pos"] = pos
                self._emit("telemetry", {"pos": pos})
            return
        if b"Last Line" in line:  # some firmwares print the line error without "Error:"
            self._on_error(line)
            return
        # anything else (banner, garbage, //action:...) is ignored

    def _oldest_line(self) -> int | None:
        for item in self._fifo:
            if _is_line(item):
                return item
        return None

    def _telemetry(self, line: bytes) -> None:
        temps = parse_temperatures(line)
        if temps:
            self.telemetry.update(temps)
            data = dict(temps)
            if "pos" in self.telemetry:
                data["pos"] = self.telemetry["pos"]
            self._emit("telemetry", data)

    def _on_ok(self, line: bytes) -> None:
        self._seen_alive.set()
        has_temp = b"T:" in line
        progress = None
        done_query = None
        with self._cv:
            if self._swallow_ok:
                # the ok that follows "Resend: n" belongs to the rejected line
                self._swallow_ok = False
                self._cv.notify_all()
                return
            fifo = self._fifo
            if fifo:
                if has_temp and _POLL in fifo:
                    fifo.remove(_POLL)  # the answer to our bare M105 poll
                    item = _POLL
                elif (has_temp and self._stray_poll_oks and _is_line(fifo[0])
                        and not self._is_m105(fifo[0])):
                    self._stray_poll_oks -= 1  # a poll voided by a resend was answered after all
                    item = _POLL
                else:
                    item = fifo.popleft()
                if _is_line(item):
                    if item > self._confirmed:
                        self._confirmed = item
                    if self._burst_line is not None and item >= self._burst_line:
                        self._burst_line = None  # the retransmission got through
                        self._resend_budget = 0
                    if self._streaming:
                        now = time.monotonic()
                        if now - self._last_progress_t >= self.progress_interval:
                            self._last_progress_t = now
                            progress = item - self._line_base
                elif isinstance(item, _Query):
                    if item.want is not None and not item.seen_want:
                        fifo.appendleft(item)  # a stale ok from before the query
                    else:
                        item.lines.append(line)
                        done_query = item
                        try:
                            self._queries.remove(item)
                        except ValueError:
                            pass
                self._cv.notify_all()
        if has_temp:
            self._telemetry(line)
        if done_query is not None:
            done_query.done.set()
        if progress is not None:
            self._emit("progress", {"op": progress})

    def _is_m105(self, line_no) -> bool:
        cmds = getattr(self, "_commands", None)
        if cmds is None or line_no is None:
            return False
        i = line_no - self._line_base
        return 0 <= i < len(cmds) and cmds[i].upper().startswith("M105")

    def _on_resend(self, n: int) -> None:
        ev = None
        with self._cv:
            self._swallow_ok = True
            if self._probe_waiting:  # our probe's answer, not a resend of a program line
                self._probe_answer = n - 1
                self._cv.notify_all()
                return
            self._resends += 1
            if not self._streaming:
                return
            if self._burst_line == n and self._resend_budget > 0:
                self._resend_budget -= 1  # a repeat caused by a line already voided
                return
            lo = self._stream_first
            hi = self._next
            if n < lo or n > hi:
                if self._m110_line is not None and self._confirmed < self._m110_line:
                    n = self._m110_line  # the M110 itself was lost: start over with it
                else:
                    ev = ("warning", {"text": f"firmware asked to resend line {n}, which was never sent", "op": None})
                    n = None
            if n is not None:
                void = [x for x in self._fifo if not _is_line(x) or x >= n]
                polls = sum(1 for x in void if x is _POLL)
                self._stray_poll_oks += polls
                self._fifo = deque(x for x in self._fifo if _is_line(x) and x < n)
                lines_void = len(void) - polls
                self._resend_budget = max(0, lines_void - 1)
                self._burst_line = n
                self._next = n
                if self._confirmed >= n:
                    self._confirmed = n - 1
                ev = ("resend", {"line": n, "op": n - self._line_base})
            self._cv.notify_all()
        if ev:
            self._emit(*ev)

    def _on_error(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        if text.startswith("Error:"):
            text = text[6:]
        if any(k in line for k in _LINE_ERRORS):
            return  # the "Resend: n" that follows says it all
        halted = b"kill()" in line or b"halted" in line.lower() or b"Printer stopped" in line
        with self._cv:
            op = self._op_of(self._oldest_line())
            first = self._fault is None
            if first:
                self._fault = text
            if halted:
                self._halted = text
            self._cv.notify_all()
        for q in list(self._queries):
            q.done.set()
        if first and not (halted and self._estop):
            self._emit("fault", {"text": text, "op": op})
        if halted:
            self._emit("halted", {"text": text, "estop": self._estop})

    # ------------------------------------------------------------ handshake
    def handshake(self, timeout: float = 10.0) -> dict:
        """Wait until the firmware talks (``start``, ``ok`` or temperatures), sending a
        bare ``M105`` every second like printcore; then ``M115`` for the firmware name
        and capabilities, and ``M155 S1`` when AUTOREPORT_TEMP is supported.

        Returns ``info``: {"firmware_name", "caps", "autoreport", "handshake_commands"}.
        Raises TimeoutError when the firmware stays silent.
        """
        deadline = time.monotonic() + timeout
        sent: list[str] = []
        while not self._seen_alive.is_set():
            self._check_link()
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no answer from the firmware within {timeout} s")
            # the leading newline ends any half line a previous host left in the pipe
            self._write(b"\nM105\n")
            sent.append("M105")
            self._seen_alive.wait(min(1.0, max(0.01, deadline - time.monotonic())))
        # let the greeting / pending answers to our M105s drain
        self._drain_quiet(0.2, deadline)
        lines = self.query("M115", timeout=max(0.5, deadline - time.monotonic()), want=b"FIRMWARE_NAME")
        sent.append("M115")
        self.info["handshake_lines"] = [ln.decode("utf-8", "replace") for ln in lines]
        caps = self.info["caps"]
        if caps.get("AUTOREPORT_TEMP"):
            self.query("M155 S1", timeout=max(0.5, deadline - time.monotonic()))
            sent.append("M155 S1")
            self.info["autoreport"] = True
        self.info["handshake_commands"] = sent
        return self.info

    def _drain_quiet(self, quiet: float, deadline: float) -> None:
        while time.monotonic() < deadline:
            if time.monotonic() - self._last_rx >= quiet:
                return
            time.sleep(quiet / 4)

    # --------------------------------------------------------------- queries
    def query(self, cmd: str, timeout: float = 5.0, want: bytes | None = None) -> list[bytes]:
        """Send a bare command and collect the lines up to its ``ok`` (use when idle, or
        between lines: the answer is accounted in order with the program lines).
        ``want``: a byte string that must appear before the ok that ends the reply."""
        q = _Query(want=want)
        with self._cv:
            self._queries.append(q)
            self._fifo.append(q)
        self._write(cmd.encode("utf-8") + b"\n")
        if not q.done.wait(timeout):
            with self._cv:
                try:
                    self._queries.remove(q)
                except ValueError:
                    pass
            raise TimeoutError(f"no ok for {cmd!r} within {timeout} s")
        self._check_link()
        return q.lines

    def get_position(self, timeout: float = 5.0) -> dict | None:
        """M114 -> {"X":.., "Y":.., "Z":.., "E":..}."""
        for ln in self.query("M114", timeout, want=b"X:"):
            pos = parse_position(ln)
            if pos:
                return pos
        return None

    def get_temperatures(self, timeout: float = 5.0) -> dict | None:
        for ln in self.query("M105", timeout):
            t = parse_temperatures(ln)
            if t:
                return t
        return None

    def emergency_stop(self) -> None:
        """Write ``M112`` at once: no window, no lock, no wait.  The stream stops;
        the firmware's kill message produces a ``halted`` event."""
        self._estop = True
        data = b"\nM112\n"  # the newline ends any half-written line first
        try:
            write_now(self.port, data)
        except OSError:
            try:
                self.port.write(data)
            except Exception:
                pass
        with self._cv:
            self._cv.notify_all()

    # ----------------------------------------------------------------- probe
    def probe_last_line(self, timeout: float = 5.0, quiet: float = 0.15, max_probes: int = 8) -> int:
        """The firmware's last accepted line number.

        Sends a line numbered ``PROBE_LINE_NUMBER`` (never acceptable, never executed)
        and reads ``Error:Line Number is not Last Line Number+1, Last Line: <n>`` /
        ``Resend: <n+1>``; repeats until two consecutive probes agree (answers from
        before - a previous host's lines still in the pipe - can't fool it twice).
        """
        if self._streaming:
            raise RuntimeError("probe_last_line while streaming (the stream probes by itself)")
        deadline = time.monotonic() + timeout
        self._drain_quiet(quiet, deadline)
        prev = None
        probe = b"\n" + frame(PROBE_LINE_NUMBER, "M105")
        for _ in range(max_probes):
            ans = self._probe_once(probe, deadline)
            if ans is not None and ans == prev:
                return ans
            prev = ans
        raise TimeoutError("probe answers did not settle")

    def _probe_once(self, probe: bytes, deadline: float) -> int | None:
        with self._cv:
            self._probe_answer = None
            self._probe_waiting = True
        try:
            self._write(probe)
            with self._cv:
                while self._probe_answer is None:
                    self._check_link()
                    if self._halted:
                        raise StreamerClosed(f"firmware halted: {self._halted}")
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("no answer to the line-number probe")
                    self._cv.wait(left)
                return self._probe_answer
        finally:
            with self._cv:
                self._probe_waiting = False

    # ---------------------------------------------------------------- stream
    @property
    def last_confirmed_op(self) -> int:
        return self._confirmed - self._line_base

    def stream(self, commands: Sequence[str], start_op: int = 0, line_base: int = 1,
               control: StreamControl | None = None, *, fresh: bool = True) -> StreamResult:
        """Send ops ``start_op..`` of ``commands`` and block until they are all confirmed
        (or the stream is cancelled / faulted / halted / disconnected).

        Op ``i`` travels as line ``line_base + i``.  ``fresh`` starts with ``M110`` so the
        firmware expects line ``line_base + start_op``; after a crash use
        ``probe_last_line()`` instead and ``fresh=False`` with ``start_op = n + 1 - line_base``.
        """
        t0 = time.monotonic()
        n_ops = len(commands)
        if not 0 <= start_op <= n_ops:
            raise ValueError(f"start_op {start_op} outside 0..{n_ops}")
        first = line_base + start_op
        end = line_base + n_ops  # one past the last line
        control = control if control is not None else StreamControl()
        control._attach(self._cv)

        frames: dict[int, bytes] = {}
        chunk = 2048
        m110_line = first - 1 if fresh else None
        if fresh:
            frames[m110_line] = frame(m110_line, f"M110 N{m110_line}")
        cmds = list(commands) if not isinstance(commands, (list, tuple)) else commands

        def get_frame(ln: int) -> bytes:
            f = frames.get(ln)
            if f is None:
                base = ln
                i0 = base - line_base
                block = frame_lines(cmds[i0:i0 + chunk], base)
                for k, fb in enumerate(block):
                    frames[base + k] = fb
                # forget frames far behind (keep memory flat on huge programs)
                if len(frames) > 4 * chunk:
                    low = self._confirmed - 2 * chunk
                    for old in [x for x in frames if x < low and x != m110_line]:
                        del frames[old]
                f = frames[ln]
            return f

        with self._cv:
            self._commands = cmds
            self._line_base = line_base
            self._stream_first = first if m110_line is None else m110_line
            self._m110_line = m110_line
            self._next = m110_line if fresh else first
            self._confirmed = first - 1 if not fresh else first - 2
            self._fifo = deque(x for x in self._fifo if not _is_line(x))
            self._resend_budget = 0
            self._burst_line = None
            self._swallow_ok = False
            self._fault = None if not self._halted else self._fault
            self._reset_seen = False
            self._resends = 0
            self._streaming = True
            self._last_rx = time.monotonic()
        lines_sent = 0
        probes = 0
        verified = False  # the firmware itself confirmed the last line
        last_poll = time.monotonic()
        status = "completed"
        reason = ""
        try:
            while True:
                batch: list[int] = []
                do_probe = do_poll = do_verify = False
                with self._cv:
                    while True:
                        if self._link_error is not None:
                            status, reason = "disconnected", self._link_error
                            break
                        if self._closed:
                            status, reason = "disconnected", "streamer closed"
                            break
                        if self._estop or self._halted:
                            status, reason = "halted", self._halted or "emergency stop"
                            break
                        if self._fault:
                            status, reason = "fault", self._fault
                            break
                        if self._reset_seen:
                            status, reason = "fault", "firmware reset during the stream"
                            break
                        n_lines = sum(1 for x in self._fifo if _is_line(x))
                        if control.cancelled:
                            if n_lines == 0:
                                status, reason = "cancelled", "cancelled"
                                break
                        elif self._next >= end and self._confirmed >= end - 1 and n_lines == 0:
                            if end > first and not verified:
                                do_verify = True  # an ok can be the garbled error's: ask before finishing
                                break
                            status = "completed"
                            break
                        now = time.monotonic()
                        room = self.window - len(self._fifo)
                        if m110_line is not None and self._confirmed < m110_line:
                            # Marlin's M110 handler sets the line number again when it
                            # *executes*: lines accepted before that would be numbered
                            # twice.  Nothing goes out until the M110's ok.
                            room = 1 if self._next == m110_line and not self._fifo else 0
                        if room > 0 and self._next < end and not control.paused and not control.cancelled:
                            k = min(room, end - self._next)
                            batch = list(range(self._next, self._next + k))
                            self._next += k
                            self._fifo.extend(batch)
                            break
                        if n_lines:
                            limit = self.recovery_timeout if self._burst_line is not None else self.ok_timeout
                            if now - self._last_rx >= limit:
                                do_probe = True
                                break
                            wait = self._last_rx + limit - now
                        else:
                            wait = 0.1
                        if (not self.info.get("autoreport") and self.poll_interval
                                and now - last_poll >= self.poll_interval and not self._fifo
                                and self._burst_line is None):
                            do_poll = True
                            break
                        self._cv.wait(min(wait, 0.1))
                    if not batch and not do_probe and not do_poll and not do_verify:
                        break
                if batch:
                    data = b"".join([get_frame(ln) for ln in batch])
                    self._write(data)
                    lines_sent += len(batch)
                    # poll temperatures between lines when the firmware can't auto-report
                    if (not self.info.get("autoreport") and self.poll_interval
                            and time.monotonic() - last_poll >= self.poll_interval):
                        with self._cv:
                            ok_to_poll = self._burst_line is None and len(self._fifo) < self.window + 1
                            if ok_to_poll:
                                self._fifo.append(_POLL)
                        if ok_to_poll:
                            last_poll = time.monotonic()
                            self._write(b"M105\n")
                elif do_poll:
                    with self._cv:
                        self._fifo.append(_POLL)
                    last_poll = time.monotonic()
                    self._write(b"M105\n")
                elif do_probe or do_verify:
                    probes += do_probe
                    ans = self._recover_by_probe(m110_line, first, end, "end of stream" if do_verify else "silence")
                    verified = do_verify and ans is not None and ans >= end - 1
        except StreamerClosed as exc:
            status, reason = "disconnected", str(exc)
        finally:
            with self._cv:
                self._streaming = False
                last = self._confirmed - line_base
            self._emit("progress", {"op": max(last, start_op - 1)})
        return StreamResult(status=status, last_op=max(last, start_op - 1), reason=reason,
                            lines_sent=lines_sent, resends=self._resends, probes=probes,
                            elapsed_s=time.monotonic() - t0)

    def _recover_by_probe(self, m110_line: int | None, first: int, end: int, why: str) -> int | None:
        """Ask the firmware where it is and continue right after it; return its last line (None: no answer).

        Used after silence with lines in flight, and once at the end of a stream,
        since an ``ok`` that belonged to a garbled error must not finish a job."""
        probe = b"\n" + frame(PROBE_LINE_NUMBER, "M105")
        deadline = time.monotonic() + max(2.0, self.ok_timeout)
        try:
            ans = self._probe_once(probe, deadline)
        except TimeoutError:
            with self._cv:
                self._last_rx = time.monotonic()  # try again after another timeout
            self._emit("warning", {"text": "firmware silent: no answer to the line-number probe", "op": None})
            return None
        with self._cv:
            rewound = ans + 1 < self._next
            lo = m110_line if m110_line is not None else first
            if m110_line is not None and ans < m110_line:
                nxt = m110_line  # even the M110 never arrived
            else:
                nxt = max(ans + 1, lo)
            if ans >= lo:
                self._confirmed = max(self._confirmed, min(ans, end - 1))
            self._fifo = deque(x for x in self._fifo if not _is_line(x))
            if rewound:
                self._confirmed = min(self._confirmed, max(ans, lo - 1))
            self._next = min(nxt, end)
            self._burst_line = None
            self._resend_budget = 0
            self._last_rx = time.monotonic()
            self._cv.notify_all()
        if why == "silence" or rewound:
            self._emit("warning", {"text": f"{why}: probed, firmware is at line {ans}", "op": ans - self._line_base})
        return ans
