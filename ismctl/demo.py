"""`ismctl demo`: the whole chain on one machine, checked at the end.

Serves the bundled demo cell in a fresh state directory, submits the bundled
part, shows its progress, then compares what the simulated firmware executed
with the program: the demo only passes if every line ran exactly once.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import config as cellconfig
from .client import CellClient
from drivers.marlin import is_host_command

from .execlog import compare_exec_log
from .gcode import parse
from .watch import watch_jobs

DATA = Path(__file__).parent / "data"
DEMO_PART = DATA / "demo-bracket.gcode"


def _wait_device_idle(client: CellClient, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        devices = client.call("status")["devices"]
        if devices and all(d["state"] == "idle" for d in devices.values()):
            return
        time.sleep(0.1)
    raise RuntimeError(f"devices not ready after {timeout_s:g} s: " + ", ".join(f"{n} {d['state']} {d['reason']}" for n, d in devices.items()))


def run_demo(args) -> int:
    config_path = args.config or DATA / cellconfig.DEFAULT_CONFIG_NAME
    state_dir = Path(args.state_dir or tempfile.mkdtemp(prefix="ismctl-demo-"))
    config = cellconfig.load(config_path, state_dir=state_dir)
    serve_log = state_dir / "serve.out"
    state_dir.mkdir(parents=True, exist_ok=True)
    print(f"ismctl demo: cell {config.name!r}, state in {state_dir}")
    started = time.monotonic()
    with open(serve_log, "wb") as log_out:
        serve = subprocess.Popen(
            [sys.executable, "-m", "ismctl", "serve", "--config", str(config_path), "--state-dir", str(state_dir)],
            stdout=log_out,
            stderr=subprocess.STDOUT,
        )
    client = CellClient(config)
    ok = False
    try:
        client.wait_until_up(30)
        _wait_device_idle(client, 30)
        print(f"supervisor, driver and simulated printer up in {time.monotonic() - started:.1f} s")
        text = DEMO_PART.read_text()
        reply = client.call("submit", name=DEMO_PART.name, gcode=text)
        print(f"job {reply['job']}: {DEMO_PART.name}, {reply['n_ops']} ops, about {reply['estimated_s'] / 60:.0f} min of printing "
              f"(simulated at {config.devices['printer'].sim.speed}x)")
        t0 = time.monotonic()
        state = watch_jobs(client, reply["job"])
        elapsed = time.monotonic() - t0
        if state != "completed":
            print(f"demo FAILED: job ended {state}; logs in {state_dir}", file=sys.stderr)
            return 1
        exec_log = state_dir / "printer.exec.log"
        mismatch = compare_exec_log(parse(text).commands, exec_log.read_text().splitlines(), is_host_command)
        if mismatch:
            print(f"demo FAILED: the firmware's executed log differs from the program: {mismatch}", file=sys.stderr)
            return 1
        ok = True
        print(f"completed in {elapsed:.1f} s; the simulated firmware executed all {reply['n_ops']} program lines exactly once "
              f"(line noise injected: {config.devices['printer'].sim.corrupt_rate:g} per line)")
        return 0
    except Exception as exc:  # the demo reports any failure with where to look
        print(f"demo FAILED: {exc}; see {serve_log}", file=sys.stderr)
        return 1
    finally:
        client.close()
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=20)
        except subprocess.TimeoutExpired:
            serve.kill()
        if ok and not args.keep and not args.state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
