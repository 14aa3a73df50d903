"""G-code import/export at the edge of the stack (Marlin dialect).

``parse(text) -> Program`` turns a slicer's file into the device-independent
program model: one op per command line, with the 1-based source line, the layer
and an estimated execution time per op.  ``emit(program) -> text`` goes back.
Nothing is silently dropped or rewritten: the command text kept for an op is the
source line minus its comment and surrounding whitespace, byte for byte, so
``parse(emit(p)).commands == p.commands``.

Validation happens here, before anything is sent to a printer: a malformed line
raises :class:`GcodeError` naming the line, its text and the reason (or, with
:func:`validate`, every malformed line is listed).  A line is malformed when

* it does not start with a command letter ``G``/``M``/``T`` and a number;
* a parameter word has a bad number (``X1.2.3``, ``Xabc``, ``X-``) or, for the
  commands that need one (``G0``-``G4``, heater set-points), no number at all;
* it contains ``*`` or a line-number word ``N`` (the driver frames lines with its
  own ``N<n> ... *<checksum>``) or is an ``M110`` (the driver owns line numbers);
* it contains a control character or, outside string commands, a non-ASCII
  character;
* it is too long: Marlin keeps at most ``MAX_CMD_SIZE - 1`` = 95 bytes of a line
  *including* the framing the driver adds (``N<line> `` and ``*<checksum>``), and
  silently drops the rest.  Allowing for line numbers up to 7 digits, a command
  may be at most :data:`MAX_COMMAND_BYTES` = 82 bytes.

String-argument commands (``M0``/``M1`` with a prompt, ``M16``, ``M23``, ``M28``,
``M30``, ``M32``, ``M33``, ``M117``, ``M118``, ``M810``-``M819``, ``M928``) take
the rest of the line as free text: any printable character except ``*`` (and
``;``, which starts a comment), UTF-8 allowed, parentheses kept.

Layers come from ``;LAYER:<n>`` (Cura), ``;LAYER_CHANGE`` (PrusaSlicer, slic3r)
or ``; layer <n>`` (Simplify3D) markers: the layer of an op is the number of
markers seen before it minus one (so -1 before the first marker).  A file
without markers gets layers from Z: a new layer starts at each extruding XY move
made at a Z higher than the current layer's.

Time estimate (``duration_s``), per op:

* moves (``G0``-``G3``): the printer simulator's planner, exactly, for a host
  that keeps the planner full (:func:`ismctl.plan.motion.move_durations`):
  modal feedrate (``F``, mm/min, default 1500), ``G90``/``G91``/``M82``/``M83``/
  ``G92``/``G20``/``G21`` tracked; the machine limits passed to :func:`parse`
  (Marlin's defaults when none: 300/300/5/25 mm/s, 3000/3000/100/10000 mm/s^2,
  M204 3000, junction deviation 0.013 mm) as changed by ``M201``/``M203``/
  ``M204``/``M205 J`` in the file; trapezoids, junction-deviation speeds, the
  newest move planned to stop.  After a command that lets the planner run empty
  (``G4``, ``G28``, ``G29``, ``M0``/``M1``, ``M400``, ``M18``/``M84``, heat and
  wait) the next move starts from rest.  ``G2``/``G3`` are timed over their arc
  length (the simulator has no arcs).  Not modelled: ``M220`` feed override,
  cold-extrusion prevention, heat-and-wait overlapping queued moves.
* ``G4 P<ms>``/``G4 S<s>``: the dwell.
* ``M109``/``M190``/``M191`` (heat and wait): a rough guess from the set-point
  change, 2 degC/s for a hotend and 0.5 degC/s for bed/chamber from 25 degC (or the
  previous target), at least 5 s.  Cooling waits (``R``) are guessed at 30 s.
* ``G28`` 10 s, ``G29`` 60 s; everything else 0 s.

``meta``: ``layers`` (count), ``estimated_s``, ``filament_mm`` (filament pushed
forward: the high-water mark of E, so re-priming after a retraction is not
counted twice), ``bbox`` (``[[xmin, ymin, zmin], [xmax, ymax, zmax]]`` of the
extruding moves, or ``None``), ``source`` = ``"gcode"``.
"""

