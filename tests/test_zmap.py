"""Z-map material removal: known shapes against their analytic volumes, gouges and rapid
collisions found where they are, the Numba kernels against their numpy twins."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh
from PIL import Image

from ismctl.grbl_gcode import parse
from ismctl.plan import zmap_kernels, zmap_reference
from ismctl.plan.model import Mesh, PlanError
from ismctl.plan.zmap import Grid, Stock, ToolShape, clip_to_box, simulate, target_surface, verify
from ismctl.plan.zmap_image import GOUGE_RGB, render

STOCK = Stock((0.0, 0.0, -5.0), (30.0, 20.0, 0.0))
POCKET = (5.0, 5.0, 25.0, 15.0)  # x0, y0, x1, y1
SAFE = (0.0, 0.0, 5.0)


def pocket_gcode(r: float, depth: float, step_down: float, stepover: float) -> str:
    """Zig-zag clearing of POCKET (tool centre kept r inside its walls), a finishing lap
    along the walls, at each step-down: removes the pocket with corner radii r."""
    x0, y0, x1, y1 = POCKET[0] + r, POCKET[1] + r, POCKET[2] - r, POCKET[3] - r
    lines = ["G21 G90 G94", "M3 S10000", "G0 Z5", f"G0 X{x0:g} Y{y0:g}"]
    z = 0.0
    while z > -depth + 1e-9:
        z = max(z - step_down, -depth)
        lines.append(f"G1 Z{z:g} F200")
        y, forward = y0, True
        while True:
            lines.append(f"G1 X{x1 if forward else x0:g} Y{y:g} F1200")
            if y >= y1 - 1e-9:
                break
            y = min(y + stepover, y1)
            lines.append(f"G1 Y{y:g}")
            forward = not forward
        lines += [f"G1 X{x0:g} Y{y1:g}", f"G1 X{x0:g} Y{y0:g}", f"G1 X{x1:g} Y{y0:g}", f"G1 X{x1:g} Y{y1:g}",
                  f"G1 X{x0:g} Y{y1:g}", "G0 Z5", f"G0 X{x0:g} Y{y0:g}"]
    return "\n".join(lines + ["M5", "M30"]) + "\n"


def pocketed_block(depth: float) -> Mesh:
    """STOCK with a sharp-cornered POCKET of ``depth``: a floor slab and four walls (the Z-map
    target is the highest surface over each cell, so overlapping boxes are fine)."""
    x0, y0, x1, y1 = POCKET
    sx, sy = STOCK.hi[0], STOCK.hi[1]
    boxes = [((0, 0, -5), (sx, sy, -depth)), ((0, 0, -depth), (sx, y0, 0)), ((0, y1, -depth), (sx, sy, 0)),
             ((0, y0, -depth), (x0, y1, 0)), ((x1, y0, -depth), (sx, y1, 0))]
    parts = [trimesh.creation.box(bounds=np.array(b, dtype=float)) for b in boxes]
    joined = trimesh.util.concatenate(parts)
    return Mesh(joined.vertices, joined.faces, "pocketed")


def removed(height: np.ndarray, cell: float) -> float:
    return float((STOCK.hi[2] - height).sum() * cell * cell)


def test_flat_pocket_removes_its_analytic_volume():
    r, depth = 3.0, 2.0
    program = parse(pocket_gcode(r, depth, step_down=1.0, stepover=2.5), start=SAFE)
    height, _cutter, _path, _cut = simulate(program, STOCK, ToolShape("flat", 2 * r), Grid.covering(STOCK, 0.1))
    w, h = POCKET[2] - POCKET[0], POCKET[3] - POCKET[1]
    expected = (w * h - (4 - math.pi) * r * r) * depth
    assert removed(height, 0.1) == pytest.approx(expected, rel=0.01)
    assert height.min() == pytest.approx(-depth)


def test_ball_groove_cross_section_is_a_circular_segment():
    r, depth = 3.0, 1.5
    program = parse("G0 X2 Y10 Z5\nG1 Z-1.5 F300\nG1 X28\nG0 Z5\n", start=SAFE)
    grid = Grid.covering(STOCK, 0.05)
    height, *_ = simulate(program, STOCK, ToolShape("ball", 2 * r), grid)
    column = height[:, grid.nx // 2]
    area = float((STOCK.hi[2] - column).sum() * grid.cell)
    a = r - depth
    expected = r * r * math.acos(a / r) - a * math.sqrt(r * r - a * a)
    assert area == pytest.approx(expected, rel=0.01)
    y = grid.y0 + (np.arange(grid.ny) + 0.5) * grid.cell
    inside = np.abs(y - 10) < math.sqrt(r * r - a * a) - 0.1
    profile = -depth + r - np.sqrt(r * r - (y[inside] - 10) ** 2)   # the ball's own circle
    assert column[inside] == pytest.approx(profile, abs=1e-9)


def test_flat_ramp_floor_follows_the_leading_edge():
    # ramp from (5, 10, 0) to (25, 10, -2): a cell at x is lowest when the tool's far edge is
    # over it, i.e. when the axis is at x + r (clipped to the ramp's end)
    r = 2.0
    program = parse("G0 X5 Y10 Z0\nG1 X25 Z-2 F300\n", start=SAFE)
    grid = Grid.covering(STOCK, 0.1)
    height, *_ = simulate(program, STOCK, ToolShape("flat", 2 * r), grid)
    x = grid.x0 + (np.arange(grid.nx) + 0.5) * grid.cell
    j = int(10 / grid.cell)
    row = height[j, :]
    reach = math.sqrt(r * r - (grid.centre(j, 0)[1] - 10) ** 2)  # the disc's half chord on this row
    along = (x >= 3.5) & (x <= 26.5)
    expected = -np.clip(np.minimum(x[along] + reach, 25) - 5, 0, 20) / 10
    assert row[along] == pytest.approx(np.minimum(expected, 0), abs=1e-9)


def test_helix_bore_with_a_ball_mill():
    r_tool, r_path = 1.5, 4.0
    text = ("G0 X19 Y10 Z1\nG1 Z0 F300\n"
            + "".join(f"G2 X19 Y10 Z{-k - 1:g} I-{r_path:g} J0\n" for k in range(3)) + "G2 X19 Y10 I-4 J0\nG0 Z5\n")
    grid = Grid.covering(STOCK, 0.1)
    height, *_ = simulate(parse(text, start=SAFE), STOCK, ToolShape("ball", 2 * r_tool), grid)
    x = grid.x0 + (np.arange(grid.nx) + 0.5) * grid.cell
    y = grid.y0 + (np.arange(grid.ny) + 0.5) * grid.cell
    dist = np.hypot(x[None, :] - 15, y[:, None] - 10)
    ring = np.abs(dist - r_path) < 0.05
    assert height[ring].max() == pytest.approx(-3, abs=0.01)      # the last full lap is flat at Z-3
    assert (height[dist > r_path + r_tool + 0.1] == 0).all()     # nothing outside the bore
    assert (height[dist < r_path - r_tool - 0.1] == 0).all()     # the core stays


def test_a_move_below_the_part_is_a_gouge_at_its_place():
    mesh = pocketed_block(2.0)
    text = pocket_gcode(3.0, 2.0, 1.0, 2.5).replace("M5\n", "G0 X20 Y10\nG1 Z-2.5 F100\nG0 Z5\nM5\n")
    program = parse(text, start=SAFE)
    report = verify(program, mesh, STOCK, ToolShape("flat", 6.0), cell=0.1, tolerance=0.05)
    assert not report.clean and not report.collisions
    assert report.gouge_max_mm == pytest.approx(0.5)
    assert report.gouge_area_mm2 == pytest.approx(math.pi * 9, rel=0.02)
    [plunge] = report.gouges
    assert plunge.deepest_at == pytest.approx((20, 10), abs=0.05)   # the middle of the flat-bottomed plunge
    (x0, y0), (x1, y1) = plunge.box
    assert (x0, y0, x1, y1) == pytest.approx((17, 7, 23, 13), abs=0.1)
    assert plunge.command == "G1 Z-2.5 F100" and plunge.area_mm2 == pytest.approx(report.gouge_area_mm2)
    assert program.commands[plunge.op] == "G1 Z-2.5 F100" and plunge.line == text.splitlines().index("G1 Z-2.5 F100") + 1
    # the sharp pocket corners the round tool cannot reach are material left, not gouges
    assert report.left_max_mm == pytest.approx(2.0)
    assert report.left_mm3 == pytest.approx(4 * (4 - math.pi) * 9 / 4 * 2.0, rel=0.1)


def test_clean_pocket_and_rapid_through_material():
    mesh = pocketed_block(2.0)
    text = pocket_gcode(3.0, 2.0, 1.0, 2.5)
    clean = verify(parse(text, start=SAFE), mesh, STOCK, ToolShape("flat", 6.0))
    assert clean.clean and clean.gouges == [] and clean.part_above_stock_mm == 0
    crash = text.replace("M5\n", "G0 X15 Y10 Z-1\nG0 Z-3\nG0 Z5\nM5\n")  # a rapid plunge through the floor
    report = verify(parse(crash, start=SAFE), mesh, STOCK, ToolShape("flat", 6.0))
    assert [c.command for c in report.collisions] == ["G0 Z-3"]  # Z-1 is above the cleared floor: no cut
    assert report.collisions[0].depth == pytest.approx(1.0)
    assert report.gouge_max_mm == pytest.approx(1.0) and [g.command for g in report.gouges] == ["G0 Z-3"]


def test_rapid_into_stock_is_reported_with_its_depth():
    report = verify(parse("G0 X10 Y10 Z5\nG0 Z-1\nG0 Z5\n", start=SAFE), pocketed_block(2.0), STOCK,
                    ToolShape("flat", 2.0))
    assert len(report.collisions) == 1 and report.collisions[0].line == 2
    assert report.collisions[0].depth == pytest.approx(1.0)


def test_gouges_are_told_apart_by_line_and_a_short_stock_is_no_gouge():
    mesh = pocketed_block(2.0)
    text = pocket_gcode(3.0, 2.0, 1.0, 2.5).replace(
        "M5\n", "G0 X10 Y10\nG1 Z-2.2 F100\nG0 Z5\nG0 X20 Y10\nG1 Z-2.6 F100\nG0 Z5\nM5\n")
    report = verify(parse(text, start=SAFE), mesh, STOCK, ToolShape("flat", 2.0))
    assert [(g.command, round(g.max_depth_mm, 3)) for g in report.gouges] == [("G1 Z-2.6 F100", 0.6), ("G1 Z-2.2 F100", 0.2)]
    low_stock = Stock(STOCK.lo, (STOCK.hi[0], STOCK.hi[1], -1.0))  # the part's walls rise 1 mm above it
    short = verify(parse("G0 X10 Y10 Z5\n", start=SAFE), mesh, low_stock, ToolShape("flat", 2.0))
    assert short.clean and short.part_above_stock_mm == pytest.approx(1.0)


def _random_segments(rng, n):
    starts = rng.uniform((-2, -2, -4), (12, 12, 1), size=(n, 3))
    ends = starts + rng.normal(0, 3, size=(n, 3))
    kind = rng.integers(0, 4, n)
    ends[kind == 0, :2] = starts[kind == 0, :2]  # plunges
    ends[kind == 1, 2] = starts[kind == 1, 2]  # level moves
    ends[kind == 2] = starts[kind == 2]  # points
    return np.ascontiguousarray(starts), np.ascontiguousarray(ends)


@pytest.mark.parametrize("ball", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sweep_kernel_matches_numpy_reference(ball, seed):
    rng = np.random.default_rng(seed)
    starts, ends = _random_segments(rng, 60)
    ops = np.arange(60, dtype=np.int32)
    radius = float(rng.uniform(0.3, 2.5))
    results = []
    for sweep in (zmap_kernels.sweep, zmap_reference.sweep):
        height = np.zeros((83, 97))
        cutter = zmap_kernels.empty_cutter(height.shape)
        max_cut = np.zeros(60)
        sweep(height, cutter, 0.0, 0.5, 0.11, starts, ends, ops, radius, ball, -3.5, max_cut)
        results.append((height, cutter, max_cut))
    (h1, c1, m1), (h2, c2, m2) = results
    assert (h1 < 0).any() and (h1 >= -3.5).all()
    np.testing.assert_allclose(h1, h2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(m1, m2, rtol=0, atol=1e-12)
    assert (c1 == c2).mean() > 0.999


@pytest.mark.parametrize("ball", [False, True])
def test_cells_exactly_on_the_tool_rim_are_cut_as_the_reference_cuts_them(ball):
    # cell centres at 0.05 + 0.1 k and moves through such centres: 3-4-5 offsets put many
    # centres at exactly r = 0.5 from the path, where the kernel's per-row footprint ends
    centres = [(1.05, 1.05), (3.05, 1.05), (3.05, 3.05), (1.05, 2.65), (2.25, 1.65), (2.25, 1.65)]
    starts = np.array([(x, y, -1.0) for x, y in centres[:-1]])
    ends = np.array([(x, y, -1.0) for x, y in centres[1:]])  # axis-parallel, diagonal, a point
    ops = np.arange(len(starts), dtype=np.int32)
    results = []
    for sweep in (zmap_kernels.sweep, zmap_reference.sweep):
        height, cutter, max_cut = np.zeros((45, 45)), zmap_kernels.empty_cutter((45, 45)), np.zeros(len(starts))
        sweep(height, cutter, 0.0, 0.0, 0.1, starts, ends, ops, 0.5, ball, -5.0, max_cut)
        results.append((height, cutter, max_cut))
    (h1, c1, m1), (h2, c2, m2) = results
    np.testing.assert_array_equal(h1, h2)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(m1, m2)
    x = (np.arange(45) + 0.5) * 0.1
    rim = np.isclose(np.hypot(x[None, :] - 1.05, x[:, None] - 1.05), 0.5, atol=1e-12) & (x[None, :] < 1.0)
    # the rim behind the first move's start: rounding decides whether a centre at exactly r is
    # under the tool; some are, and the kernel agrees with the reference on all
    assert rim.sum() >= 2 and (h1[rim] == (-0.5 if ball else -1.0)).any()


@pytest.mark.parametrize("ball", [False, True])
def test_a_level_move_from_where_the_last_ended_skips_only_cells_it_cannot_lower(ball):
    # a connected path: level moves turning every way (also back on themselves), ramps, plunges,
    # repeated points; the skip of the cells behind A must change nothing against sweeping every
    # segment on its own (no previous move: nothing skipped)
    rng = np.random.default_rng(11)
    points = [(5.0, 5.0, -0.5)]
    for _ in range(120):
        x, y, z = points[-1]
        kind = rng.integers(0, 5)
        step = rng.normal(0, 0.6, 2)
        if kind == 0:
            z = max(z - rng.uniform(0, 0.4), -2.5)  # plunge
        elif kind == 1:
            x, y, z = x + step[0], y + step[1], max(z - rng.uniform(0, 0.3), -2.5)  # ramp
        elif kind < 4:
            x, y = x + step[0], y + step[1]  # level
        points.append((float(np.clip(x, 1, 9)), float(np.clip(y, 1, 9)), z))
    path = np.array(points)
    starts, ends = np.ascontiguousarray(path[:-1]), np.ascontiguousarray(path[1:])
    n = len(starts)
    ops = np.arange(n, dtype=np.int32)
    swept = []
    for sweep in (zmap_kernels.sweep, zmap_reference.sweep):
        height, cutter, max_cut = np.zeros((100, 100)), zmap_kernels.empty_cutter((100, 100)), np.zeros(n)
        sweep(height, cutter, 0.0, 0.0, 0.1, starts, ends, ops, 0.8, ball, -3.0, max_cut)
        swept.append((height, cutter, max_cut))
    alone = np.zeros((100, 100)), zmap_kernels.empty_cutter((100, 100)), np.zeros(n)
    for k in range(n):
        zmap_reference.sweep(alone[0], alone[1], 0.0, 0.0, 0.1, starts[k:k + 1], ends[k:k + 1], ops[k:k + 1],
                             0.8, ball, -3.0, alone[2][k:k + 1])
    skips = sum((ends[k - 1] == starts[k]).all() and starts[k, 2] == ends[k, 2] for k in range(1, n))
    assert skips > 40 and (alone[0] < -2).any()
    for height, cutter, max_cut in swept:
        np.testing.assert_allclose(height, alone[0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(max_cut, alone[2], rtol=0, atol=1e-12)
        assert (cutter == alone[1]).mean() > 0.999


def test_row_span_is_the_tool_footprint_on_the_row():
    rng = np.random.default_rng(7)
    for _ in range(300):
        (ax, ay), (bx, by) = rng.uniform(-3, 3, (2, 2))
        if rng.random() < 0.2:
            bx, by = ax, by if rng.random() < 0.5 else ay  # a plunge or an axis-parallel move
        r = float(rng.uniform(0.2, 2.0))
        a = math.hypot(bx - ax, by - ay)
        vx, vy = ((bx - ax) / a, (by - ay) / a) if a > 0 else (0.0, 0.0)
        cy = float(rng.uniform(min(ay, by) - r - 0.5, max(ay, by) + r + 0.5))
        lo, hi = zmap_kernels.row_span(cy, ax, ay, bx, by, vx, vy, r, r * r)
        x = np.linspace(-6, 6, 4001)
        t = np.clip(((x - ax) * (bx - ax) + (cy - ay) * (by - ay)) / max(a * a, 1e-300), 0, 1)
        dist = np.hypot(x - ax - t * (bx - ax), cy - ay - t * (by - ay))
        inside = x[dist <= r]
        if len(inside):
            assert lo <= inside.min() + 1e-12 and hi >= inside.max() - 1e-12
            assert inside.min() - lo < 0.01 and hi - inside.max() < 0.01  # samples are 0.003 apart
        else:
            assert lo > hi or hi - lo < 0.01


def test_top_surface_kernel_matches_reference_and_the_shape():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=4.0)
    sphere.apply_translation((5, 5, 0))
    triangles = np.ascontiguousarray(sphere.vertices[sphere.faces])
    maps = []
    for top in (zmap_kernels.top_surface, zmap_reference.top_surface):
        target = np.full((50, 50), -np.inf)
        top(target, 0.0, 0.0, 0.2, triangles)
        maps.append(target)
    np.testing.assert_array_equal(maps[0], maps[1])
    grid = Grid(0.0, 0.0, 0.2, 50, 50)
    mesh = Mesh(sphere.vertices, sphere.faces)
    target = target_surface(mesh, grid, -10.0)
    x = (np.arange(50) + 0.5) * 0.2
    d2 = (x[None, :] - 5) ** 2 + (x[:, None] - 5) ** 2
    inside = d2 < 3.8 ** 2
    assert target[inside] == pytest.approx(np.sqrt(16 - d2[inside]), abs=0.1)   # faceted sphere
    assert (target[d2 > 4.01 ** 2] == -10).all()


def test_png_shows_gouges_in_red(tmp_path):
    text = pocket_gcode(3.0, 2.0, 1.0, 2.5).replace("M5\n", "G0 X20 Y10\nG1 Z-2.5 F100\nG0 Z5\nM5\n")
    report = verify(parse(text, start=SAFE), pocketed_block(2.0), STOCK, ToolShape("flat", 6.0), cell=0.1)
    out = render(report, tmp_path / "zmap.png", size=300)
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[1] == 300
    red = np.all(image == GOUGE_RGB, axis=2)
    ys, xs = np.nonzero(red)
    assert len(xs) > 50
    # the gouge is at X20 Y10 of a 30 x 20 stock drawn 300 px wide: x px ~ 200, centred on Y
    assert abs(xs.mean() - 200) < 10
    band = (image.shape[0] - 300) // 2
    top = band + (300 - 200) // 2
    assert abs(ys.mean() - (top + 100)) < 10


def test_bad_inputs_are_plan_errors():
    with pytest.raises(PlanError, match="flat and ball"):
        ToolShape("drill", 3.0)
    with pytest.raises(PlanError, match="positive length"):
        Stock((0, 0, 0), (10, 0, 5))
    with pytest.raises(PlanError, match="coarser grid"):
        Grid.covering(Stock((0, 0, 0), (1e4, 1e4, 1)), 0.1)


@pytest.mark.parametrize("far", [1e2, 1e8, 1e12])
def test_a_move_from_far_away_is_swept_as_exactly_as_a_short_one(far):
    """A sloped cut reaching ``far`` mm either side of the stock: only its part over the grid is swept, so
    a cell's distance to it keeps its micrometres (unclipped, 1e12 mm read 5.0 mm deep instead of 2.533)."""
    text = f"G0 X{-far:.3f} Y10 Z{far * 1e-3 - 2.5:.6f}\nG1 X{far:.3f} Z{-far * 1e-3 - 2.5:.6f} F100\n"
    report = verify(parse(text, start=SAFE), pocketed_block(2.0), STOCK, ToolShape("flat", 6.0), cell=0.1,
                    tolerance=0.05)
    # at the stock's far edge (x = 30) the tool's low side (x = 33) is 2.5 + 0.033 mm down; the part's top is 0
    assert report.gouge_max_mm == pytest.approx(2.5 + 33e-3, abs=1e-4)


def test_clip_to_box_keeps_inner_segments_and_cuts_crossing_ones():
    start = np.array([[1.0, 1.0, 0.0], [-10.0, 5.0, 4.0], [20.0, 20.0, 0.0], [5.0, -3.0, 1.0]])
    end = np.array([[2.0, 3.0, 1.0], [20.0, 5.0, -2.0], [30.0, 20.0, 0.0], [5.0, -3.0, 1.0]])
    s, e = clip_to_box(start, end, (0.0, 0.0), (10.0, 10.0))
    assert np.array_equal(s[0], start[0]) and np.array_equal(e[0], end[0])  # inside: untouched
    assert s[1] == pytest.approx([0.0, 5.0, 2.0]) and e[1] == pytest.approx([10.0, 5.0, 0.0])  # z follows the line
    assert np.array_equal(s[2:], start[2:]) and np.array_equal(e[2:], end[2:])  # missing the box; a point outside
