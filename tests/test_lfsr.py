"""Tests of the rate encoder's random source, :mod:`golden.lfsr`.

The reference below is written from the definition in ``golden/lfsr.py``'s docstring, with
plain Python ints, and deliberately does not call :func:`golden.lfsr.step`.
"""

from __future__ import annotations

import numpy as np
import pytest

from golden import constants as c
from golden import lfsr

PERIOD = (1 << 32) - 1
PERIOD_PRIME_FACTORS = (3, 5, 17, 257, 65537)

# Known answers, computed once with ``ref_bits`` below and pasted as literals so that any
# change of the LFSR definition (taps, bit order, packing) is caught even if the reference
# were changed along with it. The first three states were also checked by hand:
#   0x1F2E3D4C ends in ...1100: out 0, s = 0x1F2E3D4C >> 1 = 0x0F971EA6
#   0x0F971EA6 ends in ...0110: out 0, s = 0x07CB8F53
#   0x07CB8F53 ends in ...0011: out 1, s = 0x03E5C7A9 ^ 0x80200003 = 0x83C5C7AA
# The eighth state, 0x74022E3C, is also the worked example of docs/ARITHMETIC.md.
DEFAULT_SEED_STATES = [0x0F971EA6, 0x07CB8F53, 0x83C5C7AA, 0x41E2E3D5, 0xA0D171E9, 0xD048B8F7,
                       0xE8045C78, 0x74022E3C]
DEFAULT_SEED_BITS = [0, 0, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1, 1, 0,
                     1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1]
DEFAULT_SEED_DRAWS_4BIT = [4, 7, 4, 6, 9, 11, 11, 13]


