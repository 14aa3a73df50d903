"""Heaters: first-order thermal plant, Marlin's PID and Marlin's thermal protection.

The plant is ``C dT/dt = P*u - k (T - T_amb)``, integrated exactly over each PID
period with the heater output held constant, so the step size never changes the
heating curve.  The controller is Marlin's ``get_pid_output`` (functional range,
integral clamp, filtered derivative on the measurement) and the protection is
Marlin's: the "watch" check while heating and the runaway state machine once at
target.  A fault trips an error that the firmware turns into ``kill()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PID_DT = 0.128          # s, Marlin's temperature ISR period for PID (PID_dT)
PID_MAX = 255           # full-scale PID output; Marlin reports soft PWM = output >> 1
PID_FUNCTIONAL_RANGE = 10.0
PID_K1 = 0.95           # derivative smoothing
MINTEMP = 5.0
SENSOR_OPEN_READING = -14.0   # what an open thermistor reads on Marlin's tables


@dataclass(frozen=True)
class HeaterConfig:
    """One heater's plant, controller and protection constants (checked once)."""

    name: str                 # "0" for the hotend, "bed" for the bed: Marlin's Heater_ID
    letter: str               # report letter: "T" or "B"
    power_w: float
    capacity_j_per_k: float
    loss_w_per_k: float
    loss_fan_w_per_k: float   # loss at full part-cooling fan
    kp: float
    ki: float
    kd: float
    maxtemp: float
    overshoot: float          # targets are clamped to maxtemp - overshoot
    runaway_period: float
    runaway_hysteresis: float
    watch_period: float
    watch_increase: float
    residency_time: float     # M109/M190 hold time inside the window
    window: float
    hysteresis: float

    def __post_init__(self):
        for field in ("power_w", "capacity_j_per_k", "loss_w_per_k", "maxtemp",
                      "runaway_period", "watch_period"):
            if not getattr(self, field) > 0:
                raise ValueError(f"heater {self.name}: {field} must be > 0")
        if self.loss_fan_w_per_k < self.loss_w_per_k:
            raise ValueError(f"heater {self.name}: loss_fan_w_per_k below loss_w_per_k")
        if min(self.kp, self.ki, self.kd) < 0:
            raise ValueError(f"heater {self.name}: PID gains must be >= 0")


# Marlin defaults (MPC model figures for the hotend, PID gains from Configuration.h).
HOTEND = HeaterConfig(
    name="0", letter="T", power_w=40.0, capacity_j_per_k=16.7, loss_w_per_k=0.068,
    loss_fan_w_per_k=0.097, kp=22.2, ki=1.08, kd=114.0, maxtemp=275.0, overshoot=15.0,
    runaway_period=40.0, runaway_hysteresis=4.0, watch_period=20.0, watch_increase=2.0,
    residency_time=10.0, window=1.0, hysteresis=3.0)

# 120 W bed, tau = C/k = 405 s.  Marlin's bed PID gains were tuned on a 250 W bed;
# with 120 W only a well-insulated bed (0.3 W/K) keeps gaining the 2 C per 60 s that
# the heating watch demands on the PID's slow final approach (60 C in ~230 s).
BED = HeaterConfig(
    name="bed", letter="B", power_w=120.0, capacity_j_per_k=121.5, loss_w_per_k=0.3,
    loss_fan_w_per_k=0.3, kp=10.0, ki=0.023, kd=305.4, maxtemp=150.0, overshoot=10.0,
    runaway_period=20.0, runaway_hysteresis=2.0, watch_period=60.0, watch_increase=2.0,
    residency_time=10.0, window=1.0, hysteresis=3.0)


class ThermalError(Exception):
    """A protection trip; ``str()`` is Marlin's error text without ``Error:``."""


