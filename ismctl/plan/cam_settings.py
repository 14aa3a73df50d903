"""CAM settings: one frozen dataclass, range-checked once, loadable from a TOML table.

Defaults: a part held in a box of stock 3 mm larger on every side, 0.5 mm
faced off its top, climb milling, offset pocketing, 3 degree ramps, no finishing
allowance.  Depth of cut and stepover come from the tooling table's material
unless set here.  The machine figures (rates, accelerations) default to grbl
1.1's own ``$110``-``$122``; ``spindle_max_rpm`` is the spindle's top speed
(grbl's ``$30`` must be set to it, or grbl scales S down).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .model import PlanError

OPERATIONS = ("face", "profile", "pocket", "drill")
POCKET_STYLES = ("offset", "zigzag")
GRBL_MAX_RATE = (500.0, 500.0, 500.0)  # $110-$112, mm/min
GRBL_ACCEL = (10.0, 10.0, 10.0)  # $120-$122, mm/s^2


@dataclass(frozen=True)
class CamSettings:
    operations: tuple[str, ...] | None = None  # None: all a tool can do (an end mill mills, a drill drills)
    # stock
    margin: float = 3.0  # mm of stock around the part's bounding box (when no stock is given)
    facing_allowance: float = 0.5  # mm of stock above the part's top, faced off
    # cutting
    depth_of_cut: float | None = None  # mm per pass; None: the material's factor x tool diameter
    stepover: float | None = None  # mm between passes; None: the material's factor x tool diameter
    finish_allowance: float = 0.0  # mm left on the part's walls (for a finishing pass with another tool)
    climb: bool = True  # climb milling (spindle clockwise, material on the tool's right)
    pocket_style: str = "offset"  # "offset" rings or "zigzag" lines (each then closed by a wall pass)
    ramp_angle: float = 3.0  # degrees: ramps and helices into material descend no steeper
    helix_diameter: float | None = None  # mm; None: the tool's diameter
    peck_depth: float | None = None  # mm per drilling peck; None: the drill's diameter
    safe_z: float = 5.0  # mm above the stock top for travels
    # machine
    spindle_max_rpm: float = 24000.0
    max_rate: tuple[float, float, float] = GRBL_MAX_RATE  # mm/min per axis
    accel: tuple[float, float, float] = GRBL_ACCEL  # mm/s^2 per axis

    def __post_init__(self) -> None:
        if self.operations is not None:
            ops = tuple(self.operations)
            object.__setattr__(self, "operations", ops)
            bad = [op for op in ops if op not in OPERATIONS]
            if bad or not ops:
                raise PlanError(f"cam: operations: {bad[0] if bad else 'none given'!r} is not one of "
                                f"{', '.join(OPERATIONS)}")
        for name in ("margin", "facing_allowance", "finish_allowance"):
            _check(name, getattr(self, name), 0.0, 1000.0, inclusive=True)
        # Floors, not just > 0: a pass count or ramp length grows as 1/value, and a
        # micron-sized step would plan for hours instead of being refused.
        for name, least in (("depth_of_cut", 0.01), ("stepover", 0.01), ("helix_diameter", 0.1), ("peck_depth", 0.01)):
            if getattr(self, name) is not None:
                _check(name, getattr(self, name), least, 1000.0, inclusive=True)
        _check("ramp_angle", self.ramp_angle, 0.5, 30.0, inclusive=True)
        _check("safe_z", self.safe_z, 0.0, 200.0)
        _check("spindle_max_rpm", self.spindle_max_rpm, 0.0, 200000.0)
        if self.pocket_style not in POCKET_STYLES:
            raise PlanError(f"cam: pocket_style: must be one of {', '.join(POCKET_STYLES)}, got {self.pocket_style!r}")
        for name in ("max_rate", "accel"):
            value = getattr(self, name)
            if not (isinstance(value, (tuple, list)) and len(value) == 3):
                raise PlanError(f"cam: {name}: must be three numbers (X, Y, Z), got {value!r}")
            for v in value:
                _check(name, v, 0.0, 1e6)
            object.__setattr__(self, name, tuple(float(v) for v in value))

    @classmethod
    def from_table(cls, table: dict, where: str = "[cam]") -> "CamSettings":
        """Settings from a TOML table (``[cam]`` of a job or config); a bad key is named with ``where``."""
        if not isinstance(table, dict):
            raise PlanError(f"{where}: must be a table, got {type(table).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for key, value in table.items():
            if key not in fields:
                raise PlanError(f"{where}: {key}: unknown key (known: {', '.join(fields)})")
            default = fields[key].default
            if key == "operations":
                ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
                value = tuple(value) if ok else value
            elif isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, str):
                ok = isinstance(value, str)
            elif isinstance(default, tuple):
                ok = isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                     for v in value)
                value = tuple(value)
            else:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok:
                raise PlanError(f"{where}: {key}: wrong type, got {value!r} (default {default!r})")
            values[key] = value
        try:
            return cls(**values)
        except PlanError as exc:
            raise PlanError(f"{where}: {str(exc).removeprefix('cam: ')}") from None

    def replace(self, **changes) -> "CamSettings":
        """A copy with the changes that are not None (command-line options left unset)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise PlanError(f"cam: {unknown[0]}: unknown setting (known: {', '.join(sorted(known))})")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _check(name: str, value, low: float, high: float, inclusive: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low <= value if inclusive else low < value) and value <= high
    if not ok:
        raise PlanError(f"cam: {name}: must be {'>=' if inclusive else '>'} {low:g} and <= {high:g}, got {value!r}")
