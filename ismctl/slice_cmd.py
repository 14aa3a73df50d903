"""`ismctl slice` and `ismctl preview`: plan a mesh into G-code on this machine.

No supervisor is needed.  Settings come from the built-in profile (0.4 mm
nozzle, PLA), then the ``[slicing]`` table of ``--config`` (a cell config or a
profile file), then the command-line options; machine limits for the time
estimate come from the config's printer (``[devices.<name>.motion]``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

from .plan.fdm_settings import PATTERNS, SliceSettings
from .plan.model import MESH_SUFFIXES, PlanError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LOCAL_COMMANDS = ("slice", "preview")

SLICE_EPILOG = """\
examples:
  ismctl slice part.stl                          part.gcode with the default PLA profile
  ismctl slice part.3mf -o out.gcode --layer-height 0.12 --infill 15 --pattern gyroid
  ismctl slice part.stl --config configs/demo-cell.toml --timings
                                                 the cell's [slicing] profile and printer limits;
                                                 print where the time goes
"""
PREVIEW_EPILOG = """\
examples:
  ismctl preview part.gcode                      first, middle and last layer as PNGs in ./preview/
  ismctl preview part.stl --layers 0,10,-1 -o shots
                                                 slice the mesh, then draw layers 0, 10 and the top one
"""


def _speed_scale(settings: SliceSettings, speed: float) -> dict:
    """--speed sets the base print speed; every feature speed scales with it, as in a slicer profile."""
    factor = speed / settings.print_speed
    names = ("print_speed", "outer_wall_speed", "inner_wall_speed", "infill_speed", "skin_speed")
    return {name: getattr(settings, name) * factor for name in names}


def add_slicing_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("slicing (defaults: built-in PLA profile, then --config's [slicing] table)")
    g.add_argument("--layer-height", type=float, metavar="MM", help="layer height (default 0.2)")
    g.add_argument("--first-layer-height", type=float, metavar="MM", help="first layer height (default 0.3)")
    g.add_argument("--adaptive", action="store_true", default=None, help="adaptive layer heights by surface slope")
    g.add_argument("--perimeters", type=int, metavar="N", help="walls per outline (default 2)")
    g.add_argument("--top-layers", type=int, metavar="N", help="solid layers on top (default 4)")
    g.add_argument("--bottom-layers", type=int, metavar="N", help="solid layers at the bottom (default 4)")
    g.add_argument("--infill", type=_percent, metavar="PERCENT", help="sparse infill density, 0-100 (default 20)")
    g.add_argument("--pattern", choices=PATTERNS, help="sparse infill pattern (default grid)")
    g.add_argument("--nozzle", type=float, metavar="MM", help="nozzle diameter (default 0.4)")
    g.add_argument("--line-width", type=float, metavar="MM", help="extrusion width (default 0.45)")
    g.add_argument("--filament-diameter", type=float, metavar="MM", help="filament diameter (default 1.75)")
    g.add_argument("--temp", type=float, metavar="C", help="nozzle temperature (default 210)")
    g.add_argument("--bed-temp", type=float, metavar="C", help="bed temperature (default 60)")
    g.add_argument("--speed", type=float, metavar="MM/S", help="base print speed; feature speeds scale with it (default 60)")
    g.add_argument("--skirt", type=int, metavar="LOOPS", help="skirt loops around the first layer (default 1; 0 = none)")
    g.add_argument("--brim", type=float, metavar="MM", help="brim width (default 0 = none)")
    g.add_argument("--seam", choices=("rear", "nearest", "aligned"), help="where loops start (default rear)")
    g.add_argument("--allow-open", action="store_true", help="slice a mesh with holes instead of refusing it")


def settings_from_args(args) -> tuple[SliceSettings, object]:
    """Settings and motion limits from --config and the options (see the module docstring)."""
    settings, limits = SliceSettings(), None
    if args.config is not None:
        settings = SliceSettings.from_toml(args.config)
        limits = _printer_limits(args.config)
    if args.nozzle is not None and args.line_width is None:
        args.line_width = round(args.nozzle * 1.125, 3)  # the default 0.45 mm on a 0.4 mm nozzle
    settings = settings.replace(
        layer_height=args.layer_height, first_layer_height=args.first_layer_height, adaptive_layers=args.adaptive,
        perimeters=args.perimeters, top_layers=args.top_layers, bottom_layers=args.bottom_layers,
        infill_density=None if args.infill is None else args.infill / 100, infill_pattern=args.pattern,
        nozzle_diameter=args.nozzle, line_width=args.line_width, filament_diameter=args.filament_diameter,
        nozzle_temp=args.temp, bed_temp=args.bed_temp, skirt_loops=args.skirt, brim_width=args.brim, seam=args.seam,
        first_layer_line_width=None if args.line_width is None else max(args.line_width, settings.first_layer_line_width))
    if args.speed is not None:
        settings = settings.replace(**_speed_scale(settings, args.speed))
    return settings, limits


def _printer_limits(path: Path):
    """The first printer's motion limits when ``path`` is a cell config; None for a bare profile."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None  # SliceSettings.from_toml has already reported a broken file
    if "devices" not in raw:
        return None
    from . import config as cellconfig

    cell = cellconfig.load(path)
    printers = [d for d in cell.devices.values() if d.device_class == "printer"]
    return printers[0].motion if printers else None


