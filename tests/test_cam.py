"""CAM geometry, checked against the part's own shape (shapely) and a height map of the stock."""

from __future__ import annotations

import functools
import math
import re

import numpy as np
import pytest
import shapely
import shapely.geometry as geo

from cam_parts import BLOCK, FLOOR, HEIGHT, HOLE_3, HOLE_5, POCKET, block_with_pocket_and_holes, circle
from ismctl.plan.cam import Stock, plan_cam
from ismctl.plan.cam_settings import CamSettings
from ismctl.plan.model import PlanError
from ismctl.plan.tooling import feeds, load_tooling

R = 1.5  # flat-3


@pytest.fixture(scope="module")
def block():
    return block_with_pocket_and_holes()


@pytest.fixture(scope="module")
def milled(block):
    return plan_cam(block, tool="flat-3", material="PLA")


def shadow(result, z: float):
    """The part's material at or above height ``z`` seen from above, in program coordinates."""
    dx, dy, dz = result.offset
    if z >= HEIGHT + dz - 1e-6:
        return geo.Polygon()
    return _shadow(dx, dy, z >= FLOOR + dz - 1e-6)


@functools.lru_cache
def _shadow(dx: float, dy: float, above_floor: bool):
    body = BLOCK.difference(circle(*HOLE_3)).difference(circle(*HOLE_5))
    return geo.Polygon(*_moved(body.difference(POCKET) if above_floor else body, dx, dy))


def _moved(poly, dx, dy):
    return ([(x + dx, y + dy) for x, y in poly.exterior.coords], [[(x + dx, y + dy) for x, y in i.coords]
                                                                  for i in poly.interiors])


def moves(program):
    """(kind, start xyz, end xyz, polyline xy) for every motion op with a known start."""
    out = []
    pos = program.position
    for i, cmd in enumerate(program.commands):
        code = cmd.split()[0]
        if code not in ("G0", "G1", "G2", "G3") or i == 0 or np.isnan(pos[i - 1]).any():
            continue
        a, b = pos[i - 1], pos[i]
        if code in ("G2", "G3"):
            ij = dict(re.findall(r"([IJ])(-?[\d.]+)", cmd))
            c = a[:2] + [float(ij["I"]), float(ij["J"])]
            a0 = math.atan2(*(a[:2] - c)[::-1])
            a1 = math.atan2(*(b[:2] - c)[::-1])
            sweep = (a1 - a0) % (2 * math.pi) if code == "G3" else -((a0 - a1) % (2 * math.pi))
            if abs(sweep) < 1e-9:
                sweep = 2 * math.pi if code == "G3" else -2 * math.pi
            t = np.linspace(0, 1, 33)
            rad = math.hypot(*(a[:2] - c))
            xy = c + rad * np.column_stack((np.cos(a0 + sweep * t), np.sin(a0 + sweep * t)))
        else:
            xy = np.array([a[:2], b[:2]])
        out.append((code, a, b, xy))
    return out


def closest_approach(result) -> float:
    """Smallest distance from any move's tool-centre path to the material at or above the tool's bottom
    (shrunk by 1 µm, the G-code's rounding): the tool cuts into the part where this is below its radius."""
    by_shadow = {}
    for code, a, b, xy in moves(result.program):
        body = shadow(result, min(a[2], b[2]))
        if not body.is_empty:
            shape = geo.LineString(xy) if len(np.unique(xy, axis=0)) > 1 else geo.Point(xy[0])
            by_shadow.setdefault(id(body), (body.buffer(-0.001), []))[1].append(shape)
    assert by_shadow
    return min(float(shapely.distance(np.array(shapes, dtype=object), body).min())
               for body, shapes in by_shadow.values())


def test_no_move_cuts_into_the_part(milled):
    """Every move's swept tool disc stays out of the material at and above the tool's bottom."""
    assert closest_approach(milled) >= R


