"""State machines for the cell, each device and each job (transitions library).

The tables below are the single source of truth: the supervisor and drivers
build their machines from them, and ``python -m ismctl.machines`` writes the
diagrams in docs/state-machines.md from the same tables.  Interlocks are
transition conditions; a refused transition carries a human-readable reason.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from transitions import Machine, MachineError

ANY = "*"


@dataclass(frozen=True)
class Table:
    name: str
    states: tuple[str, ...]
    initial: str
    transitions: tuple[tuple[str, str | tuple[str, ...], str], ...]  # (trigger, source(s), dest)
    doc: str


CELL = Table(
    "cell",
    ("offline", "ready", "busy", "paused", "faulted", "estopped"),
    "offline",
    (
        ("online", "offline", "ready"),
        ("job_started", ("ready", "busy"), "busy"),
        ("idle", ("busy", "paused", "ready"), "ready"),
        ("pause", "busy", "paused"),
        ("resume", "paused", "busy"),
        ("fault", ("ready", "busy", "paused"), "faulted"),
        ("estop", ANY, "estopped"),
        ("reset", ("faulted", "estopped"), "ready"),
    ),
    "E-stop latches: only an explicit reset leaves `estopped`, and only when every device is safe.",
)

DEVICE = Table(
    "device",
    ("disconnected", "connecting", "idle", "homing", "heating", "running", "paused", "fault", "estop"),
    "disconnected",
    (
        ("connect", "disconnected", "connecting"),
        ("connected", "connecting", "idle"),
        ("home", "idle", "homing"),
        ("heat", ("idle", "running"), "heating"),
        ("run", ("idle", "homing", "heating", "paused"), "running"),
        ("pause", ("running", "homing", "heating"), "paused"),
        ("done", ("running", "homing", "heating", "paused"), "idle"),
        ("fault", ("connecting", "idle", "homing", "heating", "running", "paused"), "fault"),
        ("estop", ANY, "estop"),
        ("lost", ANY, "disconnected"),
        ("reset", ("fault", "estop"), "connecting"),
    ),
    "Mirrors the driver's lifecycle; the supervisor takes the state each driver reports.",
)

JOB = Table(
    "job",
    ("queued", "planning", "held", "ready", "running", "paused", "interrupted", "completed", "failed", "cancelled"),
    "queued",
    (
        ("plan", "queued", "planning"),
        ("planned", "planning", "ready"),
        ("hold", "planning", "held"),
        ("release", "held", "ready"),
        ("start", "ready", "running"),
        ("pause", "running", "paused"),
        ("resume", "paused", "running"),
        ("interrupt", ("running", "paused"), "interrupted"),
        ("requeue", ("interrupted", "paused"), "ready"),
        ("complete", "running", "completed"),
        ("fail", ("queued", "planning", "held", "ready", "running", "paused", "interrupted"), "failed"),
        ("cancel", ("queued", "planning", "held", "ready", "running", "paused", "interrupted"), "cancelled"),
    ),
    "A job is durable before it is acknowledged; `interrupted` means the supervisor stopped while it ran "
    "(or an e-stop halted it); `held` is a planned step of a job graph waiting for the steps before it.",
)

GRAPH = Table(
    "graph",
    ("planning", "running", "transferring", "waiting", "completed", "failed", "cancelled"),
    "planning",
    (
        ("planned", "planning", "running"),
        ("transfer", "running", "transferring"),
        ("wait_operator", ("running", "transferring"), "waiting"),
        ("transferred", "transferring", "running"),
        ("confirm", "waiting", "running"),
        ("complete", "running", "completed"),
        ("fail", ("planning", "running", "transferring", "waiting"), "failed"),
        ("cancel", ("planning", "running", "transferring", "waiting"), "cancelled"),
    ),
    "A job graph runs its steps in order (docs/jobs.md): `running` while a step's job is queued or runs, "
    "`transferring` during an automatic hand-off, `waiting` until an operator confirms a hand-off "
    "(also where an e-stopped or paused transfer ends up).",
)

TERMINAL_JOB_STATES = frozenset({"completed", "failed", "cancelled"})


class Refused(Exception):
    """A transition that is not allowed now; ``str()`` says why."""


class StateModel:
    """A model object with a state machine from a table.

    ``trigger_or_refuse`` raises Refused with a reason instead of transitions'
    MachineError, and conditions registered with :meth:`interlock` add their
    own reason when they block a transition.
    """

    def __init__(self, table: Table, initial: str | None = None):
        self.table = table
        self._interlocks: dict[str, list] = {}
        self._refusal = ""
        self.machine = Machine(
            model=self,
            states=list(table.states),
            initial=initial or table.initial,
            auto_transitions=False,
            ignore_invalid_triggers=False,
        )
        for trigger, source, dest in table.transitions:
            sources = source if isinstance(source, (tuple, list)) else [source]
            self.machine.add_transition(trigger, list(sources) if source != ANY else ANY, dest, conditions=[self._make_guard(trigger)])

    def _make_guard(self, trigger: str):
        def guard(*_args, **_kwargs) -> bool:
            for check in self._interlocks.get(trigger, ()):
                reason = check()
                if reason:
                    self._refusal = reason
                    return False
            return True

        return guard

    def interlock(self, trigger: str, check) -> None:
        """Register ``check() -> reason or ''``; a non-empty reason blocks ``trigger``."""
        self._interlocks.setdefault(trigger, []).append(check)

    def can(self, trigger: str) -> bool:
        return any(trigger == t and (s == ANY or self.state in (s if isinstance(s, tuple) else (s,))) for t, s, _ in self.table.transitions)

    def trigger_or_refuse(self, trigger: str) -> None:
        self._refusal = ""
        try:
            moved = self.trigger(trigger)
        except MachineError:
            raise Refused(f"{self.table.name} cannot {trigger} while {self.state}") from None
        if not moved:
            raise Refused(self._refusal or f"{self.table.name} cannot {trigger} now")

    def force(self, state: str) -> None:
        """Adopt a state reported by its authority (a driver for its device)."""
        if state not in self.table.states:
            raise Refused(f"unknown {self.table.name} state {state!r}")
        self.machine.set_state(state, model=self)


def mermaid(table: Table) -> str:
    lines = ["```mermaid", "stateDiagram-v2", f"    [*] --> {table.initial}"]
    for trigger, source, dest in table.transitions:
        sources = table.states if source == ANY else (source if isinstance(source, tuple) else (source,))
        for s in sources:
            if s != dest or source != ANY:
                lines.append(f"    {s} --> {dest}: {trigger}")
    lines.append("```")
    return "\n".join(lines)


def write_diagrams(out=sys.stdout) -> None:
    out.write("# State machines\n\nGenerated by `python -m ismctl.machines > docs/state-machines.md` from the tables in `ismctl/machines.py`.\n")
    for table in (CELL, DEVICE, JOB, GRAPH):
        out.write(f"\n## {table.name}\n\n{table.doc}\n\n{mermaid(table)}\n")


if __name__ == "__main__":
    write_diagrams()