from __future__ import annotations

import math
import re
from array import array

import numpy as np

from .plan.motion import MotionLimits, move_durations
from .program import Program

__all__ = [
    "GcodeError",
    "MAX_CMD_SIZE",
    "MAX_COMMAND_BYTES",
    "STRING_COMMANDS",
    "parse",
    "validate",
    "emit",
    "check_command",
]

#: Marlin's MAX_CMD_SIZE: the firmware keeps at most MAX_CMD_SIZE - 1 bytes of a line.
MAX_CMD_SIZE = 96
#: Longest command we accept: 95 bytes minus ``N9999999 `` (9) and ``*255`` (4).
MAX_COMMAND_BYTES = MAX_CMD_SIZE - 1 - len("N9999999 ") - len("*255")

#: M-codes whose argument is free text (Marlin's parser gives them string_arg).
STRING_COMMANDS = frozenset({0, 1, 16, 23, 28, 30, 32, 33, 117, 118, 928} | set(range(810, 820)))

# Commands whose arguments are not numbers in the wild (PrusaSlicer: "M115 U3.13.0",
# "M486 AThe_Object" object labels); checked like string commands (printable ASCII, no '*').
_FREE_ARGS = frozenset({115, 486})

# Marlin defaults (Configuration.h / Configuration_adv.h)
_DEFAULT_FEED_MM_MIN = 1500.0
_LIMIT_CODES = frozenset({201, 203, 204, 205})  # M-codes that change the machine limits
# commands after which the planner has run empty (the next move starts from rest)
_DRAINS = frozenset({("G", 4), ("G", 28), ("G", 29), ("M", 0), ("M", 1), ("M", 400), ("M", 109), ("M", 190), ("M", 191)})
_HOME_S = 10.0
_PROBE_S = 60.0
_AMBIENT_C = 25.0

# Values that need a number in these commands ("G1 X" is malformed).
_NEEDS_VALUE = {
    ("G", 0): None, ("G", 1): None, ("G", 2): None, ("G", 3): None, ("G", 4): None,  # None: every word
    ("M", 104): "SR", ("M", 109): "SR", ("M", 140): "SR", ("M", 190): "SR",
    ("M", 141): "SR", ("M", 191): "SR",
}


class GcodeError(ValueError):
    """A malformed G-code line: ``line`` (1-based), ``text`` (the source line), ``reason``."""

    def __init__(self, line: int, text: str, reason: str):
        self.line = line
        self.text = text
        self.reason = reason
        shown = text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f'line {line}: "{shown}": {reason}')

    def __reduce__(self):
        return (GcodeError, (self.line, self.text, self.reason))


# ---------------------------------------------------------------------------
# line syntax

_NUM = r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)"
_NUM_RE = re.compile(_NUM, re.ASCII)
# The fast path: an ordinary command (no quotes, no N, no *); only a subset of the
# valid lines, everything it rejects goes through _diagnose which is the real rule.
_FAST_RE = re.compile(
    r"([GMTgmt])[ \t]*([0-9]+)(?:\.[0-9]+)?"
    r"(?:[ \t]*[A-MO-Za-mo-z](?:[ \t]*" + _NUM + r")?)*",
    re.ASCII,
)
_WORD_RE = re.compile(r"([A-Za-z])[ \t]*(" + _NUM + r")?", re.ASCII)
_HEAD_RE = re.compile(r"([A-Za-z])[ \t]*([0-9]+)(?:\.([0-9]+))?", re.ASCII)
_LAYER_RE = re.compile(r"\s*(?:LAYER:\s*-?[0-9]+|LAYER_CHANGE\b|layer\s+-?[0-9]+)", re.ASCII)


