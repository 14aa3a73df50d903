"""Machine motion limits of a printer (Marlin's M201/M203/M204/M205 values).

Kept apart from the timing kernel so that reading a cell config does not
import Numba (every CLI command reads one; Numba's import costs about a second).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

from .model import PlanError

AXES = "XYZE"
#: An E move longer than this is refused by Marlin (EXTRUDE_MAXLENGTH): the E axis stays.
EXTRUDE_MAXLENGTH = 200.0
# columns of the limits table handed to the kernel
_FEED, _ACC, _PRINT, _RETRACT, _TRAVEL, _JD = 0, 4, 8, 9, 10, 11
_COLUMNS = 12
_AXIS_RANGE = {"max_feedrate": 10_000.0, "max_accel": 1_000_000.0}   # mm/s, mm/s^2
_ACCEL_MAX = 1_000_000.0
_JD_MAX = 1.0


class MotionLimitsError(PlanError):
    """A bad motion limit; ``key`` names it (``devices.printer.motion.accel``)."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class MotionLimits:
    """Machine limits of one printer; defaults are Marlin's (and the simulator's)."""

    max_feedrate: tuple = (300.0, 300.0, 5.0, 25.0)        # mm/s X Y Z E (M203)
    max_accel: tuple = (3000.0, 3000.0, 100.0, 10000.0)    # mm/s^2 X Y Z E (M201)
    accel: float = 3000.0                                  # M204 P: moves that extrude
    retract_accel: float = 3000.0                          # M204 R: E-only moves
    travel_accel: float = 3000.0                           # M204 T: moves without E
    junction_deviation: float = 0.013                      # mm (M205 J)

    def __post_init__(self):
        for name, top in _AXIS_RANGE.items():
            values = getattr(self, name)
            if (not isinstance(values, (tuple, list)) or len(values) != 4
                    or not all(_is_number(v) and 0 < v <= top for v in values)):
                raise MotionLimitsError(name, f"needs 4 numbers (X, Y, Z, E) in (0, {top:g}], got {values!r}")
            object.__setattr__(self, name, tuple(float(v) for v in values))
        for name in ("accel", "retract_accel", "travel_accel", "junction_deviation"):
            value = getattr(self, name)
            top = _JD_MAX if name == "junction_deviation" else _ACCEL_MAX
            if not (_is_number(value) and 0 < value <= top):
                raise MotionLimitsError(name, f"must be a number in (0, {top:g}], got {value!r}")
            object.__setattr__(self, name, float(value))

    @classmethod
    def from_table(cls, table: dict, where: str) -> "MotionLimits":
        """Limits from a config table (keys as the field names); errors name ``where.key``."""
        if not isinstance(table, dict):
            raise MotionLimitsError(where, f"must be a table, got {type(table).__name__}")
        known = {f.name for f in fields(cls)}
        for key in table:
            if key not in known:
                raise MotionLimitsError(f"{where}.{key}", f"unknown key (known: {', '.join(sorted(known))})")
        try:
            return cls(**table)
        except MotionLimitsError as exc:
            raise MotionLimitsError(f"{where}.{exc.key}", exc.problem) from None

    def after_command(self, code: str, params: dict) -> "MotionLimits":
        """The limits after ``M201``/``M203``/``M204``/``M205`` with ``params`` (letter -> value
        or None), applied as Marlin and the simulator do; other codes change nothing."""
        def given(letter):
            v = params.get(letter)
            return v if v is not None and v > 0 else None

        if code in ("M201", "M203"):
            name = "max_accel" if code == "M201" else "max_feedrate"
            values = tuple(given(a) or old for a, old in zip(AXES, getattr(self, name)))
            return replace(self, **{name: values})
        if code == "M204":
            change = {}
            for letter, names in (("S", ("accel", "travel_accel")), ("P", ("accel",)),
                                  ("R", ("retract_accel",)), ("T", ("travel_accel",))):
                if given(letter) is not None:
                    change.update(dict.fromkeys(names, given(letter)))
            return replace(self, **change) if change else self
        if code == "M205":
            j = params.get("J")
            if j is not None and 0.01 <= j <= 0.3:
                return replace(self, junction_deviation=j)
        return self

    def row(self) -> np.ndarray:
        """The limits as one row of the kernel's table."""
        return np.array([*self.max_feedrate, *self.max_accel, self.accel, self.retract_accel,
                         self.travel_accel, self.junction_deviation])


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
