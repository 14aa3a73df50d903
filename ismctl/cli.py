"""`ismctl`: the operator's command line.

Every command but `serve` and `demo` is a client of a running supervisor,
found through the same cell config (`--config`, $ISMCTL_CONFIG, or
./configs/demo-cell.toml).  Exit codes: 0 done, 1 refused or failed (the reason
is printed), 2 bad usage or config, 3 no supervisor answered.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import config as cellconfig
from . import cam_cmd, mill_cmd, slice_cmd, verify_cmd
from .plan.model import MESH_SUFFIXES

# Modules that bring commands of their own: each has add_parsers(sub), COMMANDS
# {name: function} and LOCAL_COMMANDS, the ones that need no cell (the bus is not
# even imported for them, and they exit without the interpreter's teardown).
COMMAND_MODULES = (slice_cmd, verify_cmd, cam_cmd, mill_cmd)
LOCAL_COMMANDS = frozenset(name for module in COMMAND_MODULES for name in module.LOCAL_COMMANDS)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
PLANNING_WAIT_S = 600.0

EPILOG = """\
examples:
  ismctl demo                                  run the bundled demo cell end to end
  ismctl serve --config configs/demo-cell.toml run a cell (Ctrl-C stops it cleanly)
  ismctl submit part.gcode --watch             queue a print and follow it
  ismctl submit part.stl                       the cell slices the mesh with its [slicing] profile
  ismctl submit bore.nc                        grbl G-code goes to the cell's mill
  ismctl submit hybrid.toml --watch            a job file: print, hand-off, mill, in order (docs/jobs.md)
  ismctl confirm 4                             the part is on the mill: release job 4's next step
  ismctl slice part.stl -o part.gcode          slice on this machine (no cell needed)
  ismctl preview part.gcode                    PNG images of the first, middle and last layer
  ismctl cam part.stl --tool flat-3 -o part.nc face, pocket and profile the part for the mill
  ismctl verify part.nc --mesh part.stl        cut the stock on a Z-map: gouges, rapids through material
  ismctl home                                  home the mill ($H); then `ismctl jog X10 --feed 500`
  ismctl status                                cell, devices, temperatures, active jobs
  ismctl jobs                                  every job this cell has ever had
  ismctl estop                                 halt every device now (latched until `ismctl reset`)
"""


SUBMIT_EXAMPLES = """\
examples:
  ismctl submit part.gcode --watch             Marlin G-code to the cell's printer; follow it
  ismctl submit part.stl                       sliced by the cell with its [slicing] profile
  ismctl submit bore.nc                        grbl G-code to the cell's mill
  ismctl submit part.gcode --device printer2   to a device by name
  ismctl submit configs/hybrid-example.toml    print, hand-off, mill (then `ismctl confirm JOB` at the hand-off)
