"""Multi-label final evaluations at the aggregator: per-finding counts checked and summed
(hostile ones refused, state unchanged), shown in the report as a per-finding table and ROC
curves, and logged to KFP's Metrics as pooled per-finding and macro AUC."""

import numpy as np
import pytest

from client_component.evaluation import count_multi_label_outcomes
from contract.errors import MalformedRequest
from server_component.evaluation_counts import EvaluationCounts, MultiLabelCounts
from server_component.final_evaluation import FinalEvaluations
from server_component.report import ReportData, render_report
from server_component.run import AggregatorResult
from server_component.task import export

NAMES = ["Cardiomegaly", "Pleural Effusion"]


def site_counts(seed: int, n: int = 50) -> dict:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, (n, 2)).astype(np.int8)
    y[rng.random((n, 2)) < 0.1] = -1
    return count_multi_label_outcomes(y, np.clip(0.4 * y + rng.uniform(0, 0.6, (n, 2)), 0, 1),
                                      NAMES)


def test_multi_label_counts_parse_and_sum_per_finding():
    a = EvaluationCounts.parse(site_counts(1), 50)
    b = EvaluationCounts.parse(site_counts(2), 50)
    assert isinstance(a, MultiLabelCounts) and a.compatible(b)
    total = a + b
    for i in range(2):
        np.testing.assert_array_equal(total.per_label[i].confusion,
                                      a.per_label[i].confusion + b.per_label[i].confusion)
    as_json = total.to_json()
    assert as_json["labels"] == NAMES
    entry = as_json["per_label"]["Pleural Effusion"]
    assert {"confusion_matrix", "roc", "auc"} <= set(entry) and 0.5 < entry["auc"] <= 1.0


def _with(**changes) -> dict:
    return {**site_counts(1), **changes}


@pytest.mark.parametrize("raw, message", [
    (_with(labels=["a"]), "one entry per label"),
    (_with(labels=["a", 3]), "distinct names"),
    (_with(labels=["a", "a"]), "distinct names"),
    (_with(labels=["x" * 65, "b"]), "at most 64 characters"),
    (_with(per_label="nope"), "one entry per label"),
    (_with(per_label=[{"confusion_matrix": [[1, 0], [0, 1]]}, 7]),
     r"counts.per_label\[1\] must be an object"),
    (_with(per_label=[{"confusion_matrix": [[40, 0], [0, 40]]},
                      {"confusion_matrix": [[1, 0], [0, 1]]}]),
     r"per_label\[0\].confusion_matrix must be 2 x 2 over at most num_examples=50"),
    (_with(per_label=[{"confusion_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]},
                      {"confusion_matrix": [[1, 0], [0, 1]]}]), "must be 2 x 2"),
    (_with(per_label=[{"confusion_matrix": [[1, 0], [0, 1]],
                       "roc": {"thresholds": [0, 1], "tp": [5, 0], "fp": [1, 0]}},
                      {"confusion_matrix": [[1, 0], [0, 1]]}]),
     r"per_label\[0\].roc.tp must not grow .* nor exceed"),
])
def test_bad_multi_label_counts_are_refused_naming_the_field(raw, message):
    with pytest.raises(MalformedRequest, match=message):
        EvaluationCounts.parse(raw, num_examples=50)


def test_a_site_with_other_findings_cannot_join_the_sum_and_changes_nothing():
    evaluations = FinalEvaluations()
    evaluations.record(0, {"auc": 0.8}, 50, EvaluationCounts.parse(site_counts(1), 50))
    before = evaluations.counts().to_json()
    other = {**site_counts(2), "labels": ["Edema", "Pleural Effusion"]}
    with pytest.raises(MalformedRequest, match="other classes"):
        evaluations.record(1, {"auc": 0.7}, 50, EvaluationCounts.parse(other, 50))
    binary = EvaluationCounts.parse({"confusion_matrix": [[25, 0], [0, 25]]}, 50)
    with pytest.raises(MalformedRequest, match="other classes"):
        evaluations.record(1, {"auc": 0.7}, 50, binary)
    assert evaluations.client_ids == [0] and evaluations.counts().to_json() == before


def test_the_report_has_a_row_and_a_roc_curve_per_finding():
    counts = EvaluationCounts.parse(site_counts(1), 50) + EvaluationCounts.parse(
        site_counts(2), 50)
    page = render_report(ReportData(parameters={}, num_clients=2, history=[],
                                    final_metrics={"test_macro_auc": 0.8},
                                    client_final_metrics={}, partitions={}, counts=counts))
    assert "Per finding (summed over clients)" in page
    for name, entry in counts.to_json()["per_label"].items():
        assert f"<td class='l'>{name}</td>" in page and f"{entry['auc']:.4f}" in page
    assert "ROC per finding" in page and page.count("<svg") >= 1


class Recorder:
    def __init__(self) -> None:
        self.logged, self.metadata, self.path = {}, {}, "unused"
        self.matrices = []

    def log_metric(self, name, value):
        self.logged[name] = value

    def log_confusion_matrix(self, categories, matrix):
        self.matrices.append(matrix)

    def log_roc_curve(self, fpr, tpr, threshold):
        self.matrices.append(fpr)


def test_kfp_metrics_carry_per_finding_and_macro_auc():
    counts = EvaluationCounts.parse(site_counts(1), 50)
    summary = {"rounds_completed": 1, "num_clients": 1, "strategy": "fedavg",
               "final_metrics": {"test_auc": 0.7, "test_macro_auc": 0.7,
                                 "test_auc_cardiomegaly": 0.6}, "client_settings": {}}
    result = AggregatorResult(None, summary, counts.to_json())
    metrics, model, classification = Recorder(), Recorder(), Recorder()
    export(result, model, metrics, classification)
    pooled = {name: entry["auc"] for name, entry in counts.to_json()["per_label"].items()}
    assert metrics.logged["pooled_auc_cardiomegaly"] == round(pooled["Cardiomegaly"], 6)
    assert metrics.logged["pooled_auc_pleural_effusion"] == round(pooled["Pleural Effusion"], 6)
    assert metrics.logged["pooled_macro_auc"] == pytest.approx(np.mean(list(pooled.values())),
                                                               abs=1e-6)
    assert metrics.logged["test_macro_auc"] == 0.7  # the clients' own, weighted by examples
    assert classification.matrices == []  # one matrix per artifact: the report has them all