class StepBar:
    """One-line progress bar on stderr (only when it is a terminal: logs stay clean)."""

    def __init__(self, steps: tuple[str, ...], stream=sys.stderr):
        self.steps, self.stream = steps, stream
        self.live = stream.isatty()

    def __call__(self, name: str, index: int) -> None:
        if self.live:
            width = 24
            filled = width * index // len(self.steps)
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {index + 1}/{len(self.steps)} {name:<8}")
            self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\r" + " " * 48 + "\r")
            self.stream.flush()


def _quick_numba_start() -> None:
    """Set up Numba's CPU target for this command's process, without two costs it does not need.

    When its target first loads, Numba probes for BLAS by importing
    ``scipy.linalg`` -- 0.3 to 0.5 s where scipy is installed, a third of a small
    part's run -- and no slicer kernel uses ``np.dot`` or ``np.linalg``: the
    probe is shown no scipy.  And Numba times every LLVM call with an event
    (for its compile statistics, which nothing here reads); loading the cached
    kernels makes about ten thousand such calls, so those callbacks are removed.
    Only this command's own process does this (a library user may want both).
    """
    import llvmlite.binding as llvm
    from numba.core.registry import cpu_target

    if "scipy.linalg" not in sys.modules:
        sys.modules["scipy.linalg.cython_blas"] = None  # an import of it fails at once: "no BLAS"
        try:
            cpu_target.target_context.refresh()
        finally:
            del sys.modules["scipy.linalg.cython_blas"]
    for acquire, release in list(getattr(llvm.ffi.lib._lock, "_cblist", ())):
        llvm.ffi.unregister_lock_callback(acquire, release)


def run_slicer(args, path: Path):
    _quick_numba_start()
    from .plan import fdm

    settings, limits = settings_from_args(args)
    bar = StepBar(fdm.STEPS)
    try:
        return fdm.slice_file(path, settings, limits=limits, allow_open=args.allow_open, progress=bar)
    finally:
        bar.close()


