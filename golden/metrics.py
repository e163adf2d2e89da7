"""Per-class figures of a classification run: precision, recall, F1 and the confusion matrix.

One definition for every place that reports them (``lifpga classify --digits``, ``make sim``),
in plain NumPy, with scikit-learn's conventions: rows of the confusion matrix are the true
class and columns the predicted one; precision of class ``c`` is ``confusion[c, c]`` over
column ``c``'s sum, recall over row ``c``'s sum, F1 their harmonic mean; a ratio whose
denominator is zero is 0 (scikit-learn's ``zero_division=0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True, eq=False)  # arrays: no elementwise == for the whole record
class ClassReport:
    """The figures of one run over ``classes`` classes.

    Attributes
    ----------
    accuracy : float
        Fraction of images whose predicted class is the true one.
    precision, recall, f1 : numpy.ndarray
        (classes,) float arrays.
    support : numpy.ndarray
        (classes,) int array: images of each true class.
    confusion : numpy.ndarray
        (classes, classes) int array; ``confusion[t, p]`` counts images of true class ``t``
        predicted as ``p``.
    """

    accuracy: float
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    confusion: np.ndarray

    def per_class(self) -> list[dict]:
        """One JSON-ready record per class: class, precision, recall, f1, support."""
        return [{"class": c, "precision": float(self.precision[c]),
                 "recall": float(self.recall[c]), "f1": float(self.f1[c]),
                 "support": int(self.support[c])} for c in range(len(self.support))]

    def as_json(self) -> dict:
        """``{"per_class": [...], "confusion": [[...], ...]}`` for a report file."""
        return {"per_class": self.per_class(), "confusion": self.confusion.tolist()}

    @classmethod
    def from_json(cls, record: dict) -> ClassReport:
        """The report :meth:`as_json` wrote (``record`` may hold other keys as well)."""
        confusion = np.array(record["confusion"], dtype=np.int64)
        rows = record["per_class"]
        columns = (np.array([r[k] for r in rows]) for k in ("precision", "recall", "f1"))
        return cls(float(np.trace(confusion) / confusion.sum()), *columns,
                   np.array([r["support"] for r in rows], dtype=np.int64), confusion)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def class_report(y_true, y_pred, classes: int) -> ClassReport:
    """The per-class figures of predictions ``y_pred`` against labels ``y_true``.

    Raises
    ------
    ValueError
        If the arrays differ in length, are empty, or hold a class outside ``0 .. classes-1``.
    """
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if len(y_true) != len(y_pred) or not len(y_true):
        raise ValueError(f"need as many predictions as labels, at least one: {len(y_pred)} "
                         f"predictions, {len(y_true)} labels")
    for name, values in (("label", y_true), ("prediction", y_pred)):
        if values.min() < 0 or values.max() >= classes:
            raise ValueError(f"a {name} lies outside the {classes} classes 0 .. {classes - 1}")
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    hits = np.diag(confusion)
    precision = _ratio(hits, confusion.sum(axis=0))
    recall = _ratio(hits, confusion.sum(axis=1))
    f1 = _ratio(2 * precision * recall, precision + recall)
    return ClassReport(float(np.mean(y_true == y_pred)), precision, recall, f1,
                       confusion.sum(axis=1), confusion)


def format_class_report(report: ClassReport) -> str:
    """The per-class table and the confusion matrix as text (rows: true, columns: predicted)."""
    classes = range(len(report.support))
    lines = ["class  precision  recall     F1  support"]
    lines += [f"{r['class']:5}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:5.3f}  "
              f"{r['support']:7}" for r in report.per_class()]
    width = max(5, len(str(report.confusion.max())) + 1)
    lines += ["", "confusion (rows: true, columns: predicted)",
              "     " + "".join(f"{c:{width}}" for c in classes)]
    lines += [f"{c:5}" + "".join(f"{n:{width}}" for n in report.confusion[c]) for c in classes]
    return "\n".join(lines)


def write_confusion_png(confusion: np.ndarray, path: str | Path, title: str) -> None:
    """Draw a confusion matrix (rows: true class) with its counts into a PNG.

    Raises
    ------
    OSError
        If ``path`` cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(confusion, cmap="Blues")
    for (i, j), n in np.ndenumerate(confusion):
        if n:
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                    color="white" if n > confusion.max() / 2 else "black")
    ticks = range(confusion.shape[0])
    ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    try:
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)
