"""Slicing: a welded, outward-oriented Mesh to a LayerStack of oriented closed loops.

The kernel makes one pass over the triangles.  Each triangle is bucketed by
the planes its z range crosses (a counting sort by the first plane above its
lowest corner, O(triangles + segments)); a triangle that crosses no plane -- most
of them on a finely tessellated mesh -- costs two binary searches and nothing
else, and no plane ever looks at a triangle that does not cross it.

Exactness: a vertex with ``z >= plane`` counts as above the plane (symbolic
perturbation: the plane is cut an infinitesimal below ``z``).  So a triangle
crosses a plane in exactly 0 or 2 edges, a horizontal face lying on a plane
gives nothing, and a face's top exactly on a plane gives the full section
just below it.  An edge's crossing point is computed from the edge alone (its
below and above corner, the above corner itself when it lies on the plane), so
the two faces of an edge agree on it bit for bit.

Chaining is topological: a segment runs from the edge its face crosses going
above->below to the edge it crosses going below->above (so outward faces give
counter-clockwise outlines seen from +z), and is keyed by those edges' vertex
pairs; a per-layer hash from start edge to segment links every segment to its
successor in O(segments).  (Numbering all mesh edges with
``mesh_topology.face_edges`` first would cost more than the whole slice on a
million-triangle mesh; only the few edges a plane crosses need a key.)

Open chains (open or non-manifold meshes) are joined tail to head, nearest
first, within ``gap_tolerance``; what cannot close is dropped and reported in
``LayerStack.notes``.  Loops are then simplified (``simplify_loops``), tiny
ones dropped, and every loop is classified by nesting depth -- even depth is an
outline (made CCW), odd a hole (made CW) -- so a few flipped faces do not
turn a hole into an outline.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .model import LayerStack, Mesh, PlanError
from .rows import copy_rows

# Planes cut per pass over the triangles: the raw segments of a pass are held at
# once (about 100 bytes each), so a 1.4M-triangle part is cut in a few passes of
# ~20 MB instead of one of ~60 MB; a pass costs one scan of the vertices and faces.
PLANES_PER_PASS = 80
GAP_TOLERANCE = 0.05  # mm: open chain ends this close are joined; far below a 0.4 mm line, far above STL float32 noise
MAX_DEVIATION = 0.01  # mm: simplification keeps every loop within this of the exact section
MIN_LOOP_AREA = 1e-4  # mm^2, (0.01 mm)^2: smaller loops cannot be printed and are dropped


# ---------------------------------------------------------------------------
# crossings: every (triangle, plane) pair as a segment between two edge keys


@njit(cache=True, nogil=True)
def _edge_point(vertices, p, q, z):
    """Where edge pq crosses plane ``z``, from the edge alone (so both its faces agree bit for bit)."""
    if vertices[p, 2] >= z:
        p, q = q, p  # p below, q above
    zq = vertices[q, 2]
    if zq == z:
        return vertices[q, 0], vertices[q, 1]
    zp = vertices[p, 2]
    t = (z - zp) / (zq - zp)
    return vertices[p, 0] + t * (vertices[q, 0] - vertices[p, 0]), vertices[p, 1] + t * (vertices[q, 1] - vertices[p, 1])


@njit(cache=True, nogil=True)
def _crossings(vertices, faces, z_cut):
    """Segments of every plane, grouped by plane.

    Returns ``seg_start`` (L+1,), ``start_key``, ``end_key`` (S,) and
    ``start_xy``, ``end_xy`` (S, 2).  An edge key is
    ``low_vertex * n_vertices + high_vertex``.  A segment starts on the edge
    its face runs above->below and ends on the one it runs below->above.
    Triangles with a repeated corner are skipped (zero area; their neighbours
    chain across the shared edge directly).
    """
    m = faces.shape[0]
    n_planes = z_cut.shape[0]
    nv = np.int64(vertices.shape[0])
    # plane index of each vertex: planes at or below it.  A face crosses the
    # planes k with min(index) <= k < max(index): zmin < z_cut[k] <= zmax.
    level = np.empty(vertices.shape[0], np.int32)
    for v in range(vertices.shape[0]):
        level[v] = np.searchsorted(z_cut, vertices[v, 2], side="right")
    crossing = np.empty(m, np.int32)  # the faces that cross a plane
    n_crossing = 0
    counts = np.zeros(n_planes + 1, np.int64)
    for f in range(m):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        ka, kb, kc = level[a], level[b], level[c]
        if (ka == kb and kb == kc) or a == b or b == c or a == c:
            continue
        crossing[n_crossing] = f
        n_crossing += 1
        for k in range(min(ka, min(kb, kc)), max(ka, max(kb, kc))):
            counts[k + 1] += 1
    seg_start = np.cumsum(counts)
    n_seg = seg_start[n_planes]
    fill = seg_start[:n_planes].copy()
    start_key = np.empty(n_seg, np.int64)
    end_key = np.empty(n_seg, np.int64)
    start_xy = np.empty((n_seg, 2), np.float64)
    end_xy = np.empty((n_seg, 2), np.float64)
    for r in range(n_crossing):
        f = crossing[r]
        ka, kb, kc = level[faces[f, 0]], level[faces[f, 1]], level[faces[f, 2]]
        for k in range(min(ka, min(kb, kc)), max(ka, max(kb, kc))):
            z = z_cut[k]
            s = fill[k]
            fill[k] += 1
            for i in range(3):
                p = np.int64(faces[f, i])
                q = np.int64(faces[f, (i + 1) % 3])
                p_above = vertices[p, 2] >= z
                if p_above != (vertices[q, 2] >= z):
                    lo, hi = min(p, q), max(p, q)
                    x, y = _edge_point(vertices, lo, hi, z)
                    if p_above:
                        start_key[s] = lo * nv + hi
                        start_xy[s, 0] = x
                        start_xy[s, 1] = y
                    else:
                        end_key[s] = lo * nv + hi
                        end_xy[s, 0] = x
                        end_xy[s, 1] = y
    return seg_start, start_key, end_key, start_xy, end_xy


# ---------------------------------------------------------------------------
# chaining segments into loops and open chains


@njit(cache=True, nogil=True)
def _chain_segments(start_key, end_key):
    """Link segments whose end edge is another's start edge.

    Returns ``order`` (segments in chain order), ``chain_start`` (C+1,) into
    ``order`` and ``closed`` (C,).  Open chains (no predecessor, or a dead
    end) come first, then closed loops.  On a non-manifold edge the first
    segment starting there wins; the others end up as open chains.
    """
    n = start_key.shape[0]
    size = 4
    while size < 2 * n:
        size *= 2
    mask = size - 1
    table_key = np.full(size, -1, np.int64)
    table_seg = np.empty(size, np.int64)
    for s in range(n):
        slot = (start_key[s] * 0x9E3779B1) & mask
        while table_key[slot] != -1 and table_key[slot] != start_key[s]:
            slot = (slot + 1) & mask
        if table_key[slot] == -1:
            table_key[slot] = start_key[s]
            table_seg[slot] = s
    succ = np.full(n, -1, np.int64)
    has_pred = np.zeros(n, np.bool_)
    for s in range(n):
        slot = (end_key[s] * 0x9E3779B1) & mask
        while table_key[slot] != -1:
            if table_key[slot] == end_key[s]:
                succ[s] = table_seg[slot]
                has_pred[succ[s]] = True
                break
            slot = (slot + 1) & mask
    order = np.empty(n, np.int64)
    chain_start = np.empty(n + 1, np.int64)
    closed = np.empty(n, np.bool_)
    visited = np.zeros(n, np.bool_)
    n_out = 0
    n_chain = 0
    for phase in range(2):
        for s in range(n):
            if visited[s] or (phase == 0 and has_pred[s]):
                continue
            chain_start[n_chain] = n_out
            t = s
            while t >= 0 and not visited[t]:
                visited[t] = True
                order[n_out] = t
                n_out += 1
                t = succ[t]
            closed[n_chain] = t == s
            n_chain += 1
    chain_start[n_chain] = n_out
    return order, chain_start[:n_chain + 1].copy(), closed[:n_chain].copy()


@njit(cache=True, nogil=True)
def _join_chains(heads, tails, tolerance):
    """``link[i] = j``: open chain i's tail joins chain j's head; -1 if none within ``tolerance``.

    Nearest pairs first (greedy matching); heads are sorted by x so each tail
    only looks at heads within ``tolerance`` in x.
    """
    k = heads.shape[0]
    by_x = np.argsort(heads[:, 0])
    hx = heads[by_x, 0]
    n_pairs = 0
    cap = 4 * k + 4
    pair_d = np.empty(cap, np.float64)
    pair_i = np.empty(cap, np.int64)
    pair_j = np.empty(cap, np.int64)
    for i in range(k):
        lo = np.searchsorted(hx, tails[i, 0] - tolerance, side="left")
        hi = np.searchsorted(hx, tails[i, 0] + tolerance, side="right")
        for r in range(lo, hi):
            j = by_x[r]
            d = np.hypot(heads[j, 0] - tails[i, 0], heads[j, 1] - tails[i, 1])
            if d <= tolerance:
                if n_pairs == cap:
                    cap *= 2
                    pair_d = np.concatenate((pair_d, np.empty(cap - n_pairs, np.float64)))
                    pair_i = np.concatenate((pair_i, np.empty(cap - n_pairs, np.int64)))
                    pair_j = np.concatenate((pair_j, np.empty(cap - n_pairs, np.int64)))
                pair_d[n_pairs] = d
                pair_i[n_pairs] = i
                pair_j[n_pairs] = j
                n_pairs += 1
    link = np.full(k, -1, np.int64)
    head_taken = np.zeros(k, np.bool_)
    for p in np.argsort(pair_d[:n_pairs], kind="mergesort"):
        i, j = pair_i[p], pair_j[p]
        if link[i] == -1 and not head_taken[j]:
            link[i] = j
            head_taken[j] = True
    return link


@njit(cache=True, nogil=True)
def _push_point(out, n_out, loop_first, x, y):
    """Append (x, y) unless it repeats the loop's previous point (a vertex-on-plane duplicate)."""
    if n_out > loop_first and out[n_out - 1, 0] == x and out[n_out - 1, 1] == y:
        return n_out
    out[n_out, 0] = x
    out[n_out, 1] = y
    return n_out + 1


