"""lifpga's golden model: the bit-accurate integer specification of the hardware.

Modules: :mod:`.constants` (every format, defined once), :mod:`.lfsr` (rate-encoder source),
:mod:`.model` (the integer pipeline), :mod:`.reference` (float seed network),
:mod:`.quantize`, :mod:`.image` (network images), :mod:`.data` and :mod:`.idx` (data sets),
:mod:`.protocol` (the serial protocol) and :mod:`.device` (the device as a reference model),
and the command lines :mod:`.train` (seed network), :mod:`.surrogate` (surrogate-gradient
training, needs the ``train`` extra) and :mod:`.evaluate`.
"""
