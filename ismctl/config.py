"""Cell configuration: read and range-checked once at load, every problem named by its key.

Unknown keys are errors, not warnings: a misspelt interlock or port must never
be silently ignored.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .plan.fdm_settings import SliceSettings
from .plan.model import PlanError
from .plan.motion_limits import MotionLimits, MotionLimitsError

DEVICE_CLASSES = ("printer", "mill")
DEFAULT_BAUD = {"printer": 250000, "mill": 115200}  # Marlin boards' usual rate; grbl 1.1's fixed one
BUNDLED_TOOLING = Path(__file__).parent / "data" / "tooling.toml"
DEFAULT_MATERIAL = "PLA"
DEFAULT_CONFIG_NAME = "demo-cell.toml"


class ConfigError(ValueError):
    def __init__(self, path: str | Path, key: str, problem: str):
        super().__init__(f"{path}: {key}: {problem}")
        self.key = key


@dataclass(frozen=True)
class SimulatorConfig:
    speed: str = "1"  # virtual seconds per real second, or "max"
    seed: int = 0
    corrupt_rate: float = 0.0
    drop_rate: float = 0.0
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeviceConfig:
    name: str
    device_class: str
    port: str  # a pyserial URL, or "sim" for the bundled simulator
    baud: int = 250000
    window: int = 4  # printer: Marlin lines in flight
    sim: SimulatorConfig | None = None
    motion: MotionLimits = MotionLimits()  # printer: the simulator runs with them, planners time moves by them
    rx_buffer: int = 128  # mill: bytes grbl's serial RX buffer holds (character counting stays below it)
    tool: str = ""  # mill: the tool in the spindle, a name in the tooling table ("" = none declared)
    tooling: Path | None = None  # mill: the tool/material table (TOML)
    material: str = ""  # mill: the stock material, a name in the tooling table

    @property
    def simulated(self) -> bool:
        return self.sim is not None


HANDOFF_MODES = ("operator", "auto")
MAX_TRANSFER_S = 3600.0  # an automatic transfer longer than an hour is a typo, not a conveyor


@dataclass(frozen=True)
class HandoffConfig:
    """``[handoff]``: how a job graph moves a part between devices (docs/jobs.md)."""

    mode: str = "operator"  # "operator": wait for `ismctl confirm`; "auto": a simulated transfer
    transfer_s: float = 5.0  # how long an automatic transfer takes


@dataclass(frozen=True)
class CellConfig:
    path: Path
    name: str
    state_dir: Path
    clients: str
    drivers: str
    events: str
    heartbeat_s: float
    devices: dict[str, DeviceConfig] = field(default_factory=dict)
    slicing: SliceSettings = SliceSettings()  # the profile meshes submitted to this cell are sliced with
    handoff: HandoffConfig = HandoffConfig()

    @property
    def db_path(self) -> Path:
        return self.state_dir / "ismctl.db"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "supervisor.log"


class _Section:
    """Reads typed keys from one TOML table and refuses any it did not read."""

    def __init__(self, path, prefix: str, table):
        if not isinstance(table, dict):
            raise ConfigError(path, prefix, f"must be a table, got {type(table).__name__}")
        self.path, self.prefix, self.table, self.read = path, prefix, table, set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def get(self, name, typ, default=None, *, required=False, check=None, problem=""):
        self.read.add(name)
        if name not in self.table:
            if required:
                raise ConfigError(self.path, self.key(name), "is required")
            return default
        value = self.table[name]
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise ConfigError(self.path, self.key(name), f"must be {typ.__name__}, got {value!r}")
        if check is not None and not check(value):
            raise ConfigError(self.path, self.key(name), f"{problem}, got {value!r}")
        return value

    def sub(self, name) -> "_Section":
        self.read.add(name)
        return _Section(self.path, self.key(name), self.table.get(name, {}))

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.read)
        if unknown:
            raise ConfigError(self.path, self.key(unknown[0]), "unknown key (check the spelling; see configs/demo-cell.toml)")


def _expand(value: str, state_dir: Path) -> str:
    return value.replace("{state_dir}", str(state_dir))


def default_state_dir(cell_name: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "ismctl" / cell_name


def load(path: str | Path, state_dir: str | Path | None = None) -> CellConfig:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(path, "(file)", "no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "(syntax)", str(exc)) from None
    top = _Section(path, "", raw)
    cell = top.sub("cell")
    name = cell.get("name", str, required=True, check=lambda s: s.isidentifier() or s.replace("-", "_").isidentifier(), problem="must be a simple name")
    configured_dir = cell.get("state_dir", str)
    cell.done()
    if state_dir is None:
        state_dir = (path.parent / configured_dir) if configured_dir else default_state_dir(name)
    state_dir = Path(state_dir).resolve()

    bus = top.sub("bus")
    endpoint_ok = lambda s: s.startswith(("tcp://", "ipc://", "inproc://"))  # noqa: E731
    endpoint_problem = "must be a tcp://, ipc:// or inproc:// endpoint"
    clients = _expand(bus.get("clients", str, "ipc://{state_dir}/clients.sock", check=endpoint_ok, problem=endpoint_problem), state_dir)
    drivers = _expand(bus.get("drivers", str, "ipc://{state_dir}/drivers.sock", check=endpoint_ok, problem=endpoint_problem), state_dir)
    events = _expand(bus.get("events", str, "ipc://{state_dir}/events.sock", check=endpoint_ok, problem=endpoint_problem), state_dir)
    heartbeat_s = bus.get("heartbeat_s", float, 0.5, check=lambda v: 0.01 <= v <= 60, problem="must be between 0.01 and 60 seconds")
    bus.done()

    devices_section = top.sub("devices")
    devices = {}
    for dev_name in devices_section.table:
        devices[dev_name] = _device(path, dev_name, devices_section.sub(dev_name))
    slicing = _slicing(path, top.sub("slicing"))
    handoff = _handoff(top.sub("handoff"))
    top.done()
    return CellConfig(path, name, state_dir, clients, drivers, events, heartbeat_s, devices, slicing, handoff)


def _handoff(section: _Section) -> HandoffConfig:
    mode = section.get("mode", str, "operator", check=lambda m: m in HANDOFF_MODES, problem=f"must be one of {', '.join(HANDOFF_MODES)}")
    transfer_s = section.get("transfer_s", float, 5.0, check=lambda s: 0 <= s <= MAX_TRANSFER_S, problem=f"must be between 0 and {MAX_TRANSFER_S:g} seconds")
    section.done()
    return HandoffConfig(mode, transfer_s)


def _device(path: Path, name: str, dev: _Section) -> DeviceConfig:
    """``[devices.<name>]``: the keys every device has, then its class's own (others' are refused)."""
    device_class = dev.get("class", str, required=True, check=lambda c: c in DEVICE_CLASSES, problem=f"must be one of {', '.join(DEVICE_CLASSES)}")
    port = dev.get("port", str, required=True, check=bool, problem="must name a serial URL or 'sim'")
    baud = dev.get("baud", int, DEFAULT_BAUD[device_class], check=lambda b: b > 0, problem="must be a positive baud rate")
    sim = None
    if port == "sim":
        sim = _simulator(path, dev.sub("sim"))
    elif "sim" in dev.table:
        raise ConfigError(path, dev.key("sim"), "only applies when port = \"sim\"")
    if device_class == "printer":
        _refuse(path, dev, ("rx_buffer", "tool", "tooling", "material"), "a printer")
        window = dev.get("window", int, 4, check=lambda w: 1 <= w <= 64, problem="must be between 1 and 64 lines in flight")
        motion = _motion_limits(path, dev.sub("motion"))
        dev.done()
        return DeviceConfig(name, device_class, port, baud, window, sim, motion)
    _refuse(path, dev, ("window", "motion"), "a mill (its limits are its grbl $ settings; it streams by character counting)")
    rx_buffer = dev.get("rx_buffer", int, 128, check=lambda b: 16 <= b <= 65536, problem="must be between 16 and 65536 bytes")
    tooling = _tooling_path(path, dev)
    tool = dev.get("tool", str, "")
    material = dev.get("material", str, DEFAULT_MATERIAL, check=bool, problem="must name a material")
    _check_tooling_names(path, dev, tooling, tool, material)
    dev.done()
    return DeviceConfig(name, device_class, port, baud, sim=sim, rx_buffer=rx_buffer, tool=tool, tooling=tooling, material=material)


def _refuse(path: Path, dev: _Section, keys, what: str) -> None:
    for key in keys:
        if key in dev.table:
            raise ConfigError(path, dev.key(key), f"does not apply to {what}")


def _simulator(path: Path, s: _Section) -> SimulatorConfig:
    """``[devices.<name>.sim]``: how the bundled simulator runs (speed, seeded line faults, extra options)."""
    speed = s.get("speed", (int, float, str), 1)
    if speed != "max" and (isinstance(speed, str) or not (0 < speed <= 1e6)):
        raise ConfigError(path, s.key("speed"), f"must be a positive number or \"max\", got {speed!r}")
    rate_ok = lambda r: 0.0 <= r < 1.0  # noqa: E731
    sim = SimulatorConfig(
        speed=str(speed),
        seed=s.get("seed", int, 0),
        corrupt_rate=s.get("corrupt_rate", float, 0.0, check=rate_ok, problem="must be a probability in [0, 1)"),
        drop_rate=s.get("drop_rate", float, 0.0, check=rate_ok, problem="must be a probability in [0, 1)"),
        extra_args=tuple(s.get("extra_args", list, [], check=lambda a: all(isinstance(x, str) for x in a), problem="must be a list of strings")),
    )
    s.done()
    return sim


def _tooling_path(path: Path, dev: _Section) -> Path:
    """``tooling``: relative to the config file; the bundled table when not given."""
    given = dev.get("tooling", str, check=bool, problem="must name a TOML file")
    if given is None:
        return BUNDLED_TOOLING
    tooling = (path.parent / given).resolve()
    if not tooling.is_file():
        raise ConfigError(path, dev.key("tooling"), f"no such file: {tooling}")
    return tooling


def _check_tooling_names(path: Path, dev: _Section, tooling: Path, tool: str, material: str) -> None:
    """The tool and material must be in the table: a typo is found at load, not in the middle of CAM."""
    try:
        table = tomllib.loads(tooling.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(path, dev.key("tooling"), f"cannot read {tooling}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(path, dev.key("tooling"), f"{tooling} is not valid TOML: {exc}") from None
    for key, value, section in (("tool", tool, "tools"), ("material", material, "materials")):
        known = table.get(section, {})
        if value and value not in known:
            raise ConfigError(path, dev.key(key), f"{value!r} is not in {tooling} (known: {', '.join(sorted(known)) or 'none'})")


def _slicing(path: Path, section: _Section) -> SliceSettings:
    """``[slicing]``: SliceSettings' fields, every one optional (the built-in PLA profile)."""
    try:
        return SliceSettings.from_table(section.table)
    except PlanError as exc:
        raise ConfigError(path, section.prefix, str(exc)) from None


def _motion_limits(path: Path, section: _Section) -> MotionLimits:
    """``[devices.<name>.motion]``: MotionLimits' keys, every one optional (Marlin's defaults)."""
    try:
        return MotionLimits.from_table(section.table, where=section.prefix)
    except MotionLimitsError as exc:
        raise ConfigError(path, exc.key, exc.problem) from None


def find_default() -> Path:
    """The config named by $ISMCTL_CONFIG, else ./configs/demo-cell.toml, else the packaged demo cell."""
    env = os.environ.get("ISMCTL_CONFIG")
    if env:
        return Path(env)
    local = Path("configs") / DEFAULT_CONFIG_NAME
    if local.exists():
        return local
    return Path(__file__).parent / "data" / DEFAULT_CONFIG_NAME
