"""Motion timing: a 16-block planner of trapezoidal moves on the virtual clock.

Each block accelerates from its entry speed to its cruise speed and decelerates
to its exit speed.  Junctions use Marlin's junction-deviation speed: a new block
enters at the junction speed with the block before it, and that block (if it has
not started yet) is re-timed to exit at the same speed.  The newest block always
plans to stop, as Marlin's does.  There is no backward pass over older blocks, so
timing is a little pessimistic for long chains of tiny segments.

``ismctl.plan.motion.move_durations`` replays these rules to time programs
(tests/test_motion.py checks it against this Planner): change both together.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

AXES = "XYZE"


@dataclass
class MotionConfig:
    """Machine limits (Marlin defaults), range-checked once."""

    max_feedrate: list = field(default_factory=lambda: [300.0, 300.0, 5.0, 25.0])     # mm/s
    max_accel: list = field(default_factory=lambda: [3000.0, 3000.0, 100.0, 10000.0])  # mm/s^2
    accel: float = 3000.0              # M204 P
    retract_accel: float = 3000.0      # M204 R
    travel_accel: float = 3000.0       # M204 T
    junction_deviation: float = 0.013  # mm
    steps_per_mm: list = field(default_factory=lambda: [80.0, 80.0, 400.0, 500.0])
    homing_feedrate: list = field(default_factory=lambda: [50.0, 50.0, 4.0])          # mm/s
    homing_bump: list = field(default_factory=lambda: [5.0, 5.0, 2.0])                # mm
    homing_bump_divisor: list = field(default_factory=lambda: [2.0, 2.0, 4.0])
    park_position: list = field(default_factory=lambda: [100.0, 100.0, 10.0])         # power-on
    planner_blocks: int = 16

    def __post_init__(self):
        for name in ("max_feedrate", "max_accel", "steps_per_mm"):
            values = getattr(self, name)
            if len(values) != 4 or min(values) <= 0:
                raise ValueError(f"{name} needs 4 positive values (X Y Z E), got {values}")
        for name in ("accel", "retract_accel", "travel_accel", "junction_deviation"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if self.planner_blocks < 2:
            raise ValueError("planner_blocks must be >= 2")


def trapezoid_time(length, v0, v1, vmax, accel):
    """Time to cover ``length`` starting at v0, ending at v1, cruising at most at vmax."""
    d_acc = (vmax * vmax - v0 * v0) / (2 * accel)
    d_dec = (vmax * vmax - v1 * v1) / (2 * accel)
    if d_acc + d_dec <= length:
        return (vmax - v0) / accel + (vmax - v1) / accel + (length - d_acc - d_dec) / vmax
    peak = math.sqrt((2 * accel * length + v0 * v0 + v1 * v1) / 2)
    return (peak - v0) / accel + (peak - v1) / accel


def trapezoid_distance(t, length, v0, v1, vmax, accel):
    """Distance covered ``t`` seconds into the block (for M114 and quick stop)."""
    d_acc = (vmax * vmax - v0 * v0) / (2 * accel)
    d_dec = (vmax * vmax - v1 * v1) / (2 * accel)
    if d_acc + d_dec > length:
        vmax = math.sqrt((2 * accel * length + v0 * v0 + v1 * v1) / 2)
        d_acc = (vmax * vmax - v0 * v0) / (2 * accel)
        d_dec = length - d_acc
    t_acc = (vmax - v0) / accel
    if t <= t_acc:
        return v0 * t + accel * t * t / 2
    t_cruise = (length - d_acc - d_dec) / vmax
    if t <= t_acc + t_cruise:
        return d_acc + vmax * (t - t_acc)
    td = min(t - t_acc - t_cruise, (vmax - v1) / accel)
    return min(length, length - d_dec + vmax * td - accel * td * td / 2)


class Block:
    """One planned move: geometry, speeds and its slot on the virtual timeline."""

    __slots__ = ("start_pos", "end_pos", "length", "unit", "vmax", "accel",
                 "v_entry", "v_exit", "start", "end")

    def __init__(self, start_pos, end_pos, length, unit, vmax, accel):
        self.start_pos = start_pos
        self.end_pos = end_pos
        self.length = length
        self.unit = unit
        self.vmax = vmax
        self.accel = accel
        self.v_entry = 0.0
        self.v_exit = 0.0
        self.start = 0.0
        self.end = 0.0

    def retime(self):
        self.end = self.start + trapezoid_time(self.length, self.v_entry, self.v_exit,
                                               self.vmax, self.accel)

    def position_at(self, t):
        if t >= self.end:
            return list(self.end_pos)
        if t <= self.start:
            return list(self.start_pos)
        s = trapezoid_distance(t - self.start, self.length, self.v_entry, self.v_exit,
                               self.vmax, self.accel)
        f = s / self.length
        return [a + (b - a) * f for a, b in zip(self.start_pos, self.end_pos)]


class Planner:
    """Planner queue plus machine position (the physical one, in mm)."""

    def __init__(self, config: MotionConfig):
        self.config = config
        self.blocks = deque()
        self.position = [0.0, 0.0, 0.0, 0.0]   # where the planner's last block ends
        self.physical_offset = [p for p in config.park_position] + [0.0]
        self.steppers_on = False
        self.moves_total = 0

    # -- queue state ---------------------------------------------------------------
    def prune(self, now: float) -> None:
        blocks = self.blocks
        while blocks and blocks[0].end <= now:
            blocks.popleft()

    def free(self, now: float) -> int:
        self.prune(now)
        return self.config.planner_blocks - len(self.blocks)

    def next_free_time(self) -> float:
        return self.blocks[0].end

    def idle_time(self) -> float:
        """Virtual time at which the last planned block finishes."""
        return self.blocks[-1].end if self.blocks else 0.0

    # -- planning ----------------------------------------------------------------
    def add_move(self, target, feedrate: float, now: float) -> None:
        """Queue a straight move to ``target`` (X Y Z E, mm) at ``feedrate`` mm/s.

        The caller has made sure that a block is free.
        """
        cfg = self.config
        start = self.position
        deltas = [b - a for a, b in zip(start, target)]
        dx, dy, dz, de = deltas
        length = math.sqrt(dx * dx + dy * dy + dz * dz)
        if length < 1e-6:
            length = abs(de)
            if length < 1e-6:
                self.position = list(target)
                return
            accel = cfg.retract_accel
            unit = None
        else:
            accel = cfg.accel if de else cfg.travel_accel
            unit = (dx / length, dy / length, dz / length)
        vmax = feedrate
        for i in range(4):
            d = abs(deltas[i])
            if d > 1e-9:
                vmax = min(vmax, cfg.max_feedrate[i] * length / d)
                accel = min(accel, cfg.max_accel[i] * length / d)
        block = Block(start, list(target), length, unit, vmax, accel)
        self._link(block, now)
        self.blocks.append(block)
        self.position = block.end_pos
        self.steppers_on = True
        self.moves_total += 1

    def _link(self, block: Block, now: float) -> None:
        prev = self.blocks[-1] if self.blocks else None
        if prev is None or prev.end <= now:
            block.start = now
            block.retime()
            return
        v_junction = 0.0
        if prev.unit is not None and block.unit is not None and prev.start > now:
            v_junction = self._junction_speed(prev, block)
            v_junction = min(v_junction,
                             math.sqrt(prev.v_entry ** 2 + 2 * prev.accel * prev.length),
                             math.sqrt(2 * block.accel * block.length))
            prev.v_exit = v_junction
            prev.retime()
        block.v_entry = v_junction
        block.start = prev.end
        block.retime()

    def _junction_speed(self, prev: Block, block: Block) -> float:
        """Marlin's junction deviation speed between two XYZ blocks."""
        a, b = prev.unit, block.unit
        cos_theta = -(a[0] * b[0] + a[1] * b[1] + a[2] * b[2])
        vmax = min(prev.vmax, block.vmax)
        if cos_theta > 0.999999:
            return 0.0
        if cos_theta < -0.999999:
            return vmax
        sin_half = math.sqrt(0.5 * (1.0 - cos_theta))
        accel = min(prev.accel, block.accel)
        v2 = accel * self.config.junction_deviation * sin_half / (1.0 - sin_half)
        return min(vmax, math.sqrt(v2))

    # -- position and stopping -----------------------------------------------------
    def current_position(self, now: float) -> list:
        """Where the tool is at ``now`` (interpolated inside the running block)."""
        self.prune(now)
        if not self.blocks:
            return list(self.position)
        return self.blocks[0].position_at(now)

    def quick_stop(self, now: float) -> None:
        """M410/kill: drop every block; the position is wherever the tool is."""
        self.position = self.current_position(now)
        self.blocks.clear()

    def set_position(self, axis_values: dict, now: float) -> None:
        """G92: the planner is synchronised by the caller; rename the coordinates."""
        for i, axis in enumerate(AXES):
            if axis in axis_values:
                if i < 3:
                    self.physical_offset[i] += self.position[i] - axis_values[axis]
                self.position[i] = axis_values[axis]

    def home_time(self, axes: str) -> float:
        """Virtual duration of G28 for ``axes``: fast approach, bump back, slow approach."""
        cfg = self.config
        total = 0.0
        for axis in axes:
            i = AXES.index(axis)
            physical = self.position[i] + self.physical_offset[i]
            feed = cfg.homing_feedrate[i]
            bump = cfg.homing_bump[i]
            total += abs(physical) / feed + bump / feed + bump / (feed / cfg.homing_bump_divisor[i])
        return total

    def set_homed(self, axes: str) -> None:
        for axis in axes:
            i = AXES.index(axis)
            self.position[i] = 0.0
            self.physical_offset[i] = 0.0
        self.steppers_on = True

    def counts(self, position) -> list:
        return [round(position[i] * self.config.steps_per_mm[i]) for i in range(3)]

    def get_status(self, now: float) -> dict:
        return {"position": self.current_position(now), "planned": len(self.blocks),
                "free": self.free(now), "moves_total": self.moves_total,
                "steppers_on": self.steppers_on}
