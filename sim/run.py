"""``make sim``: classify the test digits through the simulated hardware and compare with golden.

The hardware core (Amaranth RTL, Verilator model) is the next piece of work; until it exists this
command says so and fails rather than pretending. ``make golden`` runs the golden model today.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("make sim: the simulated hardware is not built yet: hw/ holds no core so far.\n"
          "The golden model (the specification the hardware will be compared with) runs now:\n"
          "  make golden    accuracy, accuracy-vs-time curve and plots under build/golden/",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
