"""hw/geometry.py: the core's memories and timing model, without building it (and against it).

The timing formula itself is checked against the cycles measured in both simulators by
tests/test_core.py and tests/test_core_verilator.py; here: the bound of :func:`max_cycles`,
and that the memory list is what :class:`hw.core.LifCore` builds.
"""

import re
import subprocess
import sys

import numpy as np
import pytest

from golden.constants import MODE_CURRENT, MODE_RATE
from hw.geometry import (
    BANK_STAGES,
    CoreGeometry,
    EngineGeometry,
    cycles,
    max_cycles,
    weight_bank_depth,
    weight_banks,
)

MODES = (MODE_CURRENT, MODE_RATE)


def geometry_of(shipped, lanes=16):
    net, manifest = shipped
    return CoreGeometry.of(net, pixel_max=manifest["pixel_max"], lanes=lanes)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("steps", [0, 1, 7, 32])
def test_max_cycles_bounds_every_image_and_is_reached(shipped, mode, steps):
    net, manifest = shipped
    geo = geometry_of(shipped)
    bound = max_cycles(net.inputs, net.neurons, 16, net.classes, steps, mode)
    assert bound == geo.max_cycles(steps, mode)
    rng = np.random.default_rng(steps * 2 + mode)
    pixel_max = manifest["pixel_max"]
    images = [rng.integers(0, pixel_max + 1, net.inputs) for _ in range(20)]
    images += [np.zeros(net.inputs, int), rng.integers(0, 2, net.inputs)]
    for image in images:
        assert geo.expected_cycles(image, steps, mode) <= bound
    # Every pixel at its maximum: nonzero, and (2**rate_bits <= pixel_max for the digits)
    # spiking at every draw, so the bound is reached.
    assert 2 ** net.rate_bits <= pixel_max
    assert geo.expected_cycles(np.full(net.inputs, pixel_max), steps, mode) == bound


def test_max_cycles_figures():
    # The digits at 32 steps, 16 lanes: the README's "at most 1,864" cycles per image.
    assert max_cycles(64, 256, 16, 10, 32, MODE_CURRENT) == 1864
    assert max_cycles(64, 256, 16, 10, 0, MODE_CURRENT) == max_cycles(64, 256, 16, 10, 1, 0)


def test_bad_lanes_and_list_lengths_are_errors():
    with pytest.raises(ValueError, match="must divide"):
        max_cycles(64, 256, 0, 10, 32, MODE_CURRENT)
    with pytest.raises(ValueError, match="must divide"):
        max_cycles(64, 256, 3, 10, 32, MODE_CURRENT)
    with pytest.raises(ValueError, match="one list length per step"):
        cycles(64, 256, 16, 10, 3, MODE_RATE, [1, 2])


@pytest.mark.parametrize("lanes", [16, 32, 8])
def test_memory_list_is_what_the_core_builds(shipped, lanes):
    from hw.core import LifCore, built_memories

    net, manifest = shipped
    core = LifCore(net, pixel_max=manifest["pixel_max"], lanes=lanes)
    specs = geometry_of(shipped, lanes).memories()
    assert built_memories(core) == {s.name: (s.width, s.depth) for s in specs}


def test_readout_products_are_the_readouts_registers(shipped):
    # The iCE40 build selects the readout's multipliers by these names (hw/bitstream.py):
    # they must name the readout's product registers, one per class.
    from amaranth.back import rtlil

    from hw.readout import Readout

    net, _ = shipped
    products = geometry_of(shipped).readout_products
    assert len(products) == net.classes
    text = rtlil.convert(Readout(net.dec, net.dec_bias), name="readout")
    for path in products:
        scope, name = path.split(".")
        assert scope == "readout"
        assert re.search(rf"^\s*wire .*\\{name}$", text, re.M), name


def test_widths_of_the_digits_core(shipped):
    geo = geometry_of(shipped)
    # The input list holds j (6 bits for 64 pixels) and x (5 bits: a pixel up to 16, or a
    # rate-encoder spike 2**4): 11 bits (the fit check once sized it 12).
    assert geo.memory("lst_mem").width == 11
    assert geo.memory("st_mem").width == (16 + 3 + 12) * 16
    with pytest.raises(KeyError):
        geo.memory("no_mem")


