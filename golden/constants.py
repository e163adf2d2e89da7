"""Every fixed-point format and arithmetic rule of lifpga, defined once.

The golden model (:mod:`golden.model`), the network image loader (:mod:`golden.image`), the
hardware (``hw/``), the host driver and the tests import these names; none of them restates a
width, a shift or a rounding rule. ``docs/ARITHMETIC.md`` gives the same rules as equations, with
the order of operations.

Conventions used throughout
---------------------------
* ``Qm.n`` is a two's-complement number with ``m`` integer bits, ``n`` fraction bits and a sign
  bit (``1 + m + n`` bits in all); ``UQm.n`` is the unsigned form.
* **Rounding is floor**: every right shift is an arithmetic shift (``>>`` on a signed integer,
  as in NumPy and Amaranth), which rounds toward minus infinity.
* **Saturation** clamps to the width's range. Only the synaptic current and the membrane of a
  ``leaky`` neuron (:mod:`golden.neurons`) saturate; every other
  quantity is bounded by construction, and the bound is stated next to its width (and checked
  by :func:`golden.image.load` where it depends on the network image).
"""

from __future__ import annotations

# --- input pixels ---------------------------------------------------------------------------
#: Pixels are unsigned integers ``0 <= x <= pixel_max``; ``pixel_max`` belongs to the data set
#: and is recorded in the network image (16 for scikit-learn's 8x8 digits, 255 for MNIST).
PIXEL_BITS_MAX = 8

# --- rate encoder (Bernoulli spikes from an LFSR) --------------------------------------------
#: Width of the Galois LFSR that feeds the rate encoder.
LFSR_WIDTH = 32
#: Feedback polynomial x^32 + x^22 + x^2 + x + 1 (primitive; period 2^32 - 1).
LFSR_POLY_EXPONENTS = (32, 22, 2, 1, 0)
#: Right-shifting Galois form: ``out = s & 1; s >>= 1; if out: s ^= LFSR_TAPS``.
#: Bit ``e - 1`` is set for every nonzero exponent ``e`` of the polynomial, the degree included
#: (bit 31 is where the feedback bit re-enters the register).
LFSR_TAPS = 0x80200003
#: The LFSR state is never zero; a seed of zero is rejected.
LFSR_SEED_DEFAULT = 0x1F2E3D4C
#: Maximum number of random bits per draw (a draw is ``rate_bits`` consecutive output bits).
RATE_BITS_MAX = 8

# --- input stage -----------------------------------------------------------------------------
#: Input weights: signed, ``w_bits`` wide, where ``w_bits`` is a network-image parameter in
#: ``W_BITS_MIN .. W_BITS`` (``golden.model.Network.w_bits``; 8 for the digits, 4 fits a
#: 784-512 MNIST network in half the ULX3S-85F's block RAM). ``W_BITS`` is the widest.
W_BITS = 8
W_BITS_MIN = 2
#: Per-neuron input shift applied to ``W.x + b``: **signed**, ``W_SHIFT_MIN .. W_SHIFT_MAX``
#: (-16 .. 15); ``s >= 0`` shifts left, ``s < 0`` is an arithmetic right shift by ``-s``
#: (floor). Right shifts let small trained weights (0.01 .. 0.5 threshold per full-scale pixel)
#: keep all their bits: see docs/ARITHMETIC.md for the choice of the width.
W_SHIFT_BITS = 5
#: Per-neuron bias, in the units of ``W.x`` (added before the shift): signed 32 bit, so that at
#: the largest right shift (16) a bias still reaches the current's saturation (``2**31 >> 16 =
#: 2**15``).
B_BITS = 32
#: Bound on the input accumulator ``|W.x| < 2**ACC_BOUND_BITS`` (the image loader checks it
#: from ``inputs``, ``w_bits`` and ``rate_bits``); ``W.x + b`` then fits ``B_BITS + 1`` bits.
ACC_BOUND_BITS = 31

# --- LIF array -------------------------------------------------------------------------------
#: Fraction bits of the current and membrane formats: 1.0 (the nominal threshold) is
#: ``1 << V_FRAC``.
V_FRAC = 10
#: Synaptic current: Q5.10, saturating (the only saturating quantity of the pipeline).
I_BITS = 16
#: Membrane potential: Q5.10 register. The update clamps it at 0 from below, and it cannot
#: exceed ``max(I_MAX, v_th - 1)`` from above, so it never wraps.
V_BITS = 16
#: Per-neuron threshold, UQ5.10: ``1 .. 2**(V_BITS - 1) - 1``.
V_TH_BITS = V_BITS - 1
#: Refractory counter, unsigned; ``ref_steps <= 2**REF_BITS - 1``.
REF_BITS = 3
#: Leak and PSC shifts are unsigned 4-bit image parameters.
SHIFT_BITS = 4

