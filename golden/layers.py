"""A network as a list of layers: the general integer model the engine runs (the specification).

A :class:`LayeredNetwork` is one or more :class:`Layer` s of spiking neurons (each a dense
weight matrix from the layer before, or from the pixels for the first, optional recurrent weights
from its own previous-step spikes, and a neuron model of :mod:`golden.neurons`) and a readout.
Every image starts from rest. One timestep, in order, for the layers ``l = 0 .. L-1``::

    x_t      = x  or  encode_rate(x, draw[t])          the pixels (golden.model.encode_rate)
    in_l     = x_t  if l == 0  else  s_{l-1}           this step's spikes of the layer before
    acc_l    = W_l @ in_l + W_rec_l @ s_l(t-1)         exact; s_l(t-1): own previous spikes
    I_l      = sat_I(shift(acc_l + bias_l, w_shift_l)) as golden.model.input_current
    s_l      = neurons.step(I_l, state_l, neuron_l)    the layer's neuron model

so a spike crosses every layer in the step it is made, and a recurrent spike arrives one step
later. The readout, after the last layer (``L-1``):

``psc``
    today's decoder of the last layer's spikes (``golden.model.psc_step``, ``readout``):
    ``psc += ((s << PSC_BITS) - psc) >> psc_shift``, ``score = dec_bias + dec @ psc``.
``li``
    the last layer is non-spiking (a leaky integrator, NIR's ``LI``), one neuron per class:
    ``score = v`` of that layer after this step.
``spikes``
    the last layer is a spiking output layer, one neuron per class: ``score`` is its spike
    count so far.

``class = argmax(score)``, the lowest class on ties, at every step; the answer is the last
step's. The spike count of an image is the total of every spiking layer's spikes.

The single-layer LIF network with a PSC readout (every image shipped before format version 3,
:class:`golden.model.Network`) is one instance: :func:`from_classic` and :func:`to_classic`
convert, and :func:`run` gives it exactly what ``golden.model.run`` gives.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import model, neurons
from .constants import (
    ACC_BOUND_BITS,
    ADAPT_BITS,
    ADAPT_STEP_BITS,
    B_BITS,
    BETA_FRAC,
    D_BITS,
    I_MAX,
    I_MIN,
    LAYERS_MAX,
    LFSR_WIDTH,
    MODE_CURRENT,
    MODE_RATE,
    NEURON_LEAKY,
    NEURON_LIF,
    NEURON_MODELS,
    PSC_BITS,
    PSC_ONE,
    RATE_BITS_MAX,
    READOUT_LI,
    READOUT_PSC,
    READOUT_SPIKES,
    READOUTS,
    REF_BITS,
    RESET_ZERO,
    RESETS,
    SCORE_BITS,
    SCORE_MAX,
    SHIFT_BITS,
    V_BITS,
    V_TH_BITS,
    W_BITS,
    W_BITS_MIN,
    W_SHIFT_BITS,
    signed_range,
    unsigned_range,
)
from .neurons import NeuronParams, NeuronState

__all__ = [
    "Layer",
    "Decoder",
    "LayeredNetwork",
    "LayeredResult",
    "layer_current",
    "run",
    "from_classic",
    "to_classic",
    "is_classic",
    "validate",
]


class Layer(NamedTuple):
    """One layer of ``N`` neurons with ``K`` inputs.

    Attributes
    ----------
    w : int array (N, K)
        Weights from the layer before (the pixels for the first layer), signed ``w_bits``.
    w_shift : int array (N,)
        Per-neuron signed shift of ``acc + bias`` (``golden.model.shift``), ``W_SHIFT_BITS``.
    bias : int array (N,)
        Per-neuron bias in units of ``acc``, signed ``B_BITS``.
    neuron : NeuronParams
        The neuron model and its parameters (thresholds, leaks, reset, adaptation).
    w_rec : int array (N, N) or None
        Recurrent weights from the layer's own spikes of the previous step, signed ``w_bits``;
        ``w_rec[n, k]`` weighs neuron ``k``'s spike into neuron ``n``.
    w_bits : int
        Width of ``w`` and ``w_rec`` (``W_BITS_MIN .. W_BITS``); sizes the weight memory only.
    """

    w: np.ndarray
    w_shift: np.ndarray
    bias: np.ndarray
    neuron: NeuronParams
    w_rec: np.ndarray | None = None
    w_bits: int = W_BITS

    @property
    def neurons(self) -> int:
        return self.w.shape[0]

    @property
    def fan_in(self) -> int:
        return self.w.shape[1]


class Decoder(NamedTuple):
    """The PSC readout: ``dec`` (C, N) signed ``D_BITS``, ``dec_bias`` (C,) signed
    ``SCORE_BITS``, filter ``dt / tau_syn = 2**-psc_shift``."""

    dec: np.ndarray
    dec_bias: np.ndarray
    psc_shift: int


class LayeredNetwork(NamedTuple):
    """Layers, a readout, and the rate encoder's parameters.

    Attributes
    ----------
    layers : tuple of Layer
        In order from the pixels; with the ``li`` and ``spikes`` readouts the last one is the
        output layer (one neuron per class).
    readout : str
        ``"psc"``, ``"li"`` or ``"spikes"`` (:data:`golden.constants.READOUTS`).
    rate_bits, lfsr_seed : int
        The rate encoder's, as :class:`golden.model.Network`'s.
    decoder : Decoder or None
        The PSC readout's decoder (``psc`` only).
    """

    layers: tuple[Layer, ...]
    readout: str
    rate_bits: int
    lfsr_seed: int
    decoder: Decoder | None = None

    @property
    def inputs(self) -> int:
        return self.layers[0].fan_in

    @property
    def classes(self) -> int:
        if self.readout == READOUT_PSC:
            return self.decoder.dec.shape[0]
        return self.layers[-1].neurons

    @property
    def sizes(self) -> tuple[int, ...]:
        """Neurons per layer."""
        return tuple(layer.neurons for layer in self.layers)

    @property
    def neurons(self) -> int:
        """Neurons of every layer (what INFO reports)."""
        return sum(self.sizes)


class LayeredResult(NamedTuple):
    """What :func:`run` returns for B images over T steps.

    Attributes
    ----------
    scores : (T, B, C) class scores after every step.
    classes : (T, B) argmax after every step; ``classes[-1]`` is the answer.
    spike_count : (B,) spikes of every spiking layer over all steps.
    layer_spike_count : (L, B) the same per layer.
    spikes, v : per layer, (T, B, N_l) traces, only when ``record=True``; else None.
    """

    scores: np.ndarray
    classes: np.ndarray
    spike_count: np.ndarray
    layer_spike_count: np.ndarray
    spikes: list | None = None
    v: list | None = None


def layer_current(inputs: np.ndarray, previous: np.ndarray, layer: Layer) -> np.ndarray:
    """``I = sat_I(shift(W @ in + W_rec @ s(t-1) + bias, w_shift))``, (B, N)."""
    acc = model._matmul_exact(inputs, layer.w.T)
    if layer.w_rec is not None:
        acc = acc + model._matmul_exact(previous, layer.w_rec.T)
    return np.clip(model.shift(acc + layer.bias, layer.w_shift), I_MIN, I_MAX)


class _Readout:
    """The readout's state over the steps of one batch."""

    def __init__(self, net: LayeredNetwork, batch: int):
        self.net = net
        self.psc = np.zeros((batch, net.layers[-1].neurons), dtype=np.int64)
        self.count = np.zeros((batch, net.classes), dtype=np.int64)

    def scores(self, spikes: np.ndarray, state: NeuronState) -> np.ndarray:
        net = self.net
        if net.readout == READOUT_PSC:
            self.psc = model.psc_step(self.psc, spikes, net.decoder.psc_shift)
            return model._matmul_exact(self.psc, net.decoder.dec.T) + net.decoder.dec_bias
        if net.readout == READOUT_LI:
            return state.v
        if net.readout == READOUT_SPIKES:
            self.count += spikes
            return self.count.copy()
        raise ValueError(f"unknown readout {net.readout!r}")


