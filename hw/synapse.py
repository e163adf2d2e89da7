"""The synaptic stage of the engine: event-driven weight accumulation and the input current.

For every event ``(group g, input j, value x, rec)`` of a pass (``hw/event_source.py``), the
``P`` lanes add the weights of input ``j`` into target group ``g``'s neurons times ``x``; a
pass's sum starts from the neurons' biases, and at its last event the ``P`` totals become
currents (``golden.layers.layer_current``)::

    acc[p] = bias[n] + sum over the pass's events of W[n, j] * x      n = g * P + p, exact
    I[p]   = sat_I(shift(acc[p], w_shift[n]))                         CurrentLane

``W`` is the layer's feed-forward weight matrix (``rec = 0``: pixels or the spikes of the layer
before) or its recurrent one (``rec = 1``: its own spikes of the previous step). Only inputs
that are nonzero or neurons that spiked are events, so the sum is exact: a zero input would add
nothing. An empty pass (one event with ``x = 0``) gives ``I = sat_I(shift(bias, w_shift))``.

The weights of every layer share one memory (``w_mem``, or banks ``w_mem0`` ...: one word of
``P`` weights per ``(g, j)``), laid out by :func:`hw.geometry.layer_geometries`: layer ``l``'s
word ``(g, j)`` is ``ff_base + g * K_l + j``, its recurrent word ``rec_base + g * N_l + j``. The
stage keeps the two group bases in registers (loaded at ``start``, advanced at each pass's last
event), so the address is one add; a single layer of a power-of-two fan-in needs none (``g``
and ``j`` side by side, as the single-layer core did).

Pipeline (the single-layer core's INPUT pipeline, ``hw/core.py``): stage 1 is the event on
``i`` (and the weight address); ``e`` stages register the address (and, banked, the banks'
outputs: ``e`` = :data:`hw.geometry.SYNAPSE_ADDR_STAGES` in one memory,
:data:`hw.geometry.SYNAPSE_BANK_STAGES` banked), stage ``2 + e`` has the weights (registered
in stage ``3 + e``); stages ``3 + e`` and ``4 + e``
multiply them by ``x`` in logic (2-bit digits); stage ``5 + e`` accumulates; the two-stage
``CurrentLane`` follows, and the current of a pass is on ``o`` :attr:`Synapse.latency` cycles
after its last event was on ``i``. ``i.ready`` is always high; ``o`` has no back-pressure
(``o.ready`` is ignored: the neuron stage always takes it).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.constants import B_BITS, I_BITS, W_SHIFT_BITS

from .geometry import (
    LayerGeometry,
    synapse_weight_stages,
    weight_bank_depth,
)
from .group_rom import GroupRom
from .neuron import LANE_LATENCY, CurrentLane

__all__ = ["Synapse", "current_record"]


def current_record(addr_bits: int, lanes: int) -> data.StructLayout:
    """The payload of :attr:`Synapse.o`: the global group word and its ``P`` currents."""
    return data.StructLayout({"addr": unsigned(addr_bits),
                              "current": data.ArrayLayout(signed(I_BITS), lanes)})


class Synapse(wiring.Component):
    """Weight ROM, ``P`` multiply-accumulate lanes and ``P`` current lanes.

    Parameters
    ----------
    layers : tuple of hw.geometry.LayerGeometry
        The layers, their groups and weight bases.
    weights : list of list of int
        The weight memory: one word of ``P`` signed weights per address.
    params : list of list of (int, int)
        Per global group word (``group_base + g``), the ``P`` neurons' ``(bias, w_shift)``.
    event : data.StructLayout
        The event layout (``hw.event_source.EventSource.event``): ``group``, ``j``, ``x``,
        ``rec``, ``first``, ``last``.
    lanes, w_bits, x_bits, total_bits : int
        ``P``; the weights' width; the width of ``x``; the accumulator's width (exact).
    banks : int
        Weight memory banks (1: one memory ``w_mem``).
    bank_depth : int or None
        Words of a bank (``hw.geometry.weight_bank_depth``, one block RAM, by default).

    Attributes
    ----------
    latency : int
        Cycles from a pass's last event on ``i`` to its currents on ``o``.
    weight_stages : int
        Extra pipeline stages of the weight read (``SYNAPSE_ADDR_STAGES`` in one memory,
        ``SYNAPSE_BANK_STAGES`` banked).

    Members
    -------
    start : :py:`In(1)`
        A pulse before a run's first event: load the layer's group and weight bases.
    layer : :py:`In(range(L))`
        The run's layer, held from ``start`` to the run's last event.
    i : :py:`In(stream.Signature(event))`
        The run's events; ``i.ready`` is always high.
    o : :py:`Out(stream.Signature(current_record(addr_bits, P)))`
        One transfer per pass: the group's global word and its currents.
    """

    def __init__(self, *, layers: tuple[LayerGeometry, ...], weights, params, event,
                 lanes: int, w_bits: int, x_bits: int, total_bits: int, banks: int = 1,
                 bank_depth: int | None = None):
        self.layers, self.weights, self.params = layers, weights, params
        self.lanes, self.w_bits, self.x_bits, self.total_bits = lanes, w_bits, x_bits, total_bits
        self.banks = banks
        self.bank_depth = bank_depth or weight_bank_depth(w_bits, lanes)
        if banks > 1 and -(-len(weights) // self.bank_depth) != banks:
            raise ValueError(f"{len(weights)} weight words do not make {banks} banks of "
                             f"{self.bank_depth}")
        self.weight_stages = synapse_weight_stages(banks)
        self.latency = 4 + self.weight_stages + 1 + LANE_LATENCY
        self.addr_bits = max(1, (sum(layer.groups for layer in layers) - 1).bit_length())
        self.event = event
        super().__init__({
            "start": In(1),
            "layer": In(range(max(2, len(layers)))),
            "i": In(stream.Signature(event)),
            "o": Out(stream.Signature(current_record(self.addr_bits, lanes))),
        })

    @property
    def single(self) -> bool:
        """One non-recurrent layer of a power-of-two fan-in: the address is ``Cat(j, g)``."""
        (first, *rest) = self.layers
        k = first.fan_in
        return not rest and not first.recurrent and k & (k - 1) == 0

    def elaborate(self, platform) -> Module:
        m = Module()
        m.d.comb += self.i.ready.eq(1)
        ev = self.i.p
        addr, gaddr = self._addresses(m, ev)
        e = self.weight_stages
        w_data = self._weight_read(m, addr)
        valid, first, last, grp = self._control(m, ev, gaddr, 6 + e)
        x = self._delay(m, ev.x, 2 + e, "x")  # stage 1 to the weights' stage, 3 + e
        products = self._products(m, w_data, x)
        # The group's bias and shift are read as its events pass stage 3 + e and registered, so
        # they travel with the events in stages 5 + e (bias) and 6 + e (shift).
        m.submodules.cur_param_mem = cp_rd = GroupRom(
            data.ArrayLayout(data.StructLayout({"bias": signed(B_BITS),
                                                "shift": signed(W_SHIFT_BITS)}), self.lanes),
            [[{"bias": int(b), "shift": int(s)} for b, s in word] for word in self.params])
        m.d.comb += cp_rd.addr.eq(grp[3 + e])
        params5 = Signal.like(cp_rd.data)
        m.d.sync += params5.eq(cp_rd.data)
        shift6 = [Signal.like(params5[p].shift, name=f"shift6_{p}") for p in range(self.lanes)]
        m.d.sync += [shift6[p].eq(params5[p].shift) for p in range(self.lanes)]
        acc = [Signal(signed(self.total_bits), name=f"acc{p}") for p in range(self.lanes)]
        with m.If(valid[5 + e]):
            for p in range(self.lanes):
                m.d.sync += acc[p].eq(Mux(first[5 + e], params5[p].bias, acc[p]) + products[p])
        done6, g6 = Signal(), Signal.like(grp[5 + e])
        m.d.sync += [done6.eq(valid[5 + e] & last[5 + e]), g6.eq(grp[5 + e])]
        done7, g7 = Signal(), Signal.like(g6)
        m.d.sync += [done7.eq(done6), g7.eq(g6)]
        for p in range(self.lanes):
            m.submodules[f"current_lane{p}"] = lane = CurrentLane(self.total_bits)
            m.d.comb += [lane.total.eq(acc[p]), lane.shift.eq(shift6[p]),
                         self.o.p.current[p].eq(lane.current)]
        m.d.comb += [self.o.valid.eq(done7), self.o.p.addr.eq(g7)]
        return m

    def _addresses(self, m: Module, ev):
        """The weight address of the event on ``i`` and its group's global word, stage 1."""
        layers = self.layers
        if self.single:
            return Cat(ev.j[:max(1, (layers[0].fan_in - 1).bit_length())], ev.group), ev.group
        words = sum(layer.weight_words for layer in layers)
        ff_base = Signal(range(words + 1), name="ff_base")
        rec_base = Signal(range(words + 1), name="rec_base")
        group_base = Signal(self.addr_bits, name="group_base")
        ff_step = Signal(range(words + 1), name="ff_step")
        rec_step = Signal(range(words + 1), name="rec_step")

        def table(name):
            return Array(Const(getattr(layer, name), range(words + 1)) for layer in layers)

        layer = self.layer
        with m.If(self.start):
            m.d.sync += [ff_base.eq(table("ff_base")[layer]),
                         rec_base.eq(table("rec_base")[layer]),
                         group_base.eq(table("group_base")[layer]),
                         ff_step.eq(table("fan_in")[layer]),
                         rec_step.eq(table("neurons")[layer])]
        with m.Elif(self.i.valid & ev.last):
            m.d.sync += [ff_base.eq(ff_base + ff_step), rec_base.eq(rec_base + rec_step)]
        addr = Signal(range(words), name="w_addr")
        m.d.comb += addr.eq(Mux(ev.rec, rec_base, ff_base) + ev.j)
        gaddr = Signal(self.addr_bits, name="group_addr")
        m.d.comb += gaddr.eq(group_base + ev.group)
        return addr, gaddr

    def _control(self, m: Module, ev, gaddr, stages: int):
        """Valid, first, last and the global group, carried from stage 1 to ``stages - 1``."""
        valid, first, last, grp = {1: Signal()}, {1: Signal()}, {1: Signal()}, {}
        m.d.comb += [valid[1].eq(self.i.valid), first[1].eq(ev.first), last[1].eq(ev.last)]
        grp[1] = gaddr
        for stage in range(2, stages):
            valid[stage], first[stage], last[stage] = (
                Signal(name=f"s{stage}_{f}") for f in ("valid", "first", "last"))
            grp[stage] = Signal(self.addr_bits, name=f"s{stage}_g")
            m.d.sync += [valid[stage].eq(valid[stage - 1]), first[stage].eq(first[stage - 1]),
                         last[stage].eq(last[stage - 1]), grp[stage].eq(grp[stage - 1])]
        return valid, first, last, grp

    @staticmethod
    def _delay(m: Module, value, cycles: int, name: str):
        for k in range(cycles):
            held = Signal(len(value), name=f"{name}{k + 2}")
            m.d.sync += held.eq(value)
            value = held
        return value

    def _products(self, m: Module, w_data, x):
        """``W * x`` per lane in logic, two stages: W times each 2-bit digit of x (a choice of
        0, W, 2W and 3W), then the sum of the shifted digit products. (A DSP multiplier fed by
        one x register for all lanes was the critical path on ECP5: routing to 16 fixed DSP
        sites.) The weights are registered first: the block RAM's output is slow."""
        w_bits, x_bits = self.w_bits, self.x_bits
        weights = [Signal(signed(w_bits), name=f"weight{p}") for p in range(self.lanes)]
        m.d.sync += [weights[p].eq(w_data[p]) for p in range(self.lanes)]
        digits = [x[i:i + 2] for i in range(0, x_bits, 2)]
        products = [Signal(signed(w_bits + x_bits), name=f"product{p}")
                    for p in range(self.lanes)]
        for p in range(self.lanes):
            w = weights[p]
            w3 = w + (w << 1)
            partials = []
            for d, digit in enumerate(digits):
                partial = Signal(signed(w_bits + 2), name=f"partial{p}_{d}")
                if len(digit) == 2:
                    m.d.sync += partial.eq(
                        Mux(digit[1], Mux(digit[0], w3, w << 1), Mux(digit[0], w, 0)))
                else:
                    m.d.sync += partial.eq(Mux(digit[0], w, 0))
                partials.append(partial << (2 * d))
            m.d.sync += products[p].eq(sum(partials))
        return products

    def _weight_read(self, m: Module, addr):
        """Read the weight word ``addr`` (stage 1); return it, a value of stage ``2 + e``.

        In one bank stage 2 holds the address in a register (the event's ``j`` and the add
        stay off the block RAM's address) and the read port takes it. Banked: stage 2 holds
        the address in a register, stage 3 reads every bank at the offset, stages 4 .. 2 + e
        hold every bank's output in ``e - 1`` registers in a row (the first can sit by its
        block RAM, the last by the select), and the bank select picks one of the last, so the
        long routing and the select start from registers.
        """
        element = data.ArrayLayout(signed(self.w_bits), self.lanes)
        total = len(self.weights)
        a2 = Signal(range(total), name="w_addr2")
        m.d.sync += a2.eq(addr)
        if self.banks == 1:
            m.submodules.w_mem = w_mem = memory.Memory(shape=element, depth=total,
                                                       init=self.weights)
            rd = w_mem.read_port()
            m.d.comb += rd.addr.eq(a2)
            return rd.data
        depth = self.bank_depth
        offset_bits = (depth - 1).bit_length()
        sel = [None, None, Signal(range(self.banks), name="w_bank2")]
        m.d.comb += sel[2].eq(a2[offset_bits:])
        e = self.weight_stages
        for stage in range(3, 3 + e):
            sel.append(Signal.like(sel[2], name=f"w_bank{stage}"))
            m.d.sync += sel[stage].eq(sel[stage - 1])
        held = []
        for n in range(self.banks):
            words = self.weights[n * depth:(n + 1) * depth]
            m.submodules[f"w_mem{n}"] = bank = memory.Memory(shape=element, depth=len(words),
                                                             init=words)
            rd = bank.read_port()
            m.d.comb += rd.addr.eq(a2[:offset_bits])
            word = rd.data
            for k in range(e - 1):  # stages 4 .. 2 + e
                # the first without a reset: on ECP5 the block RAM's own output register
                # (hw/bram_outreg.py)
                reg = Signal.like(rd.data, name=f"w_bank_data{n}" + "_near" * (k < e - 2),
                                  reset_less=k == 0)
                m.d.sync += reg.eq(word)
                word = reg
            held.append(word)
        return Array(held)[sel[2 + e]]
