"""Marlin host protocol: line framing, command queue, emergency parser, G/M-codes.

Modelled on Marlin 2.1 (queue.cpp, parser.cpp, gcode.cpp, temperature.cpp):

* receive: bytes -> lines (CR or LF ends a line) -> line faults -> emergency
  parser (M108/M112/M410 act the moment the line is read) -> RX lines.
* framing (``get_serial_commands``): comment strip, MAX_CMD_SIZE, line number
  and checksum checks in Marlin's order; errors print ``Error:...``, flush the
  RX input, then ``Resend: <last+1>`` and ``ok``.  The queue holds BUFSIZE
  commands, including the one executing, and refills while a command waits.
* execution: one command at a time from a table of handlers.  A handler that
  has to wait (a move with the planner full, heat-and-wait, dwell, homing)
  is a generator yielding the virtual time it wants to be woken at (None = at
  the next thermal step); ``ok`` goes out when it returns, as in Marlin.

Stock Marlin 2.1.2.1 build assumed, plus: EMERGENCY_PARSER, AUTO_REPORT
TEMPERATURES, HOST_KEEPALIVE, BUSY_WHILE_HEATING, INCH_MODE_SUPPORT, an LCD
(M117, M73), PIDTEMPBED.  Not compiled in, hence "Unknown command": bed
levelling (G29), LIN_ADVANCE (M900), digipots (M907), EEPROM (M500/M501).
"""

from __future__ import annotations

import os
import re
from collections import deque
from functools import reduce
from operator import xor

from .thermal import ThermalError

VERSION = "2.1.2.1"
BUFSIZE = 4
MAX_CMD_SIZE = 96
RX_BUFFER_SIZE = 128
EXTRUDE_MINTEMP = 170.0
EXTRUDE_MAXLENGTH = 200.0
DEFAULT_FEEDRATE = 1500.0 / 60   # mm/s, Marlin's power-on feedrate
NO_OK = object()                 # a handler that has printed its own "ok"

ERR_LINE_NO = "Line Number is not Last Line Number+1, Last Line: "
ERR_CHECKSUM = "checksum mismatch, Last Line: "
ERR_NO_CHECKSUM = "No Checksum with line number, Last Line: "
ERR_NO_LINE_NUMBER = "No Line Number with checksum, Last Line: "
ERR_KILLED = "Error:Printer halted. kill() called!"
BUSY = "echo:busy: processing"

BANNER = (
    "start",
    f"echo:Marlin {VERSION}",
    "echo: Last Updated: 2023-07-13 | Author: (ismctl firmware_sim)",
    "echo: Compiled: Jul 13 2023",
    "echo: Free Memory: 4061  PlannerBufferBytes: 1344",
    "echo:Hardcoded Default Settings Loaded",
)

CAPABILITIES = (
    ("SERIAL_XON_XOFF", 0), ("BINARY_FILE_TRANSFER", 0), ("EEPROM", 0), ("VOLUMETRIC", 1),
    ("AUTOREPORT_POS", 0), ("AUTOREPORT_TEMP", 1), ("PROGRESS", 0), ("PRINT_JOB", 1),
    ("AUTOLEVEL", 0), ("RUNOUT", 0), ("Z_PROBE", 0), ("LEVELING_DATA", 0),
    ("BUILD_PERCENT", 1), ("SOFTWARE_POWER", 0), ("TOGGLE_LIGHTS", 0),
    ("CASE_LIGHT_BRIGHTNESS", 0), ("EMERGENCY_PARSER", 1), ("HOST_ACTION_COMMANDS", 0),
    ("PROMPT_SUPPORT", 0), ("SDCARD", 0), ("REPEAT", 0), ("SD_WRITE", 0),
    ("AUTOREPORT_SD_STATUS", 0), ("LONG_FILENAME", 0), ("LFN_WRITE", 0),
    ("CUSTOM_FIRMWARE_UPLOAD", 0), ("EXTENDED_M20", 0), ("THERMAL_PROTECTION", 1),
    ("MOTION_MODES", 0), ("ARCS", 0), ("BABYSTEPPING", 0), ("CHAMBER_TEMPERATURE", 0),
    ("COOLER_TEMPERATURE", 0), ("MEATPACK", 0), ("CONFIG_EXPORT", 0),
)
FIRMWARE_NAME = (
    f"FIRMWARE_NAME:Marlin {VERSION} (Jul 13 2023 00:00:00) "
    "SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin PROTOCOL_VERSION:1.0 "
    "MACHINE_TYPE:3D Printer EXTRUDER_COUNT:1 UUID:cede2a2f-41a2-4748-9b12-c55c62f367ff")

