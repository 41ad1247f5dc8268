"""Confusion-matrix and ROC counts: computed by each client at fixed thresholds, checked and
summed by the aggregator, and equal to scikit-learn's on the pooled predictions."""

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_curve

from client_component.evaluation import ROC_THRESHOLDS, count_outcomes
from contract.errors import MalformedRequest
from server_component.evaluation_counts import EvaluationCounts, summed


def predictions(seed: int, n: int = 200):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p1 = np.clip(0.35 * y + rng.uniform(0, 0.65, n), 0, 1)
    return y, np.column_stack([1 - p1, p1])


def test_summed_client_counts_equal_the_pooled_predictions():
    clients = [predictions(seed) for seed in range(3)]
    total = summed(EvaluationCounts.parse(count_outcomes(y, p, 2), len(y)) for y, p in clients)
    y_all = np.concatenate([y for y, _ in clients])
    p_all = np.concatenate([p for _, p in clients])
    categories, matrix = total.confusion_matrix()
    assert categories == ["0", "1"]
    assert matrix == confusion_matrix(y_all, p_all.argmax(1)).tolist()
    fpr, tpr, thresholds = total.roc_curve()
    assert thresholds[0] == 1.0 and thresholds[-1] == 0.0
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    # Every point is a point of scikit-learn's exact curve at that threshold.
    for f, t, threshold in zip(fpr, tpr, thresholds, strict=True):
        predicted = p_all[:, 1] >= threshold
        assert t == pytest.approx(predicted[y_all == 1].mean(), abs=1e-6)
        assert f == pytest.approx(predicted[y_all == 0].mean(), abs=1e-6)
    exact_fpr, exact_tpr, _ = roc_curve(y_all, p_all[:, 1])
    assert np.trapezoid(tpr, fpr) == pytest.approx(np.trapezoid(exact_tpr, exact_fpr), abs=0.01)


def test_multiclass_counts_have_no_roc():
    y = np.array([0, 1, 2, 2])
    probs = np.eye(3)[[0, 2, 2, 1]]
    counts = EvaluationCounts.parse(count_outcomes(y, probs, 3), len(y))
    assert counts.roc_curve() is None
    assert counts.to_json() == {"confusion_matrix": {
        "categories": ["0", "1", "2"], "matrix": [[1, 0, 0], [0, 0, 1], [0, 1, 1]]}}


GOOD_ROC = {"thresholds": [0.0, 0.5, 1.0], "tp": [2, 1, 0], "fp": [2, 1, 0]}


@pytest.mark.parametrize("raw, message", [
    ([1, 2], "counts must be an object"),
    ({"confusion_matrix": [[1, 2]]}, "must be square"),
    ({"confusion_matrix": [[1, -2], [0, 1]]}, "integers in 0..2\\*\\*53"),
    ({"confusion_matrix": [[1.5, 2], [0, 1]]}, "integers in 0..2\\*\\*53"),
    ({"confusion_matrix": [[1, 2], [0]]}, "integers in 0..2\\*\\*53"),
    ({"confusion_matrix": [[2**64 - 1, 0], [0, 1]]}, "integers in 0..2\\*\\*53"),
    ({"confusion_matrix": [[1, 0], [0, 2]]}, "holds 3 examples, num_examples says 4"),
    ({"confusion_matrix": [[1, 1], [1, 1]], "roc": {**GOOD_ROC, "thresholds": [0.5, 0.1, 1]}},
     "strictly ascending"),
    ({"confusion_matrix": [[1, 1], [1, 1]], "roc": {**GOOD_ROC, "thresholds": [False, 1, 1]}},
     "strictly ascending"),
    ({"confusion_matrix": [[1, 1], [1, 1]], "roc": {**GOOD_ROC, "tp": [1]}},
     "one count per threshold"),
    ({"confusion_matrix": [[1, 1], [1, 1]], "roc": {**GOOD_ROC, "tp": [1, 2, 0]}},
     "tp must not grow with the threshold"),
    ({"confusion_matrix": [[1, 1], [1, 1]], "roc": {**GOOD_ROC, "fp": [9, 1, 0]}},
     "fp must not grow .* nor exceed the 2 examples"),
])
def test_bad_counts_are_refused_naming_the_field(raw, message):
    with pytest.raises(MalformedRequest, match=message):
        EvaluationCounts.parse(raw, num_examples=4)


def test_good_counts_pass():
    counts = EvaluationCounts.parse({"confusion_matrix": [[1, 1], [1, 1]], "roc": GOOD_ROC}, 4)
    assert counts.roc_curve() == ([0.0, 0.5, 1.0], [0.0, 0.5, 1.0], [1.0, 0.5, 0.0])


def test_the_thresholds_are_the_hundredths():
    assert len(ROC_THRESHOLDS) == 101 and ROC_THRESHOLDS[1] == 0.01
