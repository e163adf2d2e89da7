"""hw/options.py: the argument types of the ``hw/`` and ``sim/`` command lines.

Each type is checked on its own and inside an ``argparse`` parser, where a refused value is a
usage error (exit status 2) naming the option. That the command lines use these types is
checked with each command line (tests/test_bitstream.py, tests/test_board.py, tests/test_run.py).
"""

import argparse

import pytest

from hw.options import port_number, positive_float, positive_int, seed_list

ACCEPTED = [
    (positive_int, "1", 1), (positive_int, "16", 16), (positive_int, " 7 ", 7),
    (positive_int, "+3", 3),
    (positive_float, "1", 1.0), (positive_float, "0.5", 0.5), (positive_float, "1e-9", 1e-9),
    (positive_float, "3000000", 3e6),
    (port_number, "0", 0), (port_number, "1", 1), (port_number, "8023", 8023),
    (port_number, "65535", 65535),
    (seed_list, "1", (1,)), (seed_list, "1,7", (1, 7)), (seed_list, "7, 1", (7, 1)),
    (seed_list, "0", (0,)), (seed_list, "2147483647", (2147483647,)),
]

REFUSED = [
    (positive_int, "0", "must be at least 1, not 0"),
    (positive_int, "-1", "must be at least 1, not -1"),
    (positive_int, "x", "'x' is not a whole number"),
    (positive_int, "1.5", "'1.5' is not a whole number"),
    (positive_int, "", "'' is not a whole number"),
    (positive_int, "1e3", "'1e3' is not a whole number"),
    (positive_float, "0", "must be above 0, not 0"),
    (positive_float, "0.0", "must be above 0, not 0.0"),
    (positive_float, "-50", "must be above 0, not -50"),
    (positive_float, "-0", "must be above 0, not -0"),
    (positive_float, "fast", "'fast' is not a number"),
    (positive_float, "nan", "must be above 0, not nan"),
    (port_number, "-1", "must be 0 to 65535, not -1"),
    (port_number, "65536", "must be 0 to 65535, not 65536"),
    (port_number, "http", "'http' is not a whole number"),
    (port_number, "80.0", "'80.0' is not a whole number"),
    (seed_list, "1,1", "a seed is given twice in '1,1'"),
    (seed_list, "-1", "must be 0 to 2147483647, not -1"),
    (seed_list, "2147483648", "must be 0 to 2147483647, not 2147483648"),
    (seed_list, "1,,2", "'' is not a whole number"),
    (seed_list, "1;2", "'1;2' is not a whole number"),
]


@pytest.mark.parametrize("parse, text, value", ACCEPTED)
def test_a_value_in_range_is_converted(parse, text, value):
    got = parse(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("parse, text, message", REFUSED)
def test_a_value_out_of_range_or_garbage_is_refused(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse(text)
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
