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
