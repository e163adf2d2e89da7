"""hw.core exported to Verilog, on Verilator under cocotb, bit-exact against golden.model.run.

The model is built once per session for the shipped image (``firmware/digits``, 16 lanes) and
reused from ``build/sim/verilator/<key>/`` when the design has not changed. A simulator process
costs about a second to start and rate mode runs some 67,000 cycles per image, so every case is
one group of a single batch, run once; each test checks its group. A second, smaller batch runs
with the testbench's stress mode (random ``o.ready`` backpressure, idle cycles and junk on
``i``). Comparisons are :func:`golden.device.agreement` (the label, every score and the spike
count, image by image), with a message naming the first field that differs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
from conftest import MNIST_DIR

from golden import device, model
from golden.constants import MODE_CURRENT, MODE_NAMES, MODE_RATE
from golden.data import load_split
from hw.geometry import CoreGeometry
from sim import verilator

pytestmark = pytest.mark.slow

LANES = 16
STRESS_SEED = 7


class Group(NamedTuple):
    """Images run with one ``steps`` and ``mode``."""

    images: np.ndarray
    steps: int
    mode: int


class Outcome(NamedTuple):
    """What the simulated core returned for a group, and what the golden model says."""

    sim: verilator.SimResult
    golden: model.Result
    steps: int
    mode: int
    images: np.ndarray


@pytest.fixture(scope="session")
def network(shipped):
    return shipped


@pytest.fixture(scope="session")
def sim_model(network) -> verilator.SimModel:
    net, manifest = network
    try:
        return verilator.build(net, manifest["pixel_max"], LANES)
    except verilator.ToolNotFoundError as e:
        pytest.skip(f"{e.tool} is not installed: {e}")


def make_groups(manifest: dict, net: model.Network) -> dict[str, Group]:
    x = load_split().x_test
    timesteps, pixel_max = manifest["timesteps"], manifest["pixel_max"]
    blank = np.zeros((1, net.inputs), dtype=np.uint8)
    full = np.full((1, net.inputs), pixel_max, dtype=np.uint8)
    return {
        "digits-current": Group(x[:30], timesteps, MODE_CURRENT),
        "digits-rate": Group(x[30:40], timesteps, MODE_RATE),
        "blank-current": Group(blank, timesteps, MODE_CURRENT),
        "full-current": Group(full, timesteps, MODE_CURRENT),
        "blank-rate": Group(blank, timesteps, MODE_RATE),
        "full-rate": Group(full, timesteps, MODE_RATE),
        "one-step-current": Group(x[40:44], 1, MODE_CURRENT),
        "one-step-rate": Group(x[40:44], 1, MODE_RATE),
        "steps-100-current": Group(x[44:48], 100, MODE_CURRENT),
        "steps-5-rate": Group(x[44:48], 5, MODE_RATE),
        "steps-max-current": Group(x[48:49], (1 << 16) - 1, MODE_CURRENT),
    }


def run_groups(sim_model: verilator.SimModel, net: model.Network, groups: dict[str, Group],
               **options) -> dict[str, Outcome]:
    """Run every group in one simulator process; golden per group."""
    images = np.concatenate([g.images for g in groups.values()])
    steps = np.concatenate([np.full(len(g.images), g.steps) for g in groups.values()])
    mode = np.concatenate([np.full(len(g.images), g.mode) for g in groups.values()])
    result = sim_model.run(images, steps, mode, **options)
    outcomes, start = {}, 0
    for name, g in groups.items():
        part = slice(start, start + len(g.images))
        start = part.stop
        sim = verilator.SimResult(*(field[part] for field in result[:5]), result.wall_s)
        outcomes[name] = Outcome(sim, model.run(g.images, net, g.steps, g.mode), g.steps,
                                 g.mode, g.images)
    return outcomes


@pytest.fixture(scope="session")
def groups(network) -> dict[str, Group]:
    net, manifest = network
    return make_groups(manifest, net)


@pytest.fixture(scope="session")
def outcomes(sim_model, network, groups) -> dict[str, Outcome]:
    return run_groups(sim_model, network[0], groups)


@pytest.fixture(scope="session")
def stressed(sim_model, network, groups) -> dict[str, Outcome]:
    picked = ("digits-current", "one-step-current", "one-step-rate", "steps-5-rate")
    subset = {name: groups[name] for name in picked}
    subset["digits-current"] = subset["digits-current"]._replace(
        images=subset["digits-current"].images[:10])
    return run_groups(sim_model, network[0], subset, stress_seed=STRESS_SEED)


def assert_bit_exact(outcome: Outcome) -> None:
    """Label, every score and the spike count equal golden's, image by image
    (:func:`golden.device.agreement`); on a difference, the first field and image that differ."""
    sim, golden = outcome.sim, outcome.golden
    agree = device.agreement(sim.label, sim.scores, sim.spike_count, golden)
    assert agree.shape == (len(outcome.images),)
    if agree.all():
        return
    expected = {"label": golden.classes[-1], "scores": golden.scores[-1],
                "spike_count": golden.spike_count}
    for name, want in expected.items():
        got = getattr(sim, name)
        if not np.array_equal(got, want):
            bad = np.flatnonzero((np.asarray(got) != want).reshape(len(want), -1).any(axis=1))
            k = int(bad[0])
            pytest.fail(f"{name} differs from golden on {bad.size} of {len(want)} images "
                        f"({MODE_NAMES[outcome.mode]} mode, {outcome.steps} steps); first, "
                        f"image {k}: simulated {got[k]!r}, golden {want[k]!r}")
    pytest.fail(f"device.agreement says {np.count_nonzero(~agree)} images differ")


@pytest.mark.parametrize("group", [
    "digits-current", "digits-rate",
    "blank-current", "full-current", "blank-rate", "full-rate",
    "one-step-current", "one-step-rate",
    "steps-100-current", "steps-5-rate", "steps-max-current",
])
def test_bit_exact_with_golden(outcomes, group):
    assert_bit_exact(outcomes[group])


def test_digits_are_mostly_classified_right(outcomes, groups):
    # Guards against a test batch that is trivially "equal" (e.g. all zero): the shipped image
    # classifies about 96 % of the test digits right.
    labels = load_split().y_test
    outcome = outcomes["digits-current"]
    assert np.mean(outcome.sim.label == labels[:len(outcome.sim.label)]) >= 0.8


@pytest.mark.parametrize("group", ["digits-current", "one-step-current", "one-step-rate",
                                   "steps-5-rate"])
def test_stream_stress_does_not_change_results(stressed, outcomes, group):
    """Backpressure on o, idle cycles and junk on i (steps/mode junk after the first pixel)."""
    assert_bit_exact(stressed[group])
    sim, calm = stressed[group].sim, outcomes[group].sim
    n = len(sim.label)
    for name in ("label", "scores", "spike_count"):
        assert np.array_equal(getattr(sim, name), getattr(calm, name)[:n]), name
    # Idle cycles on i between an image's pixels count towards its cycles; nothing else may.
    assert (sim.cycles >= calm.cycles[:n]).all()
    assert np.array_equal(sim.cycles - sim.latency, calm.cycles[:n] - calm.latency[:n])


def test_cycles_per_image(outcomes, network):
    """Cycles are reported, follow the geometry's timing model (``LifCore.expected_cycles``
    delegates to it), stay within its bound, and match the testbench."""
    net, manifest = network
    core = CoreGeometry.of(net, pixel_max=manifest["pixel_max"], lanes=LANES)
    for name, outcome in outcomes.items():
        cycles = outcome.sim.cycles
        print(f"{name:>18}: {MODE_NAMES[outcome.mode]:>7} mode, {outcome.steps:>5} steps, "
              f"cycles per image {sorted(set(cycles.tolist()))}")
        assert (cycles > 0).all(), name
        expected = [core.expected_cycles(px, outcome.steps, outcome.mode)
                    for px in outcome.images]
        assert cycles.tolist() == expected, name
        assert (cycles <= core.max_cycles(outcome.steps, outcome.mode)).all(), name
        # The core counts from its first pixel transfer, that cycle included; the testbench
        # measures edges from that transfer to o.valid. Same clock, so a fixed offset.
        offset = set((cycles - outcome.sim.latency).tolist())
        assert offset <= {0, 1} and len(offset) == 1, f"{name}: cycles - latency = {offset}"


def test_second_build_is_cached(sim_model, network):
    net, manifest = network
    again = verilator.build(net, manifest["pixel_max"], LANES)
    assert again.cached and again.build_dir == sim_model.build_dir
    assert again.build_s < 5


def test_run_rejects_inputs_the_core_cannot_take(sim_model):
    pixel_max = sim_model.meta["pixel_max"]
    good = np.zeros((1, sim_model.inputs), dtype=np.uint8)
    with pytest.raises(ValueError, match="pixels"):
        sim_model.run(good + pixel_max + 1, 1, MODE_CURRENT)
    with pytest.raises(ValueError, match="steps"):
        sim_model.run(good, 0, MODE_CURRENT)
    with pytest.raises(ValueError, match="mode"):
        sim_model.run(good, 1, 2)
    with pytest.raises(ValueError, match="shape"):
        sim_model.run(good[:, 1:], 1, MODE_RATE)


# --- a 784-input network: 8-bit pixels, 4-bit weights, signed shifts ------------------------

#: Where the MNIST IDX files are when the shared data folder is present.
#: The 784-input core: 80 neurons over 8 lanes (tests/test_core.py's random_784_net), 10
#: groups: its 7,840 weight words are banked, with the two extra INPUT stages.
MNIST_LANES = 8
#: Seeded subset of the MNIST test images, per mode.
MNIST_COUNTS = {MODE_CURRENT: 40, MODE_RATE: 6}


@pytest.fixture(scope="session")
def net_784() -> model.Network:
    from test_core import random_784_net  # tests/ is on sys.path (pytest's rootdir import)

    return random_784_net(np.random.default_rng(784))


@pytest.fixture(scope="session")
def sim_784(net_784) -> verilator.SimModel:
    try:
        return verilator.build(net_784, 255, MNIST_LANES)
    except verilator.ToolNotFoundError as e:
        pytest.skip(f"{e.tool} is not installed: {e}")


def mnist_test_subset() -> dict[int, np.ndarray] | None:
    """A seeded subset of the MNIST test images per mode, or None without the data folder."""
    if not MNIST_DIR.is_dir():
        return None
    x = load_split("mnist", MNIST_DIR).x_test
    picked = np.random.default_rng(2026).choice(len(x), sum(MNIST_COUNTS.values()),
                                                replace=False)
    n = MNIST_COUNTS[MODE_CURRENT]
    return {MODE_CURRENT: x[picked[:n]], MODE_RATE: x[picked[n:]]}


@pytest.fixture(scope="session")
def groups_784() -> dict[str, Group]:
    from test_core import mnist_like_images

    synthetic = mnist_like_images(np.random.default_rng(7), 6)
    groups = {
        "784-synthetic-current": Group(synthetic, 32, MODE_CURRENT),
        "784-synthetic-rate": Group(synthetic[:3], 6, MODE_RATE),
        "784-edges-rate": Group(synthetic[-2:], 2, MODE_RATE),  # blank and all 255
        "784-one-step-current": Group(synthetic[:2], 1, MODE_CURRENT),
    }
    mnist = mnist_test_subset()
    if mnist is not None:
        groups["784-mnist-current"] = Group(mnist[MODE_CURRENT], 32, MODE_CURRENT)
        groups["784-mnist-rate"] = Group(mnist[MODE_RATE], 8, MODE_RATE)
    return groups


@pytest.fixture(scope="session")
def outcomes_784(sim_784, net_784, groups_784) -> dict[str, Outcome]:
    return run_groups(sim_784, net_784, groups_784)


@pytest.mark.parametrize("group", ["784-synthetic-current", "784-synthetic-rate",
                                   "784-edges-rate", "784-one-step-current",
                                   "784-mnist-current", "784-mnist-rate"])
def test_784_inputs_bit_exact_with_golden(outcomes_784, net_784, group):
    if group.startswith("784-mnist") and group not in outcomes_784:
        pytest.skip(f"no MNIST data at {MNIST_DIR} (the shared data folder is absent)")
    outcome = outcomes_784[group]
    assert_bit_exact(outcome)
    geo = CoreGeometry.of(net_784, pixel_max=255, lanes=MNIST_LANES)
    cycles = outcome.sim.cycles
    expected = [geo.expected_cycles(px, outcome.steps, outcome.mode) for px in outcome.images]
    assert cycles.tolist() == expected
    print(f"{group}: {len(cycles)} images, {outcome.steps} steps, cycles per image mean "
          f"{cycles.mean():.0f}, min {cycles.min()}, max {cycles.max()}")


def test_784_core_has_banked_weights(net_784):
    geo = CoreGeometry.of(net_784, pixel_max=255, lanes=MNIST_LANES)
    assert (geo.groups, geo.weight_banks, geo.weight_stages) == (10, 4, 2)


def test_784_network_is_not_trivial(outcomes_784, net_784):
    # The comparison means something: 4-bit weights, mostly right shifts, neurons that spike
    # and labels that vary.
    assert net_784.w_bits == 4 and (net_784.w_shift < 0).mean() > 0.5
    outcome = outcomes_784["784-synthetic-current"]
    assert (outcome.sim.spike_count[:-2] > 0).all()
    labels = np.concatenate([o.sim.label for o in outcomes_784.values()])
    assert len(set(labels.tolist())) >= 3
