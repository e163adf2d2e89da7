"""`make sim`'s command line end to end on a few digits: table, report fields, exit codes."""

import json
from pathlib import Path

import pytest

from sim import run

SHIPPED = Path(__file__).resolve().parent.parent / "firmware" / "digits"


@pytest.mark.parametrize("via", ["board", "core"])
def test_make_sim_on_a_few_digits(tmp_path, capsys, via):
    # Same designs as tests/test_core_sim.py and tests/test_board.py (shipped image, 16
    # lanes): the models are reused.
    code = run.main(["--image", str(SHIPPED), "--limit", "6", "--steps", "8",
                     "--out", str(tmp_path), "--via", via])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "agreement" in out and "current" in out and "rate" in out
    report = json.loads((tmp_path / "report.json").read_text())
    for key in ("dataset", "images", "timesteps", "accuracy", "golden_accuracy", "agreement",
                "cycles_per_image", "lanes", "neurons", "wall_s"):
        assert key in report, key
    assert report["images"] == 6 and report["timesteps"] == 8
    assert report["agreement"] == 1.0 and report["lanes"] == 16 and report["neurons"] == 256
    assert set(report["modes"]) == {"current", "rate"}
    assert report["modes"]["rate"]["agreement"] == 1.0
    assert report["via"] == via
    if via == "board":
        assert report["modes"]["rate"]["cycles_agreement"] == 1.0
    # The link figures of docs/PROTOCOL.md: 75 bytes out, 58 back, at 3 Mbaud.
    assert report["link"] == {"baud": 3_000_000, "request_bytes": 75, "response_bytes": 58,
                              "images_per_s_one_at_a_time": 2255.6,
                              "images_per_s_pipelined": 4000.0}
    assert "4,000 pipelined" in out


def test_bad_image_is_a_clear_error(tmp_path, capsys):
    code = run.main(["--image", str(tmp_path / "missing"), "--out", str(tmp_path)])
    assert code != 0
    assert "no such network image" in capsys.readouterr().err
