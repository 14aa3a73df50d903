"""What the supervisor needs to know per device class to plan a job for it.

Which G-code dialect a job's text is parsed with (Marlin for a printer, grbl for
a mill), which device class a file name implies when the client names no
device, and which exceptions mean "the input is bad" (a validation error naming
it) rather than "the supervisor failed".  The core and the job book ask here
instead of testing class names themselves.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Callable

from .. import gcode
from ..plan.model import MESH_SUFFIXES, PlanError
from ..plan.motion_limits import MotionLimits
from ..program import Program, ProgramError

# G-code file suffixes and the class whose dialect they are in.  A mesh goes to a
# printer (the cell slices it); anything else defaults to a printer too.
GCODE_SUFFIX_CLASS = {".gcode": "printer", ".gco": "printer", ".g": "printer", ".nc": "mill", ".ngc": "mill", ".tap": "mill"}
DEFAULT_CLASS = "printer"
SLICED_CLASS = "printer"  # the class a mesh is sliced for
CAM_CLASS = "mill"  # the class a mesh with CAM settings is planned for

INPUT_ERRORS: tuple[type[Exception], ...] = (gcode.GcodeError, PlanError, ProgramError)


def class_for_file(name: str) -> str:
    """The device class a file of this name is meant for."""
    suffix = PurePath(name).suffix.lower()
    if suffix in MESH_SUFFIXES:
        return SLICED_CLASS
    return GCODE_SUFFIX_CLASS.get(suffix, DEFAULT_CLASS)


def parser(device_class: str, limits: MotionLimits | None = None) -> Callable[[str, str], Program]:
    """``(text, name) -> Program`` in the dialect of ``device_class``; raises one of INPUT_ERRORS on bad input."""
    if device_class == "mill":
        from .. import grbl_gcode

        return lambda text, name: grbl_gcode.parse(text, name)
    return lambda text, name: gcode.parse(text, name=name, limits=limits)


class NoDevice(ValueError):
    """No device of the cell can take the job; the message says why."""


def pick_device(classes: dict[str, str], requested: str | None, file_name: str, device_class: str | None = None) -> str:
    """The device a job goes to: the one ``requested``, else the cell's first of the class the file implies.

    ``classes`` maps the cell's device names to their classes; ``device_class``
    overrides what the file name implies (a CAM step is a mill's whatever its mesh).
    """
    if requested:
        if requested not in classes:
            raise NoDevice(f"unknown device {requested!r} (this cell has: {', '.join(classes) or 'none'})")
        return requested
    wanted = device_class or class_for_file(file_name)
    for name, found in classes.items():
        if found == wanted:
            return name
    raise NoDevice(f"this cell has no {wanted} for {file_name} (it has: {', '.join(f'{n} ({c})' for n, c in classes.items()) or 'no devices'})")
