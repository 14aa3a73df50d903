"""Z-map material removal: the Numba kernel against its plain numpy twin, same run.

A spiral pocket of short segments (at least 100,000 moves over several step-downs)
is parsed as grbl G-code, flattened into segments, and swept through a stock Z-map at
a 0.1 mm grid, once by ``zmap_kernels.sweep`` and once by ``zmap_reference.sweep``;
both must leave the same heights.  The Numba kernel is compiled (or loaded from its
cache) and run once on a small input before timing, so the figures are warm.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from ismctl.grbl_gcode import moves, parse
from ismctl.plan import zmap_kernels, zmap_reference
from ismctl.plan.zmap import Grid, Stock


def spiral_pocket(moves_wanted: int, radius: float, tool: float, levels: int, depth: float) -> str:
    """An Archimedean spiral from the centre out to ``radius`` at each of ``levels`` step-downs,
    cut into segments short enough that the whole program has ``moves_wanted`` moves."""
    stepover = 0.4 * tool
    turns = radius / stepover
    length = math.pi * radius * radius / stepover  # arc length of the spiral, about
    per_level = max(1, moves_wanted // levels + 1)
    step = length / per_level
    centre = radius + 2.0
    lines = ["G21 G90 G94", "M3 S12000", "G0 Z5", f"G0 X{centre:.4f} Y{centre:.4f}"]
    theta_end = 2 * math.pi * turns
    for level in range(1, levels + 1):
        z = -depth * level / levels
        lines.append(f"G1 Z{z:.4f} F300")
        theta = 0.0
        while theta < theta_end:
            r = stepover * theta / (2 * math.pi)
            theta += step / max(r, stepover)  # constant segment length along the spiral
            r = stepover * min(theta, theta_end) / (2 * math.pi)
            lines.append(f"G1 X{centre + r * math.cos(theta):.4f} Y{centre + r * math.sin(theta):.4f} F1500")
        lines += ["G0 Z5", f"G0 X{centre:.4f} Y{centre:.4f}"]
    return "\n".join(lines + ["M5", "M30"]) + "\n"


EPILOG = """\
how to read it:
  The goal (issue 4) is the ratio numpy seconds / kernel seconds >= 20 on one run.
  Both sweeps run in the same process one after the other, so they share the
  machine's load; on a shared machine seconds vary by 2x between runs while the
  ratio moves less.  Two ratios are printed: wall clock, and CPU time of this
  process (time.process_time), which other processes' load disturbs less.  Run it
  twice and report both runs.  The heights of the two sweeps must agree (exit 1 if not).

examples:
  python bench/zmap_speed.py                 flat 3 mm end mill, 100,000 moves, 0.1 mm grid
  python bench/zmap_speed.py --ball          ball end mill: most cells lie on scallops
  python bench/zmap_speed.py --moves 20000 --tool 6
                                             a quicker, smaller check
"""


def run(sweep, path, grid: Grid, stock: Stock, radius: float, ball: bool):
    """Sweep ``path`` through a fresh stock -> (wall seconds, CPU seconds, heights)."""
    height = np.full(grid.shape, stock.hi[2])
    cutter = zmap_kernels.empty_cutter(grid.shape)
    max_cut = np.zeros(len(path))
    wall, cpu = time.perf_counter(), time.process_time()
    sweep(height, cutter, grid.x0, grid.y0, grid.cell, path.start, path.end, path.op, radius, ball,
          stock.lo[2], max_cut)
    return time.perf_counter() - wall, time.process_time() - cpu, height


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moves", type=int, default=100_000, help="moves in the program (default 100000)")
    ap.add_argument("--grid", type=float, default=0.1, help="Z-map cell, mm (default 0.1)")
    ap.add_argument("--tool", type=float, default=3.0, help="tool diameter, mm (default 3)")
    ap.add_argument("--ball", action="store_true", help="ball end mill (default flat)")
    args = ap.parse_args()

    radius_mm = 40.0
    text = spiral_pocket(args.moves, radius_mm, args.tool, levels=4, depth=4.0)
    t0 = time.perf_counter()
    program = parse(text, "spiral")
    t1 = time.perf_counter()
    path = moves(program)
    t2 = time.perf_counter()
    side = 2 * radius_mm + 4.0
    stock = Stock((0.0, 0.0, -10.0), (side, side, 0.0))
    grid = Grid.covering(stock, args.grid)
    print(f"program: {len(program):,} ops, {len(path):,} segments; parse {t1 - t0:.2f} s, moves {t2 - t1:.2f} s")
    print(f"Z-map: {grid.nx} x {grid.ny} cells of {grid.cell:g} mm, {'ball' if args.ball else 'flat'} "
          f"{args.tool:g} mm tool")

    warm = moves(parse("G0 X1 Y1 Z1\nG1 Z-1 F100\nG1 X3 Y2\n", start=(0, 0, 5)))
    # the argument types of the timed run (floats, a bool), so this is the specialisation timed below
    run(zmap_kernels.sweep, warm, Grid(0.0, 0.0, 0.1, 50, 50), Stock((0, 0, -2), (5, 5, 0)), 1.0, args.ball)
    print("numba: kernel compiled or loaded from its cache and run once before timing")

    t_numba, c_numba, h_numba = run(zmap_kernels.sweep, path, grid, stock, args.tool / 2, args.ball)
    print(f"numpy twin: sweeping {len(path):,} segments (10-60 s)...", flush=True)
    t_numpy, c_numpy, h_numpy = run(zmap_reference.sweep, path, grid, stock, args.tool / 2, args.ball)
    same = np.allclose(h_numba, h_numpy, rtol=0, atol=1e-9)
    n = len(path)
    print(f"{'implementation':<16}{'wall s':>9}{'CPU s':>9}{'moves/s (wall)':>16}")
    print(f"{'numba kernel':<16}{t_numba:>9.3f}{c_numba:>9.3f}{n / t_numba:>16,.0f}")
    print(f"{'numpy twin':<16}{t_numpy:>9.3f}{c_numpy:>9.3f}{n / t_numpy:>16,.0f}")
    print(f"ratio numpy / numba: {t_numpy / t_numba:.1f}x wall, {c_numpy / max(c_numba, 1e-9):.1f}x CPU   "
          f"heights equal: {same}   removed {(stock.hi[2] - h_numba).sum() * grid.cell ** 2:,.0f} mm3")
    if not same:
        raise SystemExit("the kernel and the reference disagree")


if __name__ == "__main__":
    main()
