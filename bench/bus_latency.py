"""Command round trip over the bus and e-stop latency, against the goals, in one run.

    python bench/bus_latency.py [--pings 5000] [--estops 20] [--printers 3]

Starts a real `ismctl serve` on tcp loopback with N simulated printers, then
  1. round trip: a client's `ping` to the supervisor and back (p50, p99);
  2. e-stop: from the client sending `estop` to the supervisor publishing that
     every printer's firmware reported its halt (p50, p99), each followed by a
     `reset` (which power-cycles the simulators).
Goals (issue 2): p99 round trip < 1 ms, p99 e-stop < 20 ms.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import serving, wait_idle  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cell_config(printers: int) -> str:
    ports = [free_port() for _ in range(3)]
    devices = "".join(
        f'\n[devices.p{i}]\nclass = "printer"\nport = "sim"\n[devices.p{i}.sim]\nspeed = "max"\nseed = {i}\n' for i in range(printers)
    )
    return (
        f'[cell]\nname = "bench"\n[bus]\nclients = "tcp://127.0.0.1:{ports[0]}"\n'
        f'drivers = "tcp://127.0.0.1:{ports[1]}"\nevents = "tcp://127.0.0.1:{ports[2]}"\nheartbeat_s = 0.5\n{devices}'
    )


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    ms = np.array(samples_s) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pings", type=int, default=5000)
    ap.add_argument("--estops", type=int, default=20)
    ap.add_argument("--printers", type=int, default=3)
    args = ap.parse_args()
    with serving(cell_config(args.printers), Path(tempfile.mkdtemp(prefix="ismctl-bench-"))) as (_config, client):
        for _ in range(200):  # warm up
            client.call("ping")
        rtt = []
        for _ in range(args.pings):
            t0 = time.perf_counter()
            client.call("ping")
            rtt.append(time.perf_counter() - t0)
        events = client.events(("estop.confirmed",))
        time.sleep(0.2)
        estop = []
        for i in range(args.estops):
            t0 = time.perf_counter()
            client.call("estop")
            got = events.next(timeout_s=5)
            if got is None:
                raise SystemExit(f"e-stop {i}: no confirmation within 5 s")
            estop.append(time.perf_counter() - t0)
            client.timeout_s = 40
            client.call("reset")
            wait_idle(client)
        rtt50, rtt99 = percentiles(rtt)
        es50, es99 = percentiles(estop)
        print(f"{'measure':<44} {'p50 ms':>8} {'p99 ms':>8} {'goal p99':>9} {'p99/goal':>9}")
        print(f"{'command round trip (ping, tcp loopback)':<44} {rtt50:8.3f} {rtt99:8.3f} {'< 1 ms':>9} {rtt99 / 1.0:9.2f}")
        print(f"{f'e-stop to {args.printers} simulators halted':<44} {es50:8.2f} {es99:8.2f} {'< 20 ms':>9} {es99 / 20.0:9.2f}")
        print(f"({args.pings} pings, {args.estops} e-stops; ratio < 1 meets the goal)")


if __name__ == "__main__":
    main()
