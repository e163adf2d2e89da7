"""firmware/driver.py against the reference board (sim/refboard.py) over socket://."""

import random
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest

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
)
from golden import model
from golden import protocol as p
from golden.constants import MODE_CURRENT, MODE_RATE
from golden.data import load_split
from sim.refboard import RefBoard

SHIPPED = Path(__file__).resolve().parent.parent / "firmware" / "digits"
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
    ref = model.run(digits, refboard.net, STEPS, mode)
    for b, pixels in enumerate(digits):
        got = lifpga.classify(pixels, steps=STEPS, mode=mode)
        assert got.label == ref.classes[-1, b]
        assert list(got.scores) == ref.scores[-1, b].tolist()
        assert got.spike_count == ref.spike_count[b]


def test_classify_default_steps_and_square_image(lifpga, refboard, digits):
    ref = model.run(digits[:1], refboard.net, refboard.manifest["timesteps"], MODE_CURRENT)
    got = lifpga.classify(digits[0].reshape(8, 8))
    assert list(got.scores) == ref.scores[-1, 0].tolist()


@pytest.mark.parametrize("window", [1, 4, 16])
def test_classify_many_equals_sequential(lifpga, digits, window):
    sequential = [lifpga.classify(x, steps=STEPS, mode=MODE_RATE) for x in digits]
    pipelined = list(lifpga.classify_many(digits, steps=STEPS, mode=MODE_RATE, window=window))
    assert pipelined == sequential


def test_classify_many_keeps_requests_in_flight(refboard, digits):
    """With window 4, four requests go out before the first response is read, and never more."""
    with Lifpga(refboard.url, timeout=5) as driver:
        driver.info()
        sent, in_flight = [], []
        send, receive = driver._send, driver._receive

        def counting_send(cmd, payload):
            sent.append(send(cmd, payload))
            return sent[-1]

        def counting_receive(*args):
            in_flight.append(len(args[1]))
            return receive(*args)

        driver._send, driver._receive = counting_send, counting_receive
        assert len(list(driver.classify_many(digits[:9], steps=STEPS, window=4))) == 9
        assert in_flight == [4, 4, 4, 4, 4, 4, 3, 2, 1]
        assert len(set(sent)) == 9


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


class HeldReplies:
    """A reference device whose replies arrive only when released, not at once.

    ``reset_input_buffer`` drops only bytes that have arrived, as on a real link, so a late
    answer still on the way survives it.
    """

    def __init__(self, device):
        self.device, self.arrived, self.on_the_way, self.hold = device, b"", [], False
        self.let_through = 0  # with hold: replies that still arrive at once

    def write(self, data):
        self.on_the_way.append(self.device.receive(data))
        if not self.hold or self.let_through:
            self.let_through = max(0, self.let_through - 1)
            self.release()

    def release(self):
        self.arrived += b"".join(self.on_the_way)
        self.on_the_way.clear()

    def read(self, size=1):
        out, self.arrived = self.arrived[:size], self.arrived[size:]
        if not out:
            time.sleep(0.005)
        return out

    def reset_input_buffer(self):
        self.arrived = b""


def test_late_answers_after_an_abandoned_stream_are_dropped(refboard, digits):
    """Breaking out of classify_many leaves requests in flight; their answers do no harm."""
    ref = model.run(digits, refboard.net, STEPS, MODE_CURRENT)
    link = HeldReplies(refboard.new_device())
    driver = Lifpga(link, timeout=1)
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


def test_late_answer_after_a_link_timeout_is_dropped(refboard, digits):
    ref = model.run(digits[:2], refboard.net, STEPS, MODE_CURRENT)
    link = HeldReplies(refboard.new_device())
    driver = Lifpga(link, timeout=0.2)
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


def test_break_out_of_classify_many_against_the_refboard(lifpga, refboard, digits):
    ref = model.run(digits, refboard.net, STEPS, MODE_CURRENT)
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
    with Lifpga(silent_server, timeout=0.3) as driver:
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

    with Lifpga(SocketTransport(), timeout=0.3) as driver:
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
        Lifpga(Scripted(bytes(bad)), timeout=0.5).info()
    other_seq = p.encode_frame(p.Command.INFO | 0x80, 9, b"\x00" * 57)
    with pytest.raises(ProtocolError, match="seq 9"):
        Lifpga(Scripted(other_seq), timeout=0.5).info()
    short = p.encode_frame(p.Command.INFO | 0x80, 0, b"\x00" * 5)
    with pytest.raises(ProtocolError, match="not an OK INFO response: 5 bytes") as caught:
        Lifpga(Scripted(short), timeout=0.5).info()
    assert isinstance(caught.value.__cause__, ValueError)  # from golden.protocol.unpack_info


