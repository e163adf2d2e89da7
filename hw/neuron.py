"""One neuron's arithmetic, as short pipelines: the input current and the neuron update.

These two components are the lanes of the core (``hw/core.py`` instantiates ``P`` of each) and
equal, input for input, :func:`golden.model.input_current` (after the accumulation) and
:func:`golden.neurons.step` (every neuron model: ``lif``, ``leaky``, threshold adaptation,
non-spiking integrators) followed by :func:`golden.model.psc_step`. Widths come from
:mod:`golden.constants`; the intermediate widths below are exact (no wrap anywhere).

Timing: the current lane and a ``lif`` neuron lane have one register stage inside
(:data:`LANE_LATENCY`), a ``leaky`` lane two (its multiplier; :attr:`LaneConfig.latency`). The
inputs presented in cycle ``n`` give their outputs, combinationally from the last register, in
cycle ``n + latency``; a new set of inputs may enter every cycle. The split keeps each stage
to about two carry chains, which is what lets the core reach 100 MHz on the ECP5.
"""

from __future__ import annotations

from typing import NamedTuple

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.constants import (
    ADAPT_BITS,
    BETA_FRAC,
    I_BITS,
    I_MAX,
    I_MIN,
    NEURON_LEAKY,
    NEURON_LIF,
    PSC_BITS,
    REF_BITS,
    RESET_SUBTRACT,
    RESET_ZERO,
    V_BITS,
    V_MAX,
    V_MIN,
    V_TH_BITS,
    W_SHIFT_BITS,
    W_SHIFT_MAX,
)
from golden.neurons import NeuronParams

__all__ = ["LANE_LATENCY", "CurrentLane", "LaneConfig", "NeuronLane"]

#: Cycles from a lane's inputs to its outputs (both lanes).
LANE_LATENCY = 1


