"""Training flow of the seed network: a seeded run reproduces the shipped seed image
(``firmware/digits-seed``), and the targets hold."""

import numpy as np
import pytest

from firmware import DIGITS_SEED_IMAGE
from golden import image, train


@pytest.fixture(scope="module")
def shipped():
    """The shipped seed image, ``(net, manifest)`` (this file's image, not conftest's)."""
    return image.load(DIGITS_SEED_IMAGE)


@pytest.fixture(scope="module")
def trained():
    return train.train(train.TrainConfig(), log=lambda *_: None)


def test_seeded_training_reproduces_committed_hash(trained, shipped):
    _, manifest = shipped
    assert image.content_hash(trained.net) == manifest["hash"]


def test_retrained_network_equals_shipped_arrays(trained, shipped):
    net, _ = shipped
    for name in image.ARRAYS:
        assert np.array_equal(getattr(trained.net, name), getattr(net, name)), name


def test_accuracy_targets(trained):
    # Issue targets on the standard split, 64 steps.
    assert trained.metrics["float_accuracy"] >= 0.950
    assert trained.metrics["fixed_accuracy"] >= 0.955
    assert trained.metrics["rate_mode_accuracy"] >= 0.94


def test_manifest_records_metrics(trained, shipped):
    _, manifest = shipped
    recorded = manifest["metadata"]["test_accuracy"]
    for key, value in trained.metrics.items():
        assert recorded[key] == round(value, 6)


def test_check_mode_detects_a_different_image(tmp_path, capsys):
    # --check against an image trained with another seed must fail, and write nothing.
    other = train.train(train.TrainConfig(seed=1, neurons=32, timesteps=8), log=lambda *_: None)
    out = tmp_path / "img"
    image.save(out, other.net, 8, 0, 16, {})
    before = sorted(p.read_bytes() for p in out.iterdir())
    assert train.main(["--check", "--out", str(out), "--neurons", "32", "--timesteps", "8"]) == 1
    assert "differs" in capsys.readouterr().err
    assert sorted(p.read_bytes() for p in out.iterdir()) == before


def test_rate_bits_for():
    assert [train.rate_bits_for(m) for m in (1, 2, 15, 16, 17, 255, 256)] == [1, 1, 4, 4, 5, 8, 8]
