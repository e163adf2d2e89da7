# amaranth: UnusedElaboratable=no
"""sim/streams.py: a correct FIFO passes; rule breakers and hangs are caught (Amaranth sim)."""

import asyncio

import pytest
from amaranth.hdl import ClockDomain, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import Out
from amaranth.sim import Simulator

from sim.streams import (
    StreamMonitor,
    StreamRuleError,
    StreamTimeout,
    Transfer,
    plain,
    receive,
    send,
    simulate,
    sink,
    stream_ports,
)

PIXEL = data.StructLayout({"value": 8, "first": 1, "pair": data.ArrayLayout(4, 2)})


def run(dut, *testbenches, watch=()):
    """Simulate ``dut`` with ``testbenches``; returns a monitor per stream in ``watch``."""
    monitors = simulate(dut, *testbenches, watch={f"watch{n}": s for n, s in enumerate(watch)})
    return list(monitors.values())


class Chain(wiring.Component):
    """Two FIFOs in a row: the stream between them is internal."""

    def __init__(self, width):
        self.first = SyncFIFOBuffered(width=width, depth=3)
        self.second = SyncFIFOBuffered(width=width, depth=2)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.first, m.submodules.second = self.first, self.second
        wiring.connect(m, self.first.r_stream, self.second.w_stream)
        return m


class Producer(wiring.Component):
    """Toy producers, each breaking one rule (or none: ``"good"`` counts 0, 1, ... by the rules).
    """

    o: Out(stream.Signature(8))

    def __init__(self, flaw):
        self.flaw = flaw
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain()  # clocked even when the flaw needs no register
        count = Signal(8)
        if self.flaw == "drops_valid":  # valid for one cycle in three, ready or not
            phase = Signal(2)
            m.d.sync += phase.eq((phase + 1) % 3)
            m.d.comb += [self.o.valid.eq(phase == 0), self.o.payload.eq(7)]
        elif self.flaw == "changes_payload":  # always valid, counting whether taken or not
            m.d.sync += count.eq(count + 1)
            m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(count)]
        elif self.flaw == "waits_for_ready":  # valid only when ready
            m.d.comb += [self.o.valid.eq(self.o.ready), self.o.payload.eq(5)]
        else:
            with m.If(self.o.ready):
                m.d.sync += count.eq(count + 1)
            m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(count)]
        return m


@pytest.mark.parametrize(("idle", "stall"), [(0.0, 0.0), (0.5, 0.0), (0.0, 0.7), (0.4, 0.6)])
def test_fifo_passes_and_transfers_are_recorded(idle, stall):
    dut = SyncFIFOBuffered(width=8, depth=4)
    values = [(n * 37) % 256 for n in range(60)]
    got = []

    async def producer(ctx):
        await send(ctx, dut.w_stream, values, idle=idle, seed=1, junk=True)

    async def consumer(ctx):
        got.extend(await receive(ctx, dut.r_stream, len(values), stall=stall, seed=2,
                                 deadline=2000))

    w, r = run(dut, producer, consumer, watch=(dut.w_stream, dut.r_stream))
    assert got == values == w.payloads == r.payloads
    # Each value leaves after it entered; with no gaps or stalls one transfer per cycle.
    assert all(rc > wc for wc, rc in zip(w.cycles, r.cycles, strict=True))
    if idle == stall == 0.0:
        assert w.cycles == list(range(len(values)))
    else:
        assert r.cycles[-1] > len(values) + 20  # the gaps and stalls really happened


def test_struct_payloads_through_an_internal_stream():
    dut = Chain(PIXEL.size)
    values = [{"value": n, "first": n % 2, "pair": [n % 16, (n * 3) % 16]} for n in range(40)]
    got = []

    async def producer(ctx):
        # A struct payload over a FIFO's raw bits: pack it with the layout.
        raw = [PIXEL.const(v).as_value().value for v in values]
        await send(ctx, dut.first.w_stream, raw, idle=0.3, seed=3)

    async def consumer(ctx):
        got.extend(await receive(ctx, dut.second.r_stream, len(values), stall=0.5, seed=4))

    (inner,) = run(dut, producer, consumer, watch=(dut.first.r_stream,))
    assert [plain(data.Const(PIXEL, raw)) for raw in got] == values
    assert inner.payloads == got


def test_plain_struct_and_send_of_dicts():
    # A struct-typed stream, driven with dicts and returned as dicts.
    class Loop(wiring.Component):
        i: wiring.In(stream.Signature(PIXEL))
        o: Out(stream.Signature(PIXEL))

        def elaborate(self, platform):
            m = Module()
            m.domains.sync = ClockDomain()
            wiring.connect(m, wiring.flipped(self.i), wiring.flipped(self.o))
            return m

    dut = Loop()
    values = [{"value": 200 + n, "first": 1 - n % 2, "pair": [n, 15 - n]} for n in range(8)]
    got = []

    async def producer(ctx):
        await send(ctx, dut.i, values, idle=0.5, seed=5, junk=True)

    async def consumer(ctx):
        got.extend(await receive(ctx, dut.o, len(values), stall=0.5, seed=6))

    (mon,) = run(dut, producer, consumer, watch=(dut.o,))
    assert got == values == mon.payloads
    assert isinstance(mon.transfers[0], Transfer)


