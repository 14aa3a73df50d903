"""Child processes of `ismctl serve`: one driver per device, one simulator per simulated device.

Drivers die with the supervisor (the kernel sends them SIGTERM when it goes,
and they hold their device safe).  Simulators stand for hardware, so they
outlive a crashed supervisor the way a printer stays powered when its host
computer dies: a restarted supervisor adopts them, and its drivers find the
firmware's place by asking the firmware itself.  A clean shutdown stops them.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import CellConfig, DeviceConfig

log = logging.getLogger("ismctl.processes")

PR_SET_PDEATHSIG = 1
RESTART_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)


def _die_with_parent() -> None:
    """preexec_fn: ask the kernel to SIGHUP this child when its parent dies (not SIGTERM:
    a driver tells the two apart, holding its job for resume on SIGHUP)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGHUP)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return True


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


def _motion_args(device: DeviceConfig) -> list[str]:
    """The printer simulator's options that give it the device's machine limits exactly (its clock and
    the estimates agree).  A mill's limits are its grbl ``$`` settings, kept by the mill itself."""
    m = device.motion
    return [
        "--max-feedrate", ",".join(map(repr, m.max_feedrate)),
        "--max-accel", ",".join(map(repr, m.max_accel)),
        "--accel", repr(m.accel),
        "--retract-accel", repr(m.retract_accel),
        "--travel-accel", repr(m.travel_accel),
        "--junction-deviation", repr(m.junction_deviation),
    ]  # fmt: skip


# What each device class's simulator and driver are told beyond what all share.
SIMULATOR_OPTIONS = {"printer": _motion_args, "mill": lambda device: []}
DRIVER_OPTIONS = {
    "printer": lambda device: ["--window", str(device.window)],  # lines in flight
    "mill": lambda device: ["--rx-buffer", str(device.rx_buffer)],  # grbl's serial buffer, for character counting
}


@dataclass
class Child:
    """One supervised process; ``popen`` is None for an adopted simulator (not our child)."""

    name: str
    args: list[str]
    log_path: Path
    detached: bool
    popen: subprocess.Popen | None = None
    pid: int = 0
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return bool(self.pid) and pid_alive(self.pid)

    def exit_status(self) -> str:
        if self.popen is not None and self.popen.returncode is not None:
            code = self.popen.returncode
            return f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return "gone"


class ProcessManager:
    def __init__(self, config: CellConfig, python: str = sys.executable):
        self.config = config
        self.python = python
        self.children: dict[str, Child] = {}
        self.stopping = False

    # ----------------------------------------------------------- commands
    def simulator_link(self, device: DeviceConfig) -> Path:
        return self.config.state_dir / f"{device.name}.tty"

    def exec_log(self, device: DeviceConfig) -> Path:
        return self.config.state_dir / f"{device.name}.exec.log"

    def _simulator_args(self, device: DeviceConfig) -> list[str]:
        sim = device.sim
        return [
            self.python, "-m", f"firmware_sim.{device.device_class}",
            "--link", str(self.simulator_link(device)),
            "--speed", sim.speed,
            "--seed", str(sim.seed),
            "--corrupt-rate", str(sim.corrupt_rate),
            "--drop-rate", str(sim.drop_rate),
            "--exec-log", str(self.exec_log(device)),
            *SIMULATOR_OPTIONS[device.device_class](device),
            *sim.extra_args,
        ]  # fmt: skip

    def _driver_args(self, device: DeviceConfig) -> list[str]:
        port = str(self.simulator_link(device)) if device.simulated else device.port
        return [
            self.python, "-m", f"drivers.{device.device_class}",
            "--name", device.name,
            "--port", port,
            "--baud", str(device.baud),
            *DRIVER_OPTIONS[device.device_class](device),
            "--supervisor", self.config.drivers,
            "--heartbeat", str(self.config.heartbeat_s),
            "--log-file", str(self.config.state_dir / f"driver-{device.name}.log"),
        ]  # fmt: skip

    # -------------------------------------------------------------- start
    def start_all(self) -> None:
        for device in self.config.devices.values():
            if device.simulated:
                self._add(Child(f"sim:{device.name}", self._simulator_args(device), self.config.state_dir / f"sim-{device.name}.log", detached=True))
        for device in self.config.devices.values():
            self._add(Child(f"driver:{device.name}", self._driver_args(device), self.config.state_dir / f"driver-{device.name}.out", detached=False))

    def _pidfile(self, child: Child) -> Path:
        return self.config.state_dir / f"{child.name.replace(':', '-')}.pid.json"

    def _add(self, child: Child) -> None:
        self.children[child.name] = child
        if child.detached and self._adopt(child):
            return
        self._start(child)

    def _adopt(self, child: Child) -> bool:
        try:
            recorded = json.loads(self._pidfile(child).read_text())
        except (OSError, ValueError):
            return False
        pid = recorded.get("pid", 0)
        if pid and pid_alive(pid) and _cmdline(pid) == child.args:
            child.pid = pid
            log.info("adopted %s (pid %d), still running from a previous supervisor", child.name, pid)
            return True
        return False

    def _start(self, child: Child) -> None:
        child.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(child.log_path, "ab") as out:
            child.popen = subprocess.Popen(
                child.args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out if child.detached else None,
                start_new_session=child.detached,
                preexec_fn=None if child.detached else _die_with_parent,
            )
        child.pid = child.popen.pid
        child.started_at = time.monotonic()
        if child.detached:
            self._pidfile(child).write_text(json.dumps({"pid": child.pid, "args": child.args}))
            self._wait_for_link(child)
        log.info("started %s (pid %d)", child.name, child.pid)

    def _wait_for_link(self, child: Child, timeout_s: float = 10.0) -> None:
        link = Path(child.args[child.args.index("--link") + 1])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and child.alive():
            if link.exists():
                return
            time.sleep(0.02)
        log.error("%s did not create %s within %g s; see %s", child.name, link, timeout_s, child.log_path)

    # ------------------------------------------------------------ watch
    def tick(self, now: float) -> None:
        """Restart any child that died, with a growing delay for one that keeps dying."""
        if self.stopping:
            return
        for child in self.children.values():
            if child.alive():
                if now - child.started_at > 30:
                    child.restarts = 0
                continue
            if child.next_start == 0.0:
                delay = RESTART_DELAYS_S[min(child.restarts, len(RESTART_DELAYS_S) - 1)]
                log.warning("%s (pid %d) stopped (%s); restarting in %.1f s", child.name, child.pid, child.exit_status(), delay)
                child.next_start = now + delay
            elif now >= child.next_start:
                child.next_start = 0.0
                child.restarts += 1
                self._start(child)

    def power_cycle(self, device_name: str) -> None:
        """Reset a simulated device the way a real one is reset: power off, power on."""
        child = self.children.get(f"sim:{device_name}")
        if child is None:
            return
        log.warning("power-cycling the simulator of %s", device_name)
        self._terminate(child)
        self._start(child)

    def _terminate(self, child: Child, timeout_s: float = 5.0) -> None:
        if not child.alive():
            return
        os.kill(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while child.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if child.alive():
            log.error("%s ignored SIGTERM for %g s; killing it", child.name, timeout_s)
            os.kill(child.pid, signal.SIGKILL)
        if child.popen is not None:
            child.popen.wait()

    def stop_all(self) -> None:
        """Drivers first (they hold their devices safe), then the simulators."""
        self.stopping = True
        for child in sorted(self.children.values(), key=lambda c: c.detached):
            self._terminate(child)
            if child.detached:
                self._pidfile(child).unlink(missing_ok=True)
