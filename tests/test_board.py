# amaranth: UnusedElaboratable=no
"""sim/board.py: the Verilated LifpgaSystem behind a TCP socket, against the reference device.

The virtual board is built once per session for the shipped image (16 lanes, 100 MHz, 3 Mbaud)
and reused from ``build/sim/board/<key>/`` when the design has not changed. The reference is
:class:`golden.device.ReferenceDevice` with the core's own cycle formula, so every byte of every
answer, the ``cycles`` field and the CRC included, must be equal. Every read has a deadline.
"""

from __future__ import annotations

import functools
import random
import signal
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from firmware.driver import Lifpga
from golden import device
from golden import protocol as p
from golden.constants import MODE_CURRENT, MODE_RATE
from golden.data import load_split
from golden.image import load
from hw.core import LifCore
from sim import board as vb

pytestmark = pytest.mark.slow

IMAGE = Path(__file__).resolve().parents[1] / "firmware" / "digits"
LANES, CLK_HZ, BAUD = 16, vb.CLK_HZ, vb.BAUD
#: Seconds any single exchange may take before the test calls the board hung.
DEADLINE_S = 20.0
#: Seconds after which a client's silence has surely let the board's idle timeout fire:
#: vb.QUIET_MS of wall time, then IDLE_BYTE_TIMES byte times simulated (a few ms).
SETTLE_S = 0.3
FUZZ_SEED = 20261122
FUZZ_CHUNKS = 400


@pytest.fixture(scope="session")
def network():
    return load(IMAGE)


@pytest.fixture(scope="session")
def board_model() -> vb.BoardModel:
    try:
        return vb.build_board(IMAGE, lanes=LANES, clk_hz=CLK_HZ, baud=BAUD)
    except vb.ToolNotFoundError as e:
        pytest.skip(f"{e.tool} is not installed: {e}")


@pytest.fixture(scope="session")
def vboard(board_model):
    with board_model.start() as board:
        yield board
        assert board.running(), f"the board died:\n{board.stderr_text()}"
    assert "stop bit 0" not in board.stderr_text()  # no tx framing error reported


@functools.cache
def _cycles_model():
    """The core's own cycle formula, which the gateware's ``cycles`` field must equal."""
    net, manifest = load(IMAGE)
    return LifCore(net, pixel_max=manifest["pixel_max"], lanes=LANES).expected_cycles


def reference(network) -> device.ReferenceDevice:
    """A device at reset, answering exactly what the gateware answers (cycles included)."""
    net, manifest = network
    return device.ReferenceDevice(net, manifest, lanes=LANES, clock_hz=CLK_HZ, baud=BAUD,
                             cycles_model=_cycles_model())


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


# --- fuzz: random bytes and malformed frames, then valid ones ----------------------------------


def _classify_payload(rng: random.Random, *, pixel_max: int) -> bytes:
    pixels = bytes(rng.randint(0, pixel_max) for _ in range(64))
    return struct.pack(p.CLASSIFY_HEADER_FORMAT, rng.choice([1, 2, 3, 5, 0]),
                       rng.choice([MODE_CURRENT, MODE_RATE, p.MODE_DEFAULT])) + pixels


