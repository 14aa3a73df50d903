"""CAM for the grbl mill: a mesh and a block of stock to G-code and a Program.

``plan_cam`` places the part in the stock (centred, its top ``facing_allowance``
below the stock top; program origin at the stock's front-left top corner),
then runs the operations asked for, in this order:

- ``face``: zig-zag over the stock top down to the part's top;
- ``pocket``: clears what is not part at every cutting level -- offset rings
  around the part from the stock's edge inwards (clipped to where the tool
  meets the stock), and every pocket (a hole in
  the part's shadow) from a helix at its middle out to its wall (or zig-zag
  lines, then the wall);
- ``profile``: the contour around the part's outline at every level, the tool
  centre one radius (plus the finishing allowance) away;
- ``drill``: peck drilling of the vertical cylindrical holes a drill of the
  tool's diameter fits (with a drill; an end mill leaves holes to ``pocket``).

Pocket and profile run level by level (a level's pockets, then its profile),
so each level is entered from the one above, already cleared.  The modules:
``cam_features`` (levels, keep areas, holes), ``cam_ops`` (moves),
``cam_gcode`` (text and Program), ``cam_paths`` (Numba kernels),
``cam_areas`` (Clipper), ``tooling`` (tools, materials, feeds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..program import Program
from . import cam_areas, cam_features, cam_ops
from .cam_gcode import GcodeWriter, fmt, placement_comments
from .cam_settings import CamSettings
from .mesh_io import load_mesh
from .mesh_repair import prepare_mesh
from .model import Mesh, PlanError
from .tooling import Feeds, Material, Tool, Tooling, feeds, load_tooling

MAX_PART = (1000.0, 1000.0, 500.0)  # mm: a mesh larger than this is taken to be in the wrong unit
STEPS = ("load", "levels", "face", "levels-cut", "drill", "gcode")


@dataclass(frozen=True)
class Stock:
    """A block of stock: width (X), depth (Y), height (Z) in mm."""

    width: float
    depth: float
    height: float

    def __post_init__(self):
        for name in ("width", "depth", "height"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise PlanError(f"stock {name} must be a positive number of mm, got {value!r}")

    @classmethod
    def parse(cls, text: str) -> "Stock | float":
        """``W,D,H`` or ``WxDxH`` (mm) is a block of that size; ``+M`` is the part's box plus M mm (returned as M)."""
        words = text.strip().lower()
        try:
            if words.startswith("+"):
                margin = float(words[1:])
                if not (math.isfinite(margin) and margin >= 0):
                    raise ValueError
                return margin
            parts = [float(p) for p in words.replace("x", ",").split(",")]
            if len(parts) != 3:
                raise ValueError
            return cls(*parts)
        except (ValueError, PlanError):
            raise PlanError(f"stock {text!r}: give W,D,H or WxDxH in mm (e.g. 60x40x12), or +MARGIN "
                            f"(the part's box plus MARGIN mm on each side, e.g. +3)") from None


@dataclass
class CamResult:
    gcode: str
    program: Program
    notes: list[str]
    stock: np.ndarray  # [[x0, y0, z0], [x1, y1, z1]] in program coordinates (top at z = 0)
    offset: np.ndarray  # added to the mesh's coordinates to place it in the stock
    tool: Tool
    material: Material
    feeds: Feeds
    operations: dict[str, int] = field(default_factory=dict)  # G-code lines written per operation
    holes: list = field(default_factory=list)  # cam_features.Hole found (program coordinates)
    removed_mm3: float = 0.0  # volume the plan clears (levels x areas), not counting tool-radius corners
    repairs: list[str] = field(default_factory=list)


def _mesh(mesh) -> tuple[Mesh, list[str]]:
    if isinstance(mesh, (str, Path)):
        mesh = load_mesh(mesh)
    if not isinstance(mesh, Mesh):
        raise PlanError(f"plan_cam: mesh must be a Mesh or a file path, got {type(mesh).__name__}")
    prepared, report = prepare_mesh(mesh, build_volume=MAX_PART)
    return prepared, report.messages()


def _placement(mesh: Mesh, stock, settings: CamSettings):
    """Stock size and the translation that puts the part in it (see the module docstring)."""
    lo, hi = mesh.bounds
    size = hi - lo
    if stock is None or isinstance(stock, (int, float)):
        margin = settings.margin if stock is None else float(stock)
        stock = Stock(size[0] + 2 * margin, size[1] + 2 * margin, size[2] + settings.facing_allowance)
    elif isinstance(stock, (tuple, list)):
        stock = Stock(*stock)
    need = (size[0], size[1], size[2] + settings.facing_allowance)
    for axis, have, want in zip("XYZ", (stock.width, stock.depth, stock.height), need):
        if have < want - 1e-6:
            raise PlanError(f"stock {stock.width:g} x {stock.depth:g} x {stock.height:g} mm is too small: the part "
                            f"needs {want:.3f} mm in {axis}" + (" (its height plus the facing allowance)" if axis == "Z" else ""))
    offset = np.array([stock.width / 2 - (lo[0] + hi[0]) / 2, stock.depth / 2 - (lo[1] + hi[1]) / 2,
                       -settings.facing_allowance - hi[2]])
    box = np.array([[0.0, 0.0, -stock.height], [stock.width, stock.depth, 0.0]])
    return Mesh(mesh.vertices + offset, mesh.faces, mesh.name), box, offset


