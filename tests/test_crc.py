"""hw/crc.py: the gateware's CRC algorithm computes golden.protocol.crc16, in software and in
Amaranth's simulator."""

import numpy as np
from amaranth.hdl import Module
from amaranth.lib.crc import Processor
from amaranth.sim import Simulator

from golden import protocol
from hw.crc import CRC_ALGORITHM


def test_catalogue_algorithm_equals_the_host_crc():
    crc = CRC_ALGORITHM(data_width=8)
    assert crc.compute(b"123456789") == protocol.CRC_CHECK == protocol.crc16(b"123456789")
    rng = np.random.default_rng(1)
    for n in (0, 1, 2, 5, 64, 300, 1031):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert crc.compute(data) == protocol.crc16(data)


def test_the_crc_processor_in_gateware_equals_the_host_crc():
    data = np.random.default_rng(2).integers(0, 256, 40, dtype=np.uint8).tobytes()
    m = Module()
    m.submodules.crc = dut = Processor(CRC_ALGORITHM(data_width=8))
    seen = []

    async def bench(ctx):
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for byte in data:
            ctx.set(dut.data, byte)
            ctx.set(dut.valid, 1)
            await ctx.tick()
            seen.append(ctx.get(dut.crc))
        ctx.set(dut.valid, 0)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [protocol.crc16(data[:k + 1]) for k in range(len(data))]