def _strip_comments(raw: str) -> tuple[str, str | None, str | None]:
    """-> (command text, comment after ';' or None, error reason or None)."""
    comment = None
    k = raw.find(";")
    if k >= 0:
        comment = raw[k + 1:]
        raw = raw[:k]
    s = raw.strip()
    if "(" in s:
        head = _HEAD_RE.match(s)
        if not (head and head.group(1) in "Mm" and int(head.group(2)) in STRING_COMMANDS):
            out = []
            i = 0
            while True:
                j = s.find("(", i)
                if j < 0:
                    out.append(s[i:])
                    break
                out.append(s[i:j])
                e = s.find(")", j + 1)
                if e < 0:
                    return s, comment, "unclosed ( comment"
                i = e + 1
            s = "".join(out).strip()
    return s, comment, None


def _bad_char(s: str, allow_unicode: bool) -> str | None:
    for ch in s:
        o = ord(ch)
        if o < 32 and ch != "\t" or o == 127:
            return f"control character 0x{o:02x}"
        if o > 127 and not allow_unicode:
            return f"non-ASCII character {ch!r}"
    return None


def _diagnose(s: str) -> str | None:
    """The full validity rule for one comment-free, stripped command; None if valid."""
    head = _HEAD_RE.match(s)
    is_string_cmd = bool(head and head.group(1) in "Mm" and int(head.group(2)) in STRING_COMMANDS)
    bad = _bad_char(s, allow_unicode=is_string_cmd)
    if head and head.group(1) in "Mm" and int(head.group(2)) in _FREE_ARGS:
        is_string_cmd = True
    if bad:
        return bad
    if "*" in s:
        return "contains '*' (the driver adds the checksum)"
    if head is not None and head.group(1) in "Nn" or re.match(r"[Nn][-+]?[0-9]", s):
        return "starts with a line number word N (the driver numbers lines itself)"
    if head is None or head.group(1) not in "GMTgmt":
        return "does not start with a command (G, M or T and a number)"
    nbytes = len(s.encode("utf-8"))
    if nbytes > MAX_COMMAND_BYTES:
        return (f"command is {nbytes} bytes; with line number and checksum it would exceed "
                f"Marlin's MAX_CMD_SIZE {MAX_CMD_SIZE} (limit {MAX_COMMAND_BYTES} bytes)")
    letter = head.group(1).upper()
    code = int(head.group(2))
    if letter == "M" and code == 110:
        return "M110 sets the line number; the driver numbers lines itself"
    if is_string_cmd and code not in (0, 1):
        return None
    needs = _NEEDS_VALUE.get((letter, code), "")
    i = head.end()
    n = len(s)
    while i < n:
        c = s[i]
        if c in " \t":
            i += 1
            continue
        if is_string_cmd:  # M0/M1: words until the first word without a number, then text
            m = _WORD_RE.match(s, i)
            if m and m.group(2) is not None and m.group(1) in "PSps":
                i = m.end()
                continue
            return None
        if not ("A" <= c <= "Z" or "a" <= c <= "z"):
            return f"unexpected character {c!r}"
        if c in "Nn":
            return "contains a line number word N (the driver numbers lines itself)"
        upper = c.isupper()
        j = i + 1
        while j < n and s[j] in " \t":
            j += 1
        if j < n and s[j] == '"':  # quoted string value (GCODE_QUOTED_STRINGS)
            e = s.find('"', j + 1)
            if e < 0:
                return f"unclosed quoted string for {c}"
            i = e + 1
            continue
        k = j
        while k < n and s[k] not in " \t" and not (s[k].isalpha() and s[k].isupper() == upper):
            k += 1
        token = s[j:k]
        if token:
            if not _NUM_RE.fullmatch(token):
                return f"bad number for {c.upper()}"
        elif needs is None or (needs and c.upper() in needs):
            return f"missing value for {c.upper()}"
        i = k
    return None


def check_command(cmd: str) -> str | None:
    """The reason ``cmd`` (one command, no comment) is not a valid Marlin command, or None."""
    if cmd != cmd.strip() or not cmd:
        return "empty command or surrounding whitespace"
    if ";" in cmd:
        return "contains ';' (starts a comment)"
    return _diagnose(cmd)


# ---------------------------------------------------------------------------
# parse

