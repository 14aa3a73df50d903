"""Regions: walls nest inside the outline, skins where the part closes, skirt and brim around it."""

from __future__ import annotations

import numpy as np
import pyclipper
import pytest
from hypothesis import given, settings as hyp_settings, strategies as st
from shapely.geometry import LinearRing, LineString, MultiLineString, MultiPolygon, Point, Polygon

from ismctl.plan.fdm_settings import SliceSettings
from ismctl.plan.model import LayerStack, PlanError
from ismctl.plan.regions import (
    RESOLUTION,
    SCALE,
    _corner_too_close,
    _loop_boxes,
    build_regions,
    clipper_raw_offset,
    combine_loops,
    convex_hull,
    loop_areas,
    loops_meet,
    offset_loops,
    simplify_keep,
    skirt_and_brim,
)

W = 0.45


def square(x0, y0, x1, y1, cw=False):
    p = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)
    return p[::-1].copy() if cw else p


def circle(r, n=200, c=(0.0, 0.0), cw=False):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    p = np.c_[c[0] + r * np.cos(t), c[1] + r * np.sin(t)]
    return p[::-1].copy() if cw else p


def make_stack(layers, h=0.2):
    """A LayerStack from a list of layers, each a list of oriented loops."""
    points, loop_start, layer_start = [], [0], [0]
    for loops in layers:
        for loop in loops:
            points.append(loop)
            loop_start.append(loop_start[-1] + len(loop))
        layer_start.append(len(loop_start) - 1)
    z_top = h * np.arange(1, len(layers) + 1)
    return LayerStack(z_cut=z_top - h / 2, z_top=z_top, height=np.full(len(layers), h),
                      points=np.concatenate(points) if points else np.zeros((0, 2)),
                      loop_start=np.array(loop_start, np.int64), layer_start=np.array(layer_start, np.int64))


def shape(loops) -> Polygon | MultiPolygon:
    """Shapely area of oriented loops (outlines minus holes)."""
    outlines = [Polygon(p) for p in loops if LinearRing(p).is_ccw]
    holes = [Polygon(p) for p in loops if not LinearRing(p).is_ccw]
    area = Polygon()
    for o in outlines:
        area = area.union(o)
    for h in holes:
        area = area.difference(h)
    return area


L_SHAPE = np.array([[0, 0], [20, 0], [20, 8], [8, 8], [8, 20], [0, 20]], float)
SHAPES = {
    "square": [square(0, 0, 20, 20)],
    "square_with_hole": [square(0, 0, 20, 20), square(6, 6, 14, 14, cw=True)],
    "circle": [circle(10)],
    "l_shape": [L_SHAPE],
    "two_islands": [square(0, 0, 8, 8), circle(4, c=(20.0, 4.0))],
    "thin_strip": [square(0, 0, 20, 1.2)],  # room for one wall, not two
}


# regions simplifies input loops by up to RESOLUTION, so walls keep their distances to within that
TOL = RESOLUTION + 1e-3


def check_walls(loops, region, width):
    outline = shape(loops)
    previous = outline.buffer(-width / 2 + TOL)
    for k, wall in enumerate(region.walls):
        inner = previous
        for loop in wall:
            ring = LinearRing(loop)
            assert ring.is_valid, f"wall {k} loop is not a simple ring"
            assert inner.buffer(1e-4).covers(ring), f"wall {k} leaves the area inside wall {k - 1}"
        for loop in wall:  # the bead's outer edge stays inside the outline (or the previous bead)
            assert outline.buffer(TOL).covers(LinearRing(loop).buffer(width / 2 - 1e-3))
        orientation = [LinearRing(p).is_ccw for p in wall]
        assert any(orientation)
        # wall k + 1 is a full width inside wall k along edges; at sharp corners of tiny parts the
        # regrowth brings it to within half a width (beads overlap, never cross)
        previous = shape(wall).buffer(-width / 2 + 5e-3)


@pytest.mark.parametrize("name", SHAPES)
def test_walls_nest_inside_the_outline(name):
    loops = SHAPES[name]
    regions = build_regions(make_stack([loops] * 3), SliceSettings(perimeters=3))
    check_walls(loops, regions[1], W)
    assert regions[1].walls, "no walls at all"


