"""`ismctl serve`: the supervisor loop plus its child processes, with a clean shutdown on SIGINT/SIGTERM."""

from __future__ import annotations

import fcntl
import logging
import signal
import sys
import time

import zmq

from ..config import CellConfig
from ..logs import setup_logging
from .core import Supervisor
from .processes import ProcessManager

SWITCH_INTERVAL_S = 0.0005  # see serve()

log = logging.getLogger("ismctl.serve")


class AlreadyServing(RuntimeError):
    pass


def _lock(config: CellConfig):
    config.state_dir.mkdir(parents=True, exist_ok=True)
    handle = open(config.state_dir / "serve.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise AlreadyServing(f"another `ismctl serve` already runs this cell (state directory {config.state_dir})") from None
    return handle


def serve(config: CellConfig, verbose: bool = False) -> int:
    lock = _lock(config)
    setup_logging(config.log_path, verbose)
    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signal.Signals(signum).name

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # The planner thread (slicing, parsing) holds the GIL for long stretches; the loop, which relays
    # e-stops, asks for it back after this long instead of Python's 5 ms.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    processes = ProcessManager(config)
    supervisor = Supervisor(config, power_cycle=processes.power_cycle)
    log.info("cell %s serving: clients %s, drivers %s, events %s", config.name, config.clients, config.drivers, config.events)
    processes.start_all()
    poller = zmq.Poller()
    poller.register(supervisor.clients.sock, zmq.POLLIN)
    poller.register(supervisor.drivers.sock, zmq.POLLIN)
    try:
        while stop["signal"] is None:
            supervisor.step(poller, config.heartbeat_s / 5)
            processes.tick(time.monotonic())
        log.info("%s: shutting down (jobs paused and kept, heaters off, children stopped)", stop["signal"])
        supervisor.shutdown()
        processes.stop_all()
    finally:
        supervisor.close()
        lock.close()
    return 0
