"""golden/data.py: the standard splits (digits built in, IDX data sets from a folder) and the
validation set carved from the training images."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import MNIST_DIR

from golden.data import IDX_PIXEL_MAX, carve_validation, load_split
from golden.idx import IdxError


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    raw = (struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
           + array.astype(np.uint8).tobytes())
    path.write_bytes(gzip.compress(raw) if gz else raw)


def fake_set(tmp_path: Path, train=12, test=5, rows=4, cols=3, labels_test=None, prefix="",
             test_word="t10k") -> Path:
    rng = np.random.default_rng(0)
    write_idx(tmp_path / f"{prefix}train-images-idx3-ubyte.gz",
              rng.integers(0, 256, (train, rows, cols)))
    write_idx(tmp_path / f"{prefix}train-labels-idx1-ubyte.gz", np.arange(train) % 3)
    write_idx(tmp_path / f"{prefix}{test_word}-images-idx3-ubyte",
              rng.integers(0, 256, (test, rows, cols)), gz=False)
    write_idx(tmp_path / f"{prefix}{test_word}-labels-idx1-ubyte",
              np.arange(labels_test or test) % 3, gz=False)
    return tmp_path


def test_digits_is_the_default_and_needs_no_folder():
    split = load_split()
    assert split.name == "digits" and split.x_test.shape == (599, 64)


def test_an_idx_set_from_a_folder(tmp_path):
    split = load_split("fashion-mnist", fake_set(tmp_path))
    assert split.x_train.shape == (12, 12) and split.x_test.shape == (5, 12)
    assert split.x_train.dtype == np.uint8 and split.y_train.dtype == np.int64
    assert split.pixel_max == IDX_PIXEL_MAX and split.name == "fashion-mnist"


def test_emnist_names_and_transposition(tmp_path):
    fake_set(tmp_path, prefix="emnist-digits-", test_word="test")
    plain = load_split("mnist", tmp_path)
    emnist = load_split("emnist-digits", tmp_path)
    first = plain.x_train[0].reshape(4, 3)
    assert np.array_equal(emnist.x_train[0].reshape(3, 4), first.T)


def test_idx_errors(tmp_path):
    with pytest.raises(IdxError, match="--data DIR"):
        load_split("mnist")
    with pytest.raises(IdxError, match="no such directory"):
        load_split("mnist", tmp_path / "nowhere")
    with pytest.raises(IdxError, match="no train-images file"):
        load_split("mnist", tmp_path)
    with pytest.raises(IdxError, match="5 test images but 4 labels"):
        load_split("mnist", fake_set(tmp_path, labels_test=4))
    with pytest.raises(ValueError, match="unknown data set"):
        load_split("cifar")


def test_mismatched_image_sizes(tmp_path):
    fake_set(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 2, 2)), gz=False)
    with pytest.raises(IdxError, match="12 pixels, test images 4"):
        load_split("mnist", tmp_path)


def test_carved_validation_is_stratified_and_reproducible():
    split = load_split()
    a = carve_validation(split.x_train, split.y_train, 0.25, seed=1)
    b = carve_validation(split.x_train, split.y_train, 0.25, seed=1)
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    x_fit, y_fit, x_val, y_val = a
    assert len(x_fit) + len(x_val) == len(split.x_train) and len(x_val) == 300
    assert abs(np.bincount(y_val) / len(y_val) - np.bincount(y_fit) / len(y_fit)).max() < 0.01
    with pytest.raises(ValueError, match="fraction"):
        carve_validation(split.x_train, split.y_train, 1.0)


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"MNIST IDX files not present at {MNIST_DIR}")
def test_mnist_standard_split():
    split = load_split("mnist", MNIST_DIR)
    assert split.x_train.shape == (60_000, 784) and split.x_test.shape == (10_000, 784)
    assert split.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