_PARAM_RE = re.compile(r"([A-Za-z])\s*([-+]?(?:\d+\.?\d*|\.\d+))?")
# Fast path for the common case, a numbered G/M/T line with plain numeric
# parameters: "N12 G1 X1.5 Y-2 E.3 F3000*57".  One regex validates the framing and
# the command's shape; the result is byte for byte what the general code gives
# (anything else - errors, M110, comments, subcodes, string arguments, lower case,
# "X1e5" - takes the general path).
_FAST_LINE = re.compile(
    rb"N([0-9]+) ([GMT])([0-9]+)((?: +[A-Z](?:[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))?)*) *\*([0-9]+)")
_NAMES = {}                      # b"G01" -> "G1"
_EMERGENCY = (b"M108", b"M112", b"M410")
_STRING_ARG_CODES = {"M117", "M118", "M23", "M28", "M30"}

COMMANDS = {}


def gcode(*names):
    """Register a handler in the command table under each G/M/T name."""
    def register(func):
        for name in names:
            COMMANDS[name] = func
        return func
    return register


def _strtol(data: bytes, pos: int) -> int:
    """C strtol(base 10) on bytes: leading spaces, sign, digits; 0 if none."""
    end = len(data)
    while pos < end and data[pos] == 32:
        pos += 1
    i = pos
    if i < end and data[i] in (43, 45):
        i += 1
    while i < end and 48 <= data[i] <= 57:
        i += 1
    try:
        return int(data[pos:i])
    except ValueError:
        return 0


def _next_tick(due: float, interval: float, now: float) -> float:
    """Next firing of a periodic timer: on its grid, unless it has fallen behind."""
    due += interval
    return due if due > now else now + interval


def _emergency_code(line: bytes) -> bytes | None:
    """M108/M112/M410 at the start of a line (after an optional N prefix)."""
    s = line.lstrip(b" ")
    if s[:1] == b"N":
        i = 1
        if s[1:2] == b"-":
            i = 2
        while i < len(s) and 48 <= s[i] <= 57:
            i += 1
        s = s[i:].lstrip(b" ")
    code = s[:4]
    if code in _EMERGENCY and not s[4:5].isdigit():
        return code
    return None


def _command_text(line: bytes) -> str:
    """Command as Marlin's parser sees it: no ``N<n> `` prefix, cut at ``*``."""
    if line[:1] == b"N" and line[1:2] in b"-0123456789" and line[1:2]:
        space = line.find(b" ")
        line = line[space + 1:].lstrip(b" ") if space >= 0 else b""
    star = line.find(b"*")
    if star >= 0:
        line = line[:star]
    return line.rstrip(b" ").decode("latin-1")


