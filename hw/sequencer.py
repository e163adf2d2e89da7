"""The sequencer of the engine: an image's phases, layer after layer at every timestep.

::

    LOAD                      the input encoder takes the M pixels (constant current: and lists
                              the nonzero ones)
    for t in 0 .. T-1:
        DRAW                  rate mode: the input encoder lists the pixels that spike at t
        for l in 0 .. L-1:
            SYN(l)            if layer l needs its current (below): the event source replays,
                              for each of its G_l groups, its own spikes of step t-1 (recurrent)
                              and the events of its input (the pixel list, or layer l-1's spike
                              list of step t) into the synaptic stage
            NEU(l)            G_l groups through the neuron stage (one per cycle); the spike
                              lister writes layer l's spike list of step t
    READOUT                   the last layer's readout values (PSC, membranes or spike counts),
                              one per cycle, into the readout
    RESULT                    until the result is taken

Layer 0's current is computed once per image in constant-current mode when it has no recurrent
weights (its input does not change); every other layer's at every step.

Waits (cycles a phase change adds beyond a state change; :class:`hw.geometry.Waits`, from the
stages' latencies, which the cycle model of ``hw/geometry.py`` uses too): NEU(l) after SYN(l)
waits until the synaptic stage has written group 0's current, which with ``G_l >= latency``
groups it has before NEU reads it; the phase after NEU(l) that reads its spike list waits for
the neuron stage and the lister to drain; the next step's NEU(l) of a network of one layer
follows NEU(l) at once, as the state of group ``g`` is read ``G_l`` cycles after it was, when
``G_l`` exceeds the neuron stage's latency (else it waits the difference); a network of one
recurrent layer waits for its list to drain before the next step (its first phase reads it).
The neuron stage's transfers leave the sequencer one cycle after the state that decides them
(``ISSUE_DELAY``); the waits count it.
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.constants import STEPS_BITS

from .geometry import LayerGeometry, Waits

__all__ = ["Sequencer", "Waits"]


class Sequencer(wiring.Component):
    """The phase controller (module docstring).

    Parameters
    ----------
    layers : tuple of hw.geometry.LayerGeometry
        The layers.
    readout_neurons : int
        Values the readout takes: the last layer's neurons (PSC) or the classes.
    lanes : int
        ``P``.
    syn_latency, neu_latency : int
        The synaptic and neuron stages' latencies (``Synapse.latency``,
        ``NeuronStage.latency``).

    Members
    -------
    enc_load, enc_draw : :py:`Out(1)`
        To the input encoder: take pixels; draw the next step.
    enc_loaded, enc_drawn : :py:`In(1)`
        From it: the image is in; the step's list is complete.
    enc_count : :py:`In(range(M + 1))`, enc_last_step : :py:`In(STEPS_BITS)`, enc_rate : :py:`In(1)`
        The pixel list's entries, ``T - 1`` and the mode.
    es_start : :py:`Out(1)`, es_busy : :py:`In(1)`
        The event source's run: started, running.
    es_passes, es_a_base, es_a_count, es_b_pixels, es_b_base, es_b_count : :py:`Out`
        The run's parameters (``hw/event_source.py``).
    counts : :py:`In(ArrayLayout(range(G + 1), L))`
        The spike lists' entries (the lister's).
    syn_start : :py:`Out(1)`, layer : :py:`Out(range(L))`
        The synaptic stage's run, and the layer of the phase (for the stages and the lister).
    neu_valid, neu_rest, neu_peek : :py:`Out(1)`, neu_addr, neu_layer : :py:`Out`
        The neuron stage's transfers: a group's word, first step, read only, its layer.
        Registered: they leave the sequencer ``ISSUE_DELAY`` (1) cycle after the state that
        issues them (``hw.geometry.ISSUE_DELAY``), so the layer tables and the group counter
        stay off the neuron stage's memory reads (83.5 MHz on the ULX3S-85F without it).
    list_begin : :py:`Out(1)`
        To the lister: a neuron phase begins (registered with the issue).
    clear : :py:`Out(1)`
        To the lister: an image begins.
    ro_valid : :py:`Out(1)`, ro_lane : :py:`Out(range(P))`
        READOUT: a value of lane ``ro_lane`` of the group peeked with them goes to the
        readout (the engine delays both, :data:`hw.geometry.PEEK_DELAY`); registered with
        the issue.
    result_valid, result_ready : :py:`In(1)`
        The result is offered; it is taken.
    counting : :py:`Out(1)`
        From an image's first pixel to its result (the cycle counter's enable).
    first_pixel : :py:`In(1)`
        The image's first pixel is transferred this cycle.
    """

    def __init__(self, *, layers: tuple[LayerGeometry, ...], readout_neurons: int,
                 lanes: int, inputs: int, syn_latency: int, neu_latency: int):
        self.layers, self.lanes, self.readout_neurons = layers, lanes, readout_neurons
        self.waits = tuple(Waits.of(layer.groups, syn_latency, neu_latency) for layer in layers)
        groups = sum(layer.groups for layer in layers)
        self.addr_bits = max(1, (groups - 1).bit_length())
        self.group_bits = max(1, (max(layer.groups for layer in layers) - 1).bit_length())
        count_shape = range(max(layer.groups for layer in layers) + 1)
        n_layers = len(layers)
        super().__init__({
            "first_pixel": In(1), "counting": Out(1),
            "enc_load": Out(1), "enc_draw": Out(1), "enc_loaded": In(1), "enc_drawn": In(1),
            "enc_count": In(range(inputs + 1)), "enc_last_step": In(STEPS_BITS),
            "enc_rate": In(1),
            "es_start": Out(1), "es_busy": In(1), "es_passes": Out(self.group_bits + 1),
            "es_a_base": Out(self.addr_bits), "es_a_count": Out(count_shape),
            "es_b_pixels": Out(1), "es_b_base": Out(self.addr_bits),
            "es_b_count": Out(range(max(inputs, max(layer.groups for layer in layers)) + 1)),
            "counts": In(data.ArrayLayout(count_shape, n_layers)),
            "syn_start": Out(1), "layer": Out(range(max(2, n_layers))),
            "neu_valid": Out(1), "neu_rest": Out(1), "neu_peek": Out(1),
            "neu_addr": Out(self.addr_bits), "neu_layer": Out(range(max(2, n_layers))),
            "list_begin": Out(1), "clear": Out(1),
            "ro_valid": Out(1), "ro_lane": Out(range(max(2, lanes))),
            "result_valid": In(1), "result_ready": In(1),
        })

    def _table(self, values, shape):
        return Array(Const(v, shape) for v in values)

    def elaborate(self, platform) -> Module:
        m = Module()
        layers, P = self.layers, self.lanes
        L = len(layers)
        # the issue, decided in the states below and registered to the outputs
        self._iss = {name: Signal.like(getattr(self, name), name=f"issue_{name}")
                     for name in ("neu_valid", "neu_rest", "neu_peek", "neu_addr", "neu_layer",
                                  "list_begin", "ro_valid", "ro_lane")}
        m.d.sync += [getattr(self, name).eq(sig) for name, sig in self._iss.items()]
        self._run = {name: Signal.like(getattr(self, f"es_{name}"), name=f"run_{name}")
                     for name in ("start", "passes", "a_base", "a_count", "b_pixels", "b_base",
                                  "b_count")}
        m.d.comb += [getattr(self, f"es_{name}").eq(reg) for name, reg in self._run.items()]
        m.d.comb += self.syn_start.eq(self._run["start"])
        m.d.sync += self._run["start"].eq(0)  # a pulse (LAYER sets it, below)
        last_layer = L - 1
        t = Signal(STEPS_BITS, name="step")
        lay = self.layer  # the phase's layer, an output
        g = Signal(self.group_bits + 1, name="group")
        wait = Signal(8, name="wait")
        rest = Signal(name="first_step")
        m.d.comb += rest.eq(t == 0)
        groups = self._table([layer.groups for layer in layers], self.group_bits + 1)
        bases = self._table([layer.group_base for layer in layers], self.addr_bits)
        rec = self._table([int(layer.recurrent) for layer in layers], 1)
        last_group = Signal.like(g)
        m.d.comb += last_group.eq(g == groups[lay] - 1)
        last_step = Signal()
        m.d.comb += last_step.eq(t == self.enc_last_step)
        # the phase after NEU(l): a single constant layer runs NEU again at once
        single_constant = L == 1 and not layers[0].recurrent
        waits = self.waits

        def syn_needed(layer_index):
            """Whether layer ``layer_index`` (a Value) needs a synaptic phase at step t."""
            return (layer_index != 0) | self.enc_rate | rec[layer_index] | rest

        # readout counters: value n of the readout, group rg, lane rp
        n = Signal(range(max(2, self.readout_neurons + 1)), name="ro_n")
        rg = Signal(self.addr_bits, name="ro_group")
        rp = Signal(range(max(2, P)), name="ro_lane_count")

        with m.If(self.first_pixel):
            m.d.sync += self.counting.eq(1)
        with m.FSM(name="phase"):
            with m.State("LOAD"):
                m.d.comb += self.enc_load.eq(1)
                with m.If(self.first_pixel):
                    m.d.comb += self.clear.eq(1)
                with m.If(self.enc_loaded):
                    m.d.sync += [t.eq(0), lay.eq(0), g.eq(0)]
                    m.next = "STEP"
            with m.State("STEP"):
                # a step begins at layer 0
                with m.If(self.enc_rate):
                    m.d.comb += self.enc_draw.eq(1)
                    m.next = "DRAW"
                with m.Else():
                    m.next = "LAYER"
            with m.State("DRAW"):
                with m.If(self.enc_drawn):
                    m.next = "LAYER"
            with m.State("LAYER"):
                with m.If(syn_needed(lay)):
                    self._start_syn(m, lay, bases, groups, rec)
                    m.next = "SYN_START"
                with m.Else():
                    m.d.sync += g.eq(0)
                    m.next = "NEU"
            with m.State("SYN_START"):  # the registered start reaches the event source
                m.next = "SYN"
            with m.State("SYN"):
                with m.If(~self.es_busy):
                    wait_syn = self._table([w.syn_to_neu for w in waits], 8)[lay]
                    m.d.sync += [wait.eq(wait_syn), g.eq(0)]
                    m.next = "SYN_WAIT"
            with m.State("SYN_WAIT"):
                with m.If(wait == 0):
                    self._issue(m, lay, g, bases, rest)
                    m.d.sync += g.eq(1)
                    with m.If(last_group):
                        self._after_neu(m, lay, t, g, wait, last_step, single_constant, waits,
                                        last_layer)
                    with m.Else():
                        m.next = "NEU"
                with m.Else():
                    m.d.sync += wait.eq(wait - 1)
            with m.State("NEU"):
                self._issue(m, lay, g, bases, rest)
                m.d.sync += g.eq(g + 1)
                with m.If(last_group):
                    self._after_neu(m, lay, t, g, wait, last_step, single_constant, waits,
                                    last_layer)
            with m.State("NEU_WAIT"):
                # drain before the next phase: the next layer (or step, or the readout)
                with m.If(wait == 0):
                    m.next = "LAYER"
                with m.Else():
                    m.d.sync += wait.eq(wait - 1)
            with m.State("STEP_WAIT"):
                with m.If(wait == 0):
                    m.next = "STEP"
                with m.Else():
                    m.d.sync += wait.eq(wait - 1)
            with m.State("READOUT_WAIT"):
                with m.If(wait == 0):
                    m.d.sync += [n.eq(0), rg.eq(bases[last_layer]), rp.eq(0)]
                    m.next = "READOUT"
                with m.Else():
                    m.d.sync += wait.eq(wait - 1)
            with m.State("READOUT"):
                iss = self._iss
                m.d.comb += [iss["neu_valid"].eq(1), iss["neu_peek"].eq(1),
                             iss["neu_addr"].eq(rg), iss["neu_layer"].eq(lay),
                             iss["ro_valid"].eq(1), iss["ro_lane"].eq(rp)]
                m.d.sync += [n.eq(n + 1), rp.eq(rp + 1)]
                with m.If(rp == P - 1):
                    m.d.sync += [rp.eq(0), rg.eq(rg + 1)]
                with m.If(n == self.readout_neurons - 1):
                    m.next = "RESULT"
            with m.State("RESULT"):
                with m.If(self.result_valid & self.result_ready):
                    m.d.sync += self.counting.eq(0)
                    m.next = "LOAD"
        return m

    def _start_syn(self, m, lay, bases, groups, rec) -> None:
        """SYN(l)'s run: its groups; its own list (recurrent) and its input's. The start and
        the parameters are registered here (LAYER) and reach the event source and the synaptic
        stage in the next cycle (SYN_START): the spike-list counts and the layer tables stay
        off the event source's first memory read (84.6 MHz on the ULX3S-85F without it)."""
        run = self._run
        m.d.sync += [run["start"].eq(1), run["passes"].eq(groups[lay]),
                     run["a_base"].eq(bases[lay]),
                     run["a_count"].eq(Mux(rec[lay], self.counts[lay], 0)),
                     run["b_pixels"].eq(lay == 0)]
        with m.If(lay == 0):
            m.d.sync += [run["b_base"].eq(0), run["b_count"].eq(self.enc_count)]
        with m.Else():
            before = Signal.like(lay, name="layer_before")
            m.d.comb += before.eq(lay - 1)
            m.d.sync += [run["b_base"].eq(bases[before]),
                         run["b_count"].eq(self.counts[before])]

    def _issue(self, m, lay, g, bases, rest) -> None:
        """One group of NEU(l) to the neuron stage; the lister's list begins with group 0."""
        iss = self._iss
        m.d.comb += [iss["neu_valid"].eq(1), iss["neu_addr"].eq(bases[lay] + g),
                     iss["neu_layer"].eq(lay), iss["neu_rest"].eq(rest),
                     iss["list_begin"].eq(g == 0)]

    def _after_neu(self, m, lay, t, g, wait, last_step, single_constant, waits, last_layer):
        """The transition after NEU(l)'s last group (module docstring)."""
        table = self._table
        with m.If(lay != last_layer):
            m.d.sync += [lay.eq(lay + 1),
                         wait.eq(table([w.neu_to_list for w in waits], 8)[lay])]
            m.next = "NEU_WAIT"
        with m.Elif(last_step):
            m.d.sync += wait.eq(table([w.neu_to_readout for w in waits], 8)[lay])
            m.next = "READOUT_WAIT"
        with m.Else():
            m.d.sync += [t.eq(t + 1), lay.eq(0), g.eq(0)]
            if single_constant:
                # the same layer at once, unless the rate encoder draws first or the groups
                # are too few to hide the neuron stage's latency
                with m.If(self.enc_rate):
                    m.next = "STEP"
                with m.Else():
                    if waits[0].neu_to_neu == 0:
                        m.next = "NEU"
                    else:
                        m.d.sync += wait.eq(waits[0].neu_to_neu)
                        m.next = "STEP_WAIT"
            elif len(self.layers) == 1:
                # one recurrent layer: its next phase reads the list it is writing
                m.d.sync += wait.eq(waits[0].neu_to_list)
                m.next = "STEP_WAIT"
            else:
                # every list the next step reads was written a whole phase ago (the last
                # layer's own, recurrent, is read after the phases of layers 0 .. L-2)
                m.next = "STEP"