@pytest.mark.parametrize("name", ["square", "square_with_hole", "circle", "l_shape"])
def test_walls_are_one_width_apart(name):
    region = build_regions(make_stack([SHAPES[name]] * 2), SliceSettings(perimeters=3))[1]
    for outer, inner in zip(region.walls, region.walls[1:]):
        gap = shape(outer).boundary.distance(shape(inner).boundary)
        assert gap == pytest.approx(W, abs=2e-3)


def test_walls_keep_orientation_and_count():
    loops = SHAPES["square_with_hole"]
    region = build_regions(make_stack([loops] * 2), SliceSettings(perimeters=2))[1]
    assert len(region.walls) == 2
    for wall in region.walls:
        assert sorted(LinearRing(p).is_ccw for p in wall) == [False, True]  # one outline CCW, one hole CW
    # wall 0 of the outline lies w/2 inside the 20 mm square
    outer = [p for p in region.walls[0] if LinearRing(p).is_ccw][0]
    assert np.allclose(np.sort(np.unique(np.round(outer, 6))), [W / 2, 20 - W / 2])


def test_thin_strip_gets_one_wall_and_no_fill():
    region = build_regions(make_stack([SHAPES["thin_strip"]] * 2), SliceSettings(perimeters=2))[1]
    assert len(region.walls) == 1 and not region.skin and not region.sparse


def test_fill_area_is_inside_innermost_wall_plus_overlap():
    s = SliceSettings(perimeters=2, infill_density=1.0)
    for name, loops in SHAPES.items():
        region = build_regions(make_stack([loops] * 2), s)[1]
        if name == "thin_strip":
            continue  # no fill area at all (test_thin_strip_gets_one_wall_and_no_fill)
        allowed = shape(loops).buffer(-(2 - s.infill_overlap) * W + 2e-3)
        assert allowed.covers(shape(region.skin)), name
        assert shape(region.skin).area > 0.9 * allowed.area, name


def test_closed_box_is_skin_at_bottom_and_top_sparse_between():
    s = SliceSettings()
    regions = build_regions(make_stack([[square(0, 0, 20, 20)]] * 50), s)  # 10 mm at 0.2 mm
    for r in regions:
        width = s.first_layer_line_width if r.index == 0 else s.line_width
        fill_area = shape(r.skin).area + shape(r.sparse).area
        assert fill_area == pytest.approx((20 - 2 * (2 - s.infill_overlap) * width) ** 2, rel=1e-6)
        if r.index < 4 or r.index >= 46:
            assert not r.sparse and shape(r.skin).area == pytest.approx(fill_area)
        else:
            assert not r.skin and shape(r.sparse).area == pytest.approx(fill_area)


def test_step_gets_top_skin_on_the_exposed_ledge_only():
    s = SliceSettings()
    wide, narrow = [square(0, 0, 30, 20)], [square(0, 0, 15, 20)]
    regions = build_regions(make_stack([wide] * 25 + [narrow] * 25), s)
    ledge = Polygon(square(15 - 2 * W, 0, 30, 20))  # the narrow part's fill area stops at its inner wall
    narrow_part = Polygon(square(0, 0, 15, 20)).buffer(-1.0)
    for r in regions[21:25]:  # the 4 layers under the ledge
        skin = shape(r.skin)
        assert skin.area > 0 and ledge.covers(skin)
        assert not skin.intersects(narrow_part.buffer(-1.0))
        assert shape(r.sparse).covers(narrow_part.buffer(-1.0))
    for r in regions[4:21]:
        assert not r.skin
    assert not regions[25].skin or shape(regions[25].skin).area < 1.0  # the narrow part continues: sparse


def test_density_one_is_all_skin_and_zero_has_no_sparse():
    stack = make_stack([[circle(10)]] * 20)
    for r in build_regions(stack, SliceSettings(infill_density=1.0)):
        assert r.skin and not r.sparse
    regions = build_regions(stack, SliceSettings(infill_density=0.0))
    assert all(not r.sparse for r in regions)
    assert regions[0].skin and regions[-1].skin and not regions[10].skin


