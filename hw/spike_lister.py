"""The spike lister of the engine: a layer's spikes into its spike list, and the spike count.

During a layer's neuron phase the neuron stage offers one transfer per group, in group order
(``hw/neuron_stage.py``): the group's ``P`` spike bits. The lister appends every group that
spiked to the layer's region of the spike-list memory (``spk_mem``, owned by the engine and read
by ``hw/event_source.py``)::

    entry[base_l + n] = (g, spikes of group g)          n = 0, 1, ... for each g with a spike

so the next layer's events (and the layer's own recurrent events at the next step) are exactly
the neurons that spiked: ``golden.layers.run``'s ``s_l``. ``counts[l]``, the layer's entries,
is valid from the cycle after its last group's transfer until its next phase begins.

It also counts every spike of the image (``spike_count``, cleared by ``clear``): the group's
bits are summed in a register and added the cycle after, off the lister's write path.

Timing: ``begin`` (a pulse with ``layer`` valid, in or before the cycle of the phase's first
transfer on ``i``, after the previous phase's last) starts the layer's list; each transfer is
written in its own cycle; ``i.ready`` is always high.
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.constants import COUNT_BITS

__all__ = ["SpikeLister", "spike_entry"]


def spike_entry(group_bits: int, lanes: int) -> data.StructLayout:
    """An entry of the spike list: a group and its spikes (bit ``p``: neuron ``g * P + p``)."""
    return data.StructLayout({"group": unsigned(group_bits), "word": unsigned(lanes)})


class SpikeLister(wiring.Component):
    """Appends the groups that spiked to their layer's spike list; counts the spikes.

    Parameters
    ----------
    group_bases : sequence of int
        Per layer, its region's first entry in ``spk_mem`` (its ``group_base``).
    groups : sequence of int
        Per layer, ``G_l`` (its region's size).
    lanes : int
        ``P``.
    result : data.StructLayout
        The neuron stage's result layout (``layer``, ``addr``, ``spikes``).

    Members
    -------
    clear : :py:`In(1)`
        A pulse at an image's start: ``spike_count`` to 0.
    begin : :py:`In(1)`
        A pulse as a layer's neuron phase begins (with ``layer``).
    layer : :py:`In(range(L))`
        The phase's layer, held during it.
    i : :py:`In(stream.Signature(result))`
        The neuron stage's groups; always ready.
    spk_addr, spk_data, spk_en : :py:`Out`
        The spike-list memory's write port.
    counts : :py:`Out(data.ArrayLayout(range(G + 1), L))`
        Entries of each layer's list.
    spike_count : :py:`Out(COUNT_BITS)`
        Spikes of the image so far (every layer).
    """

    def __init__(self, *, group_bases, groups, lanes: int, result):
        self.group_bases, self.groups, self.lanes = tuple(group_bases), tuple(groups), lanes
        layers = len(self.groups)
        depth = sum(self.groups)
        self.depth = depth
        self.group_bits = max(1, (max(self.groups) - 1).bit_length())
        self.entry = spike_entry(self.group_bits, lanes)
        super().__init__({
            "clear": In(1),
            "begin": In(1),
            "layer": In(range(max(2, layers))),
            "i": In(stream.Signature(result)),
            "spk_addr": Out(range(max(2, depth))),
            "spk_data": Out(self.entry),
            "spk_en": Out(1),
            "counts": Out(data.ArrayLayout(range(max(self.groups) + 1), layers)),
            "spike_count": Out(COUNT_BITS),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.d.comb += self.i.ready.eq(1)
        base = Signal(range(max(2, self.depth)), name="list_base")
        entries = Signal(range(max(self.groups) + 1), name="list_entries")
        group = Signal(self.group_bits + 1, name="list_group")
        layer = Signal.like(self.layer, name="list_layer")
        bases = Array(Const(b, range(max(2, self.depth))) for b in self.group_bases)
        transfer = self.i.valid
        spiked = self.i.p.spikes != 0
        # a phase's first transfer may come in the cycle of its begin
        now_base, now_entries, now_group, now_layer = (
            Mux(self.begin, bases[self.layer], base), Mux(self.begin, 0, entries),
            Mux(self.begin, 0, group), Mux(self.begin, self.layer, layer))
        with m.If(self.begin):
            m.d.sync += [base.eq(now_base), layer.eq(now_layer)]
        with m.If(transfer):
            m.d.sync += [group.eq(now_group + 1), entries.eq(now_entries + spiked),
                         self.counts[now_layer].eq(now_entries + spiked)]
        with m.Elif(self.begin):
            m.d.sync += [entries.eq(0), group.eq(0), self.counts[self.layer].eq(0)]
        m.d.comb += [self.spk_addr.eq(now_base + now_entries), self.spk_data.group.eq(now_group),
                     self.spk_data.word.eq(self.i.p.spikes), self.spk_en.eq(transfer & spiked)]
        # the spike count: the group's bits summed into a register, added the cycle after
        added = Signal(range(self.lanes + 1), name="spikes_added")
        m.d.sync += added.eq(Mux(transfer, sum(self.i.p.spikes[p] for p in range(self.lanes)),
                                 0))
        with m.If(self.clear):  # a new image: no spikes yet, no list (no step -1 spikes)
            m.d.sync += self.spike_count.eq(0)
            m.d.sync += [self.counts[k].eq(0) for k in range(len(self.groups))]
        with m.Else():
            m.d.sync += self.spike_count.eq(self.spike_count + added)
        return m
