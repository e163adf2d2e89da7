# amaranth: UnusedElaboratable=no
"""hw/input_encoder.py against the golden model: the pixel list of every step, and the cycles.

A bench joins the encoder to a real list memory (``amaranth.lib.memory.Memory``, as the engine
does). The driver plays the engine's sequencer: it sends an image's pixels with ``load`` high
(through :func:`sim.streams.send`, with idle cycles and junk between pixels), drops ``load`` the
cycle after ``loaded``, and in rate mode pulses ``draw`` once per step, in the cycle of the
previous ``drawn`` or some cycles later. A background monitor records, at every clock edge, the
list writes and the cycles of ``loaded``, ``draw`` and ``drawn``; the stream monitor of
:func:`sim.streams.simulate` records the pixel transfers. Every run then checks, with ``==``:

* constant current: the writes of the load and the list in memory are ``(j, x[j])`` of every
  nonzero pixel, in order, and ``count`` is their number;
* rate mode: step ``t``'s writes and list are ``(j, 2**rate_bits)`` of every pixel with
  ``draws[t, j] < x[j]``, the draws of :func:`golden.model.rate_schedule` from the seed (and the
  spikes of :func:`golden.model.encode_rate`), for every image;
* the cycles: ``loaded`` exactly ``LOADED_DELAY`` after the ``M``-th transfer, ``drawn``
  exactly ``M + DRAW_CYCLES_EXTRA`` after ``draw``, each a one-cycle pulse; no write outside
  a phase; ``i.ready`` low whenever ``load`` is low or the image is complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Shape, unsigned
from amaranth.lib import data, memory

from golden.constants import LFSR_SEED_DEFAULT, MODE_CURRENT, MODE_RATE, STEPS_BITS
from golden.model import encode_rate, rate_schedule
from hw.core import memory_shape
from hw.geometry import DRAW_DRAIN, CoreGeometry
from hw.input_encoder import InputEncoder, list_entry
from sim.streams import send, simulate

#: (inputs, pixel_max, rate_bits) of the digits and of MNIST.
DIGITS = (64, 16, 4)
MNIST = (784, 255, 8)


def encoder_params(inputs: int, pixel_max: int, rate_bits: int, *, read_ahead: bool,
                   seed: int = LFSR_SEED_DEFAULT, index_bits: int | None = None) -> dict:
    """The encoder's parameters for a geometry, as the engine derives them."""
    pixel_bits = max(1, pixel_max.bit_length())
    return {"inputs": inputs, "pixel_bits": pixel_bits, "rate_bits": rate_bits,
            "lfsr_seed": seed, "x_bits": max(pixel_bits, rate_bits + 1),
            "index_bits": index_bits or max(1, (inputs - 1).bit_length()),
            "read_ahead": read_ahead}


class Bench(Elaboratable):
    """The encoder and the list memory it writes (the engine's ``lst_mem``)."""

    def __init__(self, **params):
        self.enc = InputEncoder(**params)
        self.lst_mem = memory.Memory(shape=self.enc.entry, depth=self.enc.inputs, init=[])

    def elaborate(self, platform) -> Module:
        m = Module()
        enc = m.submodules.enc = self.enc
        m.submodules.lst_mem = self.lst_mem
        wr = self.lst_mem.write_port()
        m.d.comb += [wr.addr.eq(enc.lst_addr), wr.data.eq(enc.lst_data), wr.en.eq(enc.lst_en)]
        return m


@dataclass
class Image:
    """One image as the engine sends it, and how the driver paces it."""

    pixels: np.ndarray
    steps: int
    mode: int
    #: ``draw`` pulses (rate mode): default ``max(steps, 1)``.
    draws: int | None = None
    #: Idle cycles before each pixel (``send``'s ``idle``): a probability or a list.
    idle: float | list[int] = 0.0
    #: Cycles between ``drawn`` (or ``loaded`` + 1) and the next ``draw``.
    draw_gap: int = 0
    #: Cycles pixel 0 is offered with ``load`` low before the load begins.
    pre_offer: int = 0

    @property
    def steps_drawn(self) -> int:
        if self.mode != MODE_RATE:
            return 0
        return max(self.steps, 1) if self.draws is None else self.draws


@dataclass
class Seen:
    """What the driver read after each phase, per image."""

    loaded: list[dict] = field(default_factory=list)  # count, last_step, rate, list
    steps: list[list[tuple[int, list]]] = field(default_factory=list)  # per image: (count, list)


