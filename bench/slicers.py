"""Side-by-side slicer benchmark: ismctl against CuraEngine, PrusaSlicer and slic3r on the same meshes.

    python bench/slicers.py [--tools cura,prusa,slic3r,ours] [--meshes NAME,...] [--quick]
                            [--repeat N] [--no-cold] [--json OUT.json]

Each tool slices each mesh (bench/bench_meshes.py: OpenSCAD examples, a
520k-triangle subdivided logo, 1.4M-triangle spheres of 50 and 100 mm) with the same settings
(bench/reference_slicers.py: 0.2 mm layers, 2 perimeters, 4 top/bottom
layers, 20 % grid infill, 0.4 mm nozzle, a skirt) as a child process; for each
run it measures, for that child alone:

- wall time: process start to G-code written (``time.perf_counter`` around
  ``Popen`` .. ``os.wait4``);
- CPU time: user + system of the child (and any children it waited for), from
  the rusage ``os.wait4`` returns;
- peak memory: ``ru_maxrss`` of that rusage, in MB (this process resets its own
  peak before each child and never builds meshes itself: see ``_reset_peak_rss``).

A run counts only if it exited 0 and wrote G-code with extrusion on at least
one layer; otherwise the tool is reported as failed with its log's tail and
the rest goes on.  ``layers`` is the number of distinct heights at which the
G-code extrudes (G1 with X/Y and E), counted the same way for every tool.
With ``--repeat N`` the tools take turns N times per mesh (so a load spike
hits all of them) and the median of each number is shown.

Ours is ``python -m ismctl slice MESH -o OUT --layer-height 0.2
--first-layer-height 0.3 --perimeters 2 --top-layers 4 --bottom-layers 4
--infill 20 --pattern grid --nozzle 0.4 --line-width 0.4 --filament-diameter
1.75 --skirt 1 --timings`` (flags its ``--help`` does not list are left out and
named), run from this checkout (``cwd``) by the ``--python`` interpreter with
that install's packages; the checkout is byte-compiled first (``compileall``),
as an install is, or every run would compile its modules again where
``PYTHONDONTWRITEBYTECODE`` is set.  Its Numba cache is warmed by one untimed run first; the cold time
(first compile, ``NUMBA_CACHE_DIR`` set to a fresh empty folder) is measured
once, on the first mesh, and shown as ``ours-cold``.  Stage times that the
tools print about themselves are shown under each table: CuraEngine's
``Progress: <stage> accomplished in <t>s`` and ours ``timing <stage> <t> s``.

The goals, judged in the same run:
1. on meshes where CuraEngine takes >= 5 s: ours wall <= 0.5 x CuraEngine's
   and ours peak memory <= CuraEngine's;
2. on the small parts (the OpenSCAD examples): ours warm wall < 1.5 s.

The machine has 2 cores; the load average is printed before and after, since
other work on the machine shows in wall times (CPU times are steadier).
Outputs and logs go to bench/.cache/out (git-ignored).  A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_meshes import MESH_NAMES, BenchMesh, ensure_mesh, mesh_path  # noqa: E402
from reference_slicers import REFERENCE_TOOLS, BenchSettings, Tool, ToolUnavailable  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "bench" / ".cache" / "out"
TOOL_ORDER = ("cura", "prusa", "slic3r", "ours")
CURA_SLOW_S = 5.0  # goal 1 applies to meshes on which CuraEngine takes at least this long
SPEEDUP_GOAL = 0.5  # ours wall / CuraEngine wall on those
SMALL_PART_S = 1.5  # goal 2: ours warm wall on the small parts

_OUR_TIMING = re.compile(r"^timing (\w+) ([0-9.]+) s", re.M)


@dataclass
class Run:
    tool: str
    mesh: str
    ok: bool
    wall_s: float
    cpu_s: float
    peak_mb: float
    layers: int = 0
    gcode_mb: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    error: str = ""


def _reset_peak_rss() -> None:
    """Set this process's peak RSS back to its current RSS (``/proc/self/clear_refs``, Linux >= 4.0).

    Linux starts a child's ``ru_maxrss`` at the peak of the process it was
    forked from (the fork's pages, or with vfork the parent's own peak), so a
    parent that was ever big would make every child look as big.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def run_measured(argv: list[str], env: dict[str, str], log: Path, timeout: float) -> tuple[float, float, float, int]:
    """Run ``argv`` as a child; (wall s, user+sys CPU s, peak RSS MB, exit code) of that child alone."""
    full_env = {**os.environ, **env}
    _reset_peak_rss()
    with open(log, "wb") as log_file:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                env=full_env, cwd=REPO)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, proc.returncode


