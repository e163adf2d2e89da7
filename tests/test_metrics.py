"""golden/metrics.py: per-class precision, recall, F1 and the confusion matrix, against
scikit-learn's definitions (its reference functions) on random and edge-case predictions."""

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from golden import metrics


@pytest.mark.parametrize("seed", range(5))
def test_class_report_equals_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, 300)
    # Mostly right, some classes never predicted (zero division) on some seeds.
    predicted = np.where(rng.random(300) < 0.8, y, rng.integers(0, 7, 300))
    report = metrics.class_report(y, predicted, 10)
    precision, recall, f1, support = precision_recall_fscore_support(
        y, predicted, labels=list(range(10)), zero_division=0)
    assert np.array_equal(report.confusion, confusion_matrix(y, predicted, labels=range(10)))
    assert np.allclose(report.precision, precision, rtol=0, atol=1e-12)
    assert np.allclose(report.recall, recall, rtol=0, atol=1e-12)
    assert np.allclose(report.f1, f1, rtol=0, atol=1e-12)
    assert np.array_equal(report.support, support)
    assert report.accuracy == np.mean(y == predicted)


def test_known_answer_and_text():
    report = metrics.class_report([0, 0, 1, 2], [0, 1, 1, 1], 3)
    assert report.confusion.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert report.precision.tolist() == [1.0, 1 / 3, 0.0]
    assert report.recall.tolist() == [0.5, 1.0, 0.0]
    assert report.f1[2] == 0.0 and report.accuracy == 0.5
    assert report.as_json()["per_class"][1] == {"class": 1, "precision": 1 / 3, "recall": 1.0,
                                                "f1": 0.5, "support": 1}
    again = metrics.ClassReport.from_json({"other": 1, **report.as_json()})
    assert again.accuracy == report.accuracy
    assert np.array_equal(again.confusion, report.confusion)
    for name in ("precision", "recall", "f1", "support"):
        assert np.array_equal(getattr(again, name), getattr(report, name)), name
    text = metrics.format_class_report(report)
    assert "confusion (rows: true, columns: predicted)" in text
    assert text.splitlines()[-1].split() == ["2", "0", "1", "0"]


@pytest.mark.parametrize("y, predicted, message", [
    ([0, 1], [0], "as many predictions"), ([], [], "at least one"),
    ([0, 3], [0, 1], "label lies outside"), ([0, 1], [0, -1], "prediction lies outside")])
def test_bad_input_is_a_clear_error(y, predicted, message):
    with pytest.raises(ValueError, match=message):
        metrics.class_report(y, predicted, 3)


def test_confusion_png(tmp_path):
    path = tmp_path / "c.png"
    metrics.write_confusion_png(np.eye(3, dtype=int) * 5, path, "title")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(OSError):
        metrics.write_confusion_png(np.eye(3, dtype=int), tmp_path / "no" / "c.png", "t")