def test_importing_the_geometry_loads_no_amaranth():
    code = ("import sys, hw.geometry; "
            "sys.exit(any(m.split('.')[0] == 'amaranth' for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def mnist_net(w_bits, neurons=512):
    from golden import model

    z = np.zeros
    return model.Network(z((neurons, 784), np.int64), z(neurons, np.int64), z(neurons, np.int64),
                         np.ones(neurons, np.int64), z((10, neurons), np.int64),
                         z(10, np.int64), 4, 5, 2, 8, 1, w_bits=w_bits)


@pytest.mark.parametrize(("w_bits", "acc_bits", "w_mem_bits"),
                         [(4, 23, 784 * 512 * 4), (8, 27, 784 * 512 * 8)])
def test_widths_of_a_784_input_core(w_bits, acc_bits, w_mem_bits):
    # 784 inputs, 8-bit pixels, rate spikes 2**8 (9-bit x): the accumulator holds
    # 784 * 2**(w_bits-1) * 256 exactly; the weight memory follows w_bits (4 bits: 1.6 Mbit,
    # under half the ULX3S-85F's 3.8 Mbit of block RAM).
    geo = CoreGeometry.of(mnist_net(w_bits), pixel_max=255, lanes=16)
    assert (geo.w_bits, geo.x_bits, geo.index_bits) == (w_bits, 9, 10)
    assert geo.acc_bits == acc_bits
    assert 784 * 2 ** (w_bits - 1) * 255 < 2 ** (acc_bits - 1)  # the largest |W.x|
    banks = geo.weight_memories()
    assert {w.width for w in banks} == {16 * w_bits}
    assert sum(w.depth for w in banks) == 32 * 784
    assert sum(w.depth * w.width for w in banks) == w_mem_bits
    assert geo.memory("lst_mem").width == 10 + 9
    cur = geo.memory("cur_param_mem")
    assert cur.fields[1].name == "shift" and cur.fields[1].signed and cur.element_bits == 32 + 5


def test_max_cycles_of_a_784_input_core():
    # 784-512-10, 16 lanes, 32 steps: M + G*M + T*G + N + READOUT_DRAIN + ceil(log2 C).
    assert max_cycles(784, 512, 16, 10, 32, MODE_CURRENT) == 784 + 32 * 784 + 32 * 32 + 512 + 4 + 4


@pytest.mark.parametrize(("w_bits", "banks", "last"), [(4, 4, 1696), (8, 4, 1696)])
def test_memory_list_of_a_banked_core(w_bits, banks, last):
    # 80 neurons over 8 lanes, 784 inputs: 7,840 words of weights, more than one block RAM
    # deep, so banked: 2,048-word banks (a word of 8 weights is read in 2,048 x 9 block RAMs,
    # 4-bit weights or 8-bit). (With 784 inputs every core the lanes allow, G >= 8, is
    # banked.)
    from hw.core import LifCore, built_memories

    net = mnist_net(w_bits, neurons=80)
    geo = CoreGeometry.of(net, pixel_max=255, lanes=8)
    built = built_memories(LifCore(net, pixel_max=255, lanes=8))
    assert built == {s.name: (s.width, s.depth) for s in geo.memories()}
    assert geo.weight_banks == banks and geo.weight_stages == BANK_STAGES
    names = [f"w_mem{k}" for k in range(banks)]
    assert [w.name for w in geo.weight_memories()] == names
    assert [built[name][1] for name in names] == [weight_bank_depth(w_bits, 8)] * (
        banks - 1) + [last]
    assert {built[name][0] for name in names} == {8 * w_bits}


def test_digits_weights_stay_one_memory(shipped):
    # The digits core (1,024 words, 8-bit weights, P = 16) is one block RAM deep: no banks, no
    # extra stage, so its figures and cycle counts stay as they were.
    from hw.core import MIN_GROUPS, LifCore, built_memories, min_groups

    net, manifest = shipped
    geo = CoreGeometry.of(net, pixel_max=manifest["pixel_max"], lanes=16)
    assert (geo.weight_banks, geo.weight_stages) == (1, 0)
    assert min_groups(geo.weight_stages) == MIN_GROUPS == 8
    built = built_memories(LifCore(net, pixel_max=manifest["pixel_max"], lanes=16))
    assert built["w_mem"] == (16 * net.w_bits, 16 * 64)
    assert not any(name.startswith("w_mem") and name != "w_mem" for name in built)


@pytest.mark.parametrize(("w_bits", "depth"), [(1, 16384), (2, 8192), (3, 4096), (4, 4096),
                                               (5, 2048), (8, 2048), (9, 2048), (10, 1024)])
def test_weight_bank_depth_is_one_block_ram(w_bits, depth):
    # One lane: a word is one weight, in the deepest shape that holds it.
    assert weight_bank_depth(w_bits, 1) == depth


@pytest.mark.parametrize(("w_bits", "depth"), [(1, 2048), (4, 2048), (9, 2048), (10, 1024),
                                               (18, 1024), (19, 512)])
def test_weight_bank_depth_of_a_word_of_weights(w_bits, depth):
    # Several lanes: Yosys reads the word in columns at least 9 bits wide (4,096 x 64 bits
    # became two rows of 2,048 x 9 and a mux), so a bank is at most 2,048 words.
    assert weight_bank_depth(w_bits, 16) == weight_bank_depth(w_bits, 2) == depth


def test_weight_banks():
    assert weight_banks(1024, 8, 16, 16) == 1  # the digits, P = 16
    assert weight_banks(2048, 8, 16, 16) == 1 and weight_banks(2049, 8, 16, 16) == 2
    assert weight_banks(32 * 784, 4, 32, 16) == 13  # 784-512, P = 16: 12 x 2,048 + 512
    assert weight_banks(32 * 784, 8, 32, 16) == 13
    assert weight_banks(32 * 784, 4, 32, 1) == 7  # one lane: 4,096 x 4 bits per block RAM
    # Too few groups to hide the extra stages: one memory, as before.
    assert weight_banks(9 * 784, 4, 9, 16) == 1 and weight_banks(10 * 784, 4, 10, 16) == 4
    geo = CoreGeometry.of(mnist_net(4), pixel_max=255, lanes=16)
    assert [w.depth for w in geo.weight_memories()] == [2048] * 12 + [512]


def test_banked_weights_add_no_cycles():
    # The two extra INPUT stages overlap LIF's start, as the core's 10-group minimum ensures:
    # the timing model is the same formula with or without banks (checked against both
    # simulators on a banked 784-input core in tests/test_core.py and
    # tests/test_core_verilator.py).
    # 300 inputs, one lane, 10 groups: 3,000 words, one block RAM deep at 4 bits, two banks
    # at 8.
    def geo(w_bits):
        return CoreGeometry(inputs=300, neurons=10, classes=10, lanes=1, pixel_bits=8,
                            rate_bits=8, lfsr_seed=1, w_bits=w_bits)

    one, banked = geo(4), geo(8)
    assert (one.weight_banks, banked.weight_banks) == (1, 2)
    assert (one.weight_stages, banked.weight_stages) == (0, BANK_STAGES)
    image = np.arange(300) % 3
    for mode in MODES:
        assert banked.expected_cycles(image, 5, mode) == one.expected_cycles(image, 5, mode)
        assert banked.max_cycles(5, mode) == one.max_cycles(5, mode)
    assert one.expected_cycles(image, 5, MODE_CURRENT) == cycles(
        300, 10, 1, 10, 5, MODE_CURRENT, int(np.count_nonzero(image)))


def test_pixel_read_ahead_only_for_a_block_ram_pixel_memory(shipped):
    # The digits' pixel memory (64 x 5 bits, LUT RAM) is read as before; a 784 x 8-bit one (a
    # block RAM) a cycle ahead into a register. Cycle counts do not change (the 784-input
    # rate-mode tests in both simulators check them).
    net, manifest = shipped
    assert not CoreGeometry.of(net, pixel_max=manifest["pixel_max"], lanes=16).pixel_read_ahead
    assert CoreGeometry.of(mnist_net(4), pixel_max=255, lanes=16).pixel_read_ahead


def test_list_read_ahead_only_for_a_block_ram_input_list(shipped):
    # The digits' input list (64 x 11 bits, LUT RAM) is read as before; a 784 x 19-bit one (a
    # block RAM) a cycle ahead into a register. Cycle counts do not change (the 784-input
    # tests in both simulators check them; tests/test_core.py the one-entry lists).
    net, manifest = shipped
    digits = CoreGeometry.of(net, pixel_max=manifest["pixel_max"], lanes=16)
    mnist = CoreGeometry.of(mnist_net(4), pixel_max=255, lanes=16)
    assert (digits.memory("lst_mem").width, mnist.memory("lst_mem").width) == (11, 19)
    assert not digits.list_read_ahead and mnist.list_read_ahead


def test_engine_reads_ahead_and_counts_chunked_roms_for_the_shipped_images():
    # The engine's geometry shares the criteria: the MNIST images' 784-entry pixel list is a
    # block RAM the event source reads ahead, the digits' is not; only ROMs deeper than one
    # chunk (16 groups) count as logic: mnist-deep's 48 groups are 3 chunks, 5 LUT4s per bit
    # of a group's word (16 lanes x (15 + 32 + 5 + 12) bits).
    from firmware import IMAGES_DIR
    from golden import image

    def engine(name):
        net, manifest = image.load_layers(IMAGES_DIR / name)
        return EngineGeometry.of(net, pixel_max=manifest["pixel_max"], lanes=16)

    deep, digits = engine("mnist-deep"), engine("digits")
    assert deep.list_read_ahead and deep.pixel_read_ahead
    assert not digits.list_read_ahead and not digits.pixel_read_ahead
    assert deep.groups == 48 and deep.group_rom_luts == 5 * 16 * (15 + 32 + 5 + 12)
    assert digits.groups == 16 and digits.group_rom_luts == 0
    # the state and current LUT RAMs: 3 chunks of 16 groups, a select of 2 LUT4s per bit of
    # their words (16 lanes x (16 current + 29 state bits)); one chunk, none
    assert deep.state_ram_luts == 2 * 16 * (16 + 29)
    assert digits.state_ram_luts == 0
    assert {name for name, _, _ in deep.group_roms()} == {
        "synapse.cur_param_mem", "neurons.v_th_mem", "neurons.beta_mem"}
    assert not any(s.name.endswith(".rom") for s in deep.memories())
