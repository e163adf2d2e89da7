"""The rate encoder's random source: a 32-bit Galois LFSR, bit for bit.

Definition
----------
State ``s`` is a nonzero 32-bit integer. One *step* emits one bit and advances the state::

    out = s & 1
    s   = (s >> 1) ^ (LFSR_TAPS if out else 0)

with ``LFSR_TAPS = 0x80200003`` (polynomial x^32 + x^22 + x^2 + x + 1, primitive, so the state
visits all 2^32 - 1 nonzero values). A *draw* of ``k`` bits takes ``k`` steps and packs the
emitted bits least-significant first: ``r = out_0 | out_1 << 1 | ... | out_{k-1} << (k-1)``.

Order of draws for one image
----------------------------
The LFSR is loaded with the image's seed when the image starts. Step ``t`` (``0 <= t < T``)
takes ``inputs`` draws, pixel 0 first: draw number ``t * inputs + j`` belongs to pixel ``j`` at
step ``t``. Every image of a run starts from the same seed unless a per-image seed is given.
"""

from __future__ import annotations

import numpy as np

from .constants import LFSR_TAPS, LFSR_WIDTH

_MASK = (1 << LFSR_WIDTH) - 1


def check_seed(seed: int) -> int:
    """Return ``seed`` if it is a valid LFSR state, else raise :class:`ValueError`."""
    if (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool)
            or not 0 < int(seed) <= _MASK):
        raise ValueError(f"LFSR seed must be an integer in 1 .. 2**{LFSR_WIDTH} - 1, got {seed!r}")
    return int(seed)


def step(state: int) -> tuple[int, int]:
    """Advance a scalar LFSR state by one step: returns ``(out_bit, next_state)``."""
    out = state & 1
    state >>= 1
    if out:
        state ^= LFSR_TAPS
    return out, state


def draws(seeds: np.ndarray | int, count: int, bits: int) -> np.ndarray:
    """``count`` consecutive ``bits``-bit draws from LFSRs started at ``seeds``.

    Vectorised over seeds: ``seeds`` of shape ``(B,)`` gives an array of shape ``(B, count)``;
    a scalar seed gives shape ``(count,)``. Values are ``uint16`` in ``0 .. 2**bits - 1``.
    """
    scalar = np.ndim(seeds) == 0
    # Check every seed as given, before any conversion could truncate a float or wrap a big int.
    checked = [check_seed(seed) for seed in np.atleast_1d(np.asarray(seeds, dtype=object))]
    state = np.array(checked, dtype=np.uint32)
    taps = np.uint32(LFSR_TAPS)
    out = np.zeros((len(state), count), dtype=np.uint16)
    for n in range(count):
        r = np.zeros(len(state), dtype=np.uint16)
        for b in range(bits):
            bit = state & np.uint32(1)
            state = (state >> np.uint32(1)) ^ (taps * bit)
            r |= bit.astype(np.uint16) << np.uint16(b)
        out[:, n] = r
    return out[0] if scalar else out


_cache: dict[tuple[int, int, int], np.ndarray] = {}


def rate_draws(seed: int, timesteps: int, inputs: int, bits: int) -> np.ndarray:
    """The draws of one image, shaped ``(timesteps, inputs)``.

    Cached, since they depend on no pixel; the result is a read-only view of the cache.
    """
    key = (check_seed(seed), timesteps * inputs, bits)
    if key not in _cache:
        _cache[key] = draws(seed, timesteps * inputs, bits)
        _cache[key].flags.writeable = False
    return _cache[key][: timesteps * inputs].reshape(timesteps, inputs)
