"""firmware/driver.py against the reference board (sim/refboard.py) over socket://, and
against transports standing in for a board that computes, a closing peer and broken answers."""

import math
import socket
import struct
import threading
import time

import numpy as np
import pytest
import serial

import firmware.driver as driver_module
from firmware.driver import (
    CrcError,
    DeviceError,
    ImageError,
    Lifpga,
    LifpgaError,
    LinkTimeout,
    ParameterError,
    PortError,
    ProtocolError,
    ResetUnsupported,
)
from golden import device, layers
from golden import protocol as p
from golden.constants import MODE_CURRENT, MODE_RATE
from golden.data import load_split
from hw.geometry import EngineGeometry, max_cycles
from sim.board import BUSY_LINE  # what the virtual board tells a second client

STEPS = 16


@pytest.fixture
def lifpga(refboard):
    with Lifpga(refboard.url, timeout=5) as driver:
        yield driver


@pytest.fixture(scope="module")
def digits():
    return load_split().x_test[:20]


class CountingTransport:
    """Wraps a transport: counts written bytes, optionally prefixes every read with garbage."""

    def __init__(self, inner, garbage: bytes = b""):
        self.inner, self.garbage, self.written = inner, garbage, 0
        self._at_response_start = True

    def write(self, data: bytes):
        self.written += len(data)
        self._at_response_start = True
        return self.inner.write(data)

    def read(self, size: int = 1) -> bytes:
        if self._at_response_start and self.garbage:
            self._at_response_start = False
            return self.garbage
        return self.inner.read(size)

    def reset_input_buffer(self):
        self.inner.reset_input_buffer()


def test_info(lifpga, refboard):
    info = lifpga.info()
    assert info == refboard.new_device().info
    assert (info.inputs, info.classes, info.pixel_max) == (64, 10, 16)
    assert "sha256:" + info.image_hash.hex() == refboard.manifest["hash"]


@pytest.mark.parametrize("mode", [MODE_CURRENT, MODE_RATE])
def test_classify_equals_golden(lifpga, refboard, digits, mode):
    ref = layers.run(digits, refboard.net, STEPS, mode)
    for b, pixels in enumerate(digits):
        got = lifpga.classify(pixels, steps=STEPS, mode=mode)
        assert got.label == ref.classes[-1, b]
        assert list(got.scores) == ref.scores[-1, b].tolist()
        assert got.spike_count == ref.spike_count[b]


def test_classify_default_steps_and_square_image(lifpga, refboard, digits):
    ref = layers.run(digits[:1], refboard.net, refboard.manifest["timesteps"], MODE_CURRENT)
    got = lifpga.classify(digits[0].reshape(8, 8))
    assert list(got.scores) == ref.scores[-1, 0].tolist()


@pytest.mark.parametrize("window", [1, 4, 16])
def test_classify_many_equals_sequential(lifpga, digits, window):
    sequential = [lifpga.classify(x, steps=STEPS, mode=MODE_RATE) for x in digits]
    pipelined = list(lifpga.classify_many(digits, steps=STEPS, mode=MODE_RATE, window=window))
    assert pipelined == sequential


class InFlightTransport:
    """Wraps a transport, parsing both directions: ``in_flight`` lists, as each response
    frame completes, how many requests had been written and not yet answered."""

    def __init__(self, inner):
        self.inner, self.requests, self.responses = inner, p.FrameParser(), p.FrameParser()
        self.seqs_sent, self.answered, self.in_flight = [], 0, []

    def write(self, data: bytes):
        self.seqs_sent += [f.seq for f in self.requests.feed(data)]
        return self.inner.write(data)

    def read(self, size: int = 1) -> bytes:
        data = self.inner.read(size)
        for _ in self.responses.feed(data):
            self.in_flight.append(len(self.seqs_sent) - self.answered)
            self.answered += 1
        return data

    def reset_input_buffer(self):
        self.inner.reset_input_buffer()


def test_classify_many_keeps_requests_in_flight(refboard, digits):
    """With window 4, four requests go out before the first response is read, and never more
    (seen on the link, through the public API only)."""
    link = InFlightTransport(serial.serial_for_url(refboard.url, timeout=0.05))
    with Lifpga(link, timeout=5) as driver:
        driver.info()
        link.seqs_sent, link.answered, link.in_flight = [], 0, []
        assert len(list(driver.classify_many(digits[:9], steps=STEPS, window=4))) == 9
        assert link.in_flight == [4, 4, 4, 4, 4, 4, 3, 2, 1]
        assert len(set(link.seqs_sent)) == 9
    link.inner.close()


@pytest.mark.parametrize(("image", "match"), [
    (np.zeros(63, int), "shape"),
    (np.zeros((8, 9), int), "shape"),
    (np.zeros((2, 64), int), "shape"),
    (np.full(64, 17), "0 .. 16"),
    (np.full(64, -1), "0 .. 16"),
    (np.zeros(64, float), "dtype"),
    (["a"] * 64, "dtype"),
])
def test_image_error_before_sending(refboard, image, match):
    with Lifpga(refboard.url, timeout=5) as driver:
        driver.info()
        counting = CountingTransport(driver.transport)
        driver.transport = counting
        with pytest.raises(ImageError, match=match):
            driver.classify(image)
        with pytest.raises(ImageError):
            list(driver.classify_many([image]))
        assert counting.written == 0


def test_parameter_error_before_sending(lifpga, digits):
    with pytest.raises(ParameterError):
        lifpga.classify(digits[0], steps=1 << 16)
    with pytest.raises(ParameterError):
        lifpga.classify(digits[0], mode=7)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"steps": 16.0}, "steps must be an integer"),
    ({"steps": "16"}, "steps must be an integer"),
    ({"mode": 1.0}, "mode must be an integer"),
])
def test_parameter_error_for_non_integers(refboard, digits, kwargs, match):
    with Lifpga(refboard.url, timeout=5) as driver:
        driver.info()
        counting = CountingTransport(driver.transport)
        driver.transport = counting
        with pytest.raises(ParameterError, match=match):
            driver.classify(digits[0], **kwargs)
        with pytest.raises(ParameterError, match=match):
            list(driver.classify_many(digits[:2], **kwargs))
        assert counting.written == 0
        assert driver.classify(digits[0], steps=np.int64(STEPS)).label >= 0  # numpy ints do