def test_sphere_like_stack_has_skin_rings_and_sparse_cores():
    zs = (np.arange(250) + 0.5) * 0.2
    stack = make_stack([[circle(np.sqrt(max(25**2 - (z - 25) ** 2, 1.0)))] for z in zs])
    regions = build_regions(stack, SliceSettings())
    mid = regions[125]
    assert mid.sparse and shape(mid.sparse).area > 1000
    lower = regions[60]  # below the equator the layers above are wider: bottom skin ring on the outside
    assert shape(lower.skin).area > 0 and shape(lower.sparse).area > 0
    assert shape(lower.skin).union(shape(lower.sparse)).area == pytest.approx(
        shape(lower.skin).area + shape(lower.sparse).area, rel=1e-6)  # skin and sparse do not overlap


def test_negative_area_layer_is_an_error():
    with pytest.raises(PlanError, match="layer 1"):
        build_regions(make_stack([[square(0, 0, 5, 5)], [square(0, 0, 5, 5, cw=True)]]), SliceSettings())


def test_non_finite_point_names_the_layer():
    bad = square(0, 0, 5, 5)
    bad[2, 0] = np.nan
    with pytest.raises(PlanError, match="layer 2"):
        build_regions(make_stack([[square(0, 0, 5, 5)]] * 2 + [[bad]]), SliceSettings())


# ---------------------------------------------------------------- skirt and brim

def test_skirt_and_brim_surround_the_first_layer():
    s = SliceSettings(brim_width=2.0, skirt_loops=2, skirt_distance=3.0)
    loops = SHAPES["two_islands"]
    skirt, brim = skirt_and_brim(make_stack([loops] * 2), s)
    w = s.first_layer_line_width
    part = shape(loops)
    assert len(skirt) == 2 and len(brim) == 4 * 2  # 4 loops around each island
    for loop in brim:
        d = part.distance(Polygon(loop).exterior)
        assert any(abs(d - (i + 0.5) * w) < 0.01 for i in range(4))
    hull = part.convex_hull
    for i, loop in enumerate(skirt):
        ring = Polygon(loop)
        assert ring.covers(hull) and LinearRing(loop).is_ccw
        assert hull.distance(ring.exterior) == pytest.approx(4 * w + 3.0 + (i + 0.5) * w, abs=0.01)


def test_no_brim_and_no_skirt_when_asked():
    assert skirt_and_brim(make_stack([[circle(5)]]), SliceSettings(skirt_loops=0)) == ([], [])


# ---------------------------------------------------------------- kernels against slow references

def reference_simplify(points, tolerance):
    """Douglas-Peucker on one closed loop, recursive, same splitting rule as the kernel."""
    n = len(points)
    keep = np.zeros(n, bool)
    if n <= 3:
        return ~keep

    def dist(p, a, b):
        d = b - a
        t = 0.0 if not d @ d else min(1.0, max(0.0, (p - a) @ d / (d @ d)))
        return float(np.hypot(*(a + t * d - p)))

    def split(a, b):
        best, best_d = -1, tolerance
        for j in range(a + 1, b):
            d = dist(points[j % n], points[a % n], points[b % n])
            if d > best_d:
                best, best_d = j, d
        if best >= 0:
            keep[best % n] = True
            split(a, best)
            split(best, b)

    far = int(np.argmax(np.hypot(*(points - points[0]).T)))
    keep[0] = keep[far] = True
    split(0, far)
    split(far, n)
    return keep


@hyp_settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.5, 5.0), min_size=4, max_size=40), st.floats(0.001, 0.5))
def test_simplify_matches_reference(radii, tolerance):
    t = np.linspace(0, 2 * np.pi, len(radii), endpoint=False)
    loop = np.c_[np.array(radii) * np.cos(t), np.array(radii) * np.sin(t)]
    points = np.concatenate([loop, circle(3, 50)])
    start = np.array([0, len(loop), len(points)], np.int64)
    keep = simplify_keep(points, start, tolerance)
    assert np.array_equal(keep[:len(loop)], reference_simplify(loop, tolerance))
    assert np.array_equal(keep[len(loop):], reference_simplify(circle(3, 50), tolerance))


