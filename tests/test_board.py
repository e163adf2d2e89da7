"""sim/board.py: the Verilated LifpgaSystem behind a TCP socket, against the reference device.

The virtual board is built once per session for the shipped image (16 lanes, the board's
12 MHz and 3 Mbaud) and reused from ``build/sim/board/<key>/`` when the design has not changed.
The reference is :class:`golden.device.ReferenceDevice` with the core's own cycle formula
(:mod:`hw.geometry`), so every byte of every answer, the ``cycles`` field and the CRC
included, must be equal. Every read has a deadline.
"""

from __future__ import annotations

import copy
import signal
import socket
import time

import numpy as np
import pytest

from firmware.driver import Lifpga
from golden import device
from golden import protocol as p
from golden.constants import MODE_CURRENT, MODE_RATE
from golden.data import load_split
from golden.layers import as_layered
from hw.geometry import EngineGeometry
from sim import board as vb
from sim import fuzz

pytestmark = pytest.mark.slow

LANES, CLK_HZ, BAUD = 16, vb.CLK_HZ, vb.BAUD
#: Seconds any single exchange may take before the test calls the board hung.
DEADLINE_S = 20.0
#: Seconds after which a client's silence has surely let the board's idle timeout fire:
#: vb.QUIET_MS of wall time, then IDLE_BYTE_TIMES byte times simulated (a few ms).
SETTLE_S = 0.3
FUZZ_SEED = 20261122
FUZZ_ITEMS = 600


@pytest.fixture(scope="session")
def network(shipped):
    return shipped


@pytest.fixture(scope="session")
def board_model(shipped_dir) -> vb.BoardModel:
    try:
        return vb.build_board(shipped_dir, lanes=LANES, clk_hz=CLK_HZ, baud=BAUD)
    except vb.ToolNotFoundError as e:
        pytest.skip(f"{e.tool} is not installed: {e}")


@pytest.fixture(scope="session")
def vboard(board_model):
    with board_model.start() as board:
        yield board
        assert board.running(), f"the board died:\n{board.stderr_text()}"
    assert "stop bit 0" not in board.stderr_text()  # no tx framing error reported


def reference(network) -> device.ReferenceDevice:
    """A device at reset, answering exactly what the gateware answers (cycles included)."""
    net, manifest = network
    geometry = EngineGeometry.of(as_layered(net), pixel_max=manifest["pixel_max"], lanes=LANES)
    return device.ReferenceDevice(net, manifest, lanes=LANES, clock_hz=CLK_HZ, baud=BAUD,
                                  cycles_model=geometry.expected_cycles)


def expected_classification(network, pixels, steps: int, mode: int) -> p.Classification:
    ref = reference(network)
    frames = p.FrameParser().feed(ref.receive(p.encode_frame(
        p.Command.CLASSIFY, 0, p.pack_classify(pixels, steps, mode))))
    assert len(frames) == 1 and frames[0].payload[0] == p.Status.OK
    return p.unpack_classification(frames[0].payload, network[0].classes)


def connect(board: vb.VirtualBoard) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", board.port), timeout=DEADLINE_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_exactly(sock: socket.socket, n: int, what: str) -> bytes:
    """``n`` bytes, or fail after DEADLINE_S with what has arrived."""
    got, deadline = b"", time.monotonic() + DEADLINE_S
    while len(got) < n:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            chunk = None
        if not chunk:
            pytest.fail(f"{what}: got {len(got)} of {n} bytes before "
                        f"{'the deadline' if chunk is None else 'EOF'}: {got.hex(' ')}")
        got += chunk
    return got


def assert_silent(sock: socket.socket, seconds: float, what: str) -> None:
    sock.settimeout(seconds)
    try:
        extra = sock.recv(65536)
    except TimeoutError:
        return
    pytest.fail(f"{what}: unexpected bytes {extra.hex(' ')}")


# --- the driver over the socket -------------------------------------------------------------


def test_info(vboard, network):
    with Lifpga(vboard.url, timeout=DEADLINE_S) as device:
        assert device.info() == reference(network).info


@pytest.mark.parametrize("mode", [MODE_CURRENT, MODE_RATE])
def test_classify_equals_reference(vboard, network, mode):
    digits = load_split().x_test[:6]
    with Lifpga(vboard.url, timeout=DEADLINE_S) as device:
        for steps in (0, 1, 7):
            for pixels in digits[:3] if steps else digits:
                got = device.classify(pixels, steps=steps, mode=mode)
                assert got == expected_classification(network, pixels, steps, mode)


