"""`ismctl cam`: plan a mesh into grbl G-code for the mill on this machine (no cell needed).

The tool, material and tooling table come from the options, else from the
mill of the cell config (``--config``, else the default one every ismctl
command finds: $ISMCTL_CONFIG, ./configs/demo-cell.toml, the bundled demo
cell), else the defaults (flat-3 in PLA, the
bundled table).  docs/cam.md describes the operations and every option.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .plan.cam_settings import OPERATIONS, POCKET_STYLES
from .plan.model import PlanError
from .slice_cmd import StepBar, _fmt_duration
from .verify_cmd import UsageError, mill_device

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LOCAL_COMMANDS = ("cam",)
DEFAULT_TOOL, DEFAULT_MATERIAL = "flat-3", "PLA"

EPILOG = """\
examples:
  ismctl cam part.stl                            part.nc: face, pockets, profile, with flat-3 in PLA,
                                                 stock = the part's box + 3 mm, 0.5 mm faced off the top
  ismctl cam part.stl --stock 60x40x12 --tool flat-6 --material aluminium-6061 -o part.nc
  ismctl cam part.stl --stock +5 --ops profile --conventional --finish 0.2
  ismctl cam part.stl --tool drill-3 -o holes.nc  a drill drills the 3 mm holes it finds, nothing else
  ismctl cam part.stl --config configs/demo-cell.toml
                                                 the tool, material and tooling table of the cell's mill
"""


def _ops(text: str) -> tuple[str, ...]:
    ops = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [op for op in ops if op not in OPERATIONS]
    if bad or not ops:
        raise argparse.ArgumentTypeError(f"takes a comma-separated list of {', '.join(OPERATIONS)}, got {text!r}")
    return ops


def add_parsers(sub) -> None:
    p = sub.add_parser("cam", help="plan a mesh into grbl G-code for the mill (facing, pockets, profile, drilling)",
                       description="Machine a mesh out of a block of stock on the grbl mill: facing, pocket clearing "
                                   "with helix entries, the profile at the tool radius, peck drilling of round holes. "
                                   "Writes G-code and prints a summary (operations, estimated time, tool, rpm, feed, "
                                   "volume removed) and what the planner noticed.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mesh", type=Path, help="STL (binary or ASCII), OBJ or 3MF file")
    p.add_argument("-o", "--output", type=Path, help="G-code file to write (default: the mesh's name with .nc)")
    p.add_argument("--stock", metavar="SIZE", help="W,D,H or WxDxH in mm, or +MARGIN around the part's box "
                                                   "(default +3)")
    p.add_argument("--tool", metavar="NAME", help=f"a tool of the tooling table (default: the cell config mill's, "
                                                  f"else {DEFAULT_TOOL})")
    p.add_argument("--material", metavar="NAME", help=f"a material of the tooling table (default: the cell config "
                                                      f"mill's, else {DEFAULT_MATERIAL})")
    p.add_argument("--tooling", type=Path, metavar="FILE", help="tooling table TOML (default: the cell config mill's, "
                                                                "else the bundled configs/tooling.toml)")
    p.add_argument("--config", type=Path, help="a cell config whose mill gives the tool, material and tooling table (default: "
                                                 "$ISMCTL_CONFIG, ./configs/demo-cell.toml, else the bundled demo cell)")
    p.add_argument("--ops", type=_ops, metavar="LIST", help=f"operations, comma-separated: {','.join(OPERATIONS)} "
                                                            "(default: all an end mill does; a drill only drills)")
    g = p.add_argument_group("cutting (defaults: the material's factors in the tooling table)")
    g.add_argument("--depth-of-cut", type=float, metavar="MM", help="depth per pass")
    g.add_argument("--stepover", type=float, metavar="MM", help="distance between passes when clearing")
    g.add_argument("--finish", type=float, dest="finish_allowance", metavar="MM", help="leave this much on the walls")
    g.add_argument("--facing-allowance", type=float, metavar="MM", help="stock above the part, faced off (default 0.5)")
    g.add_argument("--conventional", action="store_true", help="conventional milling instead of climb")
    g.add_argument("--pocket-style", choices=POCKET_STYLES, help="pocket clearing pattern (default offset)")
    g.add_argument("--ramp-angle", type=float, metavar="DEG", help="steepest ramp or helix into material (default 3)")
    g.add_argument("--safe-z", type=float, metavar="MM", help="travel height above the stock (default 5)")
    g.add_argument("--spindle-max-rpm", type=float, metavar="RPM", help="the spindle's top speed (default 24000)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _mill_defaults(config_path: Path | None) -> tuple[str, str, Path | None]:
    """Tool, material and tooling table of the cell's mill (empty when the default cell has no mill)."""
    mill = mill_device(config_path)
    return (mill.tool, mill.material, mill.tooling) if mill else ("", "", None)


