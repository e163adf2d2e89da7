"""hw/stream_register.py in Amaranth's simulator: every transfer comes out once, in order,
one cycle later at full rate, under random idle cycles and back-pressure; the stream rules are
checked on both sides (sim.streams)."""

import numpy as np
import pytest
from amaranth.lib import data

from hw.stream_register import StreamRegister
from sim.streams import receive, send, simulate

LAYOUT = data.StructLayout({"pixel": 8, "steps": 16})


@pytest.mark.parametrize("idle, stall", [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.4, 0.4)])
def test_transfers_come_out_in_order(idle, stall):
    rng = np.random.default_rng(7)
    sent = [{"pixel": int(a), "steps": int(b)}
            for a, b in zip(rng.integers(0, 256, 300), rng.integers(0, 1 << 16, 300),
                            strict=True)]
    dut = StreamRegister(LAYOUT)
    got = []

    async def producer(ctx):
        await send(ctx, dut.i, sent, idle=idle, seed=1, deadline=5_000)

    async def consumer(ctx):
        got.extend(await receive(ctx, dut.o, len(sent), stall=stall, seed=2, deadline=5_000))

    seen = simulate(dut, producer, consumer)
    assert got == sent
    assert seen["o"].payloads == sent


def test_full_rate_one_cycle_later():
    dut = StreamRegister(8)
    values = list(range(1, 41))

    async def producer(ctx):
        await send(ctx, dut.i, values, deadline=200)

    async def consumer(ctx):
        await receive(ctx, dut.o, len(values), deadline=200)

    seen = simulate(dut, producer, consumer)
    ins, outs = seen["i"].cycles, seen["o"].cycles
    assert outs == [c + 1 for c in ins]
    assert ins == list(range(ins[0], ins[0] + len(values)))  # one per cycle, no bubble