def gcode_layers(path: Path) -> int:
    """Distinct Z heights (to 1 µm) at which the G-code extrudes: a G1 with X or Y and E."""
    z = 0.0
    heights: set[int] = set()
    with open(path, "rb") as f:
        for line in f:
            if not line.startswith((b"G1", b"G0")):
                continue
            words = line.split(b";", 1)[0].split()
            has_xy = has_e = False
            for word in words[1:]:
                letter = word[:1]
                if letter == b"Z":
                    z = float(word[1:])
                elif letter in (b"X", b"Y"):
                    has_xy = True
                elif letter == b"E":
                    has_e = True
            if has_xy and has_e and words[0] == b"G1":
                heights.add(round(z * 1000))
    return len(heights)


def log_tail(log: Path, lines: int = 12) -> str:
    text = log.read_text(errors="replace").strip().splitlines()
    return "\n".join(text[-lines:])


def slice_once(tool: Tool, mesh: BenchMesh, label: str, timeout: float, extra_env: dict[str, str] | None = None) -> Run:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"{mesh.name}.{label}.gcode"
    log = OUT_DIR / f"{mesh.name}.{label}.log"
    out.unlink(missing_ok=True)
    env = {**tool.env, **(extra_env or {})}
    try:
        wall, cpu, peak, rc = run_measured(tool.argv(mesh.path, out), env, log, timeout)
    except OSError as exc:
        return Run(label, mesh.name, False, 0.0, 0.0, 0.0, error=f"could not start: {exc}")
    run = Run(label, mesh.name, False, wall, cpu, peak)
    if rc != 0:
        run.error = f"exit code {rc}:\n{log_tail(log)}"
    elif not out.exists() or out.stat().st_size == 0:
        run.error = f"no G-code written to {out}:\n{log_tail(log)}"
    else:
        run.layers = gcode_layers(out)
        run.gcode_mb = out.stat().st_size / 1e6
        if run.layers == 0:
            run.error = f"G-code {out} extrudes on no layer:\n{log_tail(log)}"
    run.ok = not run.error
    run.stages = tool.stage_timings(log.read_text(errors="replace"))
    return run


def our_slice_flags(s: BenchSettings) -> list[str]:
    return ["--layer-height", f"{s.layer_height:g}", "--first-layer-height", f"{s.first_layer_height:g}",
            "--perimeters", str(s.perimeters), "--top-layers", str(s.top_layers), "--bottom-layers", str(s.bottom_layers),
            "--infill", f"{s.infill_percent:g}", "--pattern", s.infill_pattern, "--nozzle", f"{s.nozzle:g}",
            "--line-width", f"{s.line_width:g}", "--filament-diameter", f"{s.filament:g}",
            "--skirt", str(s.skirt_loops), "--timings"]


def our_tool(s: BenchSettings, python: str) -> Tool:
    """``python -m ismctl slice``; ``python`` is the interpreter of the install being measured."""
    flags = our_slice_flags(s)

    def argv(mesh: Path, out: Path) -> list[str]:
        return [python, "-m", "ismctl", "slice", str(mesh), "-o", str(out), *flags]

    def stages(log: str) -> dict[str, float]:
        return {m.group(1): float(m.group(2)) for m in _OUR_TIMING.finditer(log)}

    return Tool("ours", "ismctl", argv, stage_timings=stages)


def median_run(runs: list[Run]) -> Run:
    """One Run with the median of each number over the successful ``runs`` (or the first failure)."""
    good = [r for r in runs if r.ok]
    if not good:
        return runs[0]
    med = Run(good[0].tool, good[0].mesh, True,
              statistics.median(r.wall_s for r in good), statistics.median(r.cpu_s for r in good),
              statistics.median(r.peak_mb for r in good), good[0].layers, good[0].gcode_mb)
    keys = good[0].stages.keys()
    med.stages = {k: statistics.median(r.stages.get(k, 0.0) for r in good) for k in keys}
    return med


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "-"