def run(images: np.ndarray, net: LayeredNetwork | model.Network, timesteps: int,
        mode: int = MODE_CURRENT, seeds: np.ndarray | int | None = None,
        record: bool = False) -> LayeredResult:
    """Classify a batch of images (B, M) of integer pixels, each from rest.

    ``net`` may be a single-layer :class:`golden.model.Network` (run as :func:`as_layered`'s
    instance: the same answers); ``seeds`` (rate mode only) as in :func:`golden.model.run`.
    """
    net = as_layered(net)
    x = model.check_images(images, net.inputs)
    model.check_run(mode, timesteps)
    batch = x.shape[0]
    if mode == MODE_RATE:
        draws = model.rate_schedule(seeds, net.lfsr_seed, timesteps, batch, net.inputs,
                                    net.rate_bits)
    states = [neurons.initial_state(batch, layer.neurons) for layer in net.layers]
    readout = _Readout(net, batch)
    scores = np.empty((timesteps, batch, net.classes), dtype=np.int64)
    counts = np.zeros((len(net.layers), batch), dtype=np.int64)
    traces = ([np.empty((timesteps, batch, n), bool) for n in net.sizes],
              [np.empty((timesteps, batch, n), np.int64) for n in net.sizes]) if record else None
    first = net.layers[0]
    constant = None
    if mode == MODE_CURRENT and first.w_rec is None:
        constant = layer_current(x, None, first)  # the same current at every step
    for t in range(timesteps):
        spikes = model.encode_rate(x, draws[t], net.rate_bits) if mode == MODE_RATE else x
        for k, layer in enumerate(net.layers):
            if k == 0 and constant is not None:
                current = constant
            else:
                current = layer_current(spikes, states[k].s, layer)
            spikes, states[k] = neurons.step(current, states[k], layer.neuron)
            counts[k] += spikes.sum(axis=1)
            if record:
                traces[0][k][t], traces[1][k][t] = spikes, states[k].v
        scores[t] = readout.scores(spikes, states[-1])
    return LayeredResult(scores, model.argmax(scores), counts.sum(axis=0), counts,
                         *(traces or (None, None)))


