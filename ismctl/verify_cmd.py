"""`ismctl verify`: run a mill program through a Z-map of the stock and compare the
result with the part (:mod:`ismctl.plan.zmap`).  No cell is needed.

Exit codes: 0 clean, 1 gouges or rapid collisions found (or the program is not
valid grbl G-code), 2 bad usage (missing files, no tool, bad stock).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from .plan.model import PlanError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LOCAL_COMMANDS = ("verify",)
STEPS = ("parse", "mesh", "simulate", "compare")
SHOWN_GOUGES = 5  # lines listed in the printed summary

EPILOG = """\
examples:
  ismctl cam part.stl -o part.nc && ismctl verify part.nc --mesh part.stl --png zmap.png
                                    a program from `ismctl cam` names its tool, its stock
                                    and where the part sits in it: nothing else is needed
  ismctl verify pocket.nc --mesh part.stl --tool-diameter 6
                                    flat 6 mm end mill, stock = the part's bounding box
  ismctl verify pocket.nc --mesh part.stl --margin 2 --tool flat-6 --png zmap.png
                                    stock 2 mm bigger than the part in X, Y and on top; the
                                    tool from the bundled tooling table; a height-map picture
  ismctl verify job.nc --mesh part.stl --stock 0,0,-10,60,40,0 --config configs/demo-cell.toml
                                    the tool the cell's mill has in its spindle
  ismctl verify job.nc --mesh part.stl --tool-diameter 3 --tool-shape ball --grid 0.05 --json