"""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="cell config (TOML); default: $ISMCTL_CONFIG or ./configs/demo-cell.toml")
    common.add_argument("--state-dir", type=Path, help="where the database, logs and sockets live (default: from the config)")
    common.add_argument("--json", action="store_true", help="print the supervisor's reply as JSON")
    common.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the supervisor (default 5)")

    parser = argparse.ArgumentParser(
        prog="ismctl",
        description="Control a fabrication cell: a supervisor streams jobs to device drivers over ZeroMQ.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", parents=[common], help="run the supervisor, its drivers and simulators")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p = sub.add_parser("demo", parents=[common], help="serve the demo cell, print the bundled part, verify it, stop")
    p.add_argument("--keep", action="store_true", help="keep the demo's state directory afterwards")
    p = sub.add_parser("submit", parents=[common], help="queue a G-code file, a mesh the cell slices, or a job file of steps",
                       description="Queue a job on the cell.  The cell checks the file before it answers: a bad G-code line, "
                       "a mesh it cannot slice or a bad job-file step is refused with the line or key.  A job file (.toml) "
                       "runs its steps in order on several devices, with hand-offs between them (docs/jobs.md).",
                       epilog=SUBMIT_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", type=Path, help="G-code file (Marlin .gcode; grbl .nc/.ngc/.tap), a mesh (STL, OBJ, 3MF) to slice "
                   "with the cell's [slicing] profile, or a job file (.toml) of steps on several devices")
    p.add_argument("--device", help="device name (default: by file type: the cell's mill for .nc/.ngc/.tap, else its printer)")
    p.add_argument("--name", help="job name (default: the file name)")
    p.add_argument("--watch", action="store_true", help="follow the job until it ends; exit 0 only if it completed")
    sub.add_parser("status", parents=[common], help="cell state, devices and active jobs")
    sub.add_parser("jobs", parents=[common], help="all jobs with state and progress")
    p = sub.add_parser("job", parents=[common], help="one job with its event history")
    p.add_argument("job", type=int)
    p = sub.add_parser("watch", parents=[common], help="live progress bars and telemetry (Ctrl-C to stop)")
    p.add_argument("job", type=int, nargs="?", help="follow this job until it ends")
    for name, text in (("pause", "pause running jobs (or one)"), ("resume", "resume paused or interrupted jobs (or one)")):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("job", type=int, nargs="?")
    p = sub.add_parser("cancel", parents=[common], help="cancel a job (a job graph: with all its steps)")
    p.add_argument("job", type=int)
    p = sub.add_parser("confirm", parents=[common], help="confirm an operator hand-off: the part has been moved; the job graph goes on",
                       description="A job graph waiting at an operator hand-off (`ismctl status` shows 'waiting for operator: move "
                       "the part from A to B') starts its next step once the operator confirms it.  Refused when the job is not "
                       "waiting, and while the cell is e-stopped (reset first).",
                       epilog="example:\n  ismctl confirm 4", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", type=int, help="the job graph (or the job of one of its steps)")
    sub.add_parser("estop", parents=[common], help="emergency stop every device; latched until reset")
    sub.add_parser("reset", parents=[common], help="clear an e-stop or fault once every device is safe")
    for module in COMMAND_MODULES:
        module.add_parsers(sub)
    return parser


def _fmt_s(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _print_jobs(jobs: list[dict]) -> None:
    """One row per job; a job graph shows its step, its steps' jobs are marked with theirs."""
    if not jobs:
        print("no jobs")
        return
    print(f"{'id':>4}  {'state':<12} {'device':<12} {'progress':>13}  {'name':<28} reason")
    for j in jobs:
        name = j["name"]
        if j.get("kind") == "graph":
            progress = f"step {min(j['step'] + 1, j['n_steps'])}/{j['n_steps']}"
            current = j["steps"][j["step"]] if j["step"] < j["n_steps"] else {}
            if current.get("kind") == "device" and current["state"] in ("running", "paused", "interrupted"):
                progress += f" {current['percent']:.0f}%"
        else:
            progress = f"{j['confirmed_op'] + 1}/{j['n_ops']}" if j["n_ops"] else "-"
            if "graph" in j:
                name = f"- step {j['step'] + 1}: {name}"
        print(f"{j['id']:>4}  {j['state']:<12} {j['device']:<12} {progress:>13}  {name[:28]:<28} {j['reason']}")


def _print_steps(graph: dict) -> None:
    print(f"  {'step':<5} {'kind':<9} {'device':<10} {'state':<12} {'done':>6}  what")
    for step in graph["steps"]:
        marker = ">" if step["index"] == graph["step"] and graph["state"] not in ("completed", "failed", "cancelled") else " "
        if step["kind"] == "handoff":
            kind, done, what = "hand-off", "", f"{step['mode']}" + (f" ({step['transfer_s']:g} s)" if step["mode"] == "auto" else "")
        else:
            kind, done, what = "device", f"{step['percent']:.0f}%", f"{step['label']} (job {step['job']})"
        reason = f": {step['reason']}" if step.get("reason") else ""
        print(f"{marker} {step['index'] + 1:<5} {kind:<9} {step['device'] or '-':<10} {step['state']:<12} {done:>6}  {what}{reason}")


