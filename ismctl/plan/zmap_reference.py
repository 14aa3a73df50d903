"""Plain numpy twins of the Z-map kernels (:mod:`ismctl.plan.zmap_kernels`).

The same algorithm and arithmetic, vectorised over the cells of one segment's (or
one triangle's) bounding box instead of looping cell by cell: the reference the
tests check the kernels against, and the peer ``bench/zmap_speed.py`` times them
against.  Not used for real work.
"""

from __future__ import annotations

import numpy as np

from .zmap_kernels import _FLAT_EPS, _RIM_SLACK, _VERTICAL_EPS


def lowest_flat(cx, cy, ax, ay, az, bx, by, bz, r2):
    dx = bx - ax
    dy = by - ay
    px = cx - ax
    py = cy - ay
    a = dx * dx + dy * dy
    b = px * dx + py * dy
    e = px * px + py * py
    if a <= _FLAT_EPS:
        return np.where(e <= r2, min(az, bz), np.inf)
    disc = b * b - a * (e - r2)
    sq = np.sqrt(np.maximum(disc, 0.0))
    t0 = np.maximum((b - sq) / a, 0.0)
    t1 = np.minimum((b + sq) / a, 1.0)
    z = np.minimum(az + t0 * (bz - az), az + t1 * (bz - az))
    return np.where((disc >= 0.0) & (t0 <= t1), z, np.inf)


def lowest_ball_level(cx, cy, ax, ay, z, dx, dy, a, r, r2):
    px = cx - ax
    py = cy - ay
    t = 0.0
    if a > _FLAT_EPS:
        t = np.minimum(np.maximum((px * dx + py * dy) / a, 0.0), 1.0)
    ex = px - t * dx
    ey = py - t * dy
    d2 = ex * ex + ey * ey
    return np.where(d2 <= r2, z + r - np.sqrt(np.maximum(r2 - d2, 0.0)), np.inf)


def lowest_ball(cx, cy, ax, ay, az, bx, by, bz, r, r2, ux, uy, uz, horiz, length):
    wx = cx - ax
    wy = cy - ay
    q = wx * wx + wy * wy
    ex = cx - bx
    ey = cy - by
    qb = ex * ex + ey * ey
    best = np.where(q <= r2, az + r - np.sqrt(np.maximum(r2 - q, 0.0)), np.inf)
    best = np.minimum(best, np.where(qb <= r2, bz + r - np.sqrt(np.maximum(r2 - qb, 0.0)), np.inf))
    if horiz > _VERTICAL_EPS:
        p = wx * ux + wy * uy
        disc = p * p * uz * uz - horiz * (q - p * p - r2)
        zeta = (p * uz - np.sqrt(np.maximum(disc, 0.0))) / horiz
        s = p + zeta * uz
        hit = (disc >= 0.0) & (s >= 0.0) & (s <= length)
        best = np.minimum(best, np.where(hit, az + r + zeta, np.inf))
    return best


def _ahead_box(ax, ay, bx, by, vx, vy, r):
    """Bounding box (x0, x1, y0, y1) of the footprint's part ahead of A (direction ``v``): the
    half disc at A (grown by the kernel's slack behind it) and the disc at B."""
    ahead_x0 = ax - r * (abs(vy) if vx > 0 else 1.0) - _RIM_SLACK
    ahead_x1 = ax + r * (abs(vy) if vx < 0 else 1.0) + _RIM_SLACK
    ahead_y0 = ay - r * (abs(vx) if vy > 0 else 1.0) - _RIM_SLACK
    ahead_y1 = ay + r * (abs(vx) if vy < 0 else 1.0) + _RIM_SLACK
    return min(ahead_x0, bx - r), max(ahead_x1, bx + r), min(ahead_y0, by - r), max(ahead_y1, by + r)


