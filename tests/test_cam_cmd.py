"""`ismctl cam` as a user runs it, and its output checked by `ismctl verify` (the Z-map simulation)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import trimesh
from sim_helpers import REPO

from cam_parts import block_with_pocket_and_holes
from ismctl.cli import main
from ismctl.plan.cam import plan_cam_from_table
from ismctl.plan.model import PlanError


def ismctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ismctl", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def part(tmp_path_factory):
    root = tmp_path_factory.mktemp("cam")
    mesh = block_with_pocket_and_holes()
    trimesh.Trimesh(mesh.vertices, mesh.faces).export(root / "block.stl")
    return root / "block.stl"


def test_help_teaches():
    run = ismctl("cam", "--help")
    assert run.returncode == 0
    assert "examples:" in run.stdout and "--stock 60x40x12" in run.stdout and "--config" in run.stdout


def test_cam_writes_gcode_and_a_summary(part, tmp_path, capsys):
    out = tmp_path / "block.nc"
    assert main(["cam", str(part), "-o", str(out), "--stock", "40x30x10", "--tool", "flat-6", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert out.read_text().count("\n") == info["lines"]
    assert info["tool"] == "flat-6" and info["stock"] == [[0, 0, -10], [40, 30, 0]]
    assert set(info["operations"]) == {"face", "pocket", "profile"} and info["estimated_s"] > 0
    assert info["rpm"] == 7958 and info["removed_mm3"] > 1000
    assert any("3.000" in note and "left for a drill" in note for note in info["notes"])


def test_cam_takes_the_cell_mills_tool(part, tmp_path, capsys):
    out = tmp_path / "cell.nc"
    assert main(["cam", str(part), "-o", str(out), "--config", str(REPO / "configs" / "demo-cell.toml")]) == 0
    text = capsys.readouterr().out
    assert "tool flat-6 in PLA" in text and "estimated" in text
    assert "(tool flat-6: flat D6" in out.read_text()


@pytest.mark.parametrize("args, code, message", [
    (["--tool", "flat-99"], 2, "no tool named 'flat-99' (known: "),
    (["--material", "wood"], 2, "no material named 'wood'"),
    (["--stock", "40x30"], 2, "give W,D,H or WxDxH"),
    (["--stock", "10x10x10"], 1, "too small: the part needs 30.000 mm in X"),
    (["--tool", "drill-3", "--ops", "profile"], 1, "is a drill"),
    (["--ramp-angle", "60"], 2, "ramp_angle: must be >= 0.5 and <= 30"),
])
def test_bad_input_is_named(part, tmp_path, capsys, args, code, message):
    assert main(["cam", str(part), "-o", str(tmp_path / "x.nc"), *args]) == code
    assert message in capsys.readouterr().err


def test_missing_mesh_is_a_usage_error(tmp_path, capsys):
    assert main(["cam", str(tmp_path / "nope.stl")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_job_table_plans_like_the_options(part):
    result = plan_cam_from_table(part, {"tool": "flat-6", "stock": "+4", "operations": ["profile"], "climb": False})
    assert result.tool.name == "flat-6" and set(result.operations) == {"profile"}
    assert result.stock[1].tolist()[:2] == [38.0, 28.0]
    assert plan_cam_from_table(part, {"operations": ["face"]}, tool="", material="").tool.name == "flat-3"
    with pytest.raises(PlanError, match=r"^\[job.step1.cam\]: toool: unknown key"):
        plan_cam_from_table(part, {"toool": "x"}, where="[job.step1.cam]")


def test_verify_finds_no_gouge_in_our_program(part, tmp_path):
    """The independent check: `ismctl verify` cuts a height map with our program and compares it to the part."""
    out = tmp_path / "block.nc"
    run = ismctl("cam", str(part), "-o", str(out), "--json")
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    mesh = trimesh.load(part)
    mesh.apply_translation(info["offset"])  # the part where the program puts it
    mesh.export(tmp_path / "placed.stl")
    stock = ",".join(f"{v:g}" for v in (*info["stock"][0], *info["stock"][1]))
    run = ismctl("verify", str(out), "--mesh", str(tmp_path / "placed.stl"), "--stock", stock, "--tool", "flat-3")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "clean" in run.stdout and "gouges: none" in run.stdout


def test_verify_reads_tool_stock_and_placement_from_our_program(part, tmp_path):
    """A user's two commands, no options repeated: the program names its tool, stock box and the part's offset."""
    out = tmp_path / "block.nc"
    run = ismctl("cam", str(part), "-o", str(out), "--tool", "flat-3", "--stock", "+4", "--json")
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    run = ismctl("verify", str(out), "--mesh", str(part), "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["clean"] and report["tool"]["name"] == "flat-3" and report["gouges"]["cells"] == 0
    assert [report["stock"]["lo"], report["stock"]["hi"]] == info["stock"]
    assert report["removed_mm3"] > 0


def test_a_broken_mesh_is_named(tmp_path, capsys):
    bad = tmp_path / "broken.stl"
    bad.write_text("solid x\n  facet normal 0 0 1\n    outer loop\n      vertex 0 0 nope\n")
    assert main(["cam", str(bad), "-o", str(tmp_path / "x.nc")]) == 1
    err = capsys.readouterr().err
    assert "broken.stl" in err and not (tmp_path / "x.nc").exists()