def _tool_and_feeds(tooling: Tooling, tool: str, material: str, settings: CamSettings, notes: list[str]):
    t, m = tooling.tool(tool), tooling.material(material)
    f = feeds(t, m, settings.spindle_max_rpm)
    xy_rate, z_rate = min(settings.max_rate[:2]), settings.max_rate[2]
    if f.feed_mm_min > xy_rate or f.plunge_mm_min > z_rate:
        notes.append(f"feed {f.feed_mm_min:.0f} mm/min (plunge {f.plunge_mm_min:.0f}) is above the machine's rates "
                     f"(X/Y {xy_rate:g}, Z {z_rate:g} mm/min): capped, so the chip load is below the table's")
        f = Feeds(f.rpm, min(f.feed_mm_min, xy_rate), min(f.plunge_mm_min, z_rate))
    return t, m, f


def _operations(operations, tool: Tool, notes: list[str]) -> tuple[str, ...]:
    if operations is None:
        return ("drill",) if tool.is_drill else ("face", "pocket", "profile")
    ops = tuple(operations)
    milling = [op for op in ops if op != "drill"]
    if tool.is_drill and milling:
        raise PlanError(f"tool {tool.name!r} is a drill: it can only drill, not {', '.join(milling)} "
                        f"(use an end mill for those)")
    if "drill" in ops and not tool.is_drill:
        notes.append(f"drill: {tool.name!r} is an end mill, so holes are milled by the pocket operation; "
                     f"drill them with a drill tool (operations=('drill',))")
    return ops


def plan_cam(mesh, stock=None, tool: str = "flat-3", material: str = "PLA", operations=None,
             tooling: Tooling | Path | str | None = None, settings: CamSettings | None = None,
             progress=None, **options) -> CamResult:
    """Plan machining ``mesh`` out of ``stock`` (a Stock, (W, D, H), a margin in mm, or None for the
    settings' margin); ``options`` override ``settings`` fields by name.  See the module docstring."""
    settings = (settings or CamSettings()).replace(operations=operations, **options)  # checks the names
    step = progress or (lambda name, index: None)
    notes: list[str] = []
    step("load", 0)
    tooling = tooling if isinstance(tooling, Tooling) else load_tooling(tooling)
    t, m, f = _tool_and_feeds(tooling, tool, material, settings, notes)
    ops = _operations(settings.operations, t, notes)
    part, repairs = _mesh(mesh)
    part, box, offset = _placement(part, stock, settings)
    doc = min(settings.depth_of_cut or m.depth_of_cut * t.diameter, t.flute_length)
    stepover = settings.stepover or m.stepover * t.diameter
    if stepover > 0.9 * t.diameter:
        raise PlanError(f"stepover {stepover:g} mm leaves ridges with a {t.diameter:g} mm tool: at most "
                        f"{0.9 * t.diameter:g} mm")
    part_top, part_bottom = part.bounds[1, 2], part.bounds[0, 2]
    if -part_bottom > t.flute_length and not t.is_drill:
        raise PlanError(f"the part reaches {-part_bottom:.2f} mm below the stock top but {t.name!r} cuts only "
                        f"{t.flute_length:g} mm deep (its flute length)")

    out = GcodeWriter()
    cutter = cam_ops.Cutter(out, t, settings, f.feed_mm_min, f.plunge_mm_min, box)
    _header(out, part.name, t, m, f, box, offset)
    counts: dict[str, int] = {}

    removed = 0.0
    facing = "face" in ops and settings.facing_allowance > 0
    if "face" in ops and not facing:
        notes.append("face: the facing allowance is 0, nothing to face")
    material_top = part_top if facing else 0.0  # where the material starts once facing is done

    step("levels", 1)
    floors = cam_features.floor_heights(part)
    levels = cam_features.cutting_levels(material_top, part_bottom, floors[floors < part_top - 1e-3], doc)
    planes, stack = cam_features.sections(part, levels)
    notes.extend(stack.notes)

    if facing:
        step("face", 2)
        before = len(out.lines)
        cam_ops.face(cutter, cam_features.cutting_levels(0.0, part_top, np.zeros(0), doc), stepover)
        counts["face"] = len(out.lines) - before
        removed += (box[1, 0] * box[1, 1]) * settings.facing_allowance

    step("levels-cut", 3)
    if "pocket" in ops or "profile" in ops:
        keeps = cam_features.keep_areas(planes, stack, levels)
        removed += _cut_levels(cutter, ops, levels, keeps, box, stepover, material_top, settings, counts, notes)

    step("drill", 4)
    holes = cam_features.find_holes(planes, stack, part_top, part_bottom)
    if "pocket" in ops and not t.is_drill:
        for h in holes:
            if h.diameter <= t.diameter + 2 * settings.finish_allowance:  # no room for the tool centre at all
                notes.append(f"hole D{h.diameter:.3f} at X{h.x:.3f} Y{h.y:.3f} is too small to mill with "
                             f"{t.name!r} (D{t.diameter:g}): left for a drill")
    if "drill" in ops and t.is_drill:
        before = len(out.lines)
        removed += _drill(cutter, holes, settings, material_top, notes)
        counts["drill"] = len(out.lines) - before

    step("gcode", 5)
    cutter.retract()
    out.line("M5")
    out.line("M30")
    meta = {"tool": t.name, "material": m.name, "rpm": round(f.rpm), "feed_mm_min": f.feed_mm_min,
            "plunge_mm_min": f.plunge_mm_min, "stock": box.tolist(), "offset": offset.tolist(),
            "operations": list(ops), "levels": len(levels), "removed_mm3": removed}
    program = out.program(part.name or "cam", settings.max_rate, settings.accel, meta)
    return CamResult(out.text, program, notes, box, offset, t, m, f, counts, holes, removed, repairs)


