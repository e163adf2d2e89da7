"""The neuron stage of the engine: one group of ``P`` neurons of any layer per cycle.

Each transfer on ``i`` names a layer and one of its groups (the group's global word ``addr``,
``hw.geometry.LayerGeometry.group_base + g``). The stage reads the group's current
(``cur_mem``, written by the synaptic stage through ``cur_in``), its state (``st_mem``) and its
thresholds and leaks (``v_th_mem``, ``beta_mem``), runs the ``P`` lanes of the layer's neuron
model (:class:`hw.neuron.NeuronLane`, ``golden.neurons.step``), writes the new state back and
offers the group's spikes on ``o``. ``rest`` (an image's first step) replaces the stored state by
rest (every state field 0), as every image starts from rest.

Every layer has its own lane configuration (:class:`hw.neuron.LaneConfig`, from the network
image); the stage builds ``P`` lanes for each *distinct* configuration, all fed the same
registered inputs, and selects the outputs of the transfer's layer. Their constants are wiring:
no per-layer shift or multiplier is shared. The state word is the union of the fields the
layers need (:func:`state_fields`), ``v`` always, ``ref``, ``a`` (adaptation), ``s`` (the
previous spike of a ``leaky`` neuron), ``psc`` (a PSC readout's layer) and ``count`` (a spike
readout's output layer: its spikes so far, ``count' = count + s``); a field a layer does not use
is written 0.

Pipeline: cycle 0, the transfer on ``i`` addresses the memories (the thresholds and leaks are
:class:`hw.group_rom.GroupRom` ROMs, read as a memory is); cycle 1 registers their outputs as
the lanes' inputs (or rest), or, with ``state_stages`` = 1, registers them as they are, next to
the block RAMs, and cycle 2 registers those as the lanes' inputs (a large network's state memory
is spread over the die and its block RAMs' output is slow: their path into the lanes' input
registers limited the MNIST image to 82.5 MHz on the ULX3S-85F); the lanes take
:attr:`NeuronStage.lane_latency` cycles (1, or 2 with a ``leaky`` layer; shorter lanes are
delayed to match), whose outputs are registered; they are offered on ``o`` in cycle
:attr:`NeuronStage.latency` (``lane_latency + 3 + state_stages``) after the transfer on ``i``,
and written back to ``st_mem`` at the end of that cycle. ``i.ready`` is always high; ``o`` has
no back-pressure.

On the ECP5 both per-group memories are asked for in LUT RAM (:meth:`NeuronStage.memory_attrs`,
at most :data:`hw.geometry.LUT_RAM_GROUPS` groups): the read port's register then takes the
LUT RAM's output next to it, and a write in the read's cycle leaves the read's old value, as
the RTL says, with no logic added. A block RAM's output leaves it 5.8 ns after the clock, and as
its read and write ports are different ports Yosys adds a bypass of the written value, into the
same path (the MNIST image's 48 x 464-bit state in 13 DP16KDs: 92.4 MHz on the ULX3S-85F).

The readout reads the final state through the same read port: a transfer with ``peek`` set
updates nothing, and two cycles later the group's readout values (the state as read: ``psc``,
``v`` or ``count``) are on ``r``, registered: the state memory's output goes to one register per
lane and no further (with ``state_stages`` = 1, the held state's register is that register), the
first of :data:`hw.geometry.PEEK_DELAY`'s two registers (the readout's lane select, across the
die from a large network's state block RAMs, was the MNIST image's critical path, 73.5 MHz).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.constants import (
    ADAPT_BITS,
    BETA_FRAC,
    I_BITS,
    PSC_BITS,
    READOUT_LI,
    READOUT_PSC,
    READOUT_SPIKES,
    REF_BITS,
    STEPS_BITS,
    V_BITS,
    V_TH_BITS,
)

from .geometry import LUT_RAM_GROUPS
from .group_rom import GroupRom
from .neuron import NeuronLane
from .synapse import current_record

__all__ = ["NeuronStage", "state_fields", "readout_field"]


def state_fields(configs, readout: str) -> dict[str, object]:
    """The state word's fields (name -> shape) for layers with lane ``configs``."""
    fields = {"v": signed(V_BITS)}
    if any(c.has_ref for c in configs):
        fields["ref"] = unsigned(REF_BITS)
    if any(c.has_adapt for c in configs):
        fields["a"] = unsigned(ADAPT_BITS)
    if any(c.has_s_prev for c in configs):
        fields["s"] = unsigned(1)
    if readout == READOUT_PSC:
        fields["psc"] = unsigned(PSC_BITS)
    if readout == READOUT_SPIKES:
        fields["count"] = unsigned(STEPS_BITS)
    return fields