def summary(result, out: Path) -> dict:
    meta = result.program.meta
    return {"output": str(out), "lines": len(result.program), "operations": result.operations,
            "estimated_s": result.program.estimated_s, "tool": result.tool.name, "material": result.material.name,
            "rpm": meta["rpm"], "feed_mm_min": round(result.feeds.feed_mm_min, 1),
            "plunge_mm_min": round(result.feeds.plunge_mm_min, 1), "removed_mm3": round(result.removed_mm3, 1),
            "stock": result.stock.tolist(), "offset": result.offset.tolist(),
            "holes": [h.__dict__ for h in result.holes], "repairs": result.repairs, "notes": result.notes}


def cmd_cam(args) -> int:
    from .plan.cam import STEPS, Stock, plan_cam
    from .plan.cam_settings import CamSettings
    from .plan.tooling import load_tooling

    path = args.mesh
    if not path.is_file():
        print(f"ismctl cam: no such file: {path}", file=sys.stderr)
        return EXIT_USAGE
    out = args.output or path.with_suffix(".nc")
    try:
        tool, material, tooling = _mill_defaults(args.config)
        settings = CamSettings().replace(
            depth_of_cut=args.depth_of_cut, stepover=args.stepover, finish_allowance=args.finish_allowance,
            facing_allowance=args.facing_allowance, climb=False if args.conventional else None,
            pocket_style=args.pocket_style, ramp_angle=args.ramp_angle, safe_z=args.safe_z,
            spindle_max_rpm=args.spindle_max_rpm)
        stock = Stock.parse(args.stock) if args.stock else None
        table = load_tooling(args.tooling or tooling)
        tool = table.tool(args.tool or tool or DEFAULT_TOOL).name
        material = table.material(args.material or material or DEFAULT_MATERIAL).name
    except (UsageError, PlanError) as exc:
        print(f"ismctl cam: {exc}", file=sys.stderr)
        return EXIT_USAGE
    bar = StepBar(STEPS)
    try:
        result = plan_cam(path, stock, tool, material, operations=args.ops, tooling=table, settings=settings,
                          progress=bar)
        bar.close()
        out.write_text(result.gcode)
    except PlanError as exc:
        bar.close()
        print(f"ismctl cam: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"ismctl cam: cannot write {out}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    info = summary(result, out)
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    ops = ", ".join(f"{name} {n:,}" for name, n in info["operations"].items()) or "none"
    (x0, y0, z0), (x1, y1, _) = info["stock"]
    print(f"wrote {out}: {info['lines']:,} lines ({ops}), estimated {_fmt_duration(info['estimated_s'])}")
    print(f"  tool {info['tool']} in {info['material']}: {info['rpm']} rpm, feed {info['feed_mm_min']:g} mm/min, "
          f"plunge {info['plunge_mm_min']:g} mm/min")
    print(f"  stock {x1 - x0:g} x {y1 - y0:g} x {-z0:g} mm (origin: front left corner, Z0 on top); "
          f"about {info['removed_mm3'] / 1000:.2f} cm^3 to remove")
    for line in result.repairs + result.notes:
        print(f"  note: {line}")
    return EXIT_OK


COMMANDS = {"cam": cmd_cam}
