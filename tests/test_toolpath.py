"""Print order: nearest-neighbour kernel vs a slow walk, islands, seams, speeds, cooling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ismctl.plan.fdm_settings import SliceSettings
from ismctl.plan.model import LayerRegions, PathKind, PlanError
from ismctl.plan.toolpath import (_slow_down, effective_speeds, greedy_order, island_of_points, order_layer,
                                  order_layers, seam_vertex)


def square(cx, cy, r, hole=False):
    p = np.array([[cx - r, cy - r], [cx + r, cy - r], [cx + r, cy + r], [cx - r, cy + r]], float)
    return p[::-1].copy() if hole else p


def circle(cx, cy, r, n=64, start=0.0):
    a = start + np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack((cx + r * np.cos(a), cy + r * np.sin(a)))


def hatch(cx, cy, r, step):
    return [np.array([[x, cy - r], [x, cy + r]]) for x in np.arange(cx - r, cx + r + 1e-9, step)]


def layer(index, walls=(), fill=(), sparse=(), z=None, h=0.2):
    return LayerRegions(index, z if z is not None else 0.3 + 0.2 * index, h, [list(w) for w in walls], [], [],
                        list(fill), list(sparse))


# ---------------------------------------------------------------------------
# slow references


def slow_greedy(cand, exits, owner, n_items, start):
    visited = [False] * n_items
    pos = np.asarray(start, float)
    order, chosen = [], []
    for _ in range(n_items):
        best, best_d = -1, math.inf
        for c in range(len(cand)):
            if visited[owner[c]]:
                continue
            d = (cand[c, 0] - pos[0]) ** 2 + (cand[c, 1] - pos[1]) ** 2
            if d < best_d:
                best, best_d = c, d
        visited[owner[best]] = True
        order.append(owner[best])
        chosen.append(best)
        pos = exits[best]
    return order, chosen


def slow_island(q, loops):
    def inside(pt, lp):
        x, y = pt
        res = False
        for i in range(len(lp)):
            (xa, ya), (xb, yb) = lp[i], lp[(i + 1) % len(lp)]
            if (ya > y) != (yb > y) and x < xa + (y - ya) * (xb - xa) / (yb - ya):
                res = not res
        return res

    def area(lp):
        x, y = lp[:, 0], lp[:, 1]
        return abs(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) / 2

    hits = [i for i, lp in enumerate(loops) if inside(q, lp)]
    if hits:
        return min(hits, key=lambda i: (area(loops[i]), i))
    d = [min(np.hypot(*(lp - q).T)) for lp in loops]
    return int(np.argmin(d))


def slow_seam(loop, aligned, prev_seams, reach):
    if aligned and len(prev_seams):
        below = prev_seams[np.argmin(((prev_seams - loop.mean(axis=0)) ** 2).sum(axis=1))]
        k = int(np.argmin(((loop - below) ** 2).sum(axis=1)))
    else:
        k = int(np.lexsort((loop[:, 0], -np.round(loop[:, 1], 6)))[0])
    best, best_turn = k, math.inf
    for i in range(len(loop)):
        if ((loop[i] - loop[k]) ** 2).sum() > reach * reach:
            continue
        into, out = loop[i] - loop[i - 1], loop[(i + 1) % len(loop)] - loop[i]
        norm = math.hypot(*into) * math.hypot(*out)
        turn = (into[0] * out[1] - into[1] * out[0]) / norm if norm > 0 else 0.0
        if turn < best_turn:
            best, best_turn = i, turn
    return best if best_turn < -math.sin(math.radians(30)) else k


def slow_order_layer(items, outlines, outline_item, mode, prev_seams, reach, nozzle):
    """items: (points, closed, slot, in_island); the walk of order_layer, one list at a time."""
    if len(outlines) > 1:
        island = [slow_island(p[0], outlines) if inside else -1 for p, _, _, inside in items]
        for j, i in enumerate(outline_item):
            if i >= 0:
                island[i] = j
    else:
        island = [0 if inside and outlines else -1 for _, _, _, inside in items]
    out, pos = [], np.asarray(nozzle, float)

    def walk(group):
        nonlocal pos
        if items[group[0]][1]:
            loops = [items[i][0] for i in group]
            if mode == 2:
                cand = np.concatenate(loops)
                owner = np.repeat(np.arange(len(loops)), [len(lp) for lp in loops])
                offset = np.concatenate(([0], np.cumsum([len(lp) for lp in loops])))
            else:
                seam = [slow_seam(lp, mode == 1, prev_seams, reach) for lp in loops]
                cand, owner = np.array([lp[k] for lp, k in zip(loops, seam)]), np.arange(len(loops))
            order, chosen = slow_greedy(cand, cand, owner, len(loops), pos)
            for t, c in zip(order, chosen):
                k = c - offset[t] if mode == 2 else seam[t]
                out.append((group[t], np.concatenate((loops[t][k:], loops[t][:k + 1]))))
        else:
            lines = [items[i][0] for i in group]
            cand = np.array([p for ln in lines for p in (ln[0], ln[-1])])
            exits = np.array([p for ln in lines for p in (ln[-1], ln[0])])
            order, chosen = slow_greedy(cand, exits, np.repeat(np.arange(len(lines)), 2), len(lines), pos)
            for t, c in zip(order, chosen):
                out.append((group[t], lines[t][::-1] if c % 2 else lines[t]))
        pos = out[-1][1][-1]

    def island_groups(isl):
        for slot in sorted({items[i][2] for i in range(len(items)) if island[i] == isl}):
            walk([i for i in range(len(items)) if island[i] == isl and items[i][2] == slot])

    island_groups(-1)
    if outlines:
        cand = np.concatenate(outlines)
        owner = np.repeat(np.arange(len(outlines)), [len(o) for o in outlines])
        for isl in slow_greedy(cand, cand, owner, len(outlines), pos)[0]:
            island_groups(isl)
    return out


# ---------------------------------------------------------------------------
# kernels


@pytest.mark.parametrize("seed", range(6))
def test_greedy_order_matches_slow_walk_on_lines(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    heads = rng.uniform(-50, 50, (n, 2))
    tails = heads + rng.normal(0, 3, (n, 2))
    cand = np.empty((2 * n, 2))
    cand[0::2], cand[1::2] = heads, tails
    exits = np.empty((2 * n, 2))
    exits[0::2], exits[1::2] = tails, heads
    owner = np.repeat(np.arange(n), 2)
    start = rng.uniform(-80, 80, 2)
    order, chosen = greedy_order(cand, exits, owner, n, start)
    ref_order, ref_chosen = slow_greedy(cand, exits, owner, n, start)
    assert order.tolist() == ref_order
    assert chosen.tolist() == ref_chosen


def test_greedy_order_ties_and_many_candidates_per_item():
    # a lattice (every distance ties) and items with several candidates (loop seams)
    g = np.array([[x, y] for x in range(8) for y in range(8)], float)
    owner = np.arange(64) // 4
    order, chosen = greedy_order(g, g, owner, 16, np.array([3.5, 3.5]))
    ref_order, ref_chosen = slow_greedy(g, g, owner, 16, (3.5, 3.5))
    assert order.tolist() == ref_order and chosen.tolist() == ref_chosen
    # collinear points and a start far outside the grid
    line = np.column_stack((np.linspace(0, 10, 50), np.zeros(50)))
    order, chosen = greedy_order(line, line, np.arange(50), 50, np.array([100.0, -40.0]))
    assert order.tolist() == slow_greedy(line, line, np.arange(50), 50, (100.0, -40.0))[0]
    assert order.tolist() == list(range(49, -1, -1))


def test_island_of_points_matches_slow_reference():
    rng = np.random.default_rng(3)
    loops = [square(0, 0, 10), square(0, 0, 3), circle(30, 0, 6, 40), square(60, 60, 2)]
    pts = np.concatenate(loops)
    start = np.concatenate(([0], np.cumsum([len(lp) for lp in loops]))).astype(np.int64)
    q = rng.uniform(-15, 70, (400, 2))
    got = island_of_points(q, pts, start)
    assert got.tolist() == [slow_island(p, loops) for p in q]


def random_loop(rng, cx, cy, r, n):
    """A star-shaped loop with notches (concave corners for seams to hide in), counter-clockwise."""
    a = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = r * rng.uniform(0.6, 1.0, n)
    return np.column_stack((cx + rad * np.cos(a), cy + rad * np.sin(a)))


@pytest.mark.parametrize("seed", range(4))
def test_seam_vertex_matches_slow_reference(seed):
    rng = np.random.default_rng(seed)
    prev = rng.uniform(-10, 10, (5, 2))
    for _ in range(60):
        loop = random_loop(rng, *rng.uniform(-5, 5, 2), rng.uniform(1, 8), int(rng.integers(3, 40)))
        loop[rng.random(len(loop)) < 0.2, 1] = loop[:, 1].max()  # rear ties go to the smaller x
        for aligned in (False, True):
            for reach in (0.0, 0.9, 3.0):
                got = seam_vertex(loop, 0, len(loop), aligned, prev if aligned else np.zeros((0, 2)), reach)
                assert got == slow_seam(loop, aligned, prev if aligned else np.zeros((0, 2)), reach)


@pytest.mark.parametrize("seed", range(4))
def test_order_layer_matches_slow_walk(seed):
    """Islands (one standing in another's hole), walls in two depths, lines, a skirt: the
    kernel's order, seams and directions against the plain walk, for every seam mode."""
    rng = np.random.default_rng(seed)
    centres = [(0.0, 0.0), (40.0, 5.0), (-30.0, 20.0)]
    outlines = [circle(cx, cy, 12, int(rng.integers(12, 40)), start=rng.uniform(0, 1)) for cx, cy in centres]
    hole = circle(0, 0, 6, 20)[::-1].copy()
    inner = square(0, 0, 2.5)  # an island in the hole
    outlines.append(inner)
    items = [(circle(0, 0, 30, 50), True, 0, False)]  # skirt
    items += [(lp, True, 1, True) for lp in outlines[:3]] + [(hole, True, 1, True), (inner, True, 1, True)]
    items += [(lp * 0.9, True, 0, True) for lp in outlines[:3]]  # inner walls (slot 0: printed first)
    for cx, cy in centres + [(0.0, 0.0)]:
        for _ in range(int(rng.integers(2, 12))):
            a = rng.uniform([cx - 9, cy - 9], [cx + 9, cy + 9])
            items.append((np.array([a, a + rng.normal(0, 2, 2)]), False, 2 + int(rng.integers(0, 2)), True))
    outline_item = np.array([1, 2, 3, 5], np.int64)
    pts = np.concatenate([it[0] for it in items])
    start = np.concatenate(([0], np.cumsum([len(it[0]) for it in items]))).astype(np.int64)
    closed, slot, inside = (np.array([it[k] for it in items]) for k in (1, 2, 3))
    o_pts = np.concatenate(outlines)
    o_start = np.concatenate(([0], np.cumsum([len(o) for o in outlines]))).astype(np.int64)
    nozzle = rng.uniform(-50, 50, 2)
    for mode in (0, 1, 2):
        prev = rng.uniform(-40, 40, (6, 2)) if mode == 1 else np.zeros((0, 2))
        got_pts, got_start, got_item, length, travel, seams, end = order_layer(
            pts, start, closed, slot.astype(np.int64), inside, o_pts, o_start, outline_item, mode, prev, 0.8, nozzle)
        want = slow_order_layer(items, outlines, outline_item, mode, prev, 0.8, nozzle)
        assert got_item.tolist() == [i for i, _ in want]
        for p, (_, w) in enumerate(want):
            assert np.array_equal(got_pts[got_start[p]:got_start[p + 1]], w)
        paths = [w for _, w in want]
        assert np.allclose(length, [np.hypot(*np.diff(w, axis=0).T).sum() for w in paths])
        ends = [nozzle] + [w[-1] for w in paths[:-1]]
        assert travel == pytest.approx(sum(np.hypot(*(w[0] - e)) for w, e in zip(paths, ends)))
        assert np.array_equal(seams, [w[0] for w in paths if len(w) > 2 and (w[0] == w[-1]).all()])
        assert np.array_equal(end, paths[-1][-1])


# ---------------------------------------------------------------------------
# order


def kinds(lp):
    return [p.kind for p in lp.paths]


def test_layer_order_skirt_brim_walls_skin_infill():
    s = SliceSettings()
    walls = [[square(0, 0, 10)], [square(0, 0, 9.5)], [square(0, 0, 9)]]
    regions = [layer(0, walls, fill=hatch(0, 0, 8, 0.5)), layer(1, walls, sparse=hatch(0, 0, 8, 2.0))]
    out = order_layers(regions, [square(0, 0, 20)], [square(0, 0, 11), square(0, 0, 10.5)], s)
    k0 = kinds(out[0])
    assert k0[:3] == [PathKind.SKIRT, PathKind.BRIM, PathKind.BRIM]
    assert k0[3:6] == [PathKind.WALL_INNER, PathKind.WALL_INNER, PathKind.WALL_OUTER]
    assert set(k0[6:]) == {PathKind.SKIN}
    # innermost wall first: inner walls in depth order 2, 1
    assert np.allclose(np.abs(out[0].paths[3].points).max(), 9) and np.allclose(np.abs(out[0].paths[4].points).max(), 9.5)
    k1 = kinds(out[1])
    assert PathKind.SKIRT not in k1 and PathKind.BRIM not in k1
    assert k1[:3] == [PathKind.WALL_INNER, PathKind.WALL_INNER, PathKind.WALL_OUTER]
    assert set(k1[3:]) == {PathKind.INFILL}
    # first layer: first-layer width and speed everywhere; then per-kind speeds
    assert {p.width for p in out[0].paths} == {s.first_layer_line_width}
    assert {p.speed for p in out[0].paths} == {s.first_layer_speed}
    speeds = {p.kind: p.speed for p in out[1].paths}
    assert speeds == {PathKind.WALL_INNER: s.inner_wall_speed, PathKind.WALL_OUTER: s.outer_wall_speed,
                      PathKind.INFILL: s.infill_speed}
    assert {p.width for p in out[1].paths} == {s.line_width}


def test_loops_closed_at_seam_and_lines_start_at_nearer_end():
    out = order_layers([layer(0, [[square(0, 0, 10)]], fill=hatch(0, 0, 8, 1.0))], [], [], SliceSettings())
    paths = out[0].paths
    wall = paths[0].points
    assert len(wall) == 5 and (wall[0] == wall[-1]).all()
    end = wall[-1]
    for p in paths[1:]:
        # each line starts at whichever end is nearer to where the nozzle is
        assert np.hypot(*(p.points[0] - end)) <= np.hypot(*(p.points[-1] - end)) + 1e-12
        end = p.points[-1]
    # the hatch is printed as a zig-zag: neighbouring lines, alternating direction
    xs = [p.points[0, 0] for p in paths[1:]]
    assert np.allclose(np.abs(np.diff(xs)), 1.0)


def test_islands_nearest_first_with_holes_and_nested_island():
    s = SliceSettings(perimeters=1)
    big = square(0, 0, 20)
    hole = square(0, 0, 8, hole=True)
    inner = square(0, 0, 4)  # an island standing in the hole
    far = square(60, 0, 5)
    fill_big = [np.array([[-18.0, y], [-10.0, y]]) for y in (-5.0, 0.0, 5.0)]
    fill_inner = [np.array([[-2.0, 0.0], [2.0, 0.0]])]
    fill_far = [np.array([[57.0, 0.0], [63.0, 0.0]])]
    regions = [layer(0, [[far, big, hole, inner]], fill=fill_far + fill_big + fill_inner)]
    out = order_layers(regions, [], [], s)
    paths = out[0].paths
    walls = [p for p in paths if p.kind == PathKind.WALL_OUTER]
    assert len(walls) == 4
    # the path list splits into islands: each island's fill follows its own walls
    seq = [(p.kind, round(float(np.abs(p.points).max()), 1)) for p in paths]
    i_inner = seq.index((PathKind.WALL_OUTER, 4.0))
    assert seq[i_inner + 1] == (PathKind.SKIN, 2.0)
    i_far = seq.index((PathKind.WALL_OUTER, 65.0))
    assert seq[i_far + 1] == (PathKind.SKIN, 63.0)
    # the big island: outline and hole walls before its three fill lines
    i_big = min(seq.index((PathKind.WALL_OUTER, 20.0)), seq.index((PathKind.WALL_OUTER, 8.0)))
    big_block = seq[i_big:i_big + 5]
    assert sorted(m for _, m in big_block[:2]) == [8.0, 20.0] and all(k == PathKind.SKIN for k, _ in big_block[2:])
    # the first island is the one nearest the start (origin): the inner one, the far one last
    assert i_inner == 0 and i_far == len(paths) - 2


def test_seam_rear_nearest_aligned():
    loop = circle(0, 0, 10, 36, start=0.05)
    rear = order_layers([layer(0, [[loop]])], [], [], SliceSettings(seam="rear"))[0].paths[0].points[0]
    assert rear[1] == loop[:, 1].max()
    # rear ties (a square's top edge) go to the smaller x
    sq = order_layers([layer(0, [[square(3, 3, 2)]])], [], [], SliceSettings(seam="rear"))[0].paths[0].points[0]
    assert sq.tolist() == [1.0, 5.0]
    # rear with a concave corner (a notch) within two line widths of the rearmost vertex: the seam hides there
    notched = np.array([[0, 0], [10, 0], [10, 10], [6.0, 10], [5.5, 9.5], [5.0, 10.2], [0, 10]], float)
    hidden = order_layers([layer(0, [[notched]])], [], [], SliceSettings(seam="rear"))[0].paths[0].points[0]
    assert hidden.tolist() == [5.5, 9.5]
    far_notch = notched.copy()
    far_notch[3:5, 0] += 3.0  # the notch, now at (8.5, 9.5), is out of reach of the rear vertex (5, 10.2)
    kept = order_layers([layer(0, [[far_notch]])], [], [], SliceSettings(seam="rear"))[0].paths[0].points[0]
    assert kept.tolist() == [5.0, 10.2]
    # nearest: the vertex nearest the nozzle, which comes from the skirt's end
    skirt = [np.array([[30.0, -1.0], [31.0, -1.0], [31.0, 1.0]])]
    near = order_layers([layer(0, [[loop]])], skirt, [], SliceSettings(seam="nearest"))[0].paths[1].points[0]
    d = np.hypot(*(loop - [30.0, -1.0]).T)
    assert np.allclose(near, loop[np.argmin(d)])
    # aligned: the next layer's seam is the vertex closest to this layer's seam
    shifted = circle(0.3, 0, 10, 36, start=0.05 + np.pi / 36)
    out = order_layers([layer(0, [[loop]]), layer(1, [[shifted]])], [], [], SliceSettings(seam="aligned"))
    s0 = out[0].paths[0].points[0]
    s1 = out[1].paths[0].points[0]
    assert np.allclose(s1, shifted[np.argmin(np.hypot(*(shifted - s0).T))])
    assert np.hypot(*(s1 - s0)) < 2.0
    # two islands: each loop aligns with its own seam below, not with the other island's
    skirt = [np.array([[-30.0, -30.0], [-29.0, -30.0], [-29.0, -29.0]])]  # seam "nearest" to (-30, -30) on layer 0
    first = [[circle(0, 0, 10, 36), circle(50, 0, 10, 36)]]
    second = [[circle(0.3, 0, 10, 36, start=0.05), circle(50.3, 0, 10, 36, start=0.05)]]
    out = order_layers([layer(0, first), layer(1, second)], skirt, [], SliceSettings(seam="aligned"))
    below = {round(float(p.points[0, 0]) / 50): p.points[0] for p in out[0].paths[1:]}
    above = {round(float(p.points[0, 0]) / 50): p.points[0] for p in out[1].paths}
    assert below.keys() == above.keys() == {0, 1}
    for island in (0, 1):
        assert np.hypot(*(above[island] - below[island])) < 2.0


def test_min_layer_time_slows_a_tiny_layer_and_turns_the_fan_up():
    s = SliceSettings(min_layer_time=10.0, min_print_speed=5.0, fan_speed=0.5, fan_start_layer=1)
    big_hatch = hatch(0, 0, 40, 0.5)
    regions = [layer(0, [[square(0, 0, 42)]], fill=big_hatch), layer(1, [[square(0, 0, 42)]], fill=big_hatch),
               layer(2, [[square(0, 0, 3)]], fill=hatch(0, 0, 2, 0.5))]
    out = order_layers(regions, [], [], s)
    assert [lp.fan for lp in out] == [0.0, 0.5, 1.0]
    no_fan = order_layers(regions, [], [], s.replace(fan_speed=0.0))
    assert [lp.fan for lp in no_fan] == [0.0, 0.0, 0.0] and no_fan[2].speed_factor < 1.0
    assert out[1].speed_factor == 1.0 and out[2].speed_factor < 1.0
    tiny = out[2]
    lengths = np.array([np.hypot(*np.diff(p.points, axis=0).T).sum() for p in tiny.paths])
    speeds = effective_speeds([p.speed for p in tiny.paths], tiny.speed_factor, s.min_print_speed)
    assert speeds.min() >= s.min_print_speed - 1e-9
    prev = out[1].paths[-1].points[-1]
    travel = sum(np.hypot(*(p.points[0] - q)) for p, q in zip(tiny.paths, [prev] + [p.points[-1] for p in tiny.paths[:-1]]))
    assert (lengths / speeds).sum() + travel / s.travel_speed == pytest.approx(s.min_layer_time, rel=1e-6)


def test_min_print_speed_bounds_the_slow_down():
    s = SliceSettings(min_layer_time=1000.0, min_print_speed=10.0)
    out = order_layers([layer(0, [[square(0, 0, 5)]]), layer(1, [[square(0, 0, 5)]])], [], [], s)
    f = out[1].speed_factor
    assert effective_speeds([s.outer_wall_speed], f, s.min_print_speed)[0] == pytest.approx(s.min_print_speed)


def _bisected_slow_down(lengths, speeds, travel_s, s):
    """The factor by bisection on the whole layer's time (what _slow_down solves in closed form)."""
    def layer_time(f):
        return (lengths / effective_speeds(speeds, f, s.min_print_speed)).sum() + travel_s

    if layer_time(1.0) >= s.min_layer_time:
        return 1.0
    lo, hi = min(1.0, s.min_print_speed / speeds.max()), 1.0
    if layer_time(lo) <= s.min_layer_time:
        return lo
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if layer_time(mid) > s.min_layer_time else (lo, mid)
    return lo


@pytest.mark.parametrize("seed", range(40))
def test_slow_down_solves_the_layer_time_exactly(seed):
    rng = np.random.default_rng(seed)
    s = SliceSettings(min_layer_time=float(rng.uniform(1, 30)), min_print_speed=float(rng.choice([5.0, 10.0, 25.0])))
    speeds = rng.choice([8.0, 20.0, 30.0, 45.0, 60.0, 150.0], size=int(rng.integers(1, 30)))
    lengths = rng.uniform(0.1, 80.0, len(speeds))
    travel_s = float(rng.uniform(0, 2))
    assert _slow_down(lengths, speeds, travel_s, s) == pytest.approx(_bisected_slow_down(lengths, speeds, travel_s, s),
                                                                     rel=1e-12)


def test_bad_regions_are_named():
    with pytest.raises(PlanError, match="layer 7 wall 0 loop 0"):
        order_layers([layer(7, [[np.zeros((2, 2))]])], [], [], SliceSettings())
    with pytest.raises(PlanError, match="layer 0 skin line 1"):
        order_layers([layer(0, [[square(0, 0, 5)]], fill=[np.zeros((2, 2)), np.array([[0.0, np.nan], [1, 1]])])],
                     [], [], SliceSettings())
    with pytest.raises(PlanError, match="no counter-clockwise outline"):
        order_layers([layer(0, [[square(0, 0, 5, hole=True)]])], [], [], SliceSettings())
