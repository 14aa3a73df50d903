"""How the supervisor answers while it plans: ping round trips during a mesh slice and a G-code parse.

    python bench/planning_latency.py [--mesh sphere-1.4m-100mm] [--every-ms 10]

Starts a real `ismctl serve` (one simulated printer), submits the bench mesh
(bench/bench_meshes.py; sliced on the supervisor's planner thread), and pings
the supervisor every ``--every-ms`` until the submit is answered; then the
same with that mesh's G-code submitted as a file (parsed on the planner
thread).  Prints p50 / p99 / max of the round trips, and the same with the
cell idle.  The e-stop is relayed by the same loop, so its delay while
planning is bounded by these (docs/architecture.md, E-stop).  No goal is set.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_meshes import MESH_NAMES, ensure_mesh  # noqa: E402
from bus_latency import cell_config  # noqa: E402
from serving import REPO, serving, wait_idle  # noqa: E402


def pings_while(client, call, every_s: float) -> tuple[list[float], float, dict]:
    """Round trips (ms) of pings sent every ``every_s`` while ``call()`` runs on another thread."""
    reply: list[dict] = []
    worker = threading.Thread(target=lambda: reply.append(call()))
    t0 = time.perf_counter()
    worker.start()
    rtt = []
    while worker.is_alive():
        t = time.perf_counter()
        client.call("ping")
        rtt.append((time.perf_counter() - t) * 1e3)
        time.sleep(every_s)
    worker.join()
    return rtt, time.perf_counter() - t0, reply[0] if reply else {}


def show(what: str, rtt: list[float], seconds: float | None = None) -> None:
    took = f" over {seconds:.1f} s" if seconds is not None else ""
    print(f"{what:<34} {len(rtt):>5} pings{took}: p50 {statistics.median(rtt):6.2f} ms  "
          f"p99 {np.percentile(rtt, 99):6.2f} ms  max {max(rtt):6.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mesh", default="sphere-1.4m-100mm", choices=MESH_NAMES)
    ap.add_argument("--every-ms", type=float, default=10.0)
    args = ap.parse_args()
    mesh = ensure_mesh(args.mesh).path
    gcode = Path(tempfile.mkdtemp(prefix="ismctl-bench-")) / f"{args.mesh}.gcode"
    subprocess.run([sys.executable, "-m", "ismctl", "slice", str(mesh), "-o", str(gcode)], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)  # also warms the Numba cache the supervisor loads
    with serving(cell_config(1), Path(tempfile.mkdtemp(prefix="ismctl-bench-")), client_timeout_s=5) as (config, client):
        wait_idle(client)
        from ismctl.client import CellClient

        planner = CellClient(config, timeout_s=600)
        idle: list[float] = []
        for _ in range(300):
            t = time.perf_counter()
            client.call("ping")
            idle.append((time.perf_counter() - t) * 1e3)
        show("idle", idle)
        every = args.every_ms / 1000
        data = np.frombuffer(mesh.read_bytes(), dtype=np.uint8)
        rtt, took, reply = pings_while(client, lambda: planner.call("submit_mesh", arrays=[data], name=mesh.name), every)
        show(f"slicing {args.mesh} ({reply.get('n_ops', '?')} ops)", rtt, took)
        text = gcode.read_text()
        rtt, took, reply = pings_while(client, lambda: planner.call("submit", gcode=text, name=gcode.name), every)
        show(f"parsing its G-code ({reply.get('n_ops', '?')} ops)", rtt, took)


if __name__ == "__main__":
    main()