def _drill(c: cam_ops.Cutter, holes, settings: CamSettings, material_top: float, notes: list[str]) -> float:
    """Peck-drill the holes the drill fits (within 2 % of its diameter); returns the volume drilled."""
    t = c.tool
    fits = [h for h in holes if abs(h.diameter - t.diameter) <= max(0.05, 0.02 * t.diameter)]
    for h in holes:
        if h not in fits:
            notes.append(f"drill: hole D{h.diameter:.3f} at X{h.x:.3f} Y{h.y:.3f} does not fit "
                         f"{t.name!r} (D{t.diameter:g}): left alone")
    if not fits:
        notes.append(f"drill: no hole of {t.diameter:g} mm found")
    c.out.next_level()
    cam_ops.drill(c, fits, settings.peck_depth or t.diameter, material_top)
    return sum(math.pi * t.radius ** 2 * (material_top - h.bottom) for h in fits)


def _header(out: GcodeWriter, name: str, t: Tool, m: Material, f: Feeds, box: np.ndarray, offset: np.ndarray) -> None:
    w, d, h = box[1, 0], box[1, 1], -box[0, 2]
    out.comment(f"ismctl cam {name}")
    out.comment(f"tool {t.name}: {t.shape} D{t.diameter:g} {t.flutes} flutes - load it before starting")
    out.comment(f"material {m.name}, stock {w:.3f} x {d:.3f} x {h:.3f} mm")
    out.comment("origin: stock front left corner, Z0 on its top")
    for text in placement_comments(box, offset):
        out.comment(text)
    out.line("G21 G90 G94 G17")
    out.line(f"S{round(f.rpm)} M3")


