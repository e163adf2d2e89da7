"""The cores built for one network and lane count: their memories and timing models, in plain
Python.

This module is the single description of what :class:`hw.engine.Engine` (the system's core,
:class:`EngineGeometry`) and :class:`hw.core.LifCore` (the single-layer core,
:class:`CoreGeometry`) build. Each makes its memories from its geometry's ``memories()``; the
fit check before synthesis (``hw/bitstream.py``) sizes block RAMs from the engine's list; INFO
reports :meth:`EngineGeometry.cycle_bound`, and the host driver falls back to
:func:`max_cycles` for a version-2 device. It imports no HDL toolchain
(the host driver needs only NumPy), and ``tests/test_geometry.py`` checks the list against the
memories of the elaborated core.

Timing model
------------
Cycles from an image's first pixel transfer to its result, fed one pixel per cycle (the phases
are described in ``hw/core.py``)::

    constant current:  M + G*max(K, 1) + T*G + N + READOUT_DRAIN + ceil(log2 C)
    rate encoder:      M + sum_t (M + DRAW_DRAIN + G*max(K_t, 1) + G) + N + READOUT_DRAIN
                         + ceil(log2 C)

with ``N`` neurons, ``M`` inputs, ``C`` classes, ``P`` lanes, ``G = N / P`` groups, ``T`` steps
(0 counts as 1), ``K`` the nonzero pixels and ``K_t`` the pixels spiking at step ``t`` (from the
golden LFSR draws). The largest count of any image (:func:`max_cycles`) has every pixel nonzero,
or spiking at every step: ``K = K_t = M``.

The same formula holds for every core: a banked weight memory's two extra INPUT stages
(:attr:`CoreGeometry.weight_stages`) overlap LIF's start, and a block-RAM pixel memory and
input list are read ahead (:attr:`CoreGeometry.pixel_read_ahead`,
:attr:`CoreGeometry.list_read_ahead`), so none of them adds a cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from golden.constants import (
    ADAPT_BITS,
    B_BITS,
    BETA_FRAC,
    D_BITS,
    I_BITS,
    MODE_CURRENT,
    MODE_RATE,
    PSC_BITS,
    REF_BITS,
    STEPS_BITS,
    V_BITS,
    V_TH_BITS,
    W_BITS,
    W_SHIFT_BITS,
)
from golden.lfsr import rate_draws

__all__ = [
    "BANKED_MIN_GROUPS",
    "BANK_STAGES",
    "SYNAPSE_ADDR_STAGES",
    "SYNAPSE_BANK_STAGES",
    "synapse_weight_stages",
    "BRAM_SHAPES",
    "LUT_RAM_MAX_BITS",
    "LUT_RAM_GROUPS",
    "CURRENT_FIELDS",
    "DRAW_DRAIN",
    "GROUP_ROM_CHUNK",
    "PEEK_DELAY",
    "STATE_STAGES",
    "READOUT_DRAIN",
    "STATE_FIELDS",
    "CoreGeometry",
    "Field",
    "MemorySpec",
    "cycles",
    "max_cycles",
    "WIDE_WORD_SHAPE_BITS",
    "weight_bank_depth",
    "weight_banks",
]

#: Cycles the DRAW phase waits for its pipeline before INPUT (rate mode, every step): the last
#: draw is appended to the input list 2 cycles after its issue, and INPUT needs the list's
#: length. No other phase change waits; the pipelines overlap instead (``hw/core.py``).
DRAW_DRAIN = 2
#: Cycles from the last READOUT issue to the result, before the argmax tree: the PSC reaches the
#: readout one cycle after its issue, and the readout needs 3 more (``hw/readout.py``).
READOUT_DRAIN = 4


#: The ECP5 block RAM's (DP16KD) read shapes, ``(width in bits, depth in words)``: a memory
#: whose elements fit one of these widths and whose depth is at most that shape's is one block
#: RAM deep, so Yosys joins no banks behind its output.
BRAM_SHAPES = ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512))
#: The largest pixel memory or input list (bits) that Yosys 0.70 keeps in LUT RAM; a larger
#: one is a block RAM, whose slow output is read a cycle ahead (``pixel_read_ahead``,
#: ``list_read_ahead``).
LUT_RAM_MAX_BITS = 1024
#: The deepest per-group memory of the neuron stage (``cur_mem``, ``st_mem``: one word of ``P``
#: per group) that it asks for in LUT RAM on the ECP5 (Yosys' ``ram_style = "distributed"``;
#: :mod:`hw.neuron_stage`). Left to itself, Yosys 0.70 put the MNIST image's 48 x 464-bit state
#: in 13 DP16KDs (36-bit mode), whose 5.8 ns output, through the collision logic Yosys adds for
#: a read port on the other port than the write, limited it to 92.4 MHz on the ULX3S-85F. Also
#: the fit check's LUT RAM depth on the ECP5 (``hw.bitstream.DISTRIBUTED_DEPTH``).
LUT_RAM_GROUPS = 64
#: The words of one chunk of a per-group ROM (the engine's thresholds, leaks, biases and
#: shifts: one word of ``P`` per group, ``hw/group_rom.py``): a ROM of at most this many words
#: is a memory (in LUTs), a deeper one chunks of this many words, each looked up by one LUT4 per
#: bit and registered, and a select of the chunks (the memory, a mux tree of about seven LUT
#: levels at 48 groups, limited the MNIST image to 89.0 MHz on the ULX3S-85F).
GROUP_ROM_CHUNK = 16
#: Registers between a banked engine's neuron memories and its lanes' input registers
#: (``hw/neuron_stage.py``'s ``state_stages``): with its weights in several banks, the engine's
#: block RAMs span the die, and the state memory's output (5.6 ns from the clock on the ECP5)
#: crossed it (82.5 MHz on the ULX3S-85F, the MNIST image).
STATE_STAGES = 1


#: Extra INPUT pipeline stages of a banked weight memory: the weight address registered before
#: the banks, and every bank's output registered before the bank select.
BANK_STAGES = 2
#: The engine's (``hw/synapse.py``): the address registered, then every bank's output registered
#: twice before the select. With one register the placer put it by the select, and a bank's
#: block RAM output (5.6 ns from the clock on the ECP5) crossed the die to it: 87.0 MHz for the
#: MNIST image on the ULX3S-85F. The sequencer's waits hide the latency (the cycle model counts
#: it).
SYNAPSE_BANK_STAGES = 3
#: The engine's weight address registered before a single weight memory (``hw/synapse.py``):
#: the event's ``j`` (the lowest set bit of a spike word, ``hw/event_source.py``) and the
#: address add went straight into the block RAM's address, 87.7 and 95.7 MHz for the
#: recurrent and adaptive digits images on the ULX3S-85F. Hidden by the sequencer's waits
#: where the layer's groups allow (the cycle model counts it).
SYNAPSE_ADDR_STAGES = 1


def synapse_weight_stages(banks: int) -> int:
    """Extra pipeline stages of the synaptic stage's weight read for a weight memory of
    ``banks`` banks: :data:`SYNAPSE_ADDR_STAGES` in one, else :data:`SYNAPSE_BANK_STAGES`."""
    return SYNAPSE_ADDR_STAGES if banks == 1 else SYNAPSE_BANK_STAGES
#: Groups a banked core needs (``hw.core.min_groups(BANK_STAGES)``, INPUT's latency 9, plus
#: one; a test holds the two equal). With fewer (8 or 9) a deep weight memory stays one
#: memory: correct, but its bank mux limits the clock (57.6 MHz for 784-512 at P = 16).
BANKED_MIN_GROUPS = 10


#: The narrowest block-RAM shape Yosys (0.70) reads a word of several weights in: a 4,096 x
#: 64-bit bank (P = 16, 4-bit weights) became two rows of 2,048 x 9-bit block RAMs joined by a
#: LUT mux, whose two sources pulled each bank register away from one of them (that block
#: RAM's output routed 4.6 ns: 94.8 MHz on the ULX3S-85F).
WIDE_WORD_SHAPE_BITS = 9


def weight_bank_depth(w_bits: int, lanes: int) -> int:
    """Words of one weight bank, so that each bank is one block RAM deep and its output goes
    straight into a register: a word of one ``w_bits`` weight (``lanes`` 1) in the deepest
    block-RAM shape whose width holds it (4 bits: 4,096 words; 5 to 9 bits: 2,048); a word
    of ``lanes`` weights in the deepest shape at least :data:`WIDE_WORD_SHAPE_BITS` wide, the
    one Yosys uses (2,048 words up to 9-bit weights). The block RAMs are as many (a 64-bit
    word takes 8 block RAMs per 2,048 words, 16 per 4,096) except for an odd lane count
    with weights below 5 bits (3 x 4 bits: 2 per 2,048 words, 3 per 4,096)."""
    narrowest = w_bits if lanes == 1 else max(w_bits, WIDE_WORD_SHAPE_BITS)
    return max(depth for width, depth in BRAM_SHAPES if width >= narrowest)


def weight_banks(depth: int, w_bits: int, groups: int, lanes: int) -> int:
    """Banks of a weight memory of ``depth`` words for a core of ``groups`` groups of
    ``lanes``: one per :func:`weight_bank_depth` words when it is more than one block RAM
    deep and the core has the :data:`BANKED_MIN_GROUPS` groups the extra stages need; else 1,
    the memory as one (the digits' 1,024 words; any core of 8 or 9 groups)."""
    bank = weight_bank_depth(w_bits, lanes)
    if depth <= bank or groups < BANKED_MIN_GROUPS:
        return 1
    return -(-depth // bank)


@dataclass(frozen=True)
class Field:
    """One field of a memory element: ``bits`` wide, two's complement if ``signed``."""

    name: str
    bits: int
    signed: bool = False


#: Per-neuron constants of the input current (``cur_param_mem``), low field first: the bias and
#: the signed shift (``golden.model.shift``).
CURRENT_FIELDS = (Field("bias", B_BITS, True), Field("shift", W_SHIFT_BITS, True))
#: Per-neuron state (``st_mem``), low field first.
STATE_FIELDS = (Field("v", V_BITS, True), Field("ref", REF_BITS), Field("psc", PSC_BITS))


@dataclass(frozen=True)
class MemorySpec:
    """One memory of the core.

    Attributes
    ----------
    name : str
        Its path in the design below the core, ``.``-separated (``"w_mem"``,
        ``"readout.dec_mem"``).
    depth : int
        Words.
    fields : tuple of Field
        The element: one unnamed field (a plain number) or named fields (a struct, the first in
        the low bits).
    count : int or None
        Elements per word (an array, element 0 in the low bits), or ``None`` for a word that is
        one element.
    holds : str
        What the words hold, for reports.
    rom : bool
        Initialised from the network image and never written.
    """

    name: str
    depth: int
    fields: tuple[Field, ...]
    count: int | None
    holds: str
    rom: bool

    @property
    def element_bits(self) -> int:
        """Bits of one element."""
        return sum(f.bits for f in self.fields)

    @property
    def width(self) -> int:
        """Bits of one word."""
        return self.element_bits * (self.count or 1)


def _groups(neurons: int, lanes: int) -> int:
    if lanes < 1 or neurons % lanes:
        raise ValueError(f"lanes ({lanes}) must divide the neuron count ({neurons})")
    return neurons // lanes


def cycles(inputs: int, neurons: int, lanes: int, classes: int, steps: int, mode: int,
           listed: int | Sequence[int]) -> int:
    """Cycles of one image from the lengths of its input lists (the module's formula).

    ``listed`` is ``K``, the nonzero pixels, in constant-current mode; in rate mode it is the
    sequence of ``K_t``, the pixels spiking at each of the ``steps`` steps. ``steps`` 0 counts
    as 1, as in the core. Raises :class:`ValueError` if ``lanes`` does not divide ``neurons``.
    """
    g = _groups(neurons, lanes)
    steps = max(int(steps), 1)
    argmax = (classes - 1).bit_length()  # the readout's argmax tree
    tail = neurons + READOUT_DRAIN + argmax
    if mode != MODE_RATE:
        return inputs + g * max(int(listed), 1) + steps * g + tail
    listed = list(listed)
    if len(listed) != steps:
        raise ValueError(f"rate mode needs one list length per step ({steps}), got {len(listed)}")
    per_step = sum(inputs + DRAW_DRAIN + g * max(int(k), 1) + g for k in listed)
    return inputs + per_step + tail


def max_cycles(inputs: int, neurons: int, lanes: int, classes: int, steps: int, mode: int) -> int:
    """The largest cycle count of any image: every pixel nonzero, or spiking at every step.

    ``steps`` 0 counts as 1, as in the core. Raises :class:`ValueError` if ``lanes`` does not
    divide ``neurons``.
    """
    steps = max(int(steps), 1)
    listed = inputs if mode != MODE_RATE else [inputs] * steps
    return cycles(inputs, neurons, lanes, classes, steps, mode, listed)


class _BlockRamReads:
    """What the single-layer core's and the engine's geometries share: their memories by name,
    and which of the image's memories are block RAMs read a cycle ahead (``memories`` and
    ``inputs``, ``pixel_bits`` are the geometry's)."""

    def memory(self, name: str) -> MemorySpec:
        """The memory called ``name`` (see :attr:`MemorySpec.name`)."""
        for spec in self.memories():
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def pixel_read_ahead(self) -> bool:
        """Whether the DRAW pipeline reads each pixel a cycle early into a register (same
        cycle count): for a pixel memory above 1,024 bits, which Yosys puts in a block RAM
        (784 x 8 bits; its 5.6 ns output into the rate encoder's compare made 73.6 MHz), not
        for the digits' 64 x 5 bits in LUT RAM."""
        return self.inputs * self.pixel_bits > LUT_RAM_MAX_BITS

    @property
    def list_read_ahead(self) -> bool:
        """Whether the input list is read a cycle early into a register (same cycle count):
        for a list above 1,024 bits, which Yosys puts in a block RAM (784 x 19 bits), not for
        the digits' 64 x 11 bits in LUT RAM. Its 5.8 ns output made 82.8 MHz into the
        single-layer core's ``g * M + j`` weight address adder (``hw/core.py``, INPUT) and
        88.6 MHz into the engine's event source (``hw/event_source.py``, ``pixel_ahead``)."""
        return self.inputs * self.memory("lst_mem").width > LUT_RAM_MAX_BITS


@dataclass(frozen=True)
class CoreGeometry(_BlockRamReads):
    """The core built for one network image and lane count.

    Attributes
    ----------
    inputs, neurons, classes : int
        ``M``, ``N``, ``C`` of the network.
    lanes : int
        ``P``, neurons updated in parallel; it divides ``N``.
    pixel_bits : int
        Width of a pixel, enough for the image's ``pixel_max``.
    rate_bits : int
        Random bits per rate-encoder draw; a spike is the value ``2**rate_bits``.
    lfsr_seed : int
        The rate encoder's LFSR seed (the draws decide ``K_t``).
    w_bits : int
        Width of an input weight (the image's ``w_bits``): the width of ``w_mem``'s elements.
    """

    inputs: int
    neurons: int
    classes: int
    lanes: int
    pixel_bits: int
    rate_bits: int
    lfsr_seed: int
    w_bits: int = W_BITS

    def __post_init__(self):
        _groups(self.neurons, self.lanes)

    @classmethod
    def of(cls, net, *, pixel_max: int, lanes: int) -> CoreGeometry:
        """The geometry of the core for ``net`` (a :class:`golden.model.Network`)."""
        return cls(inputs=net.inputs, neurons=net.neurons, classes=net.classes, lanes=lanes,
                   pixel_bits=max(1, int(pixel_max).bit_length()), rate_bits=net.rate_bits,
                   lfsr_seed=net.lfsr_seed, w_bits=int(net.w_bits))

    @property
    def groups(self) -> int:
        """``G = N / P``, groups of neurons, one memory word each."""
        return self.neurons // self.lanes

    @property
    def x_bits(self) -> int:
        """Width of an input-list value: a pixel, or a rate-encoder spike ``2**rate_bits``."""
        return max(self.pixel_bits, self.rate_bits + 1)

    @property
    def index_bits(self) -> int:
        """Width of a pixel index ``j``."""
        return max(1, (self.inputs - 1).bit_length())

    @property
    def product_bits(self) -> int:
        """Width of one product ``W * x``: ``|W * x| < 2**(w_bits - 1 + x_bits)``."""
        return self.w_bits + self.x_bits

    @property
    def acc_bits(self) -> int:
        """Width of a lane's ``W.x`` accumulator, exact: a sum of ``M`` products, each below
        ``2**(product_bits - 1)`` in magnitude, is below ``2**(product_bits - 1 +
        ceil(log2 M))`` (784 inputs, 4-bit weights, 9-bit x: 23 bits; 8-bit weights: 27)."""
        return self.product_bits + (self.inputs - 1).bit_length()

    @property
    def total_bits(self) -> int:
        """Width of a lane's accumulator, which starts each group from the bias: ``W.x + b``
        and every partial sum, ``|.| < 2**(acc_bits - 1) + 2**(B_BITS - 1)`` (33 bits)."""
        return max(self.acc_bits, B_BITS) + 1

    @property
    def label_bits(self) -> int:
        """Width of a class number."""
        return max(1, (self.classes - 1).bit_length())

    def memories(self) -> tuple[MemorySpec, ...]:
        """Every memory of the core, in the order the core builds them."""
        g, m, p = self.groups, self.inputs, self.lanes
        return (
            *self.weight_memories(),
            MemorySpec("cur_param_mem", g, CURRENT_FIELDS, p, "bias, shift", True),
            MemorySpec("v_th_mem", g, (Field("", V_TH_BITS),), p, "thresholds", True),
            MemorySpec("cur_mem", g, (Field("", I_BITS, True),), p, "currents", False),
            MemorySpec("st_mem", g, STATE_FIELDS, p, "v, ref, psc", False),
            MemorySpec("pix_mem", m, (Field("", self.pixel_bits),), None, "pixels", False),
            MemorySpec("lst_mem", m, (Field("j", self.index_bits), Field("x", self.x_bits)),
                       None, "input list", False),
            MemorySpec("readout.dec_mem", self.neurons, (Field("", D_BITS, True),),
                       self.classes, "decoder", True),
        )

    @property
    def weight_banks(self) -> int:
        """Banks of the input weights, ``G * M`` words (:func:`weight_banks`): 1 for the digits
        (``w_mem``), 13 for 784-512 with 4-bit weights and P = 16 (``w_mem0`` .. ``w_mem12``)."""
        return weight_banks(self.groups * self.inputs, self.w_bits, self.groups, self.lanes)

    @property
    def weight_stages(self) -> int:
        """Extra INPUT pipeline stages the weight memory needs: 0 in one bank, else
        :data:`BANK_STAGES` (the address registered, the banks' outputs registered). They add
        to INPUT's latency, not to the cycle count: INPUT's tail overlaps LIF's start, and
        banks are used only with the groups to hide it (:data:`BANKED_MIN_GROUPS`)."""
        return 0 if self.weight_banks == 1 else BANK_STAGES

    def weight_memories(self) -> tuple[MemorySpec, ...]:
        """The input weight memory: ``w_mem``, or its banks ``w_mem0``, ``w_mem1``, ...
        (:func:`weight_bank_depth` words each, the last one the rest), word ``a`` of the
        whole (``g * M + j``) at word ``a % depth`` of bank ``a // depth``."""
        total, banks = self.groups * self.inputs, self.weight_banks
        element = (Field("", self.w_bits, True),)
        if banks == 1:
            return (MemorySpec("w_mem", total, element, self.lanes, "input weights", True),)
        depth = weight_bank_depth(self.w_bits, self.lanes)
        return tuple(
            MemorySpec(f"w_mem{k}", min(depth, total - k * depth), element, self.lanes,
                       f"input weights {k * depth}..{min(total, (k + 1) * depth) - 1}", True)
            for k in range(banks))

    @property
    def readout_products(self) -> tuple[str, ...]:
        """Paths below the core of the registers fed by the readout's ``C`` multipliers
        (``D_BITS`` x ``PSC_BITS``, one per class), the only multipliers the core has: the
        iCE40 build puts these into DSP blocks by name (``hw.bitstream.ice40_dsp_script``)."""
        return tuple(f"readout.product{c}" for c in range(self.classes))

    def list_lengths(self, pixels, steps: int, mode: int) -> int | list[int]:
        """``K`` (constant current) or the ``K_t`` of every step (rate mode) of one image."""
        pixels = np.asarray(pixels)
        if mode != MODE_RATE:
            return int(np.count_nonzero(pixels))
        draws = rate_draws(self.lfsr_seed, max(int(steps), 1), self.inputs, self.rate_bits)
        return [int(k) for k in (draws < pixels).sum(axis=1)]

    def expected_cycles(self, pixels, steps: int, mode: int) -> int:
        """Cycles the core reports for one image fed one pixel per cycle (the module's formula).

        The count depends on the data through ``K`` or ``K_t`` (:meth:`list_lengths`).
        """
        return cycles(self.inputs, self.neurons, self.lanes, self.classes, steps, mode,
                      self.list_lengths(pixels, steps, mode))

    def max_cycles(self, steps: int, mode: int) -> int:
        """The largest cycle count of any image (:func:`max_cycles`)."""
        return max_cycles(self.inputs, self.neurons, self.lanes, self.classes, steps, mode)


# --- the layered engine (hw/engine.py) ------------------------------------------------------

@dataclass(frozen=True)
class LayerGeometry:
    """One layer of the engine: its sizes and where its words sit in the shared memories.

    Attributes
    ----------
    neurons, fan_in : int
        ``N_l`` and ``K_l`` (the pixels for layer 0, the layer before's neurons otherwise).
    groups : int
        ``G_l = ceil(N_l / P)``; the last group's missing neurons are padding (zero weights and
        bias, threshold 1: they never fire).
    recurrent : bool
        The layer has recurrent weights.
    group_base : int
        Word of the layer's group 0 in the per-group memories (``cur_mem``, ``st_mem``, the
        parameter ROMs) and entry 0 of its spike list in ``spk_mem``: the groups of the layers
        before it.
    ff_base, rec_base : int
        Weight word of ``(g, j) = (0, 0)`` of the layer's weights from the layer before
        (``ff_base + g * K_l + j``) and of its recurrent weights (``rec_base + g * N_l + j``).
    """

    neurons: int
    fan_in: int
    groups: int
    recurrent: bool
    group_base: int
    ff_base: int
    rec_base: int

    @property
    def weight_words(self) -> int:
        return self.groups * (self.fan_in + (self.neurons if self.recurrent else 0))


def layer_geometries(sizes: Sequence[int], inputs: int, recurrent: Sequence[bool],
                     lanes: int) -> tuple[LayerGeometry, ...]:
    """The :class:`LayerGeometry` of every layer, in order, packed from word 0."""
    out, group_base, word = [], 0, 0
    fan_in = inputs
    for n, rec in zip(sizes, recurrent, strict=True):
        groups = -(-n // lanes)
        ff_base = word
        rec_base = ff_base + groups * fan_in
        layer = LayerGeometry(n, fan_in, groups, bool(rec), group_base, ff_base, rec_base)
        out.append(layer)
        group_base += groups
        word += layer.weight_words
        fan_in = n
    return tuple(out)


#: Cycles from the event source's ``start`` to its first event (``hw/event_source.py``'s
#: ``START_LATENCY``; a test holds them equal).
EVENT_START_LATENCY = 2
#: Cycles from the sequencer's LAYER state to the event source's start: its run parameters
#: are registered (``hw/sequencer.py``).
SYN_START_DELAY = 1
#: Cycles from the input encoder's ``draw`` to ``drawn``, minus ``M``
#: (``hw/input_encoder.py``'s ``DRAW_CYCLES_EXTRA``): the single-layer core's DRAW_DRAIN.
DRAW_EXTRA = DRAW_DRAIN
#: Cycles from the M-th pixel's transfer to the input encoder's ``loaded`` pulse.
LOADED_DELAY = 1
#: The synaptic stage's latency without its weight stages, from a pass's last event to its
#: currents (``hw/synapse.py``; one weight memory adds ``SYNAPSE_ADDR_STAGES``, a banked one
#: ``SYNAPSE_BANK_STAGES``).
SYNAPSE_LATENCY = 6
#: Cycles from the sequencer's state that issues a neuron-stage transfer (NEU, READOUT) to the
#: transfer: the issue is registered (``hw/sequencer.py``).
ISSUE_DELAY = 1
#: Registers between a READOUT peek's read of the state memory and the readout (cycles beyond
#: the read's own): the peeked group's values are registered in the neuron stage
#: (``hw/neuron_stage.py``) and the chosen lane's value in the engine (``hw/engine.py``), so the
#: state memory's output and the lane select each drive only a register (the readout's path
#: from the state block RAMs through the lane select limited the MNIST image to 73.5 MHz).
PEEK_DELAY = 2
#: The neuron stage's latency beyond its lanes' and its ``state_stages`` (``hw/neuron_stage.py``:
#: ``lane_latency + 3 + state_stages``).
NEURON_STAGE_EXTRA = 3


def _bits_of(n: int) -> int:
    """Bits of the numbers ``0 .. n - 1`` (at least 1)."""
    return max(1, (int(n) - 1).bit_length())


@dataclass(frozen=True)
class EngineGeometry(_BlockRamReads):
    """The engine (``hw/engine.py``) built for one layered network image and lane count: its
    memories and its timing model.

    Attributes
    ----------
    net : golden.layers.LayeredNetwork
        The network (its sizes, models and readout; the arrays only for the cycle model's
        event counts).
    pixel_bits : int
        Width of a pixel.
    lanes : int
        ``P``.
    """

    net: object
    pixel_bits: int
    lanes: int

    @classmethod
    def of(cls, net, *, pixel_max: int, lanes: int) -> EngineGeometry:
        return cls(net, max(1, int(pixel_max).bit_length()), lanes)

    # --- sizes and widths -----------------------------------------------------------------

    @property
    def layers(self) -> tuple[LayerGeometry, ...]:
        net = self.net
        return layer_geometries(net.sizes, net.inputs,
                                [layer.w_rec is not None for layer in net.layers], self.lanes)

    @property
    def inputs(self) -> int:
        return self.net.inputs

    @property
    def classes(self) -> int:
        return self.net.classes

    @property
    def neurons(self) -> int:
        """Every layer's neurons."""
        return sum(self.net.sizes)

    @property
    def groups(self) -> int:
        """Group words of the per-group memories: every layer's groups."""
        return sum(layer.groups for layer in self.layers)

    @property
    def x_bits(self) -> int:
        return max(self.pixel_bits, self.net.rate_bits + 1)

    @property
    def w_bits(self) -> int:
        return max(layer.w_bits for layer in self.net.layers)

    @property
    def index_bits(self) -> int:
        return _bits_of(max(self.inputs, *self.net.sizes))

    @property
    def group_bits(self) -> int:
        return _bits_of(max(layer.groups for layer in self.layers))

    @property
    def label_bits(self) -> int:
        return _bits_of(self.classes)

    @property
    def total_bits(self) -> int:
        """The synaptic accumulator's width, exact for every layer: ``W.x`` over its events
        (pixels of ``x_bits``, or spikes, and the recurrent ones) plus the bias."""
        widest = 0
        for k, layer in enumerate(self.layers):
            terms = layer.fan_in + (layer.neurons if layer.recurrent else 0)
            product = self.w_bits + (self.x_bits if k == 0 else 2)
            widest = max(widest, product + _bits_of(terms))
        return max(widest, B_BITS) + 1

    @property
    def weight_words(self) -> int:
        return sum(layer.weight_words for layer in self.layers)

    @property
    def weight_banks(self) -> int:
        """Banks of the weight memory (:func:`weight_banks`; the engine's waits hide a banked
        memory's latency at any group count)."""
        return weight_banks(self.weight_words, self.w_bits, BANKED_MIN_GROUPS, self.lanes)

    @property
    def weight_stages(self) -> int:
        """Extra pipeline stages of the synaptic stage's weight read
        (:func:`synapse_weight_stages`)."""
        return synapse_weight_stages(self.weight_banks)

    def state_fields(self) -> tuple[Field, ...]:
        """The neuron state word's fields (``hw.neuron_stage.state_fields``), low first."""
        layers = self.net.layers
        fields = [Field("v", V_BITS, True)]
        if any(x.neuron.model == "lif" and x.neuron.spiking for x in layers):
            fields.append(Field("ref", REF_BITS))
        if any(x.neuron.adapt_step for x in layers):
            fields.append(Field("a", ADAPT_BITS))
        if any(x.neuron.model == "leaky" and x.neuron.spiking for x in layers):
            fields.append(Field("s", 1))
        if self.net.readout == "psc":
            fields.append(Field("psc", PSC_BITS))
        if self.net.readout == "spikes":
            fields.append(Field("count", STEPS_BITS))
        return tuple(fields)

    def weight_memories(self) -> tuple[MemorySpec, ...]:
        """The weights of every layer: ``synapse.w_mem`` or its banks ``synapse.w_mem0`` ..."""
        total, banks = self.weight_words, self.weight_banks
        element = (Field("", self.w_bits, True),)
        if banks == 1:
            return (MemorySpec("synapse.w_mem", total, element, self.lanes, "weights", True),)
        depth = weight_bank_depth(self.w_bits, self.lanes)
        return tuple(
            MemorySpec(f"synapse.w_mem{k}", min(depth, total - k * depth), element, self.lanes,
                       f"weights {k * depth}..{min(total, (k + 1) * depth) - 1}", True)
            for k in range(banks))

    def memories(self) -> tuple[MemorySpec, ...]:
        """Every memory of the engine (paths below it, as ``hw.core.built_memories``)."""
        g, m, p = self.groups, self.inputs, self.lanes
        specs = [
            *self.weight_memories(),
            MemorySpec("neurons.cur_mem", g, (Field("", I_BITS, True),), p, "currents", False),
            MemorySpec("neurons.st_mem", g, self.state_fields(), p, "neuron state", False),
        ]
        if g <= GROUP_ROM_CHUNK:  # deeper, a group ROM is chunks of logic, no memory
            specs += [MemorySpec(f"{name}.rom", g, fields, p, holds, True)
                      for name, fields, holds in self.group_roms()]
        specs += [
            MemorySpec("encoder.pix_mem", m, (Field("", self.pixel_bits),), None, "pixels",
                       False),
            MemorySpec("lst_mem", m, (Field("j", self.index_bits), Field("x", self.x_bits)),
                       None, "pixel list", False),
            MemorySpec("spk_mem", max(2, g), (Field("group", self.group_bits),
                                              Field("word", p)), None, "spike lists", False),
        ]
        if self.net.readout == "psc":
            specs.append(MemorySpec("readout.dec_mem", self.net.layers[-1].neurons,
                                    (Field("", D_BITS, True),), self.classes, "decoder", True))
        return tuple(specs)

    def group_roms(self) -> list[tuple[str, tuple[Field, ...], str]]:
        """The per-group ROMs (``hw/group_rom.py``), one word of ``P`` values a group: path
        below the engine, fields of one value, contents."""
        roms = [("synapse.cur_param_mem", CURRENT_FIELDS, "bias, shift"),
                ("neurons.v_th_mem", (Field("", V_TH_BITS),), "thresholds")]
        if any(x.neuron.model == "leaky" for x in self.net.layers):
            roms.append(("neurons.beta_mem", (Field("", BETA_FRAC),), "leaks"))
        return roms

    @property
    def group_rom_luts(self) -> int:
        """LUT4s of the per-group ROMs deeper than :data:`GROUP_ROM_CHUNK` groups (0 if not):
        ``k`` chunks of one LUT4 per bit and the chunks' select, ``(2k - 1)`` per bit of a
        group's word. A ROM of at most one chunk is a memory, counted as one."""
        if self.groups <= GROUP_ROM_CHUNK:
            return 0
        chunks = -(-self.groups // GROUP_ROM_CHUNK)
        bits = self.lanes * sum(f.bits for _, fields, _ in self.group_roms() for f in fields)
        return (2 * chunks - 1) * bits

    @property
    def state_ram_luts(self) -> int:
        """LUT4s of the read select of the neuron stage's per-group memories (``cur_mem``,
        ``st_mem``) in LUT RAM on the ECP5 (at most :data:`LUT_RAM_GROUPS` groups): a LUT RAM
        is 16 words deep (``TRELLIS_DPR16X4``), so ``k`` chunks of 16 groups are read through
        a select of about ``k - 1`` LUT4s per bit (a 48 x 468-bit test memory: 939 LUT4
        and 468 PFUMX); 0 at 16 groups or fewer."""
        chunks = -(-self.groups // 16)
        if chunks < 2 or self.groups > LUT_RAM_GROUPS:
            return 0
        width = sum(self.memory(name).width for name in ("neurons.cur_mem", "neurons.st_mem"))
        return (chunks - 1) * width

    @property
    def readout_products(self) -> tuple[str, ...]:
        """Paths below the engine of the registers fed by the PSC readout's ``C`` multipliers
        (``D_BITS`` x ``PSC_BITS``; none for the ``li`` and ``spikes`` readouts): the iCE40
        build puts these into DSP blocks by name (``hw.bitstream.ice40_dsp_script``)."""
        if self.net.readout != "psc":
            return ()
        return tuple(f"readout.product{c}" for c in range(self.classes))

    @property
    def lane_multipliers(self) -> int:
        """The neuron stage's multipliers: ``P`` (``V_BITS`` x ``BETA_FRAC``) for each distinct
        ``leaky`` lane configuration (``hw/neuron_stage.py`` builds ``P`` lanes per distinct
        layer configuration)."""
        from .neuron import LaneConfig

        psc = self.net.decoder.psc_shift if self.net.readout == "psc" else None
        configs = {LaneConfig.of(layer.neuron, psc) for layer in self.net.layers
                   if layer.neuron.model == "leaky"}
        return self.lanes * len(configs)

    # --- latencies and the timing model -------------------------------------------------

    @property
    def lane_latency(self) -> int:
        """The neuron lanes' latency: 2 with a ``leaky`` layer (its multiplier), else 1."""
        return 2 if any(layer.neuron.model == "leaky" for layer in self.net.layers) else 1

    @property
    def syn_latency(self) -> int:
        return SYNAPSE_LATENCY + self.weight_stages

    @property
    def state_stages(self) -> int:
        """Registers between the neuron memories and the lanes' inputs beyond the first:
        :data:`STATE_STAGES` with a banked weight memory, else 0."""
        return STATE_STAGES if self.weight_banks > 1 else 0

    @property
    def neu_latency(self) -> int:
        return self.lane_latency + NEURON_STAGE_EXTRA + self.state_stages

    @property
    def readout_values(self) -> int:
        """Values READOUT streams: the last layer's neurons (PSC) or the classes."""
        return self.net.layers[-1].neurons if self.net.readout == "psc" else self.classes

    @property
    def readout_latency(self) -> int:
        """From the readout's last value to its result."""
        drain = READOUT_DRAIN if self.net.readout == "psc" else SCORE_READOUT_DRAIN
        return drain + (self.classes - 1).bit_length()

    def waits(self) -> tuple[Waits, ...]:
        return tuple(Waits.of(layer.groups, self.syn_latency, self.neu_latency)
                     for layer in self.layers)

    def events(self, pixels, steps: int, mode: int) -> list[list[int]]:
        """Per step and layer, the events of one pass of its synaptic phase (0 when it has
        none at that step): its own spikes of the step before (recurrent) and its input's
        (the listed pixels, or the layer before's spikes), from the golden model."""
        from golden import layers as golden_layers

        pixels = np.asarray(pixels, dtype=np.int64).reshape(1, -1)
        steps = max(int(steps), 1)
        run = golden_layers.run(pixels, self.net, steps, mode, record=True)
        if mode == MODE_RATE:
            draws = rate_draws(self.net.lfsr_seed, steps, self.inputs, self.net.rate_bits)
            listed = [int(k) for k in (draws < pixels[0]).sum(axis=1)]
        else:
            listed = [int(np.count_nonzero(pixels))] * steps
        counts = [[int(run.spikes[k][t, 0].sum()) for k in range(len(self.layers))]
                  for t in range(steps)]
        out = []
        for t in range(steps):
            row = []
            for k, layer in enumerate(self.layers):
                events = listed[t] if k == 0 else counts[t][k - 1]
                if layer.recurrent and t > 0:
                    events += counts[t - 1][k]
                row.append(events)
            out.append(row)
        return out

    def expected_cycles(self, pixels, steps: int, mode: int) -> int:
        """Cycles the engine reports for one image fed one pixel per cycle: its phases
        (``hw/sequencer.py``) walked cycle by cycle, with the event counts of
        :meth:`events`."""
        steps = max(int(steps), 1)
        return self._walk(self.events(pixels, steps, mode), steps, mode)

    def max_events(self) -> list[int]:
        """Per layer, the most events one pass can have: every input listed (or spiking)
        and every recurrent neuron spiking."""
        return [layer.fan_in + (layer.neurons if layer.recurrent else 0)
                for layer in self.layers]

    def max_cycles(self, steps: int, mode: int) -> int:
        """The largest cycle count of any image at ``steps`` and ``mode`` (every event
        present at every step: the count only grows with the events)."""
        steps = max(int(steps), 1)
        return self._walk([self.max_events()] * steps, steps, mode)

    def cycle_bound(self) -> tuple[int, int]:
        """``(base, per_step)``: ``base + steps * per_step`` bounds :meth:`max_cycles` for
        every ``steps >= 1`` in both modes (INFO's cycle bound; the walk is affine in the
        steps)."""
        firsts = [self.max_cycles(1, mode) for mode in (MODE_CURRENT, MODE_RATE)]
        per_step = max(self.max_cycles(2, mode) - first
                       for mode, first in zip((MODE_CURRENT, MODE_RATE), firsts, strict=True))
        return max(firsts) - per_step, per_step

    def lower_bounds(self, pixels, steps: int, mode: int) -> tuple[int, int]:
        """Two lower bounds of :meth:`expected_cycles` (docs/ARCHITECTURE.md, "Lower bound"):
        the engine's own (its phases in sequence, no waits or start latencies) and the general
        one of any engine with one row of ``P`` weights and one group of ``P`` neurons per cycle
        (the synaptic passes, the neuron updates and, in rate mode, the draws overlapped)."""
        steps = max(int(steps), 1)
        events, rate = self.events(pixels, steps, mode), mode == MODE_RATE
        passes = sum(layer.groups * max(1, events[t][k])
                     for t in range(steps) for k, layer in enumerate(self.layers)
                     if k > 0 or rate or layer.recurrent or t == 0)
        updates = steps * sum(layer.groups for layer in self.layers)
        draws = steps * self.inputs if rate else 0
        ends = self.inputs + self.readout_values + (self.classes - 1).bit_length()
        return ends + passes + updates + draws, ends + max(passes, updates, draws)

    def _walk(self, events: list[list[int]], steps: int, mode: int) -> int:
        """The cycle of the result (= the count reported), pixel 0 in cycle 0."""
        layers, waits = self.layers, self.waits()
        last = len(layers) - 1
        rate = mode == MODE_RATE
        step = self.inputs - 1 + LOADED_DELAY + 1  # STEP: the cycle after `loaded`
        for t in range(steps):
            # STEP, then (rate) DRAW until `drawn`, then LAYER
            cycle = step + (self.inputs + DRAW_EXTRA + 1 if rate else 1)
            for k, layer in enumerate(layers):
                if k > 0 or rate or layer.recurrent or t == 0:
                    # LAYER starts the event source; its last event; SYN sees it done;
                    # SYN_WAIT issues NEU's group 0
                    passes = layer.groups * max(1, events[t][k])
                    cycle += (SYN_START_DELAY + EVENT_START_LATENCY + passes - 1 + 2
                              + waits[k].syn_to_neu)
                else:
                    cycle += 1  # LAYER, then NEU
                cycle += layer.groups - 1  # NEU's last issue
                if k != last:
                    cycle += 2 + waits[k].neu_to_list  # NEU_WAIT, then the next LAYER
            if t == steps - 1:
                break
            if len(layers) == 1 and not layers[0].recurrent and not rate:
                w = waits[0].neu_to_neu
                if w == 0:  # the next step's NEU at once: G cycles a step from here
                    cycle += (steps - 1 - t) * layers[0].groups
                    break
                step = cycle + 2 + w  # STEP_WAIT, then STEP
            elif len(layers) == 1 and layers[0].recurrent:  # its list drains (STEP_WAIT)
                step = cycle + 2 + waits[0].neu_to_list
            else:
                step = cycle + 1
        readout = cycle + 2 + waits[last].neu_to_readout  # READOUT_WAIT, then READOUT
        return readout + ISSUE_DELAY + PEEK_DELAY + self.readout_values + self.readout_latency


#: Cycles from the last value into a readout without a decoder (li, spikes) to its result,
#: before the argmax tree (``hw/readout.py``'s ``ScoreReadout``).
SCORE_READOUT_DRAIN = 1


class Waits(NamedTuple):
    """Wait cycles of one layer's phase changes (``hw/sequencer.py``), from the stages'
    latencies: ``syn_to_neu``, NEU(l) after SYN(l) (the synaptic stage's last write must
    precede the group's read); ``neu_to_list``, after NEU(l) before a phase that reads its spike
    list (the neuron stage and the lister drain); ``neu_to_neu``, NEU(l) of one constant layer
    to its next step (a group's state is read again after its write-back); ``neu_to_readout``,
    after the last NEU before READOUT reads the state."""

    syn_to_neu: int
    neu_to_list: int
    neu_to_neu: int
    neu_to_readout: int

    @classmethod
    def of(cls, groups: int, syn_latency: int, neu_latency: int) -> Waits:
        """The waits; the issue's register (:data:`ISSUE_DELAY`) delays every transfer into
        the neuron stage (reads later after SYN, drains later after NEU)."""
        return cls(syn_to_neu=max(0, syn_latency - groups - ISSUE_DELAY),
                   neu_to_list=max(0, neu_latency + ISSUE_DELAY - 1),
                   neu_to_neu=max(0, neu_latency + 1 - groups),
                   neu_to_readout=max(0, neu_latency + 1 - groups))