def readout_field(readout: str) -> str:
    """The state field a readout reads: ``psc``, ``v`` (li) or ``count`` (spikes)."""
    return {READOUT_PSC: "psc", READOUT_LI: "v", READOUT_SPIKES: "count"}[readout]


class NeuronStage(wiring.Component):
    """Current, state and parameter memories and the lanes of every layer's neuron model.

    Parameters
    ----------
    configs : sequence of hw.neuron.LaneConfig
        Per layer, its lanes' configuration.
    readout : str
        The network's readout (``golden.constants.READOUTS``): which state field it reads.
    v_th, beta : list of list of int
        Per global group word, the ``P`` thresholds (0 for a non-spiking layer) and leaks
        (0 for a ``lif`` layer): the ROMs.
    lanes : int
        ``P``.
    output_layer : int
        The layer whose spikes a ``spikes`` readout counts (the last).
    state_stages : int
        Registers between the memories' outputs and the lanes' input registers beyond the
        first (0 or 1, ``hw.geometry.EngineGeometry.state_stages``).

    Attributes
    ----------
    lane_latency : int
        The longest lane's latency (every lane is delayed to it).
    latency : int
        Cycles from a transfer on ``i`` to its result on ``o`` (and the write-back).
    state : data.StructLayout
        One neuron's state (:func:`state_fields`).

    Members
    -------
    cur_in : :py:`In(stream.Signature(current_record(addr_bits, P)))`
        The synaptic stage's currents, written into ``cur_mem``; always ready.
    i : :py:`In(stream.Signature(issue))`
        ``layer``, ``addr`` (global group word), ``rest`` (first step), ``peek`` (read only);
        always ready.
    o : :py:`Out(stream.Signature(result))`
        ``layer``, ``addr``, ``spikes`` (``P`` bits, lane 0 lowest), ``latency`` cycles after
        an update's transfer on ``i``; no back-pressure.
    r : :py:`Out(stream.Signature(values))`
        ``value`` (``P`` readout values, registered), two cycles after a ``peek`` transfer.
    """

    def __init__(self, *, configs, readout: str, v_th, beta, lanes: int, output_layer: int,
                 state_stages: int = 0):
        self.configs = tuple(configs)
        self.variants = tuple(dict.fromkeys(self.configs))  # distinct, in layer order
        self.readout, self.lanes, self.output_layer = readout, lanes, output_layer
        self.v_th, self.beta = v_th, beta
        self.depth = len(v_th)
        self.addr_bits = max(1, (self.depth - 1).bit_length())
        if state_stages not in (0, 1):  # the peek's register is the held state's (one)
            raise ValueError(f"state_stages is 0 or 1, not {state_stages}")
        self.state_stages = state_stages
        self.lane_latency = max(c.latency for c in self.configs)
        self.latency = self.lane_latency + 3 + state_stages
        self.state = data.StructLayout(state_fields(self.configs, readout))
        value_shape = self.state[readout_field(readout)].shape
        layer_shape = range(max(2, len(self.configs)))
        self.issue = data.StructLayout({"layer": layer_shape, "addr": unsigned(self.addr_bits),
                                        "rest": unsigned(1), "peek": unsigned(1)})
        self.result = data.StructLayout({"layer": layer_shape, "addr": unsigned(self.addr_bits),
                                         "spikes": unsigned(lanes)})
        self.values = data.StructLayout({"value": data.ArrayLayout(value_shape, lanes)})
        super().__init__({
            "cur_in": In(stream.Signature(current_record(self.addr_bits, lanes))),
            "i": In(stream.Signature(self.issue)),
            "o": Out(stream.Signature(self.result)),
            "r": Out(stream.Signature(self.values)),
        })

    @property
    def leaky(self) -> bool:
        return any(c.model == "leaky" for c in self.configs)

    def elaborate(self, platform) -> Module:
        m = Module()
        P = self.lanes
        m.d.comb += [self.i.ready.eq(1), self.cur_in.ready.eq(1)]
        mems = self._memories(m, self.memory_attrs(platform))
        # cycle 1: the memories' outputs (or rest) into the lanes' input registers
        v1 = Signal(name="n1_valid")
        layer1 = Signal.like(self.i.p.layer, name="n1_layer")
        addr1 = Signal.like(self.i.p.addr, name="n1_addr")
        rest1 = Signal(name="n1_rest")
        m.d.sync += [v1.eq(self.i.valid & ~self.i.p.peek), layer1.eq(self.i.p.layer),
                     addr1.eq(self.i.p.addr), rest1.eq(self.i.p.rest)]
        peek1, peek2 = Signal(name="n1_peek"), Signal(name="n2_peek")
        m.d.sync += [peek1.eq(self.i.valid & self.i.p.peek), peek2.eq(peek1)]
        field = readout_field(self.readout)
        m.d.comb += [self.r.valid.eq(peek2)]
        held = self._held(m, mems)
        if self.state_stages:  # the held state is the peek's register
            m.d.comb += [self.r.p.value[p].eq(held["st"][p][field]) for p in range(P)]
        else:
            m.d.sync += [self.r.p.value[p].eq(mems["st"].data[p][field]) for p in range(P)]
        s = self.state_stages
        inputs = self._lane_inputs(m, held, self._delayed(m, rest1, s))
        outputs = self._lanes(m, inputs)
        # the control bits travel beside the lanes; the outputs are registered (cycle
        # lane_latency + 1 + s) and offered, and written back, the cycle after
        layer_at_lanes = self._delayed(m, layer1, self.lane_latency + 1 + s)
        valid = self._delayed(m, v1, self.lane_latency + 2 + s)
        layer = self._delayed(m, layer_at_lanes, 1)
        addr = self._delayed(m, addr1, self.lane_latency + 2 + s)
        chosen = self._select(m, outputs, inputs, layer_at_lanes)
        spikes = Signal(P, name="n_out_spikes")
        st = mems["st_wr"]
        m.d.sync += spikes.eq(chosen["spike"])
        for name in self.state.members:
            m.d.sync += [st.data[p][name].eq(chosen[name][p]) for p in range(P)]
        m.d.comb += [st.addr.eq(addr), st.en.eq(valid)]
        m.d.comb += [self.o.valid.eq(valid), self.o.p.layer.eq(layer), self.o.p.addr.eq(addr),
                     self.o.p.spikes.eq(spikes)]
        return m

    def memory_attrs(self, platform) -> dict[str, str]:
        """The attributes of ``cur_mem`` and ``st_mem``: ``ram_style = "distributed"`` (LUT
        RAM) when ``platform`` is an ECP5 one and the memories are at most
        :data:`hw.geometry.LUT_RAM_GROUPS` groups deep, else none (the iCE40 has no LUT RAM:
        Yosys refuses the attribute there; a simulation has no platform)."""
        if getattr(platform, "family", None) == "ecp5" and self.depth <= LUT_RAM_GROUPS:
            return {"ram_style": "distributed"}
        return {}

    def _memories(self, m: Module, attrs: dict[str, str]) -> dict:
        P, depth = self.lanes, self.depth
        current = data.ArrayLayout(signed(I_BITS), P)
        m.submodules.cur_mem = cur_mem = memory.Memory(shape=current, depth=depth, init=[],
                                                       attrs=attrs)
        m.submodules.st_mem = st_mem = memory.Memory(
            shape=data.ArrayLayout(self.state, P), depth=depth, init=[], attrs=attrs)
        m.submodules.v_th_mem = th_rd = GroupRom(data.ArrayLayout(unsigned(V_TH_BITS), P),
                                                 self.v_th)
        cur_wr, cur_rd = cur_mem.write_port(), cur_mem.read_port()
        st_wr, st_rd = st_mem.write_port(), st_mem.read_port()
        m.d.comb += [cur_wr.addr.eq(self.cur_in.p.addr), cur_wr.data.eq(self.cur_in.p.current),
                     cur_wr.en.eq(self.cur_in.valid)]
        addr = self.i.p.addr
        m.d.comb += [cur_rd.addr.eq(addr), st_rd.addr.eq(addr), th_rd.addr.eq(addr)]
        mems = {"cur": cur_rd, "st": st_rd, "st_wr": st_wr, "th": th_rd}
        if self.leaky:
            m.submodules.beta_mem = beta_rd = GroupRom(
                data.ArrayLayout(unsigned(BETA_FRAC), P), self.beta)
            mems["beta"] = beta_rd
            m.d.comb += beta_rd.addr.eq(addr)
        return mems

    def _held(self, m: Module, mems: dict) -> dict:
        """The memories' outputs of cycle 1 (``cur``, ``st``, ``th``, ``beta``), registered
        ``state_stages`` times (next to the block RAMs: a large network's state memory is
        spread over the die, and its output is slow)."""
        held = {name: mems[name].data for name in ("cur", "st", "th", "beta") if name in mems}
        for k in range(self.state_stages):
            for name, value in held.items():
                reg = Signal.like(value, name=f"n_held{k}_{name}")
                m.d.sync += reg.eq(value)
                held[name] = reg
        return held

    def _lane_inputs(self, m: Module, held: dict, rest) -> dict:
        """The lane inputs, registered from the held memory outputs (the state from rest on
        an image's first step)."""
        P = self.lanes
        fields = state_fields(self.configs, self.readout)
        regs = {"current": [Signal(signed(I_BITS), name=f"n_current{p}") for p in range(P)],
                "v_th": [Signal(V_TH_BITS, name=f"n_v_th{p}") for p in range(P)]}
        m.d.sync += [regs["current"][p].eq(held["cur"][p]) for p in range(P)]
        m.d.sync += [regs["v_th"][p].eq(held["th"][p]) for p in range(P)]
        if "beta" in held:
            regs["beta"] = [Signal(BETA_FRAC, name=f"n_beta{p}") for p in range(P)]
            m.d.sync += [regs["beta"][p].eq(held["beta"][p]) for p in range(P)]
        for name, shape in fields.items():
            regs[name] = [Signal(shape, name=f"n_{name}{p}") for p in range(P)]
            m.d.sync += [regs[name][p].eq(Mux(rest, 0, held["st"][p][name]))
                         for p in range(P)]
        return regs

    def _lanes(self, m: Module, inputs: dict) -> list[dict]:
        """``P`` lanes per distinct configuration; their outputs, each delayed to
        ``lane_latency``, as ``{field: [P signals]}`` (with ``spike``)."""
        P = self.lanes
        ports = {"current": "current", "v": "v", "v_th": "v_th", "beta": "beta", "ref": "ref",
                 "a": "a", "s_prev": "s", "psc": "psc"}
        outputs = []
        for k, cfg in enumerate(self.variants):
            out = {"spike": [], "v": [], "ref": [], "a": [], "psc": []}
            for p in range(P):
                lane = NeuronLane(cfg)
                m.submodules[f"lane{k}_{p}"] = lane
                for port, source in ports.items():
                    if hasattr(lane, port):
                        m.d.comb += getattr(lane, port).eq(inputs[source][p])
                wait = self.lane_latency - cfg.latency
                out["spike"].append(self._delayed(m, lane.spike, wait))
                out["v"].append(self._delayed(m, lane.v_next, wait))
                for name, port in (("ref", "ref_next"), ("a", "a_next"), ("psc", "psc_next")):
                    out[name].append(self._delayed(m, getattr(lane, port), wait)
                                     if hasattr(lane, port) else None)
            outputs.append(out)
        return outputs

    def _select(self, m: Module, outputs: list[dict], inputs: dict, layer_at_lanes) -> dict:
        """The outputs of the layer's configuration, per state field (0 where it has none);
        ``s`` is the spike itself and ``count`` adds it to the count read (the spike readout's
        output layer only)."""
        P = self.lanes
        variant_of_layer = [self.variants.index(c) for c in self.configs]

        def pick(name, p):
            values = [out[name][p] if out[name][p] is not None else 0 for out in outputs]
            if len(values) == 1:
                return values[0]
            return Array(values[v] for v in variant_of_layer)[layer_at_lanes]

        spike_bits = [pick("spike", p) for p in range(P)]
        chosen = {"spike": Signal(P, name="n_spikes")}
        m.d.comb += chosen["spike"].eq(Cat(*spike_bits))
        for name, member in self.state.members.items():
            chosen[name] = []
            for p in range(P):
                value = Signal(member, name=f"n_next_{name}{p}")
                if name == "s":
                    m.d.comb += value.eq(spike_bits[p])
                elif name == "count":
                    count = self._delayed(m, inputs["count"][p], self.lane_latency)
                    m.d.comb += value.eq(count + Mux(layer_at_lanes == self.output_layer,
                                                     spike_bits[p], 0))
                else:
                    m.d.comb += value.eq(pick(name, p))
                chosen[name].append(value)
        return chosen

    @staticmethod
    def _delayed(m: Module, value, cycles: int):
        for k in range(cycles):
            held = Signal.like(value, name=f"{value.name}_d{k + 1}")
            m.d.sync += held.eq(value)
            value = held
        return value
