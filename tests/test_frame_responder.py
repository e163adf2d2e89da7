# amaranth: UnusedElaboratable=no
"""hw/frame_responder.py against golden.device.ReferenceDevice in Amaranth's simulator.

A fuzz corpus goes through the reference device; each of its answers becomes the responder's
input (a reply, a RESET SEQ, or a reply and the core's result), and the responder's bytes on
``tx`` must equal the reference's, under random stalls of ``tx`` and of the core (sim.streams).
The flush cases (a reply waiting for the core dropped, an answer on the wire finished) follow.
"""

from __future__ import annotations

import pytest

from golden import device
from golden import protocol as p
from hw.core import LifCore
from hw.frame_parser import Kind
from hw.frame_responder import FrameResponder
from sim import fuzz
from sim.streams import receive, send, simulate, stream_ports


@pytest.fixture(scope="module")
def setup(shipped):
    net, manifest = shipped
    core = LifCore(net, pixel_max=manifest["pixel_max"], lanes=16)
    ref = device.ReferenceDevice(net, manifest, lanes=16, clock_hz=5, baud=7,
                                 cycles_model=core.expected_cycles)
    return ref, core.o_layout


def inputs_of(answer: p.Frame, classes: int) -> tuple[str, dict | int, dict | None]:
    """What the responder is given to produce ``answer``: ``("reset", seq, None)`` or
    ``("reply", reply, result)`` (``result`` for an OK CLASSIFY only)."""
    cmd = answer.cmd & ~p.RESPONSE_FLAG
    status = answer.payload[0]
    if cmd == p.Command.RESET and status == p.Status.OK:
        return "reset", answer.seq, None
    reply = {"kind": Kind.ERROR, "cmd": cmd, "seq": answer.seq, "status": status}
    if status != p.Status.OK:
        return "reply", reply, None
    if cmd == p.Command.INFO:
        return "reply", {**reply, "kind": Kind.INFO, "status": 0}, None
    result = p.unpack_classification(answer.payload, classes)
    return "reply", {**reply, "kind": Kind.CLASSIFY, "status": 0}, {
        "label": result.label, "scores": list(result.scores),
        "spike_count": result.spike_count, "cycles": result.cycles}


def respond(ref, o_layout, items, *, tx_stall=0.0, core_idle=0.0, seed=0, count=None):
    """Feed ``items`` (from :func:`inputs_of`) one after another; returns the tx bytes."""
    dut = FrameResponder(ref.info, o_layout=o_layout)
    results = [result for _, _, result in items if result is not None]
    want_bytes = {}

    async def producer(ctx):
        for k, (what, value, _) in enumerate(items):
            stream = dut.resets if what == "reset" else dut.replies
            await send(ctx, stream, [value], idle=[k % 2], seed=seed, deadline=None)

    async def core(ctx):
        await send(ctx, dut.core_o, results, idle=core_idle, seed=seed + 1, deadline=None)

    async def tx(ctx):
        want_bytes["tx"] = await receive(ctx, dut.tx, count, stall=tx_stall, seed=seed + 2,
                                         deadline=None)

    simulate(dut, producer, core, tx, watch=stream_ports(dut))
    return bytes(want_bytes["tx"])


@pytest.mark.parametrize(("seed", "tx_stall", "core_idle"), [(1, 0.0, 0.0), (2, 0.5, 0.9)])
def test_corpus_answers_equal_the_reference(setup, seed, tx_stall, core_idle):
    ref, o_layout = setup
    chunks = fuzz.corpus(seed, 80, ref.info)
    want = b"".join(fuzz.expected(ref, chunks))
    answers = p.FrameParser().feed(want)
    items = [inputs_of(a, ref.info.classes) for a in answers]
    assert {what for what, _, _ in items} == {"reset", "reply"}
    got = respond(ref, o_layout, items, tx_stall=tx_stall, core_idle=core_idle, seed=seed,
                  count=len(want))
    assert got == want


def long_classify_reply(seq: int) -> dict:
    return {"kind": Kind.CLASSIFY, "cmd": int(p.Command.CLASSIFY), "seq": seq, "status": 0}


def test_flush_drops_a_reply_waiting_for_the_core(setup):
    """A CLASSIFY reply whose result has not come is dropped on flush (its core was reset);
    the RESET queued behind it is answered, then the next reply."""
    ref, o_layout = setup
    dut = FrameResponder(ref.info, o_layout=o_layout)
    info_reply = {"kind": Kind.INFO, "cmd": int(p.Command.INFO), "seq": 3, "status": 0}
    got = {}

    async def producer(ctx):
        ctx.set(dut.replies.valid, 1)
        ctx.set(dut.replies.payload, long_classify_reply(1))
        await ctx.tick().repeat(20)  # waiting for the core, which never answers
        ctx.set(dut.flush, 1)
        await ctx.tick()
        ctx.set(dut.flush, 0)
        ctx.set(dut.replies.valid, 0)  # the queue was flushed with it
        await send(ctx, dut.resets, [2])
        await send(ctx, dut.replies, [info_reply])

    async def tx(ctx):
        got["tx"] = await receive(ctx, dut.tx, 9 + 8 + len(p.pack_info(ref.info)), deadline=2000)

    simulate(dut, producer, tx, watch={"tx": dut.tx, "resets": dut.resets})
    want = ref.receive(p.encode_frame(p.Command.RESET, 2) + p.encode_frame(p.Command.INFO, 3))
    assert bytes(got["tx"]) == want


def test_flush_finishes_the_answer_on_the_wire(setup):
    ref, o_layout = setup
    dut = FrameResponder(ref.info, o_layout=o_layout)
    reply = {"kind": Kind.INFO, "cmd": int(p.Command.INFO), "seq": 4, "status": 0}
    got = {}

    async def producer(ctx):
        await send(ctx, dut.replies, [reply])
        await ctx.tick().repeat(10)  # mid-answer
        ctx.set(dut.flush, 1)
        await ctx.tick()
        ctx.set(dut.flush, 0)
        await send(ctx, dut.resets, [5])

    async def tx(ctx):
        got["tx"] = await receive(ctx, dut.tx, 9 + 8 + len(p.pack_info(ref.info)), stall=0.3,
                                  seed=3, deadline=2000)

    simulate(dut, producer, tx, watch={"tx": dut.tx, "replies": dut.replies})
    want = ref.receive(p.encode_frame(p.Command.INFO, 4) + p.encode_frame(p.Command.RESET, 5))
    assert bytes(got["tx"]) == want
