"""Job files: read with their step files; every problem named by file and key."""

from pathlib import Path

import pytest

from ismctl import jobfile
from ismctl.jobfile import JobFileError

REPO = Path(__file__).resolve().parent.parent
DEVICES = ("printer", "mill")


def write(tmp_path: Path, text: str, files=("part.gcode", "part.stl", "bore.nc")) -> Path:
    for name in files:
        (tmp_path / name).write_bytes(b"solid x\nendsolid x\n" if name.endswith(".stl") else b"G28\nG1 X1 F600\n")
    path = tmp_path / "job.toml"
    path.write_text(text)
    return path


def refusal(path: Path, devices=DEVICES) -> JobFileError:
    with pytest.raises(JobFileError) as info:
        jobfile.load(path, devices=devices)
    assert str(path) in str(info.value)
    return info.value


def test_the_shipped_example_loads_with_its_files():
    job = jobfile.load(REPO / "configs" / "hybrid-example.toml", devices=DEVICES)
    assert job.name == "bracket, printed then faced and drilled"
    assert [sorted(s) for s in job.steps] == [["device", "mesh", "name"], ["handoff"], ["cam", "mesh", "name"], ["gcode", "name"]]
    assert job.steps[0]["name"] == "bracket.stl" and job.arrays[job.steps[0]["mesh"]].dtype.str == "|u1"
    assert len(job.arrays) == 1 and job.steps[2]["mesh"] == 0  # the printed mesh is the CAM step's too
    assert job.steps[3]["gcode"].startswith("(bore.nc")


def test_paths_are_relative_to_the_job_file_and_a_mesh_travels_once(tmp_path):
    path = write(tmp_path, """
[[steps]]
file = "part.stl"
[[steps]]
handoff = "auto"
transfer_s = 2
[[steps]]
cam = {mesh = "part.stl", operations = ["face", "drill"], tool = "flat-6"}
""")
    job = jobfile.load(path, devices=DEVICES)
    assert job.name == "job.toml"
    assert len(job.arrays) == 1 and job.steps[0]["mesh"] == job.steps[2]["mesh"] == 0
    assert job.arrays[0].tobytes() == (tmp_path / "part.stl").read_bytes()
    assert job.steps[1] == {"handoff": "auto", "transfer_s": 2.0}
    assert job.steps[2]["cam"] == {"operations": ["face", "drill"], "tool": "flat-6"}


@pytest.mark.parametrize("text, key", [
    ('[[steps]]\nfile = "missing.gcode"\n', "steps[0].file"),
    ('[[steps]]\nfile = "part.gcode"\ndevice = "lathe"\n', "steps[0].device"),
    ('[[steps]]\nfile = "part.gcode"\n[[steps]]\nhandoff = "operator"\ncolour = "red"\n', "steps[1].colour"),
    ('priority = 3\n[[steps]]\nfile = "part.gcode"\n', "priority"),
    ('name = "empty"\nsteps = []\n', "steps"),
    ('name = "none"\n', "steps"),
    ('[[steps]]\nfile = "part.gcode"\nhandoff = "auto"\n', "steps[0]"),
    ('[[steps]]\ndevice = "printer"\n', "steps[0]"),
    ('[[steps]]\nhandoff = "robot"\n', "steps[0].handoff"),
    ('[[steps]]\nhandoff = "auto"\ntransfer_s = -1\n', "steps[0].transfer_s"),
    ('[[steps]]\nfile = "part.gcode"\ntransfer_s = 3\n', "steps[0].transfer_s"),
    ('[[steps]]\ncam = {operations = ["face"]}\n', "steps[0].cam.mesh"),
    ('[[steps]]\ncam = {mesh = "part.gcode"}\n', "steps[0].cam.mesh"),
    ('[[steps]]\ncam = {mesh = "part.stl", tooling = "mine.toml"}\n', "steps[0].cam.tooling"),
    ('[[steps]]\nfile = 3\n', "steps[0].file"),
    ('name = ""\n[[steps]]\nfile = "part.gcode"\n', "name"),
    ('[[steps]\nfile = "part.gcode"\n', "(syntax)"),
])
def test_a_bad_job_file_is_refused_naming_the_key(tmp_path, text, key):
    error = refusal(write(tmp_path, text))
    assert error.key == key, str(error)


def test_a_missing_job_file_is_named(tmp_path):
    assert refusal(tmp_path / "nope.toml").key == "(file)"


def test_a_binary_gcode_file_is_refused_naming_the_step(tmp_path):
    path = write(tmp_path, '[[steps]]\nfile = "part.gcode"\n')
    (tmp_path / "part.gcode").write_bytes(b"\xff\xfe\x00G28")
    assert refusal(path).key == "steps[0].file"