class Command:
    """A parsed queue entry."""

    __slots__ = ("text", "n", "name", "params", "string_arg", "emergency")

    def __init__(self, text: str, n: int | None, emergency: bool, name=None, params=None):
        self.text = text
        self.n = n
        self.emergency = emergency
        self.string_arg = ""
        if params is not None:           # parsed by the fast path
            self.name = name
            self.params = params
            return
        self.name = None
        self.params = {}
        self._parse(text)

    def _parse(self, text: str) -> None:
        letter = text[:1].upper()
        if letter not in ("G", "M", "T"):
            return
        i = 1
        end = len(text)
        while i < end and text[i] == " ":
            i += 1
        j = i
        while j < end and "0" <= text[j] <= "9":    # not isdigit(): "²" is one
            j += 1
        if j == i:
            return
        self.name = letter + str(int(text[i:j]))
        if j < end and text[j] == ".":          # subcode, e.g. G29.1: ignored
            j += 1
            while j < end and "0" <= text[j] <= "9":
                j += 1
        rest = text[j:]
        if self.name in _STRING_ARG_CODES:
            self.string_arg = rest.strip()
            return
        params = self.params
        try:
            for token in rest.split():
                value = token[1:]
                params[token[0].upper()] = float(value) if value else None
                if value and not value[-1].isdigit() and value[-1] != ".":
                    raise ValueError(value)      # inf, nan, 1e5: Marlin reads digits only
        except ValueError:
            params.clear()
            for letter, value in _PARAM_RE.findall(rest):
                params[letter.upper()] = float(value) if value else None

    def value(self, letter: str, default=None):
        v = self.params.get(letter)
        return default if v is None else v


