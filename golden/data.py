"""Data sets and the standard split used for every figure of the project.

The default data set is scikit-learn's bundled 8x8 digits (pixels 0..16), so nothing is
downloaded. Standard split: ``train_test_split(X, y, test_size=1/3, stratify=y,
random_state=0)``, giving 1198 training and 599 test images.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

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


DATASETS = {"digits": load_digits_split}


def load_split(name: str = "digits") -> Split:
    """Load a data set's standard split by name."""
    try:
        loader = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}") from None
    return loader()
