"""The supervisor: one thread, one poll loop over the client, driver and timer work.

Clients send commands (F´-style: every one answered with a result code, counted
and written to the audit log).  Drivers register, report their device state,
progress and telemetry, and receive jobs.  Everything that changes a job is
persisted before it is acknowledged or published.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import zmq

from .. import bus, gcode, wire
from ..config import CellConfig, DeviceConfig
from ..machines import CELL, DEVICE, TERMINAL_JOB_STATES, Refused, StateModel
from ..plan.model import MESH_SUFFIXES
from ..wire import Message, MessageFactory, Result
from . import planners
from .graphs import Graph, GraphBook, GraphError, StepSpec, read_steps
from .jobs import Job, JobBook
from .store import Store

log = logging.getLogger("ismctl.supervisor")

# Pauses the cell itself caused; the job resumes on its own once the device is back.
AUTO_RESUME_CAUSES = frozenset({"driver-lost", "link-lost"})
PLANNING_REPLY_S = 600.0  # a submit is answered once its program is planned, or after this
CHUNK_OPS = 100_000  # ops per job_start / job_chunk message: about 4 MB for G-code
SAFE_DEVICE_STATES = frozenset({"disconnected", "connecting", "idle", "paused"})
ACTIVE_STATES = frozenset({"ready", "running", "paused", "interrupted", "transferring", "waiting"})  # listed by `status`


@dataclass
class DeviceLink:
    config: DeviceConfig
    machine: StateModel = field(default_factory=lambda: StateModel(DEVICE))
    identity: bytes | None = None
    reason: str = ""
    telemetry: dict = field(default_factory=dict)

    @property
    def state(self) -> str:
        return self.machine.state

    def summary(self) -> dict:
        return {"class": self.config.device_class, "state": self.state, "reason": self.reason, "connected": self.identity is not None, **self.telemetry}


@dataclass
class Deferred:
    """A client request answered later, when ``done()`` returns a reply or the deadline passes."""

    identity: bytes
    request: Message
    deadline: float
    done: object  # () -> Message | None
    on_timeout: object  # () -> Message


class Supervisor:
    def __init__(self, config: CellConfig, ctx: zmq.Context | None = None, power_cycle=None):
        self.config = config
        self.ctx = ctx or zmq.Context.instance()
        self.factory = MessageFactory("supervisor")
        self.counters = bus.Counters()
        self.store = Store(config.db_path)
        self.book = JobBook(self.store, parser_for=self._parser_for)
        self.cell = StateModel(CELL)
        self.cell.interlock("reset", self._devices_not_safe)
        self.devices = {name: DeviceLink(dev) for name, dev in config.devices.items()}
        self.power_cycle = power_cycle or (lambda device: None)
        self.clients = bus.Router(self.ctx, config.clients, self.factory, self.counters, "clients")
        self.drivers = bus.Router(self.ctx, config.drivers, self.factory, self.counters, "drivers")
        self.events = bus.socket(self.ctx, zmq.PUB)
        self.events.bind(config.events)
        self.client_replies = bus.ReplyCache()
        self.driver_heartbeats = bus.Heartbeats(config.heartbeat_s)
        self.deferred: list[Deferred] = []
        self.graphs = GraphBook(self.store, self.book, self.publish)
        self.estop_started: float | None = None
        self.estop_told: set[str] = set()  # devices sent an e-stop since the last reset: each is reset, confirmed or not
        self._next_heartbeat = 0.0
        self.client_handlers = {
            "ping": self.on_ping,
            "submit": self.on_submit,
            "submit_mesh": self.on_submit_mesh,
            "submit_graph": self.on_submit_graph,
            "confirm": self.on_confirm,
            "status": self.on_status,
            "jobs": self.on_jobs,
            "job": self.on_job,
            "pause": self.on_pause,
            "resume": self.on_resume,
            "cancel": self.on_cancel,
            "estop": self.on_estop,
            "reset": self.on_reset,
        }
        self.driver_handlers = {
            "register": self.on_register,
            "heartbeat": lambda ident, link, msg: None,
            "device_state": self.on_device_state,
            "progress": self.on_progress,
            "telemetry": self.on_telemetry,
            "job_end": self.on_job_end,
            "event": self.on_driver_event,
            "reply": self.on_driver_reply,
        }
        # Load the timing kernel now, not on the planner thread during the first submit:
        # Numba's start-up holds the GIL for a second or more, which would stall this loop.
        gcode.parse("G1 X1 F600", name="warm-up")
        for job in self.book.load():
            log.warning("job %d is interrupted: the supervisor stopped while it ran (resume with `ismctl resume %d`)", job.id, job.id)
        self.graphs.load()
        self.cell.trigger_or_refuse("online")

    # ------------------------------------------------------------------ loop
    def step(self, poller: zmq.Poller, timeout_s: float) -> None:
        if self.book.planning:
            timeout_s = min(timeout_s, 0.005)  # hand finished plans on promptly
        ready = dict(poller.poll(timeout_s * 1000))
        # Drivers first: their reports (e.g. a halt) can change what a queued client command means.
        if self.drivers.sock in ready:
            for _ in range(1000):
                self._drain_one(self.drivers, self._handle_driver)
                if not self.drivers.sock.poll(0):
                    break
        if self.clients.sock in ready:
            for _ in range(100):
                self._drain_one(self.clients, self._handle_client)
                if not self.clients.sock.poll(0):
                    break
        self.tick(time.monotonic())
        self.store.flush_audit()

    def _drain_one(self, router: bus.Router, handler) -> None:
        received = router.recv()
        if received is None:
            return
        try:
            handler(*received)
        except Exception:  # a handler bug must not take the cell down; it is counted and logged
            self.counters[f"{router.name}.handler_errors"] += 1
            log.exception("%s: handler failed on %s", router.name, received[1].t)
            router.send(received[0], self.factory.reply(received[1], Result.EXECUTION_ERROR, "internal error; see the supervisor log"))

    def tick(self, now: float) -> None:
        for job in self.book.poll_planning():
            self.publish("job.state", job=job.id, state=job.state, reason=job.record.reason)
        self.graphs.tick(now)
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.config.heartbeat_s
            for link in self.devices.values():
                if link.identity is not None:
                    self.drivers.send(link.identity, self.factory.make("heartbeat"))
            for identity in self.driver_heartbeats.lost(now):
                self._driver_lost(identity)
        for item in list(self.deferred):
            reply = item.done()
            if reply is None and now > item.deadline:
                reply = item.on_timeout()
            if reply is not None:
                self.deferred.remove(item)
                self._answer_client(item.identity, item.request, reply)
        self._dispatch()

    def shutdown(self) -> None:
        """Pause every running job (persisted) before the drivers are stopped."""
        for job in list(self.book.jobs.values()):
            if job.state == "running":
                self._pause_job(job, "shutdown")

    def close(self) -> None:
        self.book.planner.shutdown(wait=False, cancel_futures=True)
        self.clients.close()
        self.drivers.close()
        self.events.close(0)
        self.store.close()

    # ------------------------------------------------------------- publishing
    def publish(self, topic: str, **body) -> None:
        msg = self.factory.make("event", {"kind": topic, **body})
        self.events.send_multipart([topic.encode(), *wire.encode(msg)])

    # ---------------------------------------------------------------- clients
    def _handle_client(self, identity: bytes, msg: Message) -> None:
        cached = self.client_replies.get(msg.src, msg.id)
        if cached is not None:
            self.counters["clients.duplicates"] += 1
            self.clients.send(identity, cached)
            return
        if any(d.request.src == msg.src and d.request.id == msg.id for d in self.deferred):
            self.counters["clients.duplicates"] += 1  # still being answered: the reply will come once
            return
        handler = self.client_handlers.get(msg.t)
        if handler is None:
            self._answer_client(identity, msg, self.factory.reply(msg, Result.INVALID, f"{msg.t!r} is not a client command"))
            return
        reply = handler(identity, msg)
        if reply is not None:
            self._answer_client(identity, msg, reply)

    def _answer_client(self, identity: bytes, msg: Message, reply: Message) -> None:
        result = reply.body["result"]
        self.clients.send(identity, reply)
        self.counters[f"commands.{result}"] += 1
        self.client_replies.put(msg.src, msg.id, reply)
        self.store.audit(msg.src, msg.id, msg.t, result, reply.body.get("error", ""))

    def on_ping(self, identity, msg):
        return self.factory.reply(msg, Result.OK, pong=time.time())

    def _parser_for(self, device: str):
        """The dialect a job for ``device`` is parsed in (a device gone from the config: a printer's)."""
        config = self.config.devices.get(device)
        return planners.parser(config.device_class, config.motion) if config else planners.parser(planners.DEFAULT_CLASS)

    def _device_classes(self) -> dict[str, str]:
        return {name: link.config.device_class for name, link in self.devices.items()}

    def on_submit(self, identity, msg):
        return self._submit(identity, msg, lambda device: msg.body["gcode"])

    def on_submit_mesh(self, identity, msg):
        name = msg.body["name"]
        if len(msg.arrays) != 1 or msg.arrays[0].dtype != np.uint8 or msg.arrays[0].ndim != 1:
            return self.factory.reply(msg, Result.VALIDATION_ERROR, "submit_mesh carries the mesh file as one uint8 array")
        if not name.lower().endswith(MESH_SUFFIXES):
            return self.factory.reply(msg, Result.VALIDATION_ERROR, f"{name}: not a mesh file name (want {', '.join(MESH_SUFFIXES)})")
        mesh = msg.arrays[0].tobytes()
        return self._submit(identity, msg, lambda device: partial(self._slice, name, mesh, device), sliced=True)

    def _slice(self, name: str, mesh: bytes, device: str) -> str:
        """Runs on the planner thread: the cell's [slicing] profile, the device's motion limits."""
        from ..plan import fdm

        return fdm.slice_file(name, self.config.slicing, data=mesh, limits=self.config.devices[device].motion).gcode

    def _busy_reason(self) -> str:
        return "the cell is e-stopped; `ismctl reset` first" if self.cell.state == "estopped" else ""

    def _submit(self, identity, msg, source_for, sliced: bool = False):
        """A job of one program; ``source_for(device)`` gives its G-code or a function that makes it."""
        name = msg.body["name"]
        try:
            device = planners.pick_device(self._device_classes(), msg.body.get("device"), name)
        except planners.NoDevice as exc:
            return self.factory.reply(msg, Result.VALIDATION_ERROR, str(exc))
        device_class = self.config.devices[device].device_class
        if sliced and device_class != planners.SLICED_CLASS:
            return self.factory.reply(msg, Result.VALIDATION_ERROR, f"{device} is a {device_class}; meshes are sliced for a {planners.SLICED_CLASS}")
        if self._busy_reason():
            return self.factory.reply(msg, Result.BUSY, self._busy_reason())
        job = self.book.submit(name, device, source_for(device))
        self.publish("job.state", job=job.id, state=job.state)

        def planned():  # the reply waits for planning, which runs off this loop
            if job.state == "planning":
                return None
            if job.program is None:
                result = Result.VALIDATION_ERROR if job.error is not None else Result.EXECUTION_ERROR
                line = getattr(job.error, "line", None)
                return self.factory.reply(msg, result, f"{msg.body['name']}: {job.record.reason}", job=job.id, line=line)
            return self.factory.reply(msg, Result.OK, job=job.id, n_ops=len(job.program), estimated_s=job.program.estimated_s, device=device)

        def timeout():
            return self.factory.reply(msg, Result.EXECUTION_ERROR, "planning is taking too long; the job stays queued", job=job.id)

        self.deferred.append(Deferred(identity, msg, time.monotonic() + PLANNING_REPLY_S, planned, timeout))
        return None

    def status(self) -> dict:
        return {
            "cell": self.config.name,
            "state": self.cell.state,
            "devices": {name: link.summary() for name, link in self.devices.items()},
            "active_jobs": [self._summary(j) for j in self._all_jobs() if j.state in ACTIVE_STATES],
            "counters": dict(self.counters),
        }

    def on_status(self, identity, msg):
        return self.factory.reply(msg, Result.OK, **self.status())

    def _all_jobs(self) -> list[Job | Graph]:
        return sorted([*self.book.jobs.values(), *self.graphs.graphs.values()], key=lambda j: j.id)

    def _summary(self, job: Job | Graph) -> dict:
        """A job's summary; a graph's lists its steps, a graph step's job names its graph."""
        if isinstance(job, Graph):
            return self.graphs.summary(job)
        out = job.summary()
        if job.id in self.graphs.step_of:
            out["graph"], out["step"] = self.graphs.step_of[job.id]
        return out

    def on_jobs(self, identity, msg):
        return self.factory.reply(msg, Result.OK, jobs=[self._summary(j) for j in self._all_jobs()])

    def _job(self, msg) -> Job | Graph | str:
        job_id = msg.body.get("job")
        if job_id is None:
            return "name a job"
        found = None
        if isinstance(job_id, int) and not isinstance(job_id, bool):
            found = self.book.jobs.get(job_id) or self.graphs.get(job_id)
        return found or f"no job {job_id!r}"

    def on_job(self, identity, msg):
        job = self._job(msg)
        if isinstance(job, str):
            return self.factory.reply(msg, Result.VALIDATION_ERROR, job)
        return self.factory.reply(msg, Result.OK, job=self._summary(job), events=self.store.events(job.id))

    def _jobs_named_or_all(self, msg, states) -> list[Job] | str:
        """The job named (a graph: the job of its current step), or every job in ``states``."""
        if msg.body.get("job") is None:
            return [j for j in self.book.jobs.values() if j.state in states]
        job = self._job(msg)
        if isinstance(job, Graph):
            step_job = self.graphs.current_job(job)
            if job.state == "waiting":
                return f"job graph {job.id} is {job.record.reason} (`ismctl confirm {job.id}`)"
            if step_job is None or job.state in TERMINAL_JOB_STATES:
                return f"job graph {job.id} is {job.state}: no step job to act on"
            return [step_job]
        return job if isinstance(job, str) else [job]

    def on_pause(self, identity, msg):
        named = self._job(msg) if msg.body.get("job") is not None else None
        if isinstance(named, Graph) and named.state == "transferring":
            self.graphs.stop_transfers("operator pause", {named.id})
            return self.factory.reply(msg, Result.OK, jobs=[named.id])
        jobs = self._jobs_named_or_all(msg, ("running",))
        if isinstance(jobs, str):
            return self.factory.reply(msg, Result.VALIDATION_ERROR, jobs)
        transfers = self.graphs.stop_transfers("operator pause") if named is None else []
        if not jobs and not transfers:
            return self.factory.reply(msg, Result.VALIDATION_ERROR, "no running job to pause")
        for job in jobs:
            try:
                self._pause_job(job, "operator")
            except Refused as exc:
                return self.factory.reply(msg, Result.VALIDATION_ERROR, f"job {job.id}: {exc}")
        return self.factory.reply(msg, Result.OK, jobs=[j.id for j in jobs + transfers])

    def _pause_job(self, job: Job, cause: str, tell_driver: bool = True) -> None:
        self.book.transition(job, "pause", f"paused by {cause}", paused_by=cause)
        if tell_driver:
            self._tell_driver(job, "job_pause")
        if cause == "operator" and self.cell.state == "busy":
            self.cell.trigger_or_refuse("pause")
        self.publish("job.state", job=job.id, state=job.state, reason=job.record.reason)

    def on_resume(self, identity, msg):
        jobs = self._jobs_named_or_all(msg, ("paused", "interrupted"))
        if isinstance(jobs, str):
            return self.factory.reply(msg, Result.VALIDATION_ERROR, jobs)
        if not jobs:
            return self.factory.reply(msg, Result.VALIDATION_ERROR, "no paused or interrupted job to resume")
        if self.cell.state in ("estopped", "faulted"):
            return self.factory.reply(msg, Result.BUSY, f"the cell is {self.cell.state}; `ismctl reset` first")
        for job in jobs:
            link = self.devices[job.record.device]
            if job.state == "paused" and job.record.paused_by == "operator" and link.identity is not None:
                self.book.transition(job, "resume", "resumed by operator", paused_by="")
                self.drivers.send(link.identity, self.factory.make("job_resume", {"job": job.id}))
            elif job.state in ("paused", "interrupted"):
                # The driver no longer holds this job: send it again from the last confirmed op.
                self.book.transition(job, "requeue", "resumed by operator", paused_by="")
                job.auto_resume = False
            else:
                return self.factory.reply(msg, Result.VALIDATION_ERROR, f"job {job.id} is {job.state}, not paused or interrupted")
            self.publish("job.state", job=job.id, state=job.state)
        if self.cell.can("resume") and self.cell.state == "paused":
            self.cell.trigger_or_refuse("resume")
        return self.factory.reply(msg, Result.OK, jobs=[j.id for j in jobs])

    def on_cancel(self, identity, msg):
        job = self._job(msg)
        if isinstance(job, str):
            return self.factory.reply(msg, Result.VALIDATION_ERROR, job)
        if isinstance(job, Graph):
            if not job.machine.can("cancel"):
                return self.factory.reply(msg, Result.VALIDATION_ERROR, f"job graph {job.id} is {job.state}; nothing to cancel")
            for step_job, was in self.graphs.cancel(job, "cancelled by operator"):
                if was in ("running", "paused"):
                    self._tell_driver(step_job, "job_cancel")
        else:
            try:
                self.book.transition(job, "cancel", "cancelled by operator")
            except Refused as exc:
                return self.factory.reply(msg, Result.VALIDATION_ERROR, f"job {job.id}: {exc}")
            self._tell_driver(job, "job_cancel")
            self.publish("job.state", job=job.id, state=job.state)
        self._settle_cell()
        return self.factory.reply(msg, Result.OK, job=job.id)

    def _tell_driver(self, job: Job, t: str) -> None:
        link = self.devices.get(job.record.device)
        if link is not None and link.identity is not None:
            self.drivers.send(link.identity, self.factory.make(t, {"job": job.id}))

    def on_submit_graph(self, identity, msg):
        name = msg.body["name"]
        try:
            specs = read_steps(msg.body["steps"], msg.arrays, self._device_classes(), self.config.handoff.mode, self.config.handoff.transfer_s)
        except GraphError as exc:
            return self.factory.reply(msg, Result.VALIDATION_ERROR, f"{name}: {exc}")
        if self._busy_reason():
            return self.factory.reply(msg, Result.BUSY, self._busy_reason())
        graph = self.graphs.submit(name, specs, self._step_source)
        self.publish("job.state", job=graph.id, state=graph.state)

        def planned():  # every step's program planned (and stored), or one failed
            if graph.state == "planning":
                return None
            if graph.state in ("failed", "cancelled"):
                bad = next((j for j in map(self.book.jobs.get, self.graphs.step_jobs(graph)) if j.error is not None), None)
                line = getattr(bad.error, "line", None) if bad else None
                step = self.graphs.step_of[bad.id][1] if bad else None
                return self.factory.reply(msg, Result.VALIDATION_ERROR, f"{name}: {graph.record.reason}", job=graph.id, step=step, line=line)
            return self.factory.reply(msg, Result.OK, job=graph.id, steps=self.graphs.summary(graph)["steps"])

        def timeout():
            return self.factory.reply(msg, Result.EXECUTION_ERROR, "planning is taking too long; the job graph stays queued", job=graph.id)

        self.deferred.append(Deferred(identity, msg, time.monotonic() + PLANNING_REPLY_S, planned, timeout))
        return None

    def _step_source(self, spec: StepSpec):
        """A graph step's G-code, or the function that plans it on the planner thread."""
        if spec.gcode is not None:
            return spec.gcode
        if spec.cam is not None:
            return partial(self._cam, spec.label, spec.mesh, spec.cam, spec.device, f"{spec.where}.cam")
        return partial(self._slice, spec.label, spec.mesh, spec.device)

    def _cam(self, name: str, mesh: bytes, table: dict, device: str, where: str) -> str:
        """Runs on the planner thread: CAM with the mill's tooling table, tool and material unless the step names others."""
        from ..plan.cam import plan_cam_from_table
        from ..plan.mesh_io import load_mesh

        mill = self.config.devices[device]  # an empty tool (none declared) is plan_cam_from_table's default
        return plan_cam_from_table(load_mesh(name, data=mesh), table, where, tool=mill.tool, material=mill.material, tooling=mill.tooling).gcode

    def on_confirm(self, identity, msg):
        target = self._job(msg)
        if isinstance(target, Job):
            graph_id = self.graphs.step_of.get(target.id, (None,))[0]
            target = self.graphs.get(graph_id) if graph_id is not None else f"job {target.id} is not part of a job graph; there is no hand-off to confirm"
        if isinstance(target, str):
            return self.factory.reply(msg, Result.VALIDATION_ERROR, target)
        if self.cell.state in ("estopped", "faulted"):
            return self.factory.reply(msg, Result.BUSY, f"the cell is {self.cell.state}; `ismctl reset` first, then confirm the hand-off")
        refusal = self.graphs.confirm(target, time.monotonic())
        if refusal:
            return self.factory.reply(msg, Result.VALIDATION_ERROR, refusal)
        return self.factory.reply(msg, Result.OK, job=target.id, state=target.state, step=self.graphs.summary(target)["step"])

    def on_estop(self, identity, msg):
        # Drivers first: nothing (persistence, replies) happens before every device has been told.
        estop = self.factory.make("estop")
        for link in self.devices.values():
            if link.identity is not None:
                self.drivers.send(link.identity, estop)
        self.estop_started = time.monotonic()
        self.estop_told |= {name for name, link in self.devices.items() if link.identity is not None}
        self.cell.trigger_or_refuse("estop")
        for job in list(self.book.jobs.values()):
            if job.state in ("running", "paused"):
                self.book.transition(job, "interrupt", "e-stop")
                self.publish("job.state", job=job.id, state=job.state, reason="e-stop")
        self.graphs.stop_transfers("e-stop")
        self.publish("cell.state", state=self.cell.state)
        return self.factory.reply(msg, Result.OK, devices=[n for n, d in self.devices.items() if d.identity is not None])

    def _devices_not_safe(self) -> str:
        unsafe = [f"{n} is {d.state}" for n, d in self.devices.items() if d.state not in SAFE_DEVICE_STATES]
        return "devices not safe yet: " + ", ".join(unsafe) if unsafe else ""

    def _still_stopping(self) -> str:
        """Devices told to e-stop that have not reported it yet (a reset must not overtake their halt)."""
        pending = [f"{n} is {self.devices[n].state}" for n in sorted(self.estop_told) if self.devices[n].state not in ("estop", "disconnected")]
        return "e-stop not confirmed yet: " + ", ".join(pending) if pending else ""

    def on_reset(self, identity, msg):
        if self.cell.state not in ("estopped", "faulted"):
            return self.factory.reply(msg, Result.OK, state=self.cell.state, note="nothing to reset")
        devices_reset = False

        def done():
            # First every halt is confirmed, then every halted device is reset, then all must be safe.
            nonlocal devices_reset
            if not devices_reset:
                if self._still_stopping():
                    return None
                self._reset_devices()
                devices_reset = True
            if self._devices_not_safe():
                return None
            self.estop_told.clear()
            self.cell.trigger_or_refuse("reset")
            self.publish("cell.state", state=self.cell.state)
            return self.factory.reply(msg, Result.OK, state=self.cell.state)

        def timeout():
            return self.factory.reply(msg, Result.EXECUTION_ERROR, self._still_stopping() or self._devices_not_safe(), state=self.cell.state)

        self.deferred.append(Deferred(identity, msg, time.monotonic() + 30.0, done, timeout))
        return None

    def _reset_devices(self) -> None:
        for name, link in self.devices.items():
            if name in self.estop_told or link.state in ("estop", "fault"):
                if link.identity is not None:
                    self.drivers.send(link.identity, self.factory.make("device_reset"))
                self.power_cycle(name)

    # ---------------------------------------------------------------- drivers
    def _link_of(self, identity: bytes) -> DeviceLink | None:
        for link in self.devices.values():
            if link.identity == identity:
                return link
        return None

    def _handle_driver(self, identity: bytes, msg: Message) -> None:
        link = self._link_of(identity)
        if link is None and msg.t != "register":
            self.counters["drivers.unregistered"] += 1
            self.drivers.send(identity, self.factory.reply(msg, Result.INVALID, "register first"))
            return
        handler = self.driver_handlers.get(msg.t)
        if handler is None:
            self.drivers.send(identity, self.factory.reply(msg, Result.INVALID, f"{msg.t!r} is not a driver message"))
            return
        self.driver_heartbeats.seen(identity)
        handler(identity, link, msg)

    def on_register(self, identity, link, msg):
        name, device_class = msg.body["device"], msg.body["device_class"]
        target = self.devices.get(name)
        if target is None or target.config.device_class != device_class:
            self.drivers.send(identity, self.factory.reply(msg, Result.VALIDATION_ERROR, f"this cell has no {device_class} named {name!r}"))
            return
        if target.identity not in (None, identity):
            self._driver_lost(target.identity)  # a restarted driver replaces its predecessor
        target.identity = identity
        self.driver_heartbeats.seen(identity)
        reported = msg.body.get("state")
        target.machine.force(reported if reported in DEVICE.states else "connecting")
        job = self.book.active(name)
        if job is not None and job.state == "running" and reported not in ("running", "paused"):
            # A restarted driver came back before its predecessor was missed: it holds no job.
            self._pause_job(job, "driver-lost", tell_driver=False)
        log.info("driver for %s registered (pid %s)", name, msg.body.get("pid"))
        self.drivers.send(identity, self.factory.reply(msg, Result.OK, heartbeat_s=self.config.heartbeat_s))
        self.publish("device.state", device=name, state=target.state)

    def _driver_lost(self, identity: bytes) -> None:
        self.driver_heartbeats.forget(identity)
        link = self._link_of(identity)
        if link is None:
            return
        log.warning("driver for %s is lost (no heartbeat for %d intervals)", link.config.name, self.driver_heartbeats.misses)
        link.identity = None
        link.machine.force("disconnected")
        link.reason = "driver lost"
        job = self.book.active(link.config.name)
        if job is not None and job.state == "running":
            self._pause_job(job, "driver-lost", tell_driver=False)
        self.publish("device.state", device=link.config.name, state=link.state, reason=link.reason)

    def on_device_state(self, identity, link, msg):
        state, reason = msg.body["state"], str(msg.body.get("reason", ""))
        try:
            link.machine.force(state)
        except Refused as exc:
            self.drivers.send(identity, self.factory.reply(msg, Result.VALIDATION_ERROR, str(exc)))
            return
        link.reason = reason
        self.publish("device.state", device=link.config.name, state=state, reason=reason)
        if state == "fault":
            job = self.book.active(link.config.name)
            if job is not None:
                self.book.transition(job, "fail", f"{link.config.name}: {reason}")
                self.publish("job.state", job=job.id, state=job.state, reason=job.record.reason)
            if self.cell.can("fault") and self.cell.state != "estopped":
                self.cell.trigger_or_refuse("fault")
                self.publish("cell.state", state=self.cell.state, reason=reason)
        elif state == "estop":
            self._check_estop_confirmed()
        elif state == "disconnected":
            job = self.book.active(link.config.name)
            if job is not None and job.state == "running":
                self._pause_job(job, "link-lost", tell_driver=False)

    def _check_estop_confirmed(self) -> None:
        connected = [d for d in self.devices.values() if d.identity is not None]
        if self.estop_started is not None and all(d.state == "estop" for d in connected):
            latency_ms = (time.monotonic() - self.estop_started) * 1000
            self.estop_started = None
            log.warning("e-stop confirmed by every device in %.1f ms", latency_ms)
            self.publish("estop.confirmed", latency_ms=latency_ms, devices=[d.config.name for d in connected])

    def on_progress(self, identity, link, msg):
        job = self.book.jobs.get(msg.body["job"])
        if job is None or job.record.device != link.config.name:
            return
        op = msg.body["op"]
        self.book.confirm(job, op)
        program = self.book.program(job)
        if program is None:
            return
        n = len(program)
        job.progress = {
            "percent": round(100.0 * (op + 1) / n, 2) if n else 100.0,
            "layer": int(program.layer[op]) if 0 <= op < n else -1,
            "time_left_s": round(program.time_left_s(op + 1), 1),
        }
        if 0 <= op < n and not np.isnan(program.position[op, 0]):
            job.progress["pos"] = [round(float(v), 3) for v in program.position[op]]
        self.publish("job.progress", job=job.id, op=op, n_ops=n, layers=program.layer_count, **job.progress)

    def on_telemetry(self, identity, link, msg):
        link.telemetry = {k: v for k, v in msg.body.items() if k != "kind"}
        self.publish("device.telemetry", device=link.config.name, **link.telemetry)

    def on_job_end(self, identity, link, msg):
        job = self.book.jobs.get(msg.body["job"])
        if job is None or job.state in ("completed", "failed", "cancelled", "interrupted"):
            return
        state, reason = msg.body["state"], str(msg.body.get("reason", ""))
        trigger = {"completed": "complete", "failed": "fail", "cancelled": "cancel", "interrupted": "interrupt"}.get(state)
        if trigger is None:
            log.warning("driver %s reported job %d ending in unknown state %r", link.config.name, job.id, state)
            return
        if "op" in msg.body:
            self.book.confirm(job, msg.body["op"])
        try:
            self.book.transition(job, trigger, reason)
        except Refused as exc:
            log.warning("job %d: driver reported %s but %s", job.id, state, exc)
            return
        self.publish("job.state", job=job.id, state=job.state, reason=reason)
        self._settle_cell()

    def on_driver_event(self, identity, link, msg):
        body = dict(msg.body)
        kind = body.pop("kind")
        if isinstance(body.get("job"), int) and body["job"] in self.book.jobs:
            self.store.event(body["job"], kind, body)
        self.publish(f"device.{kind}", device=link.config.name, **body)

    def on_driver_reply(self, identity, link, msg):
        if msg.body["result"] != Result.OK.value:
            log.warning("driver %s refused a command: %s", link.config.name, msg.body.get("error"))

    # --------------------------------------------------------------- dispatch
    def _settle_cell(self) -> None:
        if self.cell.state in ("busy", "paused") and not any(j.state in ("running", "paused") for j in self.book.jobs.values()):
            self.cell.trigger_or_refuse("idle")
            self.publish("cell.state", state=self.cell.state)

    def _dispatch(self) -> None:
        if self.cell.state not in ("ready", "busy"):
            return
        for name, link in self.devices.items():
            if link.identity is None or link.state != "idle":
                continue
            job = self.book.active(name)
            if job is not None:
                if job.state == "paused" and job.record.paused_by in AUTO_RESUME_CAUSES:
                    self.book.transition(job, "requeue", "driver is back")
                    job.auto_resume = True
                else:
                    continue
            job = self.book.next_ready(name)
            if job is None:
                continue
            self._start(job, link)

    def _start(self, job: Job, link: DeviceLink) -> None:
        program = self.book.program(job)
        resuming = bool(job.record.line_base)
        line_base = self.book.assign_line_base(job)
        start_op = job.record.confirmed_op + 1
        self.book.transition(job, "start", "resumed" if resuming else "")
        # A long program goes in chunks, so that no message nears the size limit.
        for offset in range(0, max(len(program), 1), CHUNK_OPS):
            body, arrays = program.slice(offset, offset + CHUNK_OPS).to_wire()
            if offset == 0:
                head = {"job": job.id, "start_op": start_op, "line_base": line_base, "resume": resuming,
                        "auto": job.auto_resume, "n_ops": len(program), "program": body}
                msg = self.factory.make("job_start", head, arrays)
            else:
                msg = self.factory.make("job_chunk", {"job": job.id, "offset": offset, "program": body}, arrays)
            self.drivers.send(link.identity, msg)
        link.machine.force("running")
        if self.cell.state == "ready":
            self.cell.trigger_or_refuse("job_started")
        log.info("job %d %s on %s from op %d", job.id, "resumed" if resuming else "started", link.config.name, start_op)
        self.publish("job.state", job=job.id, state=job.state, start_op=start_op)
        self.publish("cell.state", state=self.cell.state)
