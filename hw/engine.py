"""The lifpga engine: a layered spiking network of any image, bit-exact with ``golden.layers``.

::

    i (pixel, steps, mode)                                        o (label, scores, spikes, cycles)
      |                                                                                  ^
      v                                                                                  |
    InputEncoder --> lst_mem (pixel list) --+                                            |
                                            v                                            |
            spk_mem (spike lists) -----> EventSource --events--> Synapse --currents--+   |
                  ^                                                                  v   |
                  +---- SpikeLister <--spikes-- NeuronStage (cur, state, v_th, beta) -+  |
                                                    |                                    |
                                                    +--values--> Readout --> argmax -----+
                        Sequencer: LOAD, then per step DRAW, SYN(l), NEU(l) for every layer,
                        then READOUT (hw/sequencer.py)

Each stage is a component of its own file, joined by ``amaranth.lib.stream`` streams
(``hw/input_encoder.py``, ``hw/event_source.py``, ``hw/synapse.py``, ``hw/neuron_stage.py``,
``hw/spike_lister.py``, ``hw/readout.py``); this module builds them for one network image
(:class:`golden.layers.LayeredNetwork`: its arrays become the ROMs, its neuron models the
lanes), owns the two list memories the stages share, and wires them. ``N_l``, ``M``, ``C``,
``P`` and every width come from the image and :func:`hw.geometry.layer_geometries`.

The ports are those of the single-layer core (``hw/core.py``): ``i`` takes an image's pixels,
one per transfer (``steps`` and ``mode`` from the first); ``o`` offers its result until taken;
``cycles`` counts from the first pixel's transfer to ``o.valid``.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Array, Module, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.constants import (
    COUNT_BITS,
    READOUT_LI,
    READOUT_PSC,
    SCORE_BITS,
    STEPS_BITS,
    V_BITS,
)
from golden.layers import LayeredNetwork

from .event_source import EventSource
from .geometry import EngineGeometry
from .input_encoder import InputEncoder
from .neuron import LaneConfig
from .neuron_stage import NeuronStage
from .readout import Readout, ScoreReadout
from .sequencer import Sequencer
from .spike_lister import SpikeLister
from .synapse import Synapse

__all__ = ["Engine"]


class Engine(wiring.Component):
    """The whole classifier for one layered network image.

    Parameters
    ----------
    net : golden.layers.LayeredNetwork
        The network image's contents.
    pixel_max : int
        Largest pixel value (the image's ``pixel_max``); sets the pixel width.
    lanes : int
        ``P``, neurons updated in parallel.

    Members
    -------
    i : :py:`In(stream.Signature(i_layout))`
        ``pixel``, ``steps`` (``STEPS_BITS``; 0 counts as 1), ``mode`` (1 bit): one transfer per
        pixel, ``M`` per image; ``steps`` and ``mode`` from the first.
    o : :py:`Out(stream.Signature(o_layout))`
        ``label``, ``scores`` (``C`` signed ``SCORE_BITS``), ``spike_count`` and ``cycles``
        (``COUNT_BITS``): one transfer per image.
    """

    def __init__(self, net: LayeredNetwork, *, pixel_max: int, lanes: int):
        if lanes < 1:
            raise ValueError(f"lanes must be at least 1, got {lanes}")
        if net.inputs < 2:
            raise ValueError(f"the engine needs at least 2 inputs, the image has {net.inputs}")
        self.net, self.lanes = net, lanes
        self.geometry = geometry = EngineGeometry.of(net, pixel_max=pixel_max, lanes=lanes)
        self.layers = geometry.layers
        self.pixel_bits, self.x_bits, self.w_bits = (geometry.pixel_bits, geometry.x_bits,
                                                     geometry.w_bits)
        self.index_bits, self.group_bits = geometry.index_bits, geometry.group_bits
        self.total_bits = geometry.total_bits
        self.i_layout = data.StructLayout({
            "pixel": unsigned(self.pixel_bits), "steps": unsigned(STEPS_BITS),
            "mode": unsigned(1)})
        self.o_layout = data.StructLayout({
            "label": unsigned(geometry.label_bits),
            "scores": data.ArrayLayout(signed(SCORE_BITS), net.classes),
            "spike_count": unsigned(COUNT_BITS),
            "cycles": unsigned(COUNT_BITS),
        })
        super().__init__({
            "i": In(stream.Signature(self.i_layout)),
            "o": Out(stream.Signature(self.o_layout)),
        })

    def expected_cycles(self, pixels, steps: int, mode: int) -> int:
        """Cycles the engine reports for one image fed one pixel per cycle
        (:meth:`hw.geometry.EngineGeometry.expected_cycles`)."""
        return self.geometry.expected_cycles(pixels, steps, mode)

    # --- the ROMs' contents -----------------------------------------------------------------

    def _padded(self, a: np.ndarray, rows: int, fill: int = 0) -> np.ndarray:
        out = np.full((rows,) + a.shape[1:], fill, dtype=np.int64)
        out[:len(a)] = a
        return out

    def weight_words(self) -> list[list[int]]:
        """The weight memory, word by word (:func:`hw.geometry.layer_geometries`' layout)."""
        P, words = self.lanes, []
        for geo, layer in zip(self.layers, self.net.layers, strict=True):
            for matrix in (layer.w, layer.w_rec) if geo.recurrent else (layer.w,):
                w = self._padded(matrix, geo.groups * P)
                words += [w[g * P:(g + 1) * P, j].tolist() for g in range(geo.groups)
                          for j in range(matrix.shape[1])]
        return words

    def _per_group(self, values) -> list[list]:
        """Per-layer arrays (N_l values or tuples, padded) as words of ``P``, in group order."""
        P, words = self.lanes, []
        for geo, a in zip(self.layers, values, strict=True):
            a = self._padded(np.asarray(a), geo.groups * P)
            words += [a[g * P:(g + 1) * P].tolist() for g in range(geo.groups)]
        return words

    def lane_configs(self) -> tuple[LaneConfig, ...]:
        """Per layer its lanes; a PSC readout gives every layer the filter (one lane for all
        layers of one model; only the last layer's PSC is read)."""
        net = self.net
        psc = net.decoder.psc_shift if net.readout == READOUT_PSC else None
        return tuple(LaneConfig.of(layer.neuron, psc) for layer in net.layers)

    # --- the design -------------------------------------------------------------------------

    def elaborate(self, platform) -> Module:
        m = Module()
        net, P = self.net, self.lanes
        m.submodules.encoder = enc = InputEncoder(
            inputs=net.inputs, pixel_bits=self.pixel_bits, rate_bits=net.rate_bits,
            lfsr_seed=net.lfsr_seed, index_bits=self.index_bits, x_bits=self.x_bits,
            read_ahead=self.geometry.pixel_read_ahead)
        groups_total = sum(layer.groups for layer in self.layers)
        m.submodules.source = source = EventSource(
            lanes=P, index_bits=self.index_bits, x_bits=self.x_bits, group_bits=self.group_bits,
            pixel_depth=net.inputs, spike_depth=groups_total,
            pixel_ahead=self.geometry.list_read_ahead)
        words = self.weight_words()
        # the sequencer's waits hide a banked memory's longer latency at any group count
        banks = self.geometry.weight_banks
        params = self._per_group([list(zip(layer.bias.tolist(), layer.w_shift.tolist(),
                                           strict=True)) for layer in net.layers])
        m.submodules.synapse = syn = Synapse(
            layers=self.layers, weights=words, params=[[tuple(x) for x in w] for w in params],
            event=source.event, lanes=P, w_bits=self.w_bits, x_bits=self.x_bits,
            total_bits=self.total_bits, banks=banks)
        configs = self.lane_configs()
        v_th = self._per_group([layer.neuron.v_th if layer.neuron.spiking else
                                np.zeros(layer.neurons, np.int64) for layer in net.layers])
        # padding neurons get threshold 1 (they never reach it: zero weights and bias)
        v_th = [[max(v, 1) for v in word] for word in v_th]
        beta = self._per_group([layer.neuron.beta if layer.neuron.beta is not None else
                                np.zeros(layer.neurons, np.int64) for layer in net.layers])
        m.submodules.neurons = neu = NeuronStage(
            configs=configs, readout=net.readout, v_th=v_th, beta=beta, lanes=P,
            output_layer=len(self.layers) - 1, state_stages=self.geometry.state_stages)
        m.submodules.lister = lister = SpikeLister(
            group_bases=[g.group_base for g in self.layers], groups=[g.groups for g in self.layers],
            lanes=P, result=neu.result)
        readout_n = (self.layers[-1].neurons if net.readout == READOUT_PSC else net.classes)
        m.submodules.sequencer = seq = Sequencer(
            layers=self.layers, readout_neurons=readout_n, lanes=P, inputs=net.inputs,
            syn_latency=syn.latency, neu_latency=neu.latency)
        readout = self._readout(m)
        self._lists(m, enc, source, lister)
        self._wire(m, enc, source, syn, neu, lister, seq, readout)
        return m

    def _readout(self, m: Module):
        net = self.net
        if net.readout == READOUT_PSC:
            m.submodules.readout = readout = Readout(net.decoder.dec, net.decoder.dec_bias)
        elif net.readout == READOUT_LI:
            m.submodules.readout = readout = ScoreReadout(net.classes, V_BITS, True)
        else:
            m.submodules.readout = readout = ScoreReadout(net.classes, STEPS_BITS, False)
        return readout

    def _lists(self, m: Module, enc, source, lister) -> None:
        """The pixel list and the spike lists, between their writers and the event source."""
        m.submodules.lst_mem = lst_mem = memory.Memory(shape=enc.entry, depth=self.net.inputs,
                                                       init=[])
        lst_wr, lst_rd = lst_mem.write_port(), lst_mem.read_port()
        m.d.comb += [lst_wr.addr.eq(enc.lst_addr), lst_wr.data.eq(enc.lst_data),
                     lst_wr.en.eq(enc.lst_en),
                     lst_rd.addr.eq(source.pix_addr), lst_rd.en.eq(source.pix_en),
                     source.pix_data.eq(lst_rd.data)]
        m.submodules.spk_mem = spk_mem = memory.Memory(
            shape=lister.entry, depth=max(2, lister.depth), init=[])
        spk_wr, spk_rd = spk_mem.write_port(), spk_mem.read_port()
        m.d.comb += [spk_wr.addr.eq(lister.spk_addr), spk_wr.data.eq(lister.spk_data),
                     spk_wr.en.eq(lister.spk_en),
                     spk_rd.addr.eq(source.spk_addr), spk_rd.en.eq(source.spk_en),
                     source.spk_data.eq(spk_rd.data)]

    def _wire(self, m: Module, enc, source, syn, neu, lister, seq, readout) -> None:
        P = self.lanes
        wiring.connect(m, wiring.flipped(self.i), enc.i)
        first = Signal(init=1, name="expect_first_pixel")
        taken = self.i.valid & self.i.ready
        with m.If(taken):
            m.d.sync += first.eq(0)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += first.eq(1)
        m.d.comb += [
            seq.first_pixel.eq(taken & first),
            enc.load.eq(seq.enc_load), enc.draw.eq(seq.enc_draw),
            seq.enc_loaded.eq(enc.loaded), seq.enc_drawn.eq(enc.drawn),
            seq.enc_count.eq(enc.count), seq.enc_last_step.eq(enc.last_step),
            seq.enc_rate.eq(enc.rate),
            source.start.eq(seq.es_start), seq.es_busy.eq(source.busy),
            source.passes.eq(seq.es_passes), source.a_base.eq(seq.es_a_base),
            source.a_count.eq(seq.es_a_count), source.b_pixels.eq(seq.es_b_pixels),
            source.b_base.eq(seq.es_b_base), source.b_count.eq(seq.es_b_count),
            syn.start.eq(seq.syn_start), syn.layer.eq(seq.layer),
            neu.i.valid.eq(seq.neu_valid), neu.i.p.layer.eq(seq.neu_layer),
            neu.i.p.addr.eq(seq.neu_addr), neu.i.p.rest.eq(seq.neu_rest),
            neu.i.p.peek.eq(seq.neu_peek),
            lister.clear.eq(seq.clear), seq.counts.eq(lister.counts),
        ]
        # the lister's phase begins with its first result, the neuron stage's latency after
        # the phase's first issue (the previous phase's last results are in by then)
        begin, layer = seq.list_begin, seq.neu_layer
        for k in range(neu.latency):
            begin_d, layer_d = Signal(name=f"list_begin_d{k}"), Signal.like(layer,
                                                                          name=f"list_layer_d{k}")
            m.d.sync += [begin_d.eq(begin), layer_d.eq(layer)]
            begin, layer = begin_d, layer_d
        m.d.comb += [lister.begin.eq(begin), lister.layer.eq(layer)]
        wiring.connect(m, source.o, syn.i)
        wiring.connect(m, syn.o, neu.cur_in)
        wiring.connect(m, neu.o, lister.i)
        # READOUT: the peeked group's values arrive two cycles after the peek (registered);
        # the value of the lane is registered again before the readout (PEEK_DELAY)
        lane = seq.ro_lane
        for k in (1, 2):
            held = Signal.like(seq.ro_lane, name=f"ro_lane{k}")
            m.d.sync += held.eq(lane)
            lane = held
        value = Signal.like(readout.i.payload, name="ro_value")
        value_valid = Signal(name="ro_value_valid")
        m.d.sync += [value.eq(Array(neu.r.p.value[p] for p in range(P))[lane]),
                     value_valid.eq(neu.r.valid)]
        m.d.comb += [neu.r.ready.eq(1), readout.i.valid.eq(value_valid),
                     readout.i.payload.eq(value)]
        # the result
        cycles = Signal(COUNT_BITS, name="cycles")
        with m.If(seq.first_pixel):
            m.d.sync += cycles.eq(1)
        with m.Elif(seq.counting & ~readout.o.valid):
            m.d.sync += cycles.eq(cycles + 1)
        m.d.comb += [
            self.o.p.label.eq(readout.o.p.label), self.o.p.scores.eq(readout.o.p.scores),
            self.o.p.spike_count.eq(lister.spike_count), self.o.p.cycles.eq(cycles),
            self.o.valid.eq(readout.o.valid), readout.o.ready.eq(self.o.ready),
            seq.result_valid.eq(readout.o.valid), seq.result_ready.eq(self.o.ready),
        ]