def print_mesh_table(mesh: BenchMesh, results: dict[str, Run], labels: dict[str, str]) -> None:
    print(f"\n== {mesh.name}: {mesh.triangles:,} triangles ({mesh.description})")
    cura = results.get("cura")
    cura_ok = cura is not None and cura.ok
    print(f"{'tool':<14} {'wall s':>8} {'CPU s':>8} {'peak MB':>8} {'layers':>7} {'G-code MB':>9} "
          f"{'wall/Cura':>9} {'mem/Cura':>9}")
    for name, run in results.items():
        label = labels.get(name, name)
        if not run.ok:
            print(f"{label:<14} FAILED ({run.wall_s:.2f} s): " + run.error.replace("\n", "\n    "))
            continue
        wr = ratio(run.wall_s, cura.wall_s) if cura_ok and name != "cura" else ""
        mr = ratio(run.peak_mb, cura.peak_mb) if cura_ok and name != "cura" else ""
        print(f"{label:<14} {run.wall_s:>8.2f} {run.cpu_s:>8.2f} {run.peak_mb:>8.0f} {run.layers:>7} "
              f"{run.gcode_mb:>9.1f} {wr:>9} {mr:>9}")
    ours = results.get("ours")
    if ours is not None and ours.ok:
        for name, run in results.items():
            if name.startswith("ours") or not run.ok:
                continue
            print(f"  ours/{labels.get(name, name)}: wall {ratio(ours.wall_s, run.wall_s)}, "
                  f"CPU {ratio(ours.cpu_s, run.cpu_s)}, peak memory {ratio(ours.peak_mb, run.peak_mb)}")
    for name, run in results.items():
        if run.stages:
            stages = "  ".join(f"{k} {v:.2f}" for k, v in run.stages.items())
            print(f"  {labels.get(name, name)} stages (s, its own log): {stages}")


def verdicts(meshes: list[BenchMesh], table: dict[str, dict[str, Run]]) -> list[dict]:
    """The two goals, per mesh they apply to: dicts with goal, mesh, passed, text."""
    out = []
    judged_slow = False
    for mesh in meshes:
        runs = table[mesh.name]
        cura, ours = runs.get("cura"), runs.get("ours")
        if cura is not None and cura.ok and cura.wall_s >= CURA_SLOW_S:
            judged_slow = True
            if ours is None:
                out.append({"goal": 1, "mesh": mesh.name, "passed": None,
                            "text": f"CuraEngine {cura.wall_s:.2f} s; ours not run"})
            elif not ours.ok:
                out.append({"goal": 1, "mesh": mesh.name, "passed": False,
                            "text": f"CuraEngine {cura.wall_s:.2f} s; ours FAILED"})
            else:
                fast = ours.wall_s <= SPEEDUP_GOAL * cura.wall_s
                lean = ours.peak_mb <= cura.peak_mb
                out.append({"goal": 1, "mesh": mesh.name, "passed": fast and lean,
                            "text": f"wall {ours.wall_s:.2f} s vs CuraEngine {cura.wall_s:.2f} s = "
                                    f"{ours.wall_s / cura.wall_s:.2f}x (goal <= {SPEEDUP_GOAL}x) {'ok' if fast else 'MISSED'}; "
                                    f"peak {ours.peak_mb:.0f} MB vs {cura.peak_mb:.0f} MB {'ok' if lean else 'MISSED'}"})
        if mesh.kind == "small" and ours is not None:
            passed = ours.ok and ours.wall_s < SMALL_PART_S
            text = (f"warm wall {ours.wall_s:.2f} s (goal < {SMALL_PART_S} s)" if ours.ok else "ours FAILED")
            out.append({"goal": 2, "mesh": mesh.name, "passed": passed, "text": text})
    if not judged_slow:
        out.append({"goal": 1, "mesh": None, "passed": None,
                    "text": f"no mesh took CuraEngine >= {CURA_SLOW_S:g} s (or CuraEngine was not run): not judged"})
    return out


