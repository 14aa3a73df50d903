"""Live progress for operators: a progress bar per job plus device telemetry, from the event stream.

A job graph is followed step by step: its steps' jobs get progress lines
labelled with the step, and its hand-offs show as state lines (an operator
hand-off says what to do and how to confirm it).
"""

from __future__ import annotations

import sys
import time

from .client import CellClient
from .machines import TERMINAL_JOB_STATES

BAR_WIDTH = 24
POLL_S = 2.0  # events are lossy at connect time; the job's state is re-read this often
STOPPED_STATES = TERMINAL_JOB_STATES | {"interrupted"}  # a watch or wait ends here: nothing moves until an operator acts
TELEMETRY_UNITS = {"hotend": "°C", "bed": "°C", "chamber": "°C", "feed": "mm/min", "spindle": "rpm"}
NOT_TELEMETRY = frozenset({"kind", "device", "class", "state", "reason", "connected"})


def _bar(fraction: float) -> str:
    filled = int(round(BAR_WIDTH * min(max(fraction, 0.0), 1.0)))
    return "#" * filled + "." * (BAR_WIDTH - filled)


def _fmt_left(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def telemetry_text(telemetry: dict) -> str:
    """Whatever a device reports, by its shape: a pair is current/target (heaters), a longer list a vector."""
    parts = []
    for key, value in telemetry.items():
        unit = TELEMETRY_UNITS.get(key, "")
        if key in NOT_TELEMETRY:
            continue
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_number, value)):
            parts.append(f"{key} {value[0]:.1f}/{value[1]:.0f}{' ' + unit if unit else ''}")
        elif isinstance(value, (list, tuple)) and value and all(map(_number, value)):
            parts.append(f"{key} {','.join(f'{round(v, 2):g}' for v in value)}")
        elif _number(value):
            parts.append(f"{key} {value:g}{' ' + unit if unit else ''}")
        elif isinstance(value, str) and value:
            parts.append(f"{key} {value}")
    return "  ".join(parts)


def progress_line(label: str, progress: dict, telemetry: dict) -> str:
    pct = progress.get("percent", 0.0)
    parts = [f"{label} [{_bar(pct / 100)}] {pct:5.1f}%"]
    if "op" in progress:
        parts.append(f"op {progress['op'] + 1}/{progress['n_ops']}")
    if progress.get("layers"):
        parts.append(f"layer {max(progress.get('layer', -1), 0) + 1}/{progress['layers']}")
    if "time_left_s" in progress:
        parts.append(f"left {_fmt_left(progress['time_left_s'])}")
    if "pos" in progress:
        parts.append("XYZ {:.1f},{:.1f},{:.2f}".format(*progress["pos"]))
    text = telemetry_text({k: v for k, v in telemetry.items() if k not in ("pos", "mpos", "wpos")})
    return "  ".join(parts + ([text] if text else []))


class _Followed:
    """Which jobs' events a watch shows, their labels and devices; a graph adds its steps' jobs."""

    def __init__(self, job_id: int | None):
        self.root = job_id
        self.labels: dict[int, str] = {}
        self.devices: dict[int, str] = {}

    def update(self, summary: dict) -> None:
        self.devices[summary["id"]] = summary["device"]
        for step in summary.get("steps", ()):
            if "job" in step:
                self.labels[step["job"]] = f"job {summary['id']} step {step['index'] + 1}/{summary['n_steps']} ({step['label']})"
                self.devices[step["job"]] = step["device"]

    def shows(self, job: int) -> bool:
        return self.root is None or job == self.root or job in self.labels

    def label(self, job: int) -> str:
        return self.labels.get(job, f"job {job}")


def ended(summary: dict) -> bool:
    """A job ended, or stopped until an operator resumes it (for a graph: its current step)."""
    if summary["state"] in STOPPED_STATES:
        return True
    steps = summary.get("steps", ())
    return summary.get("step", 0) < len(steps) and steps[summary["step"]]["state"] == "interrupted"


def _where(summary: dict) -> str:
    text = f"job {summary['id']} is {summary['state']}"
    if summary.get("kind") == "graph" and summary["step"] < summary["n_steps"]:
        step = summary["steps"][summary["step"]]
        text += f" at step {step['index'] + 1}/{summary['n_steps']} ({step['label']}{' on ' + step['device'] if step['device'] else ''})"
    return text + (f": {summary['reason']}" if summary["reason"] else "")


def watch_jobs(client: CellClient, job_id: int | None, out=sys.stdout) -> str | None:
    """Follow events until ``job_id`` (a job or a job graph) ends, or forever when None; return its final state."""
    interactive = out.isatty()
    events = client.events(("job.", "device.", "cell.", "estop."))
    followed = _Followed(job_id)
    telemetry: dict[str, dict] = {}  # by device; "" holds the latest (for a job whose device is not known yet)
    state = None
    next_poll = 0.0
    last_print: dict[int, float] = {}  # by job: a new step's first progress always shows
    try:
        while True:
            now = time.monotonic()
            if job_id is not None and now >= next_poll:
                next_poll = now + POLL_S
                summary = client.call("job", job=job_id)["job"]
                if state is None:  # events only tell what changes: first say where the job is
                    out.write(_where(summary) + "\n")
                followed.update(summary)
                state = summary["state"]
                if ended(summary):
                    break
            item = events.next(timeout_s=0.25)
            if item is None:
                continue
            topic, body = item
            if topic == "job.progress":
                if followed.shows(body["job"]) and (interactive or now - last_print.get(body["job"], 0.0) > 2.0):
                    last_print[body["job"]] = now
                    device = followed.devices.get(body["job"], "")
                    line = progress_line(followed.label(body["job"]), body, telemetry.get(device, {}))
                    out.write(f"\r{line:<120}" if interactive else line + "\n")
                    out.flush()
            elif topic == "device.telemetry":
                telemetry[body.get("device", "")] = telemetry[""] = body
            elif topic in ("job.state", "cell.state", "device.state", "estop.confirmed", "device.warning"):
                if topic == "job.state" and not followed.shows(body.get("job")):
                    continue
                what = " ".join(f"{k}={v}" for k, v in body.items() if k != "kind" and v not in ("", None))
                out.write(("\n" if interactive else "") + f"{topic}: {what}\n")
                if topic == "job.state" and body.get("state") == "waiting" and body.get("job") == job_id:
                    out.write(f"  -> when the part is in place: ismctl confirm {job_id}\n")
                out.flush()
                if topic == "job.state" and body.get("job") == job_id and body.get("state") in STOPPED_STATES:
                    state = body["state"]
                    break
    finally:
        events.close()
    if job_id is not None:
        final = client.call("job", job=job_id)["job"]
        reason = f" ({final['reason']})" if final["reason"] else ""
        out.write(f"job {job_id} {final['state']}{reason}\n")
        return final["state"]
    return state
