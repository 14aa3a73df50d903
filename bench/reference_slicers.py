"""CuraEngine, PrusaSlicer and slic3r set up to slice like ismctl: the command lines of the benchmark.

    python bench/reference_slicers.py           # check the tools, fetch Cura's definitions, print the commands

All three come from Debian (``apt-get install cura-engine prusa-slicer slic3r``)
and run headless.  CuraEngine needs Cura's setting definitions, which the
cura-engine package lacks: they come from the ``cura`` package, fetched once
with ``apt-get download cura`` and unpacked with ``dpkg-deb -x`` into
bench/.cache/cura (git-ignored); ``CURA_ENGINE_SEARCH_PATH`` points at its
resources/definitions and resources/extruders.

The common settings (``BenchSettings``): 0.2 mm layers (0.3 mm first layer),
2 perimeters, 4 top and 4 bottom solid layers, 20 % grid infill, 0.4 mm
nozzle, 1.75 mm filament, one skirt loop, a 220 x 220 x 250 mm bed, Marlin
flavour, 0.4 mm extrusion width everywhere (Cura's default; PrusaSlicer's,
slic3r's and ours are told, else they would pick about 0.45 mm).  How each tool is told (only what differs from its defaults matters):

- CuraEngine evaluates none of the formulas in fdmprinter.def.json, it takes
  each setting's ``default_value``: so the derived settings are given too,
  ``infill_line_distance`` (grid at 20 % with 0.4 mm lines = 4 mm),
  ``infill_sparse_thickness`` (= layer height, else it is 0.1), and the
  extruder-train settings ``machine_nozzle_size`` and ``material_diameter``
  once more after ``-e0`` (the extruder definition shadows the global ones).
- PrusaSlicer: ``--export-gcode`` with its own flag per setting, ``--center``
  at the bed centre; it uses all cores (TBB), as it would for a user.
- slic3r 1.3: ``--no-gui``, ``--print-center``, ``-j`` with the core count.

Every tool's log is kept; ``stage_timings`` pulls the stage times a tool prints
about itself (CuraEngine's ``Progress: <stage> accomplished in <t>s``, slic3r's
``Process took``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
CURA_CACHE = REPO / "bench" / ".cache" / "cura"


class ToolUnavailable(Exception):
    """A tool cannot be run here; the message says what to install."""


@dataclass(frozen=True)
class BenchSettings:
    layer_height: float = 0.2
    first_layer_height: float = 0.3
    perimeters: int = 2
    top_layers: int = 4
    bottom_layers: int = 4
    infill_percent: float = 20.0
    infill_pattern: str = "grid"
    nozzle: float = 0.4
    line_width: float = 0.4
    filament: float = 1.75
    skirt_loops: int = 1
    bed: tuple[float, float, float] = (220.0, 220.0, 250.0)

    @property
    def bed_centre(self) -> tuple[float, float]:
        return self.bed[0] / 2, self.bed[1] / 2


@dataclass
class Tool:
    """One slicer: how to call it on a mesh, and how to read its own stage times from its log."""

    name: str
    label: str
    argv: Callable[[Path, Path], list[str]]  # (mesh, out_gcode) -> command line
    env: dict[str, str] = field(default_factory=dict)  # added to os.environ
    stage_timings: Callable[[str], dict[str, float]] = lambda log: {}


def _need(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise ToolUnavailable(f"{binary} not found: apt-get install {package}")
    return path


def cura_resources() -> Path:
    """Cura's resources folder (definitions/, extruders/), fetched from the ``cura`` .deb on first use."""
    resources = CURA_CACHE / "usr" / "share" / "cura" / "resources"
    if (resources / "definitions" / "fdmprinter.def.json").exists():
        return resources
    CURA_CACHE.mkdir(parents=True, exist_ok=True)
    for deb in CURA_CACHE.glob("cura_*.deb"):
        deb.unlink()
    print("fetching Cura's setting definitions: apt-get download cura ...", file=sys.stderr, flush=True)
    got = subprocess.run(["apt-get", "download", "cura"], cwd=CURA_CACHE, capture_output=True, text=True)
    debs = sorted(CURA_CACHE.glob("cura_*.deb"))
    if got.returncode != 0 or not debs:
        raise ToolUnavailable("CuraEngine needs Cura's setting definitions and `apt-get download cura` failed "
                              f"({got.stderr.strip()[-300:] or 'no .deb'}); run `apt-get update` and retry")
    unpack = subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(CURA_CACHE)], capture_output=True, text=True)
    if unpack.returncode != 0 or not (resources / "definitions" / "fdmprinter.def.json").exists():
        raise ToolUnavailable(f"dpkg-deb -x {debs[-1].name} gave no resources/definitions/fdmprinter.def.json: "
                              f"{unpack.stderr.strip()[-300:]}")
    debs[-1].unlink()
    return resources


def _fmt(value: float) -> str:
    return f"{value:g}"


def cura_settings(s: BenchSettings) -> dict[str, str]:
    """The global ``-s`` overrides for CuraEngine (its formulas are not evaluated, so derived ones too)."""
    line_distance = s.line_width * 100.0 / s.infill_percent * (2 if s.infill_pattern == "grid" else 1)
    return {
        "machine_width": _fmt(s.bed[0]), "machine_depth": _fmt(s.bed[1]), "machine_height": _fmt(s.bed[2]),
        "machine_gcode_flavor": "RepRap (Marlin/Sprinter)",
        "layer_height": _fmt(s.layer_height), "layer_height_0": _fmt(s.first_layer_height),
        "infill_sparse_thickness": _fmt(s.layer_height),
        "wall_line_count": str(s.perimeters),
        "top_layers": str(s.top_layers), "bottom_layers": str(s.bottom_layers),
        "infill_sparse_density": _fmt(s.infill_percent), "infill_pattern": s.infill_pattern,
        "infill_line_distance": _fmt(line_distance),
        "machine_nozzle_size": _fmt(s.nozzle), "material_diameter": _fmt(s.filament),
        "adhesion_type": "skirt", "skirt_line_count": str(s.skirt_loops),
    }


