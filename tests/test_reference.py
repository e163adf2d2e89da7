"""Float reference: Nengo's gain/bias rule and the float LIF dynamics."""

import numpy as np
import pytest

from golden import reference


def lif_rate(j, tau_rc, tau_ref):
    j = np.asarray(j, dtype=float)
    out = np.zeros_like(j)
    above = j > 1
    out[above] = 1 / (tau_ref - tau_rc * np.log1p(-1 / j[above]))
    return out


def test_gain_bias_hits_intercept_and_max_rate():
    rates = np.array([200.0, 300.0, 400.0])
    intercepts = np.array([-0.5, 0.0, 0.9])
    gain, bias = reference.gain_bias(rates, intercepts, 0.02, 0.002)
    # Current is exactly threshold at the intercept ...
    assert np.allclose(gain * intercepts + bias, 1.0)
    # ... and the analytic LIF rate at x = 1 is the max rate.
    assert np.allclose(lif_rate(gain + bias, 0.02, 0.002), rates)


def test_gain_bias_rejects_impossible_rate():
    with pytest.raises(ValueError, match="1 / tau_ref"):
        reference.gain_bias([600.0], [0.0], 0.02, 0.002)


def test_encoders_are_unit_vectors_and_seeded():
    a = reference.make_network(7, 50, 64, 16)
    b = reference.make_network(7, 50, 64, 16)
    assert np.allclose(np.linalg.norm(a.encoders, axis=1), 1.0)
    assert np.array_equal(a.encoders, b.encoders) and np.array_equal(a.gain, b.gain)
    assert not np.array_equal(a.encoders, reference.make_network(8, 50, 64, 16).encoders)


def test_simulated_rate_follows_current():
    # A zero image leaves J = bias: neurons with bias <= 1 never fire, stronger ones fire more.
    net = reference.make_network(0, 64, 4, 16, intercept_range=(-1.0, 0.5))
    psc, count = reference.simulate(np.zeros((1, 4), dtype=np.uint8), net, 200)
    assert count[0] > 0
    silent = net.bias <= 1
    assert np.all(psc[:, 0, silent] == 0)
    # Discrete-time rate never exceeds one spike per (refractory + 1) steps.
    spikes_per_neuron = np.diff(np.r_[0, psc[:, 0, 0]]) > 0
    assert spikes_per_neuron.sum() <= 200 // 3 + 1