_G, _M = "G", "M"
_NEEDS_VALUE_M = frozenset(c for (l, c) in _NEEDS_VALUE if l == "M")
# a word letter not followed by a number (in a line the fast path accepted)
_BARE_RE = re.compile(r"[A-Za-z](?![ \t]*[-+.0-9])", re.ASCII)


def _reject(s: str, ln: int, raw: str, errors: list | None) -> bool:
    """Diagnose a suspicious command: raise, or collect into ``errors`` and return True; False if it is fine."""
    reason = _diagnose(s)
    if reason is None:
        return False
    if errors is None:
        raise GcodeError(ln, raw.strip(), reason)
    errors.append(GcodeError(ln, raw.strip(), reason))
    return True


def _parse(text: str, name: str, device_class: str, errors: list | None, limits: MotionLimits) -> Program | None:
    commands: list[str] = []
    src = array("i")
    marker_layer = array("i")
    z_layer = array("i")
    dur_fixed = array("d")  # non-move durations (by op), moves filled later
    # per-move rows: op, dx, dy, dz, de, v(mm/s), limits row, xend, yend, zend, length_override, restart
    mv = array("d")
    limits_rows = [limits]  # the limits in force, one entry per M201/M203/M204/M205
    drained = 1.0  # the planner is empty before the next move

    x = y = z = e = 0.0
    e_hw = 0.0  # high-water mark of E since the last G92 E
    filament = 0.0
    abs_xyz = True
    abs_e = True
    scale = 1.0
    feed = _DEFAULT_FEED_MM_MIN
    t_hot = _AMBIENT_C
    t_bed = _AMBIENT_C
    t_chamber = _AMBIENT_C
    markers = -1
    zl = -1
    zl_z = -math.inf

    fast = _FAST_RE.fullmatch
    words = _WORD_RE.findall
    limit = MAX_COMMAND_BYTES
    layer_match = _LAYER_RE.match

    lines = text.split("\n")
    for ln, raw in enumerate(lines, 1):
        k = raw.find(";")
        if k >= 0:
            if layer_match(raw, k + 1):
                markers += 1
            s = raw[:k]
        else:
            s = raw
        if "(" in s:
            s, _c, err = _strip_comments(s)
            if err:
                if errors is None:
                    raise GcodeError(ln, raw.strip(), err)
                errors.append(GcodeError(ln, raw.strip(), err))
                continue
        else:
            s = s.strip()
        if not s:
            continue
        m = fast(s)
        if m is None or len(s) > limit:
            if _reject(s, ln, raw, errors):
                continue
            head = _HEAD_RE.match(s)
            letter = head.group(1).upper()
            code = int(head.group(2))
            p = head.end()
        else:
            p = m.end(2)
            letter = m.group(1).upper()
            code = int(m.group(2))
            if letter == _M and (code == 110 or code in _NEEDS_VALUE_M) or letter == _G and code <= 4 and _BARE_RE.search(s, m.end(2)):
                if _reject(s, ln, raw, errors):
                    continue
        op = len(commands)
        commands.append(s)
        src.append(ln)
        marker_layer.append(markers)
        d = 0.0
        if letter == _G:
            if code <= 3:
                nx, ny, nz, ne = x, y, z, e
                ci = cj = rr = None
                for w, v in words(s, p):
                    c = w.upper()
                    if c == "X":
                        nx = float(v) * scale + (x if not abs_xyz else 0.0)
                    elif c == "Y":
                        ny = float(v) * scale + (y if not abs_xyz else 0.0)
                    elif c == "Z":
                        nz = float(v) * scale + (z if not abs_xyz else 0.0)
                    elif c == "E":
                        ne = float(v) * scale + (e if not abs_e else 0.0)
                    elif c == "F":
                        fv = float(v) * scale
                        if fv > 0:
                            feed = fv
                    elif c == "I":
                        ci = float(v) * scale
                    elif c == "J":
                        cj = float(v) * scale
                    elif c == "R":
                        rr = float(v) * scale
                dx = nx - x
                dy = ny - y
                dz = nz - z
                de = ne - e
                length = -1.0
                if code >= 2:
                    length = _arc_length(x, y, nx, ny, ci, cj, rr, code == 2, dz)
                if de > 0 and (dx or dy or length > 0) and nz > zl_z + 1e-6:
                    zl += 1
                    zl_z = nz
                if ne > e_hw:
                    filament += ne - e_hw
                    e_hw = ne
                mv.extend((op, dx, dy, dz, de, feed / 60.0, len(limits_rows) - 1, nx, ny, nz, length, drained))
                drained = 0.0
                x, y, z, e = nx, ny, nz, ne
            elif code == 4:
                for w, v in words(s, p):
                    c = w.upper()
                    if c == "P":
                        d += float(v) / 1000.0
                    elif c == "S":
                        d += float(v)
            elif code == 92:
                given = False
                for w, v in words(s, p):
                    c = w.upper()
                    val = float(v) * scale if v else 0.0
                    if c == "X":
                        x = val
                        given = True
                    elif c == "Y":
                        y = val
                        given = True
                    elif c == "Z":
                        z = val
                        given = True
                    elif c == "E":
                        e = e_hw = val
                        given = True
                if not given:
                    x = y = z = e = e_hw = 0.0
            elif code == 90:
                abs_xyz = abs_e = True
            elif code == 91:
                abs_xyz = abs_e = False
            elif code == 28:
                d = _HOME_S
                axes = {w.upper() for w, _v in words(s, p)} & set("XYZ")
                if not axes:
                    axes = set("XYZ")
                if "X" in axes:
                    x = 0.0
                if "Y" in axes:
                    y = 0.0
                if "Z" in axes:
                    z = 0.0
            elif code == 29:
                d = _PROBE_S
            elif code == 20:
                scale = 25.4
            elif code == 21:
                scale = 1.0
        elif letter == _M:
            if code == 82:
                abs_e = True
            elif code == 83:
                abs_e = False
            elif code in _LIMIT_CODES:
                params = {w.upper(): float(v) if v else None for w, v in words(s, p)}
                changed = limits_rows[-1].after_command(f"M{code}", params)
                if changed != limits_rows[-1]:
                    limits_rows.append(changed)
            elif code in (18, 84) and "S" not in s[p:].upper():
                drained = 1.0
            elif code in (104, 109, 140, 190, 141, 191):
                target = None
                cooling = False
                for w, v in words(s, p):
                    c = w.upper()
                    if c == "S" and v:
                        target = float(v)
                    elif c == "R" and v:
                        target = float(v)
                        cooling = True
                if target is not None and code in (109, 190, 191):
                    # heating runs from the last temperature waited for (or ambient)
                    if code == 109:
                        prev, t_hot = t_hot, target
                        rate = 2.0
                    elif code == 190:
                        prev, t_bed = t_bed, target
                        rate = 0.5
                    else:
                        prev, t_chamber = t_chamber, target
                        rate = 0.5
                    if cooling and target < prev:
                        d = 30.0
                    else:
                        d = max(5.0, (target - max(prev, _AMBIENT_C)) / rate)
        if (letter, code) in _DRAINS:
            drained = 1.0
        dur_fixed.append(d)
        z_layer.append(zl)

    if errors is not None and errors:
        return None

    n = len(commands)
    duration = np.frombuffer(dur_fixed, dtype=np.float64).copy() if n else np.zeros(0)
    bbox = None
    position = np.full((n, 3), np.nan)
    if len(mv):
        M = np.frombuffer(mv, dtype=np.float64).reshape(-1, 12)
        ops = M[:, 0].astype(np.int64)
        duration[ops] = move_durations(M[:, 1:5], M[:, 5], limits_rows, limits_index=M[:, 6], path_length=M[:, 10], restart=M[:, 11] > 0)
        position[ops] = M[:, 7:10]
        position = _forward_fill(position)
        ext = M[:, 4] > 0
        if ext.any():
            ends = M[ext][:, 7:10]
            starts = ends - M[ext][:, 1:4]
            pts = np.vstack([ends, starts])
            bbox = [pts.min(axis=0).round(4).tolist(), pts.max(axis=0).round(4).tolist()]
    if markers >= 0:
        layer = np.frombuffer(marker_layer, dtype=np.int32).copy() if n else np.zeros(0, np.int32)
    else:
        layer = np.frombuffer(z_layer, dtype=np.int32).copy() if n else np.zeros(0, np.int32)
    layers = int(layer.max()) + 1 if n and layer.max() >= 0 else 0
    meta = {
        "source": "gcode",
        "layers": layers,
        "estimated_s": float(duration.sum()),
        "filament_mm": round(float(filament), 4),
        "bbox": bbox,
    }
    return Program(
        device_class=device_class,
        name=name,
        commands=tuple(commands),
        source_line=np.frombuffer(src, dtype=np.int32).copy() if n else np.zeros(0, np.int32),
        layer=layer,
        duration_s=duration,
        position=position,
        meta=meta,
    )


