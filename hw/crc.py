"""The frame CRC for the gateware: :mod:`golden.protocol`'s CRC as an ``amaranth.lib.crc``
algorithm.

The host computes the CRC in plain Python (:func:`golden.protocol.crc16`); the gateware's CRC
processors (the frame parser checks it as bytes arrive, the responder computes it as they
leave) are built from :data:`CRC_ALGORITHM`. It is Amaranth's catalogue entry, checked here
against the protocol's parameters, and ``tests/test_crc.py`` proves both compute the same
values.
"""

from amaranth.lib.crc import catalog

from golden import protocol

__all__ = ["CRC_ALGORITHM"]

#: CRC-16/CCITT-FALSE, a.k.a. CRC-16/IBM-3740.
CRC_ALGORITHM = catalog.CRC16_IBM_3740

_PARAMETERS = (protocol.CRC_WIDTH, protocol.CRC_POLY, protocol.CRC_INIT, protocol.CRC_REFIN,
               protocol.CRC_REFOUT, protocol.CRC_XOROUT)
if (CRC_ALGORITHM.crc_width, CRC_ALGORITHM.polynomial, CRC_ALGORITHM.initial_crc,
        CRC_ALGORITHM.reflect_input, CRC_ALGORITHM.reflect_output,
        CRC_ALGORITHM.xor_output) != _PARAMETERS:
    raise ImportError("amaranth.lib.crc's CRC16_IBM_3740 differs from golden.protocol's CRC")