@njit(cache=True, nogil=True)
def _end_loop(out, n_out, loop_first):
    """Close a loop: drop closing duplicates; a loop of fewer than 3 points has no area and is discarded."""
    while n_out - loop_first > 1 and out[n_out - 1, 0] == out[loop_first, 0] and out[n_out - 1, 1] == out[loop_first, 1]:
        n_out -= 1
    if n_out - loop_first < 3:
        return loop_first
    return n_out


@njit(cache=True, nogil=True)
def _chains_to_loops(seg_start, start_key, end_key, start_xy, end_xy, gap_tolerance):
    """Every layer's closed loops (raw: unsimplified, unoriented) and what had to be mended.

    Returns ``points``, ``loop_start``, ``layer_loops`` (L+1,) and per layer:
    chains joined, largest gap bridged, chains dropped, their total length.
    """
    n_planes = seg_start.shape[0] - 1
    n_seg = start_key.shape[0]
    points = np.empty((n_seg + 16, 2), np.float64)  # a point per segment; grown if open chains add ends
    loop_start = np.empty(n_seg + 2, np.int64)
    layer_loops = np.zeros(n_planes + 1, np.int64)
    joined = np.zeros(n_planes, np.int64)
    max_gap = np.zeros(n_planes, np.float64)
    dropped = np.zeros(n_planes, np.int64)
    dropped_length = np.zeros(n_planes, np.float64)
    n_pts = 0
    n_loops = 0
    for k in range(n_planes):
        s0, s1 = seg_start[k], seg_start[k + 1]
        order, chain_start, closed = _chain_segments(start_key[s0:s1], end_key[s0:s1])
        order += s0
        n_chain = closed.shape[0]
        n_open = 0
        for c in range(n_chain):
            if not closed[c]:
                n_open += 1
        if n_pts + (s1 - s0) + n_open > points.shape[0]:  # an open chain has one point more than segments
            grown = np.empty((max(2 * points.shape[0], n_pts + (s1 - s0) + n_open), 2), np.float64)
            copy_rows(grown, 0, points, 0, n_pts)
            points = grown
        # closed loops straight out
        for c in range(n_open, n_chain):
            first = n_pts
            for r in range(chain_start[c], chain_start[c + 1]):
                s = order[r]
                n_pts = _push_point(points, n_pts, first, start_xy[s, 0], start_xy[s, 1])
            n_pts = _end_loop(points, n_pts, first)
            if n_pts > first:
                loop_start[n_loops] = first
                n_loops += 1
        if n_open > 0:
            # open chains: their points (one more than segments), heads and tails
            open_start = np.empty(n_open + 1, np.int64)
            open_pts = np.empty((chain_start[n_open] + n_open, 2), np.float64)
            heads = np.empty((n_open, 2), np.float64)
            tails = np.empty((n_open, 2), np.float64)
            n_op = 0
            for c in range(n_open):
                open_start[c] = n_op
                for r in range(chain_start[c], chain_start[c + 1]):
                    copy_rows(open_pts, n_op, start_xy, order[r], 1)
                    n_op += 1
                copy_rows(open_pts, n_op, end_xy, order[chain_start[c + 1] - 1], 1)
                n_op += 1
                copy_rows(heads, c, open_pts, open_start[c], 1)
                copy_rows(tails, c, open_pts, n_op - 1, 1)
            open_start[n_open] = n_op
            link = _join_chains(heads, tails, gap_tolerance)
            # a chain is kept if following links from it comes back to it
            on_cycle = np.zeros(n_open, np.bool_)
            for c in range(n_open):
                t = link[c]
                steps = 0
                while t != -1 and t != c and steps < n_open:
                    t = link[t]
                    steps += 1
                on_cycle[c] = t == c
            emitted = np.zeros(n_open, np.bool_)
            for c in range(n_open):
                if not on_cycle[c] or emitted[c]:
                    continue
                first = n_pts
                t = c
                while not emitted[t]:
                    emitted[t] = True
                    joined[k] += 1
                    gap = np.hypot(heads[link[t], 0] - tails[t, 0], heads[link[t], 1] - tails[t, 1])
                    max_gap[k] = max(max_gap[k], gap)
                    for r in range(open_start[t], open_start[t + 1]):
                        n_pts = _push_point(points, n_pts, first, open_pts[r, 0], open_pts[r, 1])
                    t = link[t]
                n_pts = _end_loop(points, n_pts, first)
                if n_pts > first:
                    loop_start[n_loops] = first
                    n_loops += 1
            for c in range(n_open):
                if not on_cycle[c]:
                    dropped[k] += 1
                    for r in range(open_start[c], open_start[c + 1] - 1):
                        dropped_length[k] += np.hypot(open_pts[r + 1, 0] - open_pts[r, 0],
                                                      open_pts[r + 1, 1] - open_pts[r, 1])
        layer_loops[k + 1] = n_loops
    loop_start[n_loops] = n_pts
    return (points[:n_pts].copy(), loop_start[:n_loops + 1].copy(), layer_loops,
            joined, max_gap, dropped, dropped_length)


