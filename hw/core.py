"""The lifpga core: N LIF neurons time-multiplexed over P lanes, bit-exact with ``golden.model``.

Architecture
------------
::

    i (pixel, steps, mode)                                 o (label, scores, spike_count, cycles)
        |                                                                          ^
        v                                                                          |
    pix_mem --(rate: DRAW)--> RateEncoder --+                                      |
        |                                    v                                     |
        +----(constant current: LOAD)---> lst_mem: (j, x) of every x != 0          |
                                             |                                     |
                  w_mem[g*M + j] --> P x MAC (acc += W.x) --> P x CurrentLane --> cur_mem
                                                                                   |
                              st_mem (v, ref, psc) <--> P x NeuronLane <-----------+
                                     |
                           Readout: dec_mem, C x MAC (score += dec * psc), argmax ---------> o

``G = N / P`` groups of ``P`` neurons; every memory word holds one group's ``P`` values, so lane
``p`` owns neurons ``g * P + p``. One image runs these phases, each fully pipelined:

``LOAD``      ``M`` cycles: pixels into ``pix_mem``; ``steps`` and ``mode`` from the first one.
              In constant-current mode the nonzero pixels are also listed in ``lst_mem``.
``DRAW``      rate mode, every step, ``M`` cycles (+2 drain): every pixel takes its LFSR draw
              (draw ``t * M + j``, the golden order) in the ``RateEncoder``; pixels that spike
              are listed with ``x = 2**rate_bits``.
``INPUT``     ``G * max(K, 1)`` cycles for a list of ``K`` entries: for each group, each lane
              accumulates ``W_in[n, j] * x`` over the list (weights registered, then a
              two-stage multiply in logic), the sum starting from the neuron's bias; at the end
              of a group the two-stage ``CurrentLane`` lanes write
              ``I = sat(shift(acc + bias, s))`` (signed ``s``: left, or floor right) to
              ``cur_mem``, 7 cycles after the group's last issue. A zero input adds nothing, so
              skipping it is exact. A weight memory more than one block RAM deep (784-512,
              P = 16: 25,088 words) is built as banks one block RAM deep, with the address and
              each bank's output registered (``hw.geometry.CoreGeometry.weight_stages``, 2
              more cycles of latency, 9), when the core has the 10 groups that hides.
``LIF``       ``G`` cycles per step, a 5-stage pipeline (register the inputs, the two-stage
              ``NeuronLane``, register its outputs, write back 4 cycles after the read): the
              lanes update ``v``, ``ref``, ``psc`` of a group per cycle and count spikes.
              Constant-current mode runs ``INPUT`` once, then ``LIF`` for every step; rate
              mode runs ``DRAW``, ``INPUT``, ``LIF`` at every step.
``READOUT``   ``N`` cycles: the PSC values stream, one neuron per cycle, into the ``Readout``
              (``hw/readout.py``): ``C`` class accumulators add ``dec[c, n] * psc[n]`` from
              ``dec_bias``; ``ceil(log2 C) + 4`` cycles after the last value (three to
              settle, ``ceil(log2 C)`` for an argmax tree with golden's tie rule) the result is
              offered on ``o``.
``RESULT``    until ``o`` is taken.

Only ``DRAW`` waits for its pipeline to drain. ``INPUT`` to ``LIF`` and ``LIF`` to ``READOUT``
overlap the pipelines: both sides visit the groups in order, so with ``G >= MIN_GROUPS`` (8)
every group is read after its last write (see ``MIN_GROUPS``).

Cycles per image (the timing model of ``hw/geometry.py``, :meth:`LifCore.expected_cycles`;
both test tiers check it; ``DRAW_DRAIN`` is 2 and ``READOUT_DRAIN`` 4)::

    constant current:  M + G*max(K, 1) + T*G + N + READOUT_DRAIN + ceil(log2 C)
    rate encoder:      M + sum_t (M + DRAW_DRAIN + G*max(K_t, 1) + G) + N + READOUT_DRAIN
                         + ceil(log2 C)

with ``K`` the nonzero pixels and ``K_t`` the pixels spiking at step ``t``. For the digits
(N = 256, M = 64, C = 10, about 33 nonzero pixels) with P = 16 and T = 32: 1,363 cycles per
image on average over the test split, 1,864 at most (every pixel nonzero). docs/ARCHITECTURE.md
gives the lower bound.

The memories' shapes and depths come from the same geometry
(:meth:`hw.geometry.CoreGeometry.memories`, built by :func:`memory_shape`), which the fit check
before synthesis uses too.

Timing of the stream ports: ``i.ready`` is high only in ``LOAD``; ``o.valid`` rises when the
result is ready and stays high, with a stable payload, until ``o.ready``. The core takes a new
image only after its result has been taken.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.constants import COUNT_BITS, MODE_RATE, SCORE_BITS, STEPS_BITS
from golden.model import Network

from .geometry import (
    CURRENT_FIELDS,
    DRAW_DRAIN,
    STATE_FIELDS,
    CoreGeometry,
    MemorySpec,
)
from .neuron import LANE_LATENCY, CurrentLane, NeuronLane
from .rate_encoder import RateEncoder
from .readout import Readout

__all__ = ["MIN_GROUPS", "LifCore", "built_memories", "memory_shape", "min_groups"]

#: Pipeline latencies, in cycles from a group's issue to the clock edge that writes its result:
#: INPUT (list entry, weight ROM, weight register, two-stage multiply, accumulator, then the
#: two-stage ``CurrentLane`` into ``cur_mem``) and LIF (the lanes' inputs registered, the
#: two-stage ``NeuronLane``, the new state registered, then written to ``st_mem``).
INPUT_LATENCY = 6 + LANE_LATENCY
LIF_LATENCY = 3 + LANE_LATENCY
#: Groups per image needed for the overlaps below: LIF reads group ``g`` ``g + 1`` cycles after
#: INPUT's last issue, which must follow the current's write (at most ``INPUT_LATENCY -
#: (G - 1 - g)`` cycles after that issue); a group's state is read again ``G`` cycles after its
#: read, which must follow its write-back.
MIN_GROUPS = max(INPUT_LATENCY, LIF_LATENCY) + 1


def min_groups(weight_stages: int = 0) -> int:
    """Groups the core needs with ``weight_stages`` extra INPUT stages
    (:attr:`hw.geometry.CoreGeometry.weight_stages`): :data:`MIN_GROUPS` (8) for a weight
    memory in one bank, 10 for a banked one (INPUT's latency 9), which is
    :data:`hw.geometry.BANKED_MIN_GROUPS`: the geometry banks only cores that have them."""
    return max(INPUT_LATENCY + weight_stages, LIF_LATENCY) + 1

# The pipeline drains between phases, DRAW_DRAIN and READOUT_DRAIN, are defined with the timing
# model in hw/geometry.py (the controller below and the model use the same numbers). No other
# phase change waits: INPUT to LIF and LIF to READOUT visit the groups in order, one per cycle
# or slower, so every read stays after its write given ``G >= MIN_GROUPS``; LIF and the next
# step's DRAW (rate mode) share no memory.


def _element(fields):
    if len(fields) == 1 and not fields[0].name:
        return (signed if fields[0].signed else unsigned)(fields[0].bits)
    return data.StructLayout({
        f.name: (signed if f.signed else unsigned)(f.bits) for f in fields})


def memory_shape(spec: MemorySpec):
    """The Amaranth shape of a word of the memory ``spec`` (a ``hw.geometry.MemorySpec``):
    a number, a struct of its fields, or an array of ``spec.count`` of either."""
    element = _element(spec.fields)
    return element if spec.count is None else data.ArrayLayout(element, spec.count)


def built_memories(design) -> dict[str, tuple[int, int]]:
    """``path -> (width in bits, depth)`` of every memory in the elaborated ``design`` (a
    :class:`LifCore`, or any elaboratable), the path ``.``-separated below it, as
    :attr:`hw.geometry.MemorySpec.name`. For the tests that hold the geometry to the design."""
    from amaranth.hdl import Fragment, Shape
    from amaranth.hdl._mem import MemoryInstance

    found = {}

    def walk(fragment, path):
        if isinstance(fragment, MemoryInstance):
            found[".".join(path)] = (Shape.cast(fragment._data.shape).width,
                                     fragment._data.depth)
        for sub, name, _ in fragment.subfragments:
            walk(sub, (*path, name))

    walk(Fragment.get(design, None), ())
    return found


#: Per-neuron constants of the input current, one ROM word per group.
CURRENT_LAYOUT = _element(CURRENT_FIELDS)
#: Per-neuron state, one RAM word per group.
STATE_LAYOUT = _element(STATE_FIELDS)


def _pack(values, bits: int) -> int:
    """Pack integers (two's complement, ``bits`` each) into one word, element 0 lowest."""
    word = 0
    for k, value in enumerate(values):
        word |= (int(value) & ((1 << bits) - 1)) << (k * bits)
    return word


class LifCore(wiring.Component):
    """The whole classifier for one network image.

    Parameters
    ----------
    net : golden.model.Network
        The network image's contents: they become the ROMs, and its arithmetic parameters
        elaboration-time constants.
    pixel_max : int
        Largest pixel value (the image's ``pixel_max``); sets the pixel width.
    lanes : int
        ``P``, neurons updated in parallel. Must divide ``N``, and ``N / P >= MIN_GROUPS`` (8).

    Members
    -------
    i : :py:`In(stream.Signature(i_layout))`
        One transfer per pixel, ``M`` per image, pixel 0 first. ``i_layout`` has fields
        ``pixel`` (``pixel_bits``), ``steps`` (``STEPS_BITS``; 0 counts as 1) and ``mode``
        (1 bit, ``MODE_CURRENT`` or ``MODE_RATE``); ``steps`` and ``mode`` are read from the
        first pixel of an image only.
    o : :py:`Out(stream.Signature(o_layout))`
        One transfer per image. ``o_layout`` has fields ``label`` (winning class), ``scores``
        (``C`` signed ``SCORE_BITS`` class scores after the last step), ``spike_count`` (all
        spikes of the image) and ``cycles`` (clock cycles from the image's first pixel transfer
        to ``o.valid``), the counts ``COUNT_BITS`` wide.
    """

    @staticmethod
    def check_parameters(net: Network, lanes: int) -> None:
        """Raise :class:`ValueError` unless the core can be built for ``net`` with ``lanes``
        (also used by the fit check before synthesis, without building a core)."""
        neurons, inputs = net.neurons, net.inputs
        if lanes < 1 or neurons % lanes:
            raise ValueError(f"lanes ({lanes}) must divide the neuron count ({neurons})")
        if neurons // lanes < MIN_GROUPS:
            # The pipelines overlap across phases and steps; every read stays after its write
            # only if there are enough groups (see MIN_GROUPS; a banked weight memory, two
            # INPUT stages longer, is built only with BANKED_MIN_GROUPS).
            raise ValueError(
                f"lanes ({lanes}) leave {neurons // lanes} groups of neurons; the core's "
                f"pipelines need at least {MIN_GROUPS} (lanes at most {neurons // MIN_GROUPS})")
        if inputs < 2:
            # The mode is latched from the first pixel and acted on at the last one.
            raise ValueError(f"the core needs at least 2 inputs, the image has {inputs}")

    def __init__(self, net: Network, *, pixel_max: int, lanes: int):
        self.check_parameters(net, lanes)
        self.net = net
        #: The memories and the timing model of this core (:class:`hw.geometry.CoreGeometry`).
        self.geometry = CoreGeometry.of(net, pixel_max=pixel_max, lanes=lanes)
        if self.geometry.groups < min_groups(self.geometry.weight_stages):
            # The geometry banks the weights only where the groups hide the extra stages.
            raise ValueError(f"{self.geometry.groups} groups are too few for "
                             f"{self.geometry.weight_stages} extra INPUT stages")
        self.lanes = lanes
        self.groups = self.geometry.groups
        self.pixel_bits = self.geometry.pixel_bits
        self.x_bits = self.geometry.x_bits
        self.total_bits = self.geometry.total_bits
        self.i_layout = data.StructLayout({
            "pixel": unsigned(self.pixel_bits), "steps": unsigned(STEPS_BITS),
            "mode": unsigned(1)})
        self.o_layout = data.StructLayout({
            "label": unsigned(self.geometry.label_bits),
            "scores": data.ArrayLayout(signed(SCORE_BITS), net.classes),
            "spike_count": unsigned(COUNT_BITS),
            "cycles": unsigned(COUNT_BITS),
        })
        super().__init__({
            "i": In(stream.Signature(self.i_layout)),
            "o": Out(stream.Signature(self.o_layout)),
        })

    def expected_cycles(self, pixels, steps: int, mode: int) -> int:
        """Cycles the core reports for one image fed one pixel per cycle (the docstring formula;
        :meth:`hw.geometry.CoreGeometry.expected_cycles`).

        The count depends on the data: ``K``, the number of nonzero pixels (constant current)
        or of pixels that spike at a step (rate mode, from the golden LFSR draws).
        """
        return self.geometry.expected_cycles(pixels, steps, mode)

    def elaborate(self, platform) -> Module:
        m = Module()
        # The parts share their signals through ``b``, built in this order (the order of the
        # statements matters where two drive one signal: the controller's come last).
        b = SimpleNamespace()
        self._memories(m, b)
        self._registers(m, b)
        self._draw_pipeline(m, b)
        self._input_pipeline(m, b)
        self._lif_pipeline(m, b)
        self._readout_pipeline(m, b)
        self._controller(m, b)
        return m

    def _memories(self, m: Module, b: SimpleNamespace) -> None:
        """The memories (shapes from the geometry), their ports, the readout, the rate encoder
        and the lanes."""
        net, P, G, M = self.net, self.lanes, self.groups, self.net.inputs

        # --- memories: shapes and depths from the geometry ------------------------------
        spec = {s.name: s for s in self.geometry.memories()}

        def build(name, init):
            return memory.Memory(shape=memory_shape(spec[name]), depth=spec[name].depth,
                                 init=init)

        words = [[int(net.w_in[g * P + p, j]) for p in range(P)]
                 for g in range(G) for j in range(M)]
        w_rds, start = [], 0
        for w_spec in self.geometry.weight_memories():
            m.submodules[w_spec.name] = w_mem = build(
                w_spec.name, words[start:start + w_spec.depth])
            w_rd = w_mem.read_port()
            w_rds.append(w_rd)
            start += w_spec.depth
        # The per-neuron constants sit in two ROMs, one per phase, so INPUT's last groups and
        # LIF's first ones can overlap.
        m.submodules.cur_param_mem = cur_param_mem = build(
            "cur_param_mem", [[{"bias": int(net.bias[n]), "shift": int(net.w_shift[n])}
                               for n in range(g * P, (g + 1) * P)] for g in range(G)])
        m.submodules.v_th_mem = v_th_mem = build(
            "v_th_mem", [[int(net.v_th[n]) for n in range(g * P, (g + 1) * P)]
                         for g in range(G)])
        m.submodules.cur_mem = cur_mem = build("cur_mem", [])
        m.submodules.st_mem = st_mem = build("st_mem", [])
        m.submodules.pix_mem = pix_mem = build("pix_mem", [])
        # The input list: (j, x) of every input that is not 0 in this step, so the input phase
        # spends no cycle on a zero pixel or a silent rate-encoded pixel.
        m.submodules.lst_mem = lst_mem = build("lst_mem", [])

        cp_rd = cur_param_mem.read_port()
        th_rd = v_th_mem.read_port()
        cur_rd, cur_wr = cur_mem.read_port(), cur_mem.write_port()
        st_rd, st_wr = st_mem.read_port(), st_mem.write_port()
        pix_rd, pix_wr = pix_mem.read_port(), pix_mem.write_port()
        lst_wr = lst_mem.write_port()
        # A list read ahead (``_input_pipeline``) reads entry 0 in the cycle before INPUT, in
        # which it may be written (a list of one entry, the last pixel's): the read port sees
        # that write.
        lst_rd = lst_mem.read_port(
            transparent_for=(lst_wr,) if self.geometry.list_read_ahead else ())

        m.submodules.readout = readout = Readout(net.dec, net.dec_bias)
        m.submodules.encoder = encoder = RateEncoder(
            pixel_bits=self.pixel_bits, rate_bits=net.rate_bits)
        m.d.comb += [encoder.seed.eq(net.lfsr_seed), encoder.o.ready.eq(1)]

        current_lanes = [CurrentLane(self.total_bits) for _ in range(P)]
        neuron_lanes = [NeuronLane(leak_shift=net.leak_shift, psc_shift=net.psc_shift,
                                   ref_steps=net.ref_steps) for _ in range(P)]
        for p in range(P):
            m.submodules[f"current_lane{p}"] = current_lanes[p]
            m.submodules[f"neuron_lane{p}"] = neuron_lanes[p]
        b.cp_rd, b.cur_rd, b.cur_wr, b.current_lanes = cp_rd, cur_rd, cur_wr, current_lanes
        b.encoder, b.lst_rd, b.lst_wr, b.neuron_lanes = encoder, lst_rd, lst_wr, neuron_lanes
        b.pix_rd, b.pix_wr, b.readout, b.spec, b.st_rd = pix_rd, pix_wr, readout, spec, st_rd
        b.st_wr, b.th_rd, b.w_rds = st_wr, th_rd, w_rds

    def _registers(self, m: Module, b: SimpleNamespace) -> None:
        """Per-image registers and the loop counters."""
        P, G, N, M = self.lanes, self.groups, self.net.neurons, self.net.inputs
        readout, = b.readout,
        # --- per-image registers ----------------------------------------------------------
        last_t = Signal(STEPS_BITS)  # the image's last step, steps - 1 (steps 0 counts as 1)
        rate = Signal()
        cycles = Signal(COUNT_BITS)
        spike_count = Signal(COUNT_BITS)
        counting = Signal()
        # The count freezes when the result appears, so the payload stays stable until taken.
        with m.If(counting & ~readout.o.valid):
            m.d.sync += cycles.eq(cycles + 1)

        # Loop counters: pixel j, list entry k, group g with `g_base` = g * M kept without a
        # multiplier, step t, readout neuron n (group rg, lane rp). The list's last entry
        # `last_k` (0 for an empty list, `empty`) and the last step `last_t` are registered
        # when the list and the image begin, so the phase decisions compare with registers
        # (an equality, no subtraction: ``k == count - 1`` and ``t == steps - 1`` were carry
        # chains on the ULX3S-85F's critical path into k, 91.4 MHz).
        j = Signal(range(M))
        k = Signal(range(M + 1))
        last_k = Signal(range(M))
        empty = Signal()
        wrap = Signal()  # entry k is the list's last: the group's last issue
        m.d.comb += wrap.eq(k == last_k)
        g = Signal(range(G))
        g_base = Signal(range(G * M))
        t = Signal(STEPS_BITS)
        n = Signal(range(N))
        rg = Signal(range(G))
        rp = Signal(range(P))
        drain = Signal(range(DRAW_DRAIN + 1))
        last_step = Signal()
        m.d.comb += last_step.eq(t == last_t)
        b.counting, b.cycles, b.drain, b.empty, b.g = counting, cycles, drain, empty, g
        b.g_base, b.j, b.k, b.last_k, b.last_step = g_base, j, k, last_k, last_step
        b.n, b.rate, b.rg = n, rate, rg
        b.rp, b.spike_count, b.last_t, b.t, b.wrap = rp, spike_count, last_t, t, wrap

    @staticmethod
    def _list_ends(m: Module, b: SimpleNamespace, entries, added) -> None:
        """Register the list's length, ``entries + added`` (``added`` a bit), as ``last_k``
        and ``empty``: the list is complete."""
        m.d.sync += [b.last_k.eq(Mux(added, entries, Mux(entries == 0, 0, entries - 1))),
                     b.empty.eq((entries == 0) & ~added)]

    def _draw_pipeline(self, m: Module, b: SimpleNamespace) -> None:
        """The DRAW pipeline (rate mode): pixels through the rate encoder into the input list."""
        M = self.net.inputs
        encoder, j, pix_rd, t = b.encoder, b.j, b.pix_rd, b.t
        # --- DRAW pipeline (rate mode, every step): stage 0 reads pixel j, stage 1 feeds it to
        # the rate encoder (draw t * M + j, the golden order), stage 2 appends a spike to the
        # input list.
        draw_issue = Signal()
        d1_valid, d1_first_draw, d1_j = Signal(), Signal(), Signal(range(M))
        m.d.sync += [d1_valid.eq(draw_issue), d1_first_draw.eq((t == 0) & (j == 0)),
                     d1_j.eq(j)]
        d2_j = Signal(range(M))
        m.d.sync += d2_j.eq(d1_j)
        m.d.comb += [encoder.i.valid.eq(d1_valid), encoder.i.p.first.eq(d1_first_draw)]
        if self.geometry.pixel_read_ahead:
            # A block-RAM pixel memory: pixel j is read a cycle early (address j + 1 while j is
            # drawn, 0 outside DRAW, where every DRAW starts) into a register, so the RAM's
            # slow output stays out of the encoder's compare. Same cycles.
            ahead = Signal(range(M), name="pix_ahead")
            m.d.comb += ahead.eq(Mux(draw_issue & (j != M - 1), j + 1, 0))
            d1_pixel = Signal.like(pix_rd.data, name="d1_pixel")
            m.d.sync += d1_pixel.eq(pix_rd.data)
            m.d.comb += [pix_rd.addr.eq(ahead), encoder.i.p.pixel.eq(d1_pixel)]
        else:
            m.d.comb += [pix_rd.addr.eq(j), encoder.i.p.pixel.eq(pix_rd.data)]
        d2_spike = Signal()
        m.d.comb += d2_spike.eq(encoder.o.valid & (encoder.o.p.value != 0))
        b.d2_j, b.d2_spike, b.draw_issue = d2_j, d2_spike, draw_issue

    def _input_pipeline(self, m: Module, b: SimpleNamespace) -> None:
        """The INPUT pipeline: the lanes' W.x + b, then their currents into ``cur_mem``."""
        P, G, M = self.lanes, self.groups, self.net.inputs
        cp_rd, cur_wr, current_lanes, g, empty = b.cp_rd, b.cur_wr, b.current_lanes, b.g, b.empty
        g_base, k, spec, wrap = b.g_base, b.k, b.spec, b.wrap
        # --- INPUT pipeline: stage 0 reads list entry k; stage 1 reads the weights of input j
        # for group g; stage 2 registers them (the block RAM's output is slow); stages 3 and 4
        # multiply them by x; stage 5 accumulates, starting from the group's bias; stages 6 and
        # 7 are the CurrentLane of a finished group, whose current is written at the end of
        # stage 7 (INPUT_LATENCY). An empty list still takes one (zero) entry per group, so
        # every group gets its current. A banked weight memory (``e`` = BANK_STAGES extra
        # stages, see ``_weight_read``) delays every stage from 2 on by ``e``.
        e = self.geometry.weight_stages
        in_issue = b.in_issue = Signal()
        s1_valid, s1_first, s1_last, s1_empty = Signal(), Signal(), Signal(), Signal()
        s1_g, s1_base = Signal(range(G)), Signal(range(G * M))
        m.d.sync += [
            s1_valid.eq(in_issue), s1_first.eq(k == 0), s1_g.eq(g), s1_base.eq(g_base),
            s1_last.eq(wrap), s1_empty.eq(empty),
        ]
        entry = self._list_read(m, b)
        if M & (M - 1):
            w_data = self._weight_read(m, b, s1_base + entry.j)
        else:  # g * M + j without an adder
            w_data = self._weight_read(m, b, Cat(entry.j, s1_g))

        # The group's control bits travel with its entries: stage s has valid[s], first[s],
        # last[s], grp[s] (stage 1's are the registers above).
        valid, first, last, grp = {1: s1_valid}, {1: s1_first}, {1: s1_last}, {1: s1_g}
        for stage in range(2, 6 + e):
            valid[stage], first[stage], last[stage] = (
                Signal(name=f"s{stage}_{f}") for f in ("valid", "first", "last"))
            grp[stage] = Signal(range(G), name=f"s{stage}_g")
            m.d.sync += [valid[stage].eq(valid[stage - 1]), first[stage].eq(first[stage - 1]),
                         last[stage].eq(last[stage - 1]), grp[stage].eq(grp[stage - 1])]
        # x travels with its weights: xs[s] is the entry's x in stage s, to stage 3 + e.
        xs = {s: Signal(self.x_bits, name=f"s{s}_x") for s in range(2, 4 + e)}
        m.d.sync += xs[2].eq(Mux(s1_empty, 0, entry.x))
        m.d.sync += [xs[s].eq(xs[s - 1]) for s in range(3, 4 + e)]
        s3_x = xs[3 + e]
        w_bits = self.geometry.w_bits
        weights = [Signal(signed(w_bits), name=f"weight{p}") for p in range(P)]
        m.d.sync += [weights[p].eq(w_data[p]) for p in range(P)]
        # W * x in logic, in two stages: W times each 2-bit digit of x (a choice of 0, W, 2W
        # and 3W), then the sum of the shifted digit products. (A DSP multiplier fed by one x
        # register for all lanes was the critical path on ECP5: routing to 16 fixed DSP sites.)
        digits = [s3_x[i:i + 2] for i in range(0, self.x_bits, 2)]
        products = [Signal(signed(self.geometry.product_bits), name=f"product{p}")
                    for p in range(P)]
        for p in range(P):
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
        # The group's bias and shift are read as its entries pass stage 3 and registered, so
        # they travel with the entries in stages 5 (``params5``) and 6 (``shift6``), and the
        # ROM's output delay stays out of the accumulator's and the CurrentLane's paths.
        m.d.comb += cp_rd.addr.eq(grp[3 + e])
        params5 = Signal(memory_shape(spec["cur_param_mem"]))
        shift6 = [Signal.like(params5[p].shift, name=f"shift6_{p}") for p in range(P)]
        m.d.sync += params5.eq(cp_rd.data)
        m.d.sync += [shift6[p].eq(params5[p].shift) for p in range(P)]
        # Each group's sum starts from its bias, so the CurrentLane gets W.x + b whole.
        acc = [Signal(signed(self.total_bits), name=f"acc{p}") for p in range(P)]
        with m.If(valid[5 + e]):
            for p in range(P):
                m.d.sync += acc[p].eq(
                    Mux(first[5 + e], params5[p].bias, acc[p]) + products[p])

        s6_valid, s6_g = Signal(), Signal(range(G))
        m.d.sync += [s6_valid.eq(valid[5 + e] & last[5 + e]), s6_g.eq(grp[5 + e])]
        s7_valid, s7_g = Signal(), Signal(range(G))
        m.d.sync += [s7_valid.eq(s6_valid), s7_g.eq(s6_g)]
        for p in range(P):
            m.d.comb += [
                current_lanes[p].total.eq(acc[p]),
                current_lanes[p].shift.eq(shift6[p]),
                cur_wr.data[p].eq(current_lanes[p].current),
            ]
        m.d.comb += [cur_wr.addr.eq(s7_g), cur_wr.en.eq(s7_valid)]

    def _list_read(self, m: Module, b: SimpleNamespace):
        """Read list entry ``k`` (INPUT's stage 0); return it, a value of stage 1.

        A list in LUT RAM (the digits' 64 x 11 bits) is read at ``k``. A block-RAM list
        (:attr:`hw.geometry.CoreGeometry.list_read_ahead`; 784 x 19 bits, whose 5.8 ns output
        into the ``g * M + j`` adder limited the 784-512 core to 82.8 MHz) is read a cycle
        early, at the next cycle's ``k`` (``k + 1``, or 0 at a group's last entry and outside
        INPUT, where every INPUT starts), into a register: same cycles, and the adder starts
        from a register.
        """
        M, in_issue, k, lst_rd, wrap = self.net.inputs, b.in_issue, b.k, b.lst_rd, b.wrap
        if not self.geometry.list_read_ahead:
            m.d.comb += lst_rd.addr.eq(k)
            return lst_rd.data
        ahead = Signal(range(M), name="lst_ahead")
        m.d.comb += ahead.eq(Mux(in_issue & ~wrap, k + 1, 0))
        entry = Signal.like(lst_rd.data, name="s1_entry")
        m.d.sync += entry.eq(lst_rd.data)
        m.d.comb += lst_rd.addr.eq(ahead)
        return entry

    def _weight_read(self, m: Module, b: SimpleNamespace, addr):
        """Read the weight word ``addr`` (``g * M + j``, a value of INPUT's stage 1); return
        the word, a value of stage ``2 + e`` (``e`` = ``geometry.weight_stages``).

        In one bank (``e`` = 0) the block RAM's read port takes ``addr`` directly. Banked
        (``e`` = 2): stage 2 holds the address in a register (its fan-out to every bank stays
        off the list RAM's output and the adder), stage 3 reads every bank at the offset,
        stage 4 holds every bank's output in a register next to it, and the bank select (the
        high address bits, carried along) picks one of those registers, so the long routing
        and the select start from registers, not from the block RAMs' slow outputs.
        """
        w_rds = b.w_rds
        if len(w_rds) == 1:
            m.d.comb += w_rds[0].addr.eq(addr)
            return w_rds[0].data
        total = self.groups * self.net.inputs
        offset_bits = (self.geometry.weight_memories()[0].depth - 1).bit_length()
        a2 = Signal(range(total), name="w_addr2")
        m.d.sync += a2.eq(addr)
        sel = [None, None, Signal(range(len(w_rds)), name="w_bank2")]
        m.d.comb += sel[2].eq(a2[offset_bits:])
        for stage in (3, 4):
            sel.append(Signal.like(sel[2], name=f"w_bank{stage}"))
            m.d.sync += sel[stage].eq(sel[stage - 1])
        held = []
        for n, rd in enumerate(w_rds):
            m.d.comb += rd.addr.eq(a2[:offset_bits])
            held.append(Signal.like(rd.data, name=f"w_bank_data{n}"))
            m.d.sync += held[n].eq(rd.data)
        return Array(held)[sel[4]]

    def _lif_pipeline(self, m: Module, b: SimpleNamespace) -> None:
        """The LIF pipeline: the neuron lanes over ``st_mem``, and the spike count."""
        P, G = self.lanes, self.groups
        cur_rd, g, neuron_lanes, spike_count = b.cur_rd, b.g, b.neuron_lanes, b.spike_count
        st_rd, st_wr, t, th_rd = b.st_rd, b.st_wr, b.t, b.th_rd
        # --- LIF pipeline: stage 0 issues group g; stage 1 registers the lanes' inputs (the
        # memories' outputs, or rest on the first step); stages 2 and 3 are the NeuronLane
        # (integrate, then fire), whose outputs stage 3 registers; stage 4 writes the group
        # back (LIF_LATENCY). Registers on both sides keep the RAM routing out of the lanes'
        # paths. The spikes are counted two cycles later, off the path.
        lif_issue = Signal()
        l1_valid, l1_g, l1_rest = Signal(), Signal(range(G)), Signal()
        m.d.sync += [l1_valid.eq(lif_issue), l1_g.eq(g), l1_rest.eq(t == 0)]
        m.d.comb += [cur_rd.addr.eq(g), th_rd.addr.eq(g)]
        l2_valid, l2_g = Signal(), Signal(range(G))
        l3_valid, l3_g = Signal(), Signal(range(G))
        l4_valid, l4_g = Signal(), Signal(range(G))
        l4_spikes = Signal(P)
        l5_valid, l5_count = Signal(), Signal(range(P + 1))
        m.d.sync += [l2_valid.eq(l1_valid), l2_g.eq(l1_g), l3_valid.eq(l2_valid), l3_g.eq(l2_g),
                     l4_valid.eq(l3_valid), l4_g.eq(l3_g),
                     l4_spikes.eq(Cat(lane.spike for lane in neuron_lanes)),
                     l5_valid.eq(l4_valid), l5_count.eq(sum(l4_spikes[p] for p in range(P)))]
        for p in range(P):
            lane = neuron_lanes[p]
            state = st_rd.data[p]
            m.d.sync += [
                lane.current.eq(cur_rd.data[p]),
                lane.v_th.eq(th_rd.data[p]),
                # Every image starts from rest: the first step ignores the stored state.
                lane.v.eq(Mux(l1_rest, 0, state.v)),
                lane.ref.eq(Mux(l1_rest, 0, state.ref)),
                lane.psc.eq(Mux(l1_rest, 0, state.psc)),
                st_wr.data[p].v.eq(lane.v_next),
                st_wr.data[p].ref.eq(lane.ref_next),
                st_wr.data[p].psc.eq(lane.psc_next),
            ]
        m.d.comb += [st_wr.addr.eq(l4_g), st_wr.en.eq(l4_valid)]
        with m.If(l5_valid):
            m.d.sync += spike_count.eq(spike_count + l5_count)
        b.lif_issue, = lif_issue,

    def _readout_pipeline(self, m: Module, b: SimpleNamespace) -> None:
        """The READOUT pipeline: the PSC values into the readout; the result on ``o``."""
        P = self.lanes
        cycles, g, readout, rg, rp = b.cycles, b.g, b.readout, b.rg, b.rp
        spike_count, st_rd = b.spike_count, b.st_rd
        # --- READOUT pipeline: stage 0 reads neuron n's group, stage 1 sends its PSC to the
        # readout (always ready here: its previous result was taken before this image began).
        ro_issue = Signal()
        r1_valid, r1_p = Signal(), Signal(range(P))
        m.d.sync += [r1_valid.eq(ro_issue), r1_p.eq(rp)]
        psc_lanes = Array(st_rd.data[p].psc for p in range(P))
        m.d.comb += [readout.i.valid.eq(r1_valid), readout.i.payload.eq(psc_lanes[r1_p])]

        # The state RAM's read port serves LIF and READOUT.
        with m.If(ro_issue):
            m.d.comb += st_rd.addr.eq(rg)
        with m.Else():
            m.d.comb += st_rd.addr.eq(g)

        # --- the result ---------------------------------------------------------------------
        m.d.comb += [
            self.o.p.label.eq(readout.o.p.label),
            self.o.p.scores.eq(readout.o.p.scores),
            self.o.p.spike_count.eq(spike_count),
            self.o.p.cycles.eq(cycles),
            self.o.valid.eq(readout.o.valid),
            readout.o.ready.eq(self.o.ready),
        ]
        b.ro_issue, = ro_issue,

    def _load_state(self, m: Module, b: SimpleNamespace) -> None:
        """The LOAD state: pixels into ``pix_mem`` (and, constant current, the nonzero ones into
        the input list); ``steps`` and ``mode`` from an image's first pixel."""
        M = self.net.inputs
        counting, cycles, g, g_base, j, k = b.counting, b.cycles, b.g, b.g_base, b.j, b.k
        lst_wr, pix_wr, rate, spike_count, last_t, t = (b.lst_wr, b.pix_wr, b.rate,
                                                        b.spike_count, b.last_t, b.t)
        m.d.comb += [
            self.i.ready.eq(1),
            pix_wr.addr.eq(j),
            pix_wr.data.eq(self.i.p.pixel),
            pix_wr.en.eq(self.i.valid),
        ]
        # Constant-current mode lists the nonzero pixels as they arrive.
        nonzero = self.i.p.pixel != 0
        slot = Mux(j == 0, 0, k)
        m.d.comb += [
            lst_wr.addr.eq(slot),
            lst_wr.data.j.eq(j),
            lst_wr.data.x.eq(self.i.p.pixel),
            lst_wr.en.eq(self.i.valid & nonzero),
        ]
        with m.If(self.i.valid):
            m.d.sync += [j.eq(j + 1), k.eq(slot + nonzero)]
            with m.If(j == 0):
                m.d.sync += [
                    last_t.eq(Mux(self.i.p.steps == 0, 0, self.i.p.steps - 1)),
                    rate.eq(self.i.p.mode == MODE_RATE),
                    cycles.eq(1), counting.eq(1), spike_count.eq(0),
                ]
            with m.If(j == M - 1):
                m.d.sync += [j.eq(0), g.eq(0), g_base.eq(0), t.eq(0)]
                with m.If(rate):
                    m.d.sync += k.eq(0)
                    m.next = "DRAW"
                with m.Else():
                    self._list_ends(m, b, slot, nonzero)
                    m.d.sync += k.eq(0)
                    m.next = "INPUT"

    def _controller(self, m: Module, b: SimpleNamespace) -> None:
        """The spikes appended to the input list, and the phase controller."""
        P, G, N, M = self.lanes, self.groups, self.net.neurons, self.net.inputs
        counting, d2_j, d2_spike, wrap = b.counting, b.d2_j, b.d2_spike, b.wrap
        drain, draw_issue, encoder, g, g_base = b.drain, b.draw_issue, b.encoder, b.g, b.g_base
        in_issue, j, k, last_step, lif_issue = b.in_issue, b.j, b.k, b.last_step, b.lif_issue
        lst_wr, n, rate, rg, ro_issue, rp, t = b.lst_wr, b.n, b.rate, b.rg, b.ro_issue, b.rp, b.t
        # Rate mode appends spikes to the input list; the last two land during DRAW_DRAIN. (The
        # controller's own assignments to k below come later and so take precedence.)
        with m.If(d2_spike):
            m.d.comb += [lst_wr.addr.eq(k), lst_wr.data.j.eq(d2_j),
                         lst_wr.data.x.eq(encoder.o.p.value), lst_wr.en.eq(1)]
            m.d.sync += k.eq(k + 1)

        # --- controller -------------------------------------------------------------------
        with m.FSM(name="phase"):
            with m.State("LOAD"):
                self._load_state(m, b)

            with m.State("DRAW"):
                m.d.comb += draw_issue.eq(1)
                m.d.sync += j.eq(j + 1)
                with m.If(j == M - 1):
                    m.d.sync += [j.eq(0), drain.eq(DRAW_DRAIN)]
                    m.next = "DRAW_DRAIN"

            with m.State("DRAW_DRAIN"):
                m.d.sync += drain.eq(drain - 1)
                with m.If(drain == 1):
                    # The last draw is being appended: the list is then complete.
                    self._list_ends(m, b, k, d2_spike)
                    m.d.sync += k.eq(0)
                    m.next = "INPUT"

            with m.State("INPUT"):
                m.d.comb += in_issue.eq(1)
                m.d.sync += k.eq(k + 1)
                with m.If(wrap):
                    m.d.sync += [k.eq(0), g.eq(g + 1), g_base.eq(g_base + M)]
                    with m.If(g == G - 1):
                        # LIF starts at once: it reads group g's current g + 1 cycles from
                        # now, after INPUT has written it (G >= MIN_GROUPS).
                        m.d.sync += [g.eq(0), g_base.eq(0)]
                        m.next = "LIF"

            with m.State("LIF"):
                m.d.comb += lif_issue.eq(1)
                m.d.sync += g.eq(g + 1)
                with m.If(g == G - 1):
                    m.d.sync += g.eq(0)
                    with m.If(last_step):
                        # READOUT starts at once: it reads group rg at least rg * P cycles
                        # from now, after its write-back.
                        m.d.sync += [n.eq(0), rg.eq(0), rp.eq(0)]
                        m.next = "READOUT"
                    with m.Else():
                        m.d.sync += t.eq(t + 1)
                        with m.If(rate):
                            # The next step's draws share nothing with the LIF pipeline's tail.
                            # j and k are 0 already (DRAW and INPUT end with them at 0; LIF
                            # changes neither), so k's logic does not wait for g.
                            m.next = "DRAW"

            with m.State("READOUT"):
                m.d.comb += ro_issue.eq(1)
                m.d.sync += [n.eq(n + 1), rp.eq(rp + 1)]
                with m.If(rp == P - 1):
                    m.d.sync += [rp.eq(0), rg.eq(rg + 1)]
                with m.If(n == N - 1):
                    m.next = "RESULT"

            with m.State("RESULT"):
                # The readout adds the last PSC, finds the winner and offers the result.
                with m.If(self.o.valid & self.o.ready):
                    m.d.sync += [j.eq(0), counting.eq(0)]
                    m.next = "LOAD"