def test_profile_is_the_outline_offset_by_the_tool_radius(milled):
    text = milled.gcode.splitlines()
    bottom = min(float(m) for m in re.findall(r"\(profile z (-?[\d.]+)\)", milled.gcode))
    start = text.index(f"(profile z {bottom:.3f})")
    outline = geo.Polygon(_moved(BLOCK, *milled.offset[:2])[0])
    profile = [(code, xy) for (code, a, b, xy), i in zip(moves(milled.program), _move_ops(milled.program))
               if i > start and code != "G0" and a[2] == b[2] == bottom]
    assert any(code in ("G2", "G3") for code, _ in profile)  # the rounded corners are arcs
    points = np.vstack([xy for _, xy in profile])  # arcs sampled along their length
    assert len(points) > 20
    distances = [outline.exterior.distance(geo.Point(p)) for p in points]
    # the radius plus the polygon guard (5 µm), give or take the G-code's 1 µm rounding
    assert R - 1e-3 <= min(distances) and max(distances) <= R + 0.005 + 1e-3
    assert all(not outline.contains(geo.Point(p)) for p in points)
    # climb milling with M3: clockwise around the part
    assert not geo.LinearRing(points).is_ccw


def _move_ops(program):
    """The op index of each move ``moves`` returns."""
    pos = program.position
    return [i for i, cmd in enumerate(program.commands) if cmd.split()[0] in ("G0", "G1", "G2", "G3")
            and i and not np.isnan(pos[i - 1]).any()]


def test_pocket_paths_stay_in_the_pocket_shrunk_by_the_radius(milled):
    dx, dy, dz = milled.offset
    pocket = geo.box(*(np.array(POCKET.bounds) + [dx, dy, dx, dy]))
    allowed = pocket.buffer(-R + 1e-3, join_style=2)
    inside = 0
    for code, a, b, xy in moves(milled.program):
        if code == "G0" or min(a[2], b[2]) >= HEIGHT + dz - 1e-6:
            continue
        if pocket.contains(geo.Point(xy[0])) or pocket.contains(geo.Point(xy[-1])):
            inside += 1
            assert allowed.contains(geo.LineString(xy) if len(xy) > 1 else geo.Point(xy[0])), (code, a, b)
    assert inside > 50
    # the pocket is cut down to its floor, and no deeper
    floor = FLOOR + dz
    depths = [min(a[2], b[2]) for code, a, b, xy in moves(milled.program)
              if code != "G0" and pocket.buffer(-R).contains(geo.Point(xy[-1]))]
    assert min(depths) == pytest.approx(floor, abs=1e-9)


def _under(gx, gy, xy, radius):
    """Mask of the grid cells within ``radius`` of the polyline ``xy`` (the tool's footprint along a move)."""
    near = np.zeros(gx.shape, bool)
    for a, b in zip(xy[:-1], xy[1:]) if len(xy) > 1 else [(xy[0], xy[0])]:
        ab = b - a
        t = ((gx - a[0]) * ab[0] + (gy - a[1]) * ab[1]) / max(float(ab @ ab), 1e-30)
        t = np.clip(t, 0.0, 1.0)
        near |= np.hypot(gx - (a[0] + t * ab[0]), gy - (a[1] + t * ab[1])) <= radius
    return near


ENTRY_CASES = {
    "all operations": {},
    "profile only": dict(operations=("profile",)),
    "zigzag pockets, conventional": dict(pocket_style="zigzag", climb=False, operations=("face", "pocket")),
}