@hyp_settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-10, 10), st.floats(-10, 10)), min_size=3, max_size=60, unique=True))
def test_convex_hull_matches_shapely(pts):
    points = np.array(pts, float)
    reference = Polygon(points).convex_hull
    hull = convex_hull(points)
    if reference.area < 1e-6:
        return
    assert Polygon(hull).symmetric_difference(reference).area < 1e-9
    edges = np.roll(hull, -1, axis=0) - hull
    turns = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    assert (turns > 0).all()  # counter-clockwise, strictly convex: no collinear points


# ---------------------------------------------------------------- random shapes

def star(radii, center=(0.0, 0.0)):
    t = np.linspace(0, 2 * np.pi, len(radii), endpoint=False)
    r = np.array(radii)
    return np.c_[center[0] + r * np.cos(t), center[1] + r * np.sin(t)]


@hyp_settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(1.0, 12.0), min_size=5, max_size=30))
def test_random_star_walls_stay_inside(radii):
    loops = [star(radii)]
    region = build_regions(make_stack([loops] * 3), SliceSettings(perimeters=3))[1]
    check_walls(loops, region, W)
    fill = shape(region.skin).union(shape(region.sparse))
    allowed = shape(loops).buffer(-(3 - 0.15) * W + 2e-3)
    assert fill.difference(allowed.buffer(1e-3)).area < 1e-4


def test_spike_walls_keep_half_a_width_from_the_outline():
    """A narrow spike next to nearly collinear edges: the shrink cuts the spike, a sharp regrown corner would not fit."""
    loops = [star([1.0, 1.0, 1.8984375, 2.0, 2.8125] + [1.0] * 8)]
    region = build_regions(make_stack([loops] * 3), SliceSettings(perimeters=3))[1]
    check_walls(loops, region, W)


# ---------------------------------------------------------------- Numba offsets and booleans against Clipper

def packed(loops):
    points = np.round(np.concatenate(loops) * SCALE).astype(np.int64)
    return points, np.cumsum([0] + [len(p) for p in loops]).astype(np.int64)


def unpacked(points, start):
    return [points[a:b] / SCALE for a, b in zip(start[:-1], start[1:])]


def clipper_offset(loops, delta, join):
    o = pyclipper.PyclipperOffset(2.0, 0.001 * SCALE)
    o.AddPaths([np.round(p * SCALE).astype(np.int64).tolist() for p in loops], join, pyclipper.ET_CLOSEDPOLYGON)
    return [np.array(p) / SCALE for p in o.Execute(delta * SCALE)]


def clipper_boolean(a, b, op):
    c = pyclipper.Pyclipper()
    c.AddPaths([np.round(p * SCALE).astype(np.int64).tolist() for p in a], pyclipper.PT_SUBJECT, True)
    c.AddPaths([np.round(p * SCALE).astype(np.int64).tolist() for p in b], pyclipper.PT_CLIP, True)
    return [np.array(p) / SCALE for p in c.Execute(op, pyclipper.PFT_NONZERO, pyclipper.PFT_NONZERO)]


def same_area(got, expected, perimeter):
    """Equal up to Clipper's rounding: a few 10 nm units along the boundary."""
    assert shape(got).symmetric_difference(shape(expected)).area <= 5e-5 * perimeter + 1e-9
    assert sorted(LinearRing(p).is_ccw for p in got) == sorted(LinearRing(p).is_ccw for p in expected)


OFFSET_CASES = {**SHAPES, "ring": [circle(10), circle(9.8, cw=True)], "star": [star([3, 8, 2, 9, 4, 7, 2.5, 6])]}


