"""lifpga's golden model: the bit-accurate integer specification of the hardware.

Modules: :mod:`.constants` (every format, defined once), :mod:`.lfsr` (rate-encoder source),
:mod:`.model` (the integer pipeline), :mod:`.reference` (float seed network),
:mod:`.quantize`, :mod:`.image` (network images), :mod:`.data`, and the command lines
:mod:`.train` and :mod:`.evaluate`.
"""
