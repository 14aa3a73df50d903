"""Layer previews: G-code of several slicers to segments by kind and layer, and the PNGs drawn from them."""

import math
import re

import numpy as np
import pytest
from PIL import Image

from ismctl import preview
from ismctl.plan.model import PathKind, PlanError

K = PathKind

# Two layers (Cura markers): a 20 mm square wall, a diagonal fill line, a travel
# at x = 28 between them; a purge line before the first marker that is no layer.
CURA = """\
;FLAVOR:Marlin
M82 ;absolute extrusion mode
G90
G92 E0
G1 X0 Y0 Z0.3 F3000
G1 X0 Y50 E5 ;purge line
G92 E0
;LAYER:0
G0 X10 Y10 Z0.2
;TYPE:WALL-OUTER
G1 X30 Y10 E0.75
G1 X30 Y30 E1.5
G1 X10 Y30 E2.25
G1 X10 Y10 E3
G0 X28 Y14
G0 X28 Y26
G0 X12 Y12
;TYPE:FILL
G1 X28 Y28 E3.85
G1 E3.05 ;retract
;LAYER:1
G0 X10 Y10 Z0.4
G1 E3.85
;TYPE:WALL-OUTER
G1 X30 Y10 E4.6
G1 X30 Y30 E5.35
G1 X10 Y30 E6.1
G1 X10 Y10 E6.85
"""

SQUARE = [(10, 10, 30, 10), (30, 10, 30, 30), (30, 30, 10, 30), (10, 30, 10, 10)]


def colour(kind):
    return preview.KIND_COLOURS[kind][0]


def pixels_of(image, rgb, frame):
    """(x, y) pixel coordinates of the drawing square that have exactly colour ``rgb``."""
    a = np.asarray(image)[frame.band:frame.band + frame.size]
    ys, xs = np.nonzero((a == np.array(rgb, np.uint8)).all(axis=2))
    return np.stack([xs, ys + frame.band], axis=1).astype(float)


def distance_to_segments(points, segments, frame):
    """Pixel distance of each point to the nearest of ``segments`` (mm, drawn in ``frame``)."""
    seg = frame.to_pixels(np.asarray(segments, float).reshape(-1, 2, 2))
    a, b = seg[:, 0], seg[:, 1]
    d = b - a
    t = np.clip(((points[:, None, :] - a) * d).sum(axis=2) / (d * d).sum(axis=1), 0, 1)
    nearest = a + t[..., None] * d
    return np.sqrt(((points[:, None, :] - nearest) ** 2).sum(axis=2)).min(axis=1)


def pixel(image, frame, xy):
    px, py = np.round(frame.to_pixels(np.array(xy, float))).astype(int)
    return image.getpixel((int(px), int(py)))


def test_cura_layers_kinds_and_segments():
    layers = preview.layers_from_gcode(CURA)
    assert [layer.index for layer in layers] == [0, 1]
    assert [layer.z for layer in layers] == [0.2, 0.4]
    first = layers[0]
    assert first.kinds.dtype == np.int8 and first.segments.dtype == np.float64
    assert first.kinds.tolist() == [K.TRAVEL, *[K.WALL_OUTER] * 4, K.TRAVEL, K.TRAVEL, K.TRAVEL, K.INFILL]
    np.testing.assert_array_equal(first.segments[1:5], SQUARE)
    np.testing.assert_array_equal(first.segments[8], [12, 12, 28, 28])
    # the retraction after the fill and the unretraction on layer 1 are no segments
    assert layers[1].kinds.tolist() == [K.TRAVEL, *[K.WALL_OUTER] * 4]
    # 0.75 mm of 1.75 mm filament over 20 mm at 0.2 mm layer height
    assert first.width == pytest.approx(math.pi * 0.875 ** 2 * 0.75 / (20 * 0.2))


