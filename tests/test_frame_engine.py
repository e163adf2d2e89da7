# amaranth: UnusedElaboratable=no
"""hw/frame_engine.py against golden.device.ReferenceDevice, byte for byte, in Amaranth's simulator.

The core is played by the testbench (:class:`CoreModel`): it takes the pixels the engine
streams, answers with ``golden.model`` after a chosen delay and abandons its image on
``core_reset``, as ``ResetInserter`` makes the real core do. So these tests are about the
engine alone and run in seconds; the real core behind the real UART is tested at the pins
(tests/test_system.py) and on the virtual board (tests/test_board.py). Every stream is driven,
consumed and rule-checked by :mod:`sim.streams`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from amaranth.hdl import unsigned
from amaranth.lib import data

from golden import device, model
from golden import protocol as p
from hw.core import LifCore
from hw.frame_engine import REPLIES_DEPTH, RESETS_DEPTH, FrameEngine, engine_memories
from sim import fuzz
from sim.streams import receive, send, simulate, sink

LANES = 16
TIMEOUT = 40  # idle timeout, cycles


@pytest.fixture(scope="module")
def env(shipped):
    """``(net, manifest, core)``: the shipped image and a core built for it (for its layouts
    and timing model)."""
    net, manifest = shipped
    return net, manifest, LifCore(net, pixel_max=manifest["pixel_max"], lanes=LANES)


def info_of(env) -> p.Info:
    net, manifest, _ = env
    return device.device_info(net, manifest, lanes=LANES, clock_hz=12_345_678, baud=3_000_000)


def reference(env) -> device.ReferenceDevice:
    net, manifest, core = env
    return device.ReferenceDevice(net, manifest, lanes=LANES, clock_hz=12_345_678,
                                  baud=3_000_000, cycles_model=core.expected_cycles)


def engine(env, queue_depth: int = p.REPLY_QUEUE) -> FrameEngine:
    _, _, core = env
    return FrameEngine(info_of(env), i_layout=core.i_layout, o_layout=core.o_layout,
                       idle_timeout_cycles=TIMEOUT, queue_depth=queue_depth)


@dataclass
class Bench:
    """Knobs of one simulation run and what it observed."""

    rx_gap: tuple[int, int] = (0, 0)     # cycles between received bytes, uniform range
    tx_stall: object = 0.0               # probability that tx.ready is low in a cycle, or
                                         # stall(cycle) -> bool (sim.streams.sink)
    core_ready: float = 1.0              # probability that core_i.ready is high
    core_latency: tuple[int, int] = (1, 30)
    #: If given, ``core_cycles(steps)`` is the core model's latency instead (a long image).
    core_cycles: object = None
    seed: int = 0
    sent: list[bytes] = field(default_factory=list)     # per chunk: bytes out of the engine
    reply_starts: list[int] = field(default_factory=list)  # edge of each reply's first byte
    errors: int = 0                       # error pulses
    last_label: int = -1
    images: int = 0                       # images the core model answered
    core_resets: int = 0                  # core_reset pulses it saw
    rx_edges: list[int] = field(default_factory=list)   # edge of each received byte
    tx_edges: list[int] = field(default_factory=list)   # edge of each sent byte
    #: First edge at which each answer's first byte is offered on tx (tx.valid rises).
    answer_starts: list[int] = field(default_factory=list)


class CoreReset(Exception):
    """``core_reset`` was high at an edge: the core model drops what it was doing."""


class CoreModel:
    """The core as a testbench: ``M`` pixels in, the golden model's result out after a delay.

    It checks that ``steps`` and ``mode`` stay constant within an image, and models the
    ``ResetInserter`` of :class:`hw.system.LifpgaSystem`: at an edge where ``core_reset`` is
    high, whatever it takes or offers is lost and it waits for a new image.
    """

    def __init__(self, dut: FrameEngine, env, bench: Bench, rng):
        self.dut, self.bench, self.rng = dut, bench, rng
        self.net, _, self.core = env
        self.cache = {}

    def _check_reset(self, ctx, *_):
        if ctx.get(self.dut.core_reset):
            raise CoreReset

    def _answer(self, pixels, steps, mode) -> dict:
        key = (tuple(pixels), steps, mode)
        if key not in self.cache:
            x = np.array(pixels, dtype=np.int64)
            res = model.run(x[None], self.net, steps, mode)
            self.cache[key] = {"label": int(res.classes[-1, 0]),
                               "scores": [int(s) for s in res.scores[-1, 0]],
                               "spike_count": int(res.spike_count[0]),
                               "cycles": self.core.expected_cycles(x, steps, mode)}
        return self.cache[key]

    async def _image(self, ctx):
        dut, bench, rng = self.dut, self.bench, self.rng

        def stall(_cycle):
            self._check_reset(ctx)
            return rng.random() >= bench.core_ready

        beats = await receive(ctx, dut.core_i, self.net.inputs, stall=stall, deadline=None)
        params = {(b["steps"], b["mode"]) for b in beats}
        assert len(params) == 1, f"steps/mode changed within an image: {params}"
        ((steps, mode),) = params
        latency = (bench.core_cycles(steps) if bench.core_cycles
                   else int(rng.integers(*bench.core_latency)))
        for _ in range(latency):
            self._check_reset(ctx)
            await ctx.tick()
        result = self._answer([b["pixel"] for b in beats], steps, mode)
        await send(ctx, dut.core_o, [result], on_cycle=self._check_reset, deadline=None)
        bench.images += 1

    async def run(self, ctx):
        while True:
            try:
                await self._image(ctx)
            except CoreReset:
                ctx.set(self.dut.core_i.ready, 0)
                ctx.set(self.dut.core_o.valid, 0)
                self.bench.core_resets += 1
                await ctx.tick()


def split_frames(data: bytes) -> list[int]:
    """Offsets at which the response frames in ``data`` start (the engine sends whole ones)."""
    starts, at = [], 0
    while at + p.HEADER_BYTES <= len(data):
        starts.append(at)
        length = int.from_bytes(data[at + p.HEADER_BYTES - 2:at + p.HEADER_BYTES], "little")
        at += p.HEADER_BYTES + length + p.CRC_BYTES
    return starts


def run(env, chunks: list[fuzz.Chunk], bench: Bench, *, settle: int = 20_000,
        watch_core: bool = True, waits: dict[int, int] | None = None,
        queue_depth: int = p.REPLY_QUEUE) -> Bench:
    """Send ``chunks`` (waiting for the engine to go quiet after each); fills ``bench``.

    ``waits`` maps a chunk's index to a number of cycles to wait after it instead (the next
    chunk then arrives while the engine works). ``watch_core=False`` leaves ``core_i`` and
    ``core_o`` out of the stream-rule checks: a RESET resets both ends of those streams at
    once, which the rules do not cover. ``queue_depth`` is the engine's requests queue.
    """
    dut = engine(env, queue_depth)
    rng = np.random.default_rng(bench.seed)
    edges = {"now": 0}
    chunk_ends = []

    async def feeder(ctx):
        for index, chunk in enumerate(chunks):
            gaps = rng.integers(bench.rx_gap[0], bench.rx_gap[1] + 1, len(chunk.data))
            await send(ctx, dut.rx, chunk.data, idle=[int(g) for g in gaps], deadline=None)
            if chunk.pause:
                await ctx.tick().repeat(TIMEOUT + 2)
            if index in (waits or {}):
                await ctx.tick().repeat(waits[index])
                continue
            quiet = 0
            for _ in range(settle):
                _, _, busy = await ctx.tick().sample(dut.busy)
                quiet = quiet + 1 if not busy else 0
                if quiet == 3:
                    break
            else:
                raise AssertionError(f"the engine stays busy after chunk {chunk.kind!r}")
            chunk_ends.append(edges["now"])

    async def pulses(ctx):
        was_valid = 0
        async for _, _, error, label, valid in ctx.tick().sample(dut.error, dut.last_label,
                                                                 dut.tx.valid):
            bench.errors += error
            bench.last_label = label
            if valid and not was_valid:  # valid is low for a cycle between two answers
                bench.answer_starts.append(edges["now"])
            was_valid = valid
            edges["now"] += 1

    async def tx_sink(ctx):
        await sink(ctx, dut.tx, stall=bench.tx_stall, seed=bench.seed + 1)

    watch = {"rx": dut.rx, "tx": dut.tx}
    if watch_core:
        watch.update(core_i=dut.core_i, core_o=dut.core_o)
    core = CoreModel(dut, env, bench, np.random.default_rng(bench.seed + 2))
    seen = simulate(dut, feeder, watch=watch, background=[pulses, tx_sink, core.run])
    out = seen["tx"].transfers
    bench.sent = [bytes(t.payload for t in out if start <= t.cycle < end)
                  for start, end in zip([0, *chunk_ends], chunk_ends, strict=False)]
    bench.tx_edges = seen["tx"].cycles
    everything = bytes(t.payload for t in out)
    bench.reply_starts = [out[k].cycle for k in split_frames(everything)]
    bench.rx_edges = seen["rx"].cycles
    return bench


def check_equal(got: list[bytes], want: list[bytes], chunks: list[fuzz.Chunk]):
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, (f"chunk {k} ({chunks[k].kind}): sent {chunks[k].data.hex()}\n"
                        f"engine    {p.FrameParser().feed(g)}\nreference {p.FrameParser().feed(w)}")


@pytest.mark.parametrize("bench", [
    Bench(seed=1),
    Bench(seed=2, rx_gap=(0, 8), tx_stall=0.5, core_ready=0.5, core_latency=(1, 200)),
], ids=["back-to-back", "gaps-and-stalls"])
def test_fuzz_corpus_equals_reference(env, bench):
    chunks = fuzz.corpus(bench.seed, 150 if bench.seed == 1 else 60, info_of(env))
    want = fuzz.expected(reference(env), chunks)
    run(env, chunks, bench)
    check_equal(bench.sent, want, chunks)
    replies = [r for reply in want for r in p.FrameParser().feed(reply)]
    statuses = [r.payload[0] for r in replies]
    assert bench.errors == sum(s != p.Status.OK for s in statuses)
    # Every kind of answer occurred, so the comparison covered each path (RESET included).
    assert set(statuses) == set(p.Status) - {p.Status.BUSY}
    assert p.Command.RESET | p.RESPONSE_FLAG in {r.cmd for r in replies}
    # CLASSIFY_SPARSE served, and refused for a token stream that is not M pixels.
    sparse = p.Command.CLASSIFY_SPARSE | p.RESPONSE_FLAG
    assert {(sparse, p.Status.OK), (sparse, p.Status.BAD_LENGTH)} <= {
        (r.cmd, r.payload[0]) for r in replies}
    classify = {c | p.RESPONSE_FLAG for c in p.CLASSIFY_COMMANDS}
    last_ok = [r for r in replies if r.cmd in classify and r.payload[0] == p.Status.OK][-1]
    assert bench.last_label == p.unpack_classification(last_ok.payload, 10).label


@pytest.mark.parametrize(("gap", "status"), [(TIMEOUT - 1, p.Status.OK),
                                              (TIMEOUT, p.Status.TIMEOUT)])
def test_idle_timeout_boundary(env, gap, status):
    """A byte may come ``TIMEOUT`` cycles after the previous one, not one cycle later."""
    got = _send_with_gap(env, p.encode_frame(p.Command.INFO, 7), 4, gap)
    (reply,) = p.FrameParser().feed(got)
    assert (reply.seq, reply.payload[0]) == (7, status)


def _send_with_gap(env, frame: bytes, at: int, gap: int) -> bytes:
    """Send ``frame`` with ``gap`` idle cycles before byte ``at``; returns the engine's bytes."""
    dut = engine(env)
    idle = [gap if k == at else 0 for k in range(len(frame))]

    async def feeder(ctx):
        await send(ctx, dut.rx, frame, idle=idle)
        await ctx.tick().repeat(200)

    async def tx_sink(ctx):
        await sink(ctx, dut.tx)

    seen = simulate(dut, feeder, watch={"rx": dut.rx, "tx": dut.tx}, background=[tx_sink])
    return bytes(seen["tx"].payloads)