# ---------------------------------------------------------------------------
# simplification


@njit(cache=True, nogil=True)
def _douglas_peucker(ring, keep, i0, i1, max_deviation, stack):
    """Mark in ``keep`` the points of ring[i0..i1] that Douglas-Peucker keeps (distance to the segment, not the line)."""
    tol2 = max_deviation * max_deviation
    top = 0
    stack[0, 0] = i0
    stack[0, 1] = i1
    while top >= 0:
        a, b = stack[top, 0], stack[top, 1]
        top -= 1
        ax, ay = ring[a, 0], ring[a, 1]
        dx, dy = ring[b, 0] - ax, ring[b, 1] - ay
        ll = dx * dx + dy * dy
        worst = tol2
        worst_i = -1
        for i in range(a + 1, b):
            px, py = ring[i, 0] - ax, ring[i, 1] - ay
            dot = px * dx + py * dy
            if dot <= 0.0 or ll == 0.0:
                d2 = px * px + py * py
            elif dot >= ll:
                d2 = (px - dx) ** 2 + (py - dy) ** 2
            else:
                cross = px * dy - py * dx
                d2 = cross * cross / ll
            if d2 > worst:
                worst = d2
                worst_i = i
        if worst_i >= 0:
            keep[worst_i] = True
            top += 1
            stack[top, 0] = a
            stack[top, 1] = worst_i
            top += 1
            stack[top, 0] = worst_i
            stack[top, 1] = b


