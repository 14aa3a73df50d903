"""G-code import for the CNC mill (grbl 1.1 dialect).

``parse(text) -> Program`` (device class ``"mill"``) checks a job against grbl
1.1's own rules before a byte is sent, so that a job the host accepts is one the
controller accepts too, and gives each op its commanded position and time.
``moves(program_or_text) -> MoveArrays`` is the tool's path as straight segments
(arcs flattened) for material-removal verification (:mod:`ismctl.plan.zmap`).

Ops: one per executable line; blank, comment-only and ``%`` (tape delimiter)
lines are no ops.  The command text of an op is the source line minus its
comments (``( )`` and ``;``) and surrounding whitespace; ``source_line`` is its
1-based line.  grbl system lines a job may contain are ops too: ``$H`` (home),
``$X`` (unlock), ``$J=...`` (jog) and ``$<n>=<value>`` (a setting; ``$110``-
``$112`` and ``$120``-``$122`` change the timing of later moves).  Queries and
state changes that are not job steps (``$``, ``$$``, ``$#``, ``$G``, ``$I``,
``$N``, ``$Nx=``, ``$C``, ``$RST=``, ``$SLP``) are refused.

Refused, with :class:`ismctl.gcode.GcodeError` naming the line and grbl's
error number where grbl has one (the rules of grbl 1.1h ``protocol.c`` and
``gcode.c``):

* more than 79 characters left after grbl drops whitespace and comments
  (error 11), or a command longer than 126 bytes (it could not sit in grbl's
  128-byte serial buffer with its newline, which character-counting streaming
  needs);
* characters grbl would take as real-time commands (``?``, ``!``, ``~``,
  control characters, anything non-ASCII) outside comments;
* a word that is not a letter and a number (1, 2); letters grbl lacks (20);
  G/M codes grbl lacks — cutter compensation ``G41``/``G42``, canned cycles
  ``G81``-``G89``, ``G64``, ``M6``, ``M7`` (mist: only in grbl built with
  ``ENABLE_M7``, off by default) and every other M but ``M0 M1 M2 M30 M3 M4 M5 M8
  M9`` (20); probing ``G38.x`` and ``G43.1`` (grbl has them; this stack's
  verification and simulator do not); two words of one modal group (21);
  a repeated word (25); negative F, N, P, S, T (4); a non-integer M or T (23);
  T > 255 (38); N > 9999999 (27);
* ``G4`` without ``P`` (28); ``G53`` with a motion other than G0/G1 (30); axis
  words nothing uses (31); ``G10``/``G28``/``G30``/``G92`` together with a motion
  G word (24); a feed move without a feed rate (22; under ``G93`` every feed
  move needs its own F); an arc without axis words (26), without one in its
  plane (32), without offsets in its plane (35), with a radius that does not
  reach its end point (33/34); words no command used (36).

Positions (``Program.position``) are in **work coordinates**, mm: the host does not
know the machine's work offsets (G54-G59, G10 L2) or the stored G28/G30
positions, so an axis is NaN wherever it depends on them: at the start (unless
``start`` is given), after ``$H``, ``G28``/``G30``, a ``G53`` move, a switch to
another work coordinate system or a ``G10 L2`` on the active one — until an
absolute move sets it again.  ``G92``/``G92.1``/``G10 L20`` are tracked.

Durations follow the mill simulator's motion model (``firmware_sim.mill_motion``):
every block is a trapezoid from rest to rest at its feed (G0: the largest of
``$110``-``$112``), limited along its direction by ``$110``-``$112`` (mm/min) and
``$120``-``$122`` (mm/s^2); arcs are timed over their length (helix included)
with the limits of their chord's direction.  ``G4 P<s>`` dwells; ``$H`` is
guessed as a seek over the whole travel; everything else is 0 s.  Moves to or
from an unknown position are timed over their known axes only (and counted in
``meta["partly_unknown_moves"]``).
"""

from __future__ import annotations

import math
import re
from array import array
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .gcode import GcodeError
from .program import Program

__all__ = ["GRBL_DEFAULTS", "MAX_LINE_CHARS", "MoveArrays", "moves", "parse", "parse_with_path"]

