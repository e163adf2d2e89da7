"""From the float seed network to the integer network that the hardware runs.

Input stage
-----------
The float input current ``J_n = gain_n * (e_n . x / pixel_max) + bias_n`` is written in Q5.10
(``1.0 = 2**V_FRAC``) as ``(W_n . x + b_n) << s_n`` with integer pixels ``x``. A single weight
scale shared by all neurons would waste the 8-bit weights (gains span a wide range: 3.4 to 54 in
the shipped network, thousands for intercepts near 1), so each neuron gets its own shift
``s_n``: the smallest one that brings its largest weight into ``W_BITS``. Then
``W_n = round(w_n / 2**s_n)`` and ``b_n = round(bias_n * 2**V_FRAC / 2**s_n)``.

Readout
-------
The decoder is fitted (ridge regression) to the *integer* model's own PSC values, so it sees
exactly the features the hardware produces, and is then scaled by one factor for all classes
(argmax is invariant to a common positive scale) so that its largest weight is
``2**(D_BITS-1) - 1``.
"""

from __future__ import annotations

import numpy as np

from . import model
from .constants import (
    B_BITS,
    D_BITS,
    LFSR_SEED_DEFAULT,
    SCORE_BITS,
    V_FRAC,
    W_BITS,
    W_SHIFT_BITS,
    signed_range,
)
from .reference import Decoder, FloatNetwork


def quantize_input_stage(net: FloatNetwork):
    """Integer ``(w_in, w_shift, bias)`` of the float network's input stage."""
    w_real = net.gain[:, None] * net.encoders / net.pixel_max * (1 << V_FRAC)
    w_lo, w_hi = signed_range(W_BITS)
    peak = np.abs(w_real).max(axis=1)
    shift = np.zeros(len(peak), dtype=np.int64)
    while True:
        too_big = np.round(peak / (1 << shift)) > w_hi
        if not too_big.any():
            break
        shift[too_big] += 1
    if shift.max() >= 1 << W_SHIFT_BITS:
        raise ValueError(
            f"a neuron's gain needs a shift of {shift.max()}, beyond {W_SHIFT_BITS} bits")
    scale = np.exp2(shift.astype(np.float64))
    w_in = np.clip(np.round(w_real / scale[:, None]), w_lo, w_hi).astype(np.int64)
    bias = np.round(net.bias * (1 << V_FRAC) / scale).astype(np.int64)
    b_lo, b_hi = signed_range(B_BITS)
    if bias.min() < b_lo or bias.max() > b_hi:
        raise ValueError(f"a bias leaves the {B_BITS}-bit range: {bias.min()} .. {bias.max()}")
    return w_in, shift, bias


def quantize_decoder(decoder: Decoder):
    """Integer ``(dec, dec_bias)`` from a decoder fitted on integer PSC values."""
    d_hi = signed_range(D_BITS)[1]
    scale = d_hi / np.abs(decoder.weights).max()
    dec = np.round(decoder.weights * scale).astype(np.int64)
    dec_bias = np.round(decoder.intercept * scale).astype(np.int64)
    s_lo, s_hi = signed_range(SCORE_BITS)
    if dec_bias.min() < s_lo or dec_bias.max() > s_hi:
        raise ValueError("the decoder bias leaves the score range")
    return dec, dec_bias


def integer_network(net: FloatNetwork, leak_shift: int, psc_shift: int, rate_bits: int,
                    lfsr_seed: int = LFSR_SEED_DEFAULT) -> model.Network:
    """The integer network with its input stage quantised and an empty (zero) decoder."""
    w_in, w_shift, bias = quantize_input_stage(net)
    neurons = w_in.shape[0]
    return model.Network(
        w_in=w_in, w_shift=w_shift, bias=bias,
        v_th=np.full(neurons, 1 << V_FRAC, dtype=np.int64),
        dec=np.zeros((1, neurons), dtype=np.int64), dec_bias=np.zeros(1, dtype=np.int64),
        leak_shift=leak_shift, psc_shift=psc_shift,
        ref_steps=int(round(net.tau_ref / net.dt)), rate_bits=rate_bits, lfsr_seed=lfsr_seed,
    )