@njit(cache=True, nogil=True)
def _simplify_loops(points, loop_start, max_deviation):
    n_loops = loop_start.shape[0] - 1
    out = np.empty_like(points)
    out_start = np.empty(n_loops + 1, np.int64)
    kept = np.empty(n_loops, np.int64)
    n_out = 0
    n_kept = 0
    stack = np.empty((64, 2), np.int64)
    for li in range(n_loops):
        s0 = loop_start[li]
        n = loop_start[li + 1] - s0
        # anchors: the lowest point in (x, y) order -- a convex hull corner, so never a removable
        # in-between point -- and the point farthest from it split the closed loop in two runs
        low = s0
        for i in range(s0 + 1, s0 + n):
            if points[i, 0] < points[low, 0] or (points[i, 0] == points[low, 0] and points[i, 1] < points[low, 1]):
                low = i
        ring = np.empty((n + 1, 2), np.float64)  # the loop from the low anchor, repeated at the end
        copy_rows(ring, 0, points, low, s0 + n - low)
        copy_rows(ring, s0 + n - low, points, s0, low - s0)
        copy_rows(ring, n, points, low, 1)
        keep = np.zeros(n + 1, np.bool_)
        far = 0
        far_d = -1.0
        for i in range(n):
            d = (ring[i, 0] - ring[0, 0]) ** 2 + (ring[i, 1] - ring[0, 1]) ** 2
            if d > far_d:
                far_d = d
                far = i
        keep[0] = True
        keep[far] = True
        if stack.shape[0] < n + 4:
            stack = np.empty((2 * n + 4, 2), np.int64)
        _douglas_peucker(ring, keep, 0, far, max_deviation, stack)
        _douglas_peucker(ring, keep, far, n, max_deviation, stack)
        m = 0
        for i in range(n):
            if keep[i]:
                m += 1
        if m < 3:
            continue
        out_start[n_kept] = n_out
        kept[n_kept] = li
        n_kept += 1
        for i in range(n):
            if keep[i]:
                copy_rows(out, n_out, ring, i, 1)
                n_out += 1
    out_start[n_kept] = n_out
    return out[:n_out].copy(), out_start[:n_kept + 1].copy(), kept[:n_kept].copy()