#: grbl's LINE_BUFFER_SIZE is 80: at most 79 characters of a line are kept.
MAX_LINE_CHARS = 79
#: longest command text: grbl's serial RX ring holds 127 bytes, newline included.
MAX_COMMAND_BYTES = 126
#: the grbl defaults the timing uses: max rates (mm/min), accelerations (mm/s^2),
#: homing seek rate (mm/min) and max travel (mm).
GRBL_DEFAULTS = {110: 500.0, 111: 500.0, 112: 500.0, 120: 10.0, 121: 10.0, 122: 10.0,
                 25: 500.0, 130: 200.0, 131: 200.0, 132: 200.0}
_SETTING_NUMBERS = frozenset({0, 1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 20, 21, 22, 23, 24, 25, 26, 27,
                              30, 31, 32, 100, 101, 102, 110, 111, 112, 120, 121, 122, 130, 131, 132})
_MAX_LINE_NUMBER = 9999999
_MAX_TOOL = 255
_ARC_TOLERANCE_MM = 0.002  # grbl's $12 default: chord error when flattening arcs
# Chords per flattened arc at most: only an arc hundreds of km in radius needs more at 2 µm
# (where acos(1 - tolerance / radius) rounds to 0 the count would be infinite).
_MAX_ARC_CHORDS = 1_000_000

# G codes (value * 10) by modal group, as grbl 1.1's gcode.c knows them.
_G_GROUP = {}
for _codes, _group in (((0, 10, 20, 30, 800), "motion"),
                       ((40, 100, 280, 281, 300, 301, 530, 920, 921), "nonmodal"),
                       ((170, 180, 190), "plane"), ((900, 910), "distance"), ((911,), "arcdistance"),
                       ((930, 940), "feedmode"), ((200, 210), "units"), ((400,), "cutter"),
                       ((490,), "tlo"), ((540, 550, 560, 570, 580, 590), "coord"), ((610,), "path")):
    for _c in _codes:
        _G_GROUP[_c] = _group
_M_GROUP = {0: "stop", 1: "stop", 2: "stop", 30: "stop", 3: "spindle", 4: "spindle", 5: "spindle",
            8: "coolant", 9: "coolant"}  # M7 (mist) only exists in grbl built with ENABLE_M7, off by default
_NOT_HERE = {382: "probing (G38.x) is not supported: its end position is unknown to the host",
             383: "probing (G38.x) is not supported: its end position is unknown to the host",
             384: "probing (G38.x) is not supported: its end position is unknown to the host",
             385: "probing (G38.x) is not supported: its end position is unknown to the host",
             431: "G43.1 dynamic tool length offset is not supported: the verified tool tip would be wrong"}
_AXIS_OWNERS = frozenset({100, 280, 300, 920})  # non-modal G codes that use the axis words
_PLANES = {170: (0, 1, 2), 180: (2, 0, 1), 190: (1, 2, 0)}  # (first, second, linear axis)
_OFFSET_LETTERS = {170: "IJ", 180: "KI", 190: "JK"}
_QUERIES = {"$": "help", "$$": "settings report", "$#": "offsets report", "$G": "parser state report",
            "$I": "build info", "$N": "startup lines report", "$C": "check mode toggle (ends in a reset)",
            "$SLP": "sleep"}
_WORD_RE = re.compile(r"([A-Z])([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))")
_LINE_RE = re.compile(r"(?:[A-Z][+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))+")
_SETTING_RE = re.compile(r"\$([0-9]+)=(.*)")
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")
# grbl's protocol loop drops whitespace, control characters and '/' (block delete is ignored)
_DROPPED = {c: None for c in [*range(33), ord("/")]}
# outside comments: tab and printable ASCII but the real-time commands '?', '!', '~'
_BAD_CHAR_RE = re.compile(r"[^\t -~]|[?!~]")
_MOVE_COLUMNS = 15  # see _Scanner.move


class _Refused(Exception):
    """One line's reason (grbl's error number in the text); turned into a GcodeError by the scanner."""