def _forward_fill(rows: np.ndarray) -> np.ndarray:
    """Each row that is NaN takes the last row before it that is not (the position holds between moves)."""
    known = ~np.isnan(rows[:, 0])
    index = np.where(known, np.arange(len(rows)), -1)
    np.maximum.accumulate(index, out=index)
    out = rows[np.maximum(index, 0)]
    out[index < 0] = np.nan
    return out


def _arc_length(x0, y0, x1, y1, i, j, r, clockwise, dz) -> float:
    if i is not None or j is not None:
        cx = x0 + (i or 0.0)
        cy = y0 + (j or 0.0)
        rad = math.hypot(x0 - cx, y0 - cy)
        a0 = math.atan2(y0 - cy, x0 - cx)
        a1 = math.atan2(y1 - cy, x1 - cx)
        sweep = a0 - a1 if clockwise else a1 - a0
        sweep %= 2 * math.pi
        if sweep < 1e-9:  # same start and end: a full circle
            sweep = 2 * math.pi
    elif r is not None:
        chord = math.hypot(x1 - x0, y1 - y0)
        rad = abs(r)
        if chord == 0 or rad == 0:
            return abs(dz)
        half = min(1.0, chord / (2 * rad))
        sweep = 2 * math.asin(half)
        if r < 0:
            sweep = 2 * math.pi - sweep
    else:
        return math.hypot(x1 - x0, y1 - y0, dz)
    return math.hypot(rad * sweep, dz)


