"""sim/refboard.py: the reference device served over TCP, one device per connection."""

import random
import socket
import struct
import subprocess
import sys
import time

import pytest

from firmware.driver import Lifpga, PortError
from golden import layers
from golden import protocol as p
from golden.constants import MODE_CURRENT
from golden.data import load_split
from sim.refboard import RefBoard

STEPS = 16


@pytest.fixture(scope="module")
def digits():
    return load_split().x_test[:20]


def exchange(conn, frames: bytes, count: int) -> list:
    """Send ``frames`` on a raw connection and parse ``count`` answers."""
    conn.sendall(frames)
    parser, got = p.FrameParser(), []
    while len(got) < count:
        data = conn.recv(65536)
        assert data, "the board closed the connection"
        got += parser.feed(data)
    return got


def test_reset_is_answered_ok_at_once(refboard):
    """RESET (LEN 0) gets CMD 0x83, its SEQ and STATUS OK; the next request is served."""
    with socket.create_connection(("127.0.0.1", refboard.port)) as conn:
        conn.settimeout(5)
        reset, info = p.encode_frame(p.Command.RESET, 41), p.encode_frame(p.Command.INFO, 42)
        got = exchange(conn, reset + info, 2)
    assert got[0] == p.Frame(p.Command.RESET | 0x80, 41, bytes([p.Status.OK]))
    assert (got[1].seq, p.unpack_info(got[1].payload).inputs) == (42, 64)


def test_importing_the_refboard_loads_no_hdl():
    code = ("import sys, sim.refboard; bad = sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('amaranth', 'cocotb', 'hw')); print(bad); "
            "sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, f"importing sim.refboard loads {done.stdout.strip()}"


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
    ref = layers.run(digits[:5], refboard.net, STEPS, MODE_CURRENT)
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


def test_refboard_stops_cleanly(shipped_dir):
    board = RefBoard(shipped_dir)
    with board as url:
        thread = board.thread
        with Lifpga(url, timeout=5) as driver:
            driver.info()
    assert not thread.is_alive()
    with pytest.raises(PortError):
        Lifpga(url)  # nobody listens any more


def test_refboard_stops_while_a_client_does_not_read(shipped_dir):
    """A client that sends requests and never reads the replies cannot block stop()."""
    board = RefBoard(shipped_dir)
    board.start()
    thread = board.thread
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
    ref = layers.run(digits[:1], refboard.net, STEPS, MODE_CURRENT)
    with Lifpga(refboard.url, timeout=2) as first, Lifpga(refboard.url, timeout=2) as second:
        assert second.info().inputs == 64
        assert first.info().inputs == 64
        assert list(second.classify(digits[0], steps=STEPS).scores) == ref.scores[-1, 0].tolist()


def test_refboard_port_in_use_closes_its_socket(monkeypatch, shipped_dir):
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
        board = RefBoard(shipped_dir, port=port)
        with pytest.raises(refboard_module.RefBoardError,
                           match=f"cannot listen on 127.0.0.1:{port}"):
            board.start()
        monkeypatch.undo()
    assert created and all(s.fileno() == -1 for s in created)
    board.stop()  # harmless after a failed start


def test_refboard_cli_port_in_use(capsys, shipped_dir):
    from sim.refboard import main as refboard_main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code = refboard_main(["--image", str(shipped_dir), "--port", str(port)])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith(f"refboard: error: cannot listen on 127.0.0.1:{port}")
    assert err.count("\n") == 1 and "Traceback" not in err
