"""G-code emission: the text parses back to the same program, extrudes the right volume,
retracts where it leaves the part, and its header tells the truth; kernels vs slow references."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from shapely.geometry import LineString, Polygon

from ismctl import gcode
from ismctl.plan.fdm_gcode import emit_fdm, format_duration, leaves_outline, put_number, wall_grid
from ismctl.plan.fdm_settings import SliceSettings
from ismctl.plan.model import ExtrusionPath, LayerPaths, LayerRegions, PathKind, PlanError
from ismctl.plan.toolpath import effective_speeds, order_layers


def square(cx, cy, r, hole=False):
    p = np.array([[cx - r, cy - r], [cx + r, cy - r], [cx + r, cy + r], [cx - r, cy + r]], float)
    return p[::-1].copy() if hole else p


def circle(cx, cy, r, n=48):
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack((cx + r * np.cos(a), cy + r * np.sin(a)))


def closed(loop):
    return np.vstack((loop, loop[:1]))


def hatch(x0, x1, y0, y1, step):
    return [np.array([[x, y0], [x, y1]]) for x in np.arange(x0, x1 + 1e-9, step)]


def sample_print(settings=None, n_layers=4):
    """A plate with a square hole, a round island and a skirt, through the real toolpath step."""
    s = settings or SliceSettings()
    regions = []
    for k in range(n_layers):
        z = s.first_layer_height + k * s.layer_height
        h = s.first_layer_height if k == 0 else s.layer_height
        walls = [[square(0, 0, 15), square(0, 0, 4, hole=True), circle(40, 0, 6)],
                 [square(0, 0, 14.55), square(0, 0, 4.45, hole=True), circle(40, 0, 5.55)]]
        fill = [ln for ln in hatch(-14, 14, -14, -5, 0.45)] + hatch(-14, 14, 5, 14, 0.45)
        sparse = hatch(36, 44, -3, 3, 2.0)
        regions.append(LayerRegions(k, z, h, walls, [], [], fill, sparse))
    return order_layers(regions, [closed(square(0, 0, 30))[:-1]], [], s), s


# ---------------------------------------------------------------------------
# number formatting


def python_number(x: float, decimals: int) -> str:
    text = f"{x:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def kernel_number(x: float, decimals: int) -> str:
    buf = np.zeros(64, np.uint8)
    return buf[:put_number(buf, 0, x, decimals)].tobytes().decode("ascii")


@pytest.mark.parametrize("x, decimals", [
    (0.0005, 3), (-0.0005, 3), (0.0015, 3), (-0.0, 3), (0.0, 5), (1e-7, 5), (-1e-7, 3), (123.4565, 3),
    (2.675, 2), (0.125, 2), (0.375, 2), (2.5, 0), (3.5, 0), (-2.5, 0), (99999.9995, 3), (1.0, 3), (10.0, 3),
    (0.1, 1), (1e-5, 5), (5e-6, 5), (1.5e-5, 5), (-0.00001, 5), (1800.0, 1), (12.05, 1), (7.000049999, 5),
])
def test_number_writer_matches_python_on_edge_cases(x, decimals):
    assert kernel_number(x, decimals) == python_number(x, decimals)


def test_number_writer_matches_python_on_random_values():
    rng = np.random.default_rng(11)
    values = np.concatenate((rng.uniform(-300, 300, 3000), rng.uniform(-1, 1, 1000) * 10.0 ** rng.integers(-8, 5, 1000),
                             np.round(rng.uniform(-500, 500, 1000), 3) + 0.0005, np.round(rng.uniform(0, 9, 500), 4) + 5e-5))
    for d in (0, 1, 3, 5):
        for x in values:
            assert kernel_number(x, d) == python_number(x, d), (x, d)


def test_format_duration_like_prusaslicer():
    assert format_duration(3723) == "1h 2m 3s"
    assert format_duration(59.4) == "59s"
    assert format_duration(90061) == "1d 1h 1m 1s"
    assert format_duration(3600) == "1h 0m 0s"


# ---------------------------------------------------------------------------
# travel test kernel


def slow_leaves(a, b, polygon: Polygon) -> bool:
    return not polygon.covers(LineString([a, b]))


def packed(loops):
    pts = np.concatenate(loops)
    start = np.concatenate(([0], np.cumsum([len(lp) for lp in loops]))).astype(np.int64)
    return pts, start


def slow_leaves_all_edges(a, b, loops) -> bool:
    """The test without a grid: every edge of every loop (the kernel's rules, written plainly)."""
    def orient(p, q, r):
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    mid = (a + b) / 2
    inside = False
    for lp in loops:
        for p, q in zip(lp[:-1], lp[1:]):
            if orient(a, b, p) * orient(a, b, q) < 0 and orient(p, q, a) * orient(p, q, b) < 0:
                return True
            if (p[1] > mid[1]) != (q[1] > mid[1]) and mid[0] > p[0] + (mid[1] - p[1]) * (q[0] - p[0]) / (q[1] - p[1]):
                inside = not inside
    return not inside


def test_leaves_outline_matches_shapely():
    rng = np.random.default_rng(5)
    outline, hole, other = closed(circle(0, 0, 10, 40)), closed(square(0, 0, 3, hole=True)), closed(square(25, 0, 4))
    loops = [outline, hole, other]
    pts, start = packed(loops)
    grid = wall_grid(pts, start, np.arange(3, dtype=np.int64))
    shape = Polygon(outline, [hole]).union(Polygon(other))
    seen = set()
    for _ in range(1500):
        a, b = rng.uniform(-14, 32, (2, 2))
        got = leaves_outline(a[0], a[1], b[0], b[1], pts, grid)
        assert got == slow_leaves(a, b, shape), (a, b)
        seen.add(got)
    assert seen == {True, False}
    # ends on the walls themselves (where travels start and end) do not count as leaving
    one = wall_grid(pts, start, np.arange(1, dtype=np.int64))
    a, b = outline[0], outline[20]  # a diameter, vertex to vertex
    assert not leaves_outline(a[0], a[1], b[0], b[1], pts, one)
    a, b = outline[5], outline[6]  # along a wall edge, ends on it
    assert not leaves_outline(a[0], a[1], b[0], b[1], pts, one)


@pytest.mark.parametrize("seed", range(4))
def test_leaves_outline_grid_matches_every_edge_test(seed):
    """Many short collinear edges (a subdivided mesh's sections), edges on cell borders,
    horizontal and vertical travels, travels from outside the grid: the grid must find
    exactly what a test against every edge finds."""
    rng = np.random.default_rng(seed)
    dense = closed(circle(0, 0, 10, 400))
    flat = np.array([[x, -14.0] for x in np.linspace(-14, 14, 57)] + [[14.0, y] for y in np.linspace(-13.5, 14, 56)]
                    + [[-14.0, 14.0]])  # collinear points, many on cell borders
    loops = [closed(flat), dense, closed(square(0, 0, 3, hole=True))]
    pts, start = packed(loops)
    grid = wall_grid(pts, start, np.arange(3, dtype=np.int64))
    snap = pts[rng.integers(0, len(pts), (600, 2))]  # travels between wall points, as real ones are
    free = rng.uniform(-20, 20, (600, 2, 2))
    axis = free.copy()
    axis[:300, 1, 1] = axis[:300, 0, 1]  # horizontal
    axis[300:, 1, 0] = axis[300:, 0, 0]  # vertical
    grid_y = np.round(rng.uniform(-14, 14, (200, 1)) / grid[2]) * grid[2] + grid[1]  # exactly on row borders
    on_border = np.stack((np.column_stack((rng.uniform(-20, 20, 200), grid_y[:, 0])),
                          np.column_stack((rng.uniform(-20, 20, 200), grid_y[:, 0]))), axis=1)
    seen = set()
    for a, b in np.concatenate((snap, free, axis, on_border)):
        got = leaves_outline(a[0], a[1], b[0], b[1], pts, grid)
        assert got == slow_leaves_all_edges(a, b, loops), (a.tolist(), b.tolist())
        seen.add(got)
    assert seen == {True, False}


def test_wall_grid_holds_every_edge_in_every_cell_it_touches():
    rng = np.random.default_rng(2)
    loops = [closed(circle(0, 0, 10, 90)), closed(square(30, 5, 2)), closed(circle(3, 1, 2, 7))]
    pts, start = packed(loops)
    x0, y0, h, nx, ny, cell_start, cell_edge = wall_grid(pts, start, np.array([0, 2], np.int64))
    edges = {i for L in (0, 2) for i in range(start[L], start[L + 1] - 1)}
    held = {int(e) for e in cell_edge}
    assert held == edges  # loop 1 is not asked for
    assert cell_start[0] == 0 and cell_start[-1] == len(cell_edge) and (np.diff(cell_start) >= 0).all()
    assert nx * ny <= 4 * len(edges)  # about two edges a cell, not a grid larger than the walls
    for i in rng.choice(sorted(edges), 40):
        for t in np.linspace(0, 1, 11):  # every point of the edge lies in a cell that holds it
            p = pts[i] + t * (pts[i + 1] - pts[i])
            c = min(int((p[1] - y0) // h), ny - 1) * nx + min(int((p[0] - x0) // h), nx - 1)
            assert i in cell_edge[cell_start[c]:cell_start[c + 1]]
    empty = wall_grid(pts, start, np.zeros(0, np.int64))
    assert len(empty[6]) == 0 and leaves_outline(0.0, 0.0, 1.0, 1.0, pts, empty)  # no walls: all is outside


# ---------------------------------------------------------------------------
# the emitted file


def extruded_by_layer(text: str, settings: SliceSettings) -> dict[int, float]:
    """mm^3 per layer from the text itself: E of moves that also move in XY."""
    area = math.pi * (settings.filament_diameter / 2) ** 2
    out: dict[int, float] = {}
    layer = -1
    for line in text.splitlines():
        if line.startswith(";LAYER:"):
            layer = int(line[7:])
        elif line.startswith("G1") and ("X" in line or "Y" in line):
            e = re.search(r"E(-?[0-9.]+)", line)
            if e:
                out[layer] = out.get(layer, 0.0) + float(e.group(1)) * area
    return out


def test_emitted_gcode_parses_to_the_same_program():
    layers, s = sample_print()
    text, parts = emit_fdm(layers, s, name="plate")
    program = parts.program(text)
    assert gcode.validate(text) == []
    parsed = gcode.parse(text)
    assert parsed.commands == program.commands
    assert len(parsed) == len(program) and parsed.layer_count == program.layer_count == len(layers)
    assert (parsed.layer == program.layer).all()
    assert (parsed.source_line == program.source_line).all()
    lines = text.split("\n")
    assert all(lines[n - 1] == c for n, c in zip(program.source_line.tolist(), program.commands))
    assert np.allclose(parsed.position, program.position, equal_nan=True, atol=1e-9)
    assert program.meta["filament_mm"] == pytest.approx(parsed.meta["filament_mm"], abs=1e-3)
    assert program.meta["bbox"] == parsed.meta["bbox"]
    assert program.meta["layers"] == len(layers) and program.meta["source"] == "mesh"
    assert program.meta["estimated_s"] == pytest.approx(program.duration_s.sum())
    assert max(len(c) for c in program.commands) < 60
    assert program.name == "plate" and program.device_class == "printer"


def test_volume_per_layer_is_path_length_times_width_times_height():
    layers, s = sample_print()
    text, _ = emit_fdm(layers, s)
    got = extruded_by_layer(text, s)
    for k, lp in enumerate(layers):
        want = sum(np.hypot(*np.diff(p.points, axis=0).T).sum() * p.width * lp.height for p in lp.paths)
        assert got[k] == pytest.approx(want, rel=0.005)


def test_solid_square_extrudes_its_area_times_height():
    s = SliceSettings()
    w, h, side = s.line_width, 0.2, 20.0
    wall = closed(square(0, 0, side / 2 - w / 2))
    inner = side / 2 - w
    lines = hatch(-inner + w / 2, inner - w / 2, -inner, inner, w)
    paths = [ExtrusionPath(PathKind.WALL_OUTER, wall, w, 30.0)] + [ExtrusionPath(PathKind.SKIN, ln, w, 40.0) for ln in lines]
    text, _ = emit_fdm([LayerPaths.from_paths(0, h, h, paths)], s)
    assert extruded_by_layer(text, s)[0] == pytest.approx(side * side * h, rel=0.02)


def travel_blocks(program):
    """(index of each retract, the commands from it to its unretract)."""
    cmds = program.commands
    out = []
    for i, c in enumerate(cmds):
        if c.startswith("G1") and "E-" in c and i + 1 < len(cmds) and "X" not in c:
            j = next((j for j in range(i + 1, len(cmds)) if cmds[j].startswith("G1") and "E" in cmds[j]), len(cmds) - 1)
            out.append((i, cmds[i:j + 1]))
    return out


def test_retract_and_z_hop_only_on_travels_that_leave_the_part():
    s = SliceSettings(skirt_loops=0, retract_length=0.8, z_hop=0.4, retract_min_travel=1.5)
    # a C-shaped part: a travel across its gap leaves it, a long travel inside the solid square does not
    c_shape = closed(np.array([[0, 0], [20, 0], [20, 5], [5, 5], [5, 15], [20, 15], [20, 20], [0, 20]], float))
    paths = [
        ExtrusionPath(PathKind.WALL_OUTER, c_shape, 0.45, 30.0),
        ExtrusionPath(PathKind.INFILL, np.array([[2.0, 2.0], [18.0, 2.0]]), 0.45, 80.0),
        ExtrusionPath(PathKind.INFILL, np.array([[18.0, 3.0], [2.0, 3.0]]), 0.45, 80.0),  # 1 mm hop: no retract
        ExtrusionPath(PathKind.INFILL, np.array([[2.0, 12.0], [4.0, 12.0]]), 0.45, 80.0),  # 9 mm inside: none
        ExtrusionPath(PathKind.INFILL, np.array([[18.0, 17.0], [10.0, 17.0]]), 0.45, 80.0),  # across the gap: retract
        ExtrusionPath(PathKind.INFILL, np.array([[10.0, 18.0], [3.0, 18.0]]), 0.45, 80.0),  # short: none
    ]
    layer_z = 0.3
    text, parts = emit_fdm([LayerPaths.from_paths(0, layer_z, 0.3, paths)], s)
    program = parts.program(text)
    blocks = travel_blocks(program)
    # the first travel (from home at 0,0 to the wall corner) runs along no edge: no retract either
    retracting_travels = [b for _, b in blocks if any(c.startswith("G0 X") for c in b)]
    assert len(retracting_travels) == 1
    block = retracting_travels[0]
    assert list(block) == ["G1 F2100 E-0.8", "G0 F9000 Z0.7", "G0 X18 Y17", "G0 Z0.3", "G1 F2100 E0.8"]
    # travels inside the part: plain G0 moves with nothing around them
    cmds = program.commands
    for target in ("G0 F9000 X18 Y3", "G0 F9000 X2 Y12", "G0 F9000 X10 Y18"):
        i = cmds.index(target)
        assert "E-" not in cmds[i - 1] and not cmds[i + 1].startswith("G0")
    # the print ends retracted and lifted
    assert cmds[-6] == "G1 F2100 E-0.8" and cmds[-5].startswith("G0 F9000 Z10.3")
    parsed = gcode.parse(text)
    z = parsed.position[:, 2]
    hop = program.commands.index("G0 F9000 Z0.7")
    assert z[hop] == pytest.approx(layer_z + 0.4) and z[hop + 2] == pytest.approx(layer_z)


def test_header_agrees_with_the_program():
    layers, s = sample_print()
    text, parts = emit_fdm(layers, s)
    program = parts.program(text)
    head = {}
    for line in text.splitlines():
        if not line.startswith(";") or line.startswith(";LAYER:"):
            break
        key, _, value = line[1:].partition(":") if "=" not in line else line[1:].partition("=")
        head[key.strip()] = value.strip()
    m = program.meta
    assert text.startswith(";FLAVOR:Marlin\n")
    assert int(head["TIME"]) == round(m["estimated_s"])
    assert float(head["Filament used"].rstrip("m")) == pytest.approx(m["filament_mm"] / 1000, abs=1e-5)
    assert float(head["filament used [mm]"]) == pytest.approx(m["filament_mm"], abs=0.01)
    assert float(head["filament used [g]"]) == pytest.approx(m["filament_g"], abs=0.01)
    area = math.pi * (s.filament_diameter / 2) ** 2
    assert m["filament_g"] == pytest.approx(m["filament_mm"] * area * s.filament_density / 1000, abs=1e-4)
    assert int(head["LAYER_COUNT"]) == program.layer_count == len(layers)
    assert float(head["Layer height"]) == s.layer_height
    lo, hi = m["bbox"]
    assert [float(head[k]) for k in ("MINX", "MINY", "MINZ")] == pytest.approx(lo, abs=1e-3)
    assert [float(head[k]) for k in ("MAXX", "MAXY", "MAXZ")] == pytest.approx(hi, abs=1e-3)
    assert lo == pytest.approx([-30, -30, s.first_layer_height]) and hi[2] == pytest.approx(layers[-1].z_top)
    assert head["estimated printing time (normal mode)"] == format_duration(m["estimated_s"])
    assert head["Generated with ismctl 0.1.0"] == "" or "Generated with ismctl" in text


def test_start_end_types_fan_and_modal_feedrates():
    layers, s = sample_print(SliceSettings(fan_start_layer=2, fan_speed=0.6))
    text, parts = emit_fdm(layers, s)
    program = parts.program(text)
    cmds = program.commands
    assert list(cmds[:8]) == ["M140 S60", "M104 S210", "G28", "M190 S60", "M109 S210", "G90", "M83", "M107"]
    assert list(cmds[-4:]) == ["M104 S0", "M140 S0", "M107", "M84"]
    fans = [(int(program.layer[i]), c) for i, c in enumerate(cmds) if c.startswith("M106")]
    assert fans == [(2, "M106 S153")]
    types = re.findall(r";TYPE:(\S+)", text)
    assert types[:3] == ["SKIRT", "WALL-INNER", "WALL-OUTER"] and {"SKIN", "FILL"} <= set(types)
    lines = text.split("\n")
    for k in range(len(layers)):
        i = lines.index(f";LAYER:{k}")
        z_line = next(line for line in lines[i + 1:] if line.startswith("G0"))
        assert z_line.endswith(f"Z{layers[k].z_top:g}")
    modal = None
    for c in cmds:
        f = re.search(r" F([0-9.]+)", c)
        if f:
            assert float(f.group(1)) != modal, c
            modal = float(f.group(1))


def test_slowed_layer_runs_at_the_effective_speeds():
    s = SliceSettings(min_layer_time=200.0, min_print_speed=12.0)
    layers, s = sample_print(s, n_layers=2)
    assert layers[1].speed_factor < 1
    text, parts = emit_fdm(layers, s)
    program = parts.program(text)
    feeds = {float(f) for c, layer in zip(program.commands, program.layer.tolist()) if layer == 1 and c.startswith("G1")
             for f in re.findall(r" F([0-9.]+)", c)}
    want = effective_speeds([p.speed for p in layers[1].paths], layers[1].speed_factor, s.min_print_speed)
    assert {round(v * 60, 1) for v in want} <= feeds
    assert min(feeds - {s.retract_speed * 60}) >= s.min_print_speed * 60


def test_bad_layers_are_named():
    s = SliceSettings()
    good = ExtrusionPath(PathKind.SKIN, np.array([[0.0, 0.0], [1.0, 0.0]]), 0.45, 40.0)
    with pytest.raises(PlanError, match="layer 3 path 1"):
        emit_fdm([LayerPaths.from_paths(3, 0.3, 0.3, [good, ExtrusionPath(PathKind.SKIN, np.array([[0.0, np.nan], [1, 1]]), 0.45, 40.0)])], s)
    with pytest.raises(PlanError, match="layer 0 path 0"):
        emit_fdm([LayerPaths.from_paths(0, 0.3, 0.3, [ExtrusionPath(PathKind.SKIN, np.zeros((1, 2)), 0.45, 40.0)])], s)
    with pytest.raises(PlanError, match="layer 0 path 0"):
        emit_fdm([LayerPaths.from_paths(0, 0.3, 0.3, [ExtrusionPath(PathKind.TRAVEL, np.zeros((2, 2)), 0.45, 40.0)])], s)
    with pytest.raises(PlanError, match="nothing to print"):
        emit_fdm([], s)
    with pytest.raises(PlanError, match="layer 0"):
        emit_fdm([LayerPaths.from_paths(0, float("nan"), 0.3, [good])], s)
