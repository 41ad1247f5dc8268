"""Running the aggregator: ``run_aggregator(config, outputs) -> AggregatorResult``. The
command line (``server_component.cli``) and the pipeline task (``server_component.task``)
both come here; they differ only in where the settings come from and where outputs go.

Exit codes (``exit_code``): 0 every round closed and the outputs are written; 1 the run
failed (a round missed its quorum) or its outputs could not be written; 2 it could not start
(bad settings, an unusable checkpoint, an unwritable directory).
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract import privacy
from contract.file_names import CLIENT_METRICS, FINAL_WEIGHTS, REPORT, ROUND_METRICS, SUMMARY
from contract.settings import settings_of, values_of
from server_component.app import create_app
from server_component.checkpoint import CheckpointError, load_checkpoint
from server_component.coordinator import RoundCoordinator, format_round
from server_component.memory import pin_mmap_threshold
from server_component.outputs import OutputPaths, ensure_writable, write_outputs
from server_component.round_models import RoundModels, parse_selection
from server_component.run_privacy import RunPrivacy
from server_component.serve import AggregatorServer
from server_component.settings import AggregatorConfig
from server_component.strategies import parse_strategy
from server_component.tracking import RunTracker, shown_uri

log = logging.getLogger("server_component")
FAILURE_LINGER_S = 30.0  # keep answering 410 for a while so clients learn the run failed
EXIT_OK, EXIT_FAILED, EXIT_CANNOT_START = 0, 1, 2


# The privacy summary's numbers that the KFP Metrics artifact shows (as dp_<name>).
PRIVACY_METRICS = ("epsilon", "delta", "noise_multiplier", "clip_norm", "steps",
                   "target_epsilon", "final_version")


class CannotStart(RuntimeError):
    """The aggregator cannot start: a checkpoint of another run, an unwritable directory."""


class OutputsNotWritten(RuntimeError):
    """The run finished but its outputs could not be written (the checkpoint is intact)."""


@dataclass
class AggregatorResult:
    """How the run ended and what its outputs say, for the caller to log or export."""

    failure: str | None  # why the run failed (or could not start); None when it succeeded
    summary: dict = field(default_factory=dict)  # as written beside the final weights
    evaluation: dict | None = None  # summed confusion matrix and ROC (EvaluationCounts)
    exit_code: int = EXIT_OK
    mlflow_run_id: str = ""  # the MLflow run it was tracked in, when tracking worked

    def __post_init__(self) -> None:
        if self.failure and self.exit_code == EXIT_OK:
            self.exit_code = EXIT_FAILED

    @property
    def metrics(self) -> dict[str, float]:
        """The scalars a KFP Metrics artifact shows: run totals and final test metrics."""
        privacy = self.summary.get("privacy", {})
        return {**{k: float(v) for k, v in self.summary.get("totals", {}).items()},
                **{k: float(v) for k, v in self.summary.get("final_metrics", {}).items()},
                **{f"dp_{k}": float(v) for k, v in privacy.items()
                   if k in PRIVACY_METRICS and privacy.get("dp_mode", "off") != "off"}}


def run_aggregator(config: AggregatorConfig, outputs: OutputPaths | None = None
                   ) -> AggregatorResult:
    """Serve every round until each client is done (or the run fails), then write the
    outputs (``config.out``'s layout unless ``outputs`` says otherwise)."""
    outputs = outputs or (OutputPaths.in_directory(config.out) if config.out else None)
    _require_writable(config, outputs)
    pin_mmap_threshold()
    coordinator = build_coordinator(config)
    log.info("event=start run_id=%s num_clients=%d rounds=%d min_clients=%d strategy=%s "
             "sampling=%r", os.environ.get("KFP_RUN_ID", "-"), config.num_clients,
             config.rounds, coordinator.min_clients, coordinator.strategy.name,
             coordinator.sampling.describe())
    tracker = start_tracking(config, coordinator)
    _serve_until_complete(config, coordinator)
    for record in coordinator.history:
        log.info("event=summary %s", format_round(record, config.rounds))
    summary = {}
    try:
        if outputs is not None:
            summary = _write(outputs, coordinator, report_parameters(config, coordinator))
    finally:
        if coordinator.round_models is not None:
            coordinator.round_models.close()
    counts = coordinator.final_counts()
    if coordinator.failure:
        log.error("event=failed %s", coordinator.failure)
    else:
        log.info("event=finished final_metrics=%s", coordinator.final_metrics())
    result = AggregatorResult(coordinator.failure, summary,
                              counts.to_json() if counts is not None else None)
    if tracker is not None:
        finish_tracking(tracker, result, coordinator, outputs)
        result.mlflow_run_id = tracker.run_id if tracker.active else ""
    return result


def start_tracking(config: AggregatorConfig, coordinator: RoundCoordinator
                   ) -> RunTracker | None:
    """The run's MLflow tracker, listening to every closed round; None when tracking is off
    or its server cannot be used (said in one line)."""
    if not config.mlflow_tracking_uri:
        return None
    # Outside KFP each run is its own MLflow run (a restarted CLI aggregator starts a new one).
    run_id = os.environ.get("KFP_RUN_ID") or f"local-{uuid.uuid4().hex[:12]}"
    tracker = RunTracker(config.mlflow_tracking_uri, config.mlflow_experiment, run_id,
                         os.environ.get("KFP_NAMESPACE", ""))
    if not tracker.start(tracked_parameters(config)):
        return None
    for record in coordinator.history:  # resumed rounds the MLflow run may lack
        tracker.round_closed(record)
    coordinator.round_listeners.append(tracker.round_closed)
    return tracker


def tracked_parameters(config: AggregatorConfig) -> dict[str, Any]:
    """The aggregator settings an MLflow run records: what a user chose, never a secret or
    what the pipeline wires."""
    params = {item.name: getattr(config, item.name) for item in settings_of(AggregatorConfig)
              if not item.spec.secret and not item.spec.wired}
    params["mlflow_tracking_uri"] = shown_uri(config.mlflow_tracking_uri)  # no password
    return params


def finish_tracking(tracker: RunTracker, result: AggregatorResult,
                    coordinator: RoundCoordinator, outputs: OutputPaths | None) -> None:
    """The end of the MLflow run: final metrics, the clients' settings, the output files."""
    files = {} if outputs is None else {
        FINAL_WEIGHTS: outputs.model_dir / FINAL_WEIGHTS, SUMMARY: outputs.model_dir / SUMMARY,
        REPORT: outputs.report, ROUND_METRICS: outputs.round_metrics,
        CLIENT_METRICS: outputs.client_metrics}
    client_settings = {f"client.{k}": v for k, v in coordinator.run_info.client_settings.items()}
    tracker.finish(result.metrics, client_settings, files, coordinator.final_version,
                   result.failure)


def run_logged(config: AggregatorConfig, outputs: OutputPaths | None = None
               ) -> AggregatorResult:
    """``run_aggregator`` with log lines on stdout; what stops it before or after the rounds
    becomes the result's exit code and a line (stderr for a start that cannot happen)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s aggregator %(message)s",
                        stream=sys.stdout, force=True)
    try:
        return run_aggregator(config, outputs)
    except CannotStart as exc:
        print(f"error: {exc}", file=sys.stderr)
        return AggregatorResult(str(exc), exit_code=EXIT_CANNOT_START)
    except OutputsNotWritten as exc:
        log.error("event=failed %s", exc)
        return AggregatorResult(str(exc), exit_code=EXIT_FAILED)


def build_coordinator(config: AggregatorConfig) -> RoundCoordinator:
    """The run's coordinator, resumed from ``config.checkpoint_dir`` when it holds one."""
    coordinator = RoundCoordinator(
        config.num_clients, config.rounds, strategy=parse_strategy(config.strategy),
        min_clients=config.min_clients or None, round_timeout=config.round_timeout or None,
        checkpoint_dir=config.checkpoint_dir or None, secure=config.secagg_params,
        privacy=RunPrivacy(config.dp, privacy.client_noise(values_of(config)),
                           config.dp_clip_norm,
                           config.dp_delta, config.dp_target_epsilon, config.num_clients,
                           clip_quantile=config.dp_clip_quantile),
        sampling=config.sampling, round_models=build_round_models(config))
    if config.checkpoint_dir:
        try:
            checkpoint = load_checkpoint(config.checkpoint_dir, coordinator.config)
        except CheckpointError as exc:
            raise CannotStart(str(exc)) from None
        if checkpoint is not None:
            coordinator.restore(checkpoint)
    return coordinator


def build_round_models(config: AggregatorConfig) -> RoundModels | None:
    """Where the best round's model (and every round's) is kept: beside the checkpoint, so
    that a restarted aggregator still has them; None when nothing needs keeping."""
    metric = parse_selection(config.select_model)
    if metric is None and not config.keep_round_models:
        return None
    directory = (Path(config.checkpoint_dir) / "round_models" if config.checkpoint_dir
                 else None)
    return RoundModels(metric, config.keep_round_models,
                       int(config.round_models_max_mb * 2 ** 20), directory)


def report_parameters(config: AggregatorConfig, coordinator: RoundCoordinator) -> dict:
    """The aggregator's settings as the report lists them (never the token)."""
    return {"run_id": os.environ.get("KFP_RUN_ID", "-"), "num_clients": config.num_clients,
            "rounds": config.rounds, "min_clients": coordinator.min_clients,
            "round_timeout_s": config.round_timeout or "none",
            "strategy": coordinator.strategy.name,
            "client_sampling": coordinator.sampling.describe(),
            "select_model": config.select_model,
            "checkpoint_dir": config.checkpoint_dir or "none"}


def _require_writable(config: AggregatorConfig, outputs: OutputPaths | None) -> None:
    """Fail before the clients spend a whole run training when the results could not be
    kept: every output directory must exist (or be creatable) and take a file."""
    directories = [("--checkpoint-dir", config.checkpoint_dir)] if config.checkpoint_dir else []
    directories += [("--out", str(d)) for d in (outputs.directories() if outputs else [])]
    for what, directory in directories:
        try:
            ensure_writable(directory)
        except OSError as exc:
            raise CannotStart(f"{what} {directory} is not a writable directory: "
                              f"{exc.strerror or exc}") from None


def _serve_until_complete(config: AggregatorConfig, coordinator: RoundCoordinator) -> None:
    app = create_app(coordinator, token=config.token or None,
                     max_update_bytes=config.max_update_bytes)
    server = AggregatorServer(app, config.host, config.port, threads=config.server_threads,
                              max_body_bytes=2 * config.max_update_bytes + (1 << 20)).start()
    try:
        coordinator.enforce_deadlines()
        linger = min(config.shutdown_grace, FAILURE_LINGER_S) if coordinator.failure else None
        if not coordinator.wait_until_complete(timeout=linger or config.shutdown_grace):
            log.warning("event=shutdown_without_all_done done=%s", coordinator.status().done)
    finally:
        server.stop()


def _write(outputs: OutputPaths, coordinator: RoundCoordinator,
           parameters: dict[str, Any]) -> dict:
    try:
        summary = write_outputs(outputs, coordinator, parameters)
    except OSError as exc:
        # Out of space or the volume gone: say where; the checkpoint stays as it is.
        raise OutputsNotWritten(f"cannot write outputs to {outputs.model_dir}: {exc}") from exc
    except Exception as exc:  # a bug in a table or the report must not hide the rest
        log.exception("event=failed writing outputs to %s", outputs.model_dir)
        raise OutputsNotWritten(f"writing outputs to {outputs.model_dir} failed: {exc!r}"
                                ) from exc
    log.info("event=outputs_written out=%s", outputs.model_dir)
    return summary