@dataclass
class Edges:
    """What the background monitor saw, by clock edge (numbered from 0, as the stream monitor)."""

    loaded: list[int] = field(default_factory=list)
    draw: list[int] = field(default_factory=list)
    drawn: list[int] = field(default_factory=list)
    writes: list[tuple[int, int, int, int]] = field(default_factory=list)  # (edge, addr, j, x)


def idle_cycles(rng, idle: float | list[int], count: int) -> list[int]:
    """Idle cycles before each of ``count`` pixels: as given, or drawn (each further idle cycle
    with probability ``idle``)."""
    if not isinstance(idle, float):
        return list(idle)
    cycles = []
    for _ in range(count):
        n = 0
        while rng.random() < idle:
            n += 1
        cycles.append(n)
    return cycles


def read_list(ctx, bench: Bench, count: int) -> list[tuple[int, int]]:
    """Entries ``0 .. count - 1`` of the list memory, as ``(j, x)``."""
    entries = [ctx.get(bench.lst_mem.data[k]) for k in range(count)]
    return [(int(e.j), int(e.x)) for e in entries]


def run(bench: Bench, images: list[Image], rng_seed: int = 0) -> tuple[Seen, Edges, list]:
    """Send ``images`` through ``bench`` as the engine does; returns what was seen, the
    monitor's edges and the pixel transfers."""
    enc, M = bench.enc, bench.enc.inputs
    seen, edges = Seen(), Edges()
    rng = np.random.default_rng(rng_seed)

    async def driver(ctx) -> None:
        for n, image in enumerate(images):
            # Pixels after the first carry junk steps and mode: only pixel 0's count.
            payloads = [{"pixel": int(x),
                         "steps": image.steps if j == 0 else int(rng.integers(0, 1 << 16)),
                         "mode": image.mode if j == 0 else int(rng.integers(0, 2))}
                        for j, x in enumerate(image.pixels)]
            if image.pre_offer:
                ctx.set(enc.i.valid, 1)
                ctx.set(enc.i.payload, payloads[0])
                for _ in range(image.pre_offer):
                    assert ctx.get(enc.i.ready) == 0
                    await ctx.tick()
            ctx.set(enc.load, 1)
            idle = idle_cycles(rng, image.idle, M)
            if image.pre_offer:
                idle[0] = 0  # pixel 0 stays on offer
            await send(ctx, enc.i, payloads, idle=idle, seed=[rng_seed, n], junk=True)
            # The cycle after the M-th transfer: loaded, and no more pixels taken.
            assert ctx.get(enc.loaded) == 1
            assert ctx.get(enc.i.ready) == 0
            count = ctx.get(enc.count)
            seen.loaded.append({"count": count, "last_step": ctx.get(enc.last_step),
                                "rate": ctx.get(enc.rate), "list": read_list(ctx, bench, count)})
            await ctx.tick()
            ctx.set(enc.load, 0)  # the sequencer leaves LOAD
            steps = []
            for _ in range(image.steps_drawn):
                for _ in range(image.draw_gap):
                    await ctx.tick()
                ctx.set(enc.draw, 1)
                await ctx.tick()
                ctx.set(enc.draw, 0)
                while not ctx.get(enc.drawn):
                    await ctx.tick()
                # In the cycle of drawn the list is whole in memory; the next draw may be now.
                count = ctx.get(enc.count)
                steps.append((count, read_list(ctx, bench, count)))
            seen.steps.append(steps)
            for _ in range(3):
                await ctx.tick()

    async def monitor(ctx) -> None:
        edge = 0
        async for _, _, *values in ctx.tick().sample(
                enc.loaded, enc.draw, enc.drawn, enc.lst_en, enc.lst_addr, enc.lst_data,
                enc.load, enc.i.ready):
            loaded, draw, drawn, en, addr, entry, load, ready = values
            assert load or not ready, f"i.ready high without load at edge {edge}"
            for flag, where in ((loaded, edges.loaded), (draw, edges.draw),
                                (drawn, edges.drawn)):
                if flag:
                    where.append(edge)
            if en:
                edges.writes.append((edge, int(addr), int(entry.j), int(entry.x)))
            edge += 1

    monitors = simulate(bench, driver, watch={"i": enc.i}, background=[monitor])
    return seen, edges, monitors["i"].transfers


