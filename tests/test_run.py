"""sim/run.py, `make sim`'s command line: end to end on a few digits (table, report fields,
exit codes), its usage errors, and that its figures come from the shared definitions."""

import json

import numpy as np
import pytest
from conftest import MNIST_DIR

from golden import device, image, model, protocol
from golden.data import load_split
from sim import run


@pytest.mark.parametrize("via", ["board", "core"])
def test_make_sim_on_a_few_digits(tmp_path, capsys, via, shipped_dir):
    # Same designs as tests/test_core_verilator.py and tests/test_board.py (shipped image, 16
    # lanes): the models are reused.
    # Through the board, two boards share the images out: their answers come back in order.
    jobs = ["--jobs", "2"] if via == "board" else []
    code = run.main(["--image", str(shipped_dir), "--limit", "6", "--steps", "8",
                     "--out", str(tmp_path), "--via", via, *jobs])
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
    # Per-class figures of the hardware's answers, and the drawn confusion matrix.
    for mode in ("current", "rate"):
        entry = report["modes"][mode]
        labels = load_split("digits").y_test[:6]
        assert np.sum(entry["confusion"]) == 6 and len(entry["per_class"]) == 10
        support = [r["support"] for r in entry["per_class"]]
        assert support == np.bincount(labels, minlength=10).tolist()
        assert np.trace(entry["confusion"]) == round(entry["accuracy"] * 6)
        assert (tmp_path / f"confusion-{mode}.png").read_bytes()[:4] == b"\x89PNG"
    assert "confusion (rows: true, columns: predicted)" in out
    if via == "board":
        assert report["modes"]["rate"]["cycles_agreement"] == 1.0
        assert report["modes"]["rate"]["jobs"] == 2
    # The link figures of docs/PROTOCOL.md: 75 bytes out, 58 back, at 3 Mbaud.
    dense = {k: v for k, v in report["link"].items() if k != "auto"}
    assert dense == {"baud": 3_000_000, "request_bytes": 75, "response_bytes": 58,
                     "images_per_s_one_at_a_time": 2255.6, "images_per_s_pipelined": 4000.0}
    assert "4,000 pipelined" in out
    # And what the driver sends by default, over every test image (not only the 6 run).
    net, _ = image.load(shipped_dir)
    assert report["link"] == run.link_figures(net, images=load_split("digits").x_test)
    assert run.link_line(report["link"]) in out


def test_make_sim_on_the_shipped_mnist_image(tmp_path, capsys):
    """``make sim DATASET=mnist DATA=DIR`` on its first test images: the 784-512-10 image on the
    virtual board (its own build), bit-exact in both modes, cycles as the timing model says."""
    from firmware import MNIST_IMAGE

    if not MNIST_DIR.is_dir():
        pytest.skip(f"no MNIST data at {MNIST_DIR} (the shared data folder is absent)")
    code = run.main(["--image", str(MNIST_IMAGE), "--data", str(MNIST_DIR), "--limit", "6",
                     "--steps", "4", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["dataset"] == "mnist" and report["images"] == 6 and report["neurons"] == 512
    for entry in report["modes"].values():
        assert entry["agreement"] == entry["cycles_agreement"] == 1.0
    assert report["link"]["request_bytes"] == 795


def test_idx_image_without_data_is_a_clear_error(tmp_path, capsys):
    from firmware import MNIST_IMAGE

    code = run.main(["--image", str(MNIST_IMAGE), "--out", str(tmp_path)])
    assert code == 2
    assert "is read from IDX files" in capsys.readouterr().err
    code = run.main(["--image", str(MNIST_IMAGE), "--data", str(tmp_path / "none"),
                     "--out", str(tmp_path)])
    assert code == 2
    assert str(tmp_path / "none") in capsys.readouterr().err


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


def test_link_figures_of_the_default_encoding(shipped):
    """make sim's link figures include golden.protocol.link_figures' for "auto", mean and
    worst, in its report and its printed line."""
    net, _ = shipped
    x = load_split("digits").x_test
    auto = protocol.link_figures(x, net.classes, 3_000_000, "auto")
    figures = run.link_figures(net, 3_000_000, images=x)
    assert figures["auto"] == {
        "images": len(x), "request_bytes_mean": round(auto.request_bytes_mean, 1),
        "request_bytes_max": auto.request_bytes_max,
        "images_per_s_one_at_a_time_mean": round(auto.images_per_s_serial_mean, 1),
        "images_per_s_one_at_a_time_worst": round(auto.images_per_s_serial_worst, 1),
        "images_per_s_pipelined_mean": round(auto.images_per_s_pipelined_mean, 1),
        "images_per_s_pipelined_worst": round(auto.images_per_s_pipelined_worst, 1)}
    assert auto.request_bytes_mean < 75 and auto.request_bytes_max <= 75
    line = run.link_line(figures)
    assert line.startswith(run.link_line(run.link_figures(net, 3_000_000)))
    assert (f"{auto.request_bytes_max} at most; {auto.images_per_s_pipelined_mean:,.0f} "
            f"images/s pipelined ({auto.images_per_s_pipelined_worst:,.0f} for the worst "
            "image)") in line


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


class _RefBoardModel:
    """A stand-in for :class:`sim.board.BoardModel` serving the reference device (no
    Verilator): ``start()`` gives a context with ``url``; the ``fail``-th board started
    refuses to start."""

    def __init__(self, image_dir, fail: int | None = None):
        self.image_dir, self.fail, self.started = image_dir, fail, 0

    def start(self):
        import contextlib

        from sim.refboard import RefBoard

        number, self.started = self.started, self.started + 1

        @contextlib.contextmanager
        def running():
            if number == self.fail:
                raise run.board.BoardError("board refused to start (test)")
            with RefBoard(self.image_dir) as url:
                yield type("Running", (), {"url": url})()

        return running()


@pytest.mark.parametrize("jobs", [1, 2, 3, 50])
def test_board_answers_come_back_in_order_from_every_share(shipped_dir, shipped, jobs):
    x = load_split("digits").x_test[:7]
    seen = []
    answers = run.board_answers(_RefBoardModel(shipped_dir), x, 4, 0, jobs, seen.append)
    golden = model.run(x, shipped[0], 4, 0)
    assert [a.label for a in answers] == golden.classes[-1].tolist()
    assert [list(a.scores) for a in answers] == golden.scores[-1].tolist()
    assert sorted(seen) == list(range(1, 8))
    assert run.board_answers(_RefBoardModel(shipped_dir), x[:0], 4, 0, jobs) == []


def test_a_failing_board_stops_the_others(shipped_dir):
    # Board 1 of 2 fails at once; board 0, with 300 images to go, stops at its next answer.
    x = np.repeat(load_split("digits").x_test[:1], 600, axis=0)
    seen = []
    with pytest.raises(run.board.BoardError, match="refused to start"):
        run.board_answers(_RefBoardModel(shipped_dir, fail=1), x, 64, 1, 2, seen.append)
    assert len(seen) < 300