def from_classic(net: model.Network) -> LayeredNetwork:
    """The single-layer LIF network with a PSC readout as a layered network."""
    neuron = NeuronParams(net.v_th, NEURON_LIF, leak_shift=net.leak_shift,
                          ref_steps=net.ref_steps)
    layer = Layer(net.w_in, net.w_shift, net.bias, neuron, None, net.w_bits)
    return LayeredNetwork((layer,), READOUT_PSC, net.rate_bits, net.lfsr_seed,
                          Decoder(net.dec, net.dec_bias, net.psc_shift))


def as_layered(net: model.Network | LayeredNetwork) -> LayeredNetwork:
    """``net`` as a layered network (:func:`from_classic` for a single-layer one)."""
    return net if isinstance(net, LayeredNetwork) else from_classic(net)


def is_classic(net: LayeredNetwork) -> bool:
    """True when ``net`` is one non-recurrent, non-adaptive LIF layer with a PSC readout."""
    if len(net.layers) != 1 or net.readout != READOUT_PSC:
        return False
    layer = net.layers[0]
    return (layer.w_rec is None and layer.neuron.model == NEURON_LIF
            and layer.neuron.spiking and layer.neuron.adapt_step == 0)


def to_classic(net: LayeredNetwork) -> model.Network:
    """The :class:`golden.model.Network` of a classic layered network (:func:`is_classic`)."""
    if not is_classic(net):
        raise ValueError("only one non-recurrent, non-adaptive LIF layer with a PSC readout "
                         f"is a single-layer network; this one has layers {net.sizes} "
                         f"and a {net.readout} readout")
    layer, d = net.layers[0], net.decoder
    return model.Network(layer.w, layer.w_shift, layer.bias, layer.neuron.v_th, d.dec,
                         d.dec_bias, layer.neuron.leak_shift, d.psc_shift,
                         layer.neuron.ref_steps, net.rate_bits, net.lfsr_seed, layer.w_bits)


# --- validation -----------------------------------------------------------------------------

def _check_int(where: str, value, lowest: int, highest: int) -> None:
    if (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
            or not lowest <= value <= highest):
        raise ValueError(f"{where} must be an integer in {lowest} .. {highest}, got {value!r}")


