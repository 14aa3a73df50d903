"""Client side of the supervisor's endpoints: commands (request/reply) and the event stream."""

from __future__ import annotations

import getpass
import os
import socket as pysocket
import time

import zmq

from . import bus, wire
from .config import CellConfig


class CommandFailed(RuntimeError):
    """The supervisor answered with a result other than ok."""

    def __init__(self, reply: wire.Message):
        self.result = reply.body.get("result")
        self.reply = reply
        super().__init__(f"{self.result}: {reply.body.get('error', '')}")


class SupervisorUnreachable(RuntimeError):
    pass


class CellClient:
    def __init__(self, config: CellConfig, timeout_s: float = 5.0):
        self.config = config
        self.timeout_s = timeout_s
        self.ctx = zmq.Context.instance()
        self.bus = bus.Client(config.clients, f"cli:{getpass.getuser()}@{pysocket.gethostname()}:{os.getpid()}", self.ctx)

    def call(self, t: str, arrays=(), **body) -> dict:
        try:
            reply = self.bus.request(t, body, arrays, timeout_s=self.timeout_s)
        except bus.RequestTimeout:
            raise SupervisorUnreachable(
                f"no supervisor answered at {self.config.clients} within {self.timeout_s:g} s; is `ismctl serve --config {self.config.path}` running?"
            ) from None
        if reply.body.get("result") != wire.Result.OK.value:
            raise CommandFailed(reply)
        return reply.body

    def wait_until_up(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.bus.request("ping", timeout_s=0.5, attempts=1)
                return
            except bus.RequestTimeout:
                if time.monotonic() > deadline:
                    raise SupervisorUnreachable(f"the supervisor at {self.config.clients} did not come up within {timeout_s:g} s") from None

    def events(self, topics: tuple[str, ...] = ("",)) -> "EventStream":
        return EventStream(self.ctx, self.config.events, topics)

    def close(self) -> None:
        self.bus.close()


class EventStream:
    """Subscribes to the supervisor's PUB socket; yields (topic, body) pairs."""

    def __init__(self, ctx: zmq.Context, endpoint: str, topics: tuple[str, ...]):
        self.sock = bus.socket(ctx, zmq.SUB)
        for topic in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self.sock.connect(endpoint)

    def next(self, timeout_s: float) -> tuple[str, dict] | None:
        if not self.sock.poll(timeout_s * 1000):
            return None
        topic, *frames = self.sock.recv_multipart()
        try:
            msg = wire.decode(frames)
        except wire.WireError:
            return None
        return topic.decode(errors="replace"), msg.body

    def close(self) -> None:
        self.sock.close(0)