@pytest.mark.parametrize("name", OFFSET_CASES)
@pytest.mark.parametrize("delta", [-0.45, -0.05, 0.225, 1.5])
@pytest.mark.parametrize("join", [pyclipper.JT_ROUND, pyclipper.JT_MITER])
def test_offset_kernel_matches_clipper(name, delta, join):
    loops = OFFSET_CASES[name]
    points, start = packed(loops)
    got, got_start, ok = offset_loops(points, start, delta * SCALE, join == pyclipper.JT_ROUND, 2.0, 0.001 * SCALE,
                                      np.zeros((0, 2), np.int64), np.zeros(1, np.int64), 0.0)
    if name in ("square", "circle", "square_with_hole") and delta != 1.5:
        assert ok  # simple cases stay in Numba
    if name == "ring" and delta == -0.45:
        assert ok and len(got) == 0  # both loops survive alone, the winding says nothing is left
    if ok:
        perimeter = shape(loops).length
        same_area(unpacked(got, got_start), clipper_offset(loops, delta, join), perimeter)


def test_offset_kernel_declines_what_it_cannot_do_exactly():
    narrow = [square(0, 0, 20, 0.6)]  # the shrunk edges cross: Clipper's job
    points, start = packed(narrow)
    none = (np.zeros((0, 2), np.int64), np.zeros(1, np.int64), 0.0)
    assert not offset_loops(points, start, -0.45 * SCALE, True, 2.0, 100.0, *none)[2]


@pytest.mark.parametrize("case", ["nested", "disjoint", "hole_inside", "equal", "crossing", "touching",
                                  "shared_outline", "shared_hole", "shared_outline_other_crossing", "shared_reversed"])
@pytest.mark.parametrize("difference", [False, True])
def test_boolean_kernel_matches_clipper(case, difference):
    a = [square(0, 0, 20, 20), square(5, 5, 8, 8, cw=True)]
    outline_from_elsewhere = np.roll(a[0], 2, axis=0)  # the same loop, listed from another corner
    b = {"nested": [circle(3, c=(14.0, 14.0))], "disjoint": [circle(3, c=(40.0, 0.0))],
         "hole_inside": [square(2, 2, 18, 18), circle(1, c=(13.0, 13.0), cw=True)], "equal": a,
         "crossing": [circle(5, c=(20.0, 10.0))], "touching": [square(20, 0, 30, 10)],
         "shared_outline": [outline_from_elsewhere, circle(2, c=(14.0, 14.0), cw=True)],
         "shared_hole": [square(1, 1, 19, 19), np.roll(a[1], 1, axis=0), square(30, 0, 35, 5)],
         "shared_outline_other_crossing": [outline_from_elsewhere, circle(2, c=(8.0, 8.0), cw=True)],
         "shared_reversed": [square(5, 5, 8, 8), circle(1, c=(14.0, 14.0))]}[case]
    pa, sa = packed(a)
    pb, sb = packed(b)
    got, got_start, ok = combine_loops(pa, sa, pb, sb, difference)
    assert ok == (case not in ("crossing", "touching", "shared_outline_other_crossing", "shared_reversed"))
    if ok:
        op = pyclipper.CT_DIFFERENCE if difference else pyclipper.CT_INTERSECTION
        same_area(unpacked(got, got_start), clipper_boolean(a, b, op), 1.0)


def reference_meet(loops, group, within):
    """Slow reference: every pair of edges through shapely, neighbours in a loop only when they fold back."""
    edges = [(li, i, LineString([loop[i], loop[(i + 1) % len(loop)]])) for li, loop in enumerate(loops)
             for i in range(len(loop))]
    for x, (la, ia, ea) in enumerate(edges):
        for lb, ib, eb in edges[x + 1:]:
            if group[la] == group[lb] and not within:
                continue
            n = len(loops[la])
            if la == lb and ((ia + 1) % n == ib or (ib + 1) % n == ia):
                if ea.intersection(eb).length > 0:
                    return True
                continue
            if ea.intersects(eb):
                return True
    return False


@hyp_settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-20, 20), st.integers(-20, 20)), min_size=3, max_size=8),
       st.lists(st.tuples(st.integers(-20, 20), st.integers(-20, 20)), min_size=3, max_size=8), st.booleans())
def test_meet_kernel_matches_reference(first, second, within):
    loops = [np.array(first, float), np.array(second, float)]
    loops = [p[np.r_[True, (np.diff(p, axis=0) != 0).any(axis=1)]] for p in loops]  # no zero-length edges
    loops = [p if not (p[0] == p[-1]).all() else p[:-1] for p in loops]
    if min(len(p) for p in loops) < 3:
        return
    points = np.concatenate(loops).astype(np.int64)
    start = np.cumsum([0] + [len(p) for p in loops]).astype(np.int64)
    group = np.array([0, 1], np.int64)
    assert loops_meet(points, start, group, within) == reference_meet(loops, group, within)