def expected_lists(image: Image, rate_bits: int, seed: int) -> tuple[list, list[list]]:
    """The golden lists: the load's (constant current) and every drawn step's (rate mode)."""
    x = np.asarray(image.pixels, dtype=np.int64)
    if image.mode == MODE_CURRENT:
        return [(j, int(x[j])) for j in np.flatnonzero(x)], []
    T = image.steps_drawn
    draws = rate_schedule(None, seed, T, 1, len(x), rate_bits)[:, 0, :]
    lists = []
    for t in range(T):
        spikes = encode_rate(x[None, :], draws[t], rate_bits)[0]
        listed = [(j, 1 << rate_bits) for j in np.flatnonzero(draws[t] < x)]
        assert listed == [(j, int(spikes[j])) for j in np.flatnonzero(spikes)]
        lists.append(listed)
    return [], lists


def check(bench: Bench, images: list[Image], rng_seed: int = 0) -> Seen:
    """Run ``images`` and hold every list, count and cycle to the golden model."""
    enc, M = bench.enc, bench.enc.inputs
    seen, edges, transfers = run(bench, images, rng_seed)
    assert len(transfers) == M * len(images)
    assert len(edges.loaded) == len(images)
    assert len(edges.draw) == len(edges.drawn) == sum(im.steps_drawn for im in images)
    writes, phases, s = list(edges.writes), 0, 0
    for n, image in enumerate(images):
        mine = transfers[n * M:(n + 1) * M]
        assert [t.payload["pixel"] for t in mine] == [int(x) for x in image.pixels]
        # loaded: one cycle, LOADED_DELAY after the M-th transfer
        assert edges.loaded[n] == mine[-1].cycle + InputEncoder.LOADED_DELAY
        load_list, step_lists = expected_lists(image, enc.rate_bits, enc.lfsr_seed)
        got = seen.loaded[n]
        assert got["last_step"] == max(image.steps, 1) - 1
        assert got["rate"] == (image.mode == MODE_RATE)
        assert got["count"] == len(load_list)
        if image.mode == MODE_CURRENT:
            assert got["list"] == load_list
        in_load = [w for w in writes if mine[0].cycle <= w[0] < edges.loaded[n]]
        assert [w[1:] for w in in_load] == [(k, *e) for k, e in enumerate(load_list)]
        phases += len(in_load)
        for t, want in enumerate(step_lists):
            draw, drawn = edges.draw[s], edges.drawn[s]
            assert drawn - draw == M + InputEncoder.DRAW_CYCLES_EXTRA
            assert seen.steps[n][t] == (len(want), want), (n, t)
            in_step = [w for w in writes if draw <= w[0] < drawn]
            assert [w[1:] for w in in_step] == [(k, *e) for k, e in enumerate(want)], (n, t)
            phases += len(in_step)
            s += 1
    assert phases == len(writes), "a list write outside LOAD or DRAW"
    return seen


def random_pixels(rng, inputs: int, pixel_max: int, zeros: float = 0.5) -> np.ndarray:
    """Pixels in ``0 .. pixel_max`` with the extremes and about ``zeros`` of them 0."""
    x = rng.integers(0, pixel_max + 1, inputs)
    x[rng.random(inputs) < zeros] = 0
    x[rng.choice(inputs, 4, replace=False)] = pixel_max
    return x


# --- parameters and interface -----------------------------------------------------------------


def test_entry_is_the_single_layer_cores(shipped):
    net, manifest = shipped
    geo = CoreGeometry.of(net, pixel_max=manifest["pixel_max"], lanes=16)
    enc = InputEncoder(inputs=net.inputs, pixel_bits=geo.pixel_bits, rate_bits=net.rate_bits,
                       lfsr_seed=net.lfsr_seed, index_bits=geo.index_bits, x_bits=geo.x_bits,
                       read_ahead=geo.pixel_read_ahead)
    assert enc.entry == memory_shape(geo.memory("lst_mem"))
    assert enc.entry == list_entry(geo.index_bits, geo.x_bits)
    assert enc.entry["j"].offset == 0  # j in the low bits
    assert enc.signature.members["lst_data"].shape == enc.entry
    assert Shape.cast(enc.signature.members["count"].shape) == unsigned(net.inputs.bit_length())
    assert enc.i_layout == data.StructLayout({
        "pixel": unsigned(geo.pixel_bits), "steps": unsigned(STEPS_BITS), "mode": unsigned(1)})


def test_draw_timing_is_the_single_layer_cores():
    # M cycles of draws plus LifCore's DRAW_DRAIN, and loaded the cycle after the last pixel
    assert InputEncoder.DRAW_CYCLES_EXTRA == DRAW_DRAIN == 2
    assert InputEncoder.LOADED_DELAY == 1


