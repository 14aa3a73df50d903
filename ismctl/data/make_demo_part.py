"""Generate ``demo-bracket.gcode``: a small Cura-style print of an angle bracket.

Deterministic (no randomness, fixed number formatting): running it again gives
the same bytes, which a test checks.  Usage::

    python -m ismctl.data.make_demo_part [OUTPUT]      # default: next to this file

The part: a 30 x 30 mm base plate, 2.4 mm thick, with a 6 mm bolt hole, and a
30 x 6 mm upright wall on one edge up to 10 mm; PLA at 200/60 degC, 0.2 mm layers,
0.4 mm lines, absolute extrusion (M82), retraction 0.8 mm, fan from layer 1.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

CX, CY = 110.0, 110.0  # centre of the part on a 220 x 220 bed
SIZE = 30.0
BASE_LAYERS = 12
LAYERS = 50
LAYER_H = 0.2
LINE_W = 0.4
FIL_D = 1.75
E_PER_MM = LINE_W * LAYER_H / (math.pi * FIL_D ** 2 / 4)
HOLE = (CX + 4.0, CY - 4.0, 3.0)  # bolt hole centre x, y, radius
WALL = (CX - 15.0, CY + 9.0, CX + 15.0, CY + 15.0)  # upright wall rectangle
CORNER_R = 3.0
RETRACT = 0.8
F_RETRACT = 1500
F_TRAVEL = 9000
F_WALL = 2400
F_INFILL = 4800
F_FIRST = 1200


def rounded_rect(x0, y0, x1, y1, r, segs=8):
    r = max(0.0, min(r, (x1 - x0) / 2, (y1 - y0) / 2))
    pts = []
    corners = ((x1 - r, y0 + r, -90.0), (x1 - r, y1 - r, 0.0), (x0 + r, y1 - r, 90.0), (x0 + r, y0 + r, 180.0))
    for cx, cy, a0 in corners:
        if r == 0:
            pts.append((cx, cy))
            continue
        for k in range(segs + 1):
            a = math.radians(a0 + 90.0 * k / segs)
            pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return pts


def circle(cx, cy, r, segs=24):
    return [(cx + r * math.cos(2 * math.pi * k / segs), cy + r * math.sin(2 * math.pi * k / segs)) for k in range(segs)]


class Writer:
    def __init__(self):
        self.lines: list[str] = []
        self.x = self.y = 0.0
        self.z = 0.0
        self.e = 0.0
        self.f = None
        self.retracted = False
        self.time_s = 0.0
        self.filament = 0.0

    def out(self, s):
        self.lines.append(s)

    def _feed(self, f):
        if f != self.f:
            self.f = f
            return f" F{f}"
        return ""

    def travel(self, x, y, z=None):
        d = math.hypot(x - self.x, y - self.y)
        if d > 2.0 and not self.retracted:
            self.retract()
        fs = self._feed(F_TRAVEL)
        zs = ""
        if z is not None and z != self.z:
            zs = f" Z{z:.1f}"
            self.z = z
        self.out(f"G0{fs} X{x:.3f} Y{y:.3f}{zs}")
        self.time_s += d / (F_TRAVEL / 60)
        self.x, self.y = x, y

    def retract(self):
        self.e -= RETRACT
        self.out(f"G1{self._feed(F_RETRACT)} E{self.e:.5f}")
        self.retracted = True

    def unretract(self):
        if self.retracted:
            self.e += RETRACT
            self.out(f"G1{self._feed(F_RETRACT)} E{self.e:.5f}")
            self.retracted = False

    def extrude(self, x, y, f):
        self.unretract()
        d = math.hypot(x - self.x, y - self.y)
        self.e += d * E_PER_MM
        self.filament += d * E_PER_MM
        self.out(f"G1{self._feed(f)} X{x:.3f} Y{y:.3f} E{self.e:.5f}")
        self.time_s += d / (f / 60)
        self.x, self.y = x, y

    def loop(self, pts, f):
        self.travel(*pts[0])
        for p in pts[1:] + pts[:1]:
            self.extrude(p[0], p[1], f)


def infill_segments(x0, y0, x1, y1, spacing, horizontal, hole=None):
    """Rectilinear infill lines inside a rectangle, split around a circular hole."""
    # Work in (across, along) coordinates: lines run along one axis, step across the other.
    if horizontal:
        a0, a1, b0, b1, flip = x0, x1, y0, y1, False
    else:
        a0, a1, b0, b1, flip = y0, y1, x0, x1, True
    segs = []
    n = int((b1 - b0) / spacing)
    for k in range(n + 1):
        b = b0 + k * spacing
        if b > b1:
            break
        parts = [(a0, a1)]
        if hole:
            ha, hb, hr = (hole[1], hole[0], hole[2]) if flip else hole
            if abs(b - hb) < hr:
                d = math.sqrt(hr * hr - (b - hb) ** 2)
                parts = [(a0, ha - d), (ha + d, a1)]
        for a, c in parts:
            if c - a > LINE_W:
                segs.append(((b, a), (b, c)) if flip else ((a, b), (c, b)))
    # boustrophedon order
    out = []
    for i, (p, q) in enumerate(segs):
        out.append((q, p) if i % 2 else (p, q))
    return out


def layer(w: Writer, n: int):
    z = round((n + 1) * LAYER_H, 1)
    w.out(f";LAYER:{n}")
    if n == 1:
        w.out("M106 S255")
    if n % 5 == 0:
        w.out(f"M73 P{round(100 * n / LAYERS)}")
    first = n == 0
    fw = F_FIRST if first else F_WALL
    fi = F_FIRST if first else F_INFILL
    if n < BASE_LAYERS:
        x0, y0, x1, y1 = CX - SIZE / 2, CY - SIZE / 2, CX + SIZE / 2, CY + SIZE / 2
        hole = HOLE
    else:
        x0, y0, x1, y1 = WALL
        hole = None
    # z move with the first travel of the layer
    if not w.retracted:
        w.retract()
    ins = LINE_W / 2
    start = rounded_rect(x0 + ins, y0 + ins, x1 - ins, y1 - ins, CORNER_R - ins)[0]
    w.travel(start[0], start[1], z)
    w.out(";TYPE:WALL-OUTER")
    for k in (0, 1):
        ins = LINE_W * (k + 0.5)
        if k == 1:
            w.out(";TYPE:WALL-INNER")
        w.loop(rounded_rect(x0 + ins, y0 + ins, x1 - ins, y1 - ins, CORNER_R - ins), fw)
        if hole:
            w.loop(circle(hole[0], hole[1], hole[2] + ins), fw)
    solid = n < 3 or BASE_LAYERS - 3 <= n < BASE_LAYERS or n >= LAYERS - 3
    w.out(";TYPE:SKIN" if solid else ";TYPE:FILL")
    ins = LINE_W * 2
    spacing = LINE_W if solid else 2.0
    hr = (hole[0], hole[1], hole[2] + 2 * LINE_W) if hole else None
    for p, q in infill_segments(x0 + ins, y0 + ins, x1 - ins, y1 - ins, spacing, n % 2 == 0, hr):
        if math.hypot(p[0] - w.x, p[1] - w.y) > 1e-9:
            if math.hypot(p[0] - w.x, p[1] - w.y) < 2.5 and not w.retracted:
                w.extrude(p[0], p[1], fi)  # connect neighbouring lines
            else:
                w.travel(*p)
        w.extrude(q[0], q[1], fi)


def make() -> str:
    Writer()
    body = Writer()
    body.e = 0.0
    # start gcode
    start = [
        "M140 S60",
        "M105",
        "M190 S60",
        "M104 S200",
        "M105",
        "M109 S200",
        "M82 ;absolute extrusion mode",
        "M201 X500.00 Y500.00 Z100.00 E5000.00 ;Setup machine max acceleration",
        "M203 X500.00 Y500.00 Z10.00 E50.00 ;Setup machine max feedrate",
        "M204 P500.00 R1000.00 T500.00 ;Setup Print/Retract/Travel acceleration",
        "M205 X8.00 Y8.00 Z0.40 E5.00 ;Setup Jerk",
        "M220 S100 ;Reset Feedrate",
        "M221 S100 ;Reset Flowrate",
        "G21 ; metric values",
        "G90 ; absolute positioning",
        "G28 ;Home",
        "G92 E0 ;Reset Extruder",
        "G1 Z2.0 F3000 ;Move Z Axis up",
        "G1 X0.1 Y20 Z0.3 F5000.0 ;Move to start position",
        "G1 X0.1 Y120.0 Z0.3 F1500.0 E10 ;Draw the first line",
        "G1 X0.4 Y120.0 Z0.3 F5000.0 ;Move to side a little",
        "G1 X0.4 Y20 Z0.3 F1500.0 E20 ;Draw the second line",
        "G92 E0 ;Reset Extruder",
        "G1 Z2.0 F3000 ;Move Z Axis up",
        "M117 Printing bracket...",
        "G92 E0",
        "G92 E0",
        "G1 F1500 E-0.8",
        ";LAYER_COUNT:%d" % LAYERS,
    ]
    for s in start:
        body.out(s)
    body.e = -RETRACT
    body.retracted = True
    body.x, body.y, body.z = 0.4, 20.0, 2.0
    body.f = 1500
    body.out(";MESH:bracket.stl")
    for n in range(LAYERS):
        layer(body, n)
    body.out(";TIME_ELAPSED:%.6f" % body.time_s)
    end = [
        "M140 S0",
        "M107",
        "G91 ;Relative positioning",
        "G1 E-2 F2700 ;Retract a bit",
        "G1 E-2 Z0.2 F2400 ;Retract and raise Z",
        "G1 X5 Y5 F3000 ;Wipe out",
        "G1 Z10 ;Raise Z more",
        "G90 ;Absolute positioning",
        "G1 X0 Y220 ;Present print",
        "M106 S0 ;Turn-off fan",
        "M104 S0 ;Turn-off hotend",
        "M140 S0 ;Turn-off bed",
        "M84 X Y E ;Disable all steppers but Z",
        "M82 ;absolute extrusion mode",
        "M104 S0",
        ";End of Gcode",
    ]
    for s in end:
        body.out(s)
    heat_s = 70 + 90  # rough bed + hotend heat-up, as a slicer would not know it either
    total = int(body.time_s + heat_s)
    x0, y0 = CX - SIZE / 2, CY - SIZE / 2
    header = [
        ";FLAVOR:Marlin",
        f";TIME:{total}",
        f";Filament used: {body.filament / 1000:.5f}m",
        f";Layer height: {LAYER_H}",
        f";MINX:{x0:.3f}",
        f";MINY:{y0:.3f}",
        ";MINZ:0.2",
        f";MAXX:{x0 + SIZE:.3f}",
        f";MAXY:{y0 + SIZE:.3f}",
        f";MAXZ:{LAYERS * LAYER_H:.1f}",
        ";Generated with ismctl make_demo_part.py (Cura-style)",
    ]
    return "\n".join(header + body.lines) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else Path(__file__).with_name("demo-bracket.gcode")
    out.write_text(make(), encoding="ascii", newline="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
