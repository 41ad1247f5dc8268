"""The ε a KFP run spent, read from MLflow, for ``submit list``.

KFP v2's run API returns no metric values (a Metrics artifact keeps its numbers in ML
Metadata, which the API does not serve); a run tracked in MLflow (``mlflow_tracking_uri``)
has its final ``dp_epsilon`` there, in the MLflow run tagged with the KFP run id.
"""

from __future__ import annotations

from collections.abc import Mapping

from contract.tracking import DEFAULT_EXPERIMENT, KFP_RUN_TAG, limit_mlflow_retries


def private(params: Mapping) -> bool:
    """Whether a run's parameters turned differential privacy on."""
    return params.get("dp", "off") not in ("off", None)


def budget(params: Mapping) -> str:
    """The run's budget: "≤ 8" (ε never exceeds it) or "uncapped"."""
    target = float(params.get("dp_target_epsilon") or 0)
    return f"≤ {target:g}" if target > 0 else "uncapped"


def spent_epsilons(runs: Mapping[str, Mapping], uri_override: str | None = None
                   ) -> tuple[dict[str, float], list[str]]:
    """KFP run id -> the ε its MLflow run recorded, for the private runs among ``runs``
    (KFP run id -> its parameters) that were tracked (or all private runs, looked up at
    ``uri_override``); and one line per tracking server that could not be read."""
    wanted: dict[tuple[str, str], list[str]] = {}
    for run_id, params in runs.items():
        uri = uri_override or params.get("mlflow_tracking_uri") or ""
        if private(params) and uri:
            experiment = params.get("mlflow_experiment") or DEFAULT_EXPERIMENT
            wanted.setdefault((uri, experiment), []).append(run_id)
    found, notes = {}, []
    for (uri, experiment), run_ids in wanted.items():
        try:
            found.update(_read(uri, experiment, run_ids))
        except Exception as exc:  # MLflow or the network: the listing goes on without it
            notes.append(f"MLflow at {uri} could not be read ({' '.join(str(exc).split())[:160]})"
                         ": spent ε shown as ?")
    return found, notes


def _read(uri: str, experiment: str, run_ids: list[str]) -> dict[str, float]:
    limit_mlflow_retries()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found_experiment = client.get_experiment_by_name(experiment)
    if found_experiment is None:
        return {}
    spent = {}
    for run_id in run_ids:
        runs = client.search_runs([found_experiment.experiment_id],
                                  f"tags.{KFP_RUN_TAG} = '{run_id}'", max_results=1)
        if runs and "dp_epsilon" in runs[0].data.metrics:
            spent[run_id] = runs[0].data.metrics["dp_epsilon"]
    return spent