def _strip(raw: str) -> tuple[str, str]:
    """-> (command text: comments and outer whitespace removed, grbl's compact form: also
    whitespace and '/' removed and letters raised, as grbl's protocol loop keeps it)."""
    if "(" not in raw and ";" not in raw:
        text = raw.strip()
        return text, text.translate(_DROPPED).upper()
    kept = []
    depth = False
    start = 0
    for i, ch in enumerate(raw):
        if depth:
            if ch == ")":
                depth = False
                start = i + 1
        elif ch == "(":
            kept.append(raw[start:i])
            depth = True
        elif ch == ";":
            kept.append(raw[start:i])
            start = -1
            break
    else:
        if not depth:
            kept.append(raw[start:])
    text = "".join(kept).strip()
    return text, text.translate(_DROPPED).upper()


def _check_chars(text: str) -> None:
    bad = _BAD_CHAR_RE.search(text)
    if bad is None:
        return
    ch = bad.group()
    if ch in "?!~":
        raise _Refused(f"{ch!r} is a grbl real-time command; it cannot be part of a line")
    raise _Refused(f"character 0x{ord(ch):02x} would reach grbl as a control or real-time byte")


def _words(compact: str) -> list[tuple[str, float]]:
    if not compact:
        return []
    if _LINE_RE.fullmatch(compact):
        return [(letter, float(v)) for letter, v in _WORD_RE.findall(compact)]
    i = 0
    while i < len(compact):  # find the first bad word, for grbl's error number
        if not "A" <= compact[i] <= "Z":
            raise _Refused(f"expected a command letter at {compact[i:i + 8]!r} (grbl error 1)")
        m = _NUMBER_RE.match(compact, i + 1)
        if not m:
            raise _Refused(f"bad number format after {compact[i]} (grbl error 2)")
        i = m.end()
    raise AssertionError("unreachable: the line matched word by word")


@dataclass(frozen=True)
class MoveArrays:
    """The tool path as straight segments (arcs flattened into chords): ``start``/``end``
    (n, 3) float64 work coordinates mm, ``rapid`` (n,) bool, ``op`` (n,) int32 index of the op
    each segment comes from.  A move from an unknown position is kept as its end point (a
    segment of length 0: the tool surely gets there); ``unplaced`` counts the moves left out
    because their end is unknown."""

    start: np.ndarray
    end: np.ndarray
    rapid: np.ndarray
    op: np.ndarray
    unplaced: int = 0

    def __len__(self) -> int:
        return len(self.op)