def classify_frames(env, count: int, seq0: int = 0, steps: int = 2) -> list[bytes]:
    net, manifest, _ = env
    rng = np.random.default_rng(seq0)
    return [p.encode_frame(p.Command.CLASSIFY, seq0 + k, p.pack_classify(
        rng.integers(0, manifest["pixel_max"] + 1, net.inputs), steps, 0))
        for k in range(count)]


def test_next_images_arrive_while_the_core_works(env):
    """MAX_IN_FLIGHT requests sent back to back: all are answered, and each answer follows
    the previous one by the core's time, not by another frame time."""
    latency = 3000
    frames = classify_frames(env, p.MAX_IN_FLIGHT)
    bench = run(env, [fuzz.Chunk(b"".join(frames), False, "burst")],
                Bench(rx_gap=(9, 9), core_latency=(latency, latency + 1)))
    want = reference(env).receive(b"".join(frames))
    assert bench.sent == [want]
    frame_cycles = 10 * len(frames[0])
    assert len(bench.reply_starts) == p.MAX_IN_FLIGHT
    for first, second in zip(bench.reply_starts, bench.reply_starts[1:], strict=False):
        assert second - first < latency + 100 < latency + frame_cycles


def test_busy_when_every_slot_is_taken_then_recovers(env):
    frames = classify_frames(env, p.MAX_IN_FLIGHT + 1)
    after = p.encode_frame(p.Command.INFO, 99)
    bench = run(env, [fuzz.Chunk(b"".join(frames), False, "flood"),
                      fuzz.Chunk(after, False, "info")],
                Bench(core_latency=(2000, 2001)))
    replies = p.FrameParser().feed(bench.sent[0])
    ref = p.FrameParser().feed(reference(env).receive(b"".join(frames)))
    # The last request finds both slots full; it is answered BUSY, in its turn.
    assert [r.seq for r in replies] == [r.seq for r in ref]
    assert replies[:-1] == ref[:-1]
    assert replies[-1].payload == bytes([p.Status.BUSY])
    assert bench.sent[1] == reference(env).receive(after)


