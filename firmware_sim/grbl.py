"""grbl 1.1h protocol for the mill simulator: serial RX ring, real-time bytes, line
buffer, G-code parser, ``$`` system commands, settings, states, alarms, reports.

The strings and codes follow grbl 1.1h (``protocol.c``, ``report.c``,
``gcode.c``, ``system.c``, ``settings.c``); replies end in CR LF as grbl's do.
The object offers the event-loop interface of ``firmware_sim.loop``.
"""

from __future__ import annotations

import json
import math
import os
import re

from .mill_motion import Block, MillMotion

VERSION = "1.1h"
BUILD_DATE = "20190830"
WELCOME = f"Grbl {VERSION} ['$' for help]"
RX_BUFFER_SIZE = 128          # ring of 128 slots: 127 bytes fit, Bf reports 128 when empty
LINE_BUFFER_SIZE = 80
PLANNER_SLOTS = 16            # BLOCK_BUFFER_SIZE: holds 15 blocks
N_COORDS = 6

ERRORS = {
    1: "Expected command letter", 2: "Bad number format", 3: "Invalid $ statement",
    4: "Negative value", 5: "Setting disabled", 6: "Step pulse too short",
    7: "EEPROM read fail", 8: "Not idle", 9: "G-code locked out during alarm or jog",
    10: "Soft limits require homing", 11: "Line overflow", 12: "Step rate > 30kHz",
    13: "Safety door open", 14: "Line length exceeded", 15: "Travel exceeded",
    16: "Invalid jog command", 17: "Laser mode requires PWM",
    20: "Unsupported command", 21: "Modal group violation", 22: "Undefined feed rate",
    23: "Command value not integer", 24: "Axis command conflict", 25: "Word repeated",
    26: "No axis words", 27: "Invalid line number", 28: "Value word missing",
    29: "G59.x not supported", 30: "G53 invalid with G0/G1 only", 31: "Axis words exist",
    32: "No axis words in plane", 33: "Invalid target", 34: "Arc radius error",
    35: "No offsets in plane", 36: "Unused words", 37: "G43.1 axis error",
    38: "Tool number out of range",
}
ALARMS = {1: "Hard limit", 2: "Soft limit", 3: "Abort during cycle", 4: "Probe fail",
          5: "Probe fail", 6: "Homing fail", 7: "Homing fail", 8: "Homing fail",
          9: "Homing fail"}

# $N: (default, decimals); decimals None = integer setting
SETTINGS = {
    0: (10, None), 1: (25, None), 2: (0, None), 3: (0, None), 4: (0, None), 5: (0, None),
    6: (0, None), 10: (1, None), 11: (0.010, 3), 12: (0.002, 3), 13: (0, None),
    20: (0, None), 21: (0, None), 22: (0, None), 23: (0, None), 24: (25.0, 3),
    25: (500.0, 3), 26: (250, None), 27: (1.0, 3), 30: (1000.0, 0), 31: (0.0, 0),
    32: (0, None),
    100: (250.0, 3), 101: (250.0, 3), 102: (250.0, 3),
    110: (500.0, 3), 111: (500.0, 3), 112: (500.0, 3),
    120: (10.0, 3), 121: (10.0, 3), 122: (10.0, 3),
    130: (200.0, 3), 131: (200.0, 3), 132: (200.0, 3),
}
BOOLEAN_SETTINGS = (4, 5, 6, 13, 20, 21, 22, 32)

HELP = "[HLP:$$ $# $G $I $N $x=val $Nx=line $J=line $SLP $C $X $H ~ ! ? ctrl-x]"
MSG_UNLOCK = "[MSG:'$H'|'$X' to unlock]"
MSG_UNLOCKED = "[MSG:Caution: Unlocked]"
MSG_RESET = "[MSG:Reset to continue]"

RT_STATUS, RT_HOLD, RT_START, RT_RESET = 0x3F, 0x21, 0x7E, 0x18
RT_DOOR, RT_JOG_CANCEL, RT_SPINDLE_STOP = 0x84, 0x85, 0x9E
REALTIME = {RT_STATUS, RT_HOLD, RT_START, RT_RESET}

REPORT_WCO_BUSY, REPORT_WCO_IDLE = 30, 10
REPORT_OVR_BUSY, REPORT_OVR_IDLE = 20, 10

NUMBER = re.compile(rb"[+-]?(\d+\.?\d*|\.\d+)")
AXES = "XYZ"

# modal groups of the G words (value*10 -> group)
G_GROUPS = {}
for _codes, _group in (((0, 10, 20, 30, 382, 383, 384, 385, 800), "motion"),
                       ((40, 100, 280, 281, 300, 301, 530, 920, 921), "nonmodal"),
                       ((170, 180, 190), "plane"), ((900, 910), "distance"),
                       ((911,), "arc"), ((930, 940), "feedmode"), ((200, 210), "units"),
                       ((400,), "cutter"), ((431, 490), "tlo"),
                       ((540, 550, 560, 570, 580, 590), "coord"), ((610,), "path")):
    for _c in _codes:
        G_GROUPS[_c] = _group