Positions are work coordinates: for a program from elsewhere, the mesh and
--stock must be placed where the program cuts.  Exit 0: clean; 1: gouges or rapids through material; 2: bad usage.
"""


class UsageError(ValueError):
    """A problem with the command line or the files it names (exit 2)."""


def _numbers(count: int, what: str):
    """An argparse type: ``count`` comma-separated finite numbers."""
    def convert(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) != count or not all(math.isfinite(v) for v in values):
            raise argparse.ArgumentTypeError(f"takes {what}, got {text!r}")
        return values
    return convert


def _millimetres(zero_allowed: bool):
    """An argparse type: a finite number of mm, > 0 (or >= 0 when ``zero_allowed``)."""
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and (value >= 0 if zero_allowed else value > 0)):
            raise argparse.ArgumentTypeError(f"takes a number {'>=' if zero_allowed else '>'} 0, got {text!r}")
        return value
    return convert


def add_parsers(sub) -> None:
    p = sub.add_parser("verify", help="check a mill program against the part on a Z-map (gouges, rapids through stock)",
                       description="Simulate material removal of a grbl mill program on a height field of the stock "
                                   "and compare it with the part's top surface: gouges below the part, rapids that "
                                   "cut, material left, volume removed.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("program", type=Path, help="grbl G-code file (.nc, .gcode, .ngc)")
    p.add_argument("--mesh", type=Path, required=True, help="the finished part (STL, OBJ, 3MF), in work coordinates")
    stock = p.add_mutually_exclusive_group()
    stock.add_argument("--stock", type=_numbers(6, "six numbers x0,y0,z0,x1,y1,z1 (mm)"), metavar="X0,Y0,Z0,X1,Y1,Z1", help="the stock box corners (mm)")
    stock.add_argument("--margin", type=_millimetres(zero_allowed=True), metavar="MM",
                       help="stock = the part's bounding box grown by MM in X, Y and on top (default: the stock "
                            "and placement an `ismctl cam` program names, else 0)")
    tool = p.add_argument_group("tool (one of: --tool-diameter, --tool NAME, --config with a mill)")
    tool.add_argument("--tool", metavar="NAME", help="a tool in the tooling table (default: the tool of the cell config's mill)")
    tool.add_argument("--tooling", type=Path, metavar="FILE", help="tooling table TOML (default: the cell config mill's, "
                                                                    "else the bundled one)")
    tool.add_argument("--tool-diameter", type=_millimetres(zero_allowed=False), metavar="MM", help="a tool given by size instead of by name")
    tool.add_argument("--tool-shape", choices=("flat", "ball"), default="flat", help="with --tool-diameter (default flat)")
    tool.add_argument("--config", type=Path, help="a cell config whose mill gives the tool and tooling table (default: $ISMCTL_CONFIG, "
                                                  "./configs/demo-cell.toml, else the bundled demo cell)")
    p.add_argument("--start", type=_numbers(3, "three numbers X,Y,Z (mm)"), metavar="X,Y,Z", help="where the tool is before the first line (work mm; default unknown)")
    p.add_argument("--grid", type=_millimetres(zero_allowed=False), default=0.1, metavar="MM", help="Z-map cell size (default 0.1)")
    p.add_argument("--tolerance", type=_millimetres(zero_allowed=True), default=0.05, metavar="MM",
                   help="cuts below the part deeper than this are gouges (default 0.05)")
    p.add_argument("--png", type=Path, metavar="FILE", help="write the height map (gouges in red) as a PNG")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def mill_device(config_path: Path | None):
    """The first mill of the cell config at ``config_path``, else of the default cell config
    ($ISMCTL_CONFIG, ./configs/demo-cell.toml, the bundled demo cell), as every ismctl command finds it.

    A named config without a mill is a UsageError; the default config without one gives None."""
    from . import config as cellconfig

    path = config_path or cellconfig.find_default()
    try:
        cell = cellconfig.load(path)
    except (cellconfig.ConfigError, OSError) as exc:
        raise UsageError(str(exc)) from None
    mills = [d for d in cell.devices.values() if d.device_class == "mill"]
    if not mills and config_path is not None:
        raise UsageError(f"{config_path}: the cell has no mill")
    return mills[0] if mills else None


def resolve_tool(args, program_text: str = ""):
    """The ToolShape the options name (see the 'tool' option group), else the one the program was planned for."""
    from .plan.cam_gcode import read_tool_name
    from .plan.tooling import load_tooling
    from .plan.zmap import ToolShape

    if args.tool_diameter is not None:
        if args.tool or args.config:
            raise UsageError("give the tool either by --tool-diameter or by name (--tool/--config), not both")
        try:
            return ToolShape(args.tool_shape, args.tool_diameter)
        except PlanError as exc:
            raise UsageError(str(exc)) from None
    mill = mill_device(args.config)
    name = args.tool or read_tool_name(program_text) or (mill.tool if mill else "")
    tooling = args.tooling or (mill.tooling if mill else None)
    if not name:
        raise UsageError("which tool? use --tool-diameter MM [--tool-shape ball], --tool NAME, or --config with a "
                         "cell whose mill declares its tool")
    try:
        tool = load_tooling(tooling).tool(name)
        return ToolShape(tool.shape, tool.diameter, tool.name)
    except PlanError as exc:
        raise UsageError(str(exc)) from None


def _stock_and_part(args, mesh, program_text: str):
    """The stock box and the mesh where the program sees them: as given, else as `ismctl cam` placed them."""
    from .plan.cam_gcode import read_placement
    from .plan.model import Mesh
    from .plan.zmap import Stock

    if args.stock:
        return Stock(args.stock[:3], args.stock[3:]), mesh
    placement = read_placement(program_text) if args.margin is None else None
    if placement is None:
        return Stock.around(mesh, args.margin or 0.0), mesh
    box, offset = placement
    return Stock(box[0], box[1]), Mesh(mesh.vertices + offset, mesh.faces, mesh.name)


def run(args, progress=None):
    """Parse, load, simulate, compare: -> ZmapReport (raises UsageError or GcodeError)."""
    from .grbl_gcode import parse_with_path
    from .plan.mesh_io import load_mesh
    from .plan.zmap import verify

    step = progress or (lambda name, index: None)
    for path, what in ((args.program, "program"), (args.mesh, "mesh")):
        if not path.is_file():
            raise UsageError(f"no such {what} file: {path}")
    try:
        text = args.program.read_text(encoding="ascii", errors="replace")  # the parser names a non-ASCII line
    except OSError as exc:  # else cmd_verify's handler would blame the --png file
        raise UsageError(f"cannot read {args.program}: {exc.strerror or exc}") from None
    tool = resolve_tool(args, text)
    step(STEPS[0], 0)
    program, path = parse_with_path(text, args.program.name, start=args.start)
    step(STEPS[1], 1)
    try:
        mesh = load_mesh(args.mesh)
        stock, mesh = _stock_and_part(args, mesh, text)
    except PlanError as exc:
        raise UsageError(str(exc)) from None
    step(STEPS[2], 2)
    try:
        return verify(program, mesh, stock, tool, cell=args.grid, tolerance=args.tolerance, path=path)
    except PlanError as exc:  # a grid too fine for the stock
        raise UsageError(str(exc)) from None


def _print_report(path: Path, report, png: Path | None) -> None:
    s = report.summary()
    verdict = "clean" if report.clean else "FAILED"
    print(f"verify {path}: {verdict}")
    grid = s["grid"]
    print(f"  tool {report.tool.shape} {report.tool.diameter:g} mm{' (' + report.tool.name + ')' if report.tool.name else ''}, "
          f"grid {grid['cell_mm']:g} mm ({grid['nx']} x {grid['ny']} cells), tolerance {report.tolerance:g} mm")
    lo, hi = report.stock.lo, report.stock.hi
    print(f"  stock X {lo[0]:g}..{hi[0]:g}  Y {lo[1]:g}..{hi[1]:g}  Z {lo[2]:g}..{hi[2]:g} mm; "
          f"{s['segments']:,} segments simulated"
          + (f", {s['unplaced_moves']} moves to unknown positions skipped" if s["unplaced_moves"] else ""))
    print(f"  removed {s['removed_mm3']:.2f} mm3; left above the part {s['left']['volume_mm3']:.2f} mm3 "
          f"(max {s['left']['max_mm']:.3f} mm)")
    g = s["gouges"]
    if g["cells"]:
        print(f"  GOUGES: {g['cells']} cells, {g['area_mm2']:.3f} mm2, deepest {g['max_depth_mm']:.3f} mm; by line:")
        for by in g["by_op"][:SHOWN_GOUGES]:
            (x0, y0), (x1, y1) = by["box"]
            print(f"    line {by['line']}: {by['command']}  {by['max_depth_mm']:.3f} mm deep at "
                  f"X{by['deepest_at'][0]:g} Y{by['deepest_at'][1]:g}, {by['area_mm2']:.3f} mm2 in X{x0:g}..{x1:g} Y{y0:g}..{y1:g}")
        if len(g["by_op"]) > SHOWN_GOUGES:
            print(f"    ... and {len(g['by_op']) - SHOWN_GOUGES} more lines (--json lists them all)")
    else:
        print("  gouges: none")
    if s["part_above_stock_mm"] > report.tolerance:
        print(f"  note: the part rises {s['part_above_stock_mm']:.3f} mm above the stock top: is the stock right?")
    for c in s["collisions"]:
        print(f"  RAPID THROUGH MATERIAL: line {c['line']}: {c['command']} (cut {c['depth_mm']:.3f} mm)")
    if png is not None:
        print(f"  height map: {png}")


def cmd_verify(args) -> int:
    from .gcode import GcodeError
    from .slice_cmd import StepBar

    bar = StepBar(STEPS)
    try:
        report = run(args, bar)
        bar(STEPS[3], 3)
        if args.png is not None:
            from .plan.zmap_image import render

            render(report, args.png)
    except UsageError as exc:
        bar.close()
        print(f"ismctl verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except GcodeError as exc:
        bar.close()
        print(f"ismctl verify: {args.program}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        bar.close()
        print(f"ismctl verify: cannot write {args.png}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    bar.close()
    if args.json:
        print(json.dumps({"program": str(args.program), **report.summary(),
                          "png": None if args.png is None else str(args.png)}, indent=2))
    else:
        _print_report(args.program, report, args.png)
    return EXIT_OK if report.clean else EXIT_FAILED


COMMANDS = {"verify": cmd_verify}