def _fuzz_item(rng: random.Random, pixel_max: int) -> tuple[bytes, bool]:
    """One piece of a chunk; True if it may take an image slot (a CLASSIFY with a good LEN)."""
    seq = rng.randrange(256)
    # Short pieces are weighted up: they cost little simulated time and hit the parser most.
    kind = rng.choice([0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 12])
    if kind == 0:  # noise, with SYNC bytes more likely than chance
        return bytes(rng.choice([rng.randrange(256), 0xA5, 0x5A])
                     for _ in range(rng.randint(1, 24))), False
    if kind == 1:
        return p.encode_frame(p.Command.INFO, seq), False
    if kind in (2, 3):
        return p.encode_frame(p.Command.CLASSIFY, seq, _classify_payload(rng, pixel_max=16)), True
    if kind == 4:  # a pixel out of range or a bad mode
        payload = bytearray(_classify_payload(rng, pixel_max=pixel_max))
        if rng.random() < 0.5:
            payload[3 + rng.randrange(64)] = rng.randint(pixel_max + 1, 255)
        else:
            payload[2] = rng.choice([2, 3, 0x7F, 0xFE])
        return p.encode_frame(p.Command.CLASSIFY, seq, bytes(payload)), True
    if kind == 5:  # a corrupted byte after SYNC
        frame = bytearray(p.encode_frame(p.Command.CLASSIFY, seq,
                                         _classify_payload(rng, pixel_max=pixel_max)))
        frame[rng.randrange(6, len(frame))] ^= 1 << rng.randrange(8)
        return bytes(frame), True
    if kind == 6:  # the wrong LEN for the command
        cmd = rng.choice([p.Command.INFO, p.Command.CLASSIFY])
        return p.encode_frame(cmd, seq, bytes(rng.randrange(256)
                                              for _ in range(rng.choice([1, 2, 66, 68])))), False
    if kind == 7:  # LEN above MAX_PAYLOAD, header only
        return p.SYNC + struct.pack("<BBH", rng.choice([1, 2, 9]), seq,
                                    rng.randint(p.MAX_PAYLOAD + 1, 0xFFFF)), False
    if kind == 8:  # an unknown command, or a response sent back
        cmd = rng.choice([0, 3, 0x42, 0x81, 0x82, 0xFF])
        return p.encode_frame(cmd, seq, bytes(rng.randrange(256)
                                              for _ in range(rng.randint(0, 12)))), False
    if kind == 9:  # an INFO with a bad CRC
        frame = bytearray(p.encode_frame(p.Command.INFO, seq))
        frame[-rng.randint(1, 2)] ^= 0xFF
        return bytes(frame), False
    if kind == 10:  # SYNC doubled, or split by noise
        return rng.choice([b"\xa5", b"\xa5\xa5", b"\x5a"]) + p.encode_frame(
            p.Command.INFO, seq), False
    if kind == 11:  # a truncated frame: the rest of the chunk continues it
        frame = p.encode_frame(p.Command.CLASSIFY, seq, _classify_payload(rng, pixel_max=16))
        return frame[:rng.randint(1, len(frame) - 1)], True
    return bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))), False


def test_fuzz_matches_reference(vboard, network):
    """Random bytes and malformed frames, in chunks, then valid frames: the same bytes back.

    A chunk holds at most ``MAX_IN_FLIGHT`` CLASSIFY frames and five pieces, so that the
    device's buffers (``IMAGE_SLOTS``, ``REPLY_QUEUE``) never overflow: within them the gateware
    must answer exactly what the reference device answers. Each chunk's answers are read
    before the next is sent; a chunk that leaves a partial frame is followed by the host's
    silence, so the reference applies its idle timeout too.
    """
    rng = random.Random(FUZZ_SEED)
    pixel_max = network[1]["pixel_max"]
    ref = reference(network)
    sent = answered = timeouts = pieces = 0
    with connect(vboard) as sock:
        for n in range(FUZZ_CHUNKS):
            chunk, slots = b"", 0
            for _ in range(rng.randint(1, 5)):
                item, takes_slot = _fuzz_item(rng, pixel_max)
                if takes_slot and slots == p.MAX_IN_FLIGHT:
                    continue
                slots += takes_slot
                chunk += item
                pieces += 1
            expected = ref.receive(chunk)
            silent = False
            if ref.parser.pending():
                timeout = ref.idle_timeout()
                expected += timeout
                silent = not timeout
                timeouts += 1
            sock.sendall(chunk)
            got = read_exactly(sock, len(expected), f"chunk {n} ({chunk.hex(' ')})")
            assert got == expected, f"chunk {n}: sent {chunk.hex(' ')}"
            if silent:
                time.sleep(SETTLE_S)  # a timeout without a reply: give it time to happen
            sent += len(chunk)
            answered += len(got)
        # Then valid frames: the parser must be back in step.
        digits = load_split().x_test[:4]
        for seq, pixels in enumerate(digits):
            frame = p.encode_frame(p.Command.CLASSIFY, seq, p.pack_classify(pixels, 3, MODE_RATE))
            expected = ref.receive(frame)
            sock.sendall(frame)
            assert read_exactly(sock, len(expected), f"digit {seq}") == expected
        assert_silent(sock, SETTLE_S, "after the last answer")
    print(f"fuzz: {FUZZ_CHUNKS} chunks, {pieces} pieces, {sent} bytes sent, {answered} "
          f"answered, {timeouts} idle timeouts")
    assert pieces > 1000 and answered > 10_000 and timeouts > 10
