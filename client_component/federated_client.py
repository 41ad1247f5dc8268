"""The client's side of a federated run: init, then per round fetch → train → evaluate →
post, resynchronising with the aggregator whenever it says the client is out of step
(a straggler's late update, a superseded model) or the connection drops (a restart).

The round protocol (``federate``) is independent of the learning library: it drives any
``Learner``; ``KerasLearner`` is the one the pipeline uses.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import numpy as np
import requests

from client_component.settings import ClientConfig
from client_component.transport import AggregatorClient, AggregatorError
from client_component.uplink import Contribution, PlainUplink, PostedUpdate, SecureUplink
from contract import wire
from contract.messages import Phase, Status

log = logging.getLogger("client_component")
Uplink = PlainUplink | SecureUplink
Sent = PostedUpdate | Contribution  # what an uplink sends, kept to send again
MAX_RESYNCS_WITHOUT_PROGRESS = 20
T = TypeVar("T")


class Learner(Protocol):
    """What the round protocol needs from a model and its local data."""

    def get_weights(self) -> list[np.ndarray]:
        """The model's weights, in the order Keras's ``get_weights`` gives them."""
        ...

    def set_weights(self, weights: list[np.ndarray]) -> None:
        """Replace the model's weights with ``weights``, in the same order."""
        ...

    def fit(self, round_: int) -> tuple[int, dict[str, float]]:
        """Train one round; (examples trained on, held-out metrics)."""

    def evaluate_test(self) -> tuple[int, dict[str, float]]:
        """(test examples, metrics of the current weights on them)."""

    # Optional: ``test_counts() -> dict | None``, confusion-matrix and ROC counts on the
    # test split (client_component.evaluation.count_outcomes), summed by the aggregator;
    # ``last_local_steps`` and ``momentum``, the optimizer steps of the last ``fit`` and their
    # SGD momentum (sent with each update: FedNova needs them); ``set_control(c)`` and
    # ``control_delta()`` for SCAFFOLD, whose served models carry control variates.


class OutOfStep(RuntimeError):
    """The client kept failing to catch up with the aggregator."""


class PrivacyMismatch(RuntimeError):
    """The aggregator runs another differential-privacy mode than this client was given: a
    client expecting central noise must not send its update to an aggregator that adds none."""


class UnsupportedStrategy(RuntimeError):
    """The aggregator's strategy needs something this learner cannot do."""


def federate(learner: Learner, aggregator: AggregatorClient, config: ClientConfig
             ) -> dict[str, float]:
    """The whole protocol; returns the final global model's metrics on the test split."""
    aggregator.wait_ready(config.connect_timeout_s)
    _retrying(aggregator, config, "init", lambda: _post_init(aggregator, learner, config))
    status = aggregator.status()
    _restore_budget(learner, status, config)
    uplink = (SecureUplink(aggregator, config) if config.secure_aggregation == "secagg"
              else PlainUplink(aggregator, config.client_id))
    last = _train_all_rounds(learner, aggregator, config, uplink,
                             sampled=status.fraction_fit < 1)
    # The last round's update may be lost too (a restart): the same check as every round.
    check = functools.partial(_ensure_reported, aggregator, uplink, last)
    final = _final_version(aggregator, config)
    learner.set_weights(_retrying(aggregator, config, "final model",
                                  lambda: aggregator.fetch_model(final, on_wait=check)))
    num_test, final = learner.evaluate_test()
    counts = learner.test_counts() if hasattr(learner, "test_counts") else None
    metrics = {f"test_{k}": v for k, v in final.items()}
    try:
        # Repeating done only overwrites this client's entry: safe to retry.
        _retrying(aggregator, config, "done", lambda: aggregator.post_done(
            config.client_id, metrics, num_test, counts))
    except (OutOfStep, AggregatorError) as exc:
        log.warning("client=%d done not acknowledged (%s): the model is final anyway",
                    config.client_id, exc)
    log.info("client=%d final test %s", config.client_id, _fmt(final))
    return final


def _post_init(aggregator: AggregatorClient, learner: Learner, config: ClientConfig) -> bool:
    """Offer the learner's current weights as model version 0, with what the aggregator
    reports and exports: partition statistics, training settings, the architecture."""
    settings = {**config.report_settings(),
                "framework": getattr(learner, "framework", type(learner).__name__)}
    # A site's label histogram says something about its patients: under secure aggregation
    # the aggregator learns sums only, and differential privacy does not account for it, so
    # the client then keeps it to itself.
    private = config.secure_aggregation == "secagg" or config.dp != "off"
    partition = {} if private else getattr(learner, "partition_stats", None) or {}
    meta = wire.InitMeta(config.client_id, partition, settings,
                         getattr(learner, "architecture", None) or "")
    return aggregator.post_init(learner.get_weights(), meta)


