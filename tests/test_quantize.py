"""Quantisation: per-neuron shifts, weight and bias scaling, decoder scaling."""

import numpy as np
import pytest

from golden import model, quantize, reference
from golden.constants import V_FRAC


def test_shift_is_the_smallest_that_fits_eight_bits():
    net = reference.make_network(0, 256, 64, 16)
    w_in, shift, bias = quantize.quantize_input_stage(net)
    w_real = net.gain[:, None] * net.encoders / 16 * (1 << V_FRAC)
    peak = np.abs(w_real).max(axis=1)
    assert np.all(np.round(peak / 2.0**shift) <= 127)
    smaller = np.maximum(shift - 1, 0)
    assert np.all((shift == 0) | (np.round(peak / 2.0**smaller) > 127))
    assert w_in.min() >= -128 and w_in.max() <= 127
    # Every neuron uses its weight range: the largest weight has at least 6 significant bits.
    assert np.all((np.abs(w_in).max(axis=1) >= 64) | (shift == 0))


def test_integer_current_approximates_float_current():
    # Compared with a tolerance on purpose: this checks quantisation error, not bit-exactness.
    net = reference.make_network(1, 128, 64, 16)
    inet = quantize.integer_network(net, 4, 5, 4)
    x = np.random.default_rng(0).integers(0, 17, size=(20, 64))
    exact = reference.currents(x, net) * (1 << V_FRAC)
    acc = x @ inet.w_in.T + inet.bias
    unsaturated = acc * 2.0**inet.w_shift
    # Error of round-to-nearest weights: at most half an LSB per weight, times the pixel sum.
    bound = (0.5 * x.sum(axis=1, keepdims=True) + 0.5) * 2.0**inet.w_shift
    assert np.all(np.abs(unsaturated - exact) <= bound)
    assert np.array_equal(model.input_current(x, inet),
                          np.clip(unsaturated.astype(np.int64), -32768, 32767))


def test_decoder_scaled_by_one_factor_keeps_argmax():
    rng = np.random.default_rng(2)
    dec = reference.Decoder(rng.normal(size=(10, 40)) * 1e-3, rng.normal(size=10) * 0.1)
    w, b = quantize.quantize_decoder(dec)
    assert np.abs(w).max() == 127
    scale = 127 / np.abs(dec.weights).max()
    assert np.array_equal(w, np.round(dec.weights * scale))
    assert np.array_equal(b, np.round(dec.intercept * scale))


def test_gain_too_large_for_the_shift_width_is_refused():
    net = reference.make_network(0, 4, 8, 16)
    huge = net._replace(gain=net.gain * 1e9)
    with pytest.raises(ValueError, match="shift"):
        quantize.quantize_input_stage(huge)
