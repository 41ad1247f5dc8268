"""Experiment tracking in MLflow: one MLflow run per KFP run (tagged ``kfp_run_id``) holding
the aggregator's settings, every round's global metrics, the final metrics, the report, the
metrics tables and the final weights; the export task adds the Keras model to the same run
(``client_component.export``).

Tracking is optional (``mlflow_tracking_uri`` empty: off) and never in the way of training:
calls go out from one worker thread fed by a queue (a slow server never holds a round), and
the first failure is logged in one line and switches tracking off for the rest of the run.
A restarted aggregator finds its MLflow run again by the tag and logs only the rounds that
run lacks.
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from contract.tracking import KFP_RUN_TAG, limit_mlflow_retries

log = logging.getLogger("server_component")

TRACKING_SCHEMES = ("http", "https", "file", "sqlite", "postgresql", "mysql", "databricks")
ROUND_MARKER = "round_clients"  # logged every round; its steps say which rounds a run has
_FINISH_WAIT_S = 60.0


def tracking_uri_problem(name: str, value: Any) -> str | None:
    """Refuse what MLflow could not track to; empty is accepted (tracking off)."""
    if value == "" or urlsplit(str(value)).scheme in TRACKING_SCHEMES:
        return None
    return (f"{name} {value!r} is not an MLflow tracking URI ({', '.join(TRACKING_SCHEMES)}; "
            "e.g. http://mlflow.mlflow.svc:5000); empty: no tracking")


def experiment_problem(name: str, value: Any) -> str | None:
    """Refuse an empty experiment name (MLflow would refuse it after the whole run)."""
    return None if str(value).strip() else f"{name} must name an MLflow experiment"


def shown_uri(uri: str) -> str:
    """``uri`` without a user name or password, for logs."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def round_metrics(record: Any) -> dict[str, float]:
    """What one closed round adds to the MLflow run (``step`` = the round)."""
    metrics = {k: float(v) for k, v in record.metrics.items()}
    metrics.update({ROUND_MARKER: float(len(record.client_ids)),
                    "round_examples": float(record.num_examples),
                    "round_duration_s": float(record.duration_s)})
    if record.privacy.get("epsilon") is not None:
        metrics["dp_epsilon"] = float(record.privacy["epsilon"])
    return metrics


class RunTracker:
    """The aggregator's MLflow run. ``start`` before the rounds, ``round_closed`` from the
    coordinator (any thread), ``finish`` after the outputs are written."""

    def __init__(self, uri: str, experiment: str, kfp_run_id: str,
                 namespace: str = "") -> None:
        self.uri, self.experiment = uri, experiment
        self.kfp_run_id, self.namespace = kfp_run_id, namespace
        self.run_id: str | None = None
        self._client: Any = None
        self._logged_rounds: set[int] = set()
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._off = threading.Event()

    @property
    def active(self) -> bool:
        """True while tracking works: started, and no call has failed."""
        return self.run_id is not None and not self._off.is_set()

    def start(self, params: Mapping[str, Any]) -> bool:
        """Find or create the MLflow run and log ``params``; False (one line logged) when
        the tracking server cannot be used."""
        limit_mlflow_retries()
        if not self._call(lambda: self._open_run(params), "start"):
            return False
        self._worker = threading.Thread(target=self._drain, name="mlflow-tracking", daemon=True)
        self._worker.start()
        log.info("event=tracking uri=%s experiment=%s mlflow_run_id=%s", shown_uri(self.uri),
                 self.experiment, self.run_id)
        return True

    def round_closed(self, record: Any) -> None:
        """Queue the round's global metrics (called under the coordinator's lock: no I/O)."""
        if self.active and record.round not in self._logged_rounds:
            self._logged_rounds.add(record.round)
            metrics = round_metrics(record)
            stamp = int(time.time() * 1000)
            self._queue.put(lambda: self._log_metrics(metrics, record.round, stamp))

    def finish(self, metrics: Mapping[str, float], params: Mapping[str, Any],
               files: Mapping[str, Path], step: int, failure: str | None) -> None:
        """Log the final metrics, the clients' settings and the output ``files`` (name in
        MLflow -> path here; a KFP artifact's file has no extension), end the run (FINISHED
        or FAILED), and wait (bounded) for every queued call."""
        if not self.active:
            return
        with tempfile.TemporaryDirectory(prefix="mlflow-outputs-") as staged:
            for name, path in files.items():
                if path.is_file():
                    os.symlink(path.resolve(), Path(staged) / name)

            def final() -> None:
                self._log_metrics(dict(metrics), step, int(time.time() * 1000))
                self._log_params(params)
                self._client.log_artifacts(self.run_id, staged)
                self._client.set_terminated(self.run_id, "FAILED" if failure else "FINISHED")
            self._queue.put(final)
            self._queue.put(None)
            self._worker.join(_FINISH_WAIT_S)
            if self._worker.is_alive():
                self._disable("finish", TimeoutError(f"still busy after {_FINISH_WAIT_S:.0f} s"))
        if self.active:
            log.info("event=tracking_finished mlflow_run_id=%s", self.run_id)

    # ---- MLflow calls (on the worker thread, except the opening ones) --------------------

    def _open_run(self, params: Mapping[str, Any]) -> None:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        self._client = MlflowClient(tracking_uri=self.uri)
        experiment = self._client.get_experiment_by_name(self.experiment)
        if experiment is None:
            try:
                experiment_id = self._client.create_experiment(self.experiment)
            except MlflowException:  # another run created it meanwhile
                experiment_id = self._client.get_experiment_by_name(self.experiment)
                experiment_id = experiment_id.experiment_id
        else:
            experiment_id = experiment.experiment_id
        found = self._client.search_runs(
            [experiment_id], f"tags.{KFP_RUN_TAG} = '{self.kfp_run_id}'", max_results=1)
        if found:  # a restarted aggregator: the same MLflow run, only its missing rounds
            self.run_id = found[0].info.run_id
            self._logged_rounds = {int(m.step) for m in
                                   self._client.get_metric_history(self.run_id, ROUND_MARKER)}
            self._client.update_run(self.run_id, status="RUNNING")
        else:
            tags = {KFP_RUN_TAG: self.kfp_run_id, "fl.component": "aggregator"}
            if self.namespace:
                tags["kfp_namespace"] = self.namespace
            self.run_id = self._client.create_run(
                experiment_id, run_name=f"fl-{self.kfp_run_id}", tags=tags).info.run_id
        self._log_params(params)

    def _log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        self._client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def _log_metrics(self, metrics: Mapping[str, float], step: int, stamp: int) -> None:
        from mlflow.entities import Metric

        self._client.log_batch(self.run_id, metrics=[
            Metric(k, float(v), stamp, step) for k, v in metrics.items()])

    def _drain(self) -> None:
        while (call := self._queue.get()) is not None:
            if not self._off.is_set():
                self._call(call, "log")

    def _call(self, call: Callable[[], None], what: str) -> bool:
        try:
            call()
            return True
        except Exception as exc:  # any MLflow or network error: training goes on
            self._disable(what, exc)
            return False

    def _disable(self, what: str, exc: BaseException) -> None:
        self._off.set()
        reason = " ".join(str(exc).split())[:300]
        log.warning("event=tracking_unavailable uri=%s during=%s error=%s: the run goes on "
                    "without MLflow", shown_uri(self.uri), what, reason)