@pytest.mark.parametrize(("change", "error"), [
    ({"inputs": 1}, ValueError), ({"inputs": 64.0}, TypeError), ({"pixel_bits": 0}, ValueError),
    ({"rate_bits": 0}, ValueError), ({"rate_bits": 9}, ValueError),
    ({"index_bits": 5}, ValueError), ({"x_bits": 4}, ValueError),
    ({"lfsr_seed": 0}, ValueError), ({"lfsr_seed": 1 << 32}, ValueError),
    ({"index_bits": True}, TypeError),
])
def test_bad_parameters(change, error):
    params = {**encoder_params(*DIGITS, read_ahead=False), **change}
    with pytest.raises(error):
        InputEncoder(**params)


# --- behaviour ---------------------------------------------------------------------------------


@pytest.mark.parametrize("read_ahead", [False, True])
def test_constant_current(read_ahead):
    M, pixel_max, rate_bits = DIGITS
    rng = np.random.default_rng(1)
    only_last = np.zeros(M, np.int64)
    only_last[-1] = 3
    only_first = np.zeros(M, np.int64)
    only_first[0] = 1
    images = [
        Image(random_pixels(rng, M, pixel_max), 32, MODE_CURRENT),
        Image(np.zeros(M, np.int64), 5, MODE_CURRENT, pre_offer=3),  # count 0
        Image(np.full(M, pixel_max), 0, MODE_CURRENT),  # count M; steps 0 counts as 1
        Image(only_last, 1, MODE_CURRENT, idle=0.3),
        Image(only_first, (1 << STEPS_BITS) - 1, MODE_CURRENT, pre_offer=1),
        Image(random_pixels(rng, M, pixel_max, 0.8), 7, MODE_CURRENT, idle=0.5),
    ]
    seen = check(Bench(**encoder_params(*DIGITS, read_ahead=read_ahead)), images)
    assert [s["count"] for s in seen.loaded[1:5]] == [0, M, 1, 1]


@pytest.mark.parametrize("read_ahead", [False, True])
def test_rate_mode_against_golden(read_ahead):
    M, pixel_max, rate_bits = DIGITS
    rng = np.random.default_rng(2)
    seed = 0x2545F491
    first = random_pixels(rng, M, pixel_max, 0.3)
    images = [
        # several steps, the next draw in the cycle of drawn
        Image(first, 6, MODE_RATE),
        # back to back: restarts from the seed, though the LFSR has moved on (same pixels: the
        # same lists again); draws some cycles apart, stalls on i
        Image(first, 3, MODE_RATE, draw_gap=4, idle=0.3, pre_offer=2),
        # extremes: 0 never spikes, 2**rate_bits always does
        Image(np.array([0, 1 << rate_bits] * (M // 2)), 2, MODE_RATE),
        # a constant-current image between two rate images, then fewer draws than steps
        Image(random_pixels(rng, M, pixel_max), 4, MODE_CURRENT),
        Image(random_pixels(rng, M, pixel_max, 0.1), 9, MODE_RATE, draws=2, draw_gap=1),
        Image(random_pixels(rng, M, pixel_max, 0.1), 0, MODE_RATE, idle=[2] * M),
    ]
    bench = Bench(**encoder_params(*DIGITS, read_ahead=read_ahead, seed=seed, index_bits=9))
    seen = check(bench, images)
    assert seen.steps[0][:3] == seen.steps[1]
    assert seen.steps[2] == [(M // 2, [(j, 1 << rate_bits) for j in range(1, M, 2)])] * 2
    assert len({tuple(lst) for _, lst in seen.steps[0]}) == 6  # every step draws anew


@pytest.mark.parametrize("read_ahead", [False, True])
def test_mnist_sizes(read_ahead):
    M, pixel_max, rate_bits = MNIST
    rng = np.random.default_rng(3)
    pixels = random_pixels(rng, M, pixel_max, 0.8)
    images = [Image(pixels, 2, MODE_RATE, idle=0.05), Image(pixels, 30, MODE_CURRENT)]
    check(Bench(**encoder_params(*MNIST, read_ahead=read_ahead)), images)


def test_exact_cycles():
    # the sequencer's pace: draw at loaded + 1, the next draw in the cycle of drawn
    M = DIGITS[0]
    bench = Bench(**encoder_params(*DIGITS, read_ahead=True))
    image = Image(np.arange(M) % 17, 3, MODE_RATE, idle=[0] * (M - 1) + [5])
    _, edges, transfers = run(bench, [image])
    last = transfers[-1].cycle
    assert edges.loaded == [last + 1]
    assert edges.draw == [last + 2, last + 2 + (M + 2), last + 2 + 2 * (M + 2)]
    assert edges.drawn == [d + M + 2 for d in edges.draw]