class SlowBoard:
    """A reference device whose answers wait until released, as a board's wait while its core
    computes; RESET behaves as on the gateware (:data:`golden.protocol.Command.RESET`).

    ``hold`` keeps answers on the way (the core computing); ``let_through`` answers still
    arrive at once while holding. RESET abandons every answer on the way, stops the
    computation (``hold`` ends) and is answered at once; with ``knows_reset=False`` (firmware
    that predates RESET) it is answered UNKNOWN_COMMAND in its turn. ``reset_input_buffer``
    drops only bytes that have arrived, as on a real link, so a late answer on the way
    survives it. ``commands`` lists the CMD of every request written.
    """

    def __init__(self, device, *, knows_reset: bool = True, name: str | None = None):
        self.device, self.knows_reset = device, knows_reset
        self.arrived, self.on_the_way, self.hold, self.let_through = b"", [], False, 0
        self.requests, self.commands = p.FrameParser(), []
        if name:
            self.name = name

    def write(self, data):
        for frame in self.requests.feed(data):
            self.commands.append(frame.cmd)
            raw = p.encode_frame(frame.cmd, frame.seq, frame.payload)
            if frame.cmd == p.Command.RESET and self.knows_reset:
                self.on_the_way.clear()
                self.hold = False
                self.arrived += self.device.receive(raw)
            elif frame.cmd == p.Command.RESET:
                self.on_the_way.append(p.encode_frame(  # an answer, not a request
                    frame.cmd | 0x80, frame.seq, bytes([p.Status.UNKNOWN_COMMAND])))
            else:
                self.on_the_way.append(raw)  # answered when released: nothing computed if not
        if not self.hold or self.let_through:
            self.let_through = max(0, self.let_through - 1)
            self.release()

    def release(self):
        for raw in self.on_the_way:
            self.arrived += raw if raw[2] & 0x80 else self.device.receive(raw)
        self.on_the_way.clear()

    def read(self, size=1):
        out, self.arrived = self.arrived[:size], self.arrived[size:]
        if not out:
            time.sleep(0.005)
        return out

    def reset_input_buffer(self):
        self.arrived = b""


RESET, INFO, CLASSIFY = p.Command.RESET, p.Command.INFO, p.Command.CLASSIFY


def sent(image) -> p.Command:
    """The command the driver's default (``auto``) encoding sends ``image`` with, to a device
    of this protocol version: CLASSIFY_SPARSE for every test digit."""
    return p.classify_request(image)[0]


def test_a_new_client_never_gets_an_earlier_clients_late_answer(shipped, digits):
    """Defect 1: a request times out, the device keeps computing it, and its late answer used
    to reach the next client (``response CMD 0x82 to INFO, expected 0x81``). RESET on
    connecting abandons it."""
    net, manifest = shipped
    board = SlowBoard(device.ReferenceDevice(net, manifest))
    first = Lifpga(board, timeout=0.2)
    first.info()
    board.hold = True  # the core computes a long image
    with pytest.raises(LinkTimeout):
        first.classify(digits[0], steps=STEPS, mode=MODE_RATE)
    assert board.on_the_way  # its answer is still to come
    board.hold = False
    second = Lifpga(board, timeout=1)
    assert second.info().inputs == 64
    assert board.commands == [RESET, INFO, sent(digits[0]), RESET, INFO]
    assert not board.on_the_way and not board.arrived


def test_without_reset_a_new_client_gets_the_late_answer(shipped, digits):
    """What defect 1 was, and still is with ``reset=False``: the check of the test above."""
    net, manifest = shipped
    board = SlowBoard(device.ReferenceDevice(net, manifest))
    first = Lifpga(board, timeout=0.2, reset=False)
    first.info()
    board.hold = True
    with pytest.raises(LinkTimeout):
        first.classify(digits[0], steps=STEPS)
    board.hold = False
    second = Lifpga(board, timeout=1, reset=False)
    late = sent(digits[0]) | 0x80  # 0x82 before CLASSIFY_SPARSE
    with pytest.raises(ProtocolError, match=f"response CMD 0x{late:02x} to INFO, expected 0x81"):
        second.info()


def test_reset_stops_a_device_that_computes_for_ever(shipped, digits):
    """After ``--steps 65535`` every client used to get ``0 bytes arrived`` until the device
    finished; RESET stops the computation, so the next client is served at once."""
    net, manifest = shipped
    board = SlowBoard(device.ReferenceDevice(net, manifest))
    Lifpga(board, timeout=1).request(p.Command.INFO)
    board.hold = True
    board.write(p.encode_frame(CLASSIFY, 9, p.pack_classify(digits[0], 65535, MODE_RATE)))
    start = time.monotonic()
    with Lifpga(board, timeout=1) as driver:
        assert driver.info().inputs == 64
    assert time.monotonic() - start < 0.5


def test_the_driver_resets_after_a_link_timeout(shipped, digits):
    net, manifest = shipped
    ref = layers.run(digits[:2], net, STEPS, MODE_CURRENT)
    board = SlowBoard(device.ReferenceDevice(net, manifest))
    driver = Lifpga(board, timeout=0.2)
    driver.info()
    board.hold = True
    with pytest.raises(LinkTimeout, match="resets the device before the next request"):
        driver.classify(digits[0], steps=STEPS)
    got = driver.classify(digits[1], steps=STEPS)  # RESET first: the late answer is gone
    assert list(got.scores) == ref.scores[-1, 1].tolist()
    assert board.commands == [RESET, INFO, sent(digits[0]), RESET, sent(digits[1])]
    driver.info()
    assert board.commands[-1] == INFO  # no reset once in step again


