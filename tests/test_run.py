"""sim/run.py, `make sim`'s command line: end to end on a few digits (table, report fields,
exit codes), its usage errors, and that its figures come from the shared definitions."""

import json

import numpy as np
import pytest

from golden import device, model, protocol
from sim import run


@pytest.mark.parametrize("via", ["board", "core"])
def test_make_sim_on_a_few_digits(tmp_path, capsys, via, shipped_dir):
    # Same designs as tests/test_core_verilator.py and tests/test_board.py (shipped image, 16
    # lanes): the models are reused.
    code = run.main(["--image", str(shipped_dir), "--limit", "6", "--steps", "8",
                     "--out", str(tmp_path), "--via", via])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "agreement" in out and "current" in out and "rate" in out
    report = json.loads((tmp_path / "report.json").read_text())
    for key in ("dataset", "images", "timesteps", "accuracy", "golden_accuracy", "agreement",
                "cycles_per_image", "lanes", "neurons", "wall_s"):
        assert key in report, key
    assert report["images"] == 6 and report["timesteps"] == 8
    assert report["agreement"] == 1.0 and report["lanes"] == 16 and report["neurons"] == 256
    assert set(report["modes"]) == {"current", "rate"}
    assert report["modes"]["rate"]["agreement"] == 1.0
    assert report["via"] == via
    if via == "board":
        assert report["modes"]["rate"]["cycles_agreement"] == 1.0
    # The link figures of docs/PROTOCOL.md: 75 bytes out, 58 back, at 3 Mbaud.
    assert report["link"] == {"baud": 3_000_000, "request_bytes": 75, "response_bytes": 58,
                              "images_per_s_one_at_a_time": 2255.6,
                              "images_per_s_pipelined": 4000.0}
    assert "4,000 pipelined" in out


def test_bad_image_is_a_clear_error(tmp_path, capsys):
    code = run.main(["--image", str(tmp_path / "missing"), "--out", str(tmp_path)])
    assert code != 0
    assert "no such network image" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--lanes", "0"], ["--lanes", "-16"], ["--limit", "0"],
                                    ["--steps", "0"], ["--steps", "-1"], ["--steps", "65536"],
                                    ["--lanes", "two"]])
def test_zero_or_negative_options_are_usage_errors(tmp_path, capsys, option):
    with pytest.raises(SystemExit) as info:
        run.main([*option, "--out", str(tmp_path)])
    assert info.value.code == 2
    assert f"argument {option[0]}" in capsys.readouterr().err


def test_link_figures_are_protocol_link_rate(shipped):
    net, _ = shipped
    for baud in (115_200, 3_000_000):
        rate = protocol.link_rate(net.inputs, net.classes, baud)
        figures = run.link_figures(net, baud)
        assert figures["images_per_s_pipelined"] == round(rate.images_per_s_pipelined, 1)
        assert figures["images_per_s_one_at_a_time"] == round(rate.images_per_s_serial, 1)
        assert (figures["request_bytes"], figures["response_bytes"]) == (
            rate.request_bytes, rate.answer_bytes)


def test_agreement_is_the_golden_comparison(shipped):
    """A spike count that differs alone makes an image disagree (device.agreement)."""
    from sim.verilator import SimResult

    net, _ = shipped
    x = np.zeros((2, net.inputs), np.int64)
    x[1, :10] = 16
    golden = model.run(x, net, 4, 0)
    spikes = golden.spike_count.copy()
    spikes[1] += 1
    sim = SimResult(golden.classes[-1], golden.scores[-1], spikes, spikes, spikes, 0.0)
    assert run.sim_agreement(sim, golden).tolist() == [True, False]
    assert run.sim_agreement(sim, golden).tolist() == device.agreement(
        sim.label, sim.scores, sim.spike_count, golden).tolist()
