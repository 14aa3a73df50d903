"""Layer heights: where each layer's top is and how thick it is.

Fixed layers: a first layer of ``first_layer_height`` from the part's bottom,
then ``layer_height`` steps, the last top no higher than half a layer above the
part (so its slicing plane, the layer's middle, still cuts the part).

Adaptive layers (``adaptive_layers``), after Slic3r/PrusaSlicer's cusp-height
method: a layer of height ``h`` on a surface whose unit normal has z
component ``n`` leaves a stair step (cusp) of ``h * |n|``.  Each face therefore
allows ``h = cusp / |n|``, clamped to [adaptive_min_height,
adaptive_max_height], and a layer may be no thicker than the least any face
it spans allows.  The allowed cusp is
``0.5 * lerp(adaptive_max_height, adaptive_min_height, adaptive_quality)``:
at quality 1 shallow surfaces (steeper than ~60 degrees from vertical) get
the thinnest layers; at quality 0 only near-flat ones get less than the maximum.
Exactly horizontal faces need no thin layers (a flat surface has no stair
step) and are ignored.  The per-height limit is built on a grid of bins a
quarter of the minimum height wide, so no layer ever scans the faces.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .fdm_settings import SliceSettings
from .model import Mesh, PlanError

_SMALL_FACE_BINS = 8  # faces spanning more bins are painted by the sorted pass


def _z_range(mesh: Mesh) -> tuple[float, float]:
    if len(mesh.faces) == 0:
        raise PlanError(f"mesh {mesh.name!r} has no faces to slice")
    used = np.zeros(len(mesh.vertices), np.bool_)
    used[mesh.faces.ravel()] = True
    z = mesh.vertices[used, 2]
    if not np.isfinite(z).all():
        raise PlanError(f"mesh {mesh.name!r} has a vertex with a non-finite z")
    return float(z.min()), float(z.max())


def fixed_layers(zmin: float, zmax: float, first_layer_height: float, layer_height: float):
    """``(z_top, height)`` of a first layer and then equal layers; tops computed by multiplication, not summation."""
    n = int(np.floor((zmax + 0.5 * layer_height - (zmin + first_layer_height)) / layer_height + 1e-9))
    z_top = np.concatenate(([zmin + first_layer_height],
                            zmin + first_layer_height + layer_height * np.arange(1, max(n, 0) + 1)))
    height = np.full(len(z_top), layer_height)
    height[0] = first_layer_height
    return z_top, height


@njit(cache=True, nogil=True)
def _face_limits(vertices, faces, cusp, min_height, max_height):
    """Per face: lowest z, highest z and the layer height its slope allows (max_height if it imposes nothing)."""
    m = faces.shape[0]
    lo = np.empty(m, np.float64)
    hi = np.empty(m, np.float64)
    allowed = np.full(m, max_height)
    for f in range(m):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        ux, uy, uz = vertices[b, 0] - vertices[a, 0], vertices[b, 1] - vertices[a, 1], vertices[b, 2] - vertices[a, 2]
        vx, vy, vz = vertices[c, 0] - vertices[a, 0], vertices[c, 1] - vertices[a, 1], vertices[c, 2] - vertices[a, 2]
        nx, ny, nz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx
        norm = np.sqrt(nx * nx + ny * ny + nz * nz)
        lo[f] = min(vertices[a, 2], min(vertices[b, 2], vertices[c, 2]))
        hi[f] = max(vertices[a, 2], max(vertices[b, 2], vertices[c, 2]))
        if norm == 0.0 or hi[f] == lo[f]:
            continue  # degenerate or exactly horizontal: no stair step to limit
        n_cos = abs(nz) / norm
        if n_cos * max_height > cusp:
            allowed[f] = max(min_height, cusp / n_cos)
    return lo, hi, allowed


@njit(cache=True, nogil=True)
def _first_unpainted(next_free, b):
    root = b
    while next_free[root] != root:
        root = next_free[root]
    while next_free[b] != root:  # path compression
        nxt = next_free[b]
        next_free[b] = root
        b = nxt
    return root


@njit(cache=True, nogil=True)
def _height_limit(lo, hi, allowed, zmin, bin_width, n_bins, max_height):
    """Per z bin: the least layer height allowed by any face overlapping the bin.

    Small faces write their bins directly; faces spanning many bins are
    painted in increasing order of allowed height, each bin once, skipping
    painted runs with a path-compressed next-unpainted pointer, so a mesh of
    tall slivers costs O(faces log faces + bins), not faces x bins.
    """
    limit = np.full(n_bins, max_height)
    big = np.empty(lo.shape[0], np.int64)
    n_big = 0
    for f in range(lo.shape[0]):
        if allowed[f] >= max_height:
            continue
        b0 = min(n_bins - 1, int((lo[f] - zmin) / bin_width))
        b1 = min(n_bins - 1, int((hi[f] - zmin) / bin_width))
        if b1 - b0 < _SMALL_FACE_BINS:
            for b in range(b0, b1 + 1):
                limit[b] = min(limit[b], allowed[f])
        else:
            big[n_big] = f
            n_big += 1
    big = big[:n_big]
    big = big[np.argsort(allowed[big], kind="mergesort")]
    next_free = np.arange(n_bins + 1)  # bin b's first unpainted bin at or above b (n_bins: none)
    for f in big:
        b0 = min(n_bins - 1, int((lo[f] - zmin) / bin_width))
        b1 = min(n_bins - 1, int((hi[f] - zmin) / bin_width))
        b = _first_unpainted(next_free, b0)
        while b <= b1:
            limit[b] = min(limit[b], allowed[f])
            next_free[b] = b + 1
            b = _first_unpainted(next_free, b + 1)
    return limit


@njit(cache=True, nogil=True)
def _adaptive_layers(limit, zmin, zmax, bin_width, first_layer_height, min_height, max_height):
    """Stack layers from ``zmin``: each as thick as the least limit over the bins it spans allows."""
    n_bins = limit.shape[0]
    cap = int((zmax - zmin) / min_height) + 3
    z_top = np.empty(cap, np.float64)
    height = np.empty(cap, np.float64)
    z_top[0] = zmin + first_layer_height
    height[0] = first_layer_height
    n = 1
    z = z_top[0]
    while z < zmax and n < cap:
        h = max_height
        while True:
            b0 = min(n_bins - 1, int((z - zmin) / bin_width))
            b1 = min(n_bins - 1, int((z + h - zmin) / bin_width))
            least = limit[b0:b1 + 1].min()
            if least >= h:
                break
            h = max(min_height, least)
            if h == min_height:
                break
        h = min(h, max(zmax - z, min_height))  # end on the top surface when it is near
        if z + 0.5 * h > zmax:
            break
        z += h
        z_top[n] = z
        height[n] = h
        n += 1
    return z_top[:n].copy(), height[:n].copy()


def plan_layers(mesh: Mesh, settings: SliceSettings) -> tuple[np.ndarray, np.ndarray]:
    """``(z_top, height)`` float64 arrays for ``mesh``; a layer is sliced at its middle, ``z_top - height / 2``."""
    zmin, zmax = _z_range(mesh)
    first = settings.first_layer_height
    if zmin + 0.5 * first > zmax:
        raise PlanError(f"mesh {mesh.name!r} is {zmax - zmin:.4g} mm tall, less than half the "
                        f"{first} mm first layer; nothing would be printed")
    if not settings.adaptive_layers:
        return fixed_layers(zmin, zmax, first, settings.layer_height)
    min_h, max_h = settings.adaptive_min_height, settings.adaptive_max_height
    cusp = 0.5 * (max_h + (min_h - max_h) * settings.adaptive_quality)
    lo, hi, allowed = _face_limits(mesh.vertices, mesh.faces, cusp, min_h, max_h)
    bin_width = 0.25 * min_h
    n_bins = int((zmax - zmin) / bin_width) + 1
    limit = _height_limit(lo, hi, allowed, zmin, bin_width, n_bins, max_h)
    return _adaptive_layers(limit, zmin, zmax, bin_width, first, min_h, max_h)
