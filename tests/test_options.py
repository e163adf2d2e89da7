"""hw/options.py: the argument types of the ``hw/`` and ``sim/`` command lines.

Each type is checked on its own and inside an ``argparse`` parser, where a refused value is a
usage error (exit status 2) naming the option. That the command lines use these types is
checked with each command line (tests/test_bitstream.py, tests/test_board.py, tests/test_run.py).
"""

import argparse

import pytest

from hw.options import port_number, positive_float, positive_int


@pytest.mark.parametrize("text, value", [("1", 1), ("16", 16), (" 7 ", 7), ("+3", 3)])
def test_positive_int_takes_whole_numbers_from_one(text, value):
    assert positive_int(text) == value and type(positive_int(text)) is int


@pytest.mark.parametrize("text, message", [
    ("0", "must be at least 1, not 0"), ("-1", "must be at least 1, not -1"),
    ("x", "'x' is not a whole number"), ("1.5", "'1.5' is not a whole number"),
    ("", "'' is not a whole number"), ("1e3", "'1e3' is not a whole number")])
def test_positive_int_refuses(text, message):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        positive_int(text)
    assert str(info.value) == message


@pytest.mark.parametrize("text, value", [("1", 1.0), ("0.5", 0.5), ("1e-9", 1e-9),
                                         ("3000000", 3e6)])
def test_positive_float_takes_numbers_above_zero(text, value):
    assert positive_float(text) == value and type(positive_float(text)) is float


@pytest.mark.parametrize("text, message", [
    ("0", "must be above 0, not 0"), ("0.0", "must be above 0, not 0.0"),
    ("-50", "must be above 0, not -50"), ("-0", "must be above 0, not -0"),
    ("fast", "'fast' is not a number"), ("nan", "must be above 0, not nan")])
def test_positive_float_refuses(text, message):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        positive_float(text)
    assert str(info.value) == message


@pytest.mark.parametrize("text, value", [("0", 0), ("1", 1), ("8023", 8023), ("65535", 65535)])
def test_port_number_takes_zero_to_65535(text, value):
    assert port_number(text) == value


@pytest.mark.parametrize("text, message", [
    ("-1", "must be 0 to 65535, not -1"), ("65536", "must be 0 to 65535, not 65536"),
    ("http", "'http' is not a whole number"), ("80.0", "'80.0' is not a whole number")])
def test_port_number_refuses(text, message):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        port_number(text)
    assert str(info.value) == message


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tool")
    p.add_argument("--lanes", type=positive_int, default=16)
    p.add_argument("--target-mhz", type=positive_float, default=100.0)
    p.add_argument("--port", type=port_number, default=0)
    return p


def test_in_a_parser_good_values_arrive_converted():
    args = parser().parse_args(["--lanes", "4", "--target-mhz", "62.5", "--port", "9000"])
    assert (args.lanes, args.target_mhz, args.port) == (4, 62.5, 9000)
    assert vars(parser().parse_args([])) == {"lanes": 16, "target_mhz": 100.0, "port": 0}


@pytest.mark.parametrize("argv, message", [
    (["--lanes", "0"], "argument --lanes: must be at least 1, not 0"),
    (["--lanes", "four"], "argument --lanes: 'four' is not a whole number"),
    (["--target-mhz", "-50"], "argument --target-mhz: must be above 0, not -50"),
    (["--port", "70000"], "argument --port: must be 0 to 65535, not 70000")])
def test_in_a_parser_a_refused_value_is_a_usage_error_naming_the_option(capsys, argv, message):
    # 0 lanes once silently became the board's default (`args.lanes or board.lanes`).
    with pytest.raises(SystemExit) as info:
        parser().parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: tool") and err.rstrip().endswith(f"tool: error: {message}")