class _Scanner:
    """One pass over the text: grbl's checks, the modal state, per-op facts and move rows."""

    def __init__(self, name: str, limits: Mapping[int, float] | None, start):
        self.name = name
        self.settings = dict(GRBL_DEFAULTS)
        for key, value in (limits or {}).items():
            self.settings[int(key)] = float(value)
        self.pos = [math.nan] * 3 if start is None else [float(v) for v in start]
        self.motion = 0
        self.plane = 170
        self.unit = 1.0
        self.absolute = True
        self.inverse_time = False
        self.coord = 540
        self.feed = 0.0
        self.commands: list[str] = []
        self.src = array("i")
        self.dur = array("d")
        self.position = array("d")
        # move rows: op, kind (0 rapid, 1 line, 2 arc), start xyz, end xyz, feed mm/s (<0: rapid),
        # path length, arc centre (first, second axis), sweep (rad, + ccw), plane code, limits row
        self.rows = array("d")
        self.limits_rows = [self._limits()]

    def _limits(self) -> tuple[float, ...]:
        return tuple(self.settings[n] for n in (110, 111, 112, 120, 121, 122))

    # -- one line -------------------------------------------------------------------
    def line(self, ln: int, raw: str) -> None:
        text, compact = _strip(raw)
        if not compact or compact == "%":
            return
        try:
            _check_chars(text)
            if len(compact) > MAX_LINE_CHARS:
                raise _Refused(f"{len(compact)} characters after grbl drops spaces and comments; "
                               f"grbl keeps {MAX_LINE_CHARS} (error 11, line overflow)")
            if len(text.encode("ascii")) > MAX_COMMAND_BYTES:
                raise _Refused(f"{len(text)} bytes; grbl's 128-byte serial buffer holds "
                               f"{MAX_COMMAND_BYTES} plus the newline")
            op = len(self.commands)
            duration = self._system(op, compact) if compact[0] == "$" else self._block(op, compact)
        except _Refused as exc:
            raise GcodeError(ln, raw.strip(), str(exc)) from None
        self.commands.append(text)
        self.src.append(ln)
        self.dur.append(duration)
        self.position.extend(self.pos)

    def move(self, op: int, kind: int, target, feed: float, length: float = -1.0,
             centre=(0.0, 0.0), sweep: float = 0.0) -> None:
        self.rows.extend((op, kind, *self.pos, *target, feed, length, *centre, sweep, self.plane,
                          len(self.limits_rows) - 1))
        self.pos = list(target)

    # -- $ lines --------------------------------------------------------------------
    def _system(self, op: int, compact: str) -> float:
        if compact in ("$H", "$X"):
            if compact == "$H":
                self.pos = [math.nan] * 3
                travel = max(self.settings[130], self.settings[131], self.settings[132])
                return travel / (self.settings[25] / 60.0)
            return 0.0
        if compact.startswith("$J="):
            self._jog(op, compact[3:])
            return 0.0
        if compact in _QUERIES:
            raise _Refused(f"{compact} is a {_QUERIES[compact]}, not a job step")
        if compact.startswith("$N") or compact.startswith("$RST="):
            raise _Refused(f"{compact[:5]} changes stored startup lines or resets the EEPROM; not a job step")
        m = _SETTING_RE.fullmatch(compact)
        if not m:
            raise _Refused("invalid $ statement (grbl error 3)")
        number = int(m.group(1))
        if number not in _SETTING_NUMBERS:
            raise _Refused(f"grbl has no setting ${number} (error 3)")
        if not _NUMBER_RE.fullmatch(m.group(2)):
            raise _Refused(f"bad number format for ${number} (grbl error 2)")
        value = float(m.group(2))
        if value < 0:
            raise _Refused(f"negative value for ${number} (grbl error 4)")
        if number in (110, 111, 112, 120, 121, 122) and value == 0:
            raise _Refused(f"${number} must be positive")
        self.settings[number] = value
        if number in (110, 111, 112, 120, 121, 122):
            self.limits_rows.append(self._limits())
        return 0.0

    def _jog(self, op: int, body: str) -> None:
        unit, absolute, machine, feed, axes = self.unit, self.absolute, False, None, {}
        for letter, value in _words(body):
            if letter == "G" and round(value * 10) in (200, 210):
                unit = 25.4 if round(value * 10) == 200 else 1.0
            elif letter == "G" and round(value * 10) in (900, 910):
                absolute = round(value * 10) == 900
            elif letter == "G" and round(value * 10) == 530:
                machine = True
            elif letter == "F":
                feed = value
            elif letter in "XYZ":
                axes["XYZ".index(letter)] = value
            elif letter != "N":
                raise _Refused(f"{letter}{value:g} is not allowed in a jog (grbl error 16)")
        if feed is None or feed <= 0 or not axes:
            raise _Refused("a jog needs axis words and a positive F (grbl error 16)")
        target = self._target(axes, unit, absolute, machine)
        self.move(op, 1, target, feed * unit / 60.0)

    def _target(self, axes: dict, unit: float, absolute: bool, machine: bool) -> list[float]:
        target = list(self.pos)
        for i, value in axes.items():
            if machine:
                target[i] = math.nan  # machine coordinates: unknown in work coordinates
            else:
                target[i] = value * unit if absolute else target[i] + value * unit
        return target

    # -- G-code blocks ----------------------------------------------------------------
    def _block(self, op: int, compact: str) -> float:
        groups: dict[str, int] = {}
        values: dict[str, float] = {}
        for letter, value in _words(compact):
            if letter == "G":
                code = round(value * 10)
                if code in _NOT_HERE:
                    raise _Refused(_NOT_HERE[code])
                if code not in _G_GROUP:
                    if code % 10 and code // 10 * 10 in _G_GROUP:
                        raise _Refused(f"G{value:g} is not a grbl command (error 23, value not integer)")
                    raise _Refused(f"G{value:g} is not supported by grbl (error 20)")
                group = _G_GROUP[code]
                if group in groups:
                    raise _Refused(f"two {group} G codes in one block (grbl error 21, modal group violation)")
                if group == "motion" and code != 800 and "nonmodal" in groups and groups["nonmodal"] in _AXIS_OWNERS \
                        or group == "nonmodal" and code in _AXIS_OWNERS and groups.get("motion", 800) != 800:
                    raise _Refused("G10/G28/G30/G92 and a motion G code in one block (grbl error 24)")
                groups[group] = code
            elif letter == "M":
                if value != int(value):
                    raise _Refused(f"M{value:g}: value not integer (grbl error 23)")
                if int(value) == 7:
                    raise _Refused("M7 (mist coolant) is not in grbl's default build (ENABLE_M7); use M8 (error 20)")
                if int(value) not in _M_GROUP:
                    raise _Refused(f"M{int(value)} is not supported by grbl (error 20)")
                group = "m" + _M_GROUP[int(value)]
                if group in groups:
                    raise _Refused(f"two {group[1:]} M codes in one block (grbl error 21, modal group violation)")
                groups[group] = int(value)
            elif letter in "FIJKLNPRSTXYZ":
                if letter in values:
                    raise _Refused(f"{letter} repeated (grbl error 25)")
                if letter in "FNPST" and value < 0:
                    raise _Refused(f"negative {letter} (grbl error 4)")
                values[letter] = value
            else:
                raise _Refused(f"grbl has no {letter} word (error 20)")
        return self._execute(op, groups, values)

    def _execute(self, op: int, groups: dict, values: dict) -> float:
        """grbl's order: feed mode, F, S, T, spindle, coolant, dwell, plane, units, distance,
        coordinate system, non-modal actions, motion, program end."""
        if values.pop("N", 0) > _MAX_LINE_NUMBER:
            raise _Refused(f"line number above {_MAX_LINE_NUMBER} (grbl error 27)")
        tool = values.pop("T", 0)
        if tool != int(tool):
            raise _Refused("T value not integer (grbl error 23)")
        if tool > _MAX_TOOL:
            raise _Refused(f"T{tool:g} above grbl's {_MAX_TOOL} (error 38)")
        values.pop("S", None)
        axes = {"XYZ".index(a): values.pop(a) for a in "XYZ" if a in values}
        nonmodal = groups.get("nonmodal")
        motion = groups.get("motion", self.motion)
        inverse = groups.get("feedmode", 930 if self.inverse_time else 940) == 930
        if "units" in groups:
            self.unit = 25.4 if groups["units"] == 200 else 1.0
        feed_given = "F" in values
        if feed_given:
            self.feed = values.pop("F") * (1.0 if inverse else self.unit)
        elif inverse != self.inverse_time:
            self.feed = 0.0
        self.inverse_time = inverse
        duration = 0.0
        if nonmodal == 40:
            if "P" not in values:
                raise _Refused("G4 needs P, the dwell in seconds (grbl error 28)")
            duration = values.pop("P")
        if "plane" in groups:
            self.plane = groups["plane"]
        if "distance" in groups:
            self.absolute = groups["distance"] == 900
        if "coord" in groups and groups["coord"] != self.coord:
            self.coord = groups["coord"]
            self.pos = [math.nan] * 3  # the new system's offset is not known to the host
        if nonmodal == 530 and motion not in (0, 10):
            raise _Refused("G53 works with G0 or G1 only (grbl error 30)")
        uses_axes = nonmodal in _AXIS_OWNERS or (motion != 800 and bool(axes))
        if axes and not uses_axes:
            raise _Refused("axis words with no command to use them (grbl error 31)")
        if groups.get("motion") in (20, 30) and not axes or nonmodal in (100, 920) and not axes:
            raise _Refused("G2/G3/G10/G92 without axis words (grbl error 26)")
        if nonmodal == 100:
            self._g10(values, axes)
        elif nonmodal in (280, 300):
            if axes:
                self.move(op, 0, self._target(axes, self.unit, self.absolute, False), -1.0)
            self.pos = [math.nan] * 3  # the stored G28/G30 position is machine coordinates
        elif nonmodal == 920:
            for i, value in axes.items():
                self.pos[i] = value * self.unit
        elif nonmodal == 921:
            self.pos = [math.nan] * 3  # G92 offsets set before this program are unknown
        if "motion" in groups:
            self.motion = groups["motion"]
        if uses_axes and nonmodal not in _AXIS_OWNERS:
            target = self._target(axes, self.unit, self.absolute, nonmodal == 530)
            if motion == 0:
                self.move(op, 0, target, -1.0)
            else:
                if self.feed <= 0 or (inverse and not feed_given):
                    raise _Refused("feed move without a feed rate (grbl error 22)")
                if motion == 10:
                    length = math.dist(self._known(self.pos), self._known(target)) if inverse else -1.0
                    self.move(op, 1, target, self._feed_mm_s(length), length)
                else:
                    self._arc(op, target, values, motion == 20, axes)
        if values:
            raise _Refused(f"{''.join(sorted(values))} not used by any command (grbl error 36)")
        if groups.get("mstop") in (2, 30):
            self.motion, self.plane, self.absolute, self.inverse_time = 10, 170, True, False
            if self.coord != 540:
                self.coord = 540
                self.pos = [math.nan] * 3
        return duration

    def _g10(self, values: dict, axes: dict) -> None:
        level, p = values.pop("L", None), values.pop("P", None)
        if p is None or level is None:
            raise _Refused("G10 needs L and P (grbl error 28)")
        if level not in (2, 20):
            raise _Refused("G10 supports L2 and L20 only (grbl error 20)")
        if p != int(p) or p > 6:
            raise _Refused("G10 P must be 0-6 (grbl error 29)")
        if p in (0, (self.coord - 540) // 10 + 1):  # the active system
            for i, value in axes.items():
                self.pos[i] = value * self.unit if level == 20 else math.nan

    @staticmethod
    def _known(xyz) -> list[float]:
        return [0.0 if math.isnan(v) else v for v in xyz]

    def _feed_mm_s(self, length: float) -> float:
        """G94: F in mm/min (already in mm); G93: the move takes 1/F minutes."""
        return length * self.feed / 60.0 if self.inverse_time else self.feed / 60.0

    def _arc(self, op: int, target, values: dict, clockwise: bool, axes: dict) -> None:
        a, b, lin = _PLANES[self.plane]
        if a not in axes and b not in axes:
            raise _Refused("arc without an axis word in its plane (grbl error 32)")
        start = self.pos
        x, y = target[a] - start[a], target[b] - start[b]
        if "R" in values:
            r = values.pop("R") * self.unit
            for k in "IJK":
                values.pop(k, None)
            d2 = x * x + y * y
            if d2 == 0 or math.isnan(d2):
                raise _Refused("arc by radius to its own start point (grbl error 33)")
            h2 = 4 * r * r - d2
            if h2 < 0:
                raise _Refused(f"arc radius {abs(r):g} cannot reach the end point (grbl error 34)")
            h = -math.sqrt(h2) / math.sqrt(d2)
            if not clockwise:
                h = -h
            if r < 0:
                h = -h
            i, j = 0.5 * (x - y * h), 0.5 * (y + x * h)
        else:
            letters = _OFFSET_LETTERS[self.plane]
            if not any(k in values for k in letters):
                raise _Refused(f"arc without {letters[0]}/{letters[1]} offsets or R in its plane (grbl error 35)")
            i = values.pop(letters[0], 0.0) * self.unit
            j = values.pop(letters[1], 0.0) * self.unit
            for k in "IJK":
                values.pop(k, None)
            delta = abs(math.hypot(i, j) - math.hypot(x - i, y - j))
            if delta > 0.005 and (delta > 0.5 or delta > 0.001 * math.hypot(i, j)):
                raise _Refused(f"arc end point is {delta:.4f} mm off the circle (grbl error 33)")
        radius = math.hypot(i, j)
        sweep = math.atan2(-i * y + j * x, -i * (x - i) - j * (y - j))  # angle start -> end about the centre
        if clockwise and sweep >= -1e-7:
            sweep -= 2 * math.pi
        elif not clockwise and sweep <= 1e-7:
            sweep += 2 * math.pi
        length = math.hypot(abs(sweep) * radius, self._known(target)[lin] - self._known(start)[lin])
        centre = (start[a] + i, start[b] + j)
        self.move(op, 2, target, self._feed_mm_s(length), length, centre, sweep)

    # -- results --------------------------------------------------------------------------
    def program(self) -> Program:
        n = len(self.commands)
        duration = np.frombuffer(self.dur, dtype=np.float64).copy() if n else np.zeros(0)
        rows = self.move_rows()
        partly_unknown = 0
        bbox = None
        if len(rows):
            duration += np.bincount(rows[:, 0].astype(np.int64), weights=_block_times(rows, self.limits_rows),
                                    minlength=n)
            partly_unknown = int(np.isnan(rows[:, 2:8]).any(axis=1).sum())
            cutting = rows[rows[:, 1] > 0]
            pts = np.concatenate([cutting[:, 2:5], cutting[:, 5:8]])
            pts = pts[~np.isnan(pts).any(axis=1)]
            if len(pts):
                bbox = [pts.min(axis=0).round(4).tolist(), pts.max(axis=0).round(4).tolist()]
        meta = {"source": "gcode", "dialect": "grbl", "coordinates": "work",
                "estimated_s": float(duration.sum()), "partly_unknown_moves": partly_unknown, "feed_bbox": bbox}
        return Program(
            device_class="mill", name=self.name, commands=tuple(self.commands),
            source_line=np.frombuffer(self.src, dtype=np.int32).copy() if n else np.zeros(0, np.int32),
            layer=np.full(n, -1, dtype=np.int32), duration_s=duration,
            position=np.frombuffer(self.position, dtype=np.float64).reshape(n, 3).copy() if n else None,
            meta=meta)

    def move_rows(self) -> np.ndarray:
        return np.frombuffer(self.rows, dtype=np.float64).reshape(-1, _MOVE_COLUMNS) if len(self.rows) \
            else np.zeros((0, _MOVE_COLUMNS))


def block_times(delta: np.ndarray, length: np.ndarray, feed: np.ndarray, rate: np.ndarray,
                accel: np.ndarray) -> np.ndarray:
    """Seconds per block: a rest-to-rest trapezoid limited along the chord's direction (the
    simulator's ``GrblFirmware._block``, grbl's worst case); CAM and the importer both time with it.

    ``delta`` (n, 3) mm per axis (NaN, an unknown axis, counts as not moving); ``length`` (n,) mm
    along the path (< 0: the chord); ``feed`` (n,) mm/s (< 0: a rapid, at the fastest axis
    rate); ``rate`` mm/s and ``accel`` mm/s^2 per axis, (3,) or (n, 3).  A block with no chord
    (a full circle) gets the smallest acceleration.
    """
    delta = np.abs(np.nan_to_num(np.asarray(delta, dtype=np.float64)))
    rate = np.broadcast_to(np.asarray(rate, dtype=np.float64), delta.shape)
    accel = np.broadcast_to(np.asarray(accel, dtype=np.float64), delta.shape)
    chord = np.sqrt((delta * delta).sum(axis=1))
    length = np.where(length >= 0, length, chord)
    feed = np.where(feed < 0, rate.max(axis=1), feed)
    moving = delta > 1e-9
    share = np.divide(chord[:, None], delta, out=np.full(delta.shape, np.inf), where=moving)
    vmax = np.minimum(feed, (rate * share).min(axis=1))
    a = np.where(moving.any(axis=1), (accel * share).min(axis=1), accel.min(axis=1))
    vmax = np.maximum(vmax, 1e-3)
    full = length >= vmax * vmax / a
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(full, length / vmax + vmax / a, 2.0 * np.sqrt(length / a))
    return np.where(length > 0, t, 0.0)


def _block_times(rows: np.ndarray, limits_rows: list) -> np.ndarray:
    """:func:`block_times` of the scanner's move rows, each under the limits in force at its line."""
    limits = np.asarray(limits_rows, dtype=np.float64)[rows[:, 14].astype(np.int64)]
    return block_times(rows[:, 5:8] - rows[:, 2:5], rows[:, 9], rows[:, 8], limits[:, 0:3] / 60.0, limits[:, 3:6])


def _scan(text: str, name: str, limits, start) -> _Scanner:
    scanner = _Scanner(name, limits, start)
    for ln, raw in enumerate(text.split("\n"), 1):
        scanner.line(ln, raw)
    return scanner


def parse(text: str, name: str = "", limits: Mapping[int, float] | None = None,
          start=None) -> Program:
    """Check ``text`` against grbl 1.1's rules and return the mill Program; raises
    GcodeError on the first refused line.  ``limits``: grbl settings (``{110: 1000.0, ...}``,
    e.g. from the machine's ``$$``) that replace :data:`GRBL_DEFAULTS`; ``start``: the tool's
    work position before the first line, when known."""
    return parse_with_path(text, name, limits, start)[0]


def parse_with_path(text: str, name: str = "", limits: Mapping[int, float] | None = None, start=None,
                    chord_tolerance: float = _ARC_TOLERANCE_MM) -> tuple[Program, MoveArrays]:
    """:func:`parse` and :func:`moves` from one pass over the text (verification wants both)."""
    scanner = _scan(text, name, limits, start)
    program = scanner.program()
    program.meta["start"] = None if start is None else [float(v) for v in start]
    program.meta["limits"] = {str(int(k)): float(v) for k, v in (limits or {}).items()}  # wire maps take str keys
    return program, _path(scanner, chord_tolerance)


def moves(source: Program | str, chord_tolerance: float = _ARC_TOLERANCE_MM) -> MoveArrays:
    """The tool path of a program (or G-code text) as straight segments; arcs are cut into
    chords that stay within ``chord_tolerance`` mm of the arc.  A Program is parsed again from
    its commands (with the start and limits it was parsed with): it carries no arc geometry."""
    if isinstance(source, Program):
        scanner = _scan("\n".join(source.commands), source.name, source.meta.get("limits"),
                        source.meta.get("start"))
    else:
        scanner = _scan(source, "", None, None)
    return _path(scanner, chord_tolerance)


def _path(scanner: _Scanner, chord_tolerance: float) -> MoveArrays:
    rows = scanner.move_rows().copy()
    placed = ~np.isnan(rows[:, 5:8]).any(axis=1)
    rows = rows[placed]
    unknown_start = np.isnan(rows[:, 2:5]).any(axis=1)
    rows[unknown_start, 2:5] = rows[unknown_start, 5:8]  # the tool surely reaches the end point
    rows[unknown_start, 1] = np.minimum(rows[unknown_start, 1], 1)  # an arc without a start: its end only
    starts, ends, rapid, ops = [], [], [], []
    for row in rows[rows[:, 1] == 2]:
        pts = _arc_points(row, chord_tolerance)
        starts.append(pts[:-1])
        ends.append(pts[1:])
        ops.append(np.full(len(pts) - 1, row[0]))
        rapid.append(np.zeros(len(pts) - 1, bool))
    straight = rows[rows[:, 1] < 2]
    starts.append(straight[:, 2:5])
    ends.append(straight[:, 5:8])
    ops.append(straight[:, 0])
    rapid.append(straight[:, 1] == 0)
    op = np.concatenate(ops).astype(np.int32)
    order = np.argsort(op, kind="stable")  # arcs were collected first: back into op order
    return MoveArrays(np.ascontiguousarray(np.concatenate(starts)[order]),
                      np.ascontiguousarray(np.concatenate(ends)[order]),
                      np.concatenate(rapid)[order], op[order], int((~placed).sum()))


def _arc_points(row: np.ndarray, tolerance: float) -> np.ndarray:
    """Points along one arc row (start and end included): angle and the linear axis
    advance together, so a helix comes out as a helix."""
    start, end = row[2:5], row[5:8]
    a, b, lin = _PLANES[int(row[13])]
    cu, cv, sweep = row[10], row[11], row[12]
    radius = math.hypot(start[a] - cu, start[b] - cv)
    step = 2 * math.acos(max(-1.0, 1 - tolerance / radius)) if radius > tolerance else math.pi / 2
    n = max(1, math.ceil(abs(sweep) / max(step, abs(sweep) / _MAX_ARC_CHORDS)))
    t = np.linspace(0.0, 1.0, n + 1)
    angle0 = math.atan2(start[b] - cv, start[a] - cu)
    angles = angle0 + sweep * t
    pts = np.empty((n + 1, 3))
    pts[:, a] = cu + radius * np.cos(angles)
    pts[:, b] = cv + radius * np.sin(angles)
    pts[:, lin] = start[lin] + (end[lin] - start[lin]) * t
    pts[-1] = end
    return pts
