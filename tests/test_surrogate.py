"""golden/surrogate.py: the trainable twin equals golden.model bit for bit in its quantised form,
training is deterministic, and a trained network loads as a valid image."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch (the `train` extra) is not installed")

from golden import data, image, model  # noqa: E402
from golden.surrogate import SpikeFn, SurrogateConfig, Twin, main, step_accuracy, train  # noqa: E402

SMALL = SurrogateConfig(neurons=32, steps=12, epochs=4, batch=64, timesteps=12)


@pytest.fixture(scope="module")
def digits():
    return data.load_split()


@pytest.fixture(scope="module")
def trained(digits):
    return train(SMALL, digits, progress=False)


def test_surrogate_gradient_is_the_fast_sigmoid():
    x = torch.tensor([-2.0, -0.1, 0.0, 0.5], requires_grad=True)
    s = SpikeFn.apply(x, 10.0)
    s.sum().backward()
    assert s.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert torch.allclose(x.grad, 1 / (1 + 10 * x.detach().abs()) ** 2)


@pytest.mark.parametrize("steps", [1, 5, 20])
def test_quantised_forward_equals_golden_bit_for_bit(trained, digits, steps):
    net, _ = trained
    net.quantised = True
    try:
        with torch.no_grad():
            scores = net(torch.tensor(digits.x_test[:64], dtype=torch.float32), steps)
    finally:
        net.quantised = False
    ref = model.run(digits.x_test[:64], net.to_network(), steps, 0)
    assert np.array_equal(scores.numpy().astype(np.int64), ref.scores)
    if steps > 1:  # from rest, no neuron can reach its threshold in one step
        assert ref.spike_count.sum() > 0  # the comparison covers spiking neurons


def test_training_is_deterministic(trained, digits):
    again, history = train(SMALL, digits, progress=False)
    first, first_history = trained
    assert history == first_history
    for name, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name


def test_training_learns_and_every_epoch_is_logged(trained, digits):
    net, history = trained
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    assert history[-1]["loss"] < history[0]["loss"]
    # chance is 10 %; four epochs of 32 neurons get far above it on validation data
    assert history[-1]["val_accuracy"] > 0.5


def test_integer_rate_mode_follows_the_twin(trained, digits):
    net, _ = trained
    twin = step_accuracy(net, digits.x_test, digits.y_test, 12, rate=True)[-1]
    result = model.run(digits.x_test, net.to_network(), 12, 1)
    assert abs((result.classes[-1] == digits.y_test).mean() - twin) < 0.1


def test_the_command_writes_a_valid_image(tmp_path):
    out = tmp_path / "img"
    assert main(["--out", str(out), "--neurons", "16", "--epochs", "1", "--steps", "4",
                 "--timesteps", "4", "--quiet"]) == 0
    net, manifest = image.load(out)
    meta = manifest["metadata"]
    assert net.neurons == 16 and meta["training_method"].startswith("surrogate-gradient")
    assert set(meta["test_accuracy"]) >= {"float_accuracy", "integer_current_accuracy",
                                          "integer_rate_accuracy"}
    assert meta["split"]["validation"] + meta["split"]["fit"] == 1198


def test_bad_sizes_are_usage_errors(tmp_path):
    with pytest.raises(SystemExit) as caught:
        main(["--out", str(tmp_path / "x"), "--neurons", "0"])
    assert caught.value.code == 2


def test_twin_shapes(digits):
    net = Twin(64, 10, 16, SMALL, rate_bits=4)
    assert net(torch.zeros(3, 64), 7).shape == (7, 3, 10)