M_GROUPS = {0: "stop", 1: "stop", 2: "stop", 30: "stop", 3: "spindle", 4: "spindle",
            5: "spindle", 7: "coolant", 8: "coolant", 9: "coolant"}


class GcodeError(Exception):
    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def fmt(value: float, decimals: int = 3) -> str:
    return f"{value:.{decimals}f}"


def axes_text(values) -> str:
    return ",".join(fmt(v + 0.0) for v in values)


class Settings:
    """``$N`` values, kept in a JSON file (grbl's EEPROM) together with G54-G59,
    G28/G30 positions and the ``$N`` startup lines."""

    def __init__(self, path: str | None):
        self.path = path
        self.values = {n: d for n, (d, _) in SETTINGS.items()}
        self.coords = [[0.0, 0.0, 0.0] for _ in range(N_COORDS)]
        self.g28 = [0.0, 0.0, 0.0]
        self.g30 = [0.0, 0.0, 0.0]
        self.startup = ["", ""]
        if path and os.path.exists(path):
            try:
                with open(path) as f:
                    data = json.load(f)
                for key, value in data.get("settings", {}).items():
                    if int(key) in SETTINGS:
                        self.values[int(key)] = value
                self.coords = data.get("coords", self.coords)
                self.g28 = data.get("g28", self.g28)
                self.g30 = data.get("g30", self.g30)
                self.startup = data.get("startup", self.startup)
            except (OSError, ValueError, TypeError) as exc:
                raise SystemExit(f"settings file {path}: {exc}") from None

    def save(self) -> None:
        if not self.path:
            return
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"settings": {str(k): v for k, v in self.values.items()},
                       "coords": self.coords, "g28": self.g28, "g30": self.g30,
                       "startup": self.startup}, f, indent=1)
        os.replace(tmp, self.path)

    def __getitem__(self, n: int):
        return self.values[n]

    def text(self, n: int) -> str:
        decimals = SETTINGS[n][1]
        value = self.values[n]
        return f"${n}={int(value)}" if decimals is None else f"${n}={fmt(value, decimals)}"

    def set(self, n: int, value: float) -> int:
        """Store ``$n=value``; returns a grbl status code (0 = ok)."""
        if n not in SETTINGS:
            return 3
        if value < 0:
            return 4
        if SETTINGS[n][1] is None:
            value = int(value)
            if n == 0 and value < 3:
                return 6
            if n in BOOLEAN_SETTINGS:
                value = 1 if value else 0
            if n == 20 and value and not self.values[22]:
                return 10
        elif n in (110, 111, 112, 120, 121, 122, 100, 101, 102) and value <= 0:
            return 4 if value < 0 else 3
        self.values[n] = value
        if n == 22 and not value:
            self.values[20] = 0     # grbl clears soft limits with homing
        self.save()
        return 0

    def restore(self, what: str) -> None:
        if what in ("$", "*"):
            self.values = {n: d for n, (d, _) in SETTINGS.items()}
        if what in ("#", "*"):
            self.coords = [[0.0, 0.0, 0.0] for _ in range(N_COORDS)]
            self.g28 = [0.0, 0.0, 0.0]
            self.g30 = [0.0, 0.0, 0.0]
        if what == "*":
            self.startup = ["", ""]
        self.save()


class ParserState:
    """gc_state: the modal state and the parser's idea of where the tool will be."""

    def __init__(self):
        self.motion = 0
        self.plane = 17
        self.inches = False
        self.absolute = True
        self.inverse_time = False
        self.coord = 0
        self.spindle = 5
        self.coolant = set()
        self.feed = 0.0
        self.speed = 0.0
        self.tool = 0
        self.g92 = [0.0, 0.0, 0.0]
        self.position = [0.0, 0.0, 0.0]

    def text(self) -> str:
        motion = {0: "G0", 10: "G1", 20: "G2", 30: "G3", 800: "G80"}.get(self.motion, "G0")
        coolant = " ".join(f"M{c}" for c in sorted(self.coolant)) or "M9"
        return (f"[GC:{motion} G{54 + self.coord} G{self.plane} G{20 if self.inches else 21} "
                f"G{90 if self.absolute else 91} G{93 if self.inverse_time else 94} "
                f"M{self.spindle} {coolant} T{self.tool} F{self.feed:g} S{self.speed:g}]")


