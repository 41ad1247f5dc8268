"""What the aggregator, the export task and ``submit list`` agree on about MLflow: the tag
that ties an MLflow run to its KFP run, and how long a tracking call may take."""

from __future__ import annotations

import os

KFP_RUN_TAG = "kfp_run_id"  # on the aggregator's MLflow run: the KFP run it tracks
DEFAULT_EXPERIMENT = "fl-on-kubeflow"
# MLflow retries a refused request 7 times with exponential backoff (minutes); a tracking
# server that is down should cost a run seconds, once.
_HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
                "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def limit_mlflow_retries() -> None:
    """Bound MLflow's HTTP retries and timeouts for this process, unless the user set them."""
    for name, value in _HTTP_LIMITS.items():
        os.environ.setdefault(name, value)