def simplify_loops(points: np.ndarray, loop_start: np.ndarray, max_deviation: float = MAX_DEVIATION):
    """Drop loop points that lie within ``max_deviation`` mm of the simplified outline (Douglas-Peucker, closed loops).

    A finely tessellated part gives thousands of points per layer, most of
    them on a nearly straight run; every later step (offsets, infill, G-code)
    costs per point.  At the default 0.01 mm a 50 mm sphere's section keeps
    ~100 points instead of ~1300 and its area changes by about
    ``(4/3) * max_deviation / radius`` (0.05 %).  (No separate minimum segment
    length: a short segment that deviates more than ``max_deviation`` is a real
    feature and is kept.)  Returns ``(points, loop_start, kept)``: ``kept``
    indexes the input loops that survived; a loop that collapses to fewer than
    3 points (a sliver thinner than ``max_deviation``) is dropped.
    """
    if not max_deviation >= 0:
        raise PlanError(f"simplify_loops: max_deviation must be >= 0, got {max_deviation!r}")
    return _simplify_loops(np.ascontiguousarray(points, dtype=np.float64),
                           np.ascontiguousarray(loop_start, dtype=np.int64), float(max_deviation))


# ---------------------------------------------------------------------------
# nesting and orientation


@njit(cache=True, nogil=True)
def _signed_area(pts):
    a = 0.0
    n = pts.shape[0]
    for i in range(n):
        j = (i + 1) % n
        a += pts[i, 0] * pts[j, 1] - pts[j, 0] * pts[i, 1]
    return 0.5 * a


