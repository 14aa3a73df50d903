"""Job graphs: one job made of ordered steps on several devices (print, hand-off, mill).

A graph is a row of the jobs table (kind ``graph``) with the state machine
``machines.GRAPH``; its steps are rows of ``graph_steps``.  A device step is an
ordinary job, planned when the graph is submitted (so a bad file in step 3 is
refused before step 1 starts) and ``held`` until the step before it completed.
A hand-off step moves the part between devices: ``auto`` is a simulated transfer
of ``transfer_s`` seconds, ``operator`` waits for `ismctl confirm`.  A step that
fails or is cancelled ends the graph the same way and cancels the later steps
with the reason.  docs/jobs.md spells out pause and e-stop at a hand-off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from ..config import HANDOFF_MODES, MAX_TRANSFER_S
from ..machines import GRAPH, TERMINAL_JOB_STATES, StateModel
from ..plan.model import MESH_SUFFIXES
from .jobs import JobBook, Tracked
from .planners import CAM_CLASS, SLICED_CLASS, NoDevice, pick_device
from .store import StepRecord, Store

log = logging.getLogger("ismctl.supervisor.graphs")

STEP_KEYS = {"name", "device", "gcode", "mesh", "cam", "handoff", "transfer_s"}


class GraphError(ValueError):
    """A submitted graph that cannot be accepted; the message names the step and key."""


@dataclass
class StepSpec:
    """One validated step of a ``submit_graph`` message."""

    kind: str  # "device" or "handoff"
    label: str  # the file name, or "hand-off"
    where: str  # "steps[i]": how errors name the step
    device: str = ""
    gcode: str | None = None
    mesh: bytes | None = None
    cam: dict | None = None
    mode: str = ""
    transfer_s: float = 0.0


@dataclass
class Graph(Tracked):
    """A graph in memory: its row of the jobs table, its state machine and its steps."""

    steps: list[StepRecord] = field(default_factory=list)
    transfer_ends: float | None = None  # monotonic time the running automatic transfer ends


def read_steps(steps, arrays, classes: dict[str, str], default_mode: str, default_transfer_s: float) -> list[StepSpec]:
    """Check a ``submit_graph`` body's ``steps`` against the cell's devices (``classes``: name -> class);
    raise GraphError naming ``steps[i].key``."""
    if not steps:
        raise GraphError("steps: a job graph needs at least one step")
    specs = []
    for i, step in enumerate(steps):
        where = f"steps[{i}]"
        if not isinstance(step, dict):
            raise GraphError(f"{where}: must be a map, got {type(step).__name__}")
        unknown = sorted(str(k) for k in step if k not in STEP_KEYS)
        if unknown:
            raise GraphError(f"{where}.{unknown[0]}: unknown key")
        specs.append(_handoff_step(where, step, default_mode, default_transfer_s) if "handoff" in step else _device_step(where, step, arrays, classes))
    for i, spec in enumerate(specs):
        if spec.kind == "handoff" and not (0 < i < len(specs) - 1 and specs[i - 1].kind == specs[i + 1].kind == "device"):
            raise GraphError(f"steps[{i}].handoff: a hand-off moves the part between two device steps (one before it, one after)")
    return specs


def _handoff_step(where: str, step: dict, default_mode: str, default_transfer_s: float) -> StepSpec:
    mode = step["handoff"]
    if mode == "default":
        mode = default_mode
    if mode not in HANDOFF_MODES:
        raise GraphError(f"{where}.handoff: must be one of {', '.join(HANDOFF_MODES)} or default, got {mode!r}")
    extra = sorted(set(step) - {"handoff", "transfer_s"})
    if extra:
        raise GraphError(f"{where}.{extra[0]}: does not apply to a hand-off step")
    transfer_s = step.get("transfer_s", default_transfer_s)
    if isinstance(transfer_s, bool) or not isinstance(transfer_s, (int, float)) or not 0 <= transfer_s <= MAX_TRANSFER_S:
        raise GraphError(f"{where}.transfer_s: must be between 0 and {MAX_TRANSFER_S:g} seconds, got {transfer_s!r}")
    if "transfer_s" in step and mode != "auto":
        raise GraphError(f"{where}.transfer_s: only applies to an auto hand-off")
    return StepSpec("handoff", "hand-off", where, mode=mode, transfer_s=float(transfer_s))


def _device_step(where: str, step: dict, arrays, classes: dict[str, str]) -> StepSpec:
    name = step.get("name")
    if not isinstance(name, str) or not name:
        raise GraphError(f"{where}.name: a device step needs the name of its file")
    if "transfer_s" in step:
        raise GraphError(f"{where}.transfer_s: only applies to a hand-off step")
    contents = [k for k in ("gcode", "mesh") if k in step]
    if len(contents) != 1:
        raise GraphError(f"{where}: give exactly one of gcode (text) or mesh (an array index), got {contents or 'neither'}")
    spec = StepSpec("device", name, where)
    if "gcode" in step:
        if not isinstance(step["gcode"], str):
            raise GraphError(f"{where}.gcode: must be text")
        if "cam" in step:
            raise GraphError(f"{where}.cam: plans a mesh; this step carries G-code")
        spec.gcode = step["gcode"]
    else:
        index = step["mesh"]
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(arrays):
            raise GraphError(f"{where}.mesh: must index one of the message's {len(arrays)} arrays, got {index!r}")
        if arrays[index].dtype.str != "|u1" or arrays[index].ndim != 1:
            raise GraphError(f"{where}.mesh: array {index} must be the mesh file's bytes (uint8)")
        if not name.lower().endswith(MESH_SUFFIXES):
            raise GraphError(f"{where}.name: {name} is not a mesh file name (want {', '.join(MESH_SUFFIXES)})")
        spec.mesh = arrays[index].tobytes()
        if "cam" in step:
            if not isinstance(step["cam"], dict) or not all(isinstance(k, str) for k in step["cam"]):
                raise GraphError(f"{where}.cam: must be a map of CAM settings")
            if "tooling" in step["cam"]:
                raise GraphError(f"{where}.cam.tooling: the tool table is the cell's (its mill's tooling key), not the job's")
            spec.cam = step["cam"]
    requested = step.get("device")
    if requested is not None and not isinstance(requested, str):
        raise GraphError(f"{where}.device: must be a device name")
    try:
        spec.device = pick_device(classes, requested, name, CAM_CLASS if spec.cam is not None else None)
    except NoDevice as exc:
        raise GraphError(f"{where}.device: {exc}") from None
    found_class = classes[spec.device]
    if spec.mesh is not None and spec.cam is None and found_class != SLICED_CLASS:
        raise GraphError(f"{where}.device: {spec.device} is a {found_class}; a mesh without cam settings is sliced for a {SLICED_CLASS}")
    if spec.cam is not None and found_class != CAM_CLASS:
        raise GraphError(f"{where}.device: {spec.device} is a {found_class}; cam settings plan a {CAM_CLASS} job")
    return spec


class GraphBook:
    """Runs the graphs: releases each step when the one before it ends, times transfers."""

    def __init__(self, store: Store, book: JobBook, publish: Callable[..., None]):
        self.store = store
        self.book = book
        self.publish = publish
        self.graphs: dict[int, Graph] = {}
        self.live: dict[int, Graph] = {}  # the graphs not ended: each loop turn looks at these, not the history
        self.step_of: dict[int, tuple[int, int]] = {}  # job id -> (graph id, step index)

    def _add(self, graph: Graph) -> None:
        self.graphs[graph.id] = graph
        if graph.state not in TERMINAL_JOB_STATES:
            self.live[graph.id] = graph
        for step in graph.steps:
            if step.job_id is not None:
                self.step_of[step.job_id] = (graph.id, step.idx)

    def load(self) -> None:
        """Reload graphs after the jobs; a transfer the supervisor's stop cut short needs an operator."""
        for record in self.store.jobs(kind="graph"):
            graph = Graph(record, StateModel(GRAPH, initial=record.state), self.store.steps(record.id))
            self._add(graph)
            if graph.state == "transferring":
                self._stop_transfer(graph, "the supervisor stopped during the transfer")

    def submit(self, name: str, specs: list[StepSpec], source_for: Callable[[StepSpec], object]) -> Graph:
        """Persist the graph with a job per device step (one transaction), then plan every step.

        ``source_for(spec)`` gives a step's G-code, or a function that makes it on the planner thread.
        """
        rows = [{"kind": s.kind, "label": s.label, "device": s.device, "mode": s.mode, "transfer_s": s.transfer_s} for s in specs]
        graph_id = self.store.add_graph(name, GRAPH.initial, rows)
        graph = Graph(self.store.job(graph_id), StateModel(GRAPH), self.store.steps(graph_id))
        self._add(graph)
        for step, spec in zip(graph.steps, specs):
            if step.job_id is not None:
                self.book.plan(step.job_id, source_for(spec), hold=True)
        return graph

    # ------------------------------------------------------------ questions
    def get(self, graph_id: int) -> Graph | None:
        return self.graphs.get(graph_id)

    def current(self, graph: Graph) -> StepRecord | None:
        """The first step that has not ended well, or None once every step completed."""
        for step in graph.steps:
            if step.kind == "handoff" and step.state != "done":
                return step
            if step.kind == "device" and self.book.jobs[step.job_id].state != "completed":
                return step
        return None

    def step_jobs(self, graph: Graph) -> list[int]:
        return [s.job_id for s in graph.steps if s.job_id is not None]

    def current_job(self, graph: Graph):
        step = self.current(graph)
        return self.book.jobs[step.job_id] if step is not None and step.job_id is not None else None

    def active(self) -> list[Graph]:
        """The graphs not ended (those that ended since the last call leave ``live`` here)."""
        for graph_id in [i for i, g in self.live.items() if g.state in TERMINAL_JOB_STATES]:
            del self.live[graph_id]
        return list(self.live.values())

    def summary(self, graph: Graph) -> dict:
        out = graph.record.summary()
        out["state"] = graph.state
        current = self.current(graph)
        out["step"] = current.idx if current is not None else len(graph.steps)
        out["n_steps"] = len(graph.steps)
        out["device"] = ",".join(dict.fromkeys(s.device for s in graph.steps if s.device))
        out["steps"] = [self._step_summary(s) for s in graph.steps]
        return out

    def _step_summary(self, step: StepRecord) -> dict:
        out = {"index": step.idx, "kind": step.kind, "label": step.label, "device": step.device}
        if step.job_id is None:
            out.update(mode=step.mode, transfer_s=step.transfer_s, state=step.state, reason=step.reason)
            return out
        job = self.book.jobs[step.job_id]
        out.update(job=job.id, state=job.state, reason=job.record.reason, n_ops=job.record.n_ops, confirmed_op=job.record.confirmed_op)
        out["percent"] = 100.0 if job.state == "completed" else job.progress.get("percent", 0.0)
        return out

    # ------------------------------------------------------------- running
    def tick(self, now: float) -> None:
        for graph in self.active():
            if graph.state == "planning":
                self._check_planned(graph, now)
            elif graph.state == "running":
                self._advance(graph, now)
            elif graph.state == "transferring" and graph.transfer_ends is not None and now >= graph.transfer_ends:
                step = self.current(graph)
                self._set_step(graph, step, "done", f"transferred in {step.transfer_s:g} s")
                self._transition(graph, "transferred", f"step {step.idx + 1}: the part is on {self._next_device(graph, step)}")
                graph.transfer_ends = None
                self._advance(graph, now)

    def _check_planned(self, graph: Graph, now: float) -> None:
        jobs = [self.book.jobs[job_id] for job_id in self.step_jobs(graph)]
        failed = next((j for j in jobs if j.state in ("failed", "cancelled")), None)
        if failed is not None:
            self._end(graph, failed)
        elif all(j.state == "held" for j in jobs):
            self._transition(graph, "planned", "")
            self._advance(graph, now)

    def _advance(self, graph: Graph, now: float) -> None:
        """Start whatever the current step needs; end the graph when a step ended badly or all completed."""
        step = self.current(graph)
        if step is None:
            self._transition(graph, "complete", "")
            return
        if step.kind == "device":
            job = self.book.jobs[step.job_id]
            if job.state == "held":
                why = "the steps before it completed" if step.idx else "every step is planned"
                self.book.transition(job, "release", f"step {step.idx + 1} of job graph {graph.id}: {why}")
                self.publish("job.state", job=job.id, state=job.state, graph=graph.id, step=step.idx)
            elif job.state in ("failed", "cancelled"):
                self._end(graph, job)
            return
        if step.mode == "auto":
            graph.transfer_ends = now + step.transfer_s
            self._set_step(graph, step, "transferring", f"moving the part from {self._previous_device(graph, step)} to {self._next_device(graph, step)}")
            self._transition(graph, "transfer", step.reason)
            log.info("job graph %d: automatic transfer of %g s started", graph.id, step.transfer_s)
        else:
            self._set_step(graph, step, "waiting", self._operator_prompt(graph, step))
            self._transition(graph, "wait_operator", step.reason)

    def _operator_prompt(self, graph: Graph, step: StepRecord, why: str = "") -> str:
        prompt = f"waiting for operator: move the part from {self._previous_device(graph, step)} to {self._next_device(graph, step)}"
        return f"{why}; {prompt}" if why else prompt

    def _previous_device(self, graph: Graph, step: StepRecord) -> str:
        return graph.steps[step.idx - 1].device

    def _next_device(self, graph: Graph, step: StepRecord) -> str:
        return graph.steps[step.idx + 1].device

    def _end(self, graph: Graph, cause) -> None:
        """End the graph as its step's job ``cause`` ended (failed or cancelled) and cancel the steps that have not."""
        step = self.step_of[cause.id][1]
        reason = f"step {step + 1} ({cause.record.name} on {cause.record.device}) {cause.state}: {cause.record.reason}"
        self.cancel_steps(graph, f"job graph {graph.id} ended: {reason}")
        self._transition(graph, "fail" if cause.state == "failed" else "cancel", reason)

    def cancel_steps(self, graph: Graph, reason: str) -> list:
        """Cancel every step that has not ended; return the cancelled jobs (a running one needs its driver told)."""
        cancelled = []
        for step in graph.steps:
            if step.job_id is None:
                if step.state not in ("done", "cancelled"):
                    self._set_step(graph, step, "cancelled", reason)
                continue
            job = self.book.jobs[step.job_id]
            if job.state not in TERMINAL_JOB_STATES:
                was = job.state
                self.book.transition(job, "cancel", reason)
                self.publish("job.state", job=job.id, state=job.state, reason=reason)
                cancelled.append((job, was))
        graph.transfer_ends = None
        return cancelled

    def cancel(self, graph: Graph, reason: str) -> list:
        cancelled = self.cancel_steps(graph, reason)
        self._transition(graph, "cancel", reason)
        return cancelled

    def confirm(self, graph: Graph, now: float) -> str:
        """The operator says the part has been moved: release the next step.  Returns a refusal or ''."""
        if graph.state != "waiting":
            return f"job {graph.id} is {graph.state}, not waiting for an operator's hand-off"
        step = self.current(graph)
        self._set_step(graph, step, "done", "confirmed by operator")
        self._transition(graph, "confirm", f"step {step.idx + 1}: hand-off confirmed by operator")
        self._advance(graph, now)
        return ""

    def stop_transfers(self, cause: str, graph_ids=None) -> list[Graph]:
        """An e-stop or pause stops a running transfer: where the part is, only an operator can tell."""
        stopped = []
        for graph in self.active():
            if graph.state == "transferring" and (graph_ids is None or graph.id in graph_ids):
                self._stop_transfer(graph, f"transfer stopped by {cause}")
                stopped.append(graph)
        return stopped

    def _stop_transfer(self, graph: Graph, why: str) -> None:
        step = self.current(graph)
        graph.transfer_ends = None
        self._set_step(graph, step, "waiting", self._operator_prompt(graph, step, why))
        self._transition(graph, "wait_operator", step.reason)

    def _set_step(self, graph: Graph, step: StepRecord, state: str, reason: str) -> None:
        self.store.set_step(graph.id, step.idx, state, reason)
        step.state, step.reason = state, reason

    def _transition(self, graph: Graph, trigger: str, reason: str) -> None:
        self.book.transition(graph, trigger, reason)
        current = self.current(graph)
        self.publish("job.state", job=graph.id, state=graph.state, reason=reason, step=current.idx if current else len(graph.steps))