def _print_status(body: dict) -> None:
    from .watch import telemetry_text

    print(f"cell {body['cell']}: {body['state']}")
    for name, dev in body["devices"].items():
        telemetry = telemetry_text(dev)
        reason = f"  ({dev['reason']})" if dev.get("reason") else ""
        print(f"  {name:<10} {dev['class']:<8} {dev['state']:<12}{'  ' + telemetry if telemetry else ''}{reason}")
    if body["active_jobs"]:
        print("active jobs:")
        _print_jobs(body["active_jobs"])


def _client(args):
    from .client import CellClient  # ZeroMQ and the bus: only for the commands that talk to a cell

    return CellClient(_config(args), timeout_s=args.timeout)


def _config(args) -> cellconfig.CellConfig:
    return cellconfig.load(args.config or cellconfig.find_default(), state_dir=args.state_dir)


def _show(args, body: dict, human) -> None:
    if args.json:
        json.dump(body, sys.stdout, indent=2, default=str)
        print()
    else:
        human(body)


def cmd_serve(args) -> int:
    from .supervisor.serve import serve

    return serve(_config(args), verbose=args.verbose)


def cmd_submit(args) -> int:
    if args.file.suffix.lower() == ".toml":
        return _submit_job_file(args)
    is_mesh = args.file.suffix.lower() in MESH_SUFFIXES
    try:
        content = args.file.read_bytes() if is_mesh else args.file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"ismctl: cannot read {args.file}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    client = _planning_client(args)
    body = {"name": args.name or args.file.name}
    if args.device:
        body["device"] = args.device
    if is_mesh:
        if not body["name"].lower().endswith(MESH_SUFFIXES):
            body["name"] += args.file.suffix.lower()  # the cell tells the format by the name
        reply = client.call("submit_mesh", arrays=[np.frombuffer(content, dtype=np.uint8)], **body)
    else:
        reply = client.call("submit", gcode=content, **body)
    _show(args, reply, lambda r: print(f"job {r['job']} queued on {r['device']}: {r['n_ops']} ops, estimated {_fmt_s(r['estimated_s'])} of work"))
    return _follow(args, client, reply["job"])


def _planning_client(args):
    """A client for a submit, whose answer waits for the cell to plan: fail fast when no supervisor
    runs, then wait as long as slicing or planning a long file may take."""
    client = _client(args)
    client.call("ping")
    client.timeout_s = max(args.timeout, PLANNING_WAIT_S)
    return client


def _follow(args, client, job: int) -> int:
    if not args.watch:
        return EXIT_OK
    from .watch import watch_jobs

    return EXIT_OK if watch_jobs(client, job) == "completed" else EXIT_FAILED


