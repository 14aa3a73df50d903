"""Wire fuzzing: random and truncated frames at every socket; every process stays up and keeps working."""

import random

import msgpack
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from ismctl import bus, wire
from ismctl.wire import MessageFactory, WireError


def valid_frames(t="ping", body=None):
    return [bytes(f) for f in wire.encode(MessageFactory("fuzz").make(t, body or {}))]


def garbage(rng: random.Random) -> list[bytes]:
    """One hostile message: random bytes, truncations, type confusion, lying array specs."""
    header = valid_frames("cancel", {"job": 1})[0]
    choices = [
        lambda: [rng.randbytes(rng.randint(0, 64))],
        lambda: [header[: rng.randint(0, len(header) - 1)]],
        lambda: [header, rng.randbytes(rng.randint(1, 32))],
        lambda: [msgpack.packb({"v": 1, "t": "submit", "id": rng.randint(0, 9), "src": "f", "body": {"name": 3, "gcode": None}})],
        lambda: [msgpack.packb({"v": 1, "t": "ping", "id": 1, "src": "f", "arrays": [["<f8", [10**9]]]}), b"x"],
        lambda: [msgpack.packb({"v": rng.randint(2, 99), "t": "ping", "id": 1, "src": "f"})],
        lambda: [msgpack.packb([[[[[]]]]] * 10)],
        lambda: [b"\xdd\xff\xff\xff\xff"],  # array header announcing 4 G elements
        lambda: [header, b"", b"", b""],
    ]
    return rng.choice(choices)()


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=200), min_size=0, max_size=4))
def test_decode_only_ever_raises_wire_error(frames):
    try:
        wire.decode(frames)
    except WireError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 400))
def test_decode_of_any_truncation_is_refused_cleanly(cut):
    frames = valid_frames("progress", {"job": 1, "op": 2})
    try:
        wire.decode([frames[0][:cut]])
    except WireError:
        pass


def fuzz_router(endpoint: str, rng: random.Random, count: int) -> int:
    """Send hostile messages to a ROUTER; return how many 'invalid' replies came back."""
    ctx = zmq.Context.instance()
    sock = bus.socket(ctx, zmq.DEALER)
    sock.connect(endpoint)
    invalid = 0
    for _ in range(count):
        frames = garbage(rng)
        sock.send_multipart(frames)
        if sock.poll(2000):
            reply = wire.decode(sock.recv_multipart())
            invalid += reply.body.get("result") == "invalid"
    sock.close(0)
    return invalid


def test_supervisor_survives_fuzzing_on_both_routers(make_cell):
    cell = make_cell().start()
    rng = random.Random(1234)
    invalid_clients = fuzz_router(cell.config.clients, rng, 300)
    fuzz_router(cell.config.drivers, rng, 300)
    assert invalid_clients >= 250  # nearly every hostile client message is answered "invalid"
    assert cell.serve.poll() is None
    status = cell.call("status")
    assert status["counters"]["clients.rejected"] >= 250
    assert status["counters"]["drivers.rejected"] + status["counters"].get("drivers.unregistered", 0) >= 250
    assert cell.call("ping")["result"] == "ok"


def test_retried_command_runs_once(make_cell, tmp_path):
    """Idempotency: the same (sender, id) sent three times submits one job and gets one answer thrice."""
    cell = make_cell().start()
    ctx = zmq.Context.instance()
    sock = bus.socket(ctx, zmq.DEALER)
    sock.connect(cell.config.clients)
    frames = valid_frames("submit", {"name": "once.gcode", "gcode": "G4 S1\n"})
    replies = []
    for _ in range(3):
        sock.send_multipart(frames)
        assert sock.poll(5000)
        replies.append(wire.decode(sock.recv_multipart()).body)
    sock.close(0)
    assert replies[0] == replies[1] == replies[2] and replies[0]["result"] == "ok"
    assert [j["name"] for j in cell.call("jobs")["jobs"]] == ["once.gcode"]
    assert cell.call("status")["counters"]["clients.duplicates"] == 2


def test_client_ignores_garbage_replies_and_times_out_cleanly():
    ctx = zmq.Context.instance()
    server = bus.socket(ctx, zmq.ROUTER)
    port = server.bind_to_random_port("tcp://127.0.0.1")
    client = bus.Client(f"tcp://127.0.0.1:{port}", "fuzz-client", ctx)
    import threading

    def answer_garbage():
        rng = random.Random(5)
        for _ in range(3):
            if server.poll(3000):
                ident, *_ = server.recv_multipart()
                server.send_multipart([ident, *garbage(rng)])

    t = threading.Thread(target=answer_garbage)
    t.start()
    try:
        client.request("ping", timeout_s=1.5, attempts=3)
        raise AssertionError("a garbage reply was accepted")
    except bus.RequestTimeout as exc:
        assert "no reply to 'ping'" in str(exc)
    t.join()
    client.close()
    server.close(0)


def test_event_subscriber_skips_garbage_publications():
    from ismctl.client import EventStream

    ctx = zmq.Context.instance()
    pub = bus.socket(ctx, zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    events = EventStream(ctx, f"tcp://127.0.0.1:{port}", ("job.",))
    import time

    time.sleep(0.2)  # let the subscription reach the publisher
    rng = random.Random(3)
    for _ in range(50):
        pub.send_multipart([b"job.progress", *garbage(rng)])
    pub.send_multipart([b"job.progress", *valid_frames("event", {"kind": "job.progress", "job": 1})])
    seen = []
    for _ in range(60):
        item = events.next(timeout_s=1.0)
        if item is not None:
            seen.append(item)
            break
    assert seen == [("job.progress", {"kind": "job.progress", "job": 1})]
    events.close()
    pub.close(0)