def _restore_budget(learner: Learner, status: Status, config: ClientConfig) -> None:
    """Check the aggregator runs this client's DP mode; a restarted client resumes its DP-SGD
    budget from the steps the aggregator recorded: a retry cannot spend the budget again."""
    if status.dp != config.dp:
        raise PrivacyMismatch(f"client {config.client_id} has dp={config.dp}, the aggregator "
                              f"runs dp={status.dp}: give both the same dp setting")
    budget = getattr(learner, "privacy_budget", None)
    if budget is None:
        return
    recorded = status.dp_steps.get(str(config.client_id), 0)
    if recorded > budget.spent:
        budget.restore(recorded)
        budget.spend(0, next_round=learner.private_steps_per_round())
        log.info("client=%d dp=example resumed at %d steps (epsilon=%.4f)", config.client_id,
                 budget.spent, budget.epsilon)


def _final_version(aggregator: AggregatorClient, config: ClientConfig) -> int:
    """The version training ends at: ``rounds``, unless the privacy budget ended it early
    (only differential privacy can)."""
    return config.rounds if config.dp == "off" else aggregator.status().last_version


def _training_ended_before(aggregator: AggregatorClient, config: ClientConfig,
                           round_: int) -> bool:
    """Whether the privacy budget ended training before ``round_`` (checked once a round,
    only with differential privacy)."""
    return config.dp != "off" and aggregator.status().last_version < round_


def _retrying(aggregator: AggregatorClient, config: ClientConfig, what: str,
              call: Callable[[], T]) -> T:
    """``call`` again after a lost connection (once the aggregator answers again); for calls
    that are idempotent: an init after the first is ignored, a model fetch only reads."""
    for attempt in range(1, MAX_RESYNCS_WITHOUT_PROGRESS + 1):
        try:
            return call()
        except requests.RequestException as exc:
            if attempt == MAX_RESYNCS_WITHOUT_PROGRESS:
                raise OutOfStep(f"client {config.client_id}: {what} failed {attempt} times, "
                                f"last: {exc}") from exc
            log.warning("client=%d %s lost (%s): retrying", config.client_id, what, exc)
            aggregator.wait_ready(config.connect_timeout_s)
    raise AssertionError("unreachable")


def _not_sampled(aggregator: AggregatorClient, config: ClientConfig, round_: int) -> bool:
    """Whether the aggregator's sample for ``round_`` leaves this client out; a round that
    is no longer open counts as out of step (409), to resynchronise."""
    trains = aggregator.status().trains(config.client_id, round_)
    if trains is None:
        raise AggregatorError(409, "round_conflict", f"round {round_} is no longer open",
                              "GET status")
    if not trains:
        log.info("client=%d not sampled for round %d: waiting for the next",
                 config.client_id, round_)
    return not trains


def _train_all_rounds(learner: Learner, aggregator: AggregatorClient, config: ClientConfig,
                      uplink: Uplink, sampled: bool = False) -> Sent | None:
    """Every round from 1 (or wherever the run is) that this client is sampled for
    (``sampled``: the aggregator samples each round's clients); returns the last update
    sent."""
    started, round_, last, resyncs = time.monotonic(), 1, None, 0
    while round_ <= config.rounds:
        try:
            if resyncs:
                round_ = _resync(aggregator, learner, config, uplink, last)
                if round_ > config.rounds:
                    break
            # While waiting, check the aggregator still has the update this version needs.
            check = functools.partial(_ensure_reported, aggregator, uplink, last)
            served = aggregator.fetch_tensors(round_ - 1, on_wait=check)
            if _training_ended_before(aggregator, config, round_):
                log.info("client=%d training ended after round %d: %s", config.client_id,
                         round_ - 1, aggregator.status().stopped)
                break
            if sampled and _not_sampled(aggregator, config, round_):
                round_, resyncs = round_ + 1, 0
                continue
            load_served(learner, served)
            num_examples, metrics = learner.fit(round_)
            metrics = {f"val_{k}": v for k, v in metrics.items()}
            last = _update(learner, config, uplink, served, round_, num_examples, metrics)
            uplink.send(last)
            _log_round(config, round_, metrics, started)
            round_, resyncs = round_ + 1, 0
        except (AggregatorError, requests.RequestException) as exc:
            # A 409 (out of step) or a transport failure (the aggregator restarting: refused
            # or dropped connections, bodies cut short) both mean: ask where the run is,
            # at the top of the loop, where a failure while asking counts the same way.
            if isinstance(exc, AggregatorError) and exc.code == "training_finished":
                log.info("client=%d training is over: %s", config.client_id, exc.detail)
                break
            if isinstance(exc, AggregatorError) and exc.status != 409:
                raise
            resyncs += 1
            if resyncs > MAX_RESYNCS_WITHOUT_PROGRESS:
                raise OutOfStep(f"client {config.client_id} could not catch up: {exc}") from exc
            log.warning("client=%d out of step at round %d (%s): resynchronising",
                        config.client_id, round_, exc)
    return last


