"""Data sets and the standard split used for every figure of the project.

The default data set is scikit-learn's bundled 8x8 digits (pixels 0..16), so nothing is
downloaded. Standard split: ``train_test_split(X, y, test_size=1/3, stratify=y,
random_state=0)``, giving 1198 training and 599 test images.

MNIST, Fashion-MNIST and EMNIST digits are read from IDX files in a folder the user names
(``data_dir``, the ``--data DIR`` of the commands), gzipped or not (:mod:`golden.idx`). Their
standard split is the published one: the training files (60,000 images for MNIST) and the test
files (10,000). Images are flattened row-major to (B, 784) ``uint8``, pixels 0..255. EMNIST's
files store each image transposed; it is transposed back so that all three read alike.

Hyperparameters are chosen on a validation set carved from the training images
(:func:`carve_validation`), never on the test images.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from golden.idx import IdxError, find_idx, read_idx

#: Largest pixel value of scikit-learn's digits.
DIGITS_PIXEL_MAX = 16


class Split(NamedTuple):
    """Images as (B, M) ``uint8`` arrays of integer pixels and labels as (B,) ``int64``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    pixel_max: int
    name: str


def load_digits_split() -> Split:
    """The standard split of scikit-learn's 8x8 digits."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=1 / 3, stratify=y, random_state=0)
    return Split(
        x_tr.astype(np.uint8), y_tr.astype(np.int64),
        x_te.astype(np.uint8), y_te.astype(np.int64),
        DIGITS_PIXEL_MAX, "digits",
    )


#: Largest pixel value of the IDX data sets (8-bit grey levels).
IDX_PIXEL_MAX = 255
#: Images per class-balanced test and training file of MNIST and Fashion-MNIST.
MNIST_SIZES = {"train": 60_000, "test": 10_000}


def _idx_part(directory: Path, kind: str, which: str) -> np.ndarray:
    """``kind`` is ``images`` or ``labels``; ``which`` is ``train`` or ``test`` (``t10k``)."""
    parts = [f"train-{kind}"] if which == "train" else [f"t10k-{kind}", f"test-{kind}"]
    errors = []
    for part in parts:
        try:
            return read_idx(find_idx(directory, part))
        except IdxError as exc:
            if "no " + part not in str(exc):
                raise
            errors.append(str(exc))
    raise IdxError("; ".join(errors))


def _idx_images_labels(directory: Path, which: str, transpose: bool) -> tuple[np.ndarray, ...]:
    images = _idx_part(directory, "images", which)
    labels = _idx_part(directory, "labels", which)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise IdxError(f"{directory}: {which} images must be a (B, rows, cols) u8 array, got "
                       f"{images.shape} {images.dtype}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise IdxError(f"{directory}: {which} labels must be a (B,) u8 array, got "
                       f"{labels.shape} {labels.dtype}")
    if len(images) != len(labels):
        raise IdxError(f"{directory}: {len(images):,} {which} images but {len(labels):,} "
                       f"labels")
    if transpose:
        images = images.transpose(0, 2, 1)
    return images.reshape(len(images), -1).copy(), labels.astype(np.int64)


def load_idx_split(data_dir: str | Path, name: str = "mnist") -> Split:
    """The published train/test split of an IDX data set in ``data_dir``."""
    if data_dir is None:
        raise IdxError(f"data set {name!r} is read from IDX files: name their folder "
                       f"(--data DIR)")
    directory = Path(data_dir)
    transpose = name.startswith("emnist")
    x_tr, y_tr = _idx_images_labels(directory, "train", transpose)
    x_te, y_te = _idx_images_labels(directory, "test", transpose)
    if x_tr.shape[1] != x_te.shape[1]:
        raise IdxError(f"{directory}: training images have {x_tr.shape[1]} pixels, test images "
                       f"{x_te.shape[1]}")
    return Split(x_tr, y_tr, x_te, y_te, IDX_PIXEL_MAX, name)


DATASETS = {"digits": None, "mnist": "idx", "fashion-mnist": "idx", "emnist-digits": "idx"}


def load_split(name: str = "digits", data_dir: str | Path | None = None) -> Split:
    """Load a data set's standard split by name; the IDX data sets need ``data_dir``."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    if DATASETS[name] is None:
        return load_digits_split()
    return load_idx_split(data_dir, name)


def carve_validation(x: np.ndarray, y: np.ndarray, fraction: float, seed: int = 0):
    """A stratified validation set carved from training images: ``(x_fit, y_fit, x_val,
    y_val)``, the same for the same arguments."""
    from sklearn.model_selection import train_test_split

    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must lie in (0, 1), got {fraction}")
    x_fit, x_val, y_fit, y_val = train_test_split(x, y, test_size=fraction, stratify=y,
                                                  random_state=seed)
    return x_fit, y_fit, x_val, y_val
