"""Cutting tools, work materials and the feeds and speeds that follow from them.

The tooling table (TOML) is read and range-checked once; every problem is a
PlanError naming the file and the key.  ``load_tooling()`` without a path reads
the bundled ``ismctl/data/tooling.toml`` (a copy of ``configs/tooling.toml``).

Format::

    [tools.flat-6]            # the tool's name
    shape = "flat"            # "flat" or "ball" end mill, or "drill"
    diameter = 6.0            # mm
    flutes = 2
    flute_length = 20.0       # mm: the deepest cut the tool can take
    max_rpm = 24000           # optional: the tool maker's limit

    [materials.PLA]
    surface_speed_m_min = 150.0         # cutting speed at the tool's edge
    chip_load_mm = [[3, 0.03], [6, 0.05]]   # per tooth by diameter (interpolated),
                                         # or one number for every diameter
    depth_of_cut = 0.5                  # axial depth per pass, x diameter
    stepover = 0.4                      # radial engagement when clearing, x diameter
    plunge = 0.3                        # Z feed (ramps, pecks' approach) as a fraction of the feed

Feeds follow the machinist's rule: rpm = surface speed / (pi x diameter),
capped by the spindle's and the tool's maximum; feed = chip load x flutes x rpm.
When the rpm is capped, the feed drops with it, so the chip load stays right.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .model import PlanError

TOOL_SHAPES = ("flat", "ball", "drill")
BUNDLED_TOOLING = Path(__file__).resolve().parent.parent / "data" / "tooling.toml"


@dataclass(frozen=True)
class Tool:
    name: str
    shape: str  # one of TOOL_SHAPES
    diameter: float  # mm
    flutes: int
    flute_length: float  # mm
    max_rpm: float | None = None

    @property
    def radius(self) -> float:
        return self.diameter / 2

    @property
    def is_drill(self) -> bool:
        return self.shape == "drill"


@dataclass(frozen=True)
class Material:
    name: str
    surface_speed_m_min: float
    chip_load_mm: tuple[tuple[float, float], ...]  # (diameter, chip load per tooth), diameters rising
    depth_of_cut: float = 0.5  # x tool diameter per pass
    stepover: float = 0.4  # x tool diameter
    plunge: float = 0.3  # x feed

    def chip_load(self, diameter: float) -> float:
        """Chip load per tooth for a tool of ``diameter``: linear between table rows, flat beyond them."""
        table = self.chip_load_mm
        if diameter <= table[0][0]:
            return table[0][1]
        for (d0, c0), (d1, c1) in zip(table, table[1:]):
            if diameter <= d1:
                return c0 + (c1 - c0) * (diameter - d0) / (d1 - d0)
        return table[-1][1]


@dataclass(frozen=True)
class Feeds:
    rpm: float
    feed_mm_min: float
    plunge_mm_min: float

    def __iter__(self):  # so that ``rpm, feed, plunge = feeds(...)`` reads naturally
        return iter((self.rpm, self.feed_mm_min, self.plunge_mm_min))


def feeds(tool: Tool, material: Material, spindle_max_rpm: float) -> Feeds:
    """Spindle speed and feeds for ``tool`` cutting ``material`` (see the module docstring).

    A drill's feed is its plunge: it cuts along Z only, so both are the same."""
    rpm = material.surface_speed_m_min * 1000.0 / (math.pi * tool.diameter)
    rpm = min(rpm, spindle_max_rpm, tool.max_rpm or math.inf)
    feed = material.chip_load(tool.diameter) * tool.flutes * rpm
    plunge = feed if tool.is_drill else feed * material.plunge
    return Feeds(rpm, feed, plunge)


@dataclass(frozen=True)
class Tooling:
    tools: dict[str, Tool]
    materials: dict[str, Material]
    source: str = ""

    def tool(self, name: str) -> Tool:
        return _lookup(self.tools, name, "tool", self.source)

    def material(self, name: str) -> Material:
        return _lookup(self.materials, name, "material", self.source)


