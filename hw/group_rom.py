"""A per-group ROM: one word of ``P`` values per neuron group, read one cycle after its address.

The engine's thresholds, leaks, biases and shifts are ROMs of one word per group (``depth`` =
the network's groups, the word ``P`` lanes wide). Their timing is a synchronous read port's::

    data(t + 1) = init[addr(t)]

A ROM of at most :data:`hw.geometry.GROUP_ROM_CHUNK` words is an ``amaranth.lib.memory``
ROM, which Yosys builds from LUTs behind a register. A deeper one, left to Yosys, became a
mux tree of about seven LUT levels behind one address register driving every LUT of a
word of ``P x 15`` bits: at 48 groups (784-512-256-10, ``P`` = 16) the thresholds' path
limited the MNIST image to 89.0 MHz on the ULX3S-85F, and in block RAM (whose output is slow)
to 82.5 MHz. So a deep ROM is built as ``ceil(depth / CHUNK)`` chunks of ``CHUNK`` words:

* cycle ``t``: every chunk looks up ``addr`` mod ``CHUNK`` (one LUT4 per bit at ``CHUNK`` =
  16) and registers its word; the chunk number ``addr // CHUNK`` is registered beside them;
* cycle ``t + 1``: ``data`` is the registered chunk number's word (a ``ceil(depth / CHUNK)``-way
  select of registers: one LUT level up to 4 chunks, two up to 16).

Both paths are about one LUT level from a register to a register, and the latency is that of a
read port, so the ROM's users see no difference between the two forms (but under reset, which
clears the chunked form's registers and not a memory's output; the engine reads no ROM word
during reset).
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Shape, Signal, Value
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .geometry import GROUP_ROM_CHUNK

# the chunk's word is the address's low bits
assert GROUP_ROM_CHUNK & (GROUP_ROM_CHUNK - 1) == 0, "GROUP_ROM_CHUNK must be a power of two"

__all__ = ["GroupRom"]


class GroupRom(wiring.Component):
    """A ROM of ``len(init)`` words of ``shape``, read one cycle after its address.

    Parameters
    ----------
    shape : ShapeCastable
        One word (e.g. ``data.ArrayLayout(unsigned(V_TH_BITS), P)``).
    init : sequence
        The words, each a value ``shape`` casts to a constant (as a ``Memory``'s ``init``).

    Attributes
    ----------
    depth : int
        Words.
    chunks : int
        Chunks of :data:`hw.geometry.GROUP_ROM_CHUNK` words (1: built as a ``Memory``).

    Members
    -------
    addr : :py:`In(addr_bits)`
        The word to read (``addr_bits`` = bits of ``depth - 1``, at least 1).
    data : :py:`Out(shape)`
        ``init[addr]`` of the cycle before.
    """

    def __init__(self, shape, init):
        self.shape, self.init = shape, list(init)
        self.depth = len(self.init)
        if self.depth == 0:
            raise ValueError("a group ROM needs at least one word")
        self.chunks = -(-self.depth // GROUP_ROM_CHUNK)
        self.addr_bits = max(1, (self.depth - 1).bit_length())
        super().__init__({"addr": In(self.addr_bits), "data": Out(shape)})

    def words(self) -> list[int]:
        """The words as unsigned integers of the word's width."""
        mask = (1 << Shape.cast(self.shape).width) - 1
        if hasattr(self.shape, "const"):  # a layout: its constant from a list or a dict
            return [Value.cast(self.shape.const(w)).value & mask for w in self.init]
        return [Const(w, Shape.cast(self.shape)).value & mask for w in self.init]

    def elaborate(self, platform) -> Module:
        m = Module()
        if self.chunks == 1:
            m.submodules.rom = rom = memory.Memory(shape=self.shape, depth=self.depth,
                                                   init=self.init)
            rd = rom.read_port()
            m.d.comb += [rd.addr.eq(self.addr), self.data.eq(rd.data)]
            return m
        width = Shape.cast(self.shape).width
        words = self.words()
        low = (GROUP_ROM_CHUNK - 1).bit_length()
        held = []
        for k in range(self.chunks):
            chunk = words[k * GROUP_ROM_CHUNK:(k + 1) * GROUP_ROM_CHUNK]
            table = Array(Const(w, width) for w in chunk)
            held.append(Signal(width, name=f"chunk{k}"))
            m.d.sync += held[k].eq(table[self.addr[:low]])
        which = Signal(range(self.chunks), name="chunk_sel")
        m.d.sync += which.eq(self.addr[low:])
        m.d.comb += self.data.eq(Array(held)[which])
        return m