def _update(learner: Learner, config: ClientConfig, uplink: Uplink,
            served: dict[str, np.ndarray], round_: int, num_examples: int,
            metrics: dict[str, float]) -> Sent:
    """The round's update as ``uplink`` sends it."""
    budget = getattr(learner, "privacy_budget", None)
    report = budget.report() if budget is not None else {}
    if isinstance(uplink, SecureUplink):
        return uplink.contribution(round_, served, learner.get_weights(), num_examples,
                                   metrics, report)
    meta = wire.UpdateMeta(config.client_id, round_, num_examples, metrics,
                           local_steps=getattr(learner, "last_local_steps", None) or None,
                           momentum=getattr(learner, "momentum", 0.0), privacy=report)
    return PostedUpdate(as_update_dtype(learner.get_weights(), config.update_dtype), meta,
                        control_update(learner, config.update_dtype))


def load_served(learner: Learner, served: dict[str, np.ndarray]) -> None:
    """Set a served model's weights, and its control variates when it carries them."""
    model, control = wire.split_control(served)
    learner.set_weights(wire.tensors_to_list(model))
    if not control:
        return
    if not hasattr(learner, "set_control"):
        raise UnsupportedStrategy(f"the aggregator runs SCAFFOLD (the model carries "
                                  f"{wire.CONTROL_PREFIX} tensors); {type(learner).__name__} "
                                  "cannot train with control variates")
    learner.set_control(wire.tensors_to_list(control))


def control_update(learner: Learner, dtype: str) -> dict[str, np.ndarray]:
    """The change of the learner's control variate, named as the wire wants ({} without)."""
    delta = learner.control_delta() if hasattr(learner, "control_delta") else None
    if delta is None:
        return {}
    named = wire.tensors_from_list(as_update_dtype(delta, dtype))
    return {wire.control_name(name): array for name, array in named.items()}


def as_update_dtype(weights: list[np.ndarray], dtype: str) -> list[np.ndarray]:
    """Float weights in the wire dtype of updates (float32 keeps them as they are)."""
    if dtype == "float32":
        return weights
    return [w.astype(dtype) if np.issubdtype(w.dtype, np.floating) else w for w in weights]


def _ensure_reported(aggregator: AggregatorClient, uplink: Uplink, last: Sent | None) -> None:
    """While waiting for the round our last update went into: if the aggregator no longer
    has that update (it restarted from a checkpoint and the transport's retries hid the
    restart from us), send it again."""
    if last is None:
        return
    if uplink.lost(aggregator.status(), last):
        log.warning("client=%d the aggregator lost our round-%d update: re-sending",
                    uplink.client_id, last.round)
        uplink.send(last)


def _resync(aggregator: AggregatorClient, learner: Learner, config: ClientConfig,
            uplink: Uplink, last: Sent | None) -> int:
    """The round to take part in next, after re-sending anything the aggregator lost."""
    aggregator.wait_ready(config.connect_timeout_s)
    status = aggregator.status()
    if status.error:
        raise AggregatorError(410, "run_failed", status.error, "GET status")
    if status.model_version < 0:  # a restarted aggregator with no checkpoint
        _post_init(aggregator, learner, config)
        return 1
    if status.phase in (Phase.PUBLISHED, Phase.DONE):
        return config.rounds + 1
    open_round = status.round
    if last is not None and last.round == open_round:
        if uplink.lost(status, last):
            uplink.send(last)
        return open_round + 1
    return open_round


def _log_round(config: ClientConfig, round_: int, metrics: dict, started: float) -> None:
    elapsed = time.monotonic() - started
    eta = elapsed / round_ * (config.rounds - round_)
    log.info("client=%d round=%d/%d %s elapsed_s=%.1f eta_s=%.1f", config.client_id, round_,
             config.rounds, _fmt(metrics), elapsed, eta)


def _fmt(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
