"""The CAM Numba kernels, and grbl block timing, against pure-Python references on small inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely.geometry as geo
from hypothesis import given, settings
from hypothesis import strategies as st

from ismctl.grbl_gcode import block_times
from ismctl.plan.cam_paths import fit_arcs, scanline_segments


def scanline_reference(loops, ys):
    """Even-odd crossings of each line, paired left to right."""
    out = []
    for k, y in enumerate(ys):
        xs = []
        for loop in loops:
            for (x0, y0), (x1, y1) in zip(loop, np.roll(loop, -1, axis=0)):
                if (y0 <= y) != (y1 <= y):
                    xs.append(x0 + (y - y0) / (y1 - y0) * (x1 - x0))
        xs.sort()
        out.extend((xs[2 * i], xs[2 * i + 1], y, k) for i in range(len(xs) // 2))
    return out


def durations_reference(start, end, length, feed, max_rate, accel):
    out = []
    for a, b, dist, f in zip(start, end, length, feed):
        if dist <= 0:
            out.append(0.0)
            continue
        v = (f if f > 0 else max(max_rate)) / 60
        chord = math.dist(a, b)
        limits = [(max_rate[i] / 60 * chord / abs(b[i] - a[i]), accel[i] * chord / abs(b[i] - a[i]))
                  for i in range(3) if abs(b[i] - a[i]) > 1e-9 and chord > 0]
        v = min([v] + [lim[0] for lim in limits])
        acc = min(lim[1] for lim in limits) if limits else min(accel)
        t_ramp = v / acc
        d_ramp = v * t_ramp  # accelerating and braking together
        out.append(2 * math.sqrt(dist / acc) if d_ramp >= dist else 2 * t_ramp + (dist - d_ramp) / v)
    return np.array(out)


def block_durations(start, end, length, feed, max_rate, accel):
    """:func:`block_times` called as CAM calls it: feeds in mm/min, 0 for a rapid."""
    return block_times(end - start, length, np.where(feed > 0, feed / 60.0, -1.0), max_rate / 60.0, accel)


def _packed(loops):
    pts = np.vstack(loops).astype(np.float64)
    start = np.concatenate(([0], np.cumsum([len(loop) for loop in loops]))).astype(np.int64)
    return pts, start


def test_scanlines_through_a_square_with_a_hole():
    outer = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    hole = np.array([[3, 3], [3, 7], [7, 7], [7, 3]], float)
    ys = np.array([1.0, 5.0, 3.0, 10.0, -1.0])
    seg, line = scanline_segments(*_packed([outer, hole]), ys)
    got = [(a, b, y, k) for (a, b, y), k in zip(seg.tolist(), line.tolist())]
    assert got == [(0, 10, 1, 0), (0, 3, 5, 1), (7, 10, 5, 1), (0, 3, 3, 2), (7, 10, 3, 2)]
    assert got == scanline_reference([outer, hole], ys)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-20, 20), st.floats(-20, 20)), min_size=3, max_size=12),
       st.lists(st.floats(-25, 25), min_size=1, max_size=8))
def test_scanlines_match_the_reference(corners, ys):
    loop = np.array(corners, float)
    ys = np.array(ys)
    seg, line = scanline_segments(*_packed([loop]), ys)
    ref = scanline_reference([loop], ys)
    assert len(ref) == len(seg)
    for (a, b, y), k, (ra, rb, ry, rk) in zip(seg, line, ref):
        assert (k, y) == (rk, ry) and a == pytest.approx(ra) and b == pytest.approx(rb)


def test_scanline_pieces_lie_inside_the_area():
    poly = geo.Polygon([(0, 0), (8, 0), (8, 8), (4, 3), (0, 8)])  # a notch from the top
    seg, _ = scanline_segments(*_packed([np.array(poly.exterior.coords[:-1])]), np.linspace(0.5, 7.5, 8))
    assert len(seg) == 3 + 2 * 5  # the five lines above y = 3 meet the notch: two pieces each
    for a, b, y in seg:
        assert poly.buffer(1e-9).contains(geo.LineString([(a, y), (b, y)]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-50, 50), st.floats(-50, 50), st.floats(-10, 10),
                          st.one_of(st.just(0.0), st.floats(1, 3000))), min_size=1, max_size=10))
def test_block_durations_match_the_reference(moves):
    start = np.zeros((len(moves), 3))
    end = np.array([m[:3] for m in moves])
    length = np.linalg.norm(end - start, axis=1)
    feed = np.array([m[3] for m in moves])
    rates, accel = np.array([500.0, 400.0, 300.0]), np.array([10.0, 20.0, 5.0])
    assert block_durations(start, end, length, feed, rates, accel) == pytest.approx(
        durations_reference(start, end, length, feed, rates, accel), rel=1e-12, abs=1e-12)


def test_block_durations_known_cases():
    rates, accel = np.array([500.0, 500.0, 500.0]), np.array([10.0, 10.0, 10.0])
    start = np.zeros((3, 3))
    end = np.array([[100.0, 0, 0], [0.5, 0, 0], [0, 0, 0]])  # long, short (a triangle), full circle (no chord)
    length = np.array([100.0, 0.5, 2 * math.pi])
    t = block_durations(start, end, length, np.array([300.0, 300.0, 300.0]), rates, accel)
    assert t[0] == pytest.approx(100 / 5 + 5 / 10)  # 300 mm/min = 5 mm/s
    assert t[1] == pytest.approx(2 * math.sqrt(0.5 / 10))
    assert t[2] == pytest.approx(2 * math.pi / 5 + 5 / 10)
    # a rapid runs at the axis rate; a diagonal is not faster than its slowest axis allows
    t = block_durations(np.zeros((1, 3)), np.array([[30.0, 0, 40.0]]), np.array([50.0]), np.array([0.0]),
                        np.array([600.0, 600.0, 120.0]), accel)
    vz, az = 120 / 60 * 50 / 40, 10 * 50 / 40  # speed and acceleration along the move that Z allows
    assert t[0] == pytest.approx(50 / vz + vz / az)


def fit_arcs_reference(pts, tol, min_points, max_radius):
    """The same greedy rule, written with numpy over each candidate run."""
    def circle(a, b, c):
        m = np.array([[b[0] - a[0], b[1] - a[1]], [c[0] - a[0], c[1] - a[1]]]) * 2
        if abs(np.linalg.det(m)) < 1e-12:
            return None
        rhs = np.array([b @ b - a @ a, c @ c - a @ a])
        centre = np.linalg.solve(m, rhs)
        return centre, float(np.hypot(*(a - centre)))

    def holds(run, centre, r, turn):
        if np.any(np.abs(np.hypot(*(run - centre).T) - r) > tol):
            return False
        half = np.hypot(*np.diff(run, axis=0).T) / 2
        if np.any(r - np.sqrt(np.maximum(r * r - half * half, 0)) > tol):
            return False
        angles = np.arctan2(*(run - centre).T[::-1])
        steps = (np.diff(angles) + np.pi) % (2 * np.pi) - np.pi
        return bool(np.all(steps * turn > 0) and np.abs(steps).sum() <= np.pi)

    out, i, n = [], 0, len(pts)
    while i < n - 1:
        best = None
        for j in range(i + min_points - 1, n):
            h = (i + j) // 2
            fit = circle(pts[i], pts[h], pts[j])
            if fit is None or fit[1] > max_radius:
                break
            (ux, uy), (vx, vy) = pts[h] - pts[i], pts[j] - pts[h]
            cross = ux * vy - uy * vx
            turn = 1.0 if cross > 0 else -1.0
            if not holds(pts[i:j + 1], fit[0], fit[1], turn):
                break
            best = (j, 3 if turn > 0 else 2, fit[0])
        if best:
            out.append(best)
            i = best[0]
        else:
            out.append((i + 1, 1, None))
            i += 1
    return out


def _rounded_square(r, corner_points):
    """A square's offset with round corners, as Clipper gives it (corner arcs as points)."""
    pts = []
    for k, (cx, cy) in enumerate([(10, 0), (10, 10), (0, 10), (0, 0)]):
        a = np.linspace(-np.pi / 2 + k * np.pi / 2, k * np.pi / 2, corner_points)
        pts.extend(zip(cx + r * np.cos(a), cy + r * np.sin(a)))
    return np.array(pts + pts[:1])