def test_reply_queue_overflow_drops_whole_replies_then_recovers(env):
    """INFO requests arrive faster than their 60-byte answers leave: while its queue is full
    the engine drops whole requests; what it answers is correct, and it serves the next one."""
    count = p.REPLY_QUEUE + 32
    flood = b"".join(p.encode_frame(p.Command.INFO, k) for k in range(count))
    after = p.encode_frame(p.Command.INFO, 200)
    bench = run(env, [fuzz.Chunk(flood, False, "flood"), fuzz.Chunk(after, False, "info")],
                Bench(tx_stall=0.0))
    replies = p.FrameParser().feed(bench.sent[0])
    assert p.REPLY_QUEUE <= len(replies) < count
    seqs = [r.seq for r in replies]
    assert seqs == sorted(set(seqs)) and seqs[:p.REPLY_QUEUE] == list(range(p.REPLY_QUEUE))
    want = {r.seq: r for r in p.FrameParser().feed(reference(env).receive(flood))}
    assert replies == [want[s] for s in seqs]
    assert bench.sent[1] == reference(env).receive(after)


# --- RESET with work in flight ----------------------------------------------------------------

#: The core model's latency for a CLASSIFY of ``steps``: 65535 steps take 6.5 million cycles.
def slow_core(steps: int) -> int:
    return 100 * steps


