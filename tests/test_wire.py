"""The wire contract: round trips and every refusal reason of decode()."""

import msgpack
import numpy as np
import pytest

from ismctl import wire
from ismctl.program import Program, ProgramError
from ismctl.wire import Message, MessageFactory, WireError


def header(**overrides):
    h = {"v": 1, "t": "ping", "id": 7, "src": "test", "re": None, "ts": 1.0, "body": {}, "arrays": []}
    h.update(overrides)
    return msgpack.packb(h)


def test_round_trip_with_arrays():
    factory = MessageFactory("unit")
    arrays = [np.arange(10, dtype="<i4"), np.linspace(0, 1, 6, dtype="<f8").reshape(2, 3), np.zeros(0, dtype=np.uint8)]
    msg = factory.make("progress", {"job": 3, "op": 41}, arrays)
    out = wire.decode([bytes(f) for f in wire.encode(msg)])
    assert (out.t, out.body, out.id, out.src) == ("progress", {"job": 3, "op": 41}, msg.id, "unit")
    for a, b in zip(arrays, out.arrays):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def test_program_travels_as_raw_frames():
    prog = Program("printer", "p", ("G28", "G1 X1 Y2 E0.5", "M117 hello world"), [1, 3, 4], [-1, 0, 0], [1.0, 0.5, 0.0])
    body, arrays = prog.to_wire()
    msg = MessageFactory("s").make("job_start", {"job": 1, "start_op": 0, "line_base": 1, "n_ops": 3, "program": body}, arrays)
    out = wire.decode([bytes(f) for f in wire.encode(msg)])
    back = Program.from_wire(out.body["program"], out.arrays)
    assert back.commands == prog.commands
    assert np.array_equal(back.source_line, prog.source_line) and np.array_equal(back.duration_s, prog.duration_s)


def test_ids_are_unique_and_increasing():
    f = MessageFactory("x")
    ids = [f.make("ping").id for _ in range(100)]
    assert ids == sorted(set(ids))


@pytest.mark.parametrize(
    "frames, reason",
    [
        ([], "empty message"),
        ([b"\xc1\xff"], "not valid msgpack"),
        ([msgpack.packb([1, 2])], "header must be a map"),
        ([header(id="7")], "'id' must be an integer"),
        ([header(src=5)], "'src' must be a string"),
        ([header(v=2)], "unsupported protocol version 2"),
        ([header(t="launch_missiles")], "unknown message type 'launch_missiles'"),
        ([header(body=[1])], "'body' must be a map"),
        ([header(t="cancel")], "lacks required key 'job'"),
        ([header(t="cancel", body={"job": "3"})], "wrong type str"),
        ([header(t="cancel", body={"job": True})], "wrong type bool"),
        ([header(arrays=[["<i4", [2]]])], "announces 1 arrays but 0 frames"),
        ([header(arrays=[["<i4", [3]]]), b"\0" * 8], "do not hold shape"),
        ([header(arrays=[["O", [1]]]), b"\0" * 8], "bad spec"),
        ([header(arrays=[["<i4", [-1]]]), b""], "bad spec"),
        ([header(re="x")], "'re' must be an integer"),
    ],
)
def test_decode_refuses_with_reason(frames, reason):
    with pytest.raises(WireError) as err:
        wire.decode(frames)
    assert reason in err.value.reason


def test_oversized_message_refused(monkeypatch):
    monkeypatch.setattr(wire, "MAX_MESSAGE_BYTES", 1000)
    with pytest.raises(WireError, match="exceeds"):
        wire.decode([header(), b"\0" * 2000])


def test_refusal_keeps_sender_and_id_for_the_error_reply():
    with pytest.raises(WireError) as err:
        wire.decode([header(t="nope", id=99, src="ground")])
    assert (err.value.msg_id, err.value.src) == (99, "ground")


def test_reply_carries_result_and_correlation():
    f = MessageFactory("s")
    req = Message(t="ping", id=5, src="c")
    rep = f.reply(req, wire.Result.BUSY, "later")
    assert (rep.re, rep.result, rep.body["error"]) == (5, "busy", "later")


def test_program_slices_concatenate_back():
    prog = Program("printer", "p", tuple(f"G1 X{i}" for i in range(10)), range(1, 11), [0] * 10, [0.1] * 10, [[i, 0, 0] for i in range(10)])
    parts = [prog.slice(a, a + 3) for a in range(0, 10, 3)]
    back = Program.concat(parts)
    assert back.commands == prog.commands and np.array_equal(back.position, prog.position)
    assert [len(p) for p in parts] == [3, 3, 3, 1]


def test_time_left_is_the_sum_of_the_remaining_ops():
    durations = np.random.default_rng(1).random(50)
    prog = Program("printer", "p", tuple(f"G4 P{i}" for i in range(50)), range(1, 51), [0] * 50, durations)
    for op in (-1, 0, 1, 25, 49, 50, 60):
        assert np.isclose(prog.time_left_s(op), durations[max(op, 0):].sum())
    assert np.isclose(prog.estimated_s, durations.sum())


@pytest.mark.parametrize("bad", ["G1 X1\nG1 X2", "", "G1\rX2"])
def test_program_refuses_a_command_that_is_not_one_line_even_past_the_first_batch(bad):
    """Program checks its commands joined in batches of 65536: a bad one in the second batch is named too."""
    commands = ["G1 X1"] * 70_000
    commands[69_999] = bad
    n = len(commands)
    with pytest.raises(ProgramError, match="op 69999: command must be one non-empty line"):
        Program("printer", "p", tuple(commands), np.arange(1, n + 1), np.zeros(n), np.zeros(n))
