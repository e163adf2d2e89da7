# amaranth: UnusedElaboratable=no
"""hw/neuron.py against golden.model, input for input (Amaranth simulator, one case per cycle)."""

import numpy as np
import pytest

from golden import constants as c
from golden import model, neurons
from golden.neurons import NeuronParams
from hw.neuron import LANE_LATENCY, CurrentLane, LaneConfig, NeuronLane
from sim.streams import simulate


def run_pipelined(dut, cases, inputs, outputs):
    """Apply one case (dict of input values) per cycle, back to back, and collect each case's
    outputs the lane's latency (``LANE_LATENCY`` for the current lane) cycles later."""
    results = []
    latency = getattr(dut, "latency", LANE_LATENCY)

    async def tb(ctx):
        for n in range(len(cases) + latency):
            if n < len(cases):
                for name in inputs:
                    ctx.set(getattr(dut, name), int(cases[n][name]))
            if n >= latency:
                results.append({name: ctx.get(getattr(dut, name)) for name in outputs})
            await ctx.tick()

    simulate(dut, tb)  # the lanes have no stream ports: just the clock and the testbench
    return results


def golden_net(leak_shift=4, psc_shift=5, ref_steps=2, v_th=1024):
    z = np.zeros((1, 1), dtype=np.int64)
    return model.Network(z, z[0], z[0], np.array([v_th]), z, z[0], leak_shift, psc_shift,
                         ref_steps, 4, c.LFSR_SEED_DEFAULT)


def current_lane_cases(acc_bits, rng):
    """Known-answer edges (both ends of acc, bias and the shift, the shifts around 0, sums
    of -1 and +-2**k at right shifts) and random cases over the whole shift range."""
    a_lo, a_hi = c.signed_range(acc_bits)
    b_lo, b_hi = c.signed_range(c.B_BITS)
    shifts = (c.W_SHIFT_MIN, -15, -8, -1, 0, 1, 14, c.W_SHIFT_MAX)
    cases = [{"acc": a, "bias": b, "shift": s}
             for a in (a_lo, a_hi, 0, -1, 1) for b in (b_lo, b_hi, 0, -1) for s in shifts]
    # Floor of negative sums: -1 stays -1 at every right shift, -(2**k) - 1 >> k = -2.
    cases += [{"acc": -1, "bias": -(2**k), "shift": -k} for k in range(1, 17)]
    cases += [{"acc": 1, "bias": 2**k - 2, "shift": -k} for k in range(1, 17)]
    # Saturation edges at the largest right shift: (2**31 - 1) >> 16 = I_MAX exactly.
    cases += [{"acc": d, "bias": b_hi, "shift": c.W_SHIFT_MIN} for d in (-(2**16), 0, 1)]
    cases += [{"acc": d, "bias": b_lo, "shift": c.W_SHIFT_MIN} for d in (-1, 0, 2**16)]
    cases += [{"acc": int(rng.integers(a_lo, a_hi + 1)), "bias": int(rng.integers(-(2**22), 2**22)),
               "shift": int(rng.integers(c.W_SHIFT_MIN, c.W_SHIFT_MAX + 1))}
              for _ in range(300)]
    cases += [{"acc": int(rng.integers(-3000, 3000)), "bias": int(rng.integers(-5000, 5000)),
               "shift": int(rng.integers(-6, 6))} for _ in range(300)]
    return cases


@pytest.mark.parametrize("acc_bits", [19, 27])
def test_current_lane_random_and_extremes(acc_bits):
    # 19 bits: the digits' W.x; 27: 784 inputs, 8-bit weights, 9-bit x. The lane takes
    # total = W.x + bias, max(acc_bits, B_BITS) + 1 = 33 bits (the core's accumulator).
    dut = CurrentLane(max(acc_bits, c.B_BITS) + 1)
    cases = current_lane_cases(acc_bits, np.random.default_rng(acc_bits))
    for case in cases:
        case["total"] = case["acc"] + case["bias"]
    got = run_pipelined(dut, cases, ("total", "shift"), ("current",))
    for case, out in zip(cases, got, strict=True):
        net = model.Network(np.ones((1, 1), dtype=np.int64), np.array([case["shift"]]),
                            np.array([case["bias"]]), np.array([1]), np.zeros((1, 1), np.int64),
                            np.zeros(1, np.int64), 4, 5, 2, 4, 1)
        # acc enters golden through W = 1 and x = acc.
        expected = model.input_current(np.array([[case["acc"]]]), net)[0, 0]
        assert out["current"] == expected, case
    currents = [out["current"] for out in got]
    assert c.I_MIN in currents and c.I_MAX in currents
    assert sum(c.I_MIN < i < c.I_MAX for i in currents) > 300  # most are not saturated


