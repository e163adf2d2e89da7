"""lifpga's gateware (Amaranth HDL 0.5): the core and its lanes, the UART, the frame engine's
stages, the device top, the board tops and the bitstream build.

:mod:`.geometry` and :mod:`.options` are plain Python (no Amaranth), so the host driver may
import them; everything else needs the ``hdl`` extra.
"""