def test_loop_areas_match_shapely():
    loops = SHAPES["square_with_hole"] + [circle(3, c=(30.0, 0.0))]
    points, start = packed(loops)
    expected = [Polygon(p).area * (1 if LinearRing(p).is_ccw else -1) for p in loops]
    assert np.allclose(loop_areas(points, start) / SCALE**2, expected)


@pytest.mark.parametrize("seed", range(6))
def test_corner_guard_matches_a_brute_force_distance(seed):
    """Miter corners against every edge of two guard loops (shapely distance), boxes pruning or not."""
    rng = np.random.default_rng(seed)
    loops = [np.round(star(rng.uniform(3, 9, 24), c) * SCALE).astype(np.int64) for c in ((0.0, 0.0), (14.0, 3.0))]
    guard, start = np.concatenate(loops), np.array([0, 24, 48], np.int64)
    boundary = MultiLineString([np.vstack((loop, loop[:1])) for loop in loops])
    delta, limit, arc = 0.3 * SCALE, 0.25 * SCALE, 0.001 * SCALE
    checked = 0
    for _ in range(400):
        p = guard[rng.integers(len(guard))] + rng.uniform(-0.6, 0.6, 2) * SCALE  # near the guard: close and far
        a = rng.uniform(0, 2 * np.pi)
        turn = rng.uniform(0.3, 1.5)  # convex turn well inside the miter limit (2)
        nk, nj = np.array([np.cos(a), np.sin(a)]), np.array([np.cos(a + turn), np.sin(a + turn)])
        tip = p + (nk + nj) * delta / (1 + nk @ nj)
        cap = LineString([p + nk * delta, tip, p + nj * delta])
        distance = cap.distance(boundary)
        if abs(distance - (limit - arc)) < 1.0:
            continue
        got = _corner_too_close(p[0], p[1], nk[0], nk[1], nj[0], nj[1], delta, 0.5, arc, guard, start,
                                _loop_boxes(guard, start), limit)
        assert got == (distance < limit - arc)
        checked += got
    assert checked > 10  # some corners did come close


@hyp_settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1.0, 12.0), min_size=5, max_size=40), st.floats(-1.0, 1.0).filter(lambda d: abs(d) > 0.01),
       st.booleans(), st.booleans())
def test_offset_kernel_matches_clipper_on_random_stars(radii, delta, round_joins, with_hole):
    loops = [star(radii)] + ([circle(0.5, 30, cw=True)] if with_hole and min(radii) > 2 else [])
    points, start = packed(loops)
    got, got_start, ok = offset_loops(points, start, delta * SCALE, round_joins, 2.0, 0.001 * SCALE,
                                      np.zeros((0, 2), np.int64), np.zeros(1, np.int64), 0.0)
    if ok:
        join = pyclipper.JT_ROUND if round_joins else pyclipper.JT_MITER
        same_area(unpacked(got, got_start), clipper_offset(loops, delta, join), shape(loops).length)


def raw_offset_union(loops, delta, round_joins):
    """The offset area as regions builds it when the Numba offset declines: raw loops, then a positive union."""
    points, start = packed(loops)
    raw, raw_start, ok = clipper_raw_offset(points, start, delta * SCALE, round_joins, 2.0, 0.001 * SCALE)
    assert ok
    c = pyclipper.Pyclipper()
    c.AddPaths([raw[a:b].tolist() for a, b in zip(raw_start[:-1], raw_start[1:])], pyclipper.PT_SUBJECT, True)
    return [np.array(p) / SCALE for p in c.Execute(pyclipper.CT_UNION, pyclipper.PFT_POSITIVE, pyclipper.PFT_POSITIVE)]