def tool_versions() -> dict[str, str]:
    got = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", "cura-engine", "prusa-slicer", "slic3r"],
                         capture_output=True, text=True)
    return dict(line.split(" ", 1) for line in got.stdout.splitlines() if " " in line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tools", default=",".join(TOOL_ORDER), help="comma-separated: cura,prusa,slic3r,ours")
    ap.add_argument("--meshes", default=None, help=f"comma-separated (default all): {','.join(MESH_NAMES)}")
    ap.add_argument("--quick", action="store_true", help="skip the 1.4M-triangle spheres")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool and mesh; the median is shown")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold (empty Numba cache) run of ours")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds before a run is killed")
    ap.add_argument("--json", type=Path, help="write all results here")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter that runs ours (default: this one). To measure the README's install: "
                         "python -m venv /tmp/v && /tmp/v/bin/pip install . && ... --python /tmp/v/bin/python")
    args = ap.parse_args()

    wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
    for name in wanted:
        if name not in TOOL_ORDER:
            ap.error(f"unknown tool {name!r}; choose from {', '.join(TOOL_ORDER)}")
    names = [m.strip() for m in args.meshes.split(",")] if args.meshes else list(MESH_NAMES)
    if args.quick:
        names = [n for n in names if not n.startswith("sphere-1.4m")]
    missing = [n for n in names if not mesh_path(n).exists()]
    if missing:  # built in a child: building the big ones takes this process to ~750 MB (see _reset_peak_rss)
        subprocess.run([sys.executable, str(Path(__file__).with_name("bench_meshes.py")), "--meshes", ",".join(missing)],
                       check=True, stdout=subprocess.DEVNULL)
    meshes = [ensure_mesh(n) for n in names]

    settings = BenchSettings()
    tools: dict[str, Tool] = {}
    unavailable: dict[str, str] = {}
    for name in wanted:
        try:
            tools[name] = our_tool(settings, args.python) if name == "ours" else REFERENCE_TOOLS[name](settings)
        except ToolUnavailable as exc:
            unavailable[name] = str(exc)
            print(f"{name}: UNAVAILABLE: {exc}", file=sys.stderr)
    labels = {name: tool.label for name, tool in tools.items()}
    labels["ours-cold"] = "ismctl cold"

    load_before = os.getloadavg()
    print(f"{os.cpu_count()} cores, load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}; "
          f"repeat {args.repeat}; settings {asdict(settings)}")
    print(f"this process's own RSS {_rss_mb():.0f} MB: no child's peak memory can read lower (Linux counts the "
          "fork's pages)")
    table: dict[str, dict[str, Run]] = {}
    for i, mesh in enumerate(meshes):
        runs: dict[str, list[Run]] = {name: [] for name in tools}
        extra: dict[str, Run] = {}
        if "ours" in tools and i == 0:
            subprocess.run([args.python, "-m", "compileall", "-q", "ismctl", "drivers"], cwd=REPO, check=True)
            if not args.no_cold:
                with tempfile.TemporaryDirectory(prefix="numba-cold-") as cold_cache:
                    extra["ours-cold"] = slice_once(tools["ours"], mesh, "ours-cold", args.timeout,
                                                    {"NUMBA_CACHE_DIR": cold_cache})
            slice_once(tools["ours"], mesh, "ours", args.timeout)  # warm the default Numba cache, untimed
        for _ in range(args.repeat):
            for name, tool in tools.items():
                print(f"  {mesh.name}: {name} ...", file=sys.stderr, flush=True)
                runs[name].append(slice_once(tool, mesh, name, args.timeout))
        table[mesh.name] = {name: median_run(r) for name, r in runs.items()} | extra
        print_mesh_table(mesh, table[mesh.name], labels)
        sys.stdout.flush()

    load_after = os.getloadavg()
    print(f"\nload average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    results = verdicts(meshes, table)
    for v in results:
        state = {True: "PASS", False: "FAIL", None: "----"}[v["passed"]]
        goal = ("goal 1 (CuraEngine >= 5 s: ours <= 0.5x wall, <= its memory)" if v["goal"] == 1
                else "goal 2 (small part: ours warm < 1.5 s)")
        print(f"{state} {goal} {v['mesh'] or ''}: {v['text']}")

    if args.json:
        args.json.write_text(json.dumps({
            "cores": os.cpu_count(), "load_before": load_before, "load_after": load_after,
            "versions": tool_versions(), "settings": asdict(settings), "unavailable": unavailable,
            "meshes": {m.name: {"triangles": m.triangles, "kind": m.kind, "description": m.description}
                       for m in meshes},
            "runs": {mesh: {name: asdict(run) for name, run in runs.items()} for mesh, runs in table.items()},
            "verdicts": results,
        }, indent=2))
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
