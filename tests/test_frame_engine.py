# amaranth: UnusedElaboratable=no
"""hw/frame_engine.py against golden.device.ReferenceDevice, byte for byte, in Amaranth's simulator.

The core is played by the testbench (:class:`CoreModel`): it takes the pixels the engine
streams, answers with ``golden.model`` after a chosen delay and checks the stream rules. So
these tests are about the engine alone and run in seconds; the real core behind the real UART
is tested on the virtual board (tests/test_board.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import device, image, model
from golden import protocol as p
from hw.core import LifCore
from hw.frame_engine import FrameEngine
from sim import fuzz

SHIPPED = Path(__file__).resolve().parent.parent / "firmware" / "digits"
LANES = 16
TIMEOUT = 40  # idle timeout, cycles


@pytest.fixture(scope="module")
def shipped():
    net, manifest = image.load(SHIPPED)
    core = LifCore(net, pixel_max=manifest["pixel_max"], lanes=LANES)
    return net, manifest, core


def info_of(shipped) -> p.Info:
    net, manifest, _ = shipped
    return device.device_info(net, manifest, lanes=LANES, clock_hz=12_345_678, baud=3_000_000)


def reference(shipped) -> device.ReferenceDevice:
    net, manifest, core = shipped
    return device.ReferenceDevice(net, manifest, lanes=LANES, clock_hz=12_345_678, baud=3_000_000,
                             cycles_model=core.expected_cycles)


@dataclass
class Bench:
    """Knobs of one simulation run and what it observed."""

    rx_gap: tuple[int, int] = (0, 0)     # cycles between received bytes, uniform range
    tx_stall: float = 0.0                # probability that tx.ready is low in a cycle
    core_ready: float = 1.0              # probability that core_i.ready is high
    core_latency: tuple[int, int] = (1, 30)
    seed: int = 0
    sent: list[bytes] = field(default_factory=list)     # per chunk: bytes out of the engine
    reply_starts: list[int] = field(default_factory=list)  # cycle of each reply's first byte
    errors: int = 0                       # error pulses
    last_label: int = -1


def run(shipped, chunks: list[fuzz.Chunk], bench: Bench, *, settle: int = 20_000) -> Bench:
    """Send ``chunks`` (waiting for the engine to go quiet after each); fills ``bench``."""
    net, _, core = shipped
    dut = FrameEngine(info_of(shipped), i_layout=core.i_layout, o_layout=core.o_layout,
                      idle_timeout_cycles=TIMEOUT)
    rng = np.random.default_rng(bench.seed)
    out = bytearray()
    state = {"cycle": 0, "done": False}

    async def feeder(ctx):
        for chunk in chunks:
            start = len(out)
            for byte in chunk.data:
                for _ in range(int(rng.integers(bench.rx_gap[0], bench.rx_gap[1] + 1))):
                    await ctx.tick()
                ctx.set(dut.rx.valid, 1)
                ctx.set(dut.rx.payload, byte)
                await ctx.tick()
                ctx.set(dut.rx.valid, 0)
            if chunk.pause:
                for _ in range(TIMEOUT + 2):
                    await ctx.tick()
            quiet = 0
            for _ in range(settle):
                _, _, busy = await ctx.tick().sample(dut.busy)
                quiet = quiet + 1 if not busy else 0
                if quiet == 3:
                    break
            else:
                raise AssertionError(f"the engine stays busy after chunk {chunk.kind!r}")
            bench.sent.append(bytes(out[start:]))
        state["done"] = True

    async def collector(ctx):
        reply_at = 0  # where the next reply starts in `out`
        async for _, _, valid, ready, payload, error, label in ctx.tick().sample(
                dut.tx.valid, dut.tx.ready, dut.tx.payload, dut.error, dut.last_label):
            state["cycle"] += 1
            bench.errors += error
            bench.last_label = label
            if valid and ready:
                if len(out) == reply_at:
                    bench.reply_starts.append(state["cycle"])
                out.append(payload)
                if len(out) == reply_at + p.HEADER_BYTES:
                    length = int.from_bytes(out[reply_at + 4:reply_at + 6], "little")
                    reply_at += p.HEADER_BYTES + length + p.CRC_BYTES
            ctx.set(dut.tx.ready, int(rng.random() >= bench.tx_stall))

    async def core_model(ctx):
        cache = {}
        while True:
            pixels, params = [], set()
            while len(pixels) < net.inputs:
                ctx.set(dut.core_i.ready, int(rng.random() < bench.core_ready))
                _, _, valid, ready, payload = await ctx.tick().sample(
                    dut.core_i.valid, dut.core_i.ready, dut.core_i.payload)
                if valid and ready:
                    pixels.append(int(payload.pixel))
                    params.add((int(payload.steps), int(payload.mode)))
            ctx.set(dut.core_i.ready, 0)
            assert len(params) == 1, f"steps/mode changed within an image: {params}"
            ((steps, mode),) = params
            key = (tuple(pixels), steps, mode)
            if key not in cache:
                x = np.array(pixels, dtype=np.int64)
                res = model.run(x[None], net, steps, mode)
                cache[key] = (int(res.classes[-1, 0]), res.scores[-1, 0].tolist(),
                              int(res.spike_count[0]), core.expected_cycles(x, steps, mode))
            label, scores, spikes, cycles = cache[key]
            for _ in range(int(rng.integers(*bench.core_latency))):
                await ctx.tick()
            ctx.set(dut.core_o.valid, 1)
            ctx.set(dut.core_o.payload.label, label)
            ctx.set(dut.core_o.payload.spike_count, spikes)
            ctx.set(dut.core_o.payload.cycles, cycles)
            for k, score in enumerate(scores):
                ctx.set(dut.core_o.payload.scores[k], score)
            await ctx.tick().until(dut.core_o.ready)
            ctx.set(dut.core_o.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feeder)
    sim.add_testbench(collector, background=True)
    sim.add_testbench(core_model, background=True)
    sim.run()
    return bench


def check_equal(got: list[bytes], want: list[bytes], chunks: list[fuzz.Chunk]):
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, (f"chunk {k} ({chunks[k].kind}): sent {chunks[k].data.hex()}\n"
                        f"engine    {p.FrameParser().feed(g)}\nreference {p.FrameParser().feed(w)}")


@pytest.mark.parametrize("bench", [
    Bench(seed=1),
    Bench(seed=2, rx_gap=(0, 8), tx_stall=0.5, core_ready=0.5, core_latency=(1, 200)),
], ids=["back-to-back", "gaps-and-stalls"])
def test_fuzz_corpus_equals_reference(shipped, bench):
    chunks = fuzz.corpus(bench.seed, 150 if bench.seed == 1 else 60, info_of(shipped))
    want = fuzz.expected(reference(shipped), chunks)
    run(shipped, chunks, bench)
    check_equal(bench.sent, want, chunks)
    statuses = [r.payload[0] for reply in want for r in p.FrameParser().feed(reply)]
    assert bench.errors == sum(s != p.Status.OK for s in statuses)
    # Every kind of answer occurred, so the comparison covered each path.
    assert set(statuses) == set(p.Status) - {p.Status.BUSY}
    last_ok = [r for reply in want for r in p.FrameParser().feed(reply)
               if r.cmd == p.Command.CLASSIFY | 0x80 and r.payload[0] == p.Status.OK][-1]
    assert bench.last_label == p.unpack_classification(last_ok.payload, 10).label


@pytest.mark.parametrize(("gap", "status"), [(TIMEOUT - 1, p.Status.OK),
                                              (TIMEOUT, p.Status.TIMEOUT)])
def test_idle_timeout_boundary(shipped, gap, status):
    """A byte may come ``TIMEOUT`` cycles after the previous one, not one cycle later."""
    got = _send_with_gap(shipped, p.encode_frame(p.Command.INFO, 7), 4, gap)
    (reply,) = p.FrameParser().feed(got)
    assert (reply.seq, reply.payload[0]) == (7, status)


def _send_with_gap(shipped, frame: bytes, at: int, gap: int) -> bytes:
    """Send ``frame`` with ``gap`` idle cycles before byte ``at``; returns the engine's bytes."""
    net, _, core = shipped
    dut = FrameEngine(info_of(shipped), i_layout=core.i_layout, o_layout=core.o_layout,
                      idle_timeout_cycles=TIMEOUT)
    out = bytearray()

    async def feeder(ctx):
        ctx.set(dut.tx.ready, 1)
        for k, byte in enumerate(frame):
            if k == at:
                for _ in range(gap):
                    await ctx.tick()
            ctx.set(dut.rx.valid, 1)
            ctx.set(dut.rx.payload, byte)
            await ctx.tick()
            ctx.set(dut.rx.valid, 0)
        for _ in range(200):
            _, _, valid, payload = await ctx.tick().sample(dut.tx.valid, dut.tx.payload)
            if valid:
                out.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feeder)
    sim.run()
    return bytes(out)


