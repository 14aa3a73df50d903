"""A job in memory: its persisted record, its state machine and its planned Program."""

from __future__ import annotations

import logging
import secrets
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from ..machines import JOB, StateModel
from ..program import Program
from .planners import INPUT_ERRORS
from .store import JobRecord, Store

log = logging.getLogger("ismctl.supervisor.jobs")


@dataclass
class Tracked:
    """A row of the jobs table and the state machine it follows; :meth:`JobBook.transition` moves it."""

    record: JobRecord
    machine: StateModel

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def state(self) -> str:
        return self.machine.state


@dataclass
class Job(Tracked):
    program: Program | None = None
    progress: dict = field(default_factory=dict)
    auto_resume: bool = False
    hold: bool = False  # planning ends held: a graph step that waits for the steps before it
    error: Exception | None = None  # why planning failed: one of INPUT_ERRORS, naming the bad input

    def summary(self) -> dict:
        out = self.record.summary()
        out["state"] = self.state
        if self.program is not None:
            out["layers"] = self.program.layer_count
            out["estimated_s"] = round(self.program.estimated_s, 1)
        out.update(self.progress)
        return out


class JobBook:
    """Owns job state: every transition is persisted before it is published or acknowledged."""

    def __init__(self, store: Store, parser_for: Callable[[str], Callable[[str, str], Program]]):
        self.store = store
        self.parser_for = parser_for  # device -> (text, name) -> Program: the device class's dialect and limits
        self.jobs: dict[int, Job] = {}
        self.planner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="planner")
        self.planning: dict[int, Future] = {}

    def load(self) -> list[Job]:
        """Reload every job; those that were running when the supervisor stopped become interrupted (and
        are returned), those it had not planned yet fail (their planning died with it)."""
        interrupted = []
        for record in self.store.jobs():
            job = Job(record, StateModel(JOB, initial=record.state))
            self.jobs[record.id] = job
            if job.state in ("running", "paused"):
                self.transition(job, "interrupt", "supervisor stopped while the job was " + job.state)
                interrupted.append(job)
            elif job.state in ("planning", "queued"):
                self.transition(job, "fail", "supervisor stopped while the job was " + job.state)
            if job.state in ("ready", "held", "interrupted"):
                self._plan(job, self.store.source(job.id), save=False)  # loaded again for a later start or resume
        return interrupted

    def program(self, job: Job) -> Program | None:
        """The job's planned program, or None while it is still being planned or loaded."""
        return job.program

    def submit(self, name: str, device: str, source: str | Callable[[], str]) -> Job:
        """Persist a new job and start planning it; :meth:`poll_planning` reports how that ends."""
        return self.plan(self.store.add_job(name, device, 0, "queued"), source)

    def plan(self, job_id: int, source: str | Callable[[], str], hold: bool = False) -> Job:
        """Start planning the stored, queued job ``job_id``.

        ``source`` is the G-code, or a function that makes it on the planner thread
        (slicing a mesh, CAM); the G-code it becomes is what is stored, so a reload
        never slices again.  A ``hold`` job ends planning ``held`` instead of ``ready``
        (a later step of a job graph).
        """
        job = Job(self.store.job(job_id), StateModel(JOB), hold=hold)
        self.jobs[job.id] = job
        self.transition(job, "plan")
        self._plan(job, source, save=True)
        return job

    def _plan(self, job: Job, source: str | Callable[[], str], save: bool) -> None:
        # Slicing, storing and parsing a long program take seconds: never on the supervisor's
        # loop, which must keep answering heartbeats and e-stops meanwhile.  The
        # submit is answered after all of them, so the job is durable before it is acknowledged.
        parse = self.parser_for(job.record.device)

        def store_and_parse() -> Program:
            text = source() if callable(source) else source
            if save:
                self.store.save_source(job.id, text)
            return parse(text, job.record.name)

        self.planning[job.id] = self.planner.submit(store_and_parse)

    def poll_planning(self) -> list[Job]:
        """Apply finished plans; return the jobs whose state changed (planned, or failed with the reason)."""
        changed = []
        for job_id, future in list(self.planning.items()):
            if not future.done():
                continue
            del self.planning[job_id]
            job = self.jobs[job_id]
            try:
                job.program = future.result()
            except Exception as exc:  # bad input, or storing failed (disk full, ...): the job fails, the supervisor stays up
                if isinstance(exc, INPUT_ERRORS):
                    job.error, reason = exc, str(exc)
                else:
                    log.exception("job %d: planning failed", job.id)
                    reason = f"could not store or plan the program: {exc}"
                if job.machine.can("fail"):  # not when it was cancelled meanwhile
                    self.transition(job, "fail", reason)
                    changed.append(job)
                continue
            if job.state == "planning":
                self.store.update(job.id, n_ops=len(job.program))
                job.record.n_ops = len(job.program)
                self.transition(job, "hold" if job.hold else "planned")
                changed.append(job)
        return changed

    def transition(self, job: Tracked, trigger: str, reason: str = "", **fields) -> None:
        job.machine.trigger_or_refuse(trigger)
        self.store.set_state(job.id, job.state, reason, **fields)
        job.record.state, job.record.reason = job.state, reason
        for key, value in fields.items():
            setattr(job.record, key, value)

    def assign_line_base(self, job: Job) -> int:
        """Pick the firmware line numbers for this job once; a restarted driver finds its place by them."""
        if not job.record.line_base:
            # Far from 0 (where a reset firmware starts) and at most 7 digits with up to
            # ~5M ops, so framing (`N<7 digits> ` + `*cs`) fits Marlin's line with gcode's 82-byte limit.
            job.record.line_base = 1 + 10_000 * (1 + secrets.randbelow(499))
            self.store.event(job.id, "line_base", {"line_base": job.record.line_base})
            self.store.update(job.id, line_base=job.record.line_base)
        return job.record.line_base

    def confirm(self, job: Job, op: int) -> None:
        if op > job.record.confirmed_op:
            job.record.confirmed_op = op
            self.store.set_progress(job.id, op)

    def active(self, device: str) -> Job | None:
        for job in self.jobs.values():
            if job.record.device == device and job.state in ("running", "paused"):
                return job
        return None

    def next_ready(self, device: str) -> Job | None:
        ready = [j for j in self.jobs.values() if j.record.device == device and j.state == "ready" and j.program is not None]
        return min(ready, key=lambda j: j.id) if ready else None
