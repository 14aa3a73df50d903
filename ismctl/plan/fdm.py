"""Mesh to print: the FDM planning chain, step by step, timed.

Each step is a function of its own module (see the package docstring); this
module only runs them in order, reports progress and keeps the wall time of
each, so a slow step shows (``ismctl slice --timings`` prints them the way
CuraEngine's verbose log does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..program import Program
from .fdm_settings import SliceSettings
from .memory import release_free_memory
from .model import Mesh, PlanError

if TYPE_CHECKING:
    from .fdm_gcode import ProgramParts

STEPS = ("load", "repair", "layers", "slice", "regions", "infill", "paths", "gcode")

Progress = Callable[[str, int], None]  # (step name, step index); called as each step starts


@dataclass
class SliceResult:
    gcode: str
    parts: ProgramParts  # the rest of the Program: see ``program``
    placement: np.ndarray  # (3,) mm the mesh was moved by to sit on the bed (its coordinates + this = the G-code's)
    repairs: list[str]  # what the mesh check repaired or warns about
    notes: list[str]  # what slicing had to mend
    timings: dict[str, float] = field(default_factory=dict)  # step -> seconds

    @cached_property
    def program(self) -> Program:
        """The G-code's Program, made on first use (``ismctl slice`` only writes the text)."""
        return self.parts.program(self.gcode)


class _Steps:
    """Times each step and tells the progress callback."""

    def __init__(self, progress: Progress | None):
        self.progress = progress
        self.timings: dict[str, float] = {}
        self._name = None
        self._t0 = 0.0

    def start(self, name: str) -> None:
        self._stop()
        self._name, self._t0 = name, time.perf_counter()
        if self.progress is not None:
            self.progress(name, STEPS.index(name))

    def _stop(self) -> None:
        if self._name is not None:
            self.timings[self._name] = time.perf_counter() - self._t0

    def done(self) -> dict[str, float]:
        self._stop()
        self._name = None
        return self.timings


def place_on_bed(mesh: Mesh, settings: SliceSettings) -> tuple[Mesh, np.ndarray]:
    """Bottom on z = 0 and (by default) centred on the bed; refuse a part that does not fit.

    Returns the moved mesh and the shift.
    """
    lo, hi = mesh.bounds
    shift = np.array([0.0, 0.0, -lo[2]])
    if settings.center_on_bed:
        shift[:2] = np.array([settings.bed_x, settings.bed_y]) / 2 - (lo[:2] + hi[:2]) / 2
    lo, hi = lo + shift, hi + shift
    bed = np.array([settings.bed_x, settings.bed_y, settings.max_z])
    if (lo < -1e-9).any() or (hi > bed + 1e-9).any():
        size = " x ".join(f"{s:.1f}" for s in hi - lo)
        raise PlanError(f"mesh {mesh.name!r} ({size} mm) does not fit the {settings.bed_x:g} x {settings.bed_y:g} "
                        f"x {settings.max_z:g} mm build volume at the place it was given (set center_on_bed)")
    return Mesh(mesh.vertices + shift, mesh.faces, mesh.name), shift


def slice_file(path: str | Path, settings: SliceSettings | None = None, *, data: bytes | None = None,
               limits=None, allow_open: bool = False, progress: Progress | None = None) -> SliceResult:
    """Read a mesh file (or ``data``, its bytes, with ``path`` naming it) and plan it into a print."""
    from .mesh_io import load_mesh

    steps = _Steps(progress)
    steps.start("load")
    return _slice(load_mesh(path, data=data), settings or SliceSettings(), limits, allow_open, steps)


def slice_mesh(mesh: Mesh, settings: SliceSettings | None = None, *, limits=None, allow_open: bool = False,
               progress: Progress | None = None) -> SliceResult:
    """Plan an in-memory mesh into a print (the same chain as :func:`slice_file` without loading)."""
    return _slice(mesh, settings or SliceSettings(), limits, allow_open, _Steps(progress))


def _slice(mesh: Mesh, settings: SliceSettings, limits, allow_open: bool, steps: _Steps) -> SliceResult:
    from . import (
        fdm_gcode,
        infill,
        layer_heights,
        mesh_repair,
        regions,
        slicing,
        toolpath,
    )

    steps.start("repair")
    mesh, report = mesh_repair.prepare_mesh(mesh, build_volume=(settings.bed_x, settings.bed_y, settings.max_z),
                                            allow_open=allow_open)
    mesh, placement = place_on_bed(mesh, settings)
    name = mesh.name
    steps.start("layers")
    z_top, height = layer_heights.plan_layers(mesh, settings)
    steps.start("slice")
    stack = slicing.slice_mesh(mesh, z_top - height / 2, z_top, height)
    del mesh  # each step's input is dropped once the next step has its own: the peak memory is one step's
    release_free_memory()
    steps.start("regions")
    layer_regions = regions.build_regions(stack, settings)
    skirt, brim = regions.skirt_and_brim(stack, settings)
    notes = list(stack.notes)
    del stack
    release_free_memory()
    steps.start("infill")
    infill.fill_regions(layer_regions, settings)
    steps.start("paths")
    layer_paths = toolpath.order_layers(layer_regions, skirt, brim, settings)
    del layer_regions
    release_free_memory()
    steps.start("gcode")
    text, parts = fdm_gcode.emit_fdm(layer_paths, settings, limits, name=name)
    return SliceResult(text, parts, placement, report.messages(), notes, steps.done())
