"""The aggregator task: serves the federated rounds until every client is done."""

from kfp.dsl import HTML, ClassificationMetrics, Dataset, Metrics, Model, Output

from components.embedding import runtime_component
from components.runtime import PYTHON_IMAGE, SERVER_PACKAGES


@runtime_component(["server_component", "contract"], base_image=PYTHON_IMAGE,
                   packages_to_install=SERVER_PACKAGES)
def aggregator(
    token: str,
    num_clients: int,
    rounds: int,
    port: int,
    strategy: str,
    min_clients: int,
    round_timeout: float,
    checkpoint_dir: str,
    final_model: Output[Model],
    round_metrics: Output[Dataset],
    client_metrics: Output[Dataset],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    report: Output[HTML],
):
    """Run the aggregator on ``port``, checkpointing each round into ``checkpoint_dir`` (a
    retried task resumes from it). Artifacts: the final weights with their metadata, the
    per-round and per-client metrics tables, the final scalars, the summed confusion matrix
    and ROC curve of the clients' test splits, and an HTML report."""
    from server_component.task import AggregatorSettings, ArtifactPaths, run_aggregator_task

    result = run_aggregator_task(
        AggregatorSettings(num_clients=num_clients, rounds=rounds, port=port, token=token,
                           strategy=strategy, min_clients=min_clients,
                           round_timeout=round_timeout, checkpoint_dir=checkpoint_dir),
        ArtifactPaths(model_dir=final_model.path, round_metrics=round_metrics.path,
                      client_metrics=client_metrics.path, report=report.path),
    )
    for name, value in result.metrics.items():
        metrics.log_metric(name, value)
    final_model.metadata.update(result.model_metadata)
    if result.evaluation:
        matrix = result.evaluation["confusion_matrix"]
        classification.log_confusion_matrix(matrix["categories"], matrix["matrix"])
        roc = result.evaluation.get("roc")
        if roc:
            classification.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