CURA_EXTRUDER_KEYS = ("machine_nozzle_size", "material_diameter")
_CURA_STAGE = re.compile(r"^Progress: (\w[\w+]*) accomplished in ([0-9.]+)s", re.M)
_CURA_TOTAL = re.compile(r"^Total time elapsed\s+([0-9.]+)s", re.M)


def cura_stage_timings(log: str) -> dict[str, float]:
    out = {m.group(1): float(m.group(2)) for m in _CURA_STAGE.finditer(log)}
    total = _CURA_TOTAL.search(log)
    if total:
        out["total"] = float(total.group(1))
    return out


def cura_tool(s: BenchSettings) -> Tool:
    exe = _need("CuraEngine", "cura-engine")
    resources = cura_resources()
    settings = cura_settings(s)
    fdmprinter = resources / "definitions" / "fdmprinter.def.json"

    def argv(mesh: Path, out: Path) -> list[str]:
        cmd = [exe, "slice", "-v", "-j", str(fdmprinter)]
        for key, value in settings.items():
            cmd += ["-s", f"{key}={value}"]
        cmd.append("-e0")
        for key in CURA_EXTRUDER_KEYS:
            cmd += ["-s", f"{key}={settings[key]}"]
        return cmd + ["-l", str(mesh), "-o", str(out)]

    search = f"{resources / 'definitions'}:{resources / 'extruders'}"
    return Tool("cura", "CuraEngine", argv, {"CURA_ENGINE_SEARCH_PATH": search}, cura_stage_timings)


def prusa_tool(s: BenchSettings) -> Tool:
    exe = _need("prusa-slicer", "prusa-slicer")
    w, d, h = s.bed
    cx, cy = s.bed_centre

    def argv(mesh: Path, out: Path) -> list[str]:
        return [exe, "--export-gcode", "--loglevel", "2",
                "--layer-height", _fmt(s.layer_height), "--first-layer-height", _fmt(s.first_layer_height),
                "--perimeters", str(s.perimeters),
                "--top-solid-layers", str(s.top_layers), "--bottom-solid-layers", str(s.bottom_layers),
                "--fill-density", f"{_fmt(s.infill_percent)}%", "--fill-pattern", s.infill_pattern,
                "--nozzle-diameter", _fmt(s.nozzle), "--extrusion-width", _fmt(s.line_width),
                "--filament-diameter", _fmt(s.filament), "--skirts", str(s.skirt_loops),
                "--bed-shape", f"0x0,{_fmt(w)}x0,{_fmt(w)}x{_fmt(d)},0x{_fmt(d)}", "--max-print-height", _fmt(h),
                "--center", f"{_fmt(cx)},{_fmt(cy)}", "--gcode-flavor", "marlin",
                "-o", str(out), str(mesh)]

    return Tool("prusa", "PrusaSlicer", argv)


_SLIC3R_TOTAL = re.compile(r"Process took (\d+) minutes and ([0-9.]+) seconds")


def slic3r_stage_timings(log: str) -> dict[str, float]:
    m = _SLIC3R_TOTAL.search(log)
    return {"total": int(m.group(1)) * 60 + float(m.group(2))} if m else {}


def slic3r_tool(s: BenchSettings) -> Tool:
    exe = _need("slic3r", "slic3r")
    cx, cy = s.bed_centre

    def argv(mesh: Path, out: Path) -> list[str]:
        return [exe, "--no-gui", "-j", str(os.cpu_count() or 1),
                "--layer-height", _fmt(s.layer_height), "--first-layer-height", _fmt(s.first_layer_height),
                "--perimeters", str(s.perimeters),
                "--top-solid-layers", str(s.top_layers), "--bottom-solid-layers", str(s.bottom_layers),
                "--fill-density", f"{_fmt(s.infill_percent)}%", "--fill-pattern", s.infill_pattern,
                "--nozzle-diameter", _fmt(s.nozzle), "--extrusion-width", _fmt(s.line_width),
                "--filament-diameter", _fmt(s.filament), "--skirts", str(s.skirt_loops),
                "--print-center", f"{_fmt(cx)},{_fmt(cy)}", "--gcode-flavor", "reprap", "--gcode-comments",
                "-o", str(out), str(mesh)]

    return Tool("slic3r", "slic3r", argv, stage_timings=slic3r_stage_timings)


REFERENCE_TOOLS: dict[str, Callable[[BenchSettings], Tool]] = {
    "cura": cura_tool, "prusa": prusa_tool, "slic3r": slic3r_tool,
}


def main() -> None:
    import argparse
    import shlex

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    settings = BenchSettings()
    for name, make in REFERENCE_TOOLS.items():
        try:
            tool = make(settings)
        except ToolUnavailable as exc:
            print(f"{name}: UNAVAILABLE: {exc}")
            continue
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in tool.env.items())
        print(f"{tool.label}:\n  {env + ' ' if env else ''}{shlex.join(tool.argv(Path('MESH.stl'), Path('OUT.gcode')))}\n")


if __name__ == "__main__":
    main()