def sweep(height, cutter, x0, y0, cell, starts, ends, ops, radius, ball, floor, max_cut):
    """:func:`ismctl.plan.zmap_kernels.sweep`, one numpy pass per segment."""
    ny, nx = height.shape
    r2 = radius * radius
    for k in range(len(starts)):
        ax, ay, az = starts[k]
        bx, by, bz = ends[k]
        max_cut[k] = 0.0
        dx, dy, dz = bx - ax, by - ay, bz - az
        a = dx * dx + dy * dy
        box = (min(ax, bx) - radius, max(ax, bx) + radius, min(ay, by) - radius, max(ay, by) + radius)
        behind_cut = dz == 0.0 and k > 0 and (ends[k - 1] == starts[k]).all()  # see the kernel
        if behind_cut:
            if a <= _FLAT_EPS:
                continue
            vx, vy = dx / np.sqrt(a), dy / np.sqrt(a)
            box = _ahead_box(ax, ay, bx, by, vx, vy, radius)
        i0 = max(0, int(np.floor((box[0] - x0) / cell - 0.5)))
        i1 = min(nx - 1, int(np.ceil((box[1] - x0) / cell - 0.5)))
        j0 = max(0, int(np.floor((box[2] - y0) / cell - 0.5)))
        j1 = min(ny - 1, int(np.ceil((box[3] - y0) / cell - 0.5)))
        if i0 > i1 or j0 > j1:
            continue
        window = height[j0:j1 + 1, i0:i1 + 1]
        if not (window > max(min(az, bz), floor)).any():  # nothing the segment could still cut
            continue
        cx = x0 + (np.arange(i0, i1 + 1) + 0.5) * cell
        cy = (y0 + (np.arange(j0, j1 + 1) + 0.5) * cell)[:, None]
        length = np.sqrt(a + dz * dz)
        ux = uy = uz = horiz = 0.0
        if length > 0.0:
            ux, uy, uz = dx / length, dy / length, dz / length
            horiz = 1.0 - uz * uz
        if not ball:
            z = lowest_flat(cx, cy, ax, ay, az, bx, by, bz, r2)
        elif dz == 0.0:
            z = lowest_ball_level(cx, cy, ax, ay, az, dx, dy, a, radius, r2)
        else:
            z = lowest_ball(cx, cy, ax, ay, az, bx, by, bz, radius, r2, ux, uy, uz, horiz, length)
        z = np.maximum(z, floor)
        if behind_cut:
            z = np.where((cx - ax) * vx + (cy - ay) * vy >= -_RIM_SLACK, z, np.inf)
        lower = z < window
        if lower.any():
            max_cut[k] = float((window - z)[lower].max())
            window[lower] = z[lower]
            cutter[j0:j1 + 1, i0:i1 + 1][lower] = ops[k]


def top_surface(target, x0, y0, cell, triangles):
    """:func:`ismctl.plan.zmap_kernels.top_surface`, one numpy pass per triangle."""
    ny, nx = target.shape
    for (ax, ay, az), (bx, by, bz), (qx, qy, qz) in triangles:
        det = (bx - ax) * (qy - ay) - (qx - ax) * (by - ay)
        if abs(det) < 1e-14:
            continue
        i0 = max(0, int(np.ceil((min(ax, bx, qx) - x0) / cell - 0.5)))
        i1 = min(nx - 1, int(np.floor((max(ax, bx, qx) - x0) / cell - 0.5)))
        j0 = max(0, int(np.ceil((min(ay, by, qy) - y0) / cell - 0.5)))
        j1 = min(ny - 1, int(np.floor((max(ay, by, qy) - y0) / cell - 0.5)))
        if i0 > i1 or j0 > j1:
            continue
        cx = x0 + (np.arange(i0, i1 + 1) + 0.5) * cell
        cy = (y0 + (np.arange(j0, j1 + 1) + 0.5) * cell)[:, None]
        u = ((cx - ax) * (qy - ay) - (qx - ax) * (cy - ay)) / det
        v = ((bx - ax) * (cy - ay) - (cx - ax) * (by - ay)) / det
        inside = (u >= -1e-9) & (v >= -1e-9) & (u + v <= 1.0 + 1e-9)
        z = az + u * (bz - az) + v * (qz - az)
        window = target[j0:j1 + 1, i0:i1 + 1]
        higher = inside & (z > window)
        window[higher] = z[higher]