def test_until_and_stall_callable():
    dut = Producer("good")
    got = []

    async def consumer(ctx):
        # ready low for cycles 0..9, then high: the first transfer is at edge 10.
        got.extend(await receive(ctx, dut.o, until=lambda p: p == 4, stall=lambda c: c < 10))

    (mon,) = run(dut, consumer, watch=(dut.o,))
    assert got == [0, 1, 2, 3, 4]
    assert mon.cycles == [10, 11, 12, 13, 14]


def test_max_stall_bounds_ready_low_runs():
    dut = Producer("good")

    async def consumer(ctx):
        await receive(ctx, dut.o, 30, stall=1.0, max_stall=3)

    (mon,) = run(dut, consumer, watch=(dut.o,))
    assert mon.cycles == [4 * n + 3 for n in range(30)]


def test_sink_runs_in_the_background():
    dut = SyncFIFOBuffered(width=8, depth=2)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    mon = StreamMonitor(dut.r_stream).attach(sim)

    async def producer(ctx):
        await send(ctx, dut.w_stream, range(20))
        await ctx.tick().repeat(5)

    async def consumer(ctx):
        await sink(ctx, dut.r_stream, stall=0.5, seed=7)

    sim.add_testbench(producer)
    sim.add_testbench(consumer, background=True)
    sim.run()
    assert mon.payloads == list(range(20))


@pytest.mark.parametrize(("flaw", "match"), [
    ("drops_valid", "valid dropped"),
    ("changes_payload", "payload changed"),
])
def test_monitor_catches_a_producer_breaking_rule_2(flaw, match):
    dut = Producer(flaw)

    async def consumer(ctx):
        await receive(ctx, dut.o, 5, stall=lambda c: c < 6, deadline=50)

    with pytest.raises(StreamRuleError, match=match):
        run(dut, consumer, watch=(dut.o,))


def test_receiver_catches_valid_waiting_for_ready():
    dut = Producer("waits_for_ready")

    async def consumer(ctx):
        await receive(ctx, dut.o, 5)

    with pytest.raises(StreamRuleError, match="rule 3"):
        run(dut, consumer)


def test_the_good_producer_passes_the_same_checks():
    # The broken producers above fail only for their flaw: the same harness passes this one.
    dut = Producer("good")
    got = []

    async def consumer(ctx):
        got.extend(await receive(ctx, dut.o, 5, stall=lambda c: c < 6, deadline=50))

    run(dut, consumer, watch=(dut.o,))
    assert got == [0, 1, 2, 3, 4]


def test_receive_deadline_fails_instead_of_hanging():
    dut = SyncFIFOBuffered(width=8, depth=4)

    async def producer(ctx):
        await send(ctx, dut.w_stream, [1, 2, 3])

    async def consumer(ctx):
        await receive(ctx, dut.r_stream, 4, deadline=100)  # only 3 ever come

    with pytest.raises(StreamTimeout, match="3 payloads in 100 cycles"):
        run(dut, producer, consumer)


def test_send_deadline_fails_instead_of_hanging():
    dut = SyncFIFOBuffered(width=8, depth=4)

    async def producer(ctx):
        await send(ctx, dut.w_stream, range(10), deadline=100)  # nobody reads: full after 4

    with pytest.raises(StreamTimeout, match="payload 4 not taken"):
        run(dut, producer)


def test_on_cycle_drives_sideband_with_each_payload():
    dut = SyncFIFOBuffered(width=8, depth=4)
    seen = []

    def on_cycle(ctx, index, rng):
        seen.append(index)

    async def producer(ctx):
        await send(ctx, dut.w_stream, [9, 8], idle=0.5, seed=11, on_cycle=on_cycle)

    run(dut, producer)
    assert [i for i in seen if i is not None] == [0, 1]
    assert None in seen  # the seed gives idle cycles


def test_receive_needs_a_stop_condition():
    with pytest.raises(ValueError, match="count or until"):
        asyncio.run(receive(None, None))


def test_simulate_watches_every_stream_port_by_default(tmp_path):
    dut = SyncFIFOBuffered(width=8, depth=4)
    assert set(stream_ports(dut)) == {"w_stream", "r_stream"}
    got = []

    async def producer(ctx):
        await send(ctx, dut.w_stream, [3, 1, 4, 1, 5])

    async def consumer(ctx):
        got.extend(await receive(ctx, dut.r_stream, 5, stall=0.5, seed=1))

    seen = simulate(dut, producer, consumer, vcd=str(tmp_path / "fifo.vcd"))
    assert got == seen["w_stream"].payloads == seen["r_stream"].payloads == [3, 1, 4, 1, 5]
    assert (tmp_path / "fifo.vcd").stat().st_size > 0


def test_idle_as_exact_counts():
    dut = SyncFIFOBuffered(width=8, depth=4)

    async def producer(ctx):
        await send(ctx, dut.w_stream, [5, 6, 7], idle=[2, 0, 3])

    (w,) = run(dut, producer, watch=(dut.w_stream,))
    assert w.cycles == [2, 3, 7]


@pytest.mark.parametrize("idle", [1, 1.0, -0.1])
def test_idle_probability_is_checked(idle):
    dut = SyncFIFOBuffered(width=8, depth=4)

    async def producer(ctx):
        await send(ctx, dut.w_stream, [1], idle=idle)

    with pytest.raises(ValueError, match="probability"):
        run(dut, producer)
