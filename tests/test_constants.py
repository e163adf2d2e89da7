"""The constants module is self-consistent and is what the image format declares."""

from golden import constants as c
from golden import image


def test_lfsr_taps_match_polynomial():
    assert c.LFSR_POLY_EXPONENTS[0] == c.LFSR_WIDTH
    taps = sum(1 << (e - 1) for e in c.LFSR_POLY_EXPONENTS if e > 0)
    assert taps == c.LFSR_TAPS
    assert c.LFSR_POLY_EXPONENTS[-1] == 0  # constant term present


def test_ranges():
    assert (c.I_MIN, c.I_MAX) == (-(2**15), 2**15 - 1)
    assert (c.SCORE_MIN, c.SCORE_MAX) == (-(2**31), 2**31 - 1)
    assert c.signed_range(8) == (-128, 127) and c.unsigned_range(4) == (0, 15)
    assert c.PSC_ONE == 1 << c.PSC_BITS
    assert c.V_TH_BITS == c.V_BITS - 1
    assert 0 < c.LFSR_SEED_DEFAULT < 1 << c.LFSR_WIDTH


def test_image_formats_are_the_constants():
    for name, value in image.FORMATS.items():
        assert getattr(c, name) == value


def test_input_stage_widths_cover_mnist():
    # The signed shift spans -16 .. 15; the bias reaches the current's saturation even at the
    # largest right shift; W.x for 784 inputs, 8-bit weights and rate spikes 2**8 stays inside
    # the accumulator bound, and W.x + b inside B_BITS + 1 bits.
    assert (c.W_SHIFT_MIN, c.W_SHIFT_MAX) == (-(2 ** (c.W_SHIFT_BITS - 1)),
                                              2 ** (c.W_SHIFT_BITS - 1) - 1) == (-16, 15)
    assert c.signed_range(c.B_BITS)[1] >> -c.W_SHIFT_MIN >= c.I_MAX
    assert c.signed_range(c.B_BITS)[0] >> -c.W_SHIFT_MIN <= c.I_MIN
    assert 784 * 2 ** (c.W_BITS - 1) * 2**8 < 2**c.ACC_BOUND_BITS <= 2 ** (c.B_BITS - 1)
    assert c.W_BITS_MIN == 2 and c.W_BITS == 8
