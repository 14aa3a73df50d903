"""The Z-map as a PNG a person can read: material height on a colour ramp (the deepest
cut dark blue, the stock top light yellow), gouges in red, seen from above with Y up,
with the title and legend bands of the layer previews (:func:`ismctl.preview.draw_bands`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..preview import draw_bands, font_px_for
from .zmap import ZmapReport

# height ramp stops, low to high
_RAMP = np.array([(30, 40, 110), (40, 120, 190), (70, 180, 140), (200, 220, 90), (255, 250, 210)], dtype=np.float64)
GOUGE_RGB = (220, 20, 20)


def _pool(values: np.ndarray, factor: int, reduce) -> np.ndarray:
    """Shrink a map by ``factor`` per side with ``reduce`` over each block (edges padded)."""
    if factor <= 1:
        return values
    ny, nx = values.shape
    py, px = -ny % factor, -nx % factor
    padded = np.pad(values, ((0, py), (0, px)), mode="edge")
    blocks = padded.reshape((ny + py) // factor, factor, (nx + px) // factor, factor)
    return reduce(blocks, axis=(1, 3))


def colour_ramp(fraction: np.ndarray) -> np.ndarray:
    """0..1 -> RGB uint8 along the ramp."""
    f = np.clip(np.nan_to_num(fraction), 0.0, 1.0) * (len(_RAMP) - 1)
    k = np.minimum(f.astype(np.int64), len(_RAMP) - 2)
    w = (f - k)[..., None]
    return (_RAMP[k] * (1 - w) + _RAMP[k + 1] * w).round().astype(np.uint8)


def render(report: ZmapReport, out: Path, size: int = 800) -> Path:
    """Write the height map of ``report`` to ``out`` (PNG, ``size`` px square plus bands)."""
    grid, stock = report.grid, report.stock
    factor = max(1, math.ceil(max(grid.nx, grid.ny) / size))
    height = _pool(report.height, factor, np.mean)
    gouge = _pool(report.gouge, factor, np.any)  # a one-cell gouge stays visible when shrunk
    low, top = float(min(report.height.min(), stock.hi[2] - 1e-3)), float(stock.hi[2])  # ramp over what was cut
    rgb = colour_ramp((height - low) / (top - low))
    rgb[gouge] = GOUGE_RGB
    picture = Image.fromarray(np.ascontiguousarray(rgb[::-1]), "RGB")  # row 0 is the lowest Y
    scale = size / max(picture.width, picture.height)
    picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                             Image.NEAREST)
    band = 2 * font_px_for(size)
    image = Image.new("RGB", (size, size + 2 * band), "white")
    image.paste(picture, ((size - picture.width) // 2, band + (size - picture.height) // 2))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_px_for(size))
    verdict = "clean" if report.clean else f"{int(report.gouge.sum())} gouged cells, {len(report.collisions)} rapid collisions"
    title = (f"Z-map {grid.nx} x {grid.ny} cells of {grid.cell:g} mm   "
             f"{report.tool.shape} {report.tool.diameter:g} mm   {verdict}")
    legend = [(tuple(int(c) for c in _RAMP[0]), f"z {low:.3g}"),
              (tuple(int(c) for c in _RAMP[-1]), f"z {top:.3g} (stock top)"),
              (GOUGE_RGB, f"gouge > {report.tolerance:g} mm")]
    draw_bands(draw, size, band, font, title, legend)
    out = Path(out)
    image.save(out, format="PNG")  # whatever the name ends in: PIL would refuse an unknown suffix
    return out