# --- post-synaptic current (PSC) filters ------------------------------------------------------
#: PSC state: UQ0.12, ``0 .. 2**PSC_BITS - 1``. A spike drives the filter toward
#: ``PSC_ONE = 2**PSC_BITS``, which it never reaches, so the state never wraps.
PSC_BITS = 12
PSC_ONE = 1 << PSC_BITS

# --- readout ---------------------------------------------------------------------------------
#: Decoder weights: signed 8 bit.
D_BITS = 8
#: Class scores and the decoder bias: signed 32 bit. The image loader proves that no sum can
#: leave this range (``neurons * 2**(D_BITS-1) * (PSC_ONE-1) + max|dec_bias| < 2**31``).
SCORE_BITS = 32
# Argmax tie rule: among equal maximal scores, the lowest class index wins (``np.argmax``);
# golden.model.argmax and hw/readout.py implement it.

# --- layered networks (golden.layers, golden.neurons) -----------------------------------------
#: Neuron models of a layer (golden.neurons): ``lif`` is the model above (subtractive leak
#: ``v += (I - v) >> leak_shift``, clamp at 0, reset to 0, refractory, spike ``v >= th``);
#: ``leaky`` is snnTorch's ``Leaky`` (``v <- beta v + I``, delayed reset, spike ``v > th``).
NEURON_LIF = "lif"
NEURON_LEAKY = "leaky"
NEURON_MODELS = (NEURON_LIF, NEURON_LEAKY)
#: Reset of a ``leaky`` neuron after a spike (``lif`` always resets to zero).
RESET_ZERO = "zero"
RESET_SUBTRACT = "subtract"
RESETS = (RESET_ZERO, RESET_SUBTRACT)
#: Readouts: the PSC-filtered linear decoder (above), a leaky-integrator output layer (the
#: membranes of non-spiking neurons, NIR's ``LI``) and a spiking output layer read by spike counts.
READOUT_PSC = "psc"
READOUT_LI = "li"
READOUT_SPIKES = "spikes"
READOUTS = (READOUT_PSC, READOUT_LI, READOUT_SPIKES)
#: Layers of weights an image may have (hidden layers plus an LI or spiking output layer).
LAYERS_MAX = 4
#: Multiplicative leak ``beta`` of a ``leaky`` neuron: UQ0.12, ``0 .. 4095`` (``4096`` would be
#: 1.0). ``(beta * v) >> BETA_FRAC`` floors.
BETA_FRAC = 12
#: Membrane of a ``leaky`` neuron: Q5.10 in ``V_BITS``, **saturating** (``beta v + I`` is not
#: bounded by ``I`` as the ``lif`` update is); ``lif`` membranes never need it.
#: Threshold adaptation ``a`` of an adaptive (ALIF) layer: UQ6.10 in ``ADAPT_BITS``, unsigned;
#: the spike test compares with ``v_th + a`` (17 bits). ``a += ((-a) >> adapt_shift)`` then
#: ``+ adapt_step`` at a spike; it cannot exceed ``adapt_step << adapt_shift``, which the image
#: loader bounds by ``2**ADAPT_BITS - 1``.
ADAPT_BITS = 16
#: ``adapt_step`` is UQ5.10 (``0`` is a layer without adaptation), ``adapt_shift`` 4 bits.
ADAPT_STEP_BITS = 15

# --- hardware interface ---------------------------------------------------------------------
#: Steps per image in a classify request: unsigned 16 bit (1 .. 65535; 0 is refused).
STEPS_BITS = 16
#: Spike and cycle counters reported per image: unsigned 32 bit.
COUNT_BITS = 32

# --- encoder modes ---------------------------------------------------------------------------
#: Constant current: the image's pixels drive every step.
MODE_CURRENT = 0
#: Rate encoder: each pixel becomes a Bernoulli spike train from the LFSR.
MODE_RATE = 1
MODE_NAMES = {MODE_CURRENT: "current", MODE_RATE: "rate"}
MODE_BY_NAME = {name: mode for mode, name in MODE_NAMES.items()}


def signed_range(bits: int) -> tuple[int, int]:
    """Inclusive range of a ``bits``-wide two's-complement number."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def unsigned_range(bits: int) -> tuple[int, int]:
    """Inclusive range of a ``bits``-wide unsigned number."""
    return 0, (1 << bits) - 1


I_MIN, I_MAX = signed_range(I_BITS)
W_SHIFT_MIN, W_SHIFT_MAX = signed_range(W_SHIFT_BITS)
SCORE_MIN, SCORE_MAX = signed_range(SCORE_BITS)
V_MIN, V_MAX = signed_range(V_BITS)