def _fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, m, s = seconds // 3600, seconds % 3600 // 60, seconds % 60
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _write_in_pieces(path: Path, text: str, piece: int = 1 << 20) -> None:
    """Write ``text`` a megabyte at a time: encoding a big part's G-code at once would hold a second copy."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for first in range(0, len(text), piece):
            f.write(text[first:first + piece])


def summary(result, out: Path) -> dict:
    meta = result.parts.meta
    return {"output": str(out), "lines": result.gcode.count("\n"), "ops": len(result.parts),
            "layers": meta.get("layers"), "estimated_s": meta.get("estimated_s"),
            "filament_mm": meta.get("filament_mm"), "filament_g": meta.get("filament_g"), "bbox": meta.get("bbox"),
            "repairs": result.repairs, "notes": result.notes,
            "timings_s": {k: round(v, 4) for k, v in result.timings.items()}}


def cmd_slice(args) -> int:
    path = args.mesh
    if not path.is_file():
        print(f"ismctl slice: no such file: {path}", file=sys.stderr)
        return EXIT_USAGE
    out = args.output or path.with_suffix(".gcode")
    try:
        result = run_slicer(args, path)
        _write_in_pieces(out, result.gcode)
    except PlanError as exc:
        print(f"ismctl slice: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"ismctl slice: cannot write {out}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    info = summary(result, out)
    if args.timings:
        for step, seconds in result.timings.items():
            print(f"timing {step} {seconds:.3f} s", file=sys.stderr)
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    lo, hi = info["bbox"] if info["bbox"] else ([0, 0, 0], [0, 0, 0])
    print(f"wrote {out}: {info['ops']:,} commands, {info['layers']} layers, "
          f"estimated {_fmt_duration(info['estimated_s'])}, filament {info['filament_mm'] / 1000:.2f} m "
          f"({info['filament_g']:.1f} g)")
    print(f"  extent X {lo[0]:.2f}..{hi[0]:.2f}  Y {lo[1]:.2f}..{hi[1]:.2f}  Z {lo[2]:.2f}..{hi[2]:.2f} mm")
    for line in result.repairs + result.notes:
        print(f"  note: {line}")
    return EXIT_OK


def cmd_preview(args) -> int:
    from . import preview

    path = args.file
    if not path.is_file():
        print(f"ismctl preview: no such file: {path}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if path.suffix.lower() in MESH_SUFFIXES:
            text = run_slicer(args, path).gcode
        else:
            text = path.read_text(errors="replace")
        layers = preview.layers_from_gcode(text)
        if not layers:
            raise PlanError(f"{path}: no layers with extrusion found")
        which = args.layers if args.layers is not None else sorted({0, len(layers) // 2, len(layers) - 1})
        written = preview.render_layers(layers, which, args.output, size=args.size, travels=not args.no_travels)
    except PlanError as exc:
        print(f"ismctl preview: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for png in written:
        print(png)
    return EXIT_OK


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"takes a percentage from 0 to 100, got {text!r}")
    return value


def _layer_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers takes comma-separated layer numbers (negative from the top), got {text!r}") from None


def _own_options() -> argparse.ArgumentParser:
    """Options of both commands; the cell-client options (--state-dir, --timeout) do not apply here."""
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--config", type=Path, help="a TOML file whose [slicing] table sets the profile: a cell config "
                                                 "(its printer's [motion] limits time the estimate) or a profile of its own")
    own.add_argument("--json", action="store_true", help="print the summary as JSON")
    return own


def add_parsers(sub) -> None:
    own = _own_options()
    p = sub.add_parser("slice", parents=[own], help="plan a mesh (STL, OBJ, 3MF) into Marlin G-code",
                       description="Slice a mesh into Marlin G-code with walls, skins, infill, skirt, retraction and "
                                   "cooling; prints a summary (time, filament, extent) and what the mesh check repaired.",
                       epilog=SLICE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mesh", type=Path, help="STL (binary or ASCII), OBJ or 3MF file")
    p.add_argument("-o", "--output", type=Path, help="G-code file to write (default: the mesh's name with .gcode)")
    p.add_argument("--timings", action="store_true", help="print each step's wall time on stderr (load, repair, ... gcode)")
    add_slicing_options(p)
    p = sub.add_parser("preview", parents=[own], help="draw layers of a G-code file or a mesh as PNG images",
                       description="Draw chosen layers as PNG images: walls, skin, infill and travels in their own colours. "
                                   "A mesh is sliced first (with the slicing options); a G-code file from any slicer is read as is.",
                       epilog=PREVIEW_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", type=Path, help="G-code file, or a mesh to slice first")
    p.add_argument("--layers", type=_layer_list, help="layers to draw, e.g. 0,10,-1 (default: first, middle, last)")
    p.add_argument("-o", "--output", type=Path, default=Path("preview"), help="directory for layer-<n>.png (default ./preview)")
    p.add_argument("--size", type=int, default=1000, help="image width and height in pixels (default 1000)")
    p.add_argument("--no-travels", action="store_true", help="leave travel moves out")
    add_slicing_options(p)


COMMANDS = {"slice": cmd_slice, "preview": cmd_preview}