def _check_array(where: str, a, shape: tuple[int, ...], signed: bool, bits: int) -> None:
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "iu":
        raise ValueError(f"{where} must be an integer array")
    if a.shape != shape:
        raise ValueError(f"{where}: shape {a.shape}, expected {shape}")
    lo, hi = signed_range(bits) if signed else unsigned_range(bits)
    if a.size and (a.min() < lo or a.max() > hi):
        bad = a[(a < lo) | (a > hi)].flat[0]
        raise ValueError(f"{where}: value {bad} is outside the {bits}-bit "
                         f"{'signed' if signed else 'unsigned'} range {lo} .. {hi}")


def _validate_neuron(where: str, p: NeuronParams, n: int, last_of_li: bool) -> None:
    if p.model not in NEURON_MODELS:
        raise ValueError(f"{where}.model must be one of {list(NEURON_MODELS)}, got {p.model!r}")
    if p.reset not in RESETS:
        raise ValueError(f"{where}.reset must be one of {list(RESETS)}, got {p.reset!r}")
    if p.spiking != (not last_of_li):
        raise ValueError(f"{where}: only the output layer of an li readout is non-spiking"
                         if not p.spiking else f"{where}: an li readout's output layer must "
                         "be non-spiking")
    if p.model == NEURON_LIF:
        _check_int(f"{where}.leak_shift", p.leak_shift, 0, V_BITS - 2)
        _check_int(f"{where}.ref_steps", p.ref_steps, 0, (1 << REF_BITS) - 1)
        if p.beta is not None or p.reset != RESET_ZERO:
            raise ValueError(f"{where}: a lif neuron has no beta and resets to zero")
        if not p.spiking and p.ref_steps:
            raise ValueError(f"{where}: a non-spiking neuron has no refractory period")
    else:
        if p.leak_shift or p.ref_steps:
            raise ValueError(f"{where}: a leaky neuron has no leak_shift and no ref_steps")
        _check_array(f"{where}.beta", p.beta, (n,), False, BETA_FRAC)
        if not p.spiking and p.reset != RESET_ZERO:
            raise ValueError(f"{where}: a non-spiking neuron has no reset")
    if p.spiking:
        _check_array(f"{where}.v_th", p.v_th, (n,), False, V_TH_BITS)
        if p.v_th.min() < 1:
            raise ValueError(f"{where}.v_th: a threshold of 0 would fire on every step")
        _check_int(f"{where}.adapt_step", p.adapt_step, 0, (1 << ADAPT_STEP_BITS) - 1)
        _check_int(f"{where}.adapt_shift", p.adapt_shift, 0, (1 << SHIFT_BITS) - 1)
        if p.adapt_step << p.adapt_shift > (1 << ADAPT_BITS) - 1:
            raise ValueError(f"{where}: adapt_step << adapt_shift = "
                             f"{p.adapt_step << p.adapt_shift} exceeds the {ADAPT_BITS}-bit "
                             "adaptation")
        if p.adapt_step == 0 and p.adapt_shift:
            raise ValueError(f"{where}: adapt_shift without adapt_step")
    elif p.v_th is not None or p.adapt_step or p.adapt_shift:
        raise ValueError(f"{where}: a non-spiking neuron has no threshold and no adaptation")


def _validate_layer(k: int, layer: Layer, fan_in: int, input_max: int, last_of_li: bool):
    where = f"layer {k}"
    _check_int(f"{where}.w_bits", layer.w_bits, W_BITS_MIN, W_BITS)
    n = layer.w.shape[0] if isinstance(layer.w, np.ndarray) and layer.w.ndim == 2 else -1
    if n < 1:
        raise ValueError(f"{where}.w must be a 2-d integer array with at least one neuron")
    _check_array(f"{where}.w", layer.w, (n, fan_in), True, layer.w_bits)
    _check_array(f"{where}.w_shift", layer.w_shift, (n,), True, W_SHIFT_BITS)
    _check_array(f"{where}.bias", layer.bias, (n,), True, B_BITS)
    if layer.w_rec is not None:
        if last_of_li:
            raise ValueError(f"{where}: a non-spiking layer has no recurrent weights")
        _check_array(f"{where}.w_rec", layer.w_rec, (n, n), True, layer.w_bits)
    _validate_neuron(f"{where}.neuron", layer.neuron, n, last_of_li)
    fan = fan_in * input_max + (n if layer.w_rec is not None else 0)
    acc_bound = fan * (1 << (layer.w_bits - 1))
    if acc_bound >= 1 << ACC_BOUND_BITS:
        raise ValueError(f"{where}: its inputs times weights can reach {acc_bound}, beyond "
                         f"{ACC_BOUND_BITS} bits")
    return n


