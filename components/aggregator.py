"""The aggregator task: serves the federated rounds until every client is done."""

from kfp.dsl import Dataset, Metrics, Model, Output

from components.embedding import runtime_component
from components.runtime import PYTHON_IMAGE, SERVER_PACKAGES


@runtime_component(["server_component"], base_image=PYTHON_IMAGE,
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
    metrics: Output[Metrics],
):
    """Run the aggregator on ``port``, checkpointing each round into ``checkpoint_dir`` (a
    retried task resumes from it); write the final weights, per-round metrics and the final
    scalars as artifacts."""
    from server_component.task import AggregatorSettings, run_aggregator_task

    summary = run_aggregator_task(
        AggregatorSettings(num_clients=num_clients, rounds=rounds, port=port, token=token,
                           strategy=strategy, min_clients=min_clients,
                           round_timeout=round_timeout, checkpoint_dir=checkpoint_dir),
        out_dir=final_model.path, round_metrics_path=round_metrics.path,
    )
    for name, value in summary.items():
        metrics.log_metric(name, value)