def reset_frame(seq: int) -> bytes:
    return p.encode_frame(p.Command.RESET, seq)


def reset_answer(seq: int) -> bytes:
    return p.encode_frame(p.Command.RESET | p.RESPONSE_FLAG, seq, bytes([p.Status.OK]))


def check_reset(env, bench: Bench, before: list[bytes], seq: int, after: list[bytes]) -> int:
    """The engine's whole output after ``before``, RESET ``seq``, ``after`` (sent in order) is
    :meth:`golden.device.ReferenceDevice.expected_after_reset` for the answers to ``before``
    that had started. Returns how many answers to ``before`` were sent.

    "Started" is exact: an answer is sent if and only if its first byte is offered on ``tx``
    (however long the transmitter then stalls) at most one cycle after the edge at which the
    RESET's last byte was received.
    """
    out = b"".join(bench.sent)
    reset_edge = bench.rx_edges[sum(map(len, before)) + len(reset_frame(seq)) - 1]
    started = sum(edge <= reset_edge + 1 for edge in bench.answer_starts)
    want = reference(env).expected_after_reset(before, started, seq, after)
    assert reset_answer(seq) in want
    assert out == want
    return started


def test_reset_abandons_a_long_rate_mode_classify(env):
    """A CLASSIFY of 65535 steps in rate mode is computing, an INFO waits behind it: RESET
    stops the core, the INFO is never answered, the RESET is answered at once and the next
    requests are served normally."""
    net, manifest, _ = env
    long = p.encode_frame(p.Command.CLASSIFY, 1, p.pack_classify(
        np.full(net.inputs, manifest["pixel_max"]), 65535, 1))
    before = [long, p.encode_frame(p.Command.INFO, 2)]
    after = [p.encode_frame(p.Command.INFO, 4), *classify_frames(env, 2, seq0=5)]
    chunks = [fuzz.Chunk(b"".join(before), False, "long+info"),
              fuzz.Chunk(reset_frame(3) + b"".join(after), False, "reset+more")]
    bench = run(env, chunks, Bench(core_cycles=slow_core), watch_core=False, waits={0: 500})
    assert check_reset(env, bench, before, 3, after) == 0
    assert (bench.core_resets, bench.images) == (1, 2)
    # Answered within a few cycles of the RESET's last byte: nothing waits for the core.
    reset_edge = bench.rx_edges[sum(map(len, before)) + len(reset_frame(3)) - 1]
    assert bench.reply_starts[0] - reset_edge < 10


