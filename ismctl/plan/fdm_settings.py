"""FDM slicing settings: one dataclass, range-checked once, loadable from TOML.

Defaults are those of a 0.4 mm nozzle PLA profile close to PrusaSlicer's and
Cura's: 0.2 mm layers, 2 walls, 4 solid layers top and bottom, 20 % grid infill.
A ``[slicing]`` table in a cell config or in a ``--config`` file overrides them
by field name; an unknown key or a value out of range is an error naming it.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .model import PlanError

PATTERNS = ("rectilinear", "grid", "gyroid")


@dataclass(frozen=True)
class SliceSettings:
    # layers
    layer_height: float = 0.2  # mm
    first_layer_height: float = 0.3  # mm
    adaptive_layers: bool = False  # thinner layers where the surface is shallow
    adaptive_min_height: float = 0.08  # mm
    adaptive_max_height: float = 0.3  # mm
    adaptive_quality: float = 0.5  # 0 (thick, fast) .. 1 (thin, fine): allowed stair-step height
    # extrusion
    nozzle_diameter: float = 0.4  # mm
    line_width: float = 0.45  # mm
    first_layer_line_width: float = 0.5  # mm
    filament_diameter: float = 1.75  # mm
    filament_density: float = 1.24  # g/cm^3 (PLA)
    extrusion_multiplier: float = 1.0
    # regions
    perimeters: int = 2
    top_layers: int = 4
    bottom_layers: int = 4
    infill_density: float = 0.2  # 0..1
    infill_pattern: str = "grid"
    infill_angle: float = 45.0  # degrees; alternates by 90 on successive solid layers
    infill_overlap: float = 0.05  # fraction of a line width that fill overlaps the innermost wall (Cura: 5 % for skin)
    min_feature: float = 0.1  # mm; areas thinner than this are dropped
    # skirt and brim
    skirt_loops: int = 1
    skirt_distance: float = 3.0  # mm from the part
    brim_width: float = 0.0  # mm; 0 = no brim
    # seams and travel
    seam: str = "rear"  # "rear" (largest y), "nearest" (closest to where the nozzle is), "aligned"
    retract_length: float = 0.8  # mm of filament
    retract_speed: float = 35.0  # mm/s
    retract_min_travel: float = 1.5  # mm; shorter travels do not retract
    z_hop: float = 0.2  # mm lift on retracted travels; 0 = none
    # speeds (mm/s)
    print_speed: float = 60.0
    outer_wall_speed: float = 30.0
    inner_wall_speed: float = 45.0
    infill_speed: float = 80.0
    skin_speed: float = 40.0
    first_layer_speed: float = 20.0
    travel_speed: float = 150.0
    # temperatures and cooling
    nozzle_temp: float = 210.0  # degC
    bed_temp: float = 60.0  # degC
    fan_speed: float = 1.0  # 0..1 from fan_start_layer on
    fan_start_layer: int = 1  # 0-based; the first layer prints without fan
    min_layer_time: float = 8.0  # s; faster layers are slowed down to this
    min_print_speed: float = 10.0  # mm/s; the slow-down never goes below this
    # machine
    bed_x: float = 220.0  # mm
    bed_y: float = 220.0  # mm
    max_z: float = 250.0  # mm
    center_on_bed: bool = True  # move the part's XY centre to the bed centre, its bottom to z = 0

    def __post_init__(self) -> None:
        positive = ("layer_height", "first_layer_height", "adaptive_min_height", "adaptive_max_height",
                    "nozzle_diameter", "line_width", "first_layer_line_width", "filament_diameter",
                    "filament_density", "extrusion_multiplier", "retract_speed", "print_speed",
                    "outer_wall_speed", "inner_wall_speed", "infill_speed", "skin_speed",
                    "first_layer_speed", "travel_speed", "min_print_speed", "bed_x", "bed_y", "max_z")
        for name in positive:
            if not getattr(self, name) > 0:
                raise PlanError(f"slicing setting {name} must be > 0, got {getattr(self, name)!r}")
        non_negative = ("retract_length", "retract_min_travel", "z_hop", "skirt_distance", "brim_width",
                        "min_layer_time", "min_feature", "infill_overlap", "nozzle_temp", "bed_temp")
        for name in non_negative:
            if not getattr(self, name) >= 0:
                raise PlanError(f"slicing setting {name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("perimeters", "top_layers", "bottom_layers", "skirt_loops", "fan_start_layer"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise PlanError(f"slicing setting {name} must be a whole number >= 0, got {value!r}")
        for name in ("infill_density", "fan_speed", "adaptive_quality"):
            if not 0 <= getattr(self, name) <= 1:
                raise PlanError(f"slicing setting {name} must be between 0 and 1, got {getattr(self, name)!r}")
        if self.infill_pattern not in PATTERNS:
            raise PlanError(f"slicing setting infill_pattern must be one of {', '.join(PATTERNS)}, got {self.infill_pattern!r}")
        if self.seam not in ("rear", "nearest", "aligned"):
            raise PlanError(f"slicing setting seam must be rear, nearest or aligned, got {self.seam!r}")
        for name in ("layer_height", "first_layer_height", "adaptive_max_height"):
            if getattr(self, name) > 0.8 * self.nozzle_diameter + 1e-9:
                raise PlanError(f"slicing setting {name} = {getattr(self, name)} mm is more than 80% of the "
                                f"{self.nozzle_diameter} mm nozzle; the lines would not bond")
        if self.adaptive_min_height > self.adaptive_max_height:
            raise PlanError("slicing setting adaptive_min_height is larger than adaptive_max_height")

    def replace(self, **changes) -> "SliceSettings":
        """A copy with ``changes`` (None values ignored, so CLI options can pass straight through)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_table(cls, table: dict) -> "SliceSettings":
        """Settings from a ``[slicing]`` table; the caller names the file in its own error."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for key, value in table.items():
            if key not in fields:
                raise PlanError(f"unknown slicing setting {key!r}")
            expected = type(getattr(cls(), key))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise PlanError(f"slicing setting {key} must be {expected.__name__}, got {value!r}")
            values[key] = value
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path) -> "SliceSettings":
        """The ``[slicing]`` table of a TOML file (a cell config or a profile of its own)."""
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise PlanError(f"{path}: {exc}") from None
        table = data.get("slicing", {})
        if not isinstance(table, dict):
            raise PlanError(f"{path}: [slicing] must be a table")
        try:
            return cls.from_table(table)
        except PlanError as exc:
            raise PlanError(f"{path} [slicing]: {exc}") from None