def test_the_driver_resets_after_an_abandoned_stream(shipped, digits):
    net, manifest = shipped
    ref = layers.run(digits, net, STEPS, MODE_CURRENT)
    board = SlowBoard(device.ReferenceDevice(net, manifest))
    driver = Lifpga(board, timeout=1)
    driver.info()
    board.hold, board.let_through = True, 1  # the first answer arrives; the others do not
    stream = driver.classify_many(digits[:8], steps=STEPS, window=4)
    assert list(next(stream).scores) == ref.scores[-1, 0].tolist()
    stream.close()
    assert board.on_the_way
    got = driver.classify(digits[10], steps=STEPS)
    assert list(got.scores) == ref.scores[-1, 10].tolist()
    # Four in flight, and a fifth sent as the first answer came in.
    assert board.commands == [RESET, INFO, *map(sent, digits[:5]), RESET, sent(digits[10])]
    for _ in driver.classify_many(digits[:3], steps=STEPS):
        pass  # a stream run to its end leaves nothing behind: no reset
    assert driver.info().inputs == 64
    assert board.commands[-4:] == [*map(sent, digits[:3]), INFO]


def test_reset_on_request(shipped):
    net, manifest = shipped
    board = SlowBoard(device.ReferenceDevice(net, manifest))
    driver = Lifpga(board, timeout=1, reset=False)
    assert board.commands == []
    driver.reset()
    assert board.commands == [RESET]
    assert driver.info().inputs == 64


def test_firmware_that_predates_reset(shipped):
    net, manifest = shipped
    board = SlowBoard(device.ReferenceDevice(net, manifest), knows_reset=False)
    with pytest.raises(ResetUnsupported, match="firmware predates RESET.*reset=False") as caught:
        Lifpga(board, timeout=1)
    assert caught.value.status == p.Status.UNKNOWN_COMMAND
    assert isinstance(caught.value, DeviceError)
    assert Lifpga(board, timeout=1, reset=False).info().inputs == 64


def test_firmware_that_predates_reset_while_busy(shipped):
    """An old device answers RESET only after what it computes: the timeout says so."""
    net, manifest = shipped
    board = SlowBoard(device.ReferenceDevice(net, manifest), knows_reset=False)
    board.hold = True
    with pytest.raises(LinkTimeout, match=r"RESET \(seq 0\).*predates RESET"):
        Lifpga(board, timeout=0.2)


@pytest.mark.parametrize("reset", [True, False])
def test_late_answers_after_an_abandoned_stream_are_dropped(refboard, digits, reset):
    """Breaking out of classify_many leaves requests in flight; their answers do no harm,
    with RESET (abandoned) or without (dropped by SEQ)."""
    ref = layers.run(digits, refboard.net, STEPS, MODE_CURRENT)
    link = SlowBoard(refboard.new_device())
    driver = Lifpga(link, timeout=1, reset=reset)
    driver.info()
    link.hold, link.let_through = True, 1  # the first answer arrives; the others do not
    stream = driver.classify_many(digits[:8], steps=STEPS, window=4)
    first = next(stream)
    stream.close()
    assert list(first.scores) == ref.scores[-1, 0].tolist()
    assert link.on_the_way  # answers in flight when the stream was abandoned
    link.hold = False  # they arrive after the reset, before the next answer
    for b in (10, 11):
        got = driver.classify(digits[b], steps=STEPS)
        assert list(got.scores) == ref.scores[-1, b].tolist()
    assert list(driver.classify_many(digits[12:16], steps=STEPS)) == [
        driver.classify(x, steps=STEPS) for x in digits[12:16]]


def test_late_answer_after_a_link_timeout_is_dropped_without_reset(refboard, digits):
    ref = layers.run(digits[:2], refboard.net, STEPS, MODE_CURRENT)
    link = SlowBoard(refboard.new_device())
    driver = Lifpga(link, timeout=0.2, reset=False)
    driver.info()
    link.hold = True
    with pytest.raises(LinkTimeout):
        driver.classify(digits[0], steps=STEPS)
    with pytest.raises(LinkTimeout):
        driver.info()
    link.hold = False  # both late answers arrive just before the next one
    got = driver.classify(digits[1], steps=STEPS)
    assert list(got.scores) == ref.scores[-1, 1].tolist()
    assert driver.info().inputs == 64


def test_a_stray_reset_answer_is_dropped(refboard):
    """An earlier client's RESET, answered first and taken for ours, leaves ours behind."""
    link = SlowBoard(refboard.new_device())
    driver = Lifpga(link, timeout=1)
    link.arrived += p.encode_frame(RESET | 0x80, 0, bytes([p.Status.OK]))
    assert driver.info().inputs == 64


# --- a RESET swallowed by a partial frame, or lost: sent again ----------------------------------


class MangledFirstWrite:
    """Wraps a transport: the first write goes through ``mangle`` (``None`` drops it, as a
    line that loses a frame); ``frames`` lists every frame written, parsed."""

    def __init__(self, inner, mangle):
        self.inner, self.mangle, self.writes = inner, mangle, 0
        self.sent, self.frames = p.FrameParser(), []

    def write(self, data: bytes):
        self.frames += self.sent.feed(data)
        self.writes += 1
        data = self.mangle(data) if self.writes == 1 else data
        return self.inner.write(data) if data else 0

    def read(self, size: int = 1) -> bytes:
        return self.inner.read(size)

    def reset_input_buffer(self):
        self.inner.reset_input_buffer()

    def close(self):
        self.inner.close()


@pytest.fixture
def raw_link(refboard):
    """One connection to the reference board, one device behind it: as a UART, its state
    outlives the client that wrote to it."""
    link = serial.serial_for_url(refboard.url, timeout=0.05)
    yield link
    link.close()