@pytest.mark.parametrize("options", ENTRY_CASES.values(), ids=ENTRY_CASES.keys())
def test_end_mill_enters_material_only_by_ramps_and_cuts_one_depth_at_a_time(block, options):
    """A height map of the stock (0.2 mm cells), cut move by move: wherever a descending move meets material,
    it must be a ramp or helix no steeper than the ramp angle (3 degrees), never a plunge; a rapid never
    touches material; and no move cuts more than one depth of cut (1.5 mm for flat-3 in PLA) at once."""
    result = plan_cam(block, tool="flat-3", **options)
    (x0, y0, _), (x1, y1, _) = result.stock
    gx, gy = np.meshgrid(np.arange(x0 + 0.1, x1, 0.2), np.arange(y0 + 0.1, y1, 0.2))
    top = np.zeros(gx.shape)  # the stock top
    limit = math.tan(math.radians(3.0)) * 1.001
    entries = 0
    for code, a, b, xy in moves(result.program):
        lo, hi = xy.min(axis=0) - R, xy.max(axis=0) + R
        cols = slice(*np.searchsorted(gx[0], [lo[0], hi[0]]))
        rows = slice(*np.searchsorted(gy[:, 0], [lo[1], hi[1]]))
        under = _under(gx[rows, cols], gy[rows, cols], xy, R)
        if not under.any():
            continue
        z = min(a[2], b[2])
        patch = top[rows, cols]
        material = patch[under].max()
        assert code != "G0" or material <= z + 1e-6, f"rapid through material: {a} -> {b}"
        assert material - z <= 1.5 + 1e-6, f"{code} cuts {material - z:.3f} mm deep at once: {a} -> {b}"
        if b[2] < a[2] - 1e-9 and material > z + 1e-6:
            entries += 1
            horizontal = float(np.sum(np.hypot(*np.diff(xy, axis=0).T)))
            # (+ 1 µm: the G-code's resolution, on a short last piece of a ramp)
            assert a[2] - b[2] <= horizontal * limit + 1e-3, f"{code} enters material too steeply: {a} -> {b}"
        patch[under] = np.minimum(patch[under], z)
    assert entries > 5


def test_helix_entry_radius_and_pitch(milled):
    t = math.tan(math.radians(3.0))
    arcs = [(cmd, milled.program.position[i - 1], milled.program.position[i])
            for i, cmd in enumerate(milled.program.commands) if cmd.split()[0] in ("G2", "G3")]
    helices = [(cmd, a, b) for cmd, a, b in arcs if b[2] < a[2]]  # (contours have flat arcs too)
    assert len(helices) >= 2 * 3  # the pocket and the 5 mm hole, at each of their levels
    for cmd, a, b in helices:
        ij = dict(re.findall(r"([IJ])(-?[\d.]+)", cmd))
        radius = math.hypot(float(ij["I"]), float(ij["J"]))
        assert radius == pytest.approx(R, abs=1e-3) or radius <= 1.0 + 1e-3  # the 5 mm hole has 1 mm of room
        assert cmd.startswith("G3")  # climb: counter-clockwise inside a pocket
        assert a[2] - b[2] <= math.pi * radius * t + 1e-3  # half a turn descends at most half a pitch


def test_drilling_positions_are_the_hole_centres(block):
    result = plan_cam(block, tool="drill-3", material="PLA")
    dx, dy, dz = result.offset
    lines = result.program.commands
    feeds_down = [i for i, c in enumerate(lines) if c.startswith("G1 Z")]
    xy = {tuple(np.round(result.program.position[i][:2], 3)) for i in feeds_down}
    assert xy == {(HOLE_3[0] + dx, HOLE_3[1] + dy)}
    depths = [result.program.position[i][2] for i in feeds_down]
    tip = 1.5 / math.tan(math.radians(59))
    assert min(depths) == pytest.approx(round(dz - tip - 0.2, 3))  # through the part's bottom by the point
    assert all(b - a <= 3.0 + 1e-9 for a, b in zip(depths[1:], depths))  # pecks of one diameter
    assert any("5.000" in n and "does not fit" in n for n in result.notes)
    assert not any(c.split()[0] in ("G2", "G3") for c in lines)  # grbl has no canned cycles: G0/G1 only


def test_feeds_in_the_program_follow_the_tooling_table(block):
    tooling = load_tooling()
    settings = dict(max_rate=(5000.0, 5000.0, 2000.0))
    result = plan_cam(block, tool="flat-6", material="aluminium-6061", operations=("profile",), **settings)
    rpm, feed, plunge = feeds(tooling.tool("flat-6"), tooling.material("aluminium-6061"), 24000)
    assert feed == pytest.approx(0.04 * 2 * rpm)
    assert f"S{round(rpm)} M3" in result.program.commands
    f_words = {float(f) for f in re.findall(r"F([\d.]+)", result.gcode)}
    assert f_words <= {round(feed, 1), round(plunge, 1)} and round(feed, 1) in f_words