def classify_frames(shipped, count: int, seq0: int = 0) -> list[bytes]:
    net, manifest, _ = shipped
    rng = np.random.default_rng(seq0)
    return [p.encode_frame(p.Command.CLASSIFY, seq0 + k, p.pack_classify(
        rng.integers(0, manifest["pixel_max"] + 1, net.inputs), 2, 0)) for k in range(count)]


def test_next_images_arrive_while_the_core_works(shipped):
    """MAX_IN_FLIGHT requests sent back to back: all are answered, and each answer follows
    the previous one by the core's time, not by another frame time."""
    latency = 3000
    frames = classify_frames(shipped, p.MAX_IN_FLIGHT)
    bench = run(shipped, [fuzz.Chunk(b"".join(frames), False, "burst")],
                Bench(rx_gap=(9, 9), core_latency=(latency, latency + 1)))
    want = reference(shipped).receive(b"".join(frames))
    assert bench.sent == [want]
    frame_cycles = 10 * len(frames[0])
    assert len(bench.reply_starts) == p.MAX_IN_FLIGHT
    for first, second in zip(bench.reply_starts, bench.reply_starts[1:], strict=False):
        assert second - first < latency + 100 < latency + frame_cycles


def test_busy_when_every_slot_is_taken_then_recovers(shipped):
    frames = classify_frames(shipped, p.MAX_IN_FLIGHT + 1)
    after = p.encode_frame(p.Command.INFO, 99)
    bench = run(shipped, [fuzz.Chunk(b"".join(frames), False, "flood"),
                          fuzz.Chunk(after, False, "info")],
                Bench(core_latency=(2000, 2001)))
    replies = p.FrameParser().feed(bench.sent[0])
    ref = p.FrameParser().feed(reference(shipped).receive(b"".join(frames)))
    # The last request finds both slots full; it is answered BUSY, in its turn.
    assert [r.seq for r in replies] == [r.seq for r in ref]
    assert replies[:-1] == ref[:-1]
    assert replies[-1].payload == bytes([p.Status.BUSY])
    assert bench.sent[1] == reference(shipped).receive(after)


def test_reply_queue_overflow_drops_whole_replies_then_recovers(shipped):
    """INFO requests arrive faster than their 60-byte answers leave: while its queue is full
    the engine drops whole requests; what it answers is correct, and it serves the next one."""
    flood = b"".join(p.encode_frame(p.Command.INFO, k) for k in range(40))
    after = p.encode_frame(p.Command.INFO, 200)
    bench = run(shipped, [fuzz.Chunk(flood, False, "flood"), fuzz.Chunk(after, False, "info")],
                Bench(tx_stall=0.0))
    replies = p.FrameParser().feed(bench.sent[0])
    assert p.REPLY_QUEUE <= len(replies) < 40
    seqs = [r.seq for r in replies]
    assert seqs == sorted(set(seqs)) and seqs[:p.REPLY_QUEUE] == list(range(p.REPLY_QUEUE))
    want = {r.seq: r for r in p.FrameParser().feed(reference(shipped).receive(flood))}
    assert replies == [want[s] for s in seqs]
    assert bench.sent[1] == reference(shipped).receive(after)
