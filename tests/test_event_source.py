# amaranth: UnusedElaboratable=no
"""hw/event_source.py against a reference of a run's events, and its cycle-exact timing.

Every test builds the source inside :class:`ListMemories`, which gives it two real
:class:`amaranth.lib.memory.Memory` list memories (synchronous read ports, as the engine's),
initialised with the test's pixel list and spike list; starts one run or several back to back
(the next ``start`` in the first cycle ``busy`` is low); takes the events with ``o.ready`` high
or random; and compares them with :func:`reference_events` using ``==``, list for list. With
``o.ready`` always high it also checks the timing: the first event ``START_LATENCY`` cycles
after ``start``, then one per cycle without a gap, ``busy`` low exactly ``START_LATENCY + E``
cycles after ``start``. A :class:`sim.streams.StreamMonitor` checks the stream rules on ``o``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import memory

from hw.event_source import EventSource
from sim.streams import StreamRuleError, StreamTimeout, plain, simulate

START = EventSource.START_LATENCY


@dataclass(frozen=True)
class Run:
    """The parameters of one run (the source's ``start`` inputs)."""

    passes: int
    a_base: int = 0
    a_count: int = 0
    b_pixels: int = 1
    b_base: int = 0
    b_count: int = 0


def reference_events(run: Run, pixels: list[tuple[int, int]], spikes: list[tuple[int, int]],
                     lanes: int) -> list[dict[str, int]]:
    """The events of ``run`` over the lists, in order, as payload dicts.

    ``pixels`` are ``(j, x)`` entries, ``spikes`` ``(group, word)`` entries (their words must be
    nonzero: a zero word is outside the source's contract, see ``hw/event_source.py``).
    """

    def spike_events(base: int, count: int, rec: int) -> list[dict[str, int]]:
        out = []
        for group, word in spikes[base:base + count]:
            assert word != 0, "the engine writes only nonzero spike words"
            out += [{"j": group * lanes + p, "x": 1, "rec": rec}
                    for p in range(lanes) if word >> p & 1]
        return out

    events = []
    for g in range(run.passes):
        evs = spike_events(run.a_base, run.a_count, 1)
        if run.b_pixels:
            evs += [{"j": j, "x": x, "rec": 0} for j, x in pixels[:run.b_count]]
        else:
            evs += spike_events(run.b_base, run.b_count, 0)
        evs = evs or [{"j": 0, "x": 0, "rec": 0}]
        events += [{"group": g, **e, "first": int(k == 0), "last": int(k == len(evs) - 1)}
                   for k, e in enumerate(evs)]
    return events


class ListMemories(Elaboratable):
    """The source and the engine's two list memories, initialised with a test's lists; the
    pixel memory has a write port too (``wr_addr``, ``wr_j``, ``wr_x``, ``wr_en``), as the
    engine's, for tests that rewrite the list between runs."""

    def __init__(self, source: EventSource, pixels, spikes):
        self.source, self.pixels, self.spikes = source, pixels, spikes
        self.wr_addr = Signal(range(source.pixel_depth))
        self.wr_j, self.wr_x = Signal(source.index_bits), Signal(source.x_bits)
        self.wr_en = Signal()

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.source = src = self.source
        m.submodules.pix_mem = pix_mem = memory.Memory(
            shape=src.pixel_entry, depth=src.pixel_depth,
            init=[{"j": j, "x": x} for j, x in self.pixels])
        m.submodules.spk_mem = spk_mem = memory.Memory(
            shape=src.spike_entry, depth=src.spike_depth,
            init=[{"group": g, "word": w} for g, w in self.spikes])
        for mem, addr, en, data in ((pix_mem, src.pix_addr, src.pix_en, src.pix_data),
                                    (spk_mem, src.spk_addr, src.spk_en, src.spk_data)):
            port = mem.read_port()
            m.d.comb += [port.addr.eq(addr), port.en.eq(en), data.eq(port.data)]
        wr = pix_mem.write_port()
        m.d.comb += [wr.addr.eq(self.wr_addr), wr.data.j.eq(self.wr_j), wr.data.x.eq(self.wr_x),
                     wr.en.eq(self.wr_en)]
        return m


@dataclass(frozen=True)
class RunResult:
    """One run as seen: its events, the cycle of each (``start`` is in cycle 0), and the first
    cycle in which ``busy`` was low again."""

    events: list[dict[str, int]]
    cycles: list[int]
    end: int


def simulate_runs(source: EventSource, pixels, spikes, runs: list[Run], *,
                  ready_prob: float = 1.0, seed: int = 0,
                  rewrites: dict[int, list[tuple[int, int]]] | None = None) -> list[RunResult]:
    """Run ``runs`` back to back on the lists; ``o.ready`` is high with ``ready_prob``.

    ``rewrites[i]``, if given, is written into the pixel memory before run ``i`` through its
    write port, one entry a cycle from the last to entry 0, which is written in the cycle two
    before that run's ``start`` (the latest the source allows, see ``hw/event_source.py``).
    """
    rng = np.random.default_rng(seed)
    dut = ListMemories(source, pixels, spikes)
    src = source
    results = []
    rewrites = rewrites or {}

    async def testbench(ctx) -> None:
        await ctx.tick()  # the first start is not in the first cycle after reset (read-ahead)
        for index, run in enumerate(runs):
            assert not ctx.get(src.busy) and not ctx.get(src.o.valid)
            if index in rewrites:
                # entry 0 last: the entry the read-ahead reads in the cycle before start
                for a, (j, x) in reversed(list(enumerate(rewrites[index]))):
                    ctx.set(dut.wr_addr, a)
                    ctx.set(dut.wr_j, j)
                    ctx.set(dut.wr_x, x)
                    ctx.set(dut.wr_en, 1)
                    await ctx.tick()
                ctx.set(dut.wr_en, 0)
                await ctx.tick()  # the cycle before start: no write
            for name in ("passes", "a_base", "a_count", "b_pixels", "b_base", "b_count"):
                ctx.set(getattr(src, name), getattr(run, name))
            ctx.set(src.start, 1)
            # the start cycle: o.ready random too (nothing is offered yet)
            ctx.set(src.o.ready, int(rng.random() < ready_prob))
            await ctx.tick()
            ctx.set(src.start, 0)
            for name in ("passes", "a_base", "a_count", "b_base", "b_count"):
                ctx.set(getattr(src, name), int(rng.integers(0, 4)))  # sampled only at start
            events, cycles, cycle = [], [], 1
            # every entry gives at most P events (and a pass at least one)
            bound = run.passes * ((run.a_count + run.b_count) * src.lanes + 1)
            deadline = 40 * (bound + 10)
            while True:
                if cycle > deadline:
                    raise StreamTimeout(f"run {run} still busy after {deadline} cycles")
                assert ctx.get(src.busy), f"busy low in cycle {cycle} of a run"
                # o.valid must not wait for o.ready (stream rule 3)
                ctx.set(src.o.ready, 0)
                valid = ctx.get(src.o.valid)
                ctx.set(src.o.ready, 1)
                if ctx.get(src.o.valid) != valid:
                    raise StreamRuleError("o.valid follows o.ready")
                ready = int(rng.random() < ready_prob)
                ctx.set(src.o.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(src.o.valid, src.o.payload)
                if valid and ready:
                    events.append(plain(payload))
                    cycles.append(cycle)
                cycle += 1
                if not ctx.get(src.busy):
                    break
            assert not ctx.get(src.o.valid), "an event after the run's last"
            results.append(RunResult(events, cycles, cycle))
        # after the last run: nothing more comes out
        ctx.set(src.o.ready, 1)
        for _ in range(4):
            _, _, valid = await ctx.tick().sample(src.o.valid)
            assert not valid

    monitors = simulate(dut, testbench, watch={"o": src.o})
    seen = monitors["o"].payloads
    assert seen == [e for r in results for e in r.events]
    return results


def check_runs(source: EventSource, pixels, spikes, runs: list[Run], *,
               ready_prob: float = 1.0, seed: int = 0,
               rewrites: dict[int, list[tuple[int, int]]] | None = None) -> list[RunResult]:
    """Simulate ``runs`` and assert their events equal the reference; with ``o.ready`` always
    high, also the exact timing (no gap, ``START_LATENCY + E`` cycles per run)."""
    results = simulate_runs(source, pixels, spikes, runs, ready_prob=ready_prob, seed=seed,
                            rewrites=rewrites)
    for index, (run, result) in enumerate(zip(runs, results, strict=True)):
        if rewrites and index in rewrites:
            pixels = [*rewrites[index], *pixels[len(rewrites[index]):]]
        expected = reference_events(run, pixels, spikes, source.lanes)
        assert result.events == expected, run
        if ready_prob == 1.0:
            n = len(expected)
            assert result.cycles == list(range(START, START + n)), run
            assert result.end == START + n, run
    return results


def make_source(lanes=4, *, group_bits=3, x_bits=5, index_bits=None, pixel_depth=32,
                spike_depth=32, pixel_ahead=False) -> EventSource:
    if index_bits is None:
        index_bits = max(6, group_bits + (lanes - 1).bit_length())
    return EventSource(lanes=lanes, index_bits=index_bits, x_bits=x_bits, group_bits=group_bits,
                       pixel_depth=pixel_depth, spike_depth=spike_depth,
                       pixel_ahead=pixel_ahead)


#: Both ways of reading the pixel memory (``pixel_ahead``): at the fetch, and one fetch ahead.
AHEAD = pytest.mark.parametrize("ahead", [False, True], ids=["direct", "ahead"])


#: Lists of the known-answer cases (P = 4, group_bits 3): pixels 0..4, spike entries 0..6.
PIXELS = [(3, 7), (5, 1), (17, 31), (40, 2), (63, 9)]
SPIKES = [(0, 0b0001), (2, 0b1010), (7, 0b1111), (1, 0b0100), (5, 0b1001), (3, 0b1000),
          (6, 0b0110)]


@pytest.mark.parametrize("run", [
    pytest.param(Run(passes=3, b_pixels=1, b_count=5), id="pixels-only"),
    pytest.param(Run(passes=2, b_pixels=0, b_base=1, b_count=4), id="spikes-only"),
    pytest.param(Run(passes=3, a_base=4, a_count=3, b_pixels=0, b_base=0, b_count=3),
                 id="recurrent-and-spikes"),
    pytest.param(Run(passes=2, a_base=1, a_count=2, b_pixels=1, b_count=5),
                 id="recurrent-and-pixels"),
    pytest.param(Run(passes=4, a_base=0, a_count=7), id="recurrent-only"),
    pytest.param(Run(passes=3, a_count=0, b_pixels=1, b_count=0), id="empty-pixels"),
    pytest.param(Run(passes=2, a_count=0, b_pixels=0, b_base=3, b_count=0), id="empty-spikes"),
    pytest.param(Run(passes=1, b_pixels=0, b_base=2, b_count=1), id="all-lanes-set"),
    pytest.param(Run(passes=1, a_base=6, a_count=1, b_pixels=1, b_count=1), id="one-pass"),
    pytest.param(Run(passes=8, a_base=3, a_count=1, b_pixels=0, b_base=0, b_count=1),
                 id="eight-passes-single-entries"),
    pytest.param(Run(passes=2, a_base=0, a_count=1), id="single-a-entry"),
    pytest.param(Run(passes=2, b_pixels=1, b_count=1), id="single-pixel"),
    pytest.param(Run(passes=1), id="one-empty-event"),
])
@AHEAD
def test_known_answers(run, ahead):
    events = check_runs(make_source(pixel_ahead=ahead), PIXELS, SPIKES, [run])[0].events
    if run.a_count == 0 and run.b_count == 0:
        assert events == [{"group": g, "j": 0, "x": 0, "rec": 0, "first": 1, "last": 1}
                          for g in range(run.passes)]


@AHEAD
def test_known_answer_by_hand(ahead):
    # Segment A = entries 1, 2 (group 2: 1010; group 7: 1111), B = pixels 0, 1; two passes.
    run = Run(passes=2, a_base=1, a_count=2, b_pixels=1, b_count=2)
    events = check_runs(make_source(pixel_ahead=ahead), PIXELS, SPIKES, [run])[0].events
    one_pass = [(9, 1, 1), (11, 1, 1), (28, 1, 1), (29, 1, 1), (30, 1, 1), (31, 1, 1),
                (3, 7, 0), (5, 1, 0)]
    assert events == [{"group": g, "j": j, "x": x, "rec": rec, "first": int(k == 0),
                       "last": int(k == 7)}
                      for g in range(2) for k, (j, x, rec) in enumerate(one_pass)]


def test_every_lane_of_a_full_word_in_order():
    lanes = 16
    spikes = [(3, (1 << lanes) - 1), (0, 1 << (lanes - 1))]
    run = Run(passes=2, a_base=0, a_count=2)
    events = check_runs(make_source(lanes), [], spikes, [run])[0].events
    assert [e["j"] for e in events[:lanes + 1]] == [*range(48, 64), 15]


@AHEAD
def test_back_to_back_runs_with_different_parameters(ahead):
    runs = [Run(passes=3, a_base=4, a_count=3, b_pixels=1, b_count=5),
            Run(passes=1),
            Run(passes=2, b_pixels=0, b_base=2, b_count=5),
            Run(passes=1, b_pixels=1, b_count=1),
            Run(passes=5, a_base=6, a_count=1, b_pixels=1, b_count=0),
            Run(passes=2, a_count=0, b_pixels=0, b_count=0),
            Run(passes=2, a_base=0, a_count=7, b_pixels=0, b_base=0, b_count=7)]
    check_runs(make_source(pixel_ahead=ahead), PIXELS, SPIKES, runs)
    check_runs(make_source(pixel_ahead=ahead), PIXELS, SPIKES, runs, ready_prob=0.6, seed=11)


@AHEAD
@pytest.mark.parametrize("ready_prob", [1.0, 0.5])
def test_pixel_list_rewritten_between_runs(ahead, ready_prob):
    # As the engine does every step in rate mode: a new list (of another length) before each
    # run, its last entry written two cycles before start; with read-ahead the memory is read
    # in the cycle before start, so a stale first entry would show in the first event.
    runs = [Run(passes=2, b_pixels=1, b_count=5),
            Run(passes=3, a_base=1, a_count=2, b_pixels=1, b_count=3),
            Run(passes=1, b_pixels=0, b_base=0, b_count=2),
            Run(passes=2, b_pixels=1, b_count=4),
            Run(passes=2, b_pixels=1, b_count=1)]
    rewrites = {1: [(9, 4), (2, 30), (44, 1)], 3: [(60, 5), (61, 6), (62, 7), (0, 8)],
                4: [(33, 3)]}
    check_runs(make_source(pixel_ahead=ahead), PIXELS, SPIKES, runs, ready_prob=ready_prob,
               seed=3, rewrites=rewrites)


@AHEAD
def test_sixty_four_passes_of_sixteen_lanes(ahead):
    lanes, group_bits = 16, 6
    spikes = [(63, 0x8001), (10, 0x0100), (33, 0xFFFF)]
    pixels = [(1000, 3), (5, 1)]
    runs = [Run(passes=64, a_base=1, a_count=1, b_pixels=1, b_count=2),
            Run(passes=64, a_base=0, a_count=0, b_pixels=0, b_base=0, b_count=1)]
    src = make_source(lanes, group_bits=group_bits, index_bits=10, pixel_depth=8, spike_depth=4,
                      pixel_ahead=ahead)
    results = check_runs(src, pixels, spikes, runs)
    assert [e["group"] for e in results[1].events] == [g for g in range(64) for _ in range(2)]
    assert {e["j"] for e in results[1].events} == {63 * 16, 63 * 16 + 15}


def test_zero_word_gives_one_harmless_event():
    # Outside the contract (the engine writes only nonzero words), but documented: a zero word
    # is one event of x = 0 (adds nothing to a sum), with first/last where the entry is.
    lanes = 4
    spikes = [(2, 0), (1, 0b0011), (3, 0)]
    run = Run(passes=2, a_base=0, a_count=3)
    result = simulate_runs(make_source(lanes), [], spikes, [run])[0]
    one_pass = [(8, 0), (4, 1), (5, 1), (12, 0)]
    assert result.events == [{"group": g, "j": j, "x": x, "rec": 1, "first": int(k == 0),
                              "last": int(k == 3)}
                             for g in range(2) for k, (j, x) in enumerate(one_pass)]
    assert result.end == START + 8


# --- random lists and runs --------------------------------------------------------------------

def random_lists(rng: np.random.Generator, lanes: int, group_bits: int, index_bits: int,
                 x_bits: int, pixel_depth: int, spike_depth: int):
    """A pixel list and a spike list filling their memories: sparse and dense nonzero words."""
    pixels = [(int(rng.integers(0, 1 << index_bits)), int(rng.integers(1, 1 << x_bits)))
              for _ in range(pixel_depth)]
    spikes = []
    for _ in range(spike_depth):
        density = rng.choice([0.05, 0.2, 0.6])
        word = 0
        while word == 0:
            word = int(sum(1 << p for p in range(lanes) if rng.random() < density))
        spikes.append((int(rng.integers(0, 1 << group_bits)), word))
    return pixels, spikes


def random_run(rng: np.random.Generator, pixel_depth: int, spike_depth: int,
               max_passes: int, max_count: int = 6) -> Run:
    a_count = int(rng.integers(0, max_count + 1)) if rng.random() < 0.6 else 0
    b_pixels = int(rng.random() < 0.5)
    b_count = int(rng.integers(0, max_count + 1)) if rng.random() < 0.85 else 0
    return Run(passes=int(rng.integers(1, max_passes + 1)),
               a_base=int(rng.integers(0, spike_depth - a_count + 1)), a_count=a_count,
               b_pixels=b_pixels,
               b_base=int(rng.integers(0, spike_depth - b_count + 1)) if not b_pixels else 0,
               b_count=b_count)


@pytest.mark.parametrize(("lanes", "group_bits"), [(4, 3), (16, 6), (12, 6), (1, 2), (3, 2)])
@pytest.mark.parametrize("ready_prob", [1.0, 0.5])
@AHEAD
def test_random_runs(lanes, group_bits, ready_prob, ahead):
    seed = lanes * 100 + group_bits * 10 + int(ready_prob * 2)
    rng = np.random.default_rng(seed)
    x_bits, pixel_depth, spike_depth = 5, 12, 16
    index_bits = group_bits + max(1, (lanes - 1).bit_length())
    pixels, spikes = random_lists(rng, lanes, group_bits, index_bits, x_bits, pixel_depth,
                                  spike_depth)
    runs = [random_run(rng, pixel_depth, spike_depth, max_passes=4) for _ in range(8)]
    src = make_source(lanes, group_bits=group_bits, x_bits=x_bits, index_bits=index_bits,
                      pixel_depth=pixel_depth, spike_depth=spike_depth, pixel_ahead=ahead)
    results = check_runs(src, pixels, spikes, runs, ready_prob=ready_prob, seed=seed)
    if ready_prob < 1:  # the stalls really happened
        assert sum(r.end for r in results) > sum(START + len(r.events) for r in results) + 20


@AHEAD
def test_rare_ready_holds_every_event(ahead):
    rng = np.random.default_rng(5)
    pixels, spikes = random_lists(rng, 12, 6, 10, 5, 8, 8)
    runs = [Run(passes=3, a_base=0, a_count=4, b_pixels=1, b_count=8),
            Run(passes=2, a_base=2, a_count=3, b_pixels=0, b_base=5, b_count=3)]
    check_runs(make_source(12, group_bits=6, index_bits=10, pixel_depth=8, spike_depth=8,
                           pixel_ahead=ahead),
               pixels, spikes, runs, ready_prob=0.15, seed=5)


# --- interface --------------------------------------------------------------------------------

def test_layouts_and_ports():
    src = EventSource(lanes=12, index_bits=11, x_bits=9, group_bits=6, pixel_depth=784,
                      spike_depth=40)
    assert START == 2
    assert src.pixel_entry.size == 11 + 9 and src.pixel_entry["j"].offset == 0
    assert src.spike_entry.size == 6 + 12 and src.spike_entry["group"].offset == 0
    assert [name for name, _ in src.event] == ["group", "j", "x", "rec", "first", "last"]
    assert src.event.size == 6 + 11 + 9 + 3
    assert (len(src.passes), len(src.a_base), len(src.a_count), len(src.b_count)) == (7, 6, 6, 10)
    assert (len(src.pix_addr), len(src.spk_addr)) == (10, 6)
    assert len(src.o.p.j) == 11


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"lanes": 0}, ValueError),
    ({"group_bits": 0}, ValueError),
    ({"spike_depth": 0}, ValueError),
    ({"lanes": 4.0}, TypeError),
    ({"x_bits": True}, TypeError),
    ({"pixel_ahead": 1}, TypeError),
])
def test_bad_parameters_are_rejected(kwargs, error):
    params = {"lanes": 4, "index_bits": 6, "x_bits": 5, "group_bits": 3, "pixel_depth": 8,
              "spike_depth": 8, **kwargs}
    with pytest.raises(error):
        EventSource(**params)
