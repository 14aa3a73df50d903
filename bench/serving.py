"""A real `ismctl serve` for benchmarks: started, waited for until every device is idle, stopped."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ismctl import config as cellconfig  # noqa: E402
from ismctl.client import CellClient  # noqa: E402


def wait_idle(client: CellClient, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        devices = client.call("status")["devices"]
        if all(d["state"] == "idle" for d in devices.values()):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"devices not idle after {timeout_s:g} s: {devices}")
        time.sleep(0.05)


@contextlib.contextmanager
def serving(config_text: str, tmp: Path, client_timeout_s: float = 10):
    """Yield (config, client) for a cell serving ``config_text``; its stderr goes to tmp/serve.err."""
    cfg_path = tmp / "cell.toml"
    cfg_path.write_text(config_text)
    config = cellconfig.load(cfg_path, state_dir=tmp / "state")
    with open(tmp / "serve.err", "wb") as err:
        serve = subprocess.Popen(
            [sys.executable, "-m", "ismctl", "serve", "--config", str(cfg_path), "--state-dir", str(config.state_dir)],
            stdout=subprocess.DEVNULL, stderr=err, cwd=REPO,
        )  # fmt: skip
    client = CellClient(config, timeout_s=client_timeout_s)
    try:
        client.wait_until_up(30)
        wait_idle(client)
        yield config, client
    finally:
        client.close()
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)