def test_fuzz_then_valid_frames_are_answered(refboard, digits):
    """~2000 random bytes and malformed frames, then valid frames: all answered, none hangs."""
    rng = random.Random(1234)
    valid = p.encode_frame(p.Command.CLASSIFY, 1, p.pack_classify(digits[0], STEPS, 0))
    chunks = []
    for _ in range(60):
        kind = rng.randrange(4)
        if kind == 0:
            chunks.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))))
        elif kind == 1:  # a valid frame with one byte flipped
            frame = bytearray(valid)
            frame[rng.randrange(2, len(frame))] ^= 1 << rng.randrange(8)
            chunks.append(bytes(frame))
        elif kind == 2:  # a header with an oversized LEN
            chunks.append(p.SYNC + bytes([2, rng.randrange(256)]) + struct.pack("<H", 0xF000))
        else:  # a frame cut short
            chunks.append(valid[:rng.randrange(1, len(valid))])
    garbage = b"".join(chunks)[:2000]
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", refboard.port)) as conn:
        conn.settimeout(0.05)
        conn.sendall(garbage)
        time.sleep(refboard.idle_timeout + 0.2)  # a cut frame at the end times out
        answers = p.FrameParser()
        replies = []
        while True:
            try:
                data = conn.recv(65536)
            except TimeoutError:
                break
            replies += answers.feed(data)
        # The device answers garbage only with well-formed error or result frames.
        assert replies
        assert all(isinstance(r, p.Frame) and r.cmd & 0x80 for r in replies)
        conn.settimeout(5)
        frames = [p.encode_frame(p.Command.CLASSIFY, 200 + b, p.pack_classify(x, STEPS, 0))
                  for b, x in enumerate(digits[:5])] + [p.encode_frame(p.Command.INFO, 250)]
        conn.sendall(b"".join(frames))
        got = []
        while len(got) < len(frames):
            data = conn.recv(65536)
            assert data, "the board closed the connection"
            got += answers.feed(data)
    ref = model.run(digits[:5], refboard.net, STEPS, MODE_CURRENT)
    assert [f.seq for f in got] == [200, 201, 202, 203, 204, 250]
    for b, frame in enumerate(got[:5]):
        result = p.unpack_classification(frame.payload, 10)
        assert list(result.scores) == ref.scores[-1, b].tolist()
    assert p.unpack_info(got[-1].payload).inputs == 64
    assert time.monotonic() - start < 10
    # The board serves the next connection.
    with Lifpga(refboard.url, timeout=5) as driver:
        assert driver.info().inputs == 64


def test_refboard_idle_timeout(refboard):
    with socket.create_connection(("127.0.0.1", refboard.port)) as conn:
        conn.settimeout(2)
        conn.sendall(p.encode_frame(p.Command.INFO, 77)[:5])
        (reply,) = p.FrameParser().feed(conn.recv(64))
        assert (reply.seq, reply.payload) == (77, bytes([p.Status.TIMEOUT]))


def test_refboard_stops_cleanly():
    board = RefBoard(SHIPPED)
    with board as url:
        thread = board._thread
        with Lifpga(url, timeout=5) as driver:
            driver.info()
    assert not thread.is_alive()
    with pytest.raises(PortError):
        Lifpga(url)  # nobody listens any more


def test_refboard_stops_while_a_client_does_not_read():
    """A client that sends requests and never reads the replies cannot block stop()."""
    board = RefBoard(SHIPPED)
    board.start()
    thread = board._thread
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", board.port))
    client.settimeout(0.2)
    request = p.encode_frame(p.Command.INFO, 1) * 512
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:  # until the board stops taking requests
            client.sendall(request)
    except (TimeoutError, OSError):
        pass
    time.sleep(0.2)
    clients = list(board._clients)
    assert clients
    start = time.monotonic()
    board.stop()
    assert time.monotonic() - start < 2
    assert not thread.is_alive()
    assert not any(t.is_alive() for t in clients)
    client.close()


def test_refboard_serves_concurrent_clients(refboard, digits):
    ref = model.run(digits[:1], refboard.net, STEPS, MODE_CURRENT)
    with Lifpga(refboard.url, timeout=2) as first, Lifpga(refboard.url, timeout=2) as second:
        assert second.info().inputs == 64
        assert first.info().inputs == 64
        assert list(second.classify(digits[0], steps=STEPS).scores) == ref.scores[-1, 0].tolist()


def test_refboard_port_in_use_closes_its_socket(monkeypatch):
    import sim.refboard as refboard_module

    created = []

    class Recording(socket.socket):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            created.append(self)

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        monkeypatch.setattr(refboard_module.socket, "socket", Recording)
        board = RefBoard(SHIPPED, port=port)
        with pytest.raises(refboard_module.RefBoardError,
                           match=f"cannot listen on 127.0.0.1:{port}"):
            board.start()
        monkeypatch.undo()
    assert created and all(s.fileno() == -1 for s in created)
    board.stop()  # harmless after a failed start


def test_refboard_cli_port_in_use(capsys):
    from sim.refboard import main as refboard_main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code = refboard_main(["--image", str(SHIPPED), "--port", str(port)])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith(f"refboard: error: cannot listen on 127.0.0.1:{port}")
    assert err.count("\n") == 1 and "Traceback" not in err
