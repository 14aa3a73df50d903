"""Live progress for operators: a progress bar per job plus device telemetry, from the event stream."""

from __future__ import annotations

import sys
import time

from .client import CellClient
from .machines import TERMINAL_JOB_STATES

BAR_WIDTH = 24
POLL_S = 2.0  # events are lossy at connect time; the job's state is re-read this often


def _bar(fraction: float) -> str:
    filled = int(round(BAR_WIDTH * min(max(fraction, 0.0), 1.0)))
    return "#" * filled + "." * (BAR_WIDTH - filled)


def _fmt_left(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def progress_line(job: int, progress: dict, telemetry: dict) -> str:
    pct = progress.get("percent", 0.0)
    parts = [f"job {job} [{_bar(pct / 100)}] {pct:5.1f}%"]
    if "op" in progress:
        parts.append(f"op {progress['op'] + 1}/{progress['n_ops']}")
    if progress.get("layers"):
        parts.append(f"layer {max(progress.get('layer', -1), 0) + 1}/{progress['layers']}")
    if "time_left_s" in progress:
        parts.append(f"left {_fmt_left(progress['time_left_s'])}")
    if "pos" in progress:
        parts.append("XYZ {:.1f},{:.1f},{:.2f}".format(*progress["pos"]))
    if "hotend" in telemetry:
        parts.append("hotend {:.0f}/{:.0f}°C bed {:.0f}/{:.0f}°C".format(*telemetry["hotend"], *telemetry.get("bed", (0, 0))))
    return "  ".join(parts)


def watch_jobs(client: CellClient, job_id: int | None, out=sys.stdout) -> str | None:
    """Follow events until ``job_id`` ends (or forever when None); return its final state."""
    interactive = out.isatty()
    events = client.events(("job.", "device.", "cell.", "estop."))
    progress: dict[int, dict] = {}
    telemetry: dict = {}
    state = None
    last_print = next_poll = 0.0
    try:
        while True:
            now = time.monotonic()
            if job_id is not None and now >= next_poll:
                next_poll = now + POLL_S
                state = client.call("job", job=job_id)["job"]["state"]
                if state in TERMINAL_JOB_STATES or state == "interrupted":
                    break
            item = events.next(timeout_s=0.25)
            if item is None:
                continue
            topic, body = item
            if topic == "job.progress":
                if job_id is None or body["job"] == job_id:
                    progress[body["job"]] = body
                    if interactive or now - last_print > 2.0:
                        last_print = now
                        line = progress_line(body["job"], body, telemetry)
                        out.write(f"\r{line:<120}" if interactive else line + "\n")
                        out.flush()
            elif topic == "device.telemetry":
                telemetry = body
            elif topic in ("job.state", "cell.state", "device.state", "estop.confirmed", "device.warning"):
                if job_id is not None and topic == "job.state" and body.get("job") != job_id:
                    continue
                what = " ".join(f"{k}={v}" for k, v in body.items() if k != "kind" and v not in ("", None))
                out.write(("\n" if interactive else "") + f"{topic}: {what}\n")
                out.flush()
                if topic == "job.state" and body.get("state") in TERMINAL_JOB_STATES | {"interrupted"}:
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