def jagged_circle(r=10.0, n=400, amplitude=0.008, seed=3):
    """A circle whose radius wanders: small turns both ways at every vertex, like a height-map part's section."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    radius = r + np.random.default_rng(seed).uniform(-amplitude, amplitude, n)
    return np.c_[radius * np.cos(t), radius * np.sin(t)]


@pytest.mark.parametrize("name", [*OFFSET_CASES, "narrow"])
@pytest.mark.parametrize("delta", [-0.45, -0.05, 0.225, 1.5])
@pytest.mark.parametrize("join", [pyclipper.JT_ROUND, pyclipper.JT_MITER])
def test_raw_offset_union_matches_clipper(name, delta, join):
    loops = {**OFFSET_CASES, "narrow": [square(0, 0, 20, 0.6)]}[name]
    got = raw_offset_union(loops, delta, join == pyclipper.JT_ROUND)
    same_area(got, clipper_offset(loops, delta, join), shape(loops).length)


JAGGED = {"jagged": [jagged_circle()], "jagged_ring": [jagged_circle(), jagged_circle(6.0, 240, seed=4)[::-1].copy()]}


@pytest.mark.parametrize("name", JAGGED)
@pytest.mark.parametrize("delta", [-0.45, -0.05, 0.225, 1.5])
def test_almost_straight_corners_get_one_point_within_the_arc_tolerance(name, delta):
    """Clipper 6 puts two points at every small convex turn; one miter point stays within 0.001 mm of the arc."""
    loops = JAGGED[name]
    got = raw_offset_union(loops, delta, True)
    fewer = 0.8 if abs(delta) <= 0.45 else 1.0  # the turn a miter point may take shrinks as the offset grows
    assert sum(map(len, got)) < fewer * sum(map(len, clipper_offset(loops, delta, pyclipper.JT_ROUND)))
    exact = shape(loops).buffer(delta, quad_segs=256)
    assert max(exact.boundary.distance(Point(v)) for v in np.concatenate(got)) <= 0.001 + 2e-5
    assert shape(got).symmetric_difference(exact).area <= 0.001 * exact.length
    assert sorted(LinearRing(p).is_ccw for p in got) == sorted(LinearRing(p).is_ccw for p in loops)


@hyp_settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1.0, 12.0), min_size=5, max_size=40), st.floats(-1.0, 1.0).filter(lambda d: abs(d) > 0.01),
       st.booleans(), st.booleans())
def test_raw_offset_union_matches_clipper_on_random_stars(radii, delta, round_joins, with_hole):
    loops = [star(radii)] + ([circle(0.5, 30, cw=True)] if with_hole and min(radii) > 2 else [])
    join = pyclipper.JT_ROUND if round_joins else pyclipper.JT_MITER
    same_area(raw_offset_union(loops, delta, round_joins), clipper_offset(loops, delta, join), shape(loops).length)


def test_a_ring_thinner_than_a_bead_gets_one_wall_inside_it():
    # a sphere shell cut by a bore: 0.3 mm of material, no room for a full-width wall
    loops = [circle(5, 300), circle(4.7, 300, cw=True)]
    outline = shape(loops)
    for region in build_regions(make_stack([loops] * 3), SliceSettings()):
        assert len(region.walls) == 1 and len(region.walls[0]) == 1
        assert not region.skin and not region.sparse
        ring = LinearRing(region.walls[0][0])
        assert ring.is_ccw and ring.is_valid
        assert outline.buffer(TOL).covers(ring)  # the moves stay inside the outline
        assert ring.distance(outline.exterior) >= 0.25 * W - TOL


def test_a_thin_island_beside_a_thick_one_keeps_its_wall():
    loops = [square(0, 0, 10, 10), square(12, 0, 12.3, 10)]
    region = build_regions(make_stack([loops] * 2), SliceSettings(perimeters=2))[1]
    fin = Polygon(loops[1]).buffer(TOL)
    assert sum(fin.covers(LinearRing(p)) for p in region.walls[0]) == 1
    assert not any(fin.intersects(LinearRing(p)) for p in region.walls[1])


def test_slivers_below_min_feature_still_vanish():
    loops = [square(0, 0, 10, 0.15)]  # thinner than min_feature: not printable
    assert build_regions(make_stack([loops] * 2), SliceSettings(min_feature=0.2))[1].walls == []