def test_rendered_pixels_show_wall_fill_and_travel(tmp_path):
    layers = preview.layers_from_gcode(CURA)
    paths = preview.render_layers(layers, [0, -1], tmp_path, size=400)
    assert paths == [tmp_path / "layer-0.png", tmp_path / "layer-1.png"]
    frame = preview.PixelFrame.for_image(layers, 400)
    assert frame.line_px > 1  # at this scale the walls are drawn as wide as they print
    half = frame.line_px / 2 + 1.5
    with Image.open(paths[0]) as image:
        image = image.convert("RGB")
        wall = pixels_of(image, colour(K.WALL_OUTER), frame)
        assert len(wall) > 0
        assert distance_to_segments(wall, SQUARE, frame).max() <= half
        for x0, y0, x1, y1 in SQUARE:  # every edge is drawn along its length
            for t in (0.25, 0.5, 0.75):
                assert pixel(image, frame, (x0 + t * (x1 - x0), y0 + t * (y1 - y0))) == colour(K.WALL_OUTER)
        fill = pixels_of(image, colour(K.INFILL), frame)
        assert distance_to_segments(fill, [(12, 12, 28, 28)], frame).max() <= half
        for t in (0.2, 0.5, 0.8):
            assert pixel(image, frame, (12 + 16 * t, 12 + 16 * t)) == colour(K.INFILL)
        travel = pixels_of(image, colour(K.TRAVEL), frame)  # a 1 px line: within a pixel of where it runs
        assert np.abs(travel - frame.to_pixels(np.array([28.0, 20.0]))).max(axis=1).min() <= 1
        assert pixel(image, frame, (20, 14)) == (255, 255, 255)  # inside the square, nothing printed
        drawn = {tuple(c) for c in np.asarray(image).reshape(-1, 3)}
        assert colour(K.SKIN) not in drawn and colour(K.WALL_INNER) not in drawn  # nor in the legend
    with Image.open(paths[1]) as image:
        image = image.convert("RGB")
        assert len(pixels_of(image, colour(K.INFILL), frame)) == 0
        # the fill line of layer 0 shows faintly under layer 1 (beside its 1 px travel back along it)
        px, py = np.round(frame.to_pixels(np.array([20.0, 20.0]))).astype(int)
        assert image.getpixel((int(px) + frame.line_px // 3, int(py))) == preview._PREVIOUS_COLOUR


def test_travels_can_be_left_out(tmp_path):
    layers = preview.layers_from_gcode(CURA)
    (path,) = preview.render_layers(layers, [0], tmp_path, size=300, travels=False)
    frame = preview.PixelFrame.for_image(layers, 300)
    with Image.open(path) as image:
        assert len(pixels_of(image.convert("RGB"), colour(K.TRAVEL), frame)) == 0


PRUSA = """\
; generated by PrusaSlicer 2.6.1
G90
M83 ; extruder relative mode
G1 Y-3.0 F1000.0
G92 E0.0
G1 X60.0 E9.0 F1000.0 ; intro line
;LAYER_CHANGE
;Z:0.2
;HEIGHT:0.2
G1 E-.8 F2100
G1 Z.2 F10800
G1 X10 Y10
G1 E.8 F2100
;TYPE:External perimeter
;WIDTH:0.45
G1 X20 Y10 E.5
G1 X20 Y20 E.5
;TYPE:Perimeter
G1 X11 Y11 E.3
;TYPE:Overhang perimeter
G1 X12 Y11 E.1
;TYPE:Solid infill
G1 X13 Y11 E.1
;TYPE:Top solid infill
G1 X14 Y11 E.1
;TYPE:Bridge infill
G1 X15 Y11 E.1
;TYPE:Gap fill
G1 X16 Y11 E.1
;TYPE:Internal infill
G1 X17 Y11 E.1
;TYPE:Skirt/Brim
G1 X18 Y11 E.1
;TYPE:Support material
G1 X19 Y11 E.1
G1 X19 Y12 E-.4 ; wipe while retracting
;LAYER_CHANGE
;Z:0.4
G1 Z.4
;TYPE:Skirt
G1 X19 Y19 E.2
"""


def test_prusaslicer_markers_types_and_relative_e():
    layers = preview.layers_from_gcode(PRUSA)
    assert len(layers) == 2
    assert [layer.z for layer in layers] == [0.2, 0.4]
    first = layers[0]
    assert first.kinds.tolist() == [
        K.TRAVEL, K.WALL_OUTER, K.WALL_OUTER, K.WALL_INNER, K.WALL_OUTER, K.SKIN, K.SKIN, K.SKIN, K.SKIN,
        K.INFILL, K.SKIRT, preview.OTHER, K.TRAVEL]
    np.testing.assert_array_equal(first.segments[:3], [(60, -3, 10, 10), (10, 10, 20, 10), (20, 10, 20, 20)])
    assert layers[1].kinds.tolist() == [K.SKIRT]
    np.testing.assert_array_equal(layers[1].segments, [(19, 12, 19, 19)])


def test_absolute_e_with_g92_resets():
    text = """\
M82
;LAYER:0
G1 Z0.2
G1 X10 Y0 E10
G92 E0
G1 X20 Y0 E0.5
G1 X30 Y0 E0.4
G92 E0.4
G1 X40 Y0 E0.9
G92
G1 X50 Y0 E1
"""
    (layer,) = preview.layers_from_gcode(text)
    # after the reset E0.5 extrudes; E0.4 then is a retraction while moving; G92 E0.4 keeps
    # the next move extruding; a bare G92 zeroes every axis, so the last move starts at x = 0
    assert layer.kinds.tolist() == [preview.OTHER, preview.OTHER, K.TRAVEL, preview.OTHER, preview.OTHER]
    np.testing.assert_array_equal(layer.segments[:, [0, 2]], [(0, 10), (10, 20), (20, 30), (30, 40), (0, 50)])


def test_retractions_and_z_moves_are_not_segments():
    text = """\
M83
;LAYER:0
;TYPE:SKIN
G1 X1 Y1 Z0.2 E0.1
G1 E-1
G1 Z0.6
G1 Z0.2
G1 E1
G1 F1200
G1 X2 Y1 E0.1
"""
    (layer,) = preview.layers_from_gcode(text)
    assert layer.kinds.tolist() == [K.SKIN, K.SKIN]
    np.testing.assert_array_equal(layer.segments, [(0, 0, 1, 1), (1, 1, 2, 1)])


def test_layers_from_z_relative_moves_inches_and_arcs():
    text = """\
G91
M82
G1 X10 Y10 Z0.2
G1 X10 E1
G90
G1 X20 Y20 E2
G1 Z0.4
G0 X0 Y0
G1 X0 Y10 E3
G2 X10 Y0 I0 J-10 E4
G3 X0 Y10 R-10 E5
G20
G1 X1 Y1 E6
"""
    layers = preview.layers_from_gcode(text)
    assert [layer.z for layer in layers] == [0.2, 0.4]
    first, second = layers
    np.testing.assert_array_equal(first.segments, [(0, 0, 10, 10), (10, 10, 20, 10), (20, 10, 20, 20)])
    # the travel to the next layer's start belongs to it
    assert second.kinds[0] == K.TRAVEL
    np.testing.assert_array_equal(second.segments[0], (20, 20, 0, 0))
    arcs = second.segments[2:-1]
    ends = np.concatenate([arcs[:, :2], arcs[:, 2:]])
    # G2 around (0, 0) and G3 the long way round (R < 0) around (10, 10): every chord end on its circle
    clockwise = arcs[:16]
    assert len(arcs) > 32
    np.testing.assert_allclose(np.hypot(*np.concatenate([clockwise[:, :2], clockwise[:, 2:]]).T), 10)
    long_way = arcs[16:]
    np.testing.assert_allclose(np.hypot(*(np.concatenate([long_way[:, :2], long_way[:, 2:]]) - 10).T), 10)
    assert ends[:, 0].min() == pytest.approx(0) and ends[:, 0].max() == pytest.approx(20, abs=0.1)
    np.testing.assert_array_equal(second.segments[-1], (0, 10, 25.4, 25.4))


def test_bad_layer_index_and_bad_numbers_are_plan_errors(tmp_path):
    layers = preview.layers_from_gcode(CURA)
    with pytest.raises(PlanError, match=r"layer 2 out of range: the G-code has 2 layers"):
        preview.render_layers(layers, [0, 2], tmp_path)
    with pytest.raises(PlanError, match=r"layer -3 out of range"):
        preview.render_layers(layers, [-3], tmp_path)
    assert not list(tmp_path.iterdir())
    with pytest.raises(PlanError, match=r"line 3: bad number in 'G1 X1\.2\.3 Y4 ; here'"):
        preview.layers_from_gcode(";LAYER:0\nG1 X1 Y1\nG1 X1.2.3 Y4 ; here\n")
    with pytest.raises(PlanError, match=r"line 1: bad number"):
        preview.layers_from_gcode("G92 E1.2.3\n")


def test_no_moves_no_layers():
    assert preview.layers_from_gcode("") == []
    assert preview.layers_from_gcode("M104 S200\n; only comments\n") == []


# ---------------------------------------------------------------------------
# the Numba word reader against a plain Python reading of the same lines

_REFERENCE_WORD = re.compile(r"([A-Za-z]) ?([-+]?[0-9.+-]*)")


def reference_words(lines, letters):
    """Per line and letter the last number after that letter (NaN if none); None for a malformed line."""
    out = np.full((len(lines), len(letters)), np.nan)
    for i, line in enumerate(lines):
        for letter, number in _REFERENCE_WORD.findall(line):
            if not number or letter.lower() not in letters.lower():
                continue
            if not re.fullmatch(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)", number) or len(re.sub(r"\D", "", number)) > 15:
                return i, None
            out[i, letters.lower().index(letter.lower())] = float(number)
    return -1, out


def kernel_words(lines, letters):
    text = "".join(line + "\n" for line in lines).encode()
    ends = np.cumsum([len(line) + 1 for line in lines]) - 1
    begins = ends - [len(line) for line in lines]
    column = np.full(256, -1, np.int64)
    for k, c in enumerate(letters.lower()):
        column[ord(c)] = k
    out = np.full((len(lines), len(letters)), np.nan)
    bad = preview.read_words(np.frombuffer(text + b"\0", np.uint8), np.arange(len(lines)), begins.astype(np.int64),
                             ends.astype(np.int64), column, out)
    return bad, out if bad < 0 else None


@pytest.mark.parametrize("lines", [
    ["X1 Y2 E3", "x-.5 y+7. e0.00001", "X 10 Y 20", "X1Y2E3F1500", "X Y5", "F1200", "", "X123456.789012345"],
    ["X1 Y2", "X1.2.3"],
    ["E-"],
    ["Y1-2"],
    ["X1234567890123456"],
])
def test_read_words_matches_python(lines):
    bad, got = kernel_words(lines, "XYE")
    want_bad, want = reference_words(lines, "XYE")
    assert bad == want_bad
    if want is not None:
        np.testing.assert_array_equal(got, want)


def test_read_words_matches_python_on_random_numbers():
    rng = np.random.default_rng(7)
    values = rng.uniform(-500, 500, (200, 3))
    lines = [" ".join(f"{c}{v:.{int(d)}f}" for c, v, d in zip("XYE", row, rng.integers(0, 7, 3))) for row in values]
    bad, got = kernel_words(lines, "XYE")
    want_bad, want = reference_words(lines, "XYE")
    assert bad == want_bad == -1
    np.testing.assert_array_equal(got, want)