class ExecLog:
    """Executed commands, one per line, written with one unbuffered write each."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, text: str) -> None:
        os.write(self.fd, text.encode("latin-1") + b"\n")

    def close(self) -> None:
        os.close(self.fd)


class MarlinFirmware:
    """The firmware: protocol state, command queue, executor and timers."""

    def __init__(self, clock, thermal, planner, faults=None, exec_log=None,
                 advanced_ok=False, busy_interval=2.0, reply_noise=None):
        self.clock = clock
        self.reply_noise = reply_noise if reply_noise is not None and reply_noise.enabled else None
        self.thermal = thermal
        self.planner = planner
        self.faults = faults
        self.exec_log = exec_log
        self.advanced_ok = advanced_ok
        self.default_busy_interval = busy_interval
        self._out = []
        self.link_drop_requested = False
        self.discard_requested = False
        self.counters = {"lines": 0, "commands": 0, "errors": 0, "unknown": 0}
        self.reset()

    # -- life cycle -------------------------------------------------------------
    def reset(self) -> None:
        """Power-on / reset button: protocol state back to boot, banner printed."""
        now = self.clock.now()
        self.halted = False
        self.last_n = 0
        self._partial = b""
        self.rx = deque()
        self.rx_bytes = 0
        self.queue = deque()
        self.current = None          # generator of the command being executed
        self.current_cmd = None
        self.wake = 0.0
        self.wait_for_heatup = False
        self.busy_interval = self.default_busy_interval
        self.busy_next = None
        self.report_interval = 0.0
        self.report_next = None
        self.relative = False
        self.e_relative = None       # None: follow G90/G91; else M82/M83
        self.unit = 1.0
        self.feedrate = DEFAULT_FEEDRATE
        self.feedrate_pct = 100.0
        self.flow_pct = 100.0
        self.allow_cold_extrude = False
        self.extrude_min_temp = EXTRUDE_MINTEMP
        self.progress = None
        self.status_message = ""
        self.thermal.disable_all()
        self.planner.quick_stop(now)
        for line in BANNER:
            self.emit(line)

    # -- output -----------------------------------------------------------------
    def emit(self, line: str) -> None:
        self._out.append(line)

    def take_output(self) -> bytes:
        if not self._out:
            return b""
        if self.reply_noise is not None:
            self.reply_noise.apply(self._out)
        self._out.append("")
        data = "\n".join(self._out).encode("latin-1")
        self._out.clear()
        return data

    # -- input ------------------------------------------------------------------
    def wants_input(self) -> bool:
        return self.halted or self.rx_bytes < RX_BUFFER_SIZE

    def receive(self, data: bytes) -> None:
        """Bytes from the host: split lines, inject faults, run the emergency parser."""
        if self.halted:
            return
        if b"\r" in data:
            data = data.replace(b"\r", b"\n")
        lines = (self._partial + data).split(b"\n")
        partial = lines.pop()
        self._partial = partial if len(partial) <= 4 * MAX_CMD_SIZE else partial[:MAX_CMD_SIZE]
        scan = b"M1" in data or b"M410" in data
        faults = self.faults
        for line in lines:
            if not line:
                continue
            self.counters["lines"] += 1
            if faults is not None and faults.enabled:
                line, drop_link = faults.apply(line)
                if drop_link:
                    self.link_drop_requested = True
                if line is None:
                    if drop_link:
                        break
                    continue
            emergency = scan and _emergency_code(line)
            if emergency:
                self._emergency(emergency, line)
                if self.halted:
                    return
            self.rx.append((line, bool(emergency)))
            self.rx_bytes += len(line) + 1
            if self.link_drop_requested:
                break

    def link_lost(self) -> None:
        """The cable was pulled: bytes in flight are gone, the firmware runs on."""
        self.link_drop_requested = False
        self._partial = b""

    def _emergency(self, code: bytes, line: bytes) -> None:
        if self.exec_log is not None:
            self.exec_log.write(_command_text(line))
        if code == b"M112":
            self.kill()
        elif code == b"M108":
            self.wait_for_heatup = False
        else:
            self.planner.quick_stop(self.clock.now())

    # -- framing ----------------------------------------------------------------
    def _fill_queue(self) -> None:
        rx, queue = self.rx, self.queue
        while rx and len(queue) < BUFSIZE:
            raw, emergency = rx.popleft()
            self.rx_bytes -= len(raw) + 1
            cmd = self._frame(raw, emergency)
            if cmd is not None:
                queue.append(cmd)

    def _frame(self, raw: bytes, emergency: bool):
        """Marlin's get_serial_commands checks for one line; a Command or None.

        The common line (numbered G/M/T with numeric parameters, right number and
        checksum) is taken by one regex; the result is the same as _frame_general's.
        """
        if len(raw) < MAX_CMD_SIZE - 1:
            m = _FAST_LINE.fullmatch(raw)
            if m is not None:
                n = int(m[1])
                code = m[2] + m[3]
                name = _NAMES.get(code)
                if name is None:
                    name = m[2].decode() + str(int(m[3]))
                    if len(_NAMES) < 4096:
                        _NAMES[code] = name
                if (n == self.last_n + 1 and b"M110" not in raw and name not in _STRING_ARG_CODES
                        and int(m[5]) == reduce(xor, raw[:m.start(5) - 1], 0)):
                    self.last_n = n
                    params = {}
                    for token in m[4].split():
                        value = token[1:]
                        params[chr(token[0])] = float(value) if value else None
                    return Command(raw[m.start(2):m.end(4)].decode("latin-1"), n, emergency,
                                   name, params)
        return self._frame_general(raw, emergency)    # errors included

    def _frame_general(self, raw: bytes, emergency: bool):
        """Every line, the way Marlin's get_serial_commands checks it."""
        semi = raw.find(b";")
        if semi >= 0:
            raw = raw[:semi]
        if len(raw) >= MAX_CMD_SIZE - 1:
            raw = raw[:MAX_CMD_SIZE - 1]
        if b"\x08" in raw:
            raw = self._apply_backspaces(raw)
        line = raw.lstrip(b" ")
        if not line:
            return None
        n = None
        if line[0] == 78:                       # 'N'
            m110 = b"M110" in line
            npos = 0
            if m110:
                second = line.find(b"N", 4)
                if second >= 0:
                    npos = second
            n = _strtol(line, npos + 1)
            if n != self.last_n + 1 and not m110:
                return self._line_error(ERR_LINE_NO)
            star = line.rfind(b"*")
            if star < 0:
                return self._line_error(ERR_NO_CHECKSUM)
            if _strtol(line, star + 1) != reduce(xor, line[:star], 0):
                return self._line_error(ERR_CHECKSUM)
            self.last_n = n
        elif b"*" in line:
            return self._line_error(ERR_NO_LINE_NUMBER)
        return Command(_command_text(line), n, emergency)

    @staticmethod
    def _apply_backspaces(raw: bytes) -> bytes:
        out = bytearray()
        for b in raw:
            if b == 8:
                if out:
                    out.pop()
            else:
                out.append(b)
        return bytes(out)

    def _line_error(self, message: str) -> None:
        self.counters["errors"] += 1
        self.emit(f"Error:{message}{self.last_n}")
        self._flush_and_request_resend()
        return None

    def _flush_and_request_resend(self) -> None:
        self.rx.clear()
        self.rx_bytes = 0
        self._partial = b""
        self.discard_requested = True
        self.emit(f"Resend: {self.last_n + 1}")
        self.emit("ok")

    # -- execution --------------------------------------------------------------
    def service(self) -> None:
        """Advance physics to now, run what can run, fire timers.

        At max speed a command waiting on a known virtual time is not handed back
        to the event loop while more received lines are waiting: the clock jumps
        here, which saves a port poll per move when the planner is full.
        """
        clock = self.clock
        while True:
            now = clock.now()
            if self.halted:
                self.thermal.advance(now, protect=False)
                return
            try:
                self.thermal.advance(now)
            except ThermalError as exc:
                self.kill(f"Error:{exc}")
                return
            self._run(now)
            if self.halted:
                return
            self._timers(now)
            if not (clock.is_max and self.rx and self.current is not None
                    and self.wake is not None):
                return
            clock.jump_to(self.next_deadline())

    def _timers(self, now: float) -> None:
        if self.report_next is not None and now >= self.report_next:
            self.report_next = _next_tick(self.report_next, self.report_interval, now)
            self.emit(" " + self.thermal.report())
        if self.current is not None and self.busy_next is not None and now >= self.busy_next:
            self.emit(BUSY)
            self.busy_next = _next_tick(self.busy_next, self.busy_interval, now)

    def _run(self, now: float) -> None:
        queue = self.queue
        while not self.halted:
            if self.current is not None:
                if (self.wake is not None and now < self.wake) or not self._resume():
                    self._fill_queue()
                    return
            if not queue:
                if not self.rx:
                    return
                self._fill_queue()
                continue
            cmd = queue[0]
            self.counters["commands"] += 1
            if self.exec_log is not None and not cmd.emergency:
                self.exec_log.write(cmd.text)
            handler = COMMANDS.get(cmd.name)
            if handler is None:
                self.counters["unknown"] += 1
                self.emit(f'echo:Unknown command: "{cmd.text}"')
                result = None
            else:
                result = handler(self, cmd)
            if result is not None and result is not NO_OK:
                self.current = result
                self.current_cmd = cmd
                self.busy_next = now + self.busy_interval if self.busy_interval else None
                if not self._resume():
                    self._fill_queue()
                    return
                continue
            self._finish(cmd, result)

    def _resume(self) -> bool:
        """Run the waiting handler one step; True once it has finished."""
        try:
            self.wake = next(self.current)
            return False
        except StopIteration:
            cmd = self.current_cmd
            self.current = self.current_cmd = None
            self.busy_next = None
            self._finish(cmd, None)
            return True

    def _finish(self, cmd: Command, result) -> None:
        if self.halted:
            return
        if result is not NO_OK:
            self.emit(self._ok_text(cmd))
        self.queue.popleft()

    def _ok_text(self, cmd: Command) -> str:
        if not self.advanced_ok:
            return "ok"
        n = f" N{cmd.n}" if cmd.n is not None else ""
        free = self.planner.free(self.clock.now())
        return f"ok{n} P{free} B{BUFSIZE - len(self.queue)}"

    def kill(self, *messages: str) -> None:
        """Marlin's kill(): heaters and motors off, no more service until reset."""
        for message in messages:
            self.emit(message)
        self.emit(ERR_KILLED)
        self.halted = True
        self.thermal.disable_all()
        self.planner.quick_stop(self.clock.now())
        if self.current is not None:
            self.current.close()
        self.current = self.current_cmd = None
        self.queue.clear()
        self.rx.clear()
        self.rx_bytes = 0

    # -- scheduling (for the event loop) ----------------------------------------
    def blocked(self) -> bool:
        """True while the firmware waits on its own virtual time, not on the host."""
        return not self.halted and self.current is not None

    def next_deadline(self) -> float | None:
        """Earliest virtual time at which something will happen without input."""
        if self.halted:
            return None
        times = [t for t in (self.report_next, self.busy_next) if t is not None]
        if self.current is not None:
            times.append(self.wake if self.wake is not None else self.thermal.next_step)
        if self.thermal.active():
            times.append(self.thermal.next_step)
        return min(times) if times else None

    def get_status(self) -> dict:
        now = self.clock.now()
        return {"halted": self.halted, "last_line": self.last_n, "queue": len(self.queue),
                "rx_lines": len(self.rx), "executing": getattr(self.current_cmd, "text", None),
                "counters": dict(self.counters), "thermal": self.thermal.get_status(),
                "motion": self.planner.get_status(now),
                "faults": self.faults.get_status() if self.faults else None,
                "reply_noise": self.reply_noise.get_status() if self.reply_noise else None}

    # -- helpers for handlers ------------------------------------------------------
    def _synchronize(self):
        """Generator: wait until every planned move has finished (planner.synchronize)."""
        while True:
            end = self.planner.idle_time()
            if end <= self.clock.now():
                return
            yield end

    def _dwell(self, seconds: float):
        yield from self._synchronize()
        until = self.clock.now() + seconds
        while self.clock.now() < until:
            yield until

    def _wait_for_heater(self, heater, no_wait_for_cooling: bool):
        """Marlin's wait_for_hotend/wait_for_bed: residency window, 1 s reports, M108."""
        cfg = heater.config
        self.wait_for_heatup = True
        next_report = self.clock.now()
        residency_start = None
        first = True
        while self.wait_for_heatup:
            now = self.clock.now()
            temp, target = heater.reading, heater.target
            diff = abs(target - temp)
            if residency_start is None:
                if diff < cfg.window:
                    residency_start = now - (cfg.residency_time if first else 0.0)
            elif diff > cfg.hysteresis:
                residency_start = now
            if now >= next_report:
                w = ("?" if residency_start is None
                     else str(max(0, int(cfg.residency_time - (now - residency_start)))))
                self.emit(f" {self.thermal.report()} W:{w}")
                next_report = now + 1.0
            if target <= 0 or (no_wait_for_cooling and temp > target + cfg.window):
                break
            if residency_start is not None and now - residency_start >= cfg.residency_time:
                break
            first = False
            yield None
        self.wait_for_heatup = False

    def _axis_target(self, cmd: Command):
        """Destination of a G0/G1 in logical mm, honouring G90/G91, M82/M83, G20."""
        target = list(self.planner.position)
        params = cmd.params
        relative = self.relative
        for i, axis in enumerate("XYZE"):
            v = params.get(axis)
            if v is None:
                continue
            v *= self.unit
            rel = relative if i < 3 or self.e_relative is None else self.e_relative
            target[i] = target[i] + v if rel else v
        return target

    def _set_target(self, heater, cmd: Command) -> bool:
        s = cmd.params.get("S")
        if s is None:
            s = cmd.params.get("R")
        if s is None:
            return False
        heater.set_target(s, self.clock.now())
        return True


