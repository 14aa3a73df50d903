"""`ismctl verify` as a user runs it: a real subprocess on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import trimesh
from PIL import Image
from sim_helpers import REPO
from test_zmap import STOCK, pocket_gcode, pocketed_block

STOCK_ARG = ",".join(f"{v:g}" for v in (*STOCK.lo, *STOCK.hi))


def verify(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ismctl", "verify", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    mesh = pocketed_block(2.0)
    trimesh.Trimesh(mesh.vertices, mesh.faces).export(root / "part.stl")
    good = pocket_gcode(3.0, 2.0, 1.0, 2.5).replace("M3 S10000", "G0 Z5 (start)\nM3 S10000")
    (root / "good.nc").write_text(good)
    (root / "gouge.nc").write_text(good.replace("M5\n", "G0 X20 Y10\nG1 Z-2.5 F100\nG0 Z5\nM5\n"))
    (root / "broken.nc").write_text("G21\nG0 Z5\nG41 D3\n")
    printer_only = (REPO / "configs" / "demo-cell.toml").read_text().split("[devices.mill]")[0]
    (root / "printer-only.toml").write_text(printer_only)
    return root


def test_clean_program_exits_0_with_summary_and_png(files):
    png = files / "good.png"
    run = verify(str(files / "good.nc"), "--mesh", str(files / "part.stl"), "--stock", STOCK_ARG,
                 "--tool", "flat-6", "--png", str(png), "--start", "0,0,5")
    assert run.returncode == 0, run.stderr
    assert "clean" in run.stdout and "gouges: none" in run.stdout and "flat 6 mm (flat-6)" in run.stdout
    assert Image.open(png).size[0] == 800


def test_gouge_exits_1_naming_the_line(files):
    run = verify(str(files / "gouge.nc"), "--mesh", str(files / "part.stl"), "--stock", STOCK_ARG,
                 "--tool-diameter", "6", "--json")
    assert run.returncode == 1, run.stderr
    report = json.loads(run.stdout)
    line = (files / "gouge.nc").read_text().splitlines().index("G1 Z-2.5 F100") + 1
    [by_op] = report["gouges"]["by_op"]
    assert report["clean"] is False and by_op["line"] == line and by_op["command"] == "G1 Z-2.5 F100"
    assert report["gouges"]["max_depth_mm"] == pytest.approx(0.5)
    assert report["collisions"] == []


def test_printed_summary_names_the_gouging_line(files):
    run = verify(str(files / "gouge.nc"), "--mesh", str(files / "part.stl"), "--stock", STOCK_ARG,
                 "--tool-diameter", "6")
    line = (files / "gouge.nc").read_text().splitlines().index("G1 Z-2.5 F100") + 1
    assert run.returncode == 1 and "FAILED" in run.stdout
    assert f"line {line}: G1 Z-2.5 F100  0.500 mm deep at X20 Y10," in run.stdout, run.stdout


def test_tool_from_the_cell_config(files):
    run = verify(str(files / "good.nc"), "--mesh", str(files / "part.stl"), "--stock", STOCK_ARG,
                 "--config", str(REPO / "configs" / "demo-cell.toml"), "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["tool"] == {"shape": "flat", "diameter": 6.0, "name": "flat-6"}


def test_tool_from_the_default_cell_config(files, tmp_path):
    """No tool option and no --config: the default cell config's mill (here the one $ISMCTL_CONFIG names)."""
    cell = (REPO / "configs" / "demo-cell.toml").read_text().replace('tool = "flat-6"', 'tool = "flat-3"')
    assert 'tool = "flat-3"' in cell
    (tmp_path / "cell.toml").write_text(cell)
    run = subprocess.run([sys.executable, "-m", "ismctl", "verify", str(files / "good.nc"), "--mesh",
                          str(files / "part.stl"), "--stock", STOCK_ARG, "--json"], cwd=REPO, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "ISMCTL_CONFIG": str(tmp_path / "cell.toml")})
    assert json.loads(run.stdout)["tool"]["name"] == "flat-3", run.stderr


def test_invalid_gcode_exits_1_naming_the_line(files):
    run = verify(str(files / "broken.nc"), "--mesh", str(files / "part.stl"), "--tool-diameter", "3")
    assert run.returncode == 1
    assert "broken.nc" in run.stderr and "line 3" in run.stderr and "error 20" in run.stderr


@pytest.mark.parametrize("args, needle", [
    (["--tool-diameter", "6", "--mesh", "missing.stl"], "no such mesh file"),
    (["--mesh", "{part}", "--config", "{printer_only}"], "the cell has no mill"),
    (["--mesh", "{part}", "--tool", "flat-99"], "no tool named 'flat-99'"),
    (["--mesh", "{part}", "--tool", "drill-3"], "flat and ball"),
    (["--mesh", "{part}", "--tool-diameter", "6", "--stock", "1,2,3"], "six numbers"),
])
def test_usage_errors_exit_2(files, args, needle):
    args = [a.replace("{part}", str(files / "part.stl")).replace("{printer_only}", str(files / "printer-only.toml"))
            for a in args]
    run = verify(str(files / "good.nc"), *args)
    assert run.returncode == 2 and needle in run.stderr, run.stderr


def test_png_is_written_whatever_its_name_ends_in(files):
    out = files / "heights.map"  # PIL picks a format by suffix and knows no ".map": a traceback before
    run = verify(str(files / "good.nc"), "--mesh", str(files / "part.stl"), "--stock", STOCK_ARG,
                 "--tool", "flat-6", "--png", str(out), "--start", "0,0,5", "--grid", "0.5")
    assert run.returncode == 0, run.stderr
    assert Image.open(out).format == "PNG"


def test_unreadable_program_is_named_not_blamed_on_the_png(files):
    """Reading /proc/self/mem at offset 0 fails with EIO (a read error even for root, who can read any file mode)."""
    run = verify("/proc/self/mem", "--mesh", str(files / "part.stl"), "--tool-diameter", "3")
    assert run.returncode == 2 and "cannot read /proc/self/mem" in run.stderr, run.stderr
    assert "cannot write" not in run.stderr


def test_help_teaches():
    run = subprocess.run([sys.executable, "-m", "ismctl", "verify", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0 and "examples:" in run.stdout and "--tool-shape" in run.stdout