@njit(cache=True, nogil=True)
def _point_in_loop(px, py, pts):
    """1 inside, -1 outside, 0 exactly on the boundary (even-odd rule)."""
    n = pts.shape[0]
    inside = False
    for i in range(n):
        ax, ay = pts[i, 0], pts[i, 1]
        bx, by = pts[(i + 1) % n, 0], pts[(i + 1) % n, 1]
        if (min(ax, bx) <= px <= max(ax, bx) and min(ay, by) <= py <= max(ay, by)
                and (bx - ax) * (py - ay) - (by - ay) * (px - ax) == 0.0):
            return 0
        if (ay > py) != (by > py):
            x = ax + (py - ay) * (bx - ax) / (by - ay)
            if px < x:
                inside = not inside
    return 1 if inside else -1


@njit(cache=True, nogil=True)
def _contains(outer, inner):
    """1 if loop ``inner`` lies inside loop ``outer``, -1 if outside, 0 if it runs along ``outer``'s boundary only.

    The first vertex of ``inner`` not on ``outer``'s boundary decides, else the
    first midpoint of an edge of ``inner`` (a loop through some of ``outer``'s
    corners can still cut across it).
    """
    n = inner.shape[0]
    for i in range(n):
        r = _point_in_loop(inner[i, 0], inner[i, 1], outer)
        if r != 0:
            return r
    for i in range(n):
        j = (i + 1) % n
        r = _point_in_loop(0.5 * (inner[i, 0] + inner[j, 0]), 0.5 * (inner[i, 1] + inner[j, 1]), outer)
        if r != 0:
            return r
    return 0


@njit(cache=True, nogil=True)
def _loop_depths(points, loop_start):
    """How many other loops contain each loop (bounding box and area prefilters, then point in polygon).

    Two loops along the same boundary (a zero-area sheet: a knife edge or two
    parts touching face to face exactly on the plane) nest by their order, so
    one is an outline and the other its hole and together they enclose nothing.
    """
    n = loop_start.shape[0] - 1
    box = np.empty((n, 4), np.float64)
    area = np.empty(n, np.float64)
    for i in range(n):
        pts = points[loop_start[i]:loop_start[i + 1]]
        box[i, 0] = pts[:, 0].min()
        box[i, 1] = pts[:, 1].min()
        box[i, 2] = pts[:, 0].max()
        box[i, 3] = pts[:, 1].max()
        area[i] = abs(_signed_area(pts))
    depth = np.zeros(n, np.int64)
    for i in range(n):
        for j in range(n):
            twin_size = abs(area[j] - area[i]) <= 1e-9 * area[i]  # the same area up to the summation order
            if (i == j or (area[j] <= area[i] and not twin_size) or box[j, 0] > box[i, 0] or box[j, 1] > box[i, 1]
                    or box[j, 2] < box[i, 2] or box[j, 3] < box[i, 3]):
                continue
            r = _contains(points[loop_start[j]:loop_start[j + 1]], points[loop_start[i]:loop_start[i + 1]])
            if r > 0 or (r == 0 and twin_size and j < i):
                depth[i] += 1
    return depth


