"""Float reference of the seed network, and the fitting of its decoder.

The seed network (as in Nengo): ``N`` LIF neurons whose input current is
``J = gain * (e . x) + bias`` with encoders ``e`` drawn uniformly from the unit hypersphere,
``x = pixels / pixel_max``, and gain and bias chosen so that each neuron starts firing at its
*intercept* (``e . x = intercept``) and reaches its *max rate* at ``e . x = 1``. Spikes are
filtered by exponential PSC kernels, and a linear decoder fitted by ridge regression to
one-hot targets reads the class out of the filtered spikes.

Neuron dynamics in float, with the same structure and order as the integer model
(``golden.model``) so that the two differ only by quantisation and the leak discretisation::

    v   = max(v + (J - v) * (1 - exp(-dt / tau_rc)), 0)      unless refractory
    s   = v >= 1;  v = 0 and refractory for round(tau_ref / dt) steps after a spike
    psc = psc + (s - psc) * (1 - exp(-dt / tau_syn))
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class FloatNetwork(NamedTuple):
    """Float parameters of the seed network.

    Attributes
    ----------
    encoders : (N, M) unit vectors.
    gain, bias : (N,) current gain and bias (dimensionless; threshold current is 1).
    max_rates : (N,) firing rate in Hz at ``e . x = 1``.
    intercepts : (N,) value of ``e . x`` at which the neuron starts firing.
    pixel_max : int, the pixel value that maps to ``x = 1``.
    tau_rc, tau_ref, tau_syn, dt : seconds.
    """

    encoders: np.ndarray
    gain: np.ndarray
    bias: np.ndarray
    max_rates: np.ndarray
    intercepts: np.ndarray
    pixel_max: int
    tau_rc: float
    tau_ref: float
    tau_syn: float
    dt: float


def gain_bias(max_rates, intercepts, tau_rc: float, tau_ref: float):
    """Nengo's LIF gain and bias from max rates and intercepts.

    The rate of a LIF neuron driven by a constant current ``J > 1`` is
    ``1 / (tau_ref - tau_rc * log(1 - 1/J))``; solving it for ``J_max`` at the max rate and
    asking ``J = 1`` at the intercept gives ``gain = (J_max - 1) / (1 - intercept)`` and
    ``bias = 1 - gain * intercept``.
    """
    max_rates = np.asarray(max_rates, dtype=np.float64)
    intercepts = np.asarray(intercepts, dtype=np.float64)
    if np.any(max_rates * tau_ref >= 1):
        raise ValueError("a max rate is above 1 / tau_ref")
    j_max = 1.0 / (1.0 - np.exp((tau_ref - 1.0 / max_rates) / tau_rc))
    gain = (j_max - 1.0) / (1.0 - intercepts)
    return gain, 1.0 - gain * intercepts


def make_network(
    seed: int,
    neurons: int,
    inputs: int,
    pixel_max: int,
    max_rate_range: tuple[float, float] = (200.0, 400.0),
    intercept_range: tuple[float, float] = (-1.0, 1.0),
    tau_rc: float = 0.020,
    tau_ref: float = 0.002,
    tau_syn: float = 0.016,
    dt: float = 0.001,
) -> FloatNetwork:
    """Draw a seed network: encoders on the unit hypersphere, uniform rates and intercepts."""
    rng = np.random.default_rng(seed)
    encoders = rng.standard_normal((neurons, inputs))
    encoders /= np.linalg.norm(encoders, axis=1, keepdims=True)
    max_rates = rng.uniform(*max_rate_range, size=neurons)
    intercepts = rng.uniform(*intercept_range, size=neurons)
    gain, bias = gain_bias(max_rates, intercepts, tau_rc, tau_ref)
    return FloatNetwork(encoders, gain, bias, max_rates, intercepts, pixel_max,
                        tau_rc, tau_ref, tau_syn, dt)


def currents(images: np.ndarray, net: FloatNetwork) -> np.ndarray:
    """Input currents ``J`` (B, N) of a batch of integer images (B, M)."""
    x = np.asarray(images, dtype=np.float64) / net.pixel_max
    return net.gain * (x @ net.encoders.T) + net.bias


def simulate(images: np.ndarray, net: FloatNetwork, timesteps: int):
    """Run the float network from rest; returns ``(psc, spike_count)``.

    ``psc`` is (T, B, N) ``float32``: the filtered spikes after every step, the features the
    decoder reads; ``spike_count`` is (B,).
    """
    j = currents(images, net)
    batch, neurons = j.shape
    v = np.zeros((batch, neurons))
    ref = np.zeros((batch, neurons), dtype=np.int64)
    psc = np.zeros((batch, neurons))
    ref_steps = int(round(net.tau_ref / net.dt))
    a_rc = -np.expm1(-net.dt / net.tau_rc)
    a_syn = -np.expm1(-net.dt / net.tau_syn)
    out = np.empty((timesteps, batch, neurons), dtype=np.float32)
    count = np.zeros(batch, dtype=np.int64)
    for t in range(timesteps):
        active = ref == 0
        v = np.where(active, np.maximum(v + (j - v) * a_rc, 0.0), v)
        s = active & (v >= 1.0)
        v[s] = 0.0
        ref = np.where(s, ref_steps, np.maximum(ref - 1, 0))
        psc += (s - psc) * a_syn
        out[t] = psc
        count += s.sum(axis=1)
    return out, count


class Decoder(NamedTuple):
    """Linear readout ``scores = features @ weights.T + intercept``: (C, N) and (C,)."""

    weights: np.ndarray
    intercept: np.ndarray


def fit_decoder(features: np.ndarray, labels: np.ndarray, classes: int,
                alpha: float, first_step: int = 0) -> Decoder:
    """Ridge regression from PSC features (T, B, N) to one-hot targets.

    Samples from every step from ``first_step`` on are pooled, so that one decoder reads the
    class out at every time after presentation (the accuracy-vs-time curve).
    """
    from sklearn.linear_model import Ridge

    t, b, n = features.shape
    x = features[first_step:].reshape(-1, n).astype(np.float64)
    y = np.tile(np.eye(classes)[labels], (t - first_step, 1))
    ridge = Ridge(alpha=alpha, solver="cholesky").fit(x, y)
    return Decoder(ridge.coef_, ridge.intercept_)


def predict(features: np.ndarray, decoder: Decoder) -> np.ndarray:
    """Class scores (..., C) from features (..., N)."""
    return features @ decoder.weights.T + decoder.intercept
