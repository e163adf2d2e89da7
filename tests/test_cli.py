"""firmware/cli.py (``lifpga``) against the reference board (sim/refboard.py)."""

import json
import socket
import warnings

import numpy as np
import pytest

from firmware.cli import main, read_pgm
from golden import layers
from golden.constants import MODE_BY_NAME, MODE_CURRENT, MODE_RATE
from golden.data import load_split
from sim.board import BUSY_LINE  # what the virtual board tells a second client


@pytest.fixture(scope="module")
def split():
    return load_split()


class DeviceTransport:
    """A byte transport with a reference device behind it, for the driver's ``_open_url``."""

    def __init__(self, device):
        self.device, self.arrived = device, b""

    def write(self, data):
        self.arrived += self.device.receive(data)

    def read(self, size=1):
        out, self.arrived = self.arrived[:size], self.arrived[size:]
        return out

    def reset_input_buffer(self):
        self.arrived = b""

    def close(self):
        pass


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
    ref = layers.run(split.x_test[:20], refboard.net, 16,
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
    ref = layers.run(x, refboard.net, 16, MODE_CURRENT)
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
    ref = layers.run(x.reshape(1, 64), refboard.net, 16, MODE_CURRENT)
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
def test_golden_check_passes_on_an_honest_board(refboard, capsys, fmt, shipped_dir):
    code, out, err = run(capsys, "classify", "--port", refboard.url, "--digits", 12,
                         "--steps", 8, "--mode", "rate", "--golden", shipped_dir,
                         *(["--json"] if fmt == "json" else []))
    assert code == 0, err
    if fmt == "json":
        assert json.loads(out)["golden_equal"] == [True] * 12
    else:
        assert "golden: 12/12 answers equal the golden model bit for bit" in out


def test_golden_check_catches_a_board_that_differs(capsys, tmp_path, shipped_dir):
    """A device reporting the shipped image's hash but computing something else (here: one
    class's decoder bias off by one) fails the check, with exit status 1."""
    from sim.refboard import RefBoard

    board = RefBoard(shipped_dir)
    decoder = board.net.decoder
    board.net = board.net._replace(decoder=decoder._replace(
        dec_bias=decoder.dec_bias + np.eye(10, dtype=int)[3]))
    board.start()
    try:
        np.save(tmp_path / "x.npy", load_split().x_test[:4])
        code, out, err = run(capsys, "classify", "--port", board.url, "--steps", 8,
                             "--golden", shipped_dir, tmp_path / "x.npy")
    finally:
        board.stop()
    assert code == 1
    assert "golden: 0/4 answers equal" in out and "differ from the golden model" in err


def test_golden_check_refuses_another_image(refboard, capsys, tmp_path, shipped):
    from golden import image

    net, manifest = shipped
    other = tmp_path / "other"
    image.save(other, net._replace(dec_bias=net.dec_bias + 1), manifest["timesteps"],
               MODE_BY_NAME[manifest["encoder_mode"]], manifest["pixel_max"],
               manifest["metadata"])
    code, _, err = run(capsys, "classify", "--port", refboard.url, "--digits", 2,
                       "--golden", other)
    assert code == 2 and "--golden" in err and "the device runs" in err


# --- inputs checked before the port is opened (defect 3) -----------------------------------------


def write_bad_input(path, kind):
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("0 0 7 14 11 1 0 0\n")
    elif kind == "no images":
        np.save(path, np.zeros((0, 64), np.uint8))
    elif kind == "directory":
        path.mkdir()
    elif kind == "corrupt png":
        path.write_bytes(b"\x89PNG\r\n\x1a\n garbage")


@pytest.mark.parametrize(("name", "kind", "match"), [
    ("empty.npy", "empty", "the file is empty"),
    ("text.npy", "text", "not a NumPy .npy file"),
    ("none.npy", "no images", "shape (0, 64) holds no images"),
    ("missing.npy", "missing", "no such file"),
    ("folder.npy", "directory", "it is a directory"),
    ("bad.png", "corrupt png", "cannot read"),
    ("image.jpg", "empty", "unknown image type '.jpg'"),
])
def test_bad_input_files(refboard, capsys, tmp_path, name, kind, match):
    path = tmp_path / name
    write_bad_input(path, kind)
    code, out, err = run(capsys, "classify", "--port", refboard.url, path)
    assert (code, out) == (2, "")
    assert err.startswith("lifpga: error:") and match in err and err.count("\n") == 1
    assert "Traceback" not in err and "pickle" not in err


@pytest.mark.parametrize("kind", ["empty", "text", "no images", "missing"])
def test_input_files_are_checked_before_the_port_is_opened(capsys, tmp_path, kind):
    """The port does not exist: the file's error, not the port's, is reported (connecting
    would send RESET, abandoning what the board computes, for a file that holds nothing)."""
    path = tmp_path / "x.npy"
    write_bad_input(path, kind)
    code, out, err = run(capsys, "classify", "--port", "/dev/ttyNOPE", path)
    assert code == 2 and "x.npy" in err and "ttyNOPE" not in err


def test_golden_dir_is_checked_before_the_port_is_opened(capsys, tmp_path):
    code, out, err = run(capsys, "classify", "--port", "/dev/ttyNOPE", "--digits", 2,
                         "--golden", tmp_path / "nowhere")
    assert code == 2 and err.startswith("lifpga: error: --golden:") and "ttyNOPE" not in err


def test_png_with_alpha_and_colour(refboard, split, capsys, tmp_path):
    """Alpha is dropped and colour channels averaged: a gray RGBA or RGB image classifies as
    its grayscale version."""
    from matplotlib.image import imsave

    x = split.x_test[0].reshape(8, 8)
    gray = x / 16.0
    rgba = np.dstack([gray, gray, gray, np.full((8, 8), 0.5)])
    imsave(tmp_path / "rgba.png", rgba)
    imsave(tmp_path / "rgb.png", rgba[..., :3])
    ref = layers.run(x.reshape(1, 64), refboard.net, 16, MODE_CURRENT)
    code, out, err = run(capsys, "classify", "--port", refboard.url, "--steps", 16, "--json",
                         tmp_path / "rgba.png", tmp_path / "rgb.png")
    assert code == 0, err
    assert [r["scores"] for r in json.loads(out)] == [ref.scores[-1, 0].tolist()] * 2


@pytest.mark.parametrize(("port", "match"), [
    ("socket://127.0.0.1", "needs a TCP port number"),
    ("socket://127.0.0.1:abc", "needs a TCP port number"),
    ("socket://:4000", "socket://HOST:PORT"),
])
def test_malformed_socket_urls_are_usage_errors(capsys, port, match):
    code, out, err = run(capsys, "info", "--port", port)
    assert code == 2 and match in err and err.count("\n") == 1
    assert "NoneType" not in err and "debug|info" not in err


@pytest.mark.parametrize(("option", "match"), [
    (["--timeout", "0"], "--timeout must be a positive number"),
    (["--timeout", "-1"], "--timeout must be a positive number"),
    (["--timeout", "nan"], "--timeout must be a positive number"),
    (["--timeout", "inf"], "--timeout must be a positive number"),
    (["--baud", "0"], "--baud must be positive"),
])
def test_bad_link_options_are_usage_errors(capsys, option, match):
    code, out, err = run(capsys, "info", "--port", "/dev/ttyNOPE", *option)
    assert code == 2 and match in err and err.count("\n") == 1


# --- the link: timeouts, RESET, a busy peer ------------------------------------------------------


def test_a_timeout_suggests_a_longer_timeout_option(capsys, monkeypatch, shipped, tmp_path):
    """A device that holds the CLASSIFY answer: the message names the expected time and the
    CLI's option (--timeout, not the API's timeout=)."""
    import firmware.driver
    from golden.device import ReferenceDevice

    class Holding:
        def __init__(self):
            self.device = ReferenceDevice(*shipped, clock_hz=12_000_000, baud=3_000_000)
            self.arrived = b""

        def write(self, data):
            if data[2] not in (2, 4):  # answer all but CLASSIFY and CLASSIFY_SPARSE
                self.arrived += self.device.receive(data)

        def read(self, size=1):
            out, self.arrived = self.arrived[:size], self.arrived[size:]
            return out

        def reset_input_buffer(self):
            pass

        def close(self):
            pass

    monkeypatch.setattr(firmware.driver, "_open_url", lambda *args: Holding())
    np.save(tmp_path / "zeros.npy", np.zeros(64, np.uint8))
    code, out, err = run(capsys, "classify", "--port", "/dev/ttyFAKE", "--steps", 65535,
                         "--mode", "rate", "--timeout", "0.2", tmp_path / "zeros.npy")
    info = ReferenceDevice(*shipped).info
    cycles = info.cycles_base + 65535 * info.cycles_per_step
    assert code == 1 and f"at most {cycles:,} core cycles at 12,000,000 Hz" in err
    assert "e.g. --timeout 13." in err and "timeout=" not in err


def test_a_busy_board_is_reported_in_its_own_words(capsys, closing_server):
    code, out, err = run(capsys, "info", "--port", closing_server(BUSY_LINE))
    assert code == 1 and err.count("\n") == 1
    assert "closed the connection, saying: lifpga virtual board: busy: serving another " \
           "client, one at a time; try again when it disconnects" in err


def test_no_reset_for_firmware_that_predates_it(capsys, monkeypatch, shipped):
    import firmware.driver
    from golden import protocol
    from golden.device import ReferenceDevice

    class OldFirmware(DeviceTransport):
        """Answers RESET UNKNOWN_COMMAND, as a device built before RESET does."""

        def write(self, data):
            if data[2] == protocol.Command.RESET:
                self.arrived += protocol.encode_frame(
                    0x83, data[3], bytes([protocol.Status.UNKNOWN_COMMAND]))
            else:
                super().write(data)

    old = OldFirmware(ReferenceDevice(*shipped))
    monkeypatch.setattr(firmware.driver, "_open_url", lambda *args: old)
    code, out, err = run(capsys, "info", "--port", "/dev/ttyOLD")
    assert code == 1 and "firmware predates RESET" in err and "--no-reset" in err
    code, out, err = run(capsys, "info", "--port", "/dev/ttyOLD", "--no-reset")
    assert code == 0 and "pixel_max" in out


def test_golden_comparison_is_golden_devices_agreement(refboard, capsys, monkeypatch,
                                                        shipped_dir):
    """--golden uses golden.device.agreement, the one comparison helper."""
    import golden.device

    calls = []

    def disagreeing(label, scores, spike_count, golden_result):
        calls.append(len(label))
        return np.zeros(len(label), bool)

    monkeypatch.setattr(golden.device, "agreement", disagreeing)
    code, out, err = run(capsys, "classify", "--port", refboard.url, "--digits", 3,
                         "--steps", 4, "--golden", shipped_dir)
    assert calls == [3] and code == 1 and "golden: 0/3 answers equal" in out


def test_a_closed_stdout_is_not_a_traceback(refboard):
    """``lifpga classify ... | head -1``: the reader goes away; no traceback on stderr."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "firmware.cli", "classify", "--port",
                             refboard.url, "--digits", "50", "--steps", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(30) == 1
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_invert_with_digits_is_a_usage_error(capsys):
    code, out, err = run(capsys, "classify", "--port", "/dev/ttyNOPE", "--digits", 3, "--invert")
    assert code == 2 and "--invert applies to PNG and PGM files" in err


@pytest.mark.parametrize("port", ["/dev/ttyNOPE", "socket://127.0.0.1:1"])
def test_port_errors_name_the_port_once(capsys, port):
    code, out, err = run(capsys, "info", "--port", port)
    assert code == 1 and err.startswith(f"lifpga: error: cannot open port {port}: [Errno ")
    assert "could not open port" not in err.lower()


@pytest.mark.parametrize("encoding", ["dense", "sparse", "auto"])
def test_encoding_option(refboard, capsys, shipped_dir, encoding):
    code, out, err = run(capsys, "classify", "--port", refboard.url, "--digits", 12,
                         "--steps", 8, "--encoding", encoding, "--golden", shipped_dir)
    assert code == 0, err
    assert "golden: 12/12 answers equal the golden model bit for bit" in out


def test_encoding_option_errors(capsys, monkeypatch, shipped):
    """An unknown encoding is a usage error; ``sparse`` for a device whose INFO says
    version 1 too (the driver refuses before sending), while ``auto`` works with it."""
    import firmware.driver
    from golden.device import ReferenceDevice

    code, _, err = run(capsys, "classify", "--port", "loop://", "--digits", 1,
                       "--encoding", "rle")
    assert code == 2 and "--encoding" in err and "invalid choice" in err

    version_one = ReferenceDevice(*shipped)
    version_one.info = version_one.info._replace(version=1)
    monkeypatch.setattr(firmware.driver, "_open_url", lambda *args: DeviceTransport(version_one))
    code, _, err = run(capsys, "classify", "--port", "/dev/ttyV1", "--digits", 2,
                       "--encoding", "sparse")
    assert code == 2 and "protocol version 1, which has no CLASSIFY_SPARSE" in err
    code, out, err = run(capsys, "classify", "--port", "/dev/ttyV1", "--digits", 2)
    assert code == 0 and "accuracy" in out, err