# How much of a CLASSIFY frame (75 bytes) the killed client sent, and how the reference device
# then takes the RESET behind it: 2 (A5 5A: RESET's bytes become a header, TIMEOUT for CMD
# A5), 3 (BAD_LENGTH at once), 6 and 30 (the RESET becomes payload; TIMEOUT after the idle
# timeout, 50 ms), 67 (BAD_CRC as RESET's 8th byte completes the frame), 71 and 74 (BAD_CRC;
# the rest of the RESET is dropped as noise).
@pytest.mark.parametrize("cut", [2, 3, 6, 30, 67, 71, 74])
def test_a_partial_frame_left_by_a_killed_client_does_not_swallow_the_reset(
        refboard, raw_link, digits, cut):
    """The author's note: "if a killed client left a partial frame behind, it can swallow the
    next client's RESET. That RESET times out and the next attempt succeeds." The driver now
    sends RESET again itself: the first client to connect is served at once."""
    ref = layers.run(digits[:1], refboard.net, STEPS, MODE_CURRENT)
    frame = p.encode_frame(CLASSIFY, 0x41, p.pack_classify(digits[0], STEPS, MODE_CURRENT))
    assert len(frame) == 75
    raw_link.write(frame[:cut])  # the killed client's last bytes
    time.sleep(0.01)  # they reach the device before the next client's
    start = time.monotonic()
    with Lifpga(raw_link, timeout=2) as driver:
        assert driver.info().inputs == 64
        got = driver.classify(digits[0], steps=STEPS)
    assert time.monotonic() - start < 1.0  # a RESET timed out would take the whole 2 s
    assert got.label == ref.classes[-1, 0] and list(got.scores) == ref.scores[-1, 0].tolist()


def test_a_reset_lost_on_the_line_is_sent_again(refboard, raw_link):
    """No answer at all within the idle timeout plus the margin: RESET again."""
    link = MangledFirstWrite(raw_link, lambda data: None)
    start = time.monotonic()
    driver = Lifpga(link, timeout=2)
    elapsed = time.monotonic() - start
    assert driver.reset_retry_s <= elapsed < driver.reset_retry_s + 0.5
    assert driver.reset_retry_s > refboard.idle_timeout  # a swallowing frame has timed out
    assert [f.cmd for f in link.frames] == [RESET, RESET]
    assert driver.info().inputs == 64


def test_a_reset_refused_bad_crc_is_sent_again(refboard, raw_link):
    """Line noise in the RESET: the device answers BAD_CRC to it, and nothing was reset."""
    link = MangledFirstWrite(raw_link, lambda data: data[:-1] + bytes([data[-1] ^ 0x01]))
    start = time.monotonic()
    driver = Lifpga(link, timeout=2)
    assert time.monotonic() - start < 0.5  # at once, not after the retry interval
    assert [f.cmd for f in link.frames] == [RESET, RESET]
    assert driver.info().inputs == 64 and [f.cmd for f in link.frames][-1] == INFO


def test_resending_reset_is_bounded_by_attempts_and_deadline(silent_server):
    """A device that never answers: RESET_ATTEMPTS RESETs, all within the one deadline."""
    link = CountingTransport(serial.serial_for_url(silent_server, timeout=0.05))
    start = time.monotonic()
    with pytest.raises(LinkTimeout, match=r"RESET \(seq 0\).*RESET was sent 4 times "
                                          r"\(seq 0, 1, 2, 3\), none answered"):
        Lifpga(link, timeout=1)
    assert 1.0 <= time.monotonic() - start < 1.5
    assert driver_module.RESET_ATTEMPTS == 4
    assert link.written == 4 * len(p.encode_frame(RESET, 0))
    link.inner.close()


def test_break_out_of_classify_many_against_the_refboard(lifpga, refboard, digits):
    ref = layers.run(digits, refboard.net, STEPS, MODE_CURRENT)
    for _ in lifpga.classify_many(digits, steps=STEPS, window=4):
        break
    got = lifpga.classify(digits[19], steps=STEPS)
    assert list(got.scores) == ref.scores[-1, 19].tolist()
    with pytest.raises(ImageError):
        for _ in lifpga.classify_many([digits[0], digits[1], np.zeros(3, int)], steps=STEPS):
            pass
    assert lifpga.classify(digits[18], steps=STEPS).label == ref.classes[-1, 18]


def test_device_error_for_a_pixel_out_of_range_sent_raw(lifpga):
    lifpga.info()
    with pytest.raises(DeviceError) as caught:
        lifpga.request(p.Command.CLASSIFY, p.pack_classify(np.full(64, 17)))
    assert caught.value.status == p.Status.PIXEL_RANGE
    assert "pixel_max" in str(caught.value)
    assert isinstance(caught.value, LifpgaError)


@pytest.mark.parametrize(("cmd", "payload", "status"), [
    (0x33, b"", p.Status.UNKNOWN_COMMAND),
    (p.Command.INFO, b"x", p.Status.BAD_LENGTH),
    (p.Command.CLASSIFY, struct.pack("<HB", 0, 9) + bytes(64), p.Status.BAD_PARAMETER),
])
def test_device_error_statuses(lifpga, cmd, payload, status):
    with pytest.raises(DeviceError) as caught:
        lifpga.request(cmd, payload)
    assert caught.value.status == status
    assert lifpga.info().inputs == 64  # the link still works