def test_reset_finishes_the_answer_on_the_wire(env):
    """RESET arrives while an INFO answer is being sent (the transmitter stalls): that answer
    is completed, never cut, then the RESET is answered."""
    before = [p.encode_frame(p.Command.INFO, 1)]
    after = [p.encode_frame(p.Command.INFO, 3)]
    chunks = [fuzz.Chunk(b"".join([*before, reset_frame(2), *after]), False, "info+reset")]
    bench = run(env, chunks, Bench(tx_stall=0.7, seed=3), watch_core=False)
    assert check_reset(env, bench, before, 2, after) == 1


def test_two_resets_in_a_row_are_both_answered_in_order(env):
    net, manifest, _ = env
    long = p.encode_frame(p.Command.CLASSIFY, 1, p.pack_classify(
        np.zeros(net.inputs, int), 65535, 1))
    after = [reset_frame(3), p.encode_frame(p.Command.INFO, 4)]
    chunks = [fuzz.Chunk(long, False, "long"),
              fuzz.Chunk(reset_frame(2) + b"".join(after), False, "reset+reset+info")]
    bench = run(env, chunks, Bench(core_cycles=slow_core), watch_core=False, waits={0: 300})
    assert check_reset(env, bench, [long], 2, after) == 0
    assert b"".join(bench.sent).startswith(reset_answer(2) + reset_answer(3))
    assert (bench.core_resets, bench.images) == (2, 0)


@pytest.mark.parametrize("seed", range(20))
def test_reset_amid_random_traffic(env, seed):
    """Random requests (at most MAX_IN_FLIGHT CLASSIFY on each side), the RESET between them,
    random gaps and stalls: the output is what had started, the RESET answer, then the
    reference's answers to what followed."""
    info = info_of(env)
    rng = np.random.default_rng(100 + seed)

    def requests(seq0: int, count: int) -> list[bytes]:
        kinds = rng.choice(["classify", "info", "bad_crc", "unknown", "pixel_range"], count)
        classifies = 0
        frames = []
        for k, kind in enumerate(kinds):
            if kind == "classify":
                classifies += 1
                if classifies > p.MAX_IN_FLIGHT:
                    kind = "info"
            frames.append(fuzz.make_item(rng, info, str(kind), seq0 + k, 8)[0])
        return frames

    before, after = requests(0, int(rng.integers(1, 6))), requests(50, int(rng.integers(0, 4)))
    chunks = [fuzz.Chunk(b"".join([*before, reset_frame(40), *after]), False, "mix")]
    bench = Bench(seed=seed, rx_gap=(0, int(rng.integers(0, 30))), tx_stall=0.3,
                  core_ready=0.7, core_latency=(1, int(rng.integers(2, 400))))
    run(env, chunks, bench, watch_core=False)
    check_reset(env, bench, before, 40, after)


# --- the exact limits -------------------------------------------------------------------------

def flood_behind_a_slow_classify(env, follow: str, count: int, queue_depth: int = p.REPLY_QUEUE):
    """CLASSIFY 0 takes the core for 20,000 cycles; ``count`` requests (``"classify"`` or
    ``"info"``) follow back to back. Returns the SEQs answered and the answers' statuses."""
    net, manifest, core = env
    pixels = np.ones(net.inputs, int)
    first = p.encode_frame(p.Command.CLASSIFY, 0, p.pack_classify(pixels, 200, 0))
    if follow == "classify":
        more = [p.encode_frame(p.Command.CLASSIFY, k, p.pack_classify(pixels, 2, 0))
                for k in range(1, count + 1)]
    else:
        more = [p.encode_frame(p.Command.INFO, k) for k in range(1, count + 1)]
    bench = run(env, [fuzz.Chunk(first, False, "slow"),
                      fuzz.Chunk(b"".join(more), False, "flood")],
                Bench(core_cycles=lambda steps: 100 * steps), waits={0: 200}, settle=80_000,
                queue_depth=queue_depth)
    replies = p.FrameParser().feed(b"".join(bench.sent))
    return [r.seq for r in replies], [r.payload[0] for r in replies]


DEPTHS = [p.REPLY_QUEUE, p.MAX_WINDOW - 2]


