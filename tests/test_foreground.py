"""sim/foreground.py: ``run_in_foreground``, which serves a board from a command line.

With stand-in ``start``/``wait``/``stop`` callables: what is printed, the exit status, and that
``stop`` runs exactly once whenever ``start`` has returned. Then Ctrl-C for real (SIGINT to
this process during the default wait), and ``python -m sim.refboard``, whose ``main`` is built
on it, started, used by the driver and stopped with SIGINT.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from firmware.driver import Lifpga
from sim.foreground import run_in_foreground

ROOT = Path(__file__).resolve().parent.parent


class Calls:
    """Records the order in which the callables ran."""

    def __init__(self):
        self.log = []

    def start(self, line="socket://127.0.0.1:1234"):
        def start():
            self.log.append("start")
            return line
        return start

    def stop(self):
        self.log.append("stop")

    def wait_then(self, outcome=None):
        def wait():
            self.log.append("wait")
            if outcome is not None:
                raise outcome
        return wait


def test_serves_until_wait_returns_then_stops(capsys):
    calls = Calls()
    assert run_in_foreground("board", calls.start(), calls.stop, wait=calls.wait_then()) == 0
    assert calls.log == ["start", "wait", "stop"]
    assert capsys.readouterr() == ("socket://127.0.0.1:1234\n", "")


def test_ctrl_c_stops_and_exits_zero(capsys):
    calls = Calls()
    assert run_in_foreground("board", calls.start(), calls.stop,
                             wait=calls.wait_then(KeyboardInterrupt())) == 0
    assert calls.log == ["start", "wait", "stop"]
    assert capsys.readouterr() == ("socket://127.0.0.1:1234\n", "")


def test_a_failed_start_is_reported_and_nothing_is_stopped(capsys):
    calls = Calls()

    def fail():
        raise OSError("cannot listen on 127.0.0.1:80: Permission denied")

    assert run_in_foreground("refboard", fail, calls.stop, wait=calls.wait_then()) == 1
    assert calls.log == []
    assert capsys.readouterr() == (
        "", "refboard: error: cannot listen on 127.0.0.1:80: Permission denied\n")


def test_only_the_named_errors_count_as_a_failed_start(capsys):
    class BoardError(RuntimeError):
        pass

    def fail():
        raise BoardError("no executable")

    calls = Calls()
    assert run_in_foreground("board", fail, calls.stop, errors=(BoardError,)) == 1
    assert capsys.readouterr().err == "board: error: no executable\n"
    with pytest.raises(BoardError):  # by default a start raising BoardError is a defect
        run_in_foreground("board", fail, calls.stop)
    assert calls.log == []


def test_stop_runs_even_when_wait_fails(capsys):
    calls = Calls()
    with pytest.raises(RuntimeError, match="the board died"):
        run_in_foreground("board", calls.start(), calls.stop,
                          wait=calls.wait_then(RuntimeError("the board died")))
    assert calls.log == ["start", "wait", "stop"]


def test_sigint_during_the_default_wait(capsys):
    """The default wait sleeps until Ctrl-C: SIGINT, sent once the board has started."""
    calls = Calls()
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))

    def start():
        timer.start()
        return calls.start()()

    began = time.monotonic()
    # A shell without job control starts background commands with SIGINT ignored, and Python
    # then installs no KeyboardInterrupt handler: the test sets it, so it cannot hang there.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert run_in_foreground("board", start, calls.stop) == 0
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert 0.3 <= time.monotonic() - began < 3
    assert calls.log == ["start", "stop"]
    assert capsys.readouterr().out == "socket://127.0.0.1:1234\n"


def test_refboard_command_serves_until_sigint(shipped_dir):
    """``python -m sim.refboard``: the URL on stdout, a working board, exit 0 on Ctrl-C."""
    # SIGINT at its default in the child, whatever this process inherited (see above).
    process = subprocess.Popen([sys.executable, "-m", "sim.refboard", "--image", str(shipped_dir)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("socket://127.0.0.1:"), process.stderr.read()
        with Lifpga(url, timeout=5) as board:
            assert board.info().inputs == 64
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == "" and process.stderr.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("argv, message", [
    (["--lanes", "0"], "argument --lanes: must be at least 1, not 0"),
    (["--baud", "0"], "argument --baud: must be at least 1, not 0"),
    (["--port", "-1"], "argument --port: must be 0 to 65535, not -1")])
def test_refboard_command_refuses_bad_options_before_serving(capsys, monkeypatch, argv, message):
    # --lanes 0 and --baud 0 used to be served (INFO reporting 0 lanes), --port -1 a traceback.
    from sim import refboard

    def serve(*args, **kwargs):
        raise AssertionError(f"{argv} was accepted and the board started")

    monkeypatch.setattr(refboard, "run_in_foreground", serve)
    with pytest.raises(SystemExit) as info:
        refboard.main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_refboard_command_reports_a_missing_image(capsys):
    from sim.refboard import main

    assert main(["--image", "/nonexistent"]) == 1
    assert capsys.readouterr() == ("", "refboard: error: /nonexistent: no such network image "
                                       "directory\n")