@pytest.fixture
def silent_server():
    """A socket that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"socket://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_link_timeout_against_a_silent_server(silent_server):
    start = time.monotonic()
    with pytest.raises(LinkTimeout, match=r"RESET \(seq 0\).*0 bytes arrived.*ample"):
        Lifpga(silent_server, timeout=0.3)
    assert time.monotonic() - start < 1.0
    with Lifpga(silent_server, timeout=0.3, reset=False) as driver:
        start = time.monotonic()
        with pytest.raises(LinkTimeout, match=r"INFO \(seq 0\).*0 bytes arrived"):
            driver.info()
        assert time.monotonic() - start < 1.0


def test_link_timeout_mid_frame():
    server, client = socket.socketpair()

    class SocketTransport:
        def write(self, data):
            server.sendall(p.encode_frame(p.Command.INFO | 0x80, 0, b"\x00" * 57)[:20])

        def read(self, size=1):
            client.settimeout(0.05)
            try:
                return client.recv(size)
            except TimeoutError:
                return b""

        def reset_input_buffer(self):
            pass

    with Lifpga(SocketTransport(), timeout=0.3, reset=False) as driver:
        start = time.monotonic()
        with pytest.raises(LinkTimeout, match="20 bytes arrived, 20 of them a partial frame"):
            driver.info()
        assert time.monotonic() - start < 1.0
    server.close()
    client.close()


def test_port_error_for_a_missing_port():
    with pytest.raises(PortError, match="/dev/ttyNOPE"):
        Lifpga("/dev/ttyNOPE")


def test_port_error_for_a_refused_connection():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(PortError, match=str(port)):
            Lifpga(f"socket://127.0.0.1:{port}")


def test_garbage_before_responses_is_skipped(refboard, digits):
    with Lifpga(refboard.url, timeout=5) as plain:
        expected = [plain.classify(x, steps=STEPS) for x in digits[:5]]
    with Lifpga(refboard.url, timeout=5) as driver:
        driver.transport = CountingTransport(driver.transport, b"\x00\xa5\xff noise \xa5")
        assert driver.info().inputs == 64
        assert [driver.classify(x, steps=STEPS) for x in digits[:5]] == expected
        assert list(driver.classify_many(digits[:5], steps=STEPS)) == expected
        assert driver.parser.dropped > 0


def test_crc_error_and_wrong_seq_in_responses():
    """A corrupt response raises CrcError; a response to another SEQ raises ProtocolError."""

    class Scripted:
        def __init__(self, reply):
            self.reply, self.pending = reply, b""

        def write(self, data):
            self.pending = self.reply

        def read(self, size=1):
            out, self.pending = self.pending[:size], self.pending[size:]
            return out

        def reset_input_buffer(self):
            pass

    bad = bytearray(p.encode_frame(p.Command.INFO | 0x80, 0, b"\x00" * 57))
    bad[-1] ^= 1
    with pytest.raises(CrcError):
        Lifpga(Scripted(bytes(bad)), timeout=0.5, reset=False).info()
    other_seq = p.encode_frame(p.Command.INFO | 0x80, 9, b"\x00" * 57)
    with pytest.raises(ProtocolError, match="seq 9"):
        Lifpga(Scripted(other_seq), timeout=0.5, reset=False).info()
    short = p.encode_frame(p.Command.INFO | 0x80, 0, b"\x00" * 5)
    with pytest.raises(ProtocolError, match="not an OK INFO response: 5 bytes") as caught:
        Lifpga(Scripted(short), timeout=0.5, reset=False).info()
    assert isinstance(caught.value.__cause__, ValueError)  # from golden.protocol.unpack_info
















# --- what a timeout says ------------------------------------------------------------------------


def held_board(shipped, clock_hz: int, name: str | None = None,
               version: int | None = None) -> tuple[Lifpga, SlowBoard]:
    net, manifest = shipped
    ref = device.ReferenceDevice(net, manifest, clock_hz=clock_hz, lanes=16, baud=3_000_000)
    if version == 2:  # a version-2 device: its INFO has no cycle bound
        ref.info = ref.info._replace(version=2, cycles_base=0, cycles_per_step=0)
    board = SlowBoard(ref, name=name)
    driver = Lifpga(board, timeout=0.2)
    driver.info()
    board.hold = True
    return driver, board


def worst_cycles(shipped, steps: int) -> int:
    """The shipped digits device's cycle bound at ``steps`` (the engine's, 16 lanes)."""
    net, manifest = shipped
    base, per_step = EngineGeometry.of(layers.as_layered(net), pixel_max=manifest["pixel_max"],
                                       lanes=16).cycle_bound()
    return base + steps * per_step


def test_a_version_2_device_is_bounded_by_the_single_layer_formula(shipped, digits):
    """A version-2 device (its INFO without a cycle bound: ``tests/test_protocol.py`` parses
    the 52-byte form) gets the single-layer core's worst case from M, N, C and P as its
    timeout's cycles."""
    driver, _ = held_board(shipped, 12_000_000, version=2)
    assert driver.cached_info.cycles_per_step == 0
    cycles = max_cycles(64, 256, 16, 10, 1024, MODE_RATE)
    assert cycles != worst_cycles(shipped, 1024)
    with pytest.raises(LinkTimeout, match=f"takes at most {cycles:,} core cycles"):
        driver.classify(digits[0], steps=1024, mode=MODE_RATE)


def test_a_timeout_says_how_long_the_request_takes(shipped, digits):
    driver, _ = held_board(shipped, 12_000_000)
    with pytest.raises(LinkTimeout) as caught:
        driver.classify(digits[0], steps=65535, mode=MODE_RATE)
    cycles = worst_cycles(shipped, 65535)
    request = 8 + len(p.classify_request(digits[0], 65535, MODE_RATE)[1])  # CLASSIFY_SPARSE
    link_s = (request + 58) * p.BITS_PER_BYTE / 3_000_000
    expected = cycles / 12e6 + link_s
    assert caught.value.expected_s == pytest.approx(expected)
    message = str(caught.value)
    assert f"65535 steps in rate mode takes at most {cycles:,} core cycles" in message
    assert "at 12,000,000 Hz" in message and f"up to {expected:.3g} s" in message
    suggest = math.ceil(2 * expected)
    assert message.endswith(f"e.g. timeout={suggest}.")
    assert caught.value.advice("--timeout {}").endswith(f"e.g. --timeout {suggest}.")
    assert "virtual board" not in message