def test_fit_arcs_turns_round_corners_into_arcs():
    path = _rounded_square(1.5, 24)  # 3.9 degree steps: chords sag 0.9 µm, as Clipper spaces them
    end, kind, centre = fit_arcs(path, 0.002, 4, 1000.0)
    arcs = np.flatnonzero(kind == 3)
    assert len(arcs) == 4 and (kind[kind != 3] == 1).all()  # four counter-clockwise corners, straight sides
    assert centre[arcs].round(9).tolist() == [[10, 0], [10, 10], [0, 10], [0, 0]]
    assert end[-1] == len(path) - 1
    # a clockwise run gives G2; a coarse polygon (chords far from the arc) stays straight lines
    end, kind, _ = fit_arcs(path[::-1].copy(), 0.002, 4, 1000.0)
    assert (kind[kind != 1] == 2).all() and (kind == 2).sum() == 4
    a = np.linspace(0, np.pi, 9)
    coarse = np.column_stack((5 * np.cos(a), 5 * np.sin(a)))  # 22.5 degree chords sag 0.096 mm
    assert (fit_arcs(coarse, 0.002, 4, 1000.0)[1] == 1).all()


@settings(max_examples=30, deadline=None)
@given(st.floats(0.2, 20), st.integers(4, 40), st.floats(-0.003, 0.003), st.integers(0, 3))
def test_fit_arcs_matches_the_reference(radius, corner_points, noise, seed):
    rng = np.random.default_rng(seed)
    path = _rounded_square(radius, corner_points)
    path = path + rng.uniform(-1, 1, path.shape) * noise
    end, kind, centre = fit_arcs(path, 0.002, 4, 1000.0)
    ref = fit_arcs_reference(path, 0.002, 4, 1000.0)
    assert end.tolist() == [e for e, _, _ in ref] and kind.tolist() == [k for _, k, _ in ref]
    for c, (_, k, rc) in zip(centre, ref):
        if k != 1:
            assert c == pytest.approx(rc, abs=1e-9)