def test_estimated_time_is_the_sum_of_trapezoids(milled):
    p = milled.program
    assert p.estimated_s == pytest.approx(p.duration_s.sum()) and p.estimated_s > 60
    # a long straight feed at 500 mm/min with 10 mm/s^2: distance / speed + speed / accel
    for i, cmd in enumerate(p.commands):
        if cmd.startswith("G1 X") and "Y" not in cmd and "Z" not in cmd:
            a, b = p.position[i - 1], p.position[i]
            d = abs(b[0] - a[0])
            if d > 20:
                assert p.duration_s[i] == pytest.approx(d / (500 / 60) + (500 / 60) / 10)
                break
    else:
        pytest.fail("no long X move found")


def test_every_line_fits_grbl(milled):
    for line in milled.gcode.splitlines():
        assert len(line) <= 79 and line.isascii()
        assert line.count("(") == line.count(")") <= 1
    assert milled.program.device_class == "mill" and milled.program.commands[-1] == "M30"
    # layers: one per cutting level, in program order (facing's one level, then the part's)
    assert np.all(np.diff(milled.program.layer) >= 0)
    assert milled.program.layer_count == 1 + milled.program.meta["levels"]


def test_stock_spec_and_errors(block):
    assert Stock.parse("40x30x10") == Stock(40, 30, 10) and Stock.parse("40,30,10") == Stock(40, 30, 10)
    assert Stock.parse("+5") == 5.0
    with pytest.raises(PlanError, match="give W,D,H"):
        Stock.parse("40x30")
    with pytest.raises(PlanError, match="too small: the part needs 30.000 mm in X"):
        plan_cam(block, stock=Stock(20, 30, 10))
    with pytest.raises(PlanError, match="is a drill"):
        plan_cam(block, tool="drill-3", operations=("profile",))
    with pytest.raises(PlanError, match="known: .*flat-3"):
        plan_cam(block, tool="flat-33")
    with pytest.raises(PlanError, match="stepovr: unknown setting"):
        plan_cam(block, stepovr=1.0)
    with pytest.raises(PlanError, match="'facing' is not one of"):
        plan_cam(block, operations=("face", "facing"))
    result = plan_cam(block, stock=Stock(40, 30, 12), operations=("face",))
    assert result.stock.tolist() == [[0, 0, -12], [40, 30, 0]]
    assert result.offset[2] == pytest.approx(-0.5 - HEIGHT)


def test_settings_from_a_toml_table():
    s = CamSettings.from_table({"margin": 5, "climb": False, "operations": ["face", "profile"],
                                "max_rate": [1000, 1000, 300]})
    assert s.margin == 5.0 and s.climb is False and s.operations == ("face", "profile")
    assert s.max_rate == (1000.0, 1000.0, 300.0)
    with pytest.raises(PlanError, match=r"\[cam\]: stepp: unknown key"):
        CamSettings.from_table({"stepp": 1})
    with pytest.raises(PlanError, match=r"\[cam\]: ramp_angle: must be >= 0.5"):
        CamSettings.from_table({"ramp_angle": -1})
    with pytest.raises(PlanError, match=r"\[cam\]: depth_of_cut: must be >= 0.01 .* got 1e-05"):
        CamSettings.from_table({"depth_of_cut": 0.00001})  # would plan for hours, not be refused
    with pytest.raises(PlanError, match=r"\[cam\]: operations: 'mill' is not one of"):
        CamSettings.from_table({"operations": ["mill"]})


def test_conventional_zigzag_pockets_are_also_safe(block):
    result = plan_cam(block, tool="flat-3", climb=False, pocket_style="zigzag", operations=("pocket",))
    assert closest_approach(result) >= R
    p = result.program
    helices = [c for i, c in enumerate(p.commands) if c.split()[0] in ("G2", "G3") and p.position[i][2] < p.position[i - 1][2]]
    assert helices and all(c.startswith("G2") for c in helices)  # conventional inside a pocket: clockwise


def test_levels_cut_every_floor_exactly_in_equal_steps():
    from ismctl.plan.cam_features import cutting_levels

    levels = cutting_levels(0.0, -8.0, np.array([-4.5, -1.0, 3.0]), 1.5)
    assert levels.tolist() == [-1.0, -2.167, -3.333, -4.5, -5.667, -6.833, -8.0]
    assert np.all(-np.diff(np.concatenate(([0.0], levels))) <= 1.5 + 1e-3)


