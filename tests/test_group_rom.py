# amaranth: UnusedElaboratable=no
"""hw/group_rom.py: a per-group ROM reads ``init[addr]`` one cycle after ``addr``, in both of
its forms (a memory up to GROUP_ROM_CHUNK words, chunks beyond), for word layouts the engine
uses (unsigned lanes, signed struct lanes)."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from hw.core import built_memories
from hw.geometry import GROUP_ROM_CHUNK
from hw.group_rom import GroupRom
from sim.streams import simulate

LANES = 4
THRESHOLDS = data.ArrayLayout(unsigned(11), LANES)
PARAMS = data.ArrayLayout(data.StructLayout({"bias": signed(9), "shift": signed(5)}), LANES)


def words(rng, layout, depth):
    if layout is THRESHOLDS:
        return rng.integers(0, 1 << 11, (depth, LANES)).tolist()
    return [[{"bias": int(rng.integers(-256, 256)), "shift": int(rng.integers(-16, 16))}
             for _ in range(LANES)] for _ in range(depth)]


def read_all(rom, order):
    got = []

    async def tb(ctx):
        for addr in order:
            ctx.set(rom.addr, addr)
            await ctx.tick()
            word = as_python([ctx.get(rom.data)[p] for p in range(LANES)])
            # the word of the address set before the edge: changing it now changes nothing
            ctx.set(rom.addr, (addr + 1) % rom.depth)
            assert as_python([ctx.get(rom.data)[p] for p in range(LANES)]) == word
            got.append(word)

    simulate(rom, tb)
    return got


def as_python(value):
    if isinstance(value, list):
        return [as_python(v) for v in value]
    if hasattr(value, "bias"):
        return {"bias": value.bias, "shift": value.shift}
    return value


@pytest.mark.parametrize("layout", [THRESHOLDS, PARAMS], ids=["unsigned", "struct"])
@pytest.mark.parametrize("depth", [1, 5, GROUP_ROM_CHUNK, GROUP_ROM_CHUNK + 1, 49, 70])
def test_reads_the_word_addressed_the_cycle_before(layout, depth):
    rng = np.random.default_rng(depth)
    init = words(rng, layout, depth)
    rom = GroupRom(layout, init)
    assert rom.chunks == -(-depth // GROUP_ROM_CHUNK)
    order = [*range(depth), *rng.integers(0, depth, 3 * depth).tolist(), depth - 1, 0]
    got = read_all(rom, order)
    assert got == [init[a] for a in order]


@pytest.mark.parametrize(("depth", "memories"), [(GROUP_ROM_CHUNK, {"rom": (44, 16)}),
                                                 (GROUP_ROM_CHUNK + 1, {})])
def test_a_deep_rom_is_logic_not_a_memory(depth, memories):
    # A memory up to one chunk (LUTs behind a register: 105 MHz for the digits); deeper, its
    # chunks (the memory's mux tree limited the MNIST image to 89.0 MHz).
    rom = GroupRom(THRESHOLDS, [[1] * LANES] * depth)
    assert built_memories(rom) == memories


def test_an_empty_rom_is_refused():
    with pytest.raises(ValueError, match="at least one word"):
        GroupRom(THRESHOLDS, [])
