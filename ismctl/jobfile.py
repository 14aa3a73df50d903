"""Job files (TOML): one job of ordered steps on several devices, read by `ismctl submit job.toml`.

The file names the step files; this module reads them (paths relative to the
job file) and builds the ``submit_graph`` message that carries their contents:
G-code as text, meshes as uint8 arrays (each file once, however many steps use
it).  Every problem is a :class:`JobFileError` naming the file and the key.
What only the cell can judge (which device takes a step, whether a hand-off sits
between two device steps, whether G-code parses) the supervisor checks, naming
the same ``steps[i].key``.  The format is in docs/jobs.md.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import HANDOFF_MODES
from .plan.model import MESH_SUFFIXES
from .wire import MAX_ARRAYS

TOP_KEYS = ("name", "steps")
STEP_KEYS = ("file", "cam", "handoff", "device", "transfer_s")
STEP_CONTENTS = ("file", "cam", "handoff")


class JobFileError(ValueError):
    def __init__(self, path: Path, key: str, problem: str):
        super().__init__(f"{path}: {key}: {problem}")
        self.key = key


@dataclass
class JobFile:
    """A job file read and its step files loaded: what ``submit_graph`` sends."""

    path: Path
    name: str
    steps: list[dict]  # submit_graph steps: a mesh is an index into ``arrays``
    arrays: list[np.ndarray] = field(default_factory=list)


def load(path: str | Path, devices: tuple[str, ...] | None = None) -> JobFile:
    """Read ``path``; with ``devices`` (the cell's device names) a step's device is checked too."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JobFileError(path, "(file)", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobFileError(path, "(file)", f"cannot read it: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise JobFileError(path, "(syntax)", str(exc)) from None
    _refuse_unknown(path, "", raw, TOP_KEYS)
    name = raw.get("name", path.name)
    if not isinstance(name, str) or not name.strip():
        raise JobFileError(path, "name", f"must be a non-empty string, got {name!r}")
    steps = raw.get("steps")
    if not isinstance(steps, list) or not steps:
        raise JobFileError(path, "steps", "a job file needs at least one [[steps]] table")
    job = JobFile(path, name, [])
    meshes: dict[Path, int] = {}
    for i, step in enumerate(steps):
        job.steps.append(_step(path, f"steps[{i}]", step, devices, job.arrays, meshes))
    return job


def _refuse_unknown(path: Path, prefix: str, table: dict, known) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise JobFileError(path, f"{prefix}{unknown[0]}", f"unknown key (known: {', '.join(known)})")


def _step(path: Path, where: str, step, devices, arrays: list, meshes: dict) -> dict:
    if not isinstance(step, dict):
        raise JobFileError(path, where, "must be a table ([[steps]])")
    _refuse_unknown(path, f"{where}.", step, STEP_KEYS)
    contents = [k for k in STEP_CONTENTS if k in step]
    if len(contents) != 1:
        raise JobFileError(path, where, f"give exactly one of {', '.join(STEP_CONTENTS)}, got {', '.join(contents) or 'none'}")
    if "handoff" in step:
        return _handoff(path, where, step)
    out = {}
    if "transfer_s" in step:
        raise JobFileError(path, f"{where}.transfer_s", "only applies to a hand-off step")
    if "device" in step:
        device = step["device"]
        if not isinstance(device, str) or (devices is not None and device not in devices):
            raise JobFileError(path, f"{where}.device", f"unknown device {device!r} (this cell has: {', '.join(devices or ()) or 'none'})")
        out["device"] = device
    if "file" in step:
        file = _step_file(path, f"{where}.file", step["file"])
        out["name"] = file.name
        if file.suffix.lower() in MESH_SUFFIXES:
            out["mesh"] = _mesh(path, f"{where}.file", file, arrays, meshes)
        else:
            try:
                out["gcode"] = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise JobFileError(path, f"{where}.file", f"cannot read {file} as G-code text: {exc}") from None
        return out
    cam = step["cam"]
    if not isinstance(cam, dict):
        raise JobFileError(path, f"{where}.cam", "must be a table, e.g. {mesh = \"part.stl\", operations = [\"face\"]}")
    if "mesh" not in cam:
        raise JobFileError(path, f"{where}.cam.mesh", "is required: the mesh the mill's toolpaths are planned for")
    mesh = _step_file(path, f"{where}.cam.mesh", cam["mesh"])
    if mesh.suffix.lower() not in MESH_SUFFIXES:
        raise JobFileError(path, f"{where}.cam.mesh", f"{mesh.name} is not a mesh file (want {', '.join(MESH_SUFFIXES)})")
    if "tooling" in cam:
        raise JobFileError(path, f"{where}.cam.tooling", "the tool table is the cell's (its mill's tooling key), not the job's")
    out["name"] = mesh.name
    out["mesh"] = _mesh(path, f"{where}.cam.mesh", mesh, arrays, meshes)
    out["cam"] = {k: v for k, v in cam.items() if k != "mesh"}
    return out


def _handoff(path: Path, where: str, step: dict) -> dict:
    mode = step["handoff"]
    if mode not in (*HANDOFF_MODES, "default"):
        raise JobFileError(path, f"{where}.handoff", f"must be \"operator\", \"auto\" or \"default\" (the cell's [handoff] mode), got {mode!r}")
    if "device" in step:
        raise JobFileError(path, f"{where}.device", "a hand-off step names no device (it moves the part between the steps around it)")
    out = {"handoff": mode}
    if "transfer_s" in step:
        transfer_s = step["transfer_s"]
        if isinstance(transfer_s, bool) or not isinstance(transfer_s, (int, float)) or transfer_s < 0:
            raise JobFileError(path, f"{where}.transfer_s", f"must be a number of seconds >= 0, got {transfer_s!r}")
        out["transfer_s"] = float(transfer_s)
    return out


def _step_file(path: Path, key: str, value) -> Path:
    if not isinstance(value, str) or not value:
        raise JobFileError(path, key, f"must name a file, got {value!r}")
    file = (path.parent / value).resolve()
    if not file.is_file():
        raise JobFileError(path, key, f"no such file: {file}")
    return file


def _mesh(path: Path, key: str, file: Path, arrays: list, meshes: dict) -> int:
    """The index of ``file``'s bytes among the message's arrays, read once."""
    if file not in meshes:
        if len(arrays) >= MAX_ARRAYS:
            raise JobFileError(path, key, f"a job file can name at most {MAX_ARRAYS} different meshes")
        try:
            arrays.append(np.frombuffer(file.read_bytes(), dtype=np.uint8))
        except OSError as exc:
            raise JobFileError(path, key, f"cannot read {file}: {exc}") from None
        meshes[file] = len(arrays) - 1
    return meshes[file]
