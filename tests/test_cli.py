"""firmware/cli.py (``lifpga``) against the reference board (sim/refboard.py)."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from firmware.cli import main, read_pgm
from golden import model
from golden.constants import MODE_BY_NAME, MODE_CURRENT, MODE_RATE
from golden.data import load_split

SHIPPED = Path(__file__).resolve().parent.parent / "firmware" / "digits"


@pytest.fixture(scope="module")
def split():
    return load_split()


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_info(refboard, capsys):
    code, out, err = run(capsys, "info", "--port", refboard.url, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["image_hash"] == refboard.manifest["hash"]
    assert (info["inputs"], info["classes"], info["default_mode"]) == (64, 10, "current")
    code, out, _ = run(capsys, "info", "--port", refboard.url)
    assert code == 0 and "pixel_max" in out and "16" in out


@pytest.mark.parametrize("mode", ["current", "rate"])
def test_classify_digits_json(refboard, split, capsys, mode):
    code, out, err = run(capsys, "classify", "--port", refboard.url, "--digits", 20,
                         "--steps", 16, "--mode", mode, "--json")
    assert code == 0, err
    report = json.loads(out)
    ref = model.run(split.x_test[:20], refboard.net, 16,
                    MODE_CURRENT if mode == "current" else MODE_RATE)
    assert report["predicted"] == ref.classes[-1].tolist()
    assert report["labels"] == split.y_test[:20].tolist()
    assert report["accuracy"] == np.mean(ref.classes[-1] == split.y_test[:20])
    assert (report["images"], report["steps"], report["mode"]) == (20, 16, mode)
    assert np.sum(report["confusion"]) == 20 and len(report["per_class"]) == 10


def test_classify_digits_text_and_confusion_png(refboard, capsys, tmp_path):
    png = tmp_path / "confusion.png"
    code, out, err = run(capsys, "classify", "--port", refboard.url, "--digits", 20,
                         "--steps", 8, "--confusion-png", png)
    assert code == 0, err
    assert "accuracy" in out and "precision" in out and "confusion" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_classify_npy_files(refboard, split, capsys, tmp_path):
    x = split.x_test[:3]
    np.save(tmp_path / "one.npy", x[0])
    np.save(tmp_path / "square.npy", x[1].reshape(8, 8))
    np.save(tmp_path / "batch.npy", x)
    code, out, err = run(capsys, "classify", "--port", refboard.url, "--steps", 16, "--json",
                         tmp_path / "one.npy", tmp_path / "square.npy", tmp_path / "batch.npy")
    assert code == 0, err
    rows = json.loads(out)
    ref = model.run(x, refboard.net, 16, MODE_CURRENT)
    assert [r["label"] for r in rows] == ref.classes[-1, [0, 1, 0, 1, 2]].tolist()
    assert rows[2]["file"].endswith("batch.npy[0]")
    assert rows[0]["scores"] == ref.scores[-1, 0].tolist()


def test_classify_png_and_pgm(refboard, split, capsys, tmp_path):
    from matplotlib.image import imsave

    x = split.x_test[0].reshape(8, 8)
    gray = x / 16.0  # pixel_max 16: scaling back to 0 .. 16 recovers x exactly
    imsave(tmp_path / "digit.png", gray, cmap="gray", vmin=0, vmax=1)
    imsave(tmp_path / "inverted.png", 1 - gray, cmap="gray", vmin=0, vmax=1)
    pgm = tmp_path / "digit.pgm"
    pgm.write_bytes(b"P5\n# a digit\n8 8\n16\n" + x.astype(np.uint8).tobytes())
    assert np.array_equal(read_pgm(pgm)[0], x)
    ref = model.run(x.reshape(1, 64), refboard.net, 16, MODE_CURRENT)
    for name, extra in [("digit.png", []), ("inverted.png", ["--invert"]), ("digit.pgm", [])]:
        code, out, err = run(capsys, "classify", "--port", refboard.url, "--steps", 16,
                             "--json", *extra, tmp_path / name)
        assert code == 0, err
        (row,) = json.loads(out)
        assert row["scores"] == ref.scores[-1, 0].tolist(), name


def test_missing_port(capsys):
    code, out, err = run(capsys, "info", "--port", "/dev/ttyNOPE")
    assert code == 1
    assert err.startswith("lifpga: error: cannot open port /dev/ttyNOPE")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(("content", "match"), [
    (None, "cannot read"),
    (b"not an npy file", "cannot read"),
    (np.zeros(63, np.uint8), "shape"),
    (np.full(64, 17, np.uint8), "0 .. 16"),
    (np.zeros(64), "integers"),
])
def test_bad_file(refboard, capsys, tmp_path, content, match):
    path = tmp_path / "bad.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        np.save(path, content)
    code, out, err = run(capsys, "classify", "--port", refboard.url, path)
    assert code == 2
    assert err.startswith("lifpga: error:") and match in err and err.count("\n") == 1


@pytest.mark.parametrize("argv", [
    [],
    ["bogus"],
    ["info"],
    ["classify", "--port", "loop://"],
    ["classify", "--port", "loop://", "--digits", "3", "x.npy"],
    ["classify", "--port", "loop://", "--digits", "0"],
    ["classify", "--port", "loop://", "--mode", "fast", "--digits", "3"],
])
def test_usage_errors(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert "error" in err and "Traceback" not in err


def test_loopback_echo_is_a_protocol_error(capsys):
    # loop:// echoes the request back: a frame without the response flag.
    code, out, err = run(capsys, "info", "--port", "loop://", "--timeout", "0.2", "--no-reset")
    assert code == 1 and err == "lifpga: error: response CMD 0x01 to INFO, expected 0x81\n"
    # With RESET, the echoed RESET is not its answer, and none comes.
    code, out, err = run(capsys, "info", "--port", "loop://", "--timeout", "0.2")
    assert code == 1 and "no complete response to RESET (seq 0) within 0.2 s" in err


def test_link_timeout_on_a_silent_port(capsys):
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel accepts the connection; nobody ever answers
        url = f"socket://127.0.0.1:{listener.getsockname()[1]}"
        code, out, err = run(capsys, "info", "--port", url, "--timeout", "0.2")
        assert code == 1 and "no complete response to RESET (seq 0) within 0.2 s" in err
        code, out, err = run(capsys, "info", "--port", url, "--timeout", "0.2", "--no-reset")
    assert code == 1 and "no complete response to INFO (seq 0) within 0.2 s" in err
    assert err.count("\n") == 1 and "the device did not answer" in err


@pytest.mark.parametrize(("option", "match"), [
    (["--window", "0"], "--window must lie in 1 .. 128"),
    (["--window", "129"], "--window must lie in 1 .. 128"),
    (["--steps", "70000"], "--steps must lie in 0 .. 65535"),
    (["--steps", "-1"], "--steps must lie in 0 .. 65535"),
])
def test_out_of_range_options_are_usage_errors(refboard, capsys, option, match):
    code, out, err = run(capsys, "classify", "--port", refboard.url, "--digits", 3, *option)
    assert code == 2, err
    assert err.startswith("lifpga: error:") and match in err and err.count("\n") == 1


def test_parameter_error_from_the_driver_is_a_usage_error(refboard, capsys, monkeypatch):
    import firmware.cli as cli

    monkeypatch.setattr(cli, "MAX_STEPS", 1 << 20)  # let the driver's own check catch it
    code, out, err = run(capsys, "classify", "--port", refboard.url, "--digits", 3,
                         "--steps", 70000)
    assert code == 2 and "steps must lie in 0 .. 65535" in err


def test_too_many_digits(refboard, split, capsys):
    code, out, err = run(capsys, "classify", "--port", refboard.url, "--digits", 1000)
    assert code == 2 and out == ""
    assert f"the {len(split.x_test)} images of the test split" in err and "1000" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("maxval", [b"0", b"65536"])
def test_pgm_maxval_out_of_range(refboard, capsys, tmp_path, maxval):
    pgm = tmp_path / "bad.pgm"
    pgm.write_bytes(b"P5\n8 8\n" + maxval + b"\n" + bytes(64 * (2 if maxval != b"0" else 1)))
    with pytest.raises(ValueError, match="maxval must lie in 1 .. 65535"):
        read_pgm(pgm)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from dividing by 0
        code, out, err = run(capsys, "classify", "--port", refboard.url, pgm)
    assert code == 2
    assert err == f"lifpga: error: cannot read {pgm}: PGM maxval must lie in 1 .. 65535, " \
                  f"got {int(maxval)}\n"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_golden_check_passes_on_an_honest_board(refboard, capsys, fmt):
    code, out, err = run(capsys, "classify", "--port", refboard.url, "--digits", 12,
                         "--steps", 8, "--mode", "rate", "--golden", SHIPPED,
                         *(["--json"] if fmt == "json" else []))
    assert code == 0, err
    if fmt == "json":
        assert json.loads(out)["golden_equal"] == [True] * 12
    else:
        assert "golden: 12/12 answers equal the golden model bit for bit" in out


def test_golden_check_catches_a_board_that_differs(capsys, tmp_path):
    """A device reporting the shipped image's hash but computing something else (here: one
    class's decoder bias off by one) fails the check, with exit status 1."""
    from sim.refboard import RefBoard

    board = RefBoard(SHIPPED)
    board.net = board.net._replace(dec_bias=board.net.dec_bias + np.eye(10, dtype=int)[3])
    board.start()
    try:
        np.save(tmp_path / "x.npy", load_split().x_test[:4])
        code, out, err = run(capsys, "classify", "--port", board.url, "--steps", 8,
                             "--golden", SHIPPED, tmp_path / "x.npy")
    finally:
        board.stop()
    assert code == 1
    assert "golden: 0/4 answers equal" in out and "differ from the golden model" in err


def test_golden_check_refuses_another_image(refboard, capsys, tmp_path):
    from golden import image

    net, manifest = image.load(SHIPPED)
    other = tmp_path / "other"
    image.save(other, net._replace(dec_bias=net.dec_bias + 1), manifest["timesteps"],
               MODE_BY_NAME[manifest["encoder_mode"]], manifest["pixel_max"],
               manifest["metadata"])
    code, _, err = run(capsys, "classify", "--port", refboard.url, "--digits", 2,
                       "--golden", other)
    assert code == 2 and "--golden" in err and "the device runs" in err