def ref_bits(seed: int, n: int) -> list[int]:
    """``n`` output bits of the LFSR from ``seed``, straight from the docstring."""
    s, out = seed, []
    for _ in range(n):
        bit = s % 2
        s = (s // 2) ^ (0x80200003 if bit else 0)
        out.append(bit)
    return out


def ref_draws(seed: int, count: int, bits: int) -> list[int]:
    """``count`` draws of ``bits`` bits, least-significant bit first."""
    stream = ref_bits(seed, count * bits)
    return [sum(stream[n * bits + b] << b for b in range(bits)) for n in range(count)]


# --- known answers -----------------------------------------------------------------------


def test_taps_constant_matches_literal():
    # The reference hard-codes the mask; make sure it is the project's mask.
    assert c.LFSR_TAPS == 0x80200003
    assert c.LFSR_WIDTH == 32


def test_reference_matches_literals():
    assert ref_bits(c.LFSR_SEED_DEFAULT, 32) == DEFAULT_SEED_BITS
    assert ref_draws(c.LFSR_SEED_DEFAULT, 8, 4) == DEFAULT_SEED_DRAWS_4BIT


def test_step_known_states():
    s = c.LFSR_SEED_DEFAULT
    bits, states = [], []
    for _ in range(len(DEFAULT_SEED_STATES)):
        bit, s = lfsr.step(s)
        bits.append(bit)
        states.append(s)
    assert states == DEFAULT_SEED_STATES
    assert bits == DEFAULT_SEED_BITS[: len(DEFAULT_SEED_STATES)]


@pytest.mark.parametrize("seed", [1, 2, 0x80000000, PERIOD, c.LFSR_SEED_DEFAULT, 0xDEADBEEF])
def test_step_matches_reference(seed):
    s = seed
    got = []
    for _ in range(100):
        bit, s = lfsr.step(s)
        assert 0 < s <= PERIOD  # the state never becomes zero and stays within 32 bits
        got.append(bit)
    assert got == ref_bits(seed, 100)


def test_draws_known_answer_literal():
    got = lfsr.draws(c.LFSR_SEED_DEFAULT, 8, 4)
    assert got.shape == (8,)
    assert got.dtype == np.uint16
    assert got.tolist() == DEFAULT_SEED_DRAWS_4BIT


@pytest.mark.parametrize("bits", [1, 4, 8])
def test_draws_scalar_seed_matches_reference(bits):
    for seed in (1, c.LFSR_SEED_DEFAULT, PERIOD):
        got = lfsr.draws(seed, 50, bits)
        assert got.shape == (50,)
        assert got.dtype == np.uint16
        assert got.tolist() == ref_draws(seed, 50, bits)


@pytest.mark.parametrize("bits", [1, 4, 8])
def test_draws_vector_of_seeds_matches_reference(bits):
    seeds = np.array([1, 2, 3, c.LFSR_SEED_DEFAULT, 0x80000000, PERIOD], dtype=np.int64)
    got = lfsr.draws(seeds, 20, bits)
    assert got.shape == (len(seeds), 20)
    assert got.dtype == np.uint16
    for row, seed in zip(got, seeds, strict=True):
        assert row.tolist() == ref_draws(int(seed), 20, bits)


def test_draws_are_one_continuous_bit_stream():
    # A draw of k bits is k consecutive steps: 8-bit draws are pairs of 4-bit draws.
    d4 = lfsr.draws(c.LFSR_SEED_DEFAULT, 20, 4).astype(int)
    d8 = lfsr.draws(c.LFSR_SEED_DEFAULT, 10, 8).astype(int)
    assert np.array_equal(d8, d4[0::2] | (d4[1::2] << 4))


@pytest.mark.parametrize(("timesteps", "inputs", "bits"), [(1, 1, 4), (3, 5, 4), (4, 2, 8),
                                                           (6, 3, 1)])
def test_rate_draws_row_major(timesteps, inputs, bits):
    seed = 0x2468ACE1
    got = lfsr.rate_draws(seed, timesteps, inputs, bits)
    assert got.shape == (timesteps, inputs)
    flat = ref_draws(seed, timesteps * inputs, bits)
    for t in range(timesteps):
        for j in range(inputs):
            # draw number t * inputs + j belongs to pixel j at step t
            assert got[t, j] == flat[t * inputs + j]


def test_rate_draws_literal_and_repeatable():
    first = lfsr.rate_draws(c.LFSR_SEED_DEFAULT, 4, 2, 4).copy()
    assert first.tolist() == [[4, 7], [4, 6], [9, 11], [11, 13]]
    # A second call (served from the cache) and a longer run agree with the first.
    assert np.array_equal(lfsr.rate_draws(c.LFSR_SEED_DEFAULT, 4, 2, 4), first)
    assert np.array_equal(lfsr.rate_draws(c.LFSR_SEED_DEFAULT, 7, 2, 4)[:4], first)
    # Same number of draws, different shape: same stream, reshaped.
    assert np.array_equal(lfsr.rate_draws(c.LFSR_SEED_DEFAULT, 2, 4, 4), first.reshape(2, 4))


# --- maximal period ----------------------------------------------------------------------


def _apply(cols: list[int], v: int) -> int:
    """Matrix (list of column ints) times vector (int) over GF(2)."""
    out, i = 0, 0
    while v:
        if v & 1:
            out ^= cols[i]
        v >>= 1
        i += 1
    return out


def _matmul(a: list[int], b: list[int]) -> list[int]:
    return [_apply(a, col) for col in b]


def _matpow(m: list[int], e: int) -> list[int]:
    result = [1 << i for i in range(len(m))]
    while e:
        if e & 1:
            result = _matmul(result, m)
        m = _matmul(m, m)
        e >>= 1
    return result


def _transition_matrix() -> list[int]:
    # One step is linear over GF(2); column i is the image of basis vector e_i.
    return [lfsr.step(1 << i)[1] for i in range(32)]


def test_transition_matrix_is_the_reference_step():
    cols = _transition_matrix()
    for i in range(32):
        s = 1 << i
        expected = (s >> 1) ^ (0x80200003 if s & 1 else 0)
        assert cols[i] == expected


def test_maximal_period():
    """The order of the transition matrix T is exactly 2**32 - 1.

    For a 32x32 matrix over GF(2) this means its minimal polynomial is primitive of degree 32
    (an order dividing 2**32 - 1 with no factor of degree 32 would divide 2**16 - 1), so every
    nonzero state lies on one cycle through all 2**32 - 1 nonzero states.
    """
    assert np.prod(PERIOD_PRIME_FACTORS, dtype=object) == PERIOD
    for q in PERIOD_PRIME_FACTORS:  # the factors really are prime
        assert all(q % d for d in range(2, int(q**0.5) + 1))
    t = _transition_matrix()
    identity = [1 << i for i in range(32)]
    assert _matpow(t, PERIOD) == identity
    for q in PERIOD_PRIME_FACTORS:
        assert _matpow(t, PERIOD // q) != identity, f"period divides (2**32-1)/{q}"


def test_taps_implement_the_documented_polynomial():
    # A right-shifting Galois step multiplies the state, read as a polynomial in x, by x^-1
    # modulo p(x). So x * next_state reduced mod p must give the state back.
    p = sum(1 << e for e in c.LFSR_POLY_EXPONENTS)
    assert c.LFSR_POLY_EXPONENTS[0] == c.LFSR_WIDTH
    # The rule stated in constants.py: bit e - 1 for every nonzero exponent e.
    assert c.LFSR_TAPS == sum(1 << (e - 1) for e in c.LFSR_POLY_EXPONENTS if e)
    for s in (1, 2, 3, c.LFSR_SEED_DEFAULT, 0x80000000, PERIOD, 0x12345678):
        _, nxt = lfsr.step(s)
        back = nxt << 1
        if back >> 32:
            back ^= p
        assert back == s


# --- statistics --------------------------------------------------------------------------


def _many_4bit_draws() -> np.ndarray:
    # 64 seeds taken from the LFSR itself, 1024 draws each: 65536 draws, deterministic.
    seeds = lfsr.draws(c.LFSR_SEED_DEFAULT, 64 * 2, 16).astype(np.int64)
    seeds = (seeds[0::2] | (seeds[1::2] << 16)) | 1  # nonzero 32-bit seeds
    return lfsr.draws(seeds, 1024, 4).ravel().astype(np.int64)


def test_4bit_draws_uniform():
    d = _many_4bit_draws()
    assert d.min() == 0 and d.max() == 15
    counts = np.bincount(d, minlength=16)
    expected = len(d) / 16
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    # 15 degrees of freedom: P(chi2 > 37.7) = 0.001 for a uniform source.
    assert chi2 < 37.7, counts
    # A flat histogram with a stuck bit would still fail here: each bit is set half the time.
    for b in range(4):
        frac = ((d >> b) & 1).mean()
        assert abs(frac - 0.5) < 0.01, (b, frac)
    # Consecutive draws are independent: pairs are uniform over 256 cells
    # (255 dof: P(chi2 > 330.5) = 0.001).
    pairs = d[0::2] * 16 + d[1::2]
    pcounts = np.bincount(pairs, minlength=256)
    pexp = len(pairs) / 256
    assert float(((pcounts - pexp) ** 2 / pexp).sum()) < 330.5


def test_spike_probability_is_pixel_over_16():
    # What the rate encoder relies on: P(draw < x) = x / 16 for every 4-bit pixel value.
    d = _many_4bit_draws()
    for x in range(17):
        p = (d < x).mean()
        assert abs(p - x / 16) < 0.01, (x, p)


# --- seed validation ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, PERIOD, c.LFSR_SEED_DEFAULT])
def test_check_seed_accepts(seed):
    assert lfsr.check_seed(seed) == seed
    assert type(lfsr.check_seed(seed)) is int
    assert lfsr.check_seed(np.uint32(seed)) == seed
    assert lfsr.check_seed(np.int64(seed)) == seed


@pytest.mark.parametrize("seed", [0, -1, -PERIOD, 1 << 32, (1 << 32) + 1, 1 << 64,
                                  1.0, 1.5, float(c.LFSR_SEED_DEFAULT), np.float64(3.0),
                                  "1", None, [1], np.int64(0), np.int64(-5)])
def test_check_seed_rejects(seed):
    with pytest.raises(ValueError, match="LFSR seed"):
        lfsr.check_seed(seed)


@pytest.mark.parametrize("seed", [0, -1, 1 << 32])
def test_draws_reject_bad_seeds(seed):
    with pytest.raises(ValueError, match="LFSR seed"):
        lfsr.draws(seed, 4, 4)
    with pytest.raises(ValueError, match="LFSR seed"):
        lfsr.draws(np.array([1, seed], dtype=np.int64), 4, 4)
    with pytest.raises(ValueError, match="LFSR seed"):
        lfsr.rate_draws(seed, 2, 2, 4)


# --- bugs found while writing these tests (they fail until golden/lfsr.py is fixed) -------


@pytest.mark.parametrize("seed", [1.5, 7.9, np.float64(2.5)])
def test_draws_reject_non_integer_seed(seed):
    # draws() casts seeds to int64 *before* check_seed, so 1.5 silently becomes seed 1.
    with pytest.raises(ValueError, match="LFSR seed"):
        lfsr.draws(seed, 4, 4)
    with pytest.raises(ValueError, match="LFSR seed"):
        lfsr.draws(np.array([1.0, seed]), 4, 4)


def test_rate_draws_cache_cannot_be_corrupted_by_caller():
    # rate_draws returns a view into its module-level cache: a caller that modifies the
    # returned array in place would silently change every later run with that seed.
    seed = 0x0BADF00D
    before = lfsr.rate_draws(seed, 3, 4, 4).copy()
    got = lfsr.rate_draws(seed, 3, 4, 4)
    try:
        got += 1
    except ValueError:
        pass  # a read-only result is one acceptable fix
    assert np.array_equal(lfsr.rate_draws(seed, 3, 4, 4), before)


def test_check_seed_rejects_bool():
    with pytest.raises(ValueError):
        lfsr.check_seed(True)
