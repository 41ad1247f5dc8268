"""The aggregator as a pipeline task runs it: the component's inputs (one per setting, plus
its output artifacts) in, each output written straight into its artifact, the artifacts'
metadata filled from the result in memory. No kfp here: the artifacts are the objects KFP
hands the component, used through the few attributes below."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import safetensors

from contract.file_names import FINAL_WEIGHTS
from contract.settings import SettingsError, from_values
from contract.wire import label_metric_key as metric_key
from server_component.outputs import OutputPaths
from server_component.run import EXIT_CANNOT_START, AggregatorResult, run_logged
from server_component.settings import AggregatorConfig


class FileArtifact(Protocol):
    """A KFP output artifact backed by a file: the task writes ``path`` and fills ``metadata``."""

    path: str
    metadata: dict


class MetricsArtifact(Protocol):
    """KFP's Metrics artifact: scalar metrics the run's UI lists."""

    def log_metric(self, name: str, value: float) -> None:
        """Record one scalar metric."""
        ...


class ClassificationArtifact(Protocol):
    """KFP's ClassificationMetrics artifact: a confusion matrix and a ROC curve the UI draws."""

    def log_confusion_matrix(self, categories: list, matrix: list) -> None:
        """Record the confusion matrix: rows are true classes, columns predicted ones."""
        ...

    def log_roc_curve(self, fpr: list, tpr: list, threshold: list) -> None:
        """Record the ROC curve: false and true positive rates at each threshold."""
        ...


# The component's output artifacts (input name -> KFP artifact type); every other input is
# a setting. components/aggregator.py declares them from this table.
ARTIFACTS = {"final_model": "Model", "round_metrics": "Dataset", "client_metrics": "Dataset",
             "metrics": "Metrics", "classification": "ClassificationMetrics", "report": "HTML"}


def run_aggregator_task(values: Mapping[str, Any]) -> None:
    """Serve all rounds, write each output into its artifact, log the Metrics and
    ClassificationMetrics; SystemExit with the run's exit code when it did not succeed."""
    try:
        config = from_values(AggregatorConfig,
                             {k: v for k, v in values.items() if k not in ARTIFACTS})
    except SettingsError as exc:
        print(f"error: {exc}")
        raise SystemExit(EXIT_CANNOT_START) from None
    outputs = OutputPaths(Path(values["final_model"].path), Path(values["round_metrics"].path),
                          Path(values["client_metrics"].path), Path(values["report"].path))
    result = run_logged(config, outputs)
    if result.exit_code:
        raise SystemExit(result.exit_code)
    export(result, values["final_model"], values["metrics"], values["classification"])


def export(result: AggregatorResult, model: FileArtifact, metrics: MetricsArtifact,
           classification: ClassificationArtifact) -> None:
    """What the KFP UI shows: scalars, the model's metadata, confusion matrix and ROC."""
    for name, value in {**result.metrics, **pooled_label_aucs(result.evaluation)}.items():
        metrics.log_metric(name, value)
    model.metadata.update(model_metadata(result.summary))
    if result.mlflow_run_id:  # the export task logs model.keras into the same MLflow run
        model.metadata["mlflow_run_id"] = result.mlflow_run_id
    # A ClassificationMetrics artifact holds one confusion matrix and one ROC curve; a
    # multi-label run's per-finding curves are in the report and its AUCs in the Metrics.
    if result.evaluation and "confusion_matrix" in result.evaluation:
        matrix = result.evaluation["confusion_matrix"]
        classification.log_confusion_matrix(matrix["categories"], matrix["matrix"])
        roc = result.evaluation.get("roc")
        if roc:
            classification.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])


def pooled_label_aucs(evaluation: dict | None) -> dict[str, float]:
    """Multi-label: each finding's AUC over the pooled test splits (from the summed counts)
    as ``pooled_auc_<finding>``, and their mean ``pooled_macro_auc``; {} otherwise."""
    if not evaluation or "per_label" not in evaluation:
        return {}
    aucs = {name: entry["auc"] for name, entry in evaluation["per_label"].items()
            if entry.get("auc") is not None}
    pooled = {f"pooled_auc_{metric_key(name)}": round(auc, 6) for name, auc in aucs.items()}
    if aucs:
        pooled["pooled_macro_auc"] = round(float(np.mean(list(aucs.values()))), 6)
    return pooled


def model_metadata(summary: dict) -> dict:
    """What the KFP UI shows beside the model: how it was trained and how well it does."""
    settings = summary.get("client_settings", {})
    return {
        "format": "safetensors (" + FINAL_WEIGHTS + "), tensors in Keras get_weights() order",
        "rounds": summary["rounds_completed"], "clients": summary["num_clients"],
        "strategy": summary["strategy"], "dataset": settings.get("dataset", "unknown"),
        "model": settings.get("model", "unknown"),
        "framework": settings.get("framework", "unknown"),
        "aggregator": f"numpy {np.__version__}, safetensors {safetensors.__version__}",
        **{f"final_{k}": round(v, 6) for k, v in summary["final_metrics"].items()},
        **_privacy_metadata(summary.get("privacy", {})),
        **({"selected_model": summary["selected_model"]["description"]}
           if summary.get("selected_model") else {}),
    }


def _privacy_metadata(privacy: dict) -> dict:
    """The model's differential privacy in words and numbers (the Metrics artifact holds
    numbers only: dp_epsilon, dp_delta, ...; the mode is a word, so it is said here)."""
    if privacy.get("dp_mode", "off") == "off":
        return {"dp_mode": "off"}
    return {"dp_mode": privacy["dp_mode"], "dp_epsilon": round(privacy["epsilon"], 6),
            "dp_delta": privacy["delta"], "dp_stopped": privacy.get("stopped", "")}
