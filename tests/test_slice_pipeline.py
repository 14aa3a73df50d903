"""The whole FDM chain on real meshes, checked by independent means.

The G-code is read back by a small parser written here (not ours), and the
geometry is checked with trimesh cross-sections and shapely, so a bug shared by
the slicer's own steps cannot hide.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import shapely
import trimesh
from shapely.geometry import LineString, Point

from ismctl import gcode
from ismctl.plan import fdm
from ismctl.plan.fdm_settings import SliceSettings
from ismctl.plan.model import Mesh, PlanError
from sim_helpers import check_motion_estimate

FILAMENT_AREA = math.pi * (1.75 / 2) ** 2


def as_mesh(tm: trimesh.Trimesh, name: str) -> Mesh:
    return Mesh(np.asarray(tm.vertices), np.asarray(tm.faces), name)


def tube() -> trimesh.Trimesh:
    return trimesh.creation.annulus(r_min=6.0, r_max=12.0, height=4.0, sections=96)


def extrusions(text: str) -> dict[int, list[tuple[str, float, np.ndarray, np.ndarray, float]]]:
    """Per layer: (type, z, start xy, end xy, filament mm) of every extruding move (M82 or M83, G92)."""
    layers: dict[int, list] = {}
    layer, kind, relative, pos, e = -1, "", False, np.zeros(3), 0.0
    for raw in text.splitlines():
        if raw.startswith(";LAYER:"):
            layer = int(raw[7:])
        elif raw.startswith(";TYPE:"):
            kind = raw[6:].strip()
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] == "M83":
            relative = True
        elif words[0] == "M82":
            relative = False
        elif words[0] == "G92":
            e = next((float(w[1:]) for w in words[1:] if w[0] == "E"), e)
        elif words[0] in ("G0", "G1"):
            args = {w[0]: float(w[1:]) for w in words[1:]}
            new = pos.copy()
            for i, axis in enumerate("XYZ"):
                new[i] = args.get(axis, new[i])
            de = 0.0
            if "E" in args:
                de = args["E"] if relative else args["E"] - e
                e = e + de if relative else args["E"]
            if de > 0 and np.hypot(*(new[:2] - pos[:2])) > 0:
                layers.setdefault(layer, []).append((kind, new[2], pos[:2].copy(), new[:2].copy(), de))
            pos = new
    return layers


def outline(tm: trimesh.Trimesh, z: float):
    """The independent cross-section at height ``z`` as a shapely geometry."""
    section = tm.section(plane_origin=[0, 0, z], plane_normal=[0, 0, 1])
    region = shapely.Polygon()
    for loop in section.discrete:  # closed loops in world XY; even-odd: holes cancel out
        region = region.symmetric_difference(shapely.Polygon(loop[:, :2]).buffer(0))
    return region


@pytest.fixture(scope="module")
def sliced_tube():
    settings = SliceSettings(first_layer_height=0.2, skirt_loops=1)
    tm = tube()
    result = fdm.slice_mesh(as_mesh(tm, "tube"), settings)
    placed = trimesh.Trimesh(tm.vertices + result.placement, tm.faces)
    return settings, placed, result


def test_every_printed_move_lies_inside_the_outline(sliced_tube):
    settings, placed, result = sliced_tube
    layers = extrusions(result.gcode)
    assert len(layers) == result.program.meta["layers"] == 20
    tolerance = 0.02
    for index, moves in layers.items():
        z = moves[0][1]
        allowed = outline(placed, z - settings.layer_height / 2).buffer(-settings.line_width / 2 + tolerance)
        for kind, _, a, b, _ in moves:
            if kind in ("SKIRT", "BRIM"):
                continue
            assert allowed.covers(LineString([a, b])), f"layer {index}: {kind} move {a} -> {b} leaves the outline"


def test_skirt_surrounds_the_part_at_its_distance(sliced_tube):
    settings, placed, result = sliced_tube
    first = outline(placed, 0.1)
    skirt = [(a, b) for kind, _, a, b, _ in extrusions(result.gcode)[0] if kind == "SKIRT"]
    assert skirt, "the first layer has a skirt"
    gaps = [first.distance(Point(a)) for a, _ in skirt]
    assert min(gaps) >= settings.skirt_distance - 0.05
    assert max(gaps) <= settings.skirt_distance + settings.first_layer_line_width + 0.5


def test_solid_layers_extrude_area_times_height(sliced_tube):
    """Bottom and top layers are solid: filament volume = cross-section area x layer height (within 2 %)."""
    settings, placed, result = sliced_tube
    layers = extrusions(result.gcode)
    for index in (1, 2, 17, 18):  # solid (4 bottom, 4 top); layer 0 uses the wider first-layer line
        moves = [m for m in layers[index] if m[0] not in ("SKIRT", "BRIM")]
        volume = sum(m[4] for m in moves) * FILAMENT_AREA
        area = outline(placed, moves[0][1] - settings.layer_height / 2).area
        assert volume == pytest.approx(area * settings.layer_height, rel=0.02), f"layer {index}"


def test_sparse_layers_extrude_walls_plus_density(sliced_tube):
    settings, placed, result = sliced_tube
    layers = extrusions(result.gcode)
    index = 10
    moves = layers[index]
    section = outline(placed, moves[0][1] - settings.layer_height / 2)
    walls = section.area - section.buffer(-settings.perimeters * settings.line_width).area
    sparse = section.buffer(-settings.perimeters * settings.line_width).area
    expected = (walls + settings.infill_density * sparse) * settings.layer_height
    volume = sum(m[4] for m in moves) * FILAMENT_AREA
    assert volume == pytest.approx(expected, rel=0.08)
    assert {m[0] for m in moves} == {"WALL-OUTER", "WALL-INNER", "FILL"}


def test_gcode_reads_back_as_the_same_program(sliced_tube):
    _, _, result = sliced_tube
    parsed = gcode.parse(result.gcode, name="tube")
    assert parsed.commands == result.program.commands
    assert len(result.parts) == len(result.program)  # what `ismctl slice` reports without making the Program
    assert np.array_equal(parsed.source_line, result.program.source_line)
    assert parsed.layer_count == result.program.layer_count == result.program.meta["layers"]
    assert gcode.validate(result.gcode) == []
    header = dict(line[1:].split(":", 1) for line in result.gcode.splitlines()[:12] if line.startswith(";") and ":" in line)
    assert int(header["LAYER_COUNT"]) == 20
    assert float(header["TIME"]) == pytest.approx(result.program.meta["estimated_s"], abs=1)


def test_cube_with_vertices_on_every_layer_plane():
    """A 10 mm cube at 0.2 mm layers: its top face lies exactly on a layer boundary."""
    settings = SliceSettings(first_layer_height=0.2, infill_density=1.0, skirt_loops=0)
    result = fdm.slice_mesh(as_mesh(trimesh.creation.box((10, 10, 10)), "cube"), settings)
    layers = extrusions(result.gcode)
    assert len(layers) == 50
    for index in (3, 25, 49):
        volume = sum(m[4] for m in layers[index]) * FILAMENT_AREA
        assert volume == pytest.approx(100 * 0.2, rel=0.02), f"layer {index}"


def test_open_mesh_is_refused_with_a_reason():
    box = trimesh.creation.box((10, 10, 10))
    open_box = Mesh(box.vertices, box.faces[:-2], "open-box")
    with pytest.raises(PlanError, match="open"):
        fdm.slice_mesh(open_box, SliceSettings())


def test_part_larger_than_the_bed_is_refused():
    with pytest.raises(PlanError, match="build volume"):
        fdm.slice_mesh(as_mesh(trimesh.creation.box((300, 20, 20)), "plank"), SliceSettings())


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ismctl", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_cli_slices_an_stl_and_previews_it(tmp_path):
    stl = tmp_path / "tube.stl"
    tube().export(stl)
    out = tmp_path / "tube.gcode"
    done = run_cli("slice", str(stl), "-o", str(out), "--layer-height", "0.25", "--perimeters", "3",
                   "--infill", "15", "--pattern", "gyroid", "--temp", "215", "--json", "--timings")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["layers"] == 16 and info["filament_g"] > 0
    assert set(info["timings_s"]) == set(fdm.STEPS)
    assert [line.split()[1] for line in done.stderr.splitlines() if line.startswith("timing ")] == list(fdm.STEPS)
    text = out.read_text()
    assert "M104 S215" in text and ";LAYER:15" in text and ";LAYER:16" not in text
    shots = tmp_path / "shots"
    done = run_cli("preview", str(out), "--layers", "0,-1", "-o", str(shots))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in shots.iterdir()) == ["layer-0.png", "layer-15.png"]


def test_cli_names_a_broken_mesh(tmp_path):
    stl = tmp_path / "broken.stl"
    data = trimesh.creation.box((10, 10, 10)).export(file_type="stl")
    stl.write_bytes(data[:-30])
    done = run_cli("slice", str(stl))
    assert done.returncode == 1
    assert "broken.stl" in done.stderr and "Traceback" not in done.stderr
    assert not stl.with_suffix(".gcode").exists()


def test_time_estimate_within_5_percent_of_the_simulator(sliced_tube, tmp_path):
    _, _, result = sliced_tube
    estimated, simulated = check_motion_estimate(result.program, tmp_path / "exec.log")
    assert estimated > 60  # a real print, not a degenerate program