# -- motion ---------------------------------------------------------------------

@gcode("G0", "G1")
def g0_g1(fw: MarlinFirmware, cmd: Command):
    f = cmd.params.get("F")
    if f is not None and f > 0:
        fw.feedrate = f * fw.unit / 60
    target = fw._axis_target(cmd)
    planner = fw.planner
    de = target[3] - planner.position[3]
    if de:
        if not fw.allow_cold_extrude and fw.thermal.hotend.reading < fw.extrude_min_temp:
            fw.emit("echo: cold extrusion prevented")
            planner.position[3] = target[3]
        elif abs(de) > EXTRUDE_MAXLENGTH:
            fw.emit("echo: too long extrusion prevented")
            planner.position[3] = target[3]
    feed = fw.feedrate * fw.feedrate_pct / 100
    if planner.free(fw.clock.now()) > 0:
        planner.add_move(target, feed, fw.clock.now())
        return None
    return _buffer_when_free(fw, target, feed)


def _buffer_when_free(fw: MarlinFirmware, target, feed):
    """A G1 that found the planner full waits in idle() for a free block."""
    while fw.planner.free(fw.clock.now()) == 0:
        yield fw.planner.next_free_time()
    fw.planner.add_move(target, feed, fw.clock.now())


@gcode("G4")
def g4(fw, cmd):
    seconds = cmd.value("P", 0.0) / 1000
    if cmd.params.get("S") is not None:
        seconds = cmd.params["S"]
    return fw._dwell(max(0.0, seconds))