def validate(net: LayeredNetwork, pixel_max: int) -> None:
    """Raise ValueError naming the layer and field when ``net`` is not a valid network whose
    fixed widths hold for pixels up to ``pixel_max`` (the bounds of docs/ARITHMETIC.md)."""
    if net.readout not in READOUTS:
        raise ValueError(f"readout must be one of {list(READOUTS)}, got {net.readout!r}")
    if not isinstance(net.layers, tuple) or not 1 <= len(net.layers) <= LAYERS_MAX:
        raise ValueError(f"a network has 1 .. {LAYERS_MAX} layers (a tuple), got "
                         f"{len(net.layers) if isinstance(net.layers, tuple) else net.layers!r}")
    _check_int("rate_bits", net.rate_bits, 1, RATE_BITS_MAX)
    _check_int("lfsr_seed", net.lfsr_seed, 1, (1 << LFSR_WIDTH) - 1)
    if (1 << net.rate_bits) < pixel_max:
        raise ValueError(f"rate_bits={net.rate_bits} cannot encode pixel_max {pixel_max}")
    first = net.layers[0].w
    fan_in = first.shape[1] if isinstance(first, np.ndarray) and first.ndim == 2 else 0
    if fan_in < 1:
        raise ValueError("layer 0.w must be a 2-d integer array with at least one input")
    input_max = 1 << net.rate_bits  # a pixel <= pixel_max <= 2**rate_bits, a rate spike that
    for k, layer in enumerate(net.layers):
        last_of_li = net.readout == READOUT_LI and k == len(net.layers) - 1
        fan_in = _validate_layer(k, layer, fan_in, input_max, last_of_li)
        input_max = 1  # a spike
    if net.readout == READOUT_PSC:
        _validate_decoder(net.decoder, net.layers[-1].neurons)
    else:
        if net.decoder is not None:
            raise ValueError(f"a {net.readout} readout has no decoder")
        if net.layers[-1].neurons < 2:
            raise ValueError("the output layer needs at least 2 neurons (classes)")


def _validate_decoder(d: Decoder | None, n: int) -> None:
    if d is None:
        raise ValueError("a psc readout needs a decoder")
    c = d.dec.shape[0] if isinstance(d.dec, np.ndarray) and d.dec.ndim == 2 else 0
    if c < 2:
        raise ValueError("decoder.dec must be a 2-d integer array of at least 2 classes")
    _check_array("decoder.dec", d.dec, (c, n), True, D_BITS)
    _check_array("decoder.dec_bias", d.dec_bias, (c,), True, SCORE_BITS)
    _check_int("decoder.psc_shift", d.psc_shift, 1, PSC_BITS)
    bound = n * (1 << (D_BITS - 1)) * (PSC_ONE - 1) + int(np.abs(d.dec_bias).max())
    if bound > SCORE_MAX:
        raise ValueError(f"a class score can reach {bound}, beyond the {SCORE_BITS}-bit score")


def neuron_models(net: LayeredNetwork) -> list[str]:
    """A short name per layer: ``lif``, ``leaky-zero``, ``alif``, ``leaky-subtract-adaptive``,
    with ``+rec`` for recurrent weights and ``li-`` for the non-spiking output layer."""
    names = []
    for layer in net.layers:
        p = layer.neuron
        name = p.model if p.model == NEURON_LIF else f"{NEURON_LEAKY}-{p.reset}"
        if p.adapt_step:
            name = "alif" if p.model == NEURON_LIF else f"{name}-adaptive"
        if not p.spiking:
            name = f"li-{p.model}"
        names.append(name + ("+rec" if layer.w_rec is not None else ""))
    return names