@pytest.mark.parametrize("depth", DEPTHS)
def test_drop_limit_behind_a_classify_waiting_for_the_core(env, depth):
    """While the core computes CLASSIFY 0, the dispatcher holds CLASSIFY 1 at the head of the
    queue: exactly ``depth + 2`` requests are answered (0, then 1 and 2 in the slots, then
    BUSY), the rest are dropped without an answer."""
    seqs, statuses = flood_behind_a_slow_classify(env, "classify", depth + 5, depth)
    assert seqs == list(range(depth + 2))
    assert statuses == [p.Status.OK] * p.MAX_IN_FLIGHT + [p.Status.BUSY] * (
        depth + 2 - p.MAX_IN_FLIGHT)


@pytest.mark.parametrize("depth", DEPTHS)
def test_drop_limit_behind_infos(env, depth):
    """INFO requests behind CLASSIFY 0 move on to the replies queue: ``depth + 1 +
    REPLIES_DEPTH`` requests are answered, the rest dropped."""
    seqs, statuses = flood_behind_a_slow_classify(env, "info", depth + 10, depth)
    assert seqs == list(range(depth + 1 + REPLIES_DEPTH))
    assert set(statuses) == {p.Status.OK}


def test_reset_flood_beyond_the_resets_queue(env):
    """RESETs while the transmitter is stalled: the first answer has started, RESETS_DEPTH
    wait in the queue and one in the parser; later ones are dropped whole (no answer)."""
    count = RESETS_DEPTH + 5
    frames = b"".join(reset_frame(k) for k in range(count))
    bench = run(env, [fuzz.Chunk(frames, False, "resets")],
                Bench(tx_stall=lambda cycle: cycle < 3000), watch_core=False)
    got = b"".join(bench.sent)
    assert got == b"".join(reset_answer(k) for k in range(RESETS_DEPTH + 2))


def test_reset_behind_a_full_queue(env):
    """INFO requests flood every queue (some are dropped), then a RESET: the INFO answers that
    had started are sent, whole and correct, then the RESET answer, then the next request's.
    The request the parser was holding for the full queue is abandoned with the queue."""
    count = p.REPLY_QUEUE + 60
    flood = [p.encode_frame(p.Command.INFO, k & 0xFF) for k in range(count)]
    after = p.encode_frame(p.Command.INFO, 201)
    chunks = [fuzz.Chunk(b"".join(flood) + reset_frame(200) + after, False, "flood+reset")]
    bench = run(env, chunks, Bench(), watch_core=False)
    replies = p.FrameParser().feed(b"".join(bench.sent))
    reset_edge = bench.rx_edges[len(b"".join(flood)) + len(reset_frame(200)) - 1]
    started = sum(edge <= reset_edge + 1 for edge in bench.answer_starts)
    ref = {r.seq: r for r in p.FrameParser().feed(reference(env).receive(b"".join(flood)))}
    assert 0 < started < count - p.REPLY_QUEUE  # some dropped, and the queue was full
    seqs = [r.seq for r in replies[:started]]
    assert seqs == sorted(set(seqs)) and replies[:started] == [ref[s] for s in seqs]
    assert b"".join(bench.sent).endswith(reset_answer(200) + reference(env).receive(after))
    assert len(replies) == started + 2


@pytest.mark.parametrize(("inputs", "pixel_max", "queue_depth"), [
    (None, None, p.REPLY_QUEUE), (784, 255, p.REPLY_QUEUE), (64, 16, 2), (3, 1, 1)])
def test_memories_are_what_the_engine_builds(env, inputs, pixel_max, queue_depth):
    """hw.frame_engine.engine_memories, which the fit check counts, names every memory the
    elaborated engine holds, with its width and depth (the core's are held by
    tests/test_geometry.py)."""
    from hw.core import built_memories

    _, _, core = env
    info = info_of(env)
    info = info._replace(inputs=inputs or info.inputs, pixel_max=pixel_max or info.pixel_max)
    i_layout = data.StructLayout({**{name: m.shape for name, m in core.i_layout},
                                  "pixel": unsigned(max(1, info.pixel_max.bit_length()))})
    built = FrameEngine(info, i_layout=i_layout, o_layout=core.o_layout,
                        idle_timeout_cycles=TIMEOUT, queue_depth=queue_depth)
    assert built_memories(built) == {s.name: (s.width, s.depth) for s in built.memories()}
    assert built.memories() == engine_memories(info, queue_depth)
    assert {s.name for s in built.memories()} >= {"slots", "replies.storage"}