@gcode("G20")
def g20(fw, cmd):
    fw.unit = 25.4


@gcode("G21")
def g21(fw, cmd):
    fw.unit = 1.0


@gcode("G28")
def g28(fw, cmd):
    axes = "".join(a for a in "XYZ" if a in cmd.params) or "XYZ"
    return _home(fw, axes)


def _home(fw, axes):
    yield from fw._synchronize()
    until = fw.clock.now() + fw.planner.home_time(axes)
    while fw.clock.now() < until:
        yield until
    fw.planner.set_homed(axes)


@gcode("G90")
def g90(fw, cmd):
    fw.relative = False
    fw.e_relative = None


@gcode("G91")
def g91(fw, cmd):
    fw.relative = True
    fw.e_relative = None


@gcode("G92")
def g92(fw, cmd):
    values = {a: v * fw.unit for a, v in cmd.params.items() if a in "XYZE" and v is not None}
    fw.planner.set_position(values, fw.clock.now())


@gcode("M82")
def m82(fw, cmd):
    fw.e_relative = False


@gcode("M83")
def m83(fw, cmd):
    fw.e_relative = True


@gcode("M400")
def m400(fw, cmd):
    return fw._synchronize()


@gcode("M410")
def m410(fw, cmd):
    fw.planner.quick_stop(fw.clock.now())