def test_a_timeout_with_an_ample_deadline_says_the_device_did_not_answer(shipped, digits):
    driver, _ = held_board(shipped, 100_000_000)
    with pytest.raises(LinkTimeout, match="The deadline was ample: the device did not answer"):
        driver.classify(digits[0], steps=STEPS)


def test_a_timeout_on_a_socket_mentions_the_virtual_boards_speed(shipped, digits):
    driver, _ = held_board(shipped, 12_000_000, name="socket://127.0.0.1:9")
    with pytest.raises(LinkTimeout, match="virtual board simulates only about") as caught:
        driver.classify(digits[0], steps=1024, mode=MODE_RATE)
    cycles = worst_cycles(shipped, 1024)
    assert caught.value.expected_s > cycles / 12e6  # simulation is slower than the clock


def test_a_timeout_with_default_steps_uses_the_images_default(shipped, digits):
    driver, _ = held_board(shipped, 100_000_000)
    steps = shipped[1]["timesteps"]
    with pytest.raises(LinkTimeout, match=f"{steps} steps in current mode takes at most "
                                          f"{worst_cycles(shipped, steps):,}"):
        driver.classify(digits[0])


def test_a_timeout_without_a_clock_says_the_time_is_unknown(shipped, digits):
    driver, _ = held_board(shipped, 0)
    with pytest.raises(LinkTimeout, match="clock_hz 0, so the compute time is unknown") as caught:
        driver.classify(digits[0], steps=8192)
    assert caught.value.expected_s is None
    assert "timeout=SECONDS" in str(caught.value)


# --- a peer that closes the connection (defect 2) ------------------------------------------------


@pytest.mark.parametrize("delay", [0.0, 0.1])
def test_a_busy_peer_is_a_port_error_quoting_its_line(closing_server, delay):
    url = closing_server(BUSY_LINE, delay)
    start = time.monotonic()
    with pytest.raises(PortError, match="closed the connection, saying: lifpga virtual board: "
                                        "busy: serving another client") as caught:
        Lifpga(url, timeout=2)
    assert caught.value.peer_text == BUSY_LINE.decode().strip()
    assert time.monotonic() - start < 1.5  # not a timeout


@pytest.mark.parametrize("text", [b"busy", b"busy: 5 chars", b"one at a time, please", b"ab"])
def test_the_peers_line_is_quoted_whole(closing_server, text):
    """pyserial's socket transport loses the bytes of a read that ends in the peer's close;
    the driver reads text a byte at a time, whatever its length."""
    with pytest.raises(PortError) as caught:
        Lifpga(closing_server(text), timeout=2)
    assert caught.value.peer_text == text.decode()


def test_a_line_that_arrives_as_the_port_opens_is_kept(closing_server, monkeypatch):
    """pyserial's socket transport drains its input when it opens; the line must survive."""
    import select

    connect = socket.create_connection

    def connect_then_wait(*args, **kwargs):
        conn = connect(*args, **kwargs)
        select.select([conn], [], [], 2)  # the line (and the close) have arrived
        time.sleep(0.05)
        return conn

    url = closing_server(BUSY_LINE)
    monkeypatch.setattr(socket, "create_connection", connect_then_wait)
    with pytest.raises(PortError, match="saying: lifpga virtual board: busy") as caught:
        Lifpga(url, timeout=2)
    assert caught.value.peer_text == BUSY_LINE.decode().strip()


def test_a_busy_peer_without_reset(closing_server):
    url = closing_server(BUSY_LINE)
    with Lifpga(url, timeout=2, reset=False) as driver:
        with pytest.raises(PortError, match="saying: lifpga virtual board: busy") as caught:
            driver.info()
    assert caught.value.peer_text.endswith("try again when it disconnects")


def test_a_peer_that_closes_silently(closing_server):
    with pytest.raises(PortError, match="closed the connection without a word") as caught:
        Lifpga(closing_server(b""), timeout=2)
    assert caught.value.peer_text is None


def test_a_peer_that_closes_after_binary_bytes_is_not_quoted(closing_server):
    noise = p.encode_frame(0x85, 1, b"\x00\xff")[:7] + b"\xa5\x00"
    with pytest.raises(PortError, match="without a word"):
        Lifpga(closing_server(noise), timeout=2)


# --- answers and arguments the driver refuses (defect 3) -----------------------------------------


def test_a_label_outside_the_class_range_is_a_protocol_error(refboard, digits):
    class WrongLabel(SlowBoard):
        def write(self, data):
            super().write(data)
            frames = p.FrameParser().feed(self.arrived)
            if frames and frames[-1].cmd in (CLASSIFY | 0x80, p.Command.CLASSIFY_SPARSE | 0x80):
                payload = bytearray(frames[-1].payload)
                payload[1] = 10  # the label byte, one past the last class
                self.arrived = p.encode_frame(frames[-1].cmd, frames[-1].seq, bytes(payload))

    driver = Lifpga(WrongLabel(refboard.new_device()), timeout=1)
    with pytest.raises(ProtocolError, match="label 10, outside the 10 classes 0 .. 9"):
        driver.classify(digits[0], steps=STEPS)
    with pytest.raises(ProtocolError, match="label 10"):
        list(driver.classify_many(digits[:2], steps=STEPS))


@pytest.mark.parametrize("kwargs", [{"steps": True}, {"steps": False}, {"mode": True}])
def test_booleans_are_not_steps_or_modes(refboard, digits, kwargs):
    with Lifpga(refboard.url, timeout=5) as driver:
        driver.info()
        counting = CountingTransport(driver.transport)
        driver.transport = counting
        with pytest.raises(ParameterError, match="must be an integer, got (True|False)"):
            driver.classify(digits[0], **kwargs)
        with pytest.raises(ParameterError, match="must be an integer"):
            list(driver.classify_many(digits[:2], **kwargs))
        assert counting.written == 0