def _cut_levels(c: cam_ops.Cutter, ops, levels, keeps, box, stepover: float, material_top: float,
                settings: CamSettings, counts: dict, notes: list[str]) -> float:
    """Pockets, then the profile, level by level; returns the volume cleared."""
    r = c.r
    # The kept area may lie inside the part by the sections' simplification, and Clipper's round joins
    # cut their arcs' chords inside the true offset: the tool keeps that much further away.
    # Arcs fitted to the paths may leave them by ARC_FIT too.
    clearance = (r + settings.finish_allowance + cam_features.SECTION_DEVIATION + cam_areas.ARC_TOLERANCE
                 + cam_ops.ARC_FIT)
    reach_box = (box[0, 0] - r - 0.01, box[0, 1] - r - 0.01, box[1, 0] + r + 0.01, box[1, 1] + r + 0.01)
    world = cam_areas.rectangle(box[0, 0] - r - 50, box[0, 1] - r - 50, box[1, 0] + r + 50, box[1, 1] + r + 50)
    stock_rect = cam_areas.rectangle(box[0, 0], box[0, 1], box[1, 0], box[1, 1])
    removed, previous_forbidden, skipped = 0.0, None, set()
    z_above = material_top
    for k, (z, keep) in enumerate(zip(levels, keeps)):
        c.out.next_level()
        forbidden = cam_areas.offset(keep, clearance)
        free = cam_areas.boolean("difference", world, forbidden)
        pieces = cam_areas.islands(free)
        outer = max(pieces, key=lambda piece: cam_areas.signed_area(piece[0]))
        removed += cam_areas.area_mm2(cam_areas.boolean("difference", stock_rect, keep)) * (z_above - z)
        rings = cam_ops.outer_rings(keep, clearance, stepover, reach_box)  # the last is the profile
        if "pocket" in ops:
            before = len(c.out.lines)
            c.out.comment(f"pocket z {z:.3f}")
            for ring in rings[:-1] if "profile" in ops else rings:
                for loop in ring:  # only where the tool can touch the stock: the rest of a ring is air
                    whole, parts = cam_areas.clip_loop_to_box(cam_ops.directed(loop, settings.climb), reach_box)
                    for part in parts:
                        if whole:
                            c.cut_loop(part, z, outer, z_above)
                        else:
                            c.cut_open(part, z, outer, z_above, either_way=False)
            for piece in pieces:
                if piece is not outer:
                    _pocket(c, piece, z, z_above, stepover, settings, notes, skipped)
            counts["pocket"] = counts.get("pocket", 0) + len(c.out.lines) - before
        if "profile" in ops:
            before = len(c.out.lines)
            c.out.comment(f"profile z {z:.3f}")
            # Without pocket clearing the stock around the profile is uncut: no links across it (lift instead),
            # and a contour that differs from the level above's is cut down from the top, level by level.
            cleared = "pocket" in ops or (previous_forbidden is not None and _same(previous_forbidden, forbidden))
            passes = [(z, z_above)] if cleared else list(zip(levels[:k + 1], [material_top, *levels[:k]]))
            for loop in rings[-1]:
                for depth, entry in passes:
                    c.cut_loop(cam_ops.directed(loop, settings.climb), depth, outer if "pocket" in ops else [], entry)
            counts["profile"] = counts.get("profile", 0) + len(c.out.lines) - before
        previous_forbidden = forbidden
        z_above = z
    return removed


def _pocket(c: cam_ops.Cutter, area, z: float, z_above: float, stepover: float, settings: CamSettings,
            notes: list[str], skipped: set) -> None:
    """One pocket at one level: a helix in its middle, then rings (or zig-zag lines) out to the wall."""
    rings = cam_ops.pocket_rings(area, stepover)
    centre, radius = cam_ops.helix_site(area, rings[0], (settings.helix_diameter or c.tool.diameter) / 2)
    if radius < 0.1 * c.r:
        key = (round(float(centre[0]), 2), round(float(centre[1]), 2))
        if key not in skipped:
            skipped.add(key)
            notes.append(f"pocket at X{fmt(centre[0])} Y{fmt(centre[1])} is too narrow for a helix entry with "
                         f"{c.tool.name!r}: left uncut (drill it, or use a smaller tool)")
        return
    c.helix(centre, radius, z_above, z)
    if settings.pocket_style == "zigzag":
        for line in cam_ops.zigzag_lines(area, stepover):
            c.cut_open(line, z, area, z_above)
        rings = rings[-1:]  # the wall pass
    for ring in rings:
        for loop in ring:
            c.cut_loop(cam_ops.directed(loop, settings.climb), z, area, z_above)


def _same(a, b) -> bool:
    if len(a) != len(b):
        return False
    return abs(cam_areas.area_mm2(cam_areas.boolean("difference", a, b))) + abs(
        cam_areas.area_mm2(cam_areas.boolean("difference", b, a))) < 1e-6


def plan_cam_from_table(mesh, table: dict, where: str = "[cam]", tool: str = "flat-3", material: str = "PLA",
                        tooling=None, progress=None) -> CamResult:
    """``plan_cam`` driven by a TOML table (a job step's ``cam``): ``tool``, ``material``, ``tooling`` (a path),
    ``stock`` ("60x40x12", "60,40,12" or "+3") override the arguments; every other key is a CamSettings field.
    An empty ``tool`` or ``material`` argument (a mill that declares none) means the default, flat-3 in PLA."""
    tool, material = tool or "flat-3", material or "PLA"
    if not isinstance(table, dict):
        raise PlanError(f"{where}: must be a table, got {type(table).__name__}")
    rest = dict(table)
    named = {}
    for key, default in (("tool", tool), ("material", material), ("stock", None), ("tooling", tooling)):
        value = rest.pop(key, default)
        if key in table and not isinstance(value, str):
            raise PlanError(f"{where}: {key}: must be a string, got {value!r}")
        named[key] = value
    stock = Stock.parse(named["stock"]) if named["stock"] is not None else None
    try:
        return plan_cam(mesh, stock, named["tool"], named["material"], tooling=named["tooling"],
                        settings=CamSettings.from_table(rest, where), progress=progress)
    except PlanError as exc:
        message = str(exc)
        raise PlanError(message if message.startswith(where) else f"{where}: {message}") from None

