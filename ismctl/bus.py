"""ZeroMQ sockets, request/reply with retries, duplicate suppression and heartbeats.

The supervisor binds; clients and drivers connect with DEALER sockets.  A
request is retried with the *same* id, and the receiver answers a repeated
(sender, id) from its reply cache instead of executing it again, so a lossy link
can never run a command twice.
"""

from __future__ import annotations

import collections
import logging
import time

import zmq

from . import wire
from .wire import Message, MessageFactory, WireError

log = logging.getLogger(__name__)


def socket(ctx: zmq.Context, kind: int, *, linger_ms: int = 0) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, linger_ms)
    # zmq drops a peer that sends a single frame above this size, before it is
    # buffered; decode() then checks the total of all frames.
    sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_MESSAGE_BYTES)
    return sock


class Counters(collections.Counter):
    """Named event counts reported in status replies (received, rejected, ...)."""


class ReplyCache:
    """Remembers the reply sent for each (sender, id) so that retries are answered, not re-run."""

    def __init__(self, size: int = 4096):
        self._replies: collections.OrderedDict[tuple[str, int], Message] = collections.OrderedDict()
        self._size = size

    def get(self, src: str, msg_id: int) -> Message | None:
        return self._replies.get((src, msg_id))

    def put(self, src: str, msg_id: int, reply: Message) -> None:
        self._replies[(src, msg_id)] = reply
        while len(self._replies) > self._size:
            self._replies.popitem(last=False)


class Heartbeats:
    """Tracks when each peer was last heard from; a peer silent for ``misses`` intervals is lost."""

    def __init__(self, interval_s: float, misses: int = 3):
        self.interval_s = interval_s
        self.misses = misses
        self._seen: dict[bytes | str, float] = {}

    def seen(self, peer, now: float | None = None) -> None:
        self._seen[peer] = time.monotonic() if now is None else now

    def forget(self, peer) -> None:
        self._seen.pop(peer, None)

    def lost(self, now: float | None = None) -> list:
        now = time.monotonic() if now is None else now
        limit = self.interval_s * self.misses
        return [p for p, t in self._seen.items() if now - t > limit]


class Router:
    """A bound ROUTER socket that yields decoded messages or the reason they were refused."""

    def __init__(self, ctx: zmq.Context, endpoint: str, factory: MessageFactory, counters: Counters, name: str):
        self.sock = socket(ctx, zmq.ROUTER)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.sock.bind(endpoint)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.factory = factory
        self.counters = counters
        self.name = name

    def recv(self) -> tuple[bytes, Message] | None:
        """One message, or None when it was refused (an error reply has then been sent)."""
        frames = self.sock.recv_multipart(copy=True)
        self.counters[f"{self.name}.received"] += 1
        if len(frames) < 2:
            self.counters[f"{self.name}.rejected"] += 1
            return None
        identity, payload = frames[0], frames[1:]
        try:
            return identity, wire.decode(payload)
        except WireError as exc:
            self.counters[f"{self.name}.rejected"] += 1
            log.warning("%s: refused a message from %r: %s", self.name, identity, exc.reason)
            self.send(identity, self.factory.reply(None, wire.Result.INVALID, exc.reason, refused_id=exc.msg_id))
            return None

    def send(self, identity: bytes, msg: Message) -> None:
        try:
            self.sock.send_multipart([identity, *wire.encode(msg)], flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self.counters[f"{self.name}.send_dropped"] += 1

    def close(self) -> None:
        self.sock.close(0)


class RequestTimeout(TimeoutError):
    pass


class Client:
    """A DEALER that sends requests and waits for the matching reply, retrying with the same id."""

    def __init__(self, endpoint: str, name: str, ctx: zmq.Context | None = None):
        self.ctx = ctx or zmq.Context.instance()
        self.endpoint = endpoint
        self.factory = MessageFactory(name)
        self.sock = self._connect()

    def _connect(self) -> zmq.Socket:
        sock = socket(self.ctx, zmq.DEALER)
        sock.connect(self.endpoint)
        return sock

    def request(self, t: str, body: dict | None = None, arrays=(), *, timeout_s: float = 5.0, attempts: int = 3) -> Message:
        msg = self.factory.make(t, body, arrays)
        frames = wire.encode(msg)
        for _ in range(attempts):
            self.sock.send_multipart(frames, copy=False)
            deadline = time.monotonic() + timeout_s / attempts
            while (left := deadline - time.monotonic()) > 0:
                if not self.sock.poll(left * 1000):
                    break
                try:
                    reply = wire.decode(self.sock.recv_multipart())
                except WireError as exc:
                    log.warning("ignoring a malformed reply: %s", exc.reason)
                    continue
                if reply.re == msg.id:
                    return reply
        raise RequestTimeout(f"no reply to {t!r} from {self.endpoint} within {timeout_s:g} s")

    def close(self) -> None:
        self.sock.close(0)