@gcode("M17")
def m17(fw, cmd):
    fw.planner.steppers_on = True


@gcode("M18", "M84")
def m18_m84(fw, cmd):
    if cmd.params.get("S") is not None:
        return None                      # stepper idle timeout: nothing to model
    return _disable_steppers(fw)


def _disable_steppers(fw):
    yield from fw._synchronize()
    fw.planner.steppers_on = False


@gcode("M114")
def m114(fw, cmd):
    pos = fw.planner.current_position(fw.clock.now())
    cx, cy, cz = fw.planner.counts(pos)
    fw.emit(f"X:{pos[0]:.2f} Y:{pos[1]:.2f} Z:{pos[2]:.2f} E:{pos[3]:.2f} "
            f"Count X:{cx} Y:{cy} Z:{cz}")


@gcode("M201")
def m201(fw, cmd):
    _set_axis_limits(cmd, fw.planner.config.max_accel)


@gcode("M203")
def m203(fw, cmd):
    _set_axis_limits(cmd, fw.planner.config.max_feedrate)


def _set_axis_limits(cmd, values):
    for i, axis in enumerate("XYZE"):
        v = cmd.params.get(axis)
        if v is not None and v > 0:
            values[i] = v


@gcode("M204")
def m204(fw, cmd):
    cfg = fw.planner.config
    for letter, fields in (("S", ("accel", "travel_accel")), ("P", ("accel",)),
                           ("R", ("retract_accel",)), ("T", ("travel_accel",))):
        v = cmd.params.get(letter)
        if v is not None and v > 0:
            for name in fields:
                setattr(cfg, name, v)


@gcode("M205")
def m205(fw, cmd):
    j = cmd.params.get("J")
    if j is not None and 0.01 <= j <= 0.3:
        fw.planner.config.junction_deviation = j


@gcode("M220")
def m220(fw, cmd):
    s = cmd.params.get("S")
    if s is not None and s > 0:
        fw.feedrate_pct = s


@gcode("M221")
def m221(fw, cmd):
    s = cmd.params.get("S")
    if s is not None and s > 0:
        fw.flow_pct = s


# -- temperature ----------------------------------------------------------------

