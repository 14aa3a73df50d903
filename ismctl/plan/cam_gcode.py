"""grbl 1.1 G-code for a CAM toolpath, and the Program that stands for it.

The writer takes moves one at a time and keeps, per emitted line, the
commanded X Y Z after it (NaN for an axis not yet commanded), the layer (the
step-down level) and the motion block's geometry for timing.  Coordinates are
rounded to 1 µm *before* they are remembered, so the Program's positions are
exactly what the text says.  The dialect is what grbl 1.1 accepts (see
docs/mill-simulator.md): G21 G90 G94 G17, G0/G1/G2/G3 with incremental I J
centres, S and M3/M5, M30; no tool change (grbl has none: a comment names the
tool), no canned cycles, no cutter compensation (the path is already offset).
Every line stays under grbl's 80-byte line buffer and comments hold no
parentheses.
"""

from __future__ import annotations

import math
import re

import numpy as np

from ..gcode import _arc_length as arc_length
from ..grbl_gcode import block_times
from ..program import Program
from .model import PlanError

MAX_LINE = 79  # grbl's line buffer is 80 bytes with the terminator

# Header comments that say where the part sits, so that `ismctl verify` can
# check a program against the mesh it was planned from without being told.
_NUM = r"(-?[0-9.]+)"
_TOOL_RE = re.compile(r"^\(tool ([^:)]+):", re.MULTILINE)
_STOCK_RE = re.compile(r"^\(stock box" + "".join(f" {a}{_NUM}" for a in "XYZXYZ") + r"\)", re.MULTILINE)
_OFFSET_RE = re.compile(r"^\(mesh offset" + "".join(f" {a}{_NUM}" for a in "XYZ") + r"\)", re.MULTILINE)


def placement_comments(box: np.ndarray, offset: np.ndarray) -> tuple[str, str]:
    """The stock box in program coordinates and the shift that puts the mesh into it."""
    lo, hi = box
    return (f"stock box X{fmt(lo[0])} Y{fmt(lo[1])} Z{fmt(lo[2])} X{fmt(hi[0])} Y{fmt(hi[1])} Z{fmt(hi[2])}",
            f"mesh offset X{offset[0]:.6f} Y{offset[1]:.6f} Z{offset[2]:.6f}")


def read_placement(text: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(stock box (2, 3), mesh offset (3,)) from a program ``ismctl cam`` wrote, else None."""
    stock, offset = _STOCK_RE.search(text), _OFFSET_RE.search(text)
    if stock is None or offset is None:
        return None
    box = np.array([float(v) for v in stock.groups()]).reshape(2, 3)
    return box, np.array([float(v) for v in offset.groups()])


def read_tool_name(text: str) -> str | None:
    """The tool a program ``ismctl cam`` wrote was planned for."""
    match = _TOOL_RE.search(text)
    return match.group(1) if match else None


def fmt(value: float) -> str:
    """A coordinate with at most 3 decimals and no trailing zeros (``-0`` written as ``0``)."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _r(value: float) -> float:
    return round(float(value), 3) + 0.0  # + 0.0 turns -0.0 into 0.0


class GcodeWriter:
    """Collects G-code lines with their position, level and timing geometry."""

    def __init__(self):
        self.lines: list[str] = []
        self.positions: list[tuple[float, float, float]] = []
        self.layers: list[int] = []
        self.blocks: list[tuple[int, tuple, tuple, float, float]] = []  # (line, start, end, length, feed or 0)
        self.pos = [math.nan, math.nan, math.nan]
        self.level = -1  # the Program's layer: -1 for the header, then one per cutting level in program order
        self._feed = None

    def next_level(self) -> None:
        self.level += 1

    # -- plain lines ----------------------------------------------------------
    def line(self, text: str) -> None:
        if len(text) > MAX_LINE:
            raise PlanError(f"cam: G-code line longer than {MAX_LINE} characters: {text!r}")
        self.lines.append(text)
        self.positions.append(tuple(self.pos))
        self.layers.append(self.level)

    def comment(self, text: str) -> None:
        clean = "".join(c if c.isprintable() and c not in "();" else " " for c in text)
        self.line(f"({clean[:MAX_LINE - 2].strip()})")

    # -- motion ------------------------------------------------------------------
    def rapid(self, x: float | None = None, y: float | None = None, z: float | None = None) -> None:
        self._move("G0", (x, y, z), None, "")

    def feed(self, x: float | None, y: float | None, z: float | None, feed: float) -> None:
        self._move("G1", (x, y, z), feed, "")

    def arc(self, x: float, y: float, z: float, cx: float, cy: float, clockwise: bool, feed: float) -> None:
        """G2/G3 from the current point to (x, y, z) around centre (cx, cy); the start must be known."""
        sx, sy, sz = self.pos
        i, j = _r(cx - sx), _r(cy - sy)
        length = arc_length(sx, sy, _r(x), _r(y), i, j, None, clockwise, _r(z) - sz)  # start = end: a full circle
        self._move("G2" if clockwise else "G3", (x, y, z), feed, f" I{fmt(i)} J{fmt(j)}", length)

    def _move(self, code: str, target, feed, extra: str, length: float | None = None) -> None:
        words = []
        new = list(self.pos)
        for axis, value in zip("XYZ", target):
            if value is None:
                continue
            v = _r(value)
            k = "XYZ".index(axis)
            if code in ("G2", "G3") or not v == self.pos[k]:
                words.append(f"{axis}{fmt(v)}")
            new[k] = v
        if not words and not extra:
            return  # already there
        f_word = ""
        if feed is not None:
            f = round(feed, 1)
            if f != self._feed:
                f_word = f" F{fmt(f)}"
                self._feed = f
        start = tuple(self.pos)
        self.pos = new
        self.line(f"{code} {' '.join(words)}{extra}{f_word}")
        if not any(math.isnan(v) for v in start):
            chord = math.dist(start, new)
            self.blocks.append((len(self.lines) - 1, start, tuple(new), chord if length is None else length,
                                0.0 if feed is None else float(feed)))

    # -- result ------------------------------------------------------------------------
    def program(self, name: str, max_rate, accel, meta: dict) -> Program:
        n = len(self.lines)
        durations = np.zeros(n)
        if self.blocks:
            index = np.array([b[0] for b in self.blocks], dtype=np.int64)
            start = np.array([b[1] for b in self.blocks], dtype=np.float64)
            end = np.array([b[2] for b in self.blocks], dtype=np.float64)
            length = np.array([b[3] for b in self.blocks], dtype=np.float64)
            feed = np.array([b[4] for b in self.blocks], dtype=np.float64)
            rapid = feed <= 0
            durations[index] = block_times(end - start, length, np.where(rapid, -1.0, feed / 60.0),
                                           np.asarray(max_rate, dtype=np.float64) / 60.0, accel)
        meta = dict(meta, estimated_s=float(durations.sum()))
        return Program("mill", name, tuple(self.lines), np.arange(1, n + 1), np.asarray(self.layers), durations,
                       np.asarray(self.positions, dtype=np.float64).reshape(n, 3), meta)

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"