@pytest.mark.parametrize("window", [0, 129, True, 2.0, "4"])
def test_bad_windows(lifpga, digits, window):
    with pytest.raises(ParameterError, match=r"window must be an integer in 1 \.\. 128"):
        list(lifpga.classify_many(digits[:2], window=window))


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), True, "2"])
def test_bad_timeouts(timeout):
    with pytest.raises(ParameterError, match="timeout must be a positive finite number"):
        Lifpga("loop://", timeout=timeout)


@pytest.mark.parametrize(("url", "match"), [
    ("socket://127.0.0.1", "needs a TCP port number"),
    ("socket://127.0.0.1:abc", "needs a TCP port number"),
    ("socket://127.0.0.1:0", "needs a TCP port number"),
    ("socket://127.0.0.1:99999", "needs a TCP port number"),
    ("socket://:5000", "has the form socket://HOST:PORT"),
    ("socket:/127.0.0.1:5000", "has the form socket://HOST:PORT"),
    ("socket://127.0.0.1:5000/x", "unexpected path or option"),
    ("socket://127.0.0.1:5000?speed=1", "unexpected path or option"),
])
def test_malformed_socket_urls(url, match):
    with pytest.raises(PortError, match=match) as caught:
        Lifpga(url, timeout=0.5)
    assert url in str(caught.value) and caught.value.__cause__ is None


def test_a_timeout_in_a_stream_says_how_long_the_request_takes(shipped, digits):
    driver, _ = held_board(shipped, 12_000_000)
    cycles = worst_cycles(shipped, 4096)
    with pytest.raises(LinkTimeout, match=f"4096 steps in rate mode takes at most {cycles:,}"):
        list(driver.classify_many(digits[:4], steps=4096, mode=MODE_RATE))


# --- the same driver against the gateware: the virtual board ------------------------------------


@pytest.fixture(scope="module")
def virtual_board(shipped_dir):
    from sim import board as vb

    with vb.build_board(shipped_dir).start() as running:
        yield running


@pytest.mark.slow
def test_defect_1_on_the_virtual_board(virtual_board, shipped, digits):
    """A 65535-step rate-mode request given up on: the next client (and the same one) is
    answered at once, with its own answers, instead of the late one or nothing for a minute."""
    net, _ = shipped
    with Lifpga(virtual_board.url, timeout=0.5) as first:
        expected = f"up to {worst_cycles(shipped, 65535) / 1e6:.3g} s; a virtual board simulates"
        with pytest.raises(LinkTimeout, match=expected.replace(".", r"\.")):
            first.classify(digits[0], steps=65535, mode=MODE_RATE)
        start = time.monotonic()
        assert first.classify(digits[1], steps=STEPS).label == layers.run(
            digits[1:2], net, STEPS, MODE_CURRENT).classes[-1, 0]
        assert time.monotonic() - start < 2
        # A request sent and never awaited: the client leaves the device computing it.
        first.transport.write(p.encode_frame(CLASSIFY, 99, p.pack_classify(digits[0], 65535, 1)))
        time.sleep(0.3)  # on the line before the disconnect, which discards what is not
    start = time.monotonic()
    with Lifpga(virtual_board.url, timeout=2) as second:
        assert second.info().clock_hz == 12_000_000
        assert [r.label for r in second.classify_many(digits[:6], steps=STEPS)] == \
            layers.run(digits[:6], net, STEPS, MODE_CURRENT).classes[-1].tolist()
    assert time.monotonic() - start < 3


@pytest.mark.slow
def test_defect_2_on_the_virtual_board(virtual_board):
    """A second client is refused with the board's own words, not a timeout."""
    with Lifpga(virtual_board.url, timeout=2) as first:
        start = time.monotonic()
        with pytest.raises(PortError, match="busy: serving another client") as caught:
            Lifpga(virtual_board.url, timeout=2)
        assert caught.value.peer_text == BUSY_LINE.decode().strip()
        assert time.monotonic() - start < 1.5
        assert first.info().inputs == 64  # the first client noticed nothing


