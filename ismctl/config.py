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

DEVICE_CLASSES = ("printer",)
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
    window: int = 4
    sim: SimulatorConfig | None = None
    motion: MotionLimits = MotionLimits()  # machine limits: the simulator runs with them, planners time moves by them

    @property
    def simulated(self) -> bool:
        return self.sim is not None


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
        dev = devices_section.sub(dev_name)
        device_class = dev.get("class", str, required=True, check=lambda c: c in DEVICE_CLASSES, problem=f"must be one of {', '.join(DEVICE_CLASSES)}")
        port = dev.get("port", str, required=True, check=bool, problem="must name a serial URL or 'sim'")
        baud = dev.get("baud", int, 250000, check=lambda b: b > 0, problem="must be a positive baud rate")
        window = dev.get("window", int, 4, check=lambda w: 1 <= w <= 64, problem="must be between 1 and 64 lines in flight")
        sim = None
        if port == "sim":
            s = dev.sub("sim")
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
        elif "sim" in dev.table:
            raise ConfigError(path, dev.key("sim"), "only applies when port = \"sim\"")
        motion = _motion_limits(path, dev.sub("motion"))
        dev.done()
        devices[dev_name] = DeviceConfig(dev_name, device_class, port, baud, window, sim, motion)
    slicing = _slicing(path, top.sub("slicing"))
    top.done()
    return CellConfig(path, name, state_dir, clients, drivers, events, heartbeat_s, devices, slicing)


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
