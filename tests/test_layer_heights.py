"""Layer heights: fixed stacks, adaptive stacks against slow references, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from ismctl.plan import layer_heights
from ismctl.plan.fdm_settings import SliceSettings
from ismctl.plan.layer_heights import plan_layers
from ismctl.plan.model import Mesh, PlanError


def mesh_of(tm: trimesh.Trimesh, name: str = "") -> Mesh:
    return Mesh(np.asarray(tm.vertices), np.asarray(tm.faces), name)


def assert_contiguous(zmin, z_top, height):
    assert np.all(height > 0)
    assert z_top[0] - height[0] == pytest.approx(zmin, abs=1e-9)
    assert np.allclose(z_top[1:] - height[1:], z_top[:-1], atol=1e-9)


def ref_limit(lo, hi, allowed, zmin, bin_width, n_bins, max_height):
    limit = np.full(n_bins, max_height)
    for f in range(len(lo)):
        b0 = min(n_bins - 1, int((lo[f] - zmin) / bin_width))
        b1 = min(n_bins - 1, int((hi[f] - zmin) / bin_width))
        limit[b0:b1 + 1] = np.minimum(limit[b0:b1 + 1], allowed[f])
    return limit


def test_fixed_layers_of_a_box():
    tm = trimesh.creation.box(extents=[10, 10, 5])
    tm.apply_translation([0, 0, 2.5 + 1.0])  # zmin 1, zmax 6
    z_top, height = plan_layers(mesh_of(tm), SliceSettings(first_layer_height=0.3, layer_height=0.2))
    assert_contiguous(1.0, z_top, height)
    assert height[0] == 0.3 and np.all(height[1:] == 0.2)
    assert z_top[-1] <= 6.0 + 0.1 + 1e-9 and z_top[-1] + 0.2 > 6.0 + 0.1 - 1e-9  # the last layer that fits
    assert len(z_top) == 25  # tops 1.3 + 0.2 k for k = 0..24; the last, 6.1, is half a layer above the box
    assert z_top[-1] == pytest.approx(1.0 + 0.3 + 24 * 0.2)


def test_adaptive_layers_thin_on_shallow_slopes_and_thick_on_walls():
    sphere = mesh_of(trimesh.creation.icosphere(subdivisions=4, radius=20))
    settings = SliceSettings(adaptive_layers=True, adaptive_quality=0.5)
    z_top, height = plan_layers(sphere, settings)
    assert_contiguous(-20.0, z_top, height)
    assert np.all(height[1:] >= settings.adaptive_min_height - 1e-12)
    assert np.all(height[1:] <= settings.adaptive_max_height + 1e-12)
    z_mid = z_top - height / 2
    assert height[np.abs(z_mid) < 3].min() == settings.adaptive_max_height  # near-vertical at the equator
    assert height[1:][np.abs(z_mid[1:]) > 19].max() < 0.12  # near-flat at the poles
    assert z_top[-1] <= 20.0 + height[-1] / 2 + 1e-9
    finer = plan_layers(sphere, settings.replace(adaptive_quality=1.0))[0]
    coarser = plan_layers(sphere, settings.replace(adaptive_quality=0.0))[0]
    assert len(coarser) < len(z_top) < len(finer)


def test_adaptive_layers_respect_every_face_they_span():
    """Slow reference check: no layer is thicker than any sloped face it overlaps allows."""
    tm = trimesh.creation.cone(radius=10, height=15, sections=48)
    mesh = mesh_of(tm)
    settings = SliceSettings(adaptive_layers=True, adaptive_quality=0.7)
    z_top, height = plan_layers(mesh, settings)
    min_h, max_h = settings.adaptive_min_height, settings.adaptive_max_height
    cusp = 0.5 * (max_h + (min_h - max_h) * settings.adaptive_quality)
    tri = mesh.vertices[mesh.faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n_cos = np.abs(normal[:, 2]) / np.linalg.norm(normal, axis=1)
    lo, hi = tri[:, :, 2].min(axis=1), tri[:, :, 2].max(axis=1)
    for top, h in zip(z_top[1:-1], height[1:-1]):
        spanned = (lo < top) & (hi > top - h) & (hi > lo)
        allowed = np.clip(cusp / np.maximum(n_cos[spanned], 1e-12), min_h, max_h)
        assert h <= allowed.min() + 1e-9
    assert height[1:-1].max() < max_h  # the cone's slope limits it everywhere


def test_height_limit_matches_reference():
    rng = np.random.default_rng(2)
    lo = rng.uniform(0, 10, 300)
    hi = lo + np.where(rng.random(300) < 0.2, rng.uniform(0, 8, 300), rng.uniform(0, 0.05, 300))
    allowed = rng.uniform(0.08, 0.3, 300)
    allowed[::7] = 0.3
    limit = layer_heights._height_limit(lo, hi, allowed, 0.0, 0.02, int(18 / 0.02) + 1, 0.3)
    assert np.array_equal(limit, ref_limit(lo, hi, allowed, 0.0, 0.02, int(18 / 0.02) + 1, 0.3))


def test_adaptive_stack_matches_reference():
    rng = np.random.default_rng(4)
    limit = rng.uniform(0.08, 0.3, 400)
    z_top, height = layer_heights._adaptive_layers(limit, 0.0, 7.5, 0.02, 0.3, 0.08, 0.3)
    ref_top, ref_h, z = [0.3], [0.3], 0.3
    while z < 7.5:
        h = 0.3
        while True:
            least = limit[min(399, int(z / 0.02)):min(399, int((z + h) / 0.02)) + 1].min()
            if least >= h:
                break
            h = max(0.08, least)
            if h == 0.08:
                break
        h = min(h, max(7.5 - z, 0.08))
        if z + h / 2 > 7.5:
            break
        z += h
        ref_top.append(z)
        ref_h.append(h)
    assert np.array_equal(z_top, ref_top) and np.array_equal(height, ref_h)


def test_bad_meshes_are_named():
    flat = Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0.1]], float), np.array([[0, 1, 2]]), "flake")
    with pytest.raises(PlanError, match="flake.*less than half"):
        plan_layers(flat, SliceSettings())
    with pytest.raises(PlanError, match="empty.*no faces"):
        plan_layers(Mesh(np.zeros((0, 3)), np.zeros((0, 3), int), "empty"), SliceSettings())