@njit(cache=True, nogil=True)
def _orient_layers(points, loop_start, layer_loops, min_area):
    """Drop loops under ``min_area``; make even-depth loops CCW and odd-depth loops CW.

    Returns points, loop_start, the new layer_loops and loops dropped per layer.
    """
    n_layers = layer_loops.shape[0] - 1
    out = np.empty_like(points)
    out_start = np.empty(loop_start.shape[0], np.int64)
    out_layers = np.zeros(n_layers + 1, np.int64)
    tiny = np.zeros(n_layers, np.int64)
    n_out = 0
    n_loops = 0
    for k in range(n_layers):
        l0, l1 = layer_loops[k], layer_loops[k + 1]
        big = np.empty(l1 - l0, np.int64)
        n_big = 0
        for li in range(l0, l1):
            if abs(_signed_area(points[loop_start[li]:loop_start[li + 1]])) >= min_area:
                big[n_big] = li
                n_big += 1
            else:
                tiny[k] += 1
        sub_start = np.empty(n_big + 1, np.int64)
        sub_start[0] = 0
        for r in range(n_big):
            li = big[r]
            sub_start[r + 1] = sub_start[r] + loop_start[li + 1] - loop_start[li]
        sub = np.empty((sub_start[n_big], 2), np.float64)
        for r in range(n_big):
            li = big[r]
            copy_rows(sub, sub_start[r], points, loop_start[li], sub_start[r + 1] - sub_start[r])
        depth = _loop_depths(sub, sub_start)
        for r in range(n_big):
            pts = sub[sub_start[r]:sub_start[r + 1]]
            m = pts.shape[0]
            want_ccw = depth[r] % 2 == 0
            out_start[n_loops] = n_out
            n_loops += 1
            if (_signed_area(pts) > 0) == want_ccw:
                copy_rows(out, n_out, pts, 0, m)
            else:
                for i in range(m):
                    out[n_out + i, 0], out[n_out + i, 1] = pts[m - 1 - i, 0], pts[m - 1 - i, 1]
            n_out += m
        out_layers[k + 1] = n_loops
    out_start[n_loops] = n_out
    return out[:n_out].copy(), out_start[:n_loops + 1].copy(), out_layers, tiny


# ---------------------------------------------------------------------------


def _check_planes(z_cut, z_top, height):
    z_cut = np.ascontiguousarray(z_cut, dtype=np.float64)
    z_top = np.ascontiguousarray(z_top, dtype=np.float64)
    height = np.ascontiguousarray(height, dtype=np.float64)
    if z_cut.ndim != 1 or z_top.shape != z_cut.shape or height.shape != z_cut.shape:
        raise PlanError(f"slice_mesh: z_cut, z_top and height must be 1-d and equally long, got "
                        f"{z_cut.shape}, {z_top.shape}, {height.shape}")
    bad = np.flatnonzero(~np.isfinite(z_cut) | ~(height > 0))
    if len(bad):
        raise PlanError(f"slice_mesh: layer {bad[0]} has z_cut {float(z_cut[bad[0]])!r} and height {float(height[bad[0]])!r}")
    bad = np.flatnonzero(np.diff(z_cut) <= 0)
    if len(bad):
        raise PlanError(f"slice_mesh: slicing planes must rise; layer {bad[0] + 1} at z {float(z_cut[bad[0] + 1])!r} "
                        f"is not above layer {bad[0]} at z {float(z_cut[bad[0]])!r}")
    return z_cut, z_top, height


def _check_mesh(mesh: Mesh) -> None:
    if not np.isfinite(mesh.vertices).all():
        raise PlanError(f"mesh {mesh.name!r}: vertex {np.flatnonzero(~np.isfinite(mesh.vertices).all(axis=1))[0]} "
                        f"is not finite")
    if len(mesh.faces) and (mesh.faces.min() < 0 or mesh.faces.max() >= len(mesh.vertices)):
        bad = np.flatnonzero((mesh.faces < 0).any(axis=1) | (mesh.faces >= len(mesh.vertices)).any(axis=1))[0]
        raise PlanError(f"mesh {mesh.name!r}: face {bad} refers to vertex {mesh.faces[bad].tolist()} "
                        f"but there are {len(mesh.vertices)} vertices")