class Heater:
    """One heater: plant state, PID state, watch and runaway state machine."""

    def __init__(self, config: HeaterConfig, ambient: float):
        self.config = config
        self.ambient = ambient
        self.temp = ambient
        self.target = 0.0
        self.output = 0             # 0..PID_MAX
        self.fan = 0.0              # 0..1, raises the loss coefficient
        self.heater_failed = False  # injected: heater draws no power
        self.sensor_open = False    # injected: thermistor disconnected
        self._i_state = 0.0
        self._d_state = ambient
        self._d_term = 0.0
        self._pid_reset = True
        self._watch_target = 0.0
        self._watch_deadline = None
        self._tr_target = 0.0
        self._tr_state = "inactive"
        self._tr_deadline = 0.0

    # -- commands --------------------------------------------------------------
    def set_target(self, celsius: float, now: float) -> None:
        """Marlin's setTarget + start_watching: clamp, then arm the heating watch."""
        cfg = self.config
        self.target = max(0.0, min(celsius, cfg.maxtemp - cfg.overshoot))
        new_watch = self.reading + cfg.watch_increase
        if self.target and new_watch < self.target - cfg.runaway_hysteresis - 1:
            self._watch_target = new_watch
            self._watch_deadline = now + cfg.watch_period
        else:
            self._watch_deadline = None

    def disable(self) -> None:
        self.target = 0.0
        self.output = 0
        self._watch_deadline = None

    @property
    def reading(self) -> float:
        return SENSOR_OPEN_READING if self.sensor_open else self.temp

    @property
    def pwm(self) -> int:
        """Marlin's ``@:``/``B@:`` value: soft PWM amount, 0..127."""
        return self.output >> 1

    # -- simulation --------------------------------------------------------------
    def step(self, now: float, dt: float, protect: bool = True) -> None:
        """Run one PID period: plant over ``dt`` with the held output, then control."""
        cfg = self.config
        power = 0.0 if self.heater_failed else cfg.power_w * self.output / PID_MAX
        loss = cfg.loss_w_per_k + (cfg.loss_fan_w_per_k - cfg.loss_w_per_k) * self.fan
        steady = self.ambient + power / loss
        self.temp = steady + (self.temp - steady) * math.exp(-dt * loss / cfg.capacity_j_per_k)
        if protect:
            self._check(now)
        self.output = self._pid()

    def _pid(self) -> int:
        cfg = self.config
        current = self.reading
        error = self.target - current
        if self.target <= 0 or error < -PID_FUNCTIONAL_RANGE:
            self._pid_reset = True
            return 0
        if error > PID_FUNCTIONAL_RANGE:
            self._pid_reset = True
            return PID_MAX
        if self._pid_reset:
            self._i_state = 0.0
            self._d_term = 0.0
            self._pid_reset = False
        ki = cfg.ki * PID_DT
        kd = cfg.kd / PID_DT
        self._d_term += (1 - PID_K1) * (kd * (self._d_state - current) - self._d_term)
        if ki > 0:
            self._i_state = min(max(self._i_state + error, 0.0), PID_MAX / ki)
        out = cfg.kp * error + ki * self._i_state + self._d_term
        self._d_state = current
        return int(min(max(out, 0.0), PID_MAX))

    def _check(self, now: float) -> None:
        """Marlin's MAXTEMP/MINTEMP, heating watch and runaway state machine."""
        cfg = self.config
        current = self.reading
        if current >= cfg.maxtemp:
            raise ThermalError(self._message("MAXTEMP triggered"))
        if current <= MINTEMP:
            raise ThermalError(self._message("MINTEMP triggered"))
        if self._watch_deadline is not None and now >= self._watch_deadline:
            if current < self._watch_target:
                raise ThermalError(self._message("Heating failed"))
            self.set_target(self.target, now)   # re-arm until near target
        if self._tr_target != self.target:
            self._tr_target = self.target
            self._tr_state = "first_heating" if self.target > 0 else "inactive"
        if self._tr_state == "first_heating":
            if current < self._tr_target:
                return
            self._tr_state = "stable"
        if self._tr_state == "stable":
            if current >= self._tr_target - cfg.runaway_hysteresis:
                self._tr_deadline = now + cfg.runaway_period
            elif now >= self._tr_deadline:
                raise ThermalError(self._message("Thermal Runaway"))

    def _message(self, what: str) -> str:
        return f"{what}, system stopped! Heater_ID: {self.config.name}"


class ThermalManager:
    """All heaters of one machine, stepped on the virtual clock at PID_DT."""

    def __init__(self, configs=(HOTEND, BED), ambient: float = 25.0, start: float = 0.0):
        self.heaters = {cfg.letter: Heater(cfg, ambient) for cfg in configs}
        self.hotend = self.heaters["T"]
        self.bed = self.heaters.get("B")
        self.next_step = start + PID_DT
        self.faults = []            # (virtual time, heater letter, kind), sorted

    def schedule_fault(self, at: float, letter: str, kind: str) -> None:
        if letter not in self.heaters:
            raise ValueError(f"no heater {letter!r}")
        if kind not in ("heater", "sensor"):
            raise ValueError(f"thermal fault kind must be heater or sensor, got {kind!r}")
        self.faults.append((at, letter, kind))
        self.faults.sort()

    def advance(self, now: float, protect: bool = True) -> None:
        """Catch up to ``now``; raises ThermalError on a protection trip.

        ``protect=False`` (after a kill) keeps the physics running, checks off."""
        while self.next_step <= now:
            t = self.next_step
            while self.faults and self.faults[0][0] <= t:
                _, letter, kind = self.faults.pop(0)
                heater = self.heaters[letter]
                if kind == "heater":
                    heater.heater_failed = True
                else:
                    heater.sensor_open = True
            for heater in self.heaters.values():
                heater.step(t, PID_DT, protect)
            self.next_step = t + PID_DT

    def active(self) -> bool:
        """True while stepping matters (so the event loop must keep waking up)."""
        return bool(self.faults) or any(h.target > 0 or h.output for h in self.heaters.values())

    def disable_all(self) -> None:
        for heater in self.heaters.values():
            heater.disable()

    def report(self) -> str:
        """Temperature report in the reference format, without leading space or ok."""
        h, b = self.hotend, self.bed
        parts = [f"T:{h.reading:.1f} /{h.target:.1f}"]
        if b is not None:
            parts.append(f"B:{b.reading:.1f} /{b.target:.1f}")
        parts.append(f"T0:{h.reading:.1f} /{h.target:.1f} @:{h.pwm}")
        if b is not None:
            parts.append(f"B@:{b.pwm}")
        return " ".join(parts)

    def get_status(self) -> dict:
        return {letter: {"temperature": h.reading, "target": h.target, "pwm": h.pwm}
                for letter, h in self.heaters.items()}