def test_classify_many_in_order(vboard, network):
    digits = load_split().x_test[6:26]
    with Lifpga(vboard.url, timeout=DEADLINE_S) as device:
        got = list(device.classify_many(digits, mode=MODE_CURRENT, window=p.MAX_IN_FLIGHT))
    assert got == [expected_classification(network, x, 0, MODE_CURRENT) for x in digits]


def test_idle_timeout_mid_frame(vboard, network):
    """A frame cut off after its header: the board answers TIMEOUT once the host is quiet."""
    frame = p.encode_frame(p.Command.CLASSIFY, 77, p.pack_classify(np.zeros(64, np.uint8)))
    ref = reference(network)
    assert ref.receive(frame[:10]) == b""
    expected = ref.idle_timeout()
    with connect(vboard) as sock:
        sock.sendall(frame[:10])
        assert read_exactly(sock, len(expected), "TIMEOUT") == expected
        sock.sendall(p.encode_frame(p.Command.INFO, 3))
        info = reference(network).receive(p.encode_frame(p.Command.INFO, 3))
        assert read_exactly(sock, len(info), "INFO after TIMEOUT") == info


def test_reconnect(vboard, network):
    """The next client is served after a disconnect, with the device as the last one left it."""
    info = reference(network).receive(p.encode_frame(p.Command.INFO, 9))
    for _ in range(3):
        with connect(vboard) as sock:
            sock.sendall(p.encode_frame(p.Command.INFO, 9))
            assert read_exactly(sock, len(info), "INFO") == info
    # Leave with answers in flight and half a frame sent: the answers go nowhere, the half
    # frame times out, and the next client starts clean.
    with connect(vboard) as sock:
        sock.sendall(p.encode_frame(p.Command.INFO, 1) * 3 + b"\xa5\x5a\x01")
    time.sleep(SETTLE_S)
    with Lifpga(vboard.url, timeout=DEADLINE_S) as device:
        assert device.info() == reference(network).info


def test_a_departed_clients_unsent_bytes_are_discarded(vboard, network):
    """40 kB of requests still queued in the bridge when their client leaves never reach the
    device, so the next client's first answer is its own (the device finishes only what was
    already on the line or queued inside it)."""
    with connect(vboard) as sock:
        sock.sendall(p.encode_frame(p.Command.INFO, 1) * 5000)
    time.sleep(SETTLE_S)
    with connect(vboard) as sock:
        sock.sendall(p.encode_frame(p.Command.INFO, 77))
        want = reference(network).receive(p.encode_frame(p.Command.INFO, 77))
        assert read_exactly(sock, len(want), "INFO 77") == want
        assert_silent(sock, SETTLE_S, "after the answer")


def test_sigterm_stops_promptly(board_model):
    for busy in (False, True):
        board = board_model.start()
        try:
            with connect(board) as sock:
                if busy:
                    # A rate-mode image of 65,535 steps keeps the core busy for minutes of
                    # simulated work: the signal must not wait for it.
                    sock.sendall(p.encode_frame(p.Command.CLASSIFY, 1, p.pack_classify(
                        np.full(64, 16, np.uint8), 65535, MODE_RATE)))
                    time.sleep(0.3)
                start = time.monotonic()
                board.process.send_signal(signal.SIGTERM)
                board.process.wait(5)
                assert time.monotonic() - start < 1.0
                assert board.process.returncode == 0
        finally:
            board.stop()


def read_to_eof(sock: socket.socket, what: str, limit: int = 4096) -> bytes:
    """Everything until the peer closes, or fail after DEADLINE_S."""
    got, deadline = b"", time.monotonic() + DEADLINE_S
    while len(got) <= limit:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"{what}: no end of file within {DEADLINE_S} s, got {got!r}")
        if not chunk:
            return got
        got += chunk
    pytest.fail(f"{what}: more than {limit} bytes: {got[:200]!r}")


# --- one client at a time ---------------------------------------------------------------------


def test_a_second_client_is_refused_while_the_first_goes_on(vboard, network):
    """A second client reads the busy line and end of file at once (it used to wait for
    answers that never came, "0 bytes arrived", like a dead link); the first client's
    session, a rate-mode image in progress included, goes on undisturbed."""
    digit = load_split().x_test[0]
    request = p.encode_frame(p.Command.CLASSIFY, 21, p.pack_classify(digit, 20, MODE_RATE))
    want = reference(network).receive(request)
    info = reference(network).receive(p.encode_frame(p.Command.INFO, 22))
    with connect(vboard) as first:
        first.sendall(request)
        for n in range(3):
            with connect(vboard) as second:
                start = time.monotonic()
                assert read_to_eof(second, f"second client {n}") == vb.BUSY_LINE
                assert time.monotonic() - start < 2.0
        assert read_exactly(first, len(want), "the first client's CLASSIFY") == want
        first.sendall(p.encode_frame(p.Command.INFO, 22))
        assert read_exactly(first, len(info), "the first client's INFO") == info
        assert_silent(first, SETTLE_S, "after the first client's answers")
    # Once the first has gone, the next client is served.
    with Lifpga(vboard.url, timeout=DEADLINE_S) as device_:
        assert device_.info() == reference(network).info


