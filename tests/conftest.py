"""Fixtures that run a real cell: `ismctl serve` as a subprocess with its drivers and simulators."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import settings as hypothesis_settings

# CI runs the same examples every time (Hypothesis' advice for CI), so a red CI
# names a change, not a lucky draw; on a developer's machine each run explores anew.
hypothesis_settings.register_profile("ci", derandomize=True)
if os.environ.get("ISMCTL_CI"):
    hypothesis_settings.load_profile("ci")

import pytest

from ismctl import config as cellconfig
from ismctl.client import CellClient

REPO = Path(__file__).resolve().parent.parent
DEMO_PART = REPO / "ismctl" / "data" / "demo-bracket.gcode"


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


class Cell:
    """A running `ismctl serve` with a client; restartable, so tests can kill it."""

    def __init__(self, tmp_path: Path, speed="max", corrupt_rate=0.0, drop_rate=0.0, seed=7, heartbeat_s=0.2, extra_sim_args=(), port="sim",
                 mill=False, mill_speed="max", mill_sim_args=(), printer=True):
        """``mill=True`` adds a simulated grbl mill named "mill" (speed ``mill_speed``, its
        simulator's own options in ``mill_sim_args``, e.g. ``("--settings", path)``);
        ``printer=False`` leaves the printer out (a mill-only cell starts faster)."""
        self.state_dir = tmp_path / "state"
        self.config_path = tmp_path / "cell.toml"
        tmp_path.mkdir(parents=True, exist_ok=True)
        extra = ", ".join(json.dumps(a) for a in extra_sim_args)
        self.config_path.write_text(
            f"""
[cell]
name = "test"
[bus]
heartbeat_s = {heartbeat_s}
"""
            + (
                f"""[devices.printer]
class = "printer"
port = {json.dumps(port)}
"""
                if printer
                else ""
            )
            + (
                f"""[devices.printer.sim]
speed = {json.dumps(speed)}
seed = {seed}
corrupt_rate = {corrupt_rate}
drop_rate = {drop_rate}
extra_args = [{extra}]
"""
                if printer and port == "sim"
                else ""
            )
            + (
                f"""[devices.mill]
class = "mill"
port = "sim"
[devices.mill.sim]
speed = {json.dumps(mill_speed)}
seed = {seed}
extra_args = [{", ".join(json.dumps(a) for a in mill_sim_args)}]
"""
                if mill
                else ""
            )
        )
        self.config = cellconfig.load(self.config_path, state_dir=self.state_dir)
        self.serve: subprocess.Popen | None = None
        self.client: CellClient | None = None

    @property
    def exec_log(self) -> Path:
        return self.state_dir / "printer.exec.log"

    @property
    def mill_exec_log(self) -> Path:
        return self.state_dir / "mill.exec.log"

    def start(self) -> "Cell":
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.serve_log = open(self.state_dir / "serve.out", "ab")
        self.serve = subprocess.Popen(
            [sys.executable, "-m", "ismctl", "serve", "--config", str(self.config_path), "--state-dir", str(self.state_dir)],
            stdout=self.serve_log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        self.client = CellClient(self.config, timeout_s=5)
        self.client.wait_until_up(30)
        return self

    def call(self, t: str, **body) -> dict:
        return self.client.call(t, **body)

    def device_state(self, name="printer") -> str:
        return self.call("status")["devices"][name]["state"]

    def wait_idle(self, timeout_s=30.0, name="printer") -> None:
        wait_for(lambda: self.device_state(name) == "idle", timeout_s, f"the {name} to be idle")

    def job(self, job_id: int) -> dict:
        return self.call("job", job=job_id)["job"]

    def wait_job(self, job_id: int, states, timeout_s=120.0) -> dict:
        return wait_for(lambda: (j := self.job(job_id))["state"] in states and j, timeout_s, f"job {job_id} to reach {states}", 0.1)

    def child_pids(self, prefix: str) -> list[int]:
        out = subprocess.run(["pgrep", "-f", prefix], capture_output=True, text=True).stdout.split()
        return [int(p) for p in out if int(p) != os.getpid()]

    def driver_pid(self, name="printer") -> int:
        device_class = self.config.devices[name].device_class
        return wait_for(lambda: [p for p in self.child_pids(f"drivers.{device_class} --name {name} --port {self.state_dir}")], 10, f"the {name}'s driver process")[0]

    def kill_serve(self, sig=signal.SIGKILL) -> None:
        self.serve.send_signal(sig)
        self.serve.wait(timeout=30)
        self.client.close()

    def stop(self) -> None:
        if self.serve is not None and self.serve.poll() is None:
            self.kill_serve(signal.SIGTERM)
        # Simulators outlive a killed supervisor by design (they stand for hardware): clean them up.
        for pidfile in self.state_dir.glob("*.pid.json"):
            try:
                os.kill(json.loads(pidfile.read_text())["pid"], signal.SIGKILL)
            except (ProcessLookupError, ValueError, KeyError):
                pass
        for pid in self.child_pids(str(self.state_dir)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def log_tail(self, lines=40) -> str:
        text = (self.state_dir / "serve.out").read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@pytest.fixture
def make_cell(tmp_path):
    cells: list[Cell] = []

    def factory(**kwargs) -> Cell:
        cell = Cell(tmp_path / f"cell{len(cells)}", **kwargs)
        cells.append(cell)
        return cell

    yield factory
    for cell in cells:
        cell.stop()