@pytest.mark.slow
@pytest.mark.parametrize("cut", [6, 67])
def test_a_killed_clients_partial_frame_on_the_virtual_board(virtual_board, digits, cut):
    """The device keeps a partial frame across a disconnect; the next client, connecting
    within the board's idle timeout (about 20 ms), has its RESET swallowed by it: TIMEOUT
    (cut 6) or BAD_CRC (cut 67) comes back instead. The driver sends RESET again."""
    frame = p.encode_frame(CLASSIFY, 0x41, p.pack_classify(digits[0], STEPS, MODE_CURRENT))
    port = int(virtual_board.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as killed:
        killed.sendall(frame[:cut])
        time.sleep(0.005)  # the bytes reach the device's rx pin before the disconnect
    start = time.monotonic()
    link = MangledFirstWrite(driver_module._open_url(virtual_board.url, 3_000_000, 2),
                             lambda data: data)
    with Lifpga(link, timeout=2, owns_transport=True) as driver:
        assert driver.info().inputs == 64
    assert time.monotonic() - start < 1.0  # a RESET timed out would take the whole 2 s
    assert [f.cmd for f in link.frames] == [RESET, RESET, INFO]


# --- CLASSIFY encodings -------------------------------------------------------------------------

SPARSE = p.Command.CLASSIFY_SPARSE


def test_auto_sends_each_image_in_its_shorter_form(shipped, digits):
    """Against a version-2 device ``auto`` sends CLASSIFY_SPARSE when that frame is shorter,
    CLASSIFY otherwise (an image without zeros), mixed within one stream; every answer is
    golden's."""
    board = SlowBoard(device.ReferenceDevice(*shipped))
    images = [*digits[:6], np.full(64, 3), digits[6]]
    want = [p.classify_request(x)[0] for x in images]
    assert set(want) == {CLASSIFY, SPARSE}
    with Lifpga(board, timeout=5) as lif:
        single = [lif.classify(x, STEPS) for x in images]
        streamed = list(lif.classify_many(images, STEPS, MODE_RATE))
    assert board.commands == [RESET, INFO, *want, *want]
    for mode, results in ((MODE_CURRENT, single), (MODE_RATE, streamed)):
        ref = layers.run(np.array(images), board.device.net, STEPS, mode)
        assert device.agreement([r.label for r in results], [r.scores for r in results],
                                [r.spike_count for r in results], ref).all()


@pytest.mark.parametrize("where", ["driver", "call"])
def test_forced_encodings_send_one_command_and_agree(shipped, digits, where):
    answers = {}
    for encoding, command in (("dense", CLASSIFY), ("sparse", SPARSE)):
        board = SlowBoard(device.ReferenceDevice(*shipped))
        options = {"encoding": encoding}
        with Lifpga(board, timeout=5, **(options if where == "driver" else {})) as lif:
            call = options if where == "call" else {}
            answers[encoding] = [lif.classify(digits[0], STEPS, **call),
                                 *lif.classify_many(digits, STEPS, window=4, **call)]
        assert board.commands == [RESET, INFO] + [command] * (1 + len(digits))
    assert answers["dense"] == answers["sparse"]


def test_sparse_against_the_refboard(refboard, digits):
    with Lifpga(refboard.url, timeout=5, encoding="sparse") as lif:
        assert lif.info().version == p.PROTOCOL_VERSION >= p.SPARSE_VERSION
        got = list(lif.classify_many(digits, STEPS, window=8))
    ref = layers.run(np.asarray(digits), refboard.net, STEPS, MODE_CURRENT)
    assert [r.label for r in got] == ref.classes[-1].tolist()


def test_a_version_1_device_never_gets_classify_sparse(shipped, digits):
    """``auto`` sends CLASSIFY to a device whose INFO says version 1, even for an image
    CLASSIFY_SPARSE would carry in a fifth of the bytes; ``sparse`` is a ParameterError
    before anything is sent."""
    ref = device.ReferenceDevice(*shipped)
    ref.info = ref.info._replace(version=1)
    board = SlowBoard(ref)
    zeros = np.zeros(64, int)
    assert p.classify_request(zeros)[0] == SPARSE
    with Lifpga(board, timeout=5) as lif:
        lif.classify(zeros, STEPS)
        assert len(list(lif.classify_many([zeros, digits[0]], STEPS))) == 2
        with pytest.raises(ParameterError, match="protocol version 1, which has no "
                                                 "CLASSIFY_SPARSE.*needs version 2"):
            lif.classify(zeros, STEPS, encoding="sparse")
        with pytest.raises(ParameterError, match="protocol version 1"):
            next(lif.classify_many([zeros], STEPS, encoding="sparse"))
    with Lifpga(SlowBoard(ref), timeout=5, encoding="sparse") as lif:
        with pytest.raises(ParameterError, match="protocol version 1"):
            lif.classify(zeros, STEPS)
    assert board.commands == [RESET, INFO, CLASSIFY, CLASSIFY, CLASSIFY]


def test_unknown_encoding_is_a_parameter_error(refboard, digits):
    with pytest.raises(ParameterError, match="encoding must be one of dense, sparse, auto"):
        Lifpga(refboard.url, encoding="rle")
    with Lifpga(refboard.url, timeout=5) as lif:
        with pytest.raises(ParameterError, match="got 'RLE'"):
            lif.classify(digits[0], encoding="RLE")


def test_a_sparse_frame_above_max_payload_is_refused_before_sending(shipped):
    """For M = 1021 an image without zeros is 1024 bytes as CLASSIFY and 1034 as
    CLASSIFY_SPARSE: ``auto`` takes CLASSIFY; ``sparse`` is an ImageError, nothing sent."""
    ref = device.ReferenceDevice(*shipped)
    ref.info = ref.info._replace(inputs=1021)
    board = SlowBoard(ref)
    ones = np.ones(1021, int)
    assert len(p.pack_classify(ones)) == p.MAX_PAYLOAD < len(p.pack_classify_sparse(ones))
    with Lifpga(board, timeout=5) as lif:
        with pytest.raises(ImageError, match="1034 bytes as CLASSIFY_SPARSE, above the 1024"):
            lif.classify(ones, STEPS, encoding="sparse")
        assert p.classify_request(ones)[0] == CLASSIFY
    assert board.commands == [RESET, INFO]


@pytest.fixture
def stale_header_server():
    """A device that answers every RESET at once, but whose first bytes on the link are the
    6-byte header of a CLASSIFY answer whose body was lost (a UART's buffer overflowed while
    the port was closed): the host's parser then buffers for the 52 bytes the header
    announces, and every RESET answer falls into them."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(p.encode_frame(p.Command.CLASSIFY | p.RESPONSE_FLAG, 7,
                                            bytes(50))[:p.HEADER_BYTES])
                parser, conn_open = p.FrameParser(), True
                conn.settimeout(0.05)
                while conn_open and not stop.is_set():
                    try:
                        data = conn.recv(64)
                    except TimeoutError:
                        continue
                    conn_open = bool(data)
                    for frame in parser.feed(data):
                        if frame.cmd == RESET:
                            conn.sendall(p.encode_frame(RESET | p.RESPONSE_FLAG, frame.seq,
                                                        bytes([p.Status.OK])))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"socket://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    listener.close()


def test_a_stale_frame_header_does_not_swallow_the_reset_answers(stale_header_server):
    """The RESET answers behind a stale header are found when RESET is sent again: the
    parser resynchronises past the partial frame it buffers (it timed out without)."""
    start = time.monotonic()
    with Lifpga(stale_header_server, timeout=2) as driver:
        assert time.monotonic() - start < 1.0
        assert not driver.parser.pending()