def test_holes_blind_through_and_covered():
    """A through hole is drilled past the bottom, a blind hole to its floor, a hole under a roof not at all."""
    from cam_parts import prism_stack

    through, blind, covered = circle(5, 5, 3.0), circle(15, 5, 3.0), circle(25, 5, 3.0)
    body = geo.box(0, 0, 30, 10)
    part = prism_stack([(0.0, 4.0, body.difference(through).difference(covered)),
                        (4.0, 8.0, body.difference(through).difference(blind))], "holes")
    result = plan_cam(part, tool="drill-3", facing_allowance=0.0)
    dx, dy, dz = result.offset
    found = {(h.x - dx, h.y - dy): h for h in result.holes}
    assert set(found) == {(5.0, 5.0), (15.0, 5.0)}
    assert found[(5.0, 5.0)].through and found[(5.0, 5.0)].bottom == pytest.approx(dz)
    assert not found[(15.0, 5.0)].through and found[(15.0, 5.0)].bottom == pytest.approx(4.0 + dz)
    feeds_down = [result.program.position[i] for i, c in enumerate(result.program.commands) if c.startswith("G1 Z")]
    deepest = {}
    for x, y, z in feeds_down:
        deepest[(round(x - dx, 3), round(y - dy, 3))] = min(z, deepest.get((round(x - dx, 3), round(y - dy, 3)), 0))
    assert deepest[(15.0, 5.0)] == pytest.approx(4.0 + dz)
    assert deepest[(5.0, 5.0)] < dz and (25.0, 5.0) not in deepest


CURVED = {
    "torus (overhangs), zig-zag": ("torus", dict(tool="flat-3", pocket_style="zigzag")),
    "sphere, ball end mill, conventional": ("sphere", dict(tool="ball-3", climb=False)),
}


@pytest.mark.parametrize("shape, options", CURVED.values(), ids=CURVED.keys())
def test_curved_parts_come_out_without_a_gouge_on_the_z_map(shape, options):
    """Parts that are not 2.5D, checked by the Z-map verifier (ismctl.plan.zmap, the `ismctl verify` engine):
    the stair-stepped result never cuts below the part's surface, and does remove material."""
    import trimesh

    from ismctl.plan import zmap
    from ismctl.plan.model import Mesh

    tm = (trimesh.creation.torus(major_radius=12, minor_radius=4, major_sections=64, minor_sections=32)
          if shape == "torus" else trimesh.creation.icosphere(subdivisions=3, radius=5))
    result = plan_cam(Mesh(tm.vertices, tm.faces, shape), **options)
    tool = result.tool
    placed = Mesh(tm.vertices + result.offset, tm.faces, shape)
    report = zmap.verify(result.program, placed, zmap.Stock(*result.stock.tolist()),
                         zmap.ToolShape(tool.shape, tool.diameter, tool.name), cell=0.2)
    assert report.gouge_area_mm2 == 0, (report.gouge_max_mm, report.gouge_at, report.gouge_line)
    assert report.removed_mm3 > 0.8 * result.removed_mm3


def test_rings_are_clipped_to_where_the_tool_can_touch_the_stock():
    from ismctl.plan.cam_areas import clip_loop_to_box

    loop = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)  # counter-clockwise
    whole, parts = clip_loop_to_box(loop, (-1, -1, 11, 11))
    assert whole and parts[0] is loop
    whole, parts = clip_loop_to_box(loop, (2, -1, 8, 5))  # the box takes a bite of the bottom edge only
    assert not whole and len(parts) == 1
    assert parts[0].tolist() == [[2, 0], [8, 0]]  # in the loop's direction
    whole, parts = clip_loop_to_box(loop[::-1], (-1, 5, 11, 11))  # the top half, clockwise
    assert not whole and len(parts) == 1 and parts[0].tolist() == [[0, 5], [0, 10], [10, 10], [10, 5]]
    assert clip_loop_to_box(loop, (20, 20, 30, 30)) == (False, [])
