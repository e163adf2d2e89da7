"""make golden: the report has the issue's fields and the pictures are written."""

import json

import numpy as np
import pytest

from firmware import DIGITS_IMAGE, DIGITS_SEED_IMAGE
from golden import evaluate


@pytest.mark.parametrize("image_dir", [DIGITS_IMAGE, DIGITS_SEED_IMAGE],
                         ids=["surrogate-trained", "seed"])
def test_report_fields_and_pictures(tmp_path, image_dir):
    # The seed image's float reference is rebuilt from its training record; the trained
    # image's is the curve its manifest records.
    out = tmp_path / "golden"
    docs = tmp_path / "docs"
    assert evaluate.main(["--image", str(image_dir), "--out", str(out), "--timesteps", "16",
                          "--docs", str(docs)]) == 0
    # --docs names the copy after the image's folder, so the README's curves do not collide.
    assert (docs / f"accuracy_vs_time_{image_dir.name}.png").read_bytes() == (
        out / "accuracy_vs_time.png").read_bytes()
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"] == "digits"
    assert report["split"] == {"train": 1198, "test": 599}
    assert report["timesteps"] == 16
    for key in ("float_accuracy", "fixed_accuracy", "rate_mode_accuracy", "images_per_s"):
        assert isinstance(report[key], float)
    assert len(report["accuracy_per_step"]) == 16
    assert report["accuracy_per_step"][-1] == report["fixed_accuracy"]
    first = next(i + 1 for i, a in enumerate(report["accuracy_per_step"]) if a >= 0.9)
    assert report["steps_to_90"] == first
    for name in ("accuracy_vs_time.png", "raster.png", "membrane.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_first_step_reaching():
    acc = np.array([0.1, 0.5, 0.9, 0.95])
    assert evaluate.first_step_reaching(acc, 0.9) == 3
    assert evaluate.first_step_reaching(acc, 0.99) is None


def test_bad_image_is_a_clear_error(tmp_path, capsys):
    assert evaluate.main(["--image", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 1
    assert "no such network image" in capsys.readouterr().err


def test_image_without_training_record_is_a_clear_error(tmp_path, capsys, shipped):
    from golden import image

    net, manifest = shipped
    image.save(tmp_path / "img", net, 8, 0, manifest["pixel_max"], {})
    assert evaluate.main(["--image", str(tmp_path / "img"), "--out", str(tmp_path)]) == 1
    assert "no training configuration" in capsys.readouterr().err


def test_a_surrogate_trained_image(tmp_path):
    """Images of golden.surrogate: the float curve is the one their manifest records."""
    import pytest

    pytest.importorskip("torch", reason="PyTorch (the `train` extra) is not installed")
    from golden import image, surrogate

    img = tmp_path / "img"
    assert surrogate.main(["--out", str(img), "--neurons", "16", "--epochs", "1", "--steps", "6",
                           "--timesteps", "6", "--quiet"]) == 0
    out = tmp_path / "golden"
    assert evaluate.main(["--image", str(img), "--out", str(out), "--timesteps", "8"]) == 0
    report = json.loads((out / "report.json").read_text())
    _, manifest = image.load(img)
    recorded = manifest["metadata"]["test_accuracy"]
    assert report["float_accuracy_per_step"] == recorded["float_current_accuracy_by_step"]
    assert [round(a, 4) for a in report["accuracy_per_step"][:6]] == recorded[
        "integer_current_accuracy_by_step"]
    assert len(report["accuracy_per_step"]) == 8 and report["dataset"] == "digits"
    assert (out / "accuracy_vs_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_idx_image_needs_its_folder(tmp_path, capsys, shipped):
    from golden import image

    net, manifest = shipped
    image.save(tmp_path / "img", net, 8, 0, manifest["pixel_max"],
               {"generated_by": evaluate.SURROGATE, "dataset": "mnist"})
    assert evaluate.main(["--image", str(tmp_path / "img"), "--out", str(tmp_path)]) == 1
    assert "--data DIR" in capsys.readouterr().err