def _lookup(table: dict, name: str, what: str, source: str):
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "none"
        raise PlanError(f"{source}: no {what} named {name!r} (known: {known})") from None


class _Table:
    """Typed reads from one TOML table; refuses keys it did not read (a misspelt key is an error)."""

    def __init__(self, source: str, prefix: str, table):
        if not isinstance(table, dict):
            raise PlanError(f"{source}: {prefix}: must be a table, got {type(table).__name__}")
        self.source, self.prefix, self.table, self.read = source, prefix, table, set()

    def error(self, key: str, problem: str) -> PlanError:
        return PlanError(f"{self.source}: {self.prefix}.{key}: {problem}")

    def number(self, key: str, default=None, *, integer=False, minimum=0.0, maximum=math.inf):
        self.read.add(key)
        if key not in self.table:
            if default is None:
                raise self.error(key, "is required")
            return default
        value = self.table[key]
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            raise self.error(key, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
        if not (minimum < value <= maximum) or not math.isfinite(value):
            raise self.error(key, f"must be > {minimum:g}{f' and <= {maximum:g}' if maximum < math.inf else ''}, "
                                  f"got {value!r}")
        return int(value) if integer else float(value)

    def text(self, key: str, choices: tuple[str, ...]) -> str:
        self.read.add(key)
        value = self.table.get(key)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def chip_load_table(self, key: str) -> tuple[tuple[float, float], ...]:
        self.read.add(key)
        value = self.table.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 5:
            return ((1.0, float(value)),)
        rows = value if isinstance(value, list) and value else None
        ok = rows is not None and all(
            isinstance(r, list) and len(r) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                      and 0 < x < 1000 for x in r) for r in rows)
        if ok:
            rows = tuple((float(d), float(c)) for d, c in rows)
            ok = all(d1 > d0 for (d0, _), (d1, _) in zip(rows, rows[1:]))
        if not ok:
            raise self.error(key, "must be a chip load per tooth in mm, or [[diameter, chip load], ...] with "
                                  f"rising diameters, got {value!r}")
        return rows

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.read)
        if unknown:
            raise self.error(unknown[0], "unknown key (check the spelling; see configs/tooling.toml)")


def _read_tool(source: str, name: str, table) -> Tool:
    t = _Table(source, f"tools.{name}", table)
    shape = t.text("shape", TOOL_SHAPES)
    diameter = t.number("diameter", maximum=100.0)
    tool = Tool(name, shape, diameter, t.number("flutes", integer=True, maximum=16),
                t.number("flute_length", maximum=300.0), t.number("max_rpm", math.inf) if "max_rpm" in table else None)
    t.done()
    return tool


def _read_material(source: str, name: str, table) -> Material:
    m = _Table(source, f"materials.{name}", table)
    material = Material(name, m.number("surface_speed_m_min", maximum=2000.0), m.chip_load_table("chip_load_mm"),
                        m.number("depth_of_cut", 0.5, maximum=3.0), m.number("stepover", 0.4, maximum=1.0),
                        m.number("plunge", 0.3, maximum=1.0))
    m.done()
    return material


def load_tooling(path: Path | str | None = None) -> Tooling:
    """The tooling table at ``path`` (None: the bundled one), checked; a PlanError names what is wrong."""
    path = Path(path) if path is not None else BUNDLED_TOOLING
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlanError(f"{source}: cannot read the tooling table: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PlanError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"tools", "materials"})
    if unknown:
        raise PlanError(f"{source}: {unknown[0]}: unknown table (a tooling table has [tools.NAME] and "
                        f"[materials.NAME])")
    tools_table = _Table(source, "tools", data.get("tools", {}))
    materials_table = _Table(source, "materials", data.get("materials", {}))
    tools = {name: _read_tool(source, name, t) for name, t in tools_table.table.items()}
    materials = {name: _read_material(source, name, m) for name, m in materials_table.table.items()}
    if not tools:
        raise PlanError(f"{source}: tools: the table names no tool")
    if not materials:
        raise PlanError(f"{source}: materials: the table names no material")
    return Tooling(tools, materials, source)
