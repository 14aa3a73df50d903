"""Mill streaming throughput: our character-counting grbl streamer vs plain send-and-wait, one run.

    python bench/mill_streaming.py [--blocks 5000] [--repeat 3]

Both stream the same program of short G1 blocks over a real pty to a fresh
``firmware_sim.mill --speed max`` (its motion never makes the host wait, so
what is measured is the host protocol: how many blocks per second reach grbl's
parser).  Ours: ``drivers.grbl.GrblStreamer.stream`` (up to 127 unacknowledged
bytes in grbl's RX buffer, status polled at 5 Hz).  Peer: send one line, read
until its ``ok``, send the next - grbl's simple_stream.py.  Each run's executed
log must equal the program and its RX buffer must never overflow, so a fast
but wrong stream cannot win.  Timings are wall-clock on a shared machine: noisy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from drivers.grbl import GrblStreamer  # noqa: E402
from drivers.transport import open_port  # noqa: E402


def program(n: int) -> list[str]:
    """Short cutting blocks inside the simulator's travel, as CAM output of a finely tessellated contour."""
    return ["G21 G90 G94", "M3 S9000"] + [f"G1 X-{(i * 7) % 100 + 1}.{i % 10} Y-{(i * 13) % 80 + 1}.5 F1500" for i in range(n - 3)] + ["M5"]


class Simulator:
    def __init__(self, tmp: Path):
        self.exec_log, self.stats = tmp / "exec.log", tmp / "stats.json"
        self.proc = subprocess.Popen([sys.executable, "-m", "firmware_sim.mill", "--speed", "max", "--exec-log", str(self.exec_log),
                                      "--stats", str(self.stats)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        self.address = self.proc.stdout.readline().strip()

    def finish(self, lines: list[str]) -> int:
        """Stop; check the executed log; return the RX overflow count."""
        self.proc.terminate()
        self.proc.wait(10)
        if self.exec_log.read_text().splitlines() != lines:
            raise SystemExit(f"the executed log differs from the program ({self.exec_log})")
        return json.loads(self.stats.read_text())["counters"]["rx_overflows"]


def ours(lines: list[str], tmp: Path) -> tuple[float, int]:
    sim = Simulator(tmp)
    streamer = GrblStreamer(open_port(sim.address, 115200))
    try:
        streamer.soft_reset()
        t0 = time.perf_counter()
        result = streamer.stream(lines)
        elapsed = time.perf_counter() - t0
    finally:
        streamer.close()
    if result.status != "completed":
        raise SystemExit(f"our stream ended {result.status}: {result.reason}")
    return elapsed, sim.finish(lines)


def send_and_wait(lines: list[str], tmp: Path) -> tuple[float, int]:
    sim = Simulator(tmp)
    port = open_port(sim.address, 115200, timeout=30)
    try:
        port.write(b"\x18")
        while b"Grbl" not in port.readline():
            pass
        port.reset_input_buffer()
        t0 = time.perf_counter()
        for line in lines:
            port.write(line.encode() + b"\n")
            while True:
                reply = port.readline()
                if reply.startswith(b"ok"):
                    break
                if reply.startswith(b"error") or not reply:
                    raise SystemExit(f"send-and-wait: {line!r} got {reply!r}")
        elapsed = time.perf_counter() - t0
    finally:
        port.close()
    return elapsed, sim.finish(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=5000, help="program length (default 5000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the best is reported (default 3)")
    args = ap.parse_args()
    lines = program(args.blocks)
    print(f"program: {len(lines)} blocks, {sum(map(len, lines)) / len(lines):.1f} bytes each on average; "
          f"best of {args.repeat} runs each, alternating")
    best = {"character counting (ours)": (float("inf"), 0), "send-and-wait": (float("inf"), 0)}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.repeat):
            for name, streamer in (("character counting (ours)", ours), ("send-and-wait", send_and_wait)):
                work = Path(tmp) / f"{run}-{name[:4]}"
                work.mkdir()
                elapsed, overflows = streamer(lines, work)
                print(f"  run {run + 1}: {name:<26} {len(lines) / elapsed:8.0f} blocks/s", flush=True)
                best[name] = min(best[name], (elapsed, overflows))
    print(f"\n{'streamer':<27} {'blocks/s':>9} {'time s':>8} {'rx overflows':>13}  exec log")
    for name, (elapsed, overflows) in best.items():
        print(f"{name:<27} {len(lines) / elapsed:9.0f} {elapsed:8.2f} {overflows:13d}  exact")
    ratio = best["send-and-wait"][0] / best["character counting (ours)"][0]
    print(f"ratio: character counting streams {ratio:.2f}x the blocks per second of send-and-wait")
    return 0


if __name__ == "__main__":
    sys.exit(main())