# --- RESET of a busy device ---------------------------------------------------------------------


def test_reset_on_a_new_connection_abandons_a_long_classify(vboard, network):
    """A host that gave up on a 65,535-step rate-mode image reconnects and sends RESET: it is
    answered at once, the stale answer never comes, and the next CLASSIFY is answered right."""
    long = p.encode_frame(p.Command.CLASSIFY, 30, p.pack_classify(
        np.full(64, 16, np.uint8), 65535, MODE_RATE))
    with connect(vboard) as sock:
        sock.sendall(long)
        time.sleep(SETTLE_S)  # on the line and into the core before the host leaves
    reset = p.encode_frame(p.Command.RESET, 31)
    digit = load_split().x_test[3]
    classify = p.encode_frame(p.Command.CLASSIFY, 32, p.pack_classify(digit, 5, MODE_CURRENT))
    # The long image's answer has not started: none is sent (golden.device's RESET rule).
    want = reference(network).expected_after_reset([long], 0, 31, [classify])
    reset_ok = p.encode_frame(p.Command.RESET | p.RESPONSE_FLAG, 31, bytes([p.Status.OK]))
    assert want.startswith(reset_ok)
    answer = want[len(reset_ok):]
    with connect(vboard) as sock:
        start = time.monotonic()
        sock.sendall(reset)
        assert read_exactly(sock, len(reset_ok), "RESET") == reset_ok
        assert time.monotonic() - start < 2.0
        assert_silent(sock, 1.0, "after RESET (the abandoned image's answer)")
        sock.sendall(classify)
        assert read_exactly(sock, len(answer), "CLASSIFY after RESET") == answer
        assert_silent(sock, SETTLE_S, "after the answer")


# --- fuzz: the shared corpus of sim/fuzz.py -----------------------------------------------------


def _silent_timeout(ref: device.ReferenceDevice, chunk: fuzz.Chunk) -> bool:
    """Whether the chunk leaves the device mid-frame with nothing to answer when it times
    out: then only waiting shows that the timeout fired (else its answer does)."""
    parser = copy.deepcopy(ref.parser)
    for byte in chunk.data:
        parser.feed(byte)
    return chunk.pause and parser.pending() and parser.timeout() is None


def test_fuzz_matches_reference(vboard, network):
    """The corpus of :mod:`sim.fuzz` (random bytes, malformed and cut-off frames, RESETs,
    then valid frames), chunk by chunk: the same bytes back as the reference device's.

    Each chunk's answers are read before the next is sent, within the device's documented
    capacity (:func:`sim.fuzz.corpus`); after a chunk that ends mid-frame the host is silent
    until the device's idle timeout has fired, and the reference applies it too.
    """
    ref = reference(network)
    chunks = fuzz.corpus(FUZZ_SEED, FUZZ_ITEMS, ref.info)
    sent = answered = waits = 0
    with connect(vboard) as sock:
        for n, chunk in enumerate(chunks):
            silent = _silent_timeout(ref, chunk)
            expected = fuzz.expected(ref, [chunk])[0]
            sock.sendall(chunk.data)
            got = read_exactly(sock, len(expected), f"chunk {n} {chunk.kind}")
            assert got == expected, f"chunk {n} {chunk.kind}: sent {chunk.data.hex(' ')}"
            if silent:
                time.sleep(SETTLE_S)
                waits += 1
            sent += len(chunk.data)
            answered += len(got)
        assert_silent(sock, SETTLE_S, "after the last answer")
    kinds = {kind for chunk in chunks for kind in chunk.kind.split("+")}
    print(f"fuzz: {len(chunks)} chunks, {sent} bytes sent, {answered} answered, {waits} "
          f"silent timeouts waited for")
    assert kinds == set(fuzz.KINDS) and answered > 10_000


# --- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize("option", [["--lanes", "0"], ["--lanes", "-1"], ["--baud", "0"],
                                    ["--clk-hz", "-5"], ["--port", "-1"], ["--port", "65536"]])
def test_command_line_refuses_zero_or_negative_values(capsys, option):
    with pytest.raises(SystemExit) as info:
        vb.main(option)
    assert info.value.code == 2
    assert f"argument {option[0]}" in capsys.readouterr().err