class CurrentLane(wiring.Component):
    """Synaptic current ``I = sat_I(shift(total, s))`` of ``total = W.x + bias``, a two-stage
    pipeline.

    ``shift(a, s)`` is ``a << s`` for ``s >= 0`` and ``a >> -s`` (arithmetic: floor) for
    ``s < 0`` (:func:`golden.model.shift`). The core's accumulator starts each group from the
    bias, so ``total`` arrives complete and the lane has no adder.

    Both directions are one right shift, ``shift(a, s) = (a << W_SHIFT_MAX) >> (W_SHIFT_MAX -
    s)``, exact because the constant left shift is wiring and the arithmetic right shift
    floors; ``W_SHIFT_MAX - s`` (0 .. 31) is ``s ^ W_SHIFT_MAX``, no adder. Only the 16 low
    bits of that shift are built (a 16-bit window of ``total``). Whether the shifted value fits
    ``I_BITS`` is decided without it: ``shift(total, s)`` fits iff ``total`` fits ``I_BITS - s``
    bits, i.e. iff bits ``W_SHIFT_MAX - s .. top`` of ``total`` all equal its sign, which is one
    bit, selected by the same amount, of the suffix ORs of ``total[i] ^ sign``.

    Stage 1 registers the window, the fit bit and the sign; stage 2 saturates (a 2-input
    select, combinational from those registers): ``current`` follows the inputs by one cycle.
    (A full-width shifter and a compare, measured on the ECP5 for one lane alone: about 2.4x
    the LUTs; with the bias adder in this stage as well, 118 MHz instead of 132.)

    Parameters
    ----------
    total_bits : int
        Width of the signed ``total`` (``hw.geometry.CoreGeometry.total_bits``).

    Attributes
    ----------
    total_bits : int
        As given.

    Members
    -------
    total : :py:`In(signed(total_bits))`
        ``W_in[n] . x + bias[n]``, exact.
    shift : :py:`In(signed(W_SHIFT_BITS))`
        The neuron's signed shift, ``W_SHIFT_MIN .. W_SHIFT_MAX``.
    current : :py:`Out(signed(I_BITS))`
        Q5.10 current, saturated to ``I_MIN .. I_MAX``.
    """

    def __init__(self, total_bits: int):
        self.total_bits = total_bits
        super().__init__({
            "total": In(signed(total_bits)),
            "shift": In(signed(W_SHIFT_BITS)),
            "current": Out(signed(I_BITS)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        total, top = self.total, self.total_bits - 1
        # W_SHIFT_MAX = 2**(W_SHIFT_BITS-1) - 1, so W_SHIFT_MAX - s = s ^ W_SHIFT_MAX (mod 2**5).
        amount = Signal(W_SHIFT_BITS)
        m.d.comb += amount.eq(self.shift.as_unsigned() ^ W_SHIFT_MAX)
        # differs[i]: bit i is not a copy of the sign; above[i] = any(differs[i:]), by doubling.
        above = [total[i] ^ total[top] for i in range(top)]
        span = 1
        while span < top:
            above = [above[i] | above[i + span] if i + span < top else above[i]
                     for i in range(top)]
            span *= 2
        # total fits I_BITS - s bits iff bits I_BITS - 1 - s = amount .. top all equal the sign
        # (amount <= 31 < top for every total_bits >= 33; for a narrower total the bits past
        # its top are copies of the sign: 0).
        fits, window, negative = Signal(), Signal(I_BITS), Signal()
        m.d.sync += [
            fits.eq(~(Cat(*above, Const(0, 1)) >> amount)[0]),
            window.eq(((total << W_SHIFT_MAX) >> amount)[:I_BITS]),
            negative.eq(total[top]),
        ]
        m.d.comb += self.current.eq(
            Mux(fits, window.as_signed(), Mux(negative, I_MIN, I_MAX)))
        return m


class LaneConfig(NamedTuple):
    """The elaboration-time constants of a :class:`NeuronLane`: one layer's neuron model.

    ``model``, ``leak_shift``, ``ref_steps``, ``reset``, ``adapt_step``, ``adapt_shift`` and
    ``spiking`` are :class:`golden.neurons.NeuronParams`'s; ``psc_shift`` is the PSC filter of
    the layer a ``psc`` readout reads (None for every other layer).
    """

    model: str = NEURON_LIF
    leak_shift: int = 0
    ref_steps: int = 0
    reset: str = RESET_ZERO
    adapt_step: int = 0
    adapt_shift: int = 0
    spiking: bool = True
    psc_shift: int | None = None

    @classmethod
    def of(cls, params: NeuronParams, psc_shift: int | None = None) -> LaneConfig:
        """The lane of a layer with neuron model ``params`` (its arrays are the ROMs')."""
        return cls(params.model, params.leak_shift, params.ref_steps, params.reset,
                   params.adapt_step, params.adapt_shift, bool(params.spiking), psc_shift)

    @property
    def latency(self) -> int:
        """Cycles from the lane's inputs to its outputs: 1, or 2 with the ``leaky`` model's
        multiplier."""
        return 2 if self.model == NEURON_LEAKY else 1

    @property
    def has_ref(self) -> bool:
        return self.model == NEURON_LIF and self.spiking

    @property
    def has_adapt(self) -> bool:
        return self.adapt_step > 0

    @property
    def has_s_prev(self) -> bool:
        return self.model == NEURON_LEAKY and self.spiking

    @property
    def has_psc(self) -> bool:
        return self.psc_shift is not None


class NeuronLane(wiring.Component):
    """One step of one neuron of any model of :mod:`golden.neurons` (and its PSC filter), a
    pipeline of :attr:`LaneConfig.latency` register stages; equal, input for input, to
    :func:`golden.neurons.step` (then :func:`golden.model.psc_step`).

    ``lif`` (latency 1; ``th = v_th + a``, ``a = 0`` without adaptation)::

        act  = ref == 0
        v1   = act ? max(v + ((I - v) >> leak_shift), 0) : v
        s    = act & (v1 >= th)
        v'   = s ? 0 : v1
        ref' = s ? ref_steps : max(ref - 1, 0)

    Stage 1 integrates: it registers ``v1``, ``act``, ``max(ref - 1, 0)``, ``th`` and both
    candidates of ``a'`` and ``psc'`` (for ``s = 0`` and ``s = 1``). Stage 2 fires,
    combinationally from those registers: the threshold compare and the selects.

    ``leaky`` (latency 2): stage 1 registers the product ``beta * v`` (a DSP multiplier, 16 x
    12 bits) with the current, ``s_prev`` and the thresholds; stage 2 registers
    ``v' = sat_V((beta * v >> 12) + I - (s_prev ? v_th : 0))`` (reset by subtraction) or
    ``s_prev ? 0 : sat_V((beta * v >> 12) + I)`` (reset to zero); the outputs select from it:
    ``s = v' > th``.

    Threshold adaptation, both models: ``a' = a + ((-a) >> adapt_shift) + (s ? adapt_step :
    0)``. A non-spiking lane (the leaky-integrator readout) has no threshold and never fires:
    ``v' = v + ((I - v) >> leak_shift)`` (``lif``, no clamp) or ``sat_V((beta * v >> 12) + I)``.
    The PSC, when the lane has one: ``psc' = psc + (((s << PSC_BITS) - psc) >> psc_shift)``.

    Parameters
    ----------
    config : LaneConfig
        The layer's neuron model (elaboration-time constants).

    Attributes
    ----------
    config : LaneConfig
        As given.
    latency : int
        ``config.latency``.

    Members
    -------
    current : :py:`In(signed(I_BITS))`
        Q5.10 input current of this step (:class:`CurrentLane`'s ``current``).
    v : :py:`In(signed(V_BITS))`
        Membrane potential before the step, Q5.10.
    v_th : :py:`In(V_TH_BITS)`
        Spiking lanes: the neuron's threshold, UQ5.10.
    beta : :py:`In(BETA_FRAC)`
        ``leaky``: the neuron's leak, UQ0.12.
    ref : :py:`In(REF_BITS)`
        Spiking ``lif``: refractory steps left before the step.
    a : :py:`In(ADAPT_BITS)`
        Adaptive lanes: the threshold adaptation before the step.
    s_prev : :py:`In(1)`
        Spiking ``leaky``: the spike of the previous step (the delayed reset).
    psc : :py:`In(PSC_BITS)`
        With a PSC: its value before the step, UQ0.12.
    v_next, ref_next, a_next, psc_next : :py:`Out`
        The state after the step (the ports of the inputs that exist), ``latency`` cycles
        after the inputs.
    spike : :py:`Out(1)`
        ``s``: the neuron fired in this step (0 for a non-spiking lane).
    """

    def __init__(self, config: LaneConfig | None = None, **kwargs):
        if config is None:  # the single-layer core's form: lif with a PSC
            config = LaneConfig(NEURON_LIF, kwargs.pop("leak_shift"), kwargs.pop("ref_steps"),
                                psc_shift=kwargs.pop("psc_shift"))
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}")
        self.config = config
        self.latency = config.latency
        self.leak_shift, self.ref_steps, self.psc_shift = (
            config.leak_shift, config.ref_steps, config.psc_shift)
        ports = {"current": In(signed(I_BITS)), "v": In(signed(V_BITS)),
                 "v_next": Out(signed(V_BITS)), "spike": Out(1)}
        if config.spiking:
            ports["v_th"] = In(V_TH_BITS)
        if config.model == NEURON_LEAKY:
            ports["beta"] = In(BETA_FRAC)
        if config.has_ref:
            ports.update(ref=In(REF_BITS), ref_next=Out(REF_BITS))
        if config.has_adapt:
            ports.update(a=In(ADAPT_BITS), a_next=Out(ADAPT_BITS))
        if config.has_s_prev:
            ports["s_prev"] = In(1)
        if config.has_psc:
            ports.update(psc=In(PSC_BITS), psc_next=Out(PSC_BITS))
        super().__init__(ports)

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.config
        if not cfg.spiking:
            v_next = (self._integrator_lif(m) if cfg.model == NEURON_LIF
                      else self._leaky_membrane(m))
            m.d.comb += [self.v_next.eq(v_next), self.spike.eq(0)]
            return m
        # v_th (+ a: 15 + 16 bits unsigned, 17 bits), registered in stage 1
        th = Signal(max(V_TH_BITS, ADAPT_BITS) + 1 if cfg.has_adapt else V_TH_BITS)
        quiet, fired = {}, {}       # stage-1 candidates of a' and psc' for s = 0 and s = 1
        if cfg.has_adapt:
            decay = Signal(signed(ADAPT_BITS + 1))
            m.d.comb += decay.eq(-self.a)
            quiet["a"], fired["a"] = Signal(ADAPT_BITS), Signal(ADAPT_BITS)
            a_quiet = self.a + (decay >> cfg.adapt_shift)
            m.d.sync += [th.eq(self.v_th + self.a), quiet["a"].eq(a_quiet),
                         fired["a"].eq(a_quiet + cfg.adapt_step)]
        else:
            m.d.sync += th.eq(self.v_th)
        if cfg.has_psc:
            rise = Signal(signed(PSC_BITS + 2))         # PSC_ONE - psc: 1 .. 4096
            fall = Signal(signed(PSC_BITS + 2))         # -psc: -4095 .. 0
            m.d.comb += [rise.eq((1 << PSC_BITS) - self.psc), fall.eq(-self.psc)]
            quiet["psc"], fired["psc"] = Signal(PSC_BITS), Signal(PSC_BITS)
            m.d.sync += [fired["psc"].eq(self.psc + (rise >> cfg.psc_shift)),
                         quiet["psc"].eq(self.psc + (fall >> cfg.psc_shift))]
        if cfg.model == NEURON_LIF:
            self._lif(m, th)
        else:
            # the leaky lane's second stage: th and the candidates wait a cycle beside v'
            th = self._delay(m, th)
            quiet = {name: self._delay(m, value) for name, value in quiet.items()}
            fired = {name: self._delay(m, value) for name, value in fired.items()}
            v2 = self._leaky_membrane(m)
            m.d.comb += [self.spike.eq(v2 > th), self.v_next.eq(v2)]
        for name, port in (("a", "a_next"), ("psc", "psc_next")):
            if name in quiet:
                m.d.comb += getattr(self, port).eq(Mux(self.spike, fired[name], quiet[name]))
        return m

    @staticmethod
    def _delay(m: Module, value: Signal) -> Signal:
        held = Signal.like(value, name=f"{value.name}_2")
        m.d.sync += held.eq(value)
        return held

    def _lif(self, m: Module, th: Signal) -> None:
        """The ``lif`` membrane, refractory period and spike (stage 1 integrates, 2 fires)."""
        diff = Signal(signed(V_BITS + 1))           # I - v: both 16-bit signed
        v_int = Signal(signed(V_BITS + 2))          # v + (diff >> k)
        active_d = Signal()
        m.d.comb += [
            active_d.eq(self.ref == 0),
            diff.eq(self.current - self.v),
            v_int.eq(self.v + (diff >> self.leak_shift)),
        ]
        active = Signal()
        v1 = Signal(signed(V_BITS))
        ref_idle = Signal(REF_BITS)                 # ref' without a spike
        m.d.sync += [
            active.eq(active_d),
            v1.eq(Mux(active_d, Mux(v_int < 0, 0, v_int), self.v)),
            ref_idle.eq(Mux(active_d, 0, self.ref - 1)),
        ]
        m.d.comb += [
            self.spike.eq(active & (v1 >= th)),
            self.v_next.eq(Mux(self.spike, 0, v1)),
            self.ref_next.eq(Mux(self.spike, self.ref_steps, ref_idle)),
        ]

    def _integrator_lif(self, m: Module) -> Signal:
        """A non-spiking ``lif`` membrane: ``v + ((I - v) >> leak_shift)``, registered."""
        diff = Signal(signed(V_BITS + 1))
        m.d.comb += diff.eq(self.current - self.v)
        v1 = Signal(signed(V_BITS))  # between v and I: no clamp needed
        m.d.sync += v1.eq(self.v + (diff >> self.leak_shift))
        return v1

    def _leaky_membrane(self, m: Module) -> Signal:
        """``v'`` of a ``leaky`` lane, two register stages: the product, then the sum."""
        cfg = self.config
        product = Signal(signed(V_BITS + BETA_FRAC + 1))
        current, s_prev = Signal(signed(I_BITS)), Signal()
        m.d.sync += [product.eq(self.v * self.beta.as_unsigned()), current.eq(self.current)]
        u = Signal(signed(V_BITS + 2))  # (beta v >> 12) + I: |.| < 2**16
        m.d.comb += u.eq((product >> BETA_FRAC) + current)
        v2 = Signal(signed(V_BITS))
        if not cfg.spiking:
            m.d.sync += v2.eq(self._sat_v(u))
            return v2
        v_th = Signal(V_TH_BITS)
        m.d.sync += [s_prev.eq(self.s_prev), v_th.eq(self.v_th)]
        if cfg.reset == RESET_SUBTRACT:
            reduced = Signal(signed(V_BITS + 3))
            m.d.comb += reduced.eq(u - Mux(s_prev, v_th, 0))
            m.d.sync += v2.eq(self._sat_v(reduced))
        else:
            m.d.sync += v2.eq(Mux(s_prev, 0, self._sat_v(u)))
        return v2

    @staticmethod
    def _sat_v(value):
        return Mux(value > V_MAX, V_MAX, Mux(value < V_MIN, V_MIN, value))