def _submit_job_file(args) -> int:
    """A job file: its steps' files are read here and travel in one submit_graph message."""
    from . import jobfile
    from .client import CommandFailed

    if args.device:
        print(f"ismctl submit: --device does not apply to a job file; name each step's device in {args.file}", file=sys.stderr)
        return EXIT_USAGE
    try:
        job = jobfile.load(args.file, devices=tuple(_config(args).devices))
    except jobfile.JobFileError as exc:
        print(f"ismctl submit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    client = _planning_client(args)
    try:
        reply = client.call("submit_graph", arrays=job.arrays, name=args.name or job.name, steps=job.steps)
    except CommandFailed as exc:
        print(f"ismctl submit: {args.file}: {exc}", file=sys.stderr)
        return EXIT_FAILED

    def human(r):
        print(f"job {r['job']} queued: {len(r['steps'])} steps")
        for step in r["steps"]:
            what = f"hand-off ({step['mode']})" if step["kind"] == "handoff" else f"{step['label']} on {step['device']}: {step['n_ops']} ops (job {step['job']})"
            print(f"  {step['index'] + 1}. {what}")

    _show(args, reply, human)
    return _follow(args, client, reply["job"])


def cmd_status(args) -> int:
    _show(args, _client(args).call("status"), _print_status)
    return EXIT_OK


def cmd_jobs(args) -> int:
    _show(args, _client(args).call("jobs"), lambda b: _print_jobs(b["jobs"]))
    return EXIT_OK


def cmd_job(args) -> int:
    def human(body):
        _print_jobs([body["job"]])
        if body["job"].get("kind") == "graph":
            _print_steps(body["job"])
        for ev in body["events"]:
            detail = ", ".join(f"{k}={v}" for k, v in ev.items() if k not in ("ts", "kind") and v not in ("", None))
            print(f"  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(ev['ts']))}  {ev['kind']:<12} {detail}")

    _show(args, _client(args).call("job", job=args.job), human)
    return EXIT_OK


def cmd_watch(args) -> int:
    from .watch import watch_jobs

    state = watch_jobs(_client(args), args.job)
    return EXIT_OK if args.job is None or state == "completed" else EXIT_FAILED


def _simple(command: str, with_job: bool):
    def run(args) -> int:
        body = {"job": args.job} if with_job and args.job is not None else {}
        reply = _client(args).call(command, **body)
        _show(args, reply, lambda r: print(f"{command}: ok" + (f" (jobs {', '.join(map(str, r['jobs']))})" if r.get("jobs") else "")))
        return EXIT_OK

    return run


def cmd_confirm(args) -> int:
    reply = _client(args).call("confirm", job=args.job)
    _show(args, reply, lambda r: print(f"job {r['job']}: hand-off confirmed; it is {r['state']} at step {r['step'] + 1}"))
    return EXIT_OK


def cmd_estop(args) -> int:
    client = _client(args)
    events = client.events(("estop.confirmed",))
    time.sleep(0.05)  # let the subscription reach the publisher
    reply = client.call("estop")
    confirmed = events.next(timeout_s=2.0) if reply["devices"] else None
    if args.json:
        _show(args, {**reply, "confirmed": confirmed[1] if confirmed else None}, print)
    elif confirmed:
        print(f"E-STOP: {', '.join(reply['devices'])} halted ({confirmed[1]['latency_ms']:.1f} ms); the cell stays stopped until `ismctl reset`")
    else:
        print("E-STOP sent; not every device confirmed its halt yet (see `ismctl status`); the cell stays stopped until `ismctl reset`")
    return EXIT_OK


def cmd_reset(args) -> int:
    args.timeout = max(args.timeout, 35.0)
    reply = _client(args).call("reset")
    _show(args, reply, lambda r: print(f"cell is {r['state']}" + (f" ({r['note']})" if r.get("note") else "")))
    return EXIT_OK


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args)


COMMANDS = {
    "serve": cmd_serve,
    "demo": cmd_demo,
    "submit": cmd_submit,
    "status": cmd_status,
    "jobs": cmd_jobs,
    "job": cmd_job,
    "watch": cmd_watch,
    "pause": _simple("pause", True),
    "resume": _simple("resume", True),
    "cancel": _simple("cancel", True),
    "confirm": cmd_confirm,
    "estop": cmd_estop,
    "reset": cmd_reset,
}
for _module in COMMAND_MODULES:
    COMMANDS.update(_module.COMMANDS)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in LOCAL_COMMANDS:  # no cell involved: the bus is not even imported
            return COMMANDS[args.command](args)
        return _cell_command(args)
    except cellconfig.ConfigError as exc:
        print(f"ismctl: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _cell_command(args) -> int:
    from .client import CommandFailed, SupervisorUnreachable

    try:
        return COMMANDS[args.command](args)
    except SupervisorUnreachable as exc:
        print(f"ismctl: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except CommandFailed as exc:
        print(f"ismctl {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def run() -> None:
    """The `ismctl` program: main(), then exit.

    After a local command (planning, verifying) the interpreter's teardown (unloading Numba's LLVM
    code) takes about 0.4 s and has nothing left to do: the output is written and
    closed.  So those exit at once, with the streams flushed.
    """
    argv = sys.argv[1:]
    code = main(argv)
    if argv and argv[0] in LOCAL_COMMANDS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