class GrblFirmware:
    """The firmware: RX ring, line buffer, protocol loop, executor, reports."""

    def __init__(self, clock, settings: Settings, faults=None, exec_log=None,
                 spinup: float = 0.0):
        self.clock = clock
        self.settings = settings
        self.faults = faults if faults is not None and faults.enabled else None
        self.exec_log = exec_log
        self.spinup = spinup
        self._out = []
        self.link_drop_requested = False
        self.discard_requested = False
        self.counters = {"lines": 0, "ok": 0, "errors": 0, "alarms": 0, "rx_overflows": 0,
                         "rx_overflow_bytes": 0, "status_reports": 0, "resets": 0}
        self.motion = MillMotion(PLANNER_SLOTS)
        # physical = machine + offset; the hard-limit switches sit at physical 0 and
        # -travel, and the tool powers up in the middle of the travel
        self.offset = [-settings[130 + i] / 2 for i in range(3)]
        self.state = "Alarm" if settings[22] else "Idle"
        self.check_mode = False
        self._boot()

    # -- life cycle -----------------------------------------------------------------
    def _boot(self) -> None:
        """Start of grbl's main loop: after power-on and after each soft reset."""
        self.rx = bytearray()
        self.line = bytearray()
        self.raw = bytearray()
        self.comment = None
        self.overflow = False
        self.job = None
        self.job_line = None
        self.wake = None
        self.critical = False
        self.homing = False
        self.jogging = False
        self.hold_requested = False
        self.gc = ParserState()
        self.gc.position = self.motion.position(self.clock.now())
        self.spindle_dir = 0
        self.feed_ovr, self.rapid_ovr, self.spindle_ovr = 100, 100, 100
        self.wco_counter = 0
        self.ovr_counter = 0
        self.emit("")
        self.emit(WELCOME)
        if self.state in ("Alarm", "Sleep"):
            self.state = "Alarm"
            self.emit(MSG_UNLOCK)
        else:
            self.state = "Idle"
            self.check_mode = False

    def soft_reset(self) -> None:
        """0x18 (and power-on reset): stop, alarm 3 if moving, banner."""
        now = self.clock.now()
        self.counters["resets"] += 1
        moving = (self.motion.busy() or self.homing or self.jogging) and not self.critical
        self.motion.stop(now)
        if self.job is not None:
            self.job.close()
        if moving:
            self._alarm(6 if self.homing else 3)
        self.check_mode = False
        self._boot()

    _logged = False
    _reset_after = False
    _inside = True

    def _alarm(self, code: int) -> None:
        self.counters["alarms"] += 1
        self.state = "Alarm"
        self.emit(f"ALARM:{code}")

    def _critical(self, code: int, close_job: bool = False) -> None:
        """Hard/soft limit: motion stops at once, then everything waits for a reset."""
        self.motion.stop(self.clock.now())
        if close_job and self.job is not None:
            self.job.close()
            self.job = None
        self._alarm(code)
        self.emit(MSG_RESET)
        self.critical = True
        self.rx.clear()
        self.line.clear()
        self.raw.clear()

    # -- output ---------------------------------------------------------------------
    def emit(self, line: str) -> None:
        self._out.append(line)

    def take_output(self) -> bytes:
        if not self._out:
            return b""
        data = "".join(line + "\r\n" for line in self._out).encode("latin-1")
        self._out.clear()
        return data

    # -- input: the serial ISR ------------------------------------------------------
    def wants_input(self) -> bool:
        return True       # a UART receives whether or not there is room

    def receive(self, data: bytes) -> None:
        for c in data:
            if c in REALTIME or c >= 0x80:
                self._realtime(c)
            elif len(self.rx) < RX_BUFFER_SIZE - 1:
                self.rx.append(c)
            else:
                self.counters["rx_overflow_bytes"] += 1
                if not getattr(self, "_overflowing", False):
                    self.counters["rx_overflows"] += 1
                self._overflowing = True
                continue
            self._overflowing = False

    def link_lost(self) -> None:
        self.link_drop_requested = False

    def _realtime(self, c: int) -> None:
        now = self.clock.now()
        if c == RT_RESET:
            self.soft_reset()
        elif self.critical:
            return        # grbl answers nothing, not even '?', until the reset
        elif c == RT_STATUS:
            self.emit(self.status_report())
        elif c == RT_HOLD:
            if self.state not in ("Alarm", "Check") and not self.homing:
                if self.jogging:
                    self.motion.jog_cancel(now)
                else:
                    self.motion.feed_hold(now)
        elif c == RT_START:
            self.motion.resume(now)
        elif c == RT_JOG_CANCEL:
            if self.jogging:
                self.motion.jog_cancel(now)
        elif c in (0x90, 0x91, 0x92, 0x93, 0x94):
            self.feed_ovr = self._override(self.feed_ovr, c - 0x90, 10, 200)
        elif c in (0x95, 0x96, 0x97):
            self.rapid_ovr = {0x95: 100, 0x96: 50, 0x97: 25}[c]
        elif c in (0x99, 0x9A, 0x9B, 0x9C, 0x9D):
            self.spindle_ovr = self._override(self.spindle_ovr, c - 0x99, 10, 200)
        elif c == RT_SPINDLE_STOP:
            pass          # only acts during a hold in grbl; not modelled
        elif c in (0xA0, 0xA1):
            code = 8 if c == 0xA0 else 7
            self.gc.coolant ^= {code}
            self.gc.coolant.discard(9)

    @staticmethod
    def _override(value: int, which: int, lo: int, hi: int) -> int:
        if which == 0:
            return 100
        value += {1: 10, 2: -10, 3: 1, 4: -1}[which]
        return max(lo, min(hi, value))

    # -- states and reports ---------------------------------------------------------
    def current_state(self, now: float) -> str:
        self.motion.update(now)
        if self.state == "Alarm":
            return "Alarm"
        if self.homing:
            return "Home"
        if self.motion.hold == "decel":
            return "Hold:1"
        if self.motion.hold == "held":
            return "Hold:0"
        if self.jogging:
            return "Jog"
        if self.check_mode:
            return "Check"
        if self.motion.busy():
            return "Run"
        return "Idle"

    def wco(self) -> list:
        return [c + g for c, g in zip(self.settings.coords[self.gc.coord], self.gc.g92)]

    def status_report(self) -> str:
        now = self.clock.now()
        self.counters["status_reports"] += 1
        state = self.current_state(now)
        mpos = self.motion.position(now)
        parts = [state]
        if self.settings[10] & 1:
            parts.append("MPos:" + axes_text(mpos))
        else:
            parts.append("WPos:" + axes_text(m - w for m, w in zip(mpos, self.wco())))
        if self.settings[10] & 2:
            parts.append(f"Bf:{self.motion.free()},{RX_BUFFER_SIZE - len(self.rx)}")
        speed = self.gc.speed if self.spindle_dir else 0
        parts.append(f"FS:{round(self.motion.rate(now))},{round(speed)}")
        busy = state not in ("Idle", "Alarm", "Check")
        if self.wco_counter > 0:
            self.wco_counter -= 1
        else:
            self.wco_counter = (REPORT_WCO_BUSY if busy else REPORT_WCO_IDLE) - 1
            if self.ovr_counter == 0:
                self.ovr_counter = 1
            parts.append("WCO:" + axes_text(self.wco()))
        if self.ovr_counter > 0:
            self.ovr_counter -= 1
        else:
            self.ovr_counter = (REPORT_OVR_BUSY if busy else REPORT_OVR_IDLE) - 1
            parts.append(f"Ov:{self.feed_ovr},{self.rapid_ovr},{self.spindle_ovr}")
            acc = ""
            if self.spindle_dir:
                acc += "S" if self.spindle_dir > 0 else "C"
            if 8 in self.gc.coolant:
                acc += "F"
            if 7 in self.gc.coolant:
                acc += "M"
            if acc:
                parts.append("A:" + acc)
        return "<" + "|".join(parts) + ">"

    # -- the protocol loop ----------------------------------------------------------
    def service(self) -> None:
        now = self.clock.now()
        self._update_motion(now)
        if self.critical:
            return
        if self.job is not None and not self._step_job(now):
            return
        while self.rx and not self.critical:
            c = self.rx.pop(0)
            if c in (10, 13):
                self._end_of_line()
                if self.job is not None and not self._step_job(self.clock.now()):
                    return
                continue
            self.raw.append(c)
            if self.comment == "(":
                if c == 0x29:
                    self.comment = None
            elif self.comment == ";" or c <= 0x20 or c == 0x2F:   # ; comment, blank, / (ignored)
                pass
            elif c == 0x28:
                self.comment = "("
            elif c == 0x3B:
                self.comment = ";"
            elif len(self.line) >= LINE_BUFFER_SIZE - 1:
                self.overflow = True
            else:
                self.line.append(c - 32 if 0x61 <= c <= 0x7A else c)

    def _update_motion(self, now: float) -> None:
        m = self.motion
        m.update(now)
        if self.jogging and not m.busy():
            self.jogging = False
            self.gc.position = list(m.pos)     # a cancelled jog ends short of its target
        if self.settings[21] and not self.critical:
            # the switches sit at the ends of the physical travel; a pin change trips
            pos = m.position(now)
            inside = all(-self.settings[130 + i] - 1e-6 <= pos[i] + self.offset[i] <= 1e-6
                         for i in range(3))
            if self._inside and not inside:
                self._inside = False
                self._critical(1, close_job=True)
                return
            self._inside = inside

    def _end_of_line(self) -> None:
        line, raw = bytes(self.line), bytes(self.raw)
        self.line.clear()
        self.raw.clear()
        self.comment = None
        overflow, self.overflow = self.overflow, False
        self.counters["lines"] += 1
        if self.faults is not None:
            out, drop = self.faults.apply(line)
            if drop:
                self.link_drop_requested = True
            if out is None:
                return
            line = out
        if overflow:
            self._reply(11)
        elif not line:
            self._reply(0)
        elif line[:1] == b"$":
            self._start_job(self._system(line), raw)
        elif self.state == "Alarm" or self.jogging:
            self._reply(9)
        else:
            self._start_job(self._gcode(line), raw)

    def _start_job(self, job, raw: bytes) -> None:
        self.job, self.job_line = job, raw.decode("latin-1").strip()
        self.wake = None

    def _step_job(self, now: float) -> bool:
        """Run the current line's executor one step; True once it is finished."""
        if self.wake is not None and now < self.wake:
            return False
        try:
            wait = next(self.job)
        except StopIteration as stop:
            self.job = None
            self.wake = None
            status = stop.value or 0
            if self.critical:
                return True
            if status == 0 and self.exec_log is not None and self._logged:
                self.exec_log.write(self.job_line)
            self._reply(status)
            if self._reset_after:
                self._reset_after = False
                self.soft_reset()
            return True
        except GcodeError as exc:
            self.job = None
            self.wake = None
            self._reply(exc.code)
            return True
        self.wake = wait
        return False

    def _reply(self, status: int) -> None:
        if self.critical:
            return
        if status:
            self.counters["errors"] += 1
            self.emit(f"error:{status}")
        else:
            self.counters["ok"] += 1
            self.emit("ok")

    # -- scheduling -----------------------------------------------------------------
    def blocked(self) -> bool:
        if self.critical:
            return False
        # a line waiting on a known virtual time, or motion running (not held): at max
        # speed the clock may jump; a line waiting behind a hold waits for the host's '~'
        return self.wake is not None or (self.motion.busy() and self.motion.hold != "held")

    def next_deadline(self) -> float | None:
        if self.critical:
            return None
        times = [t for t in (self.wake, self.motion.next_deadline()) if t is not None]
        return min(times) if times else None

    def get_status(self) -> dict:
        return {"state": self.current_state(self.clock.now()), "counters": dict(self.counters),
                "planner_free": self.motion.free(), "rx_free": RX_BUFFER_SIZE - len(self.rx),
                "blocks_done": self.motion.blocks_done}

    # -- waiting helpers (generators yield a virtual deadline or None = poll) ---------
    def _sync(self):
        while self.motion.busy():
            yield self.motion.next_deadline()

    def _buffer(self, block: Block):
        while self.motion.free() <= 0:
            yield self.motion.next_deadline()
        self.motion.push(block, self.clock.now())

    def _wait(self, seconds: float):
        end = self.clock.now() + seconds
        while self.clock.now() < end:
            yield end

    # -- $ system commands ----------------------------------------------------------
    def _system(self, line: bytes):
        self._logged = False
        text = line.decode("latin-1")
        idle = self.state in ("Idle", "Alarm") and not self.motion.busy() and not self.jogging
        if text == "$":
            self.emit(HELP)
        elif text == "$$":
            if not idle:
                return 8
            for n in SETTINGS:
                self.emit(self.settings.text(n))
        elif text == "$#":
            if not idle:
                return 8
            for i, c in enumerate(self.settings.coords):
                self.emit(f"[G{54 + i}:{axes_text(c)}]")
            self.emit(f"[G28:{axes_text(self.settings.g28)}]")
            self.emit(f"[G30:{axes_text(self.settings.g30)}]")
            self.emit(f"[G92:{axes_text(self.gc.g92)}]")
            self.emit("[TLO:0.000]")
            self.emit("[PRB:0.000,0.000,0.000:0]")
        elif text == "$G":
            self.emit(self.gc.text())
        elif text == "$I":
            self.emit(f"[VER:{VERSION}.{BUILD_DATE}:]")
            self.emit(f"[OPT:V,{PLANNER_SLOTS - 1},{RX_BUFFER_SIZE}]")
        elif text == "$N":
            for i, s in enumerate(self.settings.startup):
                self.emit(f"$N{i}={s}")
        elif text == "$C":
            if self.check_mode:
                self.emit("[MSG:Disabled]")
                self._reset_after = True
                return 0
            if self.state != "Idle" or self.motion.busy():
                return 8
            self.check_mode = True
            self.emit("[MSG:Enabled]")
        elif text == "$X":
            if self.state == "Alarm":
                self.emit(MSG_UNLOCKED)
                self.state = "Idle"
        elif text == "$H":
            if not self.settings[22]:
                return 5
            if not idle:
                return 8
            yield from self._home()
        elif text == "$SLP":
            return 20
        elif text.startswith("$J="):
            if not (self.state == "Idle" and not self.check_mode or self.jogging):
                return 8
            yield from self._jog(line[3:])
        elif text.startswith("$RST="):
            what = text[5:]
            if what not in ("$", "#", "*"):
                return 3
            self.settings.restore(what)
        elif text.startswith("$N") and "=" in text:
            idx = text[2:text.index("=")]
            if idx not in ("0", "1"):
                return 3
            self.settings.startup[int(idx)] = text[text.index("=") + 1:]
            self.settings.save()
        else:
            m = re.fullmatch(r"\$(\d+)=(.*)", text)
            if not m:
                return 3
            if not idle:
                return 8
            num = NUMBER.fullmatch(m.group(2).encode())
            if not num:
                return 2
            return self.settings.set(int(m.group(1)), float(m.group(2)))
        return 0

    def _home(self):
        """Homing cycle: seek to the switches, pull off; MPos ends at -pull-off."""
        s = self.settings
        self.homing = True
        self.state = "Idle"
        pos = self.motion.position(self.clock.now())
        seek, feed, pull = s[25] / 60.0, s[24] / 60.0, s[27]
        duration = max(abs(pos[i] + self.offset[i]) for i in range(3)) / seek
        duration += 1.5 * pull / seek + 2 * pull / feed
        yield from self._wait(duration)
        self.homing = False
        final = [pull if s[23] & (1 << i) else -pull for i in range(3)]
        self.motion.pos = list(final)
        # switches sit at physical 0 (positive homing) or -travel (negative homing)
        self.offset = [-s[130 + i] if s[23] & (1 << i) else 0.0 for i in range(3)]
        self.gc.position = list(final)
        return 0

    def _jog(self, body: bytes):
        words = self._words(body)
        gc = self.gc
        inches, absolute, machine = gc.inches, gc.absolute, False
        feed = None
        target = {}
        for letter, value, _ in words:
            if letter == "G":
                code = round(value * 10)
                if code in (200, 210):
                    inches = code == 200
                elif code in (900, 910):
                    absolute = code == 900
                elif code == 530:
                    machine = True
                else:
                    raise GcodeError(16)
            elif letter == "F":
                feed = value
            elif letter in AXES:
                target[letter] = value
            elif letter == "N":
                pass
            else:
                raise GcodeError(16)
        if feed is None or not target:
            raise GcodeError(16 if feed is None else 26)
        unit = 25.4 if inches else 1.0
        start = self.gc.position
        end = list(start)
        wco = [0.0] * 3 if machine else self.wco()
        for i, a in enumerate(AXES):
            if a in target:
                end[i] = (start[i] + target[a] * unit) if not absolute else target[a] * unit + wco[i]
        if self.settings[20] and self._outside_travel(end):
            raise GcodeError(15)
        self.jogging = True
        yield from self._buffer(self._block(start, end, feed * unit / 60.0, jog=True))
        gc.position = end
        return 0

    # -- G-code -----------------------------------------------------------------------
    @staticmethod
    def _words(line: bytes) -> list:
        words, i = [], 0
        while i < len(line):
            letter = chr(line[i])
            if not "A" <= letter <= "Z":
                raise GcodeError(1)
            m = NUMBER.match(line, i + 1)
            if not m:
                raise GcodeError(2)
            words.append((letter, float(m.group()), m.group()))
            i = m.end()
        return words

    def _outside_travel(self, target) -> bool:
        for i in range(3):
            travel = self.settings[130 + i]
            if self.settings[23] & (1 << i):
                if target[i] < 0 or target[i] > travel:
                    return True
            elif target[i] > 0 or target[i] < -travel:
                return True
        return False

    def _block(self, start, end, feed, length=None, jog=False, override=None) -> Block:
        """A block at ``feed`` mm/s, limited by $110-$112 and $120-$122 along its direction."""
        length_chord = math.dist(start, end)
        vmax, accel = feed, math.inf
        for i in range(3):
            d = abs(end[i] - start[i])
            if d > 1e-9 and length_chord > 0:
                vmax = min(vmax, self.settings[110 + i] / 60.0 * length_chord / d)
                accel = min(accel, self.settings[120 + i] * length_chord / d)
        if accel == math.inf:
            accel = min(self.settings[120 + i] for i in range(3))
        if not jog:
            vmax *= (self.feed_ovr if override is None else override) / 100.0
        return Block(start, end, max(vmax, 1e-3), accel, length=length, jog=jog)

    def _gcode(self, line: bytes):
        self._logged = not self.check_mode
        words = self._words(line)
        gc = self.gc
        groups, g_codes, m_codes, values = {}, [], [], {}
        for letter, value, _ in words:
            if letter == "G":
                code = round(value * 10)
                if code not in G_GROUPS or (code % 10 and code not in (382, 383, 384, 385, 281,
                                                                       301, 921, 911, 431)):
                    if code // 10 * 10 in G_GROUPS and code % 10:
                        raise GcodeError(23)
                    raise GcodeError(20)
                group = G_GROUPS[code]
                if group in groups:
                    raise GcodeError(21)
                groups[group] = code
                g_codes.append(code)
            elif letter == "M":
                if value != int(value):
                    raise GcodeError(23)
                code = int(value)
                if code not in M_GROUPS:
                    raise GcodeError(20)
                group = "m" + M_GROUPS[code]
                if group in groups:
                    raise GcodeError(21)
                groups[group] = code
                m_codes.append(code)
            elif letter in "FIJKLNPRSTXYZ":
                if letter in values:
                    raise GcodeError(25)
                if letter in "FNPST" and value < 0:
                    raise GcodeError(4)
                values[letter] = value
            else:
                raise GcodeError(20)
        axis_words = {a: values.pop(a) for a in AXES if a in values}
        values.pop("N", None)
        nonmodal = groups.get("nonmodal")
        motion = groups.get("motion", gc.motion)
        if motion in (382, 383, 384, 385):
            raise GcodeError(20)      # probing is not modelled
        # modal state (grbl's order of execution)
        inverse = groups.get("feedmode", 930 if gc.inverse_time else 940) == 930
        if "F" in values:
            gc.feed = values.pop("F")
        elif inverse != gc.inverse_time:
            gc.feed = 0.0
        gc.inverse_time = inverse
        if "S" in values:
            gc.speed = values.pop("S")
        if "T" in values:
            tool = values.pop("T")
            if tool != int(tool):
                raise GcodeError(23)
            if tool > 255:
                raise GcodeError(38)
            gc.tool = int(tool)
        if "units" in groups:
            gc.inches = groups["units"] == 200
        if "distance" in groups:
            gc.absolute = groups["distance"] == 900
        if "plane" in groups:
            gc.plane = groups["plane"] // 10
        if "coord" in groups:
            gc.coord = groups["coord"] // 10 - 54
        unit = 25.4 if gc.inches else 1.0
        # checks that must fail before anything runs
        if nonmodal == 40 and "P" not in values:
            raise GcodeError(28)
        if nonmodal == 530 and motion not in (0, 10):
            raise GcodeError(30)
        if nonmodal in (40, 100, 280, 281, 300, 301, 920, 921):
            axis_owner = nonmodal in (100, 280, 300, 920)
        else:
            axis_owner = False
        uses_axes = axis_owner or (motion != 800 and axis_words)
        if axis_words and not uses_axes:
            raise GcodeError(31)
        if groups.get("motion") in (20, 30) and not axis_words:
            raise GcodeError(26)
        # spindle and coolant (synchronised with motion, as grbl's spindle_sync)
        if "mspindle" in groups:
            code = groups["mspindle"]
            if not self.check_mode:
                yield from self._sync()
                was = self.spindle_dir
                self.spindle_dir = {3: 1, 4: -1, 5: 0}[code]
                if self.spindle_dir and self.spindle_dir != was and self.spinup > 0:
                    yield from self._wait(self.spinup)
            gc.spindle = code
        if "mcoolant" in groups:
            code = groups["mcoolant"]
            if not self.check_mode:
                yield from self._sync()
            if code == 9:
                gc.coolant = set()
            else:
                gc.coolant.add(code)
        # non-modal actions
        if nonmodal == 40:
            seconds = values.pop("P")
            if not self.check_mode:
                yield from self._sync()
                yield from self._wait(seconds)
        elif nonmodal == 100:
            lval, pval = values.pop("L", None), values.pop("P", None)
            if lval not in (2, 20) or pval is None:
                raise GcodeError(28 if pval is None else 20)
            p = int(pval)
            if p > N_COORDS:
                raise GcodeError(29)
            idx = gc.coord if p == 0 else p - 1
            coords = list(self.settings.coords[idx])
            for i, a in enumerate(AXES):
                if a in axis_words:
                    v = axis_words[a] * unit
                    coords[i] = v if lval == 2 else gc.position[i] - gc.g92[i] - v
            if not self.check_mode:
                yield from self._sync()
                self.settings.coords[idx] = coords
                self.settings.save()
            return 0
        elif nonmodal == 920:
            for i, a in enumerate(AXES):
                if a in axis_words:
                    gc.g92[i] = gc.position[i] - self.settings.coords[gc.coord][i] - axis_words[a] * unit
            return self._unused(values)
        elif nonmodal == 921:
            gc.g92 = [0.0, 0.0, 0.0]
        elif nonmodal in (281, 301):
            if not self.check_mode:
                yield from self._sync()
                pos = self.motion.position(self.clock.now())
                if nonmodal == 281:
                    self.settings.g28 = pos
                else:
                    self.settings.g30 = pos
                self.settings.save()
        elif nonmodal in (280, 300):
            stored = self.settings.g28 if nonmodal == 280 else self.settings.g30
            if axis_words:
                mid = self._target(axis_words, unit, False)
                yield from self._move(mid, None, rapid=True)
            yield from self._move(list(stored), None, rapid=True)
            return self._unused(values)
        # motion
        if "motion" in groups:
            gc.motion = groups["motion"]
        if uses_axes and motion != 800 and nonmodal not in (100, 280, 300, 920):
            target = self._target(axis_words, unit, nonmodal == 530)
            if motion == 0:
                yield from self._move(target, None, rapid=True)
            else:
                if gc.feed <= 0:
                    raise GcodeError(22)
                length = None
                if motion in (20, 30):
                    length = self._arc_length(target, values, motion, unit)
                if gc.inverse_time:
                    chord = math.dist(gc.position, target)
                    feed = (length or chord) * gc.feed / 60.0
                else:
                    feed = gc.feed * unit / 60.0
                yield from self._move(target, feed, length=length)
        status = self._unused(values)
        if status:
            return status
        if "mstop" in groups and groups["mstop"] in (2, 30) and not self.check_mode:
            yield from self._sync()
            self.spindle_dir = 0
            gc.spindle, gc.coolant, gc.motion = 5, set(), 10
            gc.coord, gc.absolute, gc.inverse_time, gc.plane = 0, True, False, 17
            gc.g92 = [0.0, 0.0, 0.0]
        return 0

    @staticmethod
    def _unused(values: dict) -> int:
        return 36 if values else 0

    def _target(self, axis_words: dict, unit: float, machine: bool) -> list:
        gc = self.gc
        target = list(gc.position)
        wco = [0.0] * 3 if machine else self.wco()
        for i, a in enumerate(AXES):
            if a in axis_words:
                v = axis_words[a] * unit
                target[i] = v + wco[i] if gc.absolute or machine else gc.position[i] + v
        return target

    def _arc_length(self, target, values: dict, motion: int, unit: float) -> float:
        """Length of the G2/G3 arc (the block itself moves along the chord)."""
        gc = self.gc
        ax = {17: (0, 1), 18: (2, 0), 19: (1, 2)}[gc.plane]
        offs = {17: "IJ", 18: "KI", 19: "JK"}[gc.plane]
        start = gc.position
        x, y = target[ax[0]] - start[ax[0]], target[ax[1]] - start[ax[1]]
        if "R" in values:
            r = values.pop("R") * unit
            for k in "IJK":
                values.pop(k, None)
            d2 = x * x + y * y
            if d2 < 1e-12:
                raise GcodeError(33)
            h2 = 4 * r * r - d2
            if h2 < -0.005 * abs(r):
                raise GcodeError(33)
            chord = math.sqrt(d2)
            angle = 2 * math.asin(min(1.0, chord / (2 * abs(r))))
            if r < 0:
                angle = 2 * math.pi - angle
            return abs(r) * angle
        if not any(k in values for k in offs):
            raise GcodeError(35)
        i = values.pop(offs[0], 0.0) * unit
        j = values.pop(offs[1], 0.0) * unit
        for k in "IJK":
            values.pop(k, None)
        r = math.hypot(i, j)
        r_end = math.hypot(x - i, y - j)
        if abs(r - r_end) > 0.005 and abs(r - r_end) > 0.001 * r:
            raise GcodeError(33)
        a0 = math.atan2(-j, -i)
        a1 = math.atan2(y - j, x - i)
        sweep = a1 - a0
        if motion == 20:        # clockwise
            if sweep >= -1e-9:
                sweep -= 2 * math.pi
        elif sweep <= 1e-9:
            sweep += 2 * math.pi
        return max(abs(sweep) * r, math.dist(start, target))

    def _move(self, target, feed, rapid=False, length=None):
        gc = self.gc
        if self.settings[20] and self._outside_travel(target):    # check mode too, as grbl
            yield from self._sync_soft_limit()
            return
        if not self.check_mode:
            if rapid:
                feed = max(self.settings[110 + i] for i in range(3)) / 60.0
                yield from self._buffer(self._block(gc.position, target, feed, length=length,
                                                    override=self.rapid_ovr))
            else:
                yield from self._buffer(self._block(gc.position, target, feed, length=length))
        gc.position = list(target)

    def _sync_soft_limit(self):
        """grbl's limits_soft_check: hold to a stop if moving, then ALARM:2 (critical)."""
        now = self.clock.now()
        if self.motion.busy():
            self.motion.feed_hold(now)
            while self.motion.hold != "held":
                yield self.motion.next_deadline()
        self._critical(2)
