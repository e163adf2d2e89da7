"""hw.engine exported to Verilog, on Verilator under cocotb, bit-exact against golden.layers.

Three small layered networks between them hold every neuron model (lif, alif, leaky with either
reset, adaptive leaky, the two non-spiking integrators), recurrent layers, and the three
readouts; each is built once (about 20 s of C++, cached under ``build/sim/verilator/``) and runs
one batch of images in both encoder modes, with the testbench's stress mode too. The answers
are compared with :func:`golden.device.agreement` (label, every score, the spike count) and the
cycles with the engine's timing model.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_engine import network

from golden import constants as c
from golden import device, layers
from hw.geometry import EngineGeometry
from sim import verilator

pytestmark = pytest.mark.slow

LANES = 4
NETWORKS = {
    "alif-rec/leaky-subtract-adaptive/li-lif": (
        ("alif+rec", "leaky-subtract-adaptive", "li-lif"), (12, 9, 3), c.READOUT_LI),
    "leaky-zero-rec/lif-spikes": (("leaky-zero+rec", "lif"), (10, 3), c.READOUT_SPIKES),
    "lif/leaky-subtract/psc + li-leaky": (("lif", "leaky-subtract"), (16, 8), c.READOUT_PSC),
    "leaky-zero/li-leaky": (("leaky-zero", "li-leaky"), (8, 3), c.READOUT_LI),
}


@pytest.fixture(scope="module", params=sorted(NETWORKS))
def built(request):
    kinds, sizes, readout = NETWORKS[request.param]
    rng = np.random.default_rng(sum(map(ord, request.param)))
    net = network(rng, kinds, sizes, readout=readout)
    try:
        model = verilator.build(net, 16, LANES)
    except verilator.ToolNotFoundError as e:
        pytest.skip(f"{e.tool} is not installed: {e}")
    images = rng.integers(0, 17, (8, net.inputs)) * (rng.random((8, net.inputs)) < 0.6)
    images[0] = 0
    images[1] = 16
    return request.param, net, model, images.astype(np.uint8)


@pytest.mark.parametrize("stress", [None, 7])
@pytest.mark.parametrize("mode", [c.MODE_CURRENT, c.MODE_RATE])
def test_engine_on_verilator_equals_golden(built, mode, stress):
    name, net, model, images = built
    steps = 6
    result = model.run(images, steps, mode, stress_seed=stress)
    golden = layers.run(images, net, steps, mode)
    agree = device.agreement(result.label, result.scores, result.spike_count, golden)
    assert agree.all(), (name, np.flatnonzero(~agree))
    assert golden.spike_count.sum() > 0
    if stress is None:
        geometry = EngineGeometry.of(net, pixel_max=16, lanes=LANES)
        assert result.cycles.tolist() == [geometry.expected_cycles(x, steps, mode)
                                          for x in images], name


@pytest.fixture(scope="module")
def shipped_mnist():
    """firmware/mnist-spikes (784-256-128-10, 16 lanes): its weights banked, its per-group ROMs
    (25 groups) chunked and its neuron memories held a cycle (``state_stages``), which the small
    networks above do not reach; a spiking output layer read by spike counts."""
    from firmware import IMAGES_DIR
    from golden import image

    net, manifest = image.load_layers(IMAGES_DIR / "mnist-spikes")
    try:
        model = verilator.build(net, manifest["pixel_max"], 16)
    except verilator.ToolNotFoundError as e:
        pytest.skip(f"{e.tool} is not installed: {e}")
    return net, manifest, model


@pytest.mark.parametrize("mode", [c.MODE_CURRENT, c.MODE_RATE])
def test_a_shipped_mnist_image_on_verilator_equals_golden(shipped_mnist, mode):
    from conftest import MNIST_DIR
    from test_core import mnist_like_images

    from golden.data import load_idx_split

    net, manifest, model = shipped_mnist
    geometry = EngineGeometry.of(net, pixel_max=manifest["pixel_max"], lanes=16)
    assert geometry.weight_banks > 1 and geometry.state_stages == 1 and geometry.groups > 16
    assert geometry.list_read_ahead and geometry.pixel_read_ahead  # the event source reads ahead
    images = mnist_like_images(np.random.default_rng(25 + mode), 3).astype(np.uint8)
    if MNIST_DIR.is_dir():  # real digits too where the shared data folder is
        images = np.concatenate([load_idx_split(MNIST_DIR).x_test[:6], images])
    steps = manifest["timesteps"] if mode == c.MODE_CURRENT else 8
    result = model.run(images, steps, mode)
    golden = layers.run(images, net, steps, mode)
    agree = device.agreement(result.label, result.scores, result.spike_count, golden)
    assert agree.all(), np.flatnonzero(~agree)
    assert len(set(golden.classes[-1].tolist())) > 1 and golden.spike_count.sum() > 0
    assert result.cycles.tolist() == [geometry.expected_cycles(x, steps, mode) for x in images]