@pytest.mark.parametrize("total_bits", [16, 20, 33, 40])
def test_current_lane_every_shift_at_the_saturation_edges(total_bits):
    # For every shift, the totals whose shifted value is just inside and just outside
    # I_MIN .. I_MAX (where the fit test decides), and the ends of the total's width.
    dut = CurrentLane(total_bits)
    t_lo, t_hi = c.signed_range(total_bits)
    cases = []
    for s in range(c.W_SHIFT_MIN, c.W_SHIFT_MAX + 1):
        edges = [t_lo, t_hi, 0, -1, 1]
        for bound in (c.I_MAX + 1, c.I_MIN):
            edge = bound * 2**-s if s < 0 else -(-bound // 2**s)  # smallest t, shift(t) >= bound
            edges += [edge - 2, edge - 1, edge, edge + 1]
        cases += [{"total": t, "shift": s} for t in edges if t_lo <= t <= t_hi]
    got = run_pipelined(dut, cases, ("total", "shift"), ("current",))
    for case, out in zip(cases, got, strict=True):
        value = int(model.shift(case["total"], case["shift"]))
        assert out["current"] == min(max(value, c.I_MIN), c.I_MAX), case


@pytest.mark.parametrize(("leak_shift", "psc_shift", "ref_steps"),
                         [(4, 5, 2), (0, 1, 0), (14, 12, 7), (1, 3, 1)])
def test_neuron_lane_equals_golden(leak_shift, psc_shift, ref_steps):
    dut = NeuronLane(leak_shift=leak_shift, psc_shift=psc_shift, ref_steps=ref_steps)
    rng = np.random.default_rng(leak_shift * 31 + psc_shift)
    edges_i = (c.I_MIN, c.I_MAX, 0, -1, 1023, 1024, 1025)
    edges_v = (0, 1, 1023, 1024, c.I_MAX)
    cases = [{"current": i, "v": v, "ref": r, "psc": p, "v_th": th}
             for i in edges_i for v in edges_v for r in sorted({0, 1, ref_steps})
             for p in (0, 1, c.PSC_ONE - 1) for th in (1, 1024, (1 << c.V_TH_BITS) - 1)]
    cases += [{"current": int(rng.integers(c.I_MIN, c.I_MAX + 1)),
               "v": int(rng.integers(0, c.I_MAX + 1)), "ref": int(rng.integers(0, ref_steps + 1)),
               "psc": int(rng.integers(0, c.PSC_ONE)), "v_th": int(rng.integers(1, 4096))}
              for _ in range(400)]
    got = run_pipelined(dut, cases, ("current", "v", "ref", "psc", "v_th"),
                   ("v_next", "ref_next", "psc_next", "spike"))
    for case, out in zip(cases, got, strict=True):
        net = golden_net(leak_shift, psc_shift, ref_steps, case["v_th"])
        s, v, ref = model.lif_step(np.array([[case["current"]]]), np.array([[case["v"]]]),
                                   np.array([[case["ref"]]]), net)
        psc = model.psc_step(np.array([[case["psc"]]]), s, psc_shift)
        assert (out["spike"], out["v_next"], out["ref_next"], out["psc_next"]) == (
            int(s[0, 0]), int(v[0, 0]), int(ref[0, 0]), int(psc[0, 0])), case


# --- every neuron model of golden.neurons ----------------------------------------------------

LANES = {
    "lif-psc": LaneConfig(c.NEURON_LIF, 4, 2, psc_shift=5),
    "lif": LaneConfig(c.NEURON_LIF, 0, 0),
    "alif": LaneConfig(c.NEURON_LIF, 3, 1, adapt_step=300, adapt_shift=4),
    "alif-psc": LaneConfig(c.NEURON_LIF, 14, 7, adapt_step=1, adapt_shift=15, psc_shift=12),
    "leaky-zero": LaneConfig(c.NEURON_LEAKY, reset=c.RESET_ZERO),
    "leaky-subtract-psc": LaneConfig(c.NEURON_LEAKY, reset=c.RESET_SUBTRACT, psc_shift=1),
    "leaky-subtract-adaptive": LaneConfig(c.NEURON_LEAKY, reset=c.RESET_SUBTRACT,
                                          adapt_step=2000, adapt_shift=5),
    "leaky-zero-adaptive": LaneConfig(c.NEURON_LEAKY, adapt_step=(1 << 15) - 1, adapt_shift=1),
    "li-lif": LaneConfig(c.NEURON_LIF, 2, spiking=False),
    "li-lif-0": LaneConfig(c.NEURON_LIF, 0, spiking=False),
    "li-leaky": LaneConfig(c.NEURON_LEAKY, spiking=False),
}


def lane_cases(cfg: LaneConfig, rng, count: int = 500) -> list[dict]:
    """Edges of every input, then random cases over the ranges the states can reach."""
    lif_spiking = cfg.model == c.NEURON_LIF and cfg.spiking
    v_lo = 0 if lif_spiking else c.V_MIN
    a_max = cfg.adapt_step << cfg.adapt_shift
    edges = {"current": (c.I_MIN, c.I_MAX, 0, -1, 1024), "v": (v_lo, c.V_MAX, 0, 1, 1024),
             "v_th": (1, 1024, (1 << c.V_TH_BITS) - 1), "beta": (0, 1, 2048, 4095),
             "ref": (0, cfg.ref_steps), "a": (0, a_max), "s_prev": (0, 1),
             "psc": (0, c.PSC_ONE - 1)}
    cases = [{name: values[k % len(values)] for name, values in edges.items()}
             for k in range(40)]
    cases += [{name: values[int(rng.integers(len(values)))] for name, values in edges.items()}
              for _ in range(200)]
    cases += [{"current": int(rng.integers(c.I_MIN, c.I_MAX + 1)),
               "v": int(rng.integers(v_lo, c.V_MAX + 1)),
               "v_th": int(rng.integers(1, 1 << c.V_TH_BITS)),
               "beta": int(rng.integers(0, 1 << c.BETA_FRAC)),
               "ref": int(rng.integers(0, cfg.ref_steps + 1)),
               "a": int(rng.integers(0, a_max + 1)), "s_prev": int(rng.integers(2)),
               "psc": int(rng.integers(0, c.PSC_ONE))} for _ in range(count)]
    return cases


def golden_lane(cfg: LaneConfig, cases: list[dict]) -> dict[str, np.ndarray]:
    """golden.neurons.step (and golden.model.psc_step) of every case, as one layer."""
    col = {name: np.array([case[name] for case in cases], dtype=np.int64) for name in cases[0]}
    params = NeuronParams(col["v_th"] if cfg.spiking else None, cfg.model, cfg.leak_shift,
                          cfg.ref_steps, col["beta"] if cfg.model == c.NEURON_LEAKY else None,
                          cfg.reset, cfg.adapt_step, cfg.adapt_shift, cfg.spiking)
    state = neurons.NeuronState(col["v"][None], col["ref"][None], col["a"][None],
                                col["s_prev"][None].astype(bool))
    spikes, new = neurons.step(col["current"][None], state, params)
    out = {"spike": spikes[0].astype(np.int64), "v_next": new.v[0], "ref_next": new.ref[0],
           "a_next": new.a[0]}
    if cfg.has_psc:
        out["psc_next"] = model.psc_step(col["psc"][None], spikes, cfg.psc_shift)[0]
    return out


@pytest.mark.parametrize("name", sorted(LANES))
def test_every_lane_equals_golden_neurons(name):
    cfg = LANES[name]
    dut = NeuronLane(cfg)
    assert dut.latency == (2 if cfg.model == c.NEURON_LEAKY else 1)
    cases = lane_cases(cfg, np.random.default_rng(sum(map(ord, name))))
    inputs = [port for port in ("current", "v", "v_th", "beta", "ref", "a", "s_prev", "psc")
              if hasattr(dut, port)]
    outputs = [port for port in ("v_next", "ref_next", "a_next", "psc_next", "spike")
               if hasattr(dut, port)]
    got = run_pipelined(dut, cases, inputs, outputs)
    want = golden_lane(cfg, cases)
    for port in outputs:
        assert [out[port] for out in got] == want[port].tolist(), (name, port)
    spikes = want["spike"]
    if cfg.spiking:  # the cases cover both outcomes
        assert 0 < spikes.sum() < len(spikes)
    if cfg.model == c.NEURON_LEAKY:  # and the membrane's saturation at both ends
        assert c.V_MIN in want["v_next"] and c.V_MAX in want["v_next"]


def test_lane_ports_follow_the_model():
    assert not hasattr(NeuronLane(LANES["li-lif"]), "v_th")
    assert not hasattr(NeuronLane(LANES["lif"]), "psc")
    assert hasattr(NeuronLane(LANES["alif"]), "a_next")
    assert hasattr(NeuronLane(LANES["leaky-zero"]), "s_prev")
    assert not hasattr(NeuronLane(LANES["leaky-zero"]), "ref")
    with pytest.raises(TypeError):
        NeuronLane(leak_shift=1, psc_shift=1, ref_steps=1, beta=3)