def _heater_commands(set_code: str, wait_code: str, heater: str) -> None:
    """Register a heater's set-target command and its set-and-wait twin (M104/M109, M140/M190)."""

    @gcode(set_code)
    def set_target(fw, cmd):
        fw._set_target(getattr(fw.thermal, heater), cmd)

    @gcode(wait_code)
    def set_target_and_wait(fw, cmd):
        no_wait_for_cooling = cmd.params.get("S") is not None  # S waits only when heating; R both ways
        fw._set_target(getattr(fw.thermal, heater), cmd)
        return fw._wait_for_heater(getattr(fw.thermal, heater), no_wait_for_cooling)


_heater_commands("M104", "M109", "hotend")
_heater_commands("M140", "M190", "bed")


@gcode("M105")
def m105(fw, cmd):
    fw.emit("ok " + fw.thermal.report())
    return NO_OK


def _interval_s(cmd) -> float | None:
    """An interval in seconds from S (M155, M113), clamped to Marlin's 0..60; None when absent."""
    s = cmd.params.get("S")
    return None if s is None else min(max(s, 0.0), 60.0)


@gcode("M155")
def m155(fw, cmd):
    interval = _interval_s(cmd)
    if interval is not None:
        fw.report_interval = interval
        fw.report_next = fw.clock.now() + interval if interval else None


@gcode("M106")
def m106(fw, cmd):
    fw.thermal.hotend.fan = min(max(cmd.value("S", 255.0), 0.0), 255.0) / 255


@gcode("M107")
def m107(fw, cmd):
    fw.thermal.hotend.fan = 0.0


@gcode("M302")
def m302(fw, cmd):
    s, p = cmd.params.get("S"), cmd.params.get("P")
    if "S" in cmd.params or "P" in cmd.params:
        if s is not None:
            fw.extrude_min_temp = s
        fw.allow_cold_extrude = (p is not None and p > 0) or (s is not None and s == 0)
    else:
        state = "en" if fw.allow_cold_extrude else "dis"
        fw.emit(f"echo:Cold extrudes are {state}abled (min temp {fw.extrude_min_temp:.0f}C)")


# -- host protocol ----------------------------------------------------------------

@gcode("M108")
def m108(fw, cmd):
    fw.wait_for_heatup = False


@gcode("M110")
def m110(fw, cmd):
    n = cmd.params.get("N")
    if n is not None:
        fw.last_n = int(n)


@gcode("M112")
def m112(fw, cmd):
    fw.kill()
    return NO_OK


@gcode("M113")
def m113(fw, cmd):
    interval = _interval_s(cmd)
    if interval is not None:
        fw.busy_interval = interval


@gcode("M115")
def m115(fw, cmd):
    fw.emit(FIRMWARE_NAME)
    for name, enabled in CAPABILITIES:
        fw.emit(f"Cap:{name}:{enabled}")


@gcode("M999")
def m999(fw, cmd):
    if cmd.value("S", 0.0) <= 0:
        fw._flush_and_request_resend()


# -- print job and display ----------------------------------------------------------

@gcode("M73")
def m73(fw, cmd):
    if cmd.params.get("P") is not None:
        fw.progress = cmd.params["P"]


@gcode("M75", "M76", "M77")
def print_job_timer(fw, cmd):
    return None


@gcode("M117")
def m117(fw, cmd):
    fw.status_message = cmd.string_arg


@gcode("M118")
def m118(fw, cmd):
    text = cmd.string_arg
    prefix = ""
    for _ in range(3):
        head = text[:2]
        if head in ("A1", "E1") or (head[:1] == "P" and head[1:2].isdigit()):
            prefix += {"A1": "//", "E1": "echo:"}.get(head, "")
            text = text[2:].lstrip(" ")
        else:
            break
    fw.emit(("echo:" if "echo:" in prefix else "") + ("//" if "//" in prefix else "") + text)


@gcode("T0", "T1", "T2", "T3", "T4", "T5", "T6", "T7")
def tool_change(fw, cmd):
    if cmd.name != "T0":
        fw.emit(f"echo:{cmd.name} Invalid extruder")