def _slice_planes(mesh: Mesh, z_cut: np.ndarray, gap_tolerance: float, max_deviation: float):
    """One pass over the triangles for the planes ``z_cut``: simplified loops and the per-layer mending counts."""
    points, loop_start, layer_loops, joined, max_gap, dropped, dropped_length = _chains_to_loops(
        *_crossings(mesh.vertices, mesh.faces, z_cut), gap_tolerance)
    collapsed = np.zeros(len(z_cut), np.int64)
    if max_deviation > 0:
        points, loop_start, kept = _simplify_loops(points, loop_start, max_deviation)
        layer_of_loop = np.repeat(np.arange(len(z_cut)), np.diff(layer_loops))
        before = np.diff(layer_loops)
        layer_loops = np.concatenate(([0], np.cumsum(np.bincount(layer_of_loop[kept], minlength=len(z_cut)))))
        collapsed = before - np.diff(layer_loops)
    return points, loop_start, layer_loops, (joined, max_gap, dropped, dropped_length, collapsed)


def slice_mesh(mesh: Mesh, z_cut, z_top, height, gap_tolerance: float = GAP_TOLERANCE,
               max_deviation: float = MAX_DEVIATION, min_loop_area: float = MIN_LOOP_AREA) -> LayerStack:
    """Cut ``mesh`` (welded, faces outward) at the rising planes ``z_cut`` into oriented closed loops.

    ``z_top`` and ``height`` are carried into the LayerStack (see
    ``layer_heights.plan_layers``).  ``max_deviation`` is the simplification
    bound (0 keeps every crossing point); ``gap_tolerance`` the largest gap an
    open chain is closed across; loops under ``min_loop_area`` mm^2 are dropped.
    Everything mended or dropped is listed in ``notes``.
    """
    _check_mesh(mesh)
    z_cut, z_top, height = _check_planes(z_cut, z_top, height)
    for name, value in (("gap_tolerance", gap_tolerance), ("max_deviation", max_deviation),
                        ("min_loop_area", min_loop_area)):
        if not value >= 0:
            raise PlanError(f"slice_mesh: {name} must be >= 0, got {value!r}")
    parts = [_slice_planes(mesh, z_cut[k:k + PLANES_PER_PASS], float(gap_tolerance), float(max_deviation))
             for k in range(0, len(z_cut), PLANES_PER_PASS)]
    points = np.concatenate([part[0] for part in parts])
    point_base = np.cumsum([0] + [len(part[0]) for part in parts[:-1]])
    loop_start = np.concatenate([part[1][:-1] + base for part, base in zip(parts, point_base)] + [[len(points)]])
    loop_base = np.cumsum([0] + [len(part[1]) - 1 for part in parts[:-1]])
    layer_loops = np.concatenate([part[2][:-1] + base for part, base in zip(parts, loop_base)] + [[len(loop_start) - 1]])
    joined, max_gap, dropped, dropped_length, collapsed = (np.concatenate([part[3][i] for part in parts]) for i in range(5))
    del parts
    points, loop_start, layer_loops, tiny = _orient_layers(points, loop_start, layer_loops, float(min_loop_area))
    notes = []
    name = f"mesh {mesh.name!r}" if mesh.name else "mesh"
    for k in np.flatnonzero(joined | dropped | collapsed | tiny):
        where = f"{name} layer {k} (z {z_cut[k]:.3f})"
        if joined[k]:
            notes.append(f"{where}: joined {joined[k]} open chains across gaps up to {max_gap[k]:.4f} mm")
        if dropped[k]:
            notes.append(f"{where}: dropped {dropped[k]} open chains ({dropped_length[k]:.3f} mm) that do not "
                         f"close within {gap_tolerance} mm")
        if collapsed[k]:
            notes.append(f"{where}: dropped {collapsed[k]} loops thinner than {max_deviation} mm")
        if tiny[k]:
            notes.append(f"{where}: dropped {tiny[k]} loops smaller than {min_loop_area} mm^2")
    return LayerStack(z_cut=z_cut, z_top=z_top, height=height, points=points, loop_start=loop_start,
                      layer_start=layer_loops, notes=tuple(notes))
