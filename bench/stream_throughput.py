"""Streaming throughput: our whole chain vs Printrun's printcore, same file, same simulator, one run.

    python bench/stream_throughput.py [--file part.gcode] [--repeat 3]

Ours: `ismctl submit` to a real `ismctl serve` (supervisor -> ZeroMQ -> driver ->
pty -> firmware_sim.printer at --speed max); timed from the job's `running`
event to its `completed` event.  Peer: printcore (PyPI `printrun`, installed
with --no-deps) connected to a fresh firmware_sim.printer at --speed max,
timed from startprint() until it stops printing.  Both simulators' executed
logs are checked against the program, so a fast but wrong stream cannot win.
Goal (issue 2): at least 3x printcore's lines/s.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from drivers.marlin import is_host_command  # noqa: E402
from ismctl.execlog import compare_exec_log  # noqa: E402
from ismctl.gcode import parse  # noqa: E402
from serving import serving  # noqa: E402

DEMO_PART = REPO / "ismctl" / "data" / "demo-bracket.gcode"


def tiny_segments(n: int) -> str:
    """Many very short moves: the case where wait-for-ok hosts starve the planner."""
    lines = ["G21", "G90", "M82", "G92 E0"]
    e = 0.0
    for i in range(n):
        e += 0.01
        lines.append(f"G1 X{10 + (i % 200) * 0.05:.2f} Y{10 + (i // 200 % 200) * 0.05:.2f} E{e:.4f} F3000")
    return "\n".join(lines) + "\n"


def run_ours(text: str, tmp: Path) -> tuple[float, str]:
    config_text = '[cell]\nname = "bench"\n[devices.printer]\nclass = "printer"\nport = "sim"\n[devices.printer.sim]\nspeed = "max"\n'
    with serving(config_text, tmp, client_timeout_s=30) as (config, client):
        events = client.events(("job.state",))
        time.sleep(0.2)
        job = client.call("submit", name="bench", gcode=text)["job"]
        started = None
        while True:
            got = events.next(timeout_s=600)
            if got is None:
                raise SystemExit("no job events for 600 s")
            body = got[1]
            if body.get("job") != job:
                continue
            if body["state"] == "running":
                started = time.perf_counter()
            elif body["state"] in ("completed", "failed", "cancelled", "interrupted"):
                elapsed = time.perf_counter() - started
                if body["state"] != "completed":
                    raise SystemExit(f"our job ended {body['state']}: {body.get('reason')}")
                break
        mismatch = compare_exec_log(parse(text).commands, (config.state_dir / "printer.exec.log").read_text().splitlines(), is_host_command)
        return elapsed, mismatch


def run_printcore(text: str, tmp: Path) -> tuple[float, str]:
    from printrun import gcoder
    from printrun.printcore import printcore

    exec_log = tmp / "printcore.exec.log"
    sim = subprocess.Popen(
        [sys.executable, "-m", "firmware_sim.printer", "--speed", "max", "--exec-log", str(exec_log)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO, text=True,
    )  # fmt: skip
    try:
        port = sim.stdout.readline().strip()
        core = printcore(port, 250000)
        deadline = time.monotonic() + 20
        while not core.online:
            if time.monotonic() > deadline:
                raise SystemExit("printcore did not come online")
            time.sleep(0.01)
        gcode = gcoder.LightGCode(text.splitlines())
        started = time.perf_counter()
        core.startprint(gcode)
        while core.printing:
            time.sleep(0.002)
        elapsed = time.perf_counter() - started
        time.sleep(0.3)
        core.disconnect()
        program = parse(text).commands
        # printcore sends its own M110 and bare M105 polls: set aside the same way as ours.
        mismatch = compare_exec_log(program, exec_log.read_text().splitlines(), lambda c: c == "M105" or c.startswith("M110 "))
        return elapsed, mismatch
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, help="G-code to stream (default: the demo part and 20,000 tiny segments)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool; the best is reported")
    args = ap.parse_args()
    cases = [(args.file.name, args.file.read_text())] if args.file else [(DEMO_PART.name, DEMO_PART.read_text()), ("tiny-segments-20k", tiny_segments(20_000))]
    print(f"{'file':<22} {'lines':>7} {'ours lines/s':>13} {'printcore lines/s':>18} {'ratio':>7}  exact")
    for name, text in cases:
        n = len(parse(text))
        ours, theirs = [], []
        for i in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="ismctl-bench-") as tmp:
                elapsed, mismatch = run_ours(text, Path(tmp))
                ours.append((elapsed, mismatch))
            with tempfile.TemporaryDirectory(prefix="ismctl-bench-") as tmp:
                theirs.append(run_printcore(text, Path(tmp)))
        best_ours, best_theirs = min(ours), min(theirs)
        exact = "yes" if not any(m for _, m in ours) else f"NO: {best_ours[1]}"
        exact += "" if not any(m for _, m in theirs) else f" (printcore: {best_theirs[1]})"
        ratio = best_theirs[0] / best_ours[0]
        print(f"{name:<22} {n:>7} {n / best_ours[0]:>13,.0f} {n / best_theirs[0]:>18,.0f} {ratio:>6.2f}x  {exact}")
    print("(best of each; goal: ratio >= 3x)")


if __name__ == "__main__":
    main()