def parse(text: str, name: str = "", device_class: str = "printer", limits: MotionLimits | None = None) -> Program:
    """Parse G-code text into a Program timed for a machine with ``limits`` (Marlin's defaults
    when None); raises GcodeError on the first malformed line."""
    return _parse(text, name, device_class, None, limits or MotionLimits())


def validate(text: str) -> list[GcodeError]:
    """Every malformed line of ``text`` (empty list when the file is good)."""
    errors: list[GcodeError] = []
    _parse(text, "", "printer", errors, MotionLimits())
    return errors


def emit(program: Program, dialect: str = "marlin", *, layer_markers: bool = True) -> str:
    """G-code text, one command per line (plus ``;LAYER:<n>`` comments where the
    layer changes, so that layers survive a round trip)."""
    if dialect != "marlin":
        raise ValueError(f"unknown G-code dialect {dialect!r} (supported: marlin)")
    cmds = program.commands
    if not layer_markers or not len(cmds) or program.layer.max() < 0:
        return "".join(c + "\n" for c in cmds)
    out = []
    layer = program.layer
    changes = np.flatnonzero(np.diff(layer, prepend=-1) != 0)
    cur = -1
    prev = 0
    for i in changes.tolist():
        out.extend(c + "\n" for c in cmds[prev:i])
        new = int(layer[i])
        # markers only count up; a layer that goes back down can't be expressed by markers
        while cur < new:
            cur += 1
            out.append(f";LAYER:{cur}\n")
        prev = i
    out.extend(c + "\n" for c in cmds[prev:])
    return "".join(out)
