"""golden/idx.py: IDX files, gzipped or not, and every way one can be malformed."""

import gzip
import struct

import numpy as np
import pytest
from conftest import MNIST_DIR

from golden.idx import IdxError, find_idx, read_idx


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    head = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize(("dtype", "code"), [("u1", 0x08), ("i1", 0x09), ("i2", 0x0B),
                                             ("i4", 0x0C), ("f4", 0x0D), ("f8", 0x0E)])
@pytest.mark.parametrize("gz", [False, True])
def test_round_trip_every_type(tmp_path, dtype, code, gz):
    array = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    if dtype == "u1":
        array = np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
    raw = idx_bytes(array, code)
    path = tmp_path / ("x.idx.gz" if gz else "x.idx")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    assert np.array_equal(got, array)


def test_one_dimensional_labels(tmp_path):
    (tmp_path / "l").write_bytes(idx_bytes(np.array([3, 1, 4], np.uint8), 0x08))
    assert read_idx(tmp_path / "l").tolist() == [3, 1, 4]


@pytest.mark.parametrize(("raw", "message"), [
    (b"", "too short"),
    (b"\x00\x00\x08", "too short"),
    (b"\x01\x00\x08\x01" + bytes(8), "magic number"),
    (b"\x00\x00\x07\x01" + bytes(8), "magic number"),
    (b"\x00\x00\x08\x00" + bytes(8), "magic number"),
    (b"\x00\x00\x08\x03\x00\x00", "header cut short"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x05" + bytes(4), "truncated"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x02" + bytes(3), "1 bytes after"),
])
def test_malformed_files_are_named(tmp_path, raw, message):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(raw)
    with pytest.raises(IdxError, match=message) as caught:
        read_idx(path)
    assert str(path) in str(caught.value)


def test_damaged_gzip_and_missing_file(tmp_path):
    raw = gzip.compress(idx_bytes(np.zeros(100, np.uint8), 0x08))
    (tmp_path / "cut.gz").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(IdxError, match="gzip"):
        read_idx(tmp_path / "cut.gz")
    with pytest.raises(IdxError, match="no such file"):
        read_idx(tmp_path / "absent")
    with pytest.raises(IdxError, match="directory"):
        read_idx(tmp_path)


@pytest.mark.parametrize("name", ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz",
                                  "train-images.idx3-ubyte",
                                  "emnist-digits-train-images-idx3-ubyte.gz"])
def test_find_idx_names_in_use(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"")
    assert find_idx(tmp_path, "train-images").name == name


def test_find_idx_errors(tmp_path):
    with pytest.raises(IdxError, match="no such directory"):
        find_idx(tmp_path / "nowhere", "train-images")
    with pytest.raises(IdxError, match="no train-images file"):
        find_idx(tmp_path, "train-images")
    (tmp_path / "xtrain-images-idx3-ubyte").write_bytes(b"")  # no prefix separator
    with pytest.raises(IdxError, match="no train-images file"):
        find_idx(tmp_path, "train-images")
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"")
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(IdxError, match="several"):
        find_idx(tmp_path, "train-images")


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"MNIST IDX files not present at {MNIST_DIR}")
def test_the_published_mnist_files():
    images = read_idx(find_idx(MNIST_DIR, "t10k-images"))
    labels = read_idx(find_idx(MNIST_DIR, "t10k-labels"))
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10_000,) and np.bincount(labels).tolist()[:2] == [980, 1135]
