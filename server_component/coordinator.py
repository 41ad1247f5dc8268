"""The round coordinator: all aggregator state behind one lock/condition.

Round r (1-based) trains from model version r-1 and, once closed, publishes version r.
Version 0 is the first valid init a client posts. A round closes when every client reported,
or at its deadline when at least ``min_clients`` did; with fewer the run fails. Handlers
block on the condition with timeouts; nothing polls.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import numpy as np

from contract import wire
from contract.errors import (
    IncompatibleUpdate,
    MalformedRequest,
    NotSelected,
    RoundConflict,
    RunFailed,
    TrainingFinished,
)
from contract.messages import Phase, Status
from contract.sampling import ClientSampling
from contract.secagg.params import SecAggParams
from contract.settings import validated
from server_component.checkpoint import Checkpoint, RoundRecord, RunInfo, save_checkpoint
from server_component.client_dp import ClientLevelDp
from server_component.counters import Counters
from server_component.evaluation_counts import Counts
from server_component.final_evaluation import FinalEvaluations
from server_component.model_spec import ModelSpec
from server_component.round_models import RoundModels, Selection, select
from server_component.rounds import OpenRound, format_round
from server_component.run_privacy import RunPrivacy
from server_component.secure_stages import SecureStagesMixin
from server_component.settings import AggregatorConfig
from server_component.strategies import FedAvg, Strategy

log = logging.getLogger(__name__)

Tensors = dict[str, np.ndarray]


class RoundCoordinator(SecureStagesMixin):
    """Owns the global model, the open round, checkpoints and the shutdown handshake.

    ``min_clients`` None (or 0) means all clients; the values are checked as the aggregator's
    settings check them (``server_component.settings``: SettingsError, a ValueError).
    ``secure``: the round's updates arrive masked (``secure_stages``), not as /v1/update.
    ``privacy``: the run's privacy ledger (``run_privacy``), which may end training early."""

    def __init__(self, num_clients: int, rounds: int, *, strategy: Strategy | None = None,
                 min_clients: int | None = None, round_timeout: float | None = None,
                 checkpoint_dir: str | None = None, secure: SecAggParams | None = None,
                 privacy: RunPrivacy | None = None, sampling: ClientSampling | None = None,
                 round_models: RoundModels | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        secure_settings = {} if secure is None else {
            "secure_aggregation": "secagg", "strategy": (strategy or FedAvg()).name}
        validated(AggregatorConfig(num_clients, rounds, min_clients=min_clients or 0,
                                   **secure_settings))
        self.num_clients, self.rounds = num_clients, rounds
        self.min_clients = min_clients or num_clients
        self.round_timeout = round_timeout
        self.privacy = privacy or RunPrivacy()
        self.sampling = sampling or ClientSampling(num_clients)
        self.round_models = round_models  # the best round's model (and every round's)
        self.selection: Selection | None = None  # the final model's round, once published
        self.strategy = strategy or FedAvg()
        if self.privacy.mode == "client":
            # Accounted with the rate at which a client is really asked (Poisson sampling).
            self.privacy.sampling_rate = self.sampling.rate
        if self.privacy.mode == "client" and secure is None:
            # Central noise; under secure aggregation the clients clip and noise (uplink).
            self.strategy = ClientLevelDp(self.strategy, self.privacy.clip_norm,
                                          self.privacy.noise_multiplier,
                                          self.privacy.noise_seed, self.privacy.clip_quantile,
                                          denominator=self.sampling.expected_clients)
        self.strategy.bind(num_clients)
        self.checkpoint_dir = checkpoint_dir
        self.secure = secure
        self._clock = clock
        self._cond = threading.Condition()
        # One init is read in full at a time: the others wait, then find a model adopted.
        self._adopting = threading.Lock()
        self._spec: ModelSpec | None = None
        self._global: Tensors | None = None
        # The encoded global model, version _version (bytes, or a view of a numpy buffer).
        self._model_body: bytes | memoryview | None = None
        self._version = -1
        self._open: OpenRound | None = None
        self._evaluations = FinalEvaluations()
        self._started = clock()
        self._failure: str | None = None
        self.history: list[RoundRecord] = []
        self.run_info = RunInfo()  # what the clients said about themselves (informative)
        self.counters = Counters()
        # Called with each closed round's record, under the lock: they must not block.
        self.round_listeners: list[Callable[[RoundRecord], None]] = []

    @property
    def config(self) -> dict[str, str | int]:
        """What a checkpoint must match to be resumed by this run."""
        config = {"num_clients": self.num_clients, "rounds": self.rounds,
                  "strategy": self.strategy.name}
        if not self.sampling.everyone:  # a resumed round must draw the same sample
            config["sampling"] = self.sampling.describe()
        return config

    # ---- inputs -------------------------------------------------------------------------

    def submit_init(self, message: wire.Message | wire.StreamedMessage) -> bool:
        """Adopt the first valid init as model version 0; later inits are ignored.

        Every client offers its initial model at start; once one is adopted the others are
        answered from their header alone, so N clients starting at once cost the aggregator
        one model in memory, not N."""
        meta = wire.parse_init_meta(message.metadata)
        self._check_client(meta.client_id)
        self._check_init_layout(message.layout)
        with self._adopting:
            with self._cond:
                self._raise_if_failed()
                if self._version >= 0:
                    self._record_client_info(meta)
                    return False
            tensors = message.materialize().tensors
            ModelSpec.of(tensors).check(tensors)  # finite values: the adopted init only
            served = self.strategy.initial_model(dict(tensors))
            spec = ModelSpec.of(served)
            with self._cond:
                self._raise_if_failed()
                self._record_client_info(meta)
                self.run_info.architecture = meta.architecture  # the adopted model's, opaque
                self._spec = spec
                self._publish(served, version=0)
                self._checkpoint()
        log.info("event=init client=%d tensors=%d parameters=%d strategy=%s%s",
                 meta.client_id, len(spec.tensors), spec.num_parameters, self.strategy.name,
                 " keeps_all_updates=true" if self.strategy.keeps_all_updates else "")
        return True

    def _check_init_layout(self, layout: wire.Layout) -> None:
        """What refuses any init from its header alone: dtypes and reserved names."""
        ModelSpec.from_layout(layout)
        if self.secure and not all(np.issubdtype(d, np.floating) for _, d in layout.values()):
            raise IncompatibleUpdate("secure aggregation averages floating-point tensors only")
        reserved = [n for n in layout if n.startswith(wire.CONTROL_PREFIX)]
        if reserved:
            raise MalformedRequest(f"tensor names starting with {wire.CONTROL_PREFIX!r} are "
                                   f"reserved for control variates: {sorted(reserved)[:5]}")

    def _record_client_info(self, meta: wire.InitMeta) -> None:
        """Keep what a client says about its data and training (the report shows it)."""
        if meta.partition:
            self.run_info.partitions[meta.client_id] = meta.partition
        if meta.settings and not self.run_info.client_settings:
            self.run_info.client_settings = meta.settings

    def submit_update(self, message: wire.Message | wire.StreamedMessage,
                      body_size: int = 0) -> str:
        """Fold one client's update into the open round; 'accepted' or 'duplicate'.

        Everything that can refuse the update (metadata, layout, NaN/Inf, round, conflicting
        duplicate) is checked before its first value is added, so a refused update leaves
        the round exactly as it was; a streamed message is read twice for that."""
        meta = wire.parse_update_meta(message.metadata)
        self._check_client(meta.client_id)
        if self.secure:
            raise IncompatibleUpdate("this run aggregates securely: updates go masked through "
                                     "/v1/secagg/* (README: Secure aggregation), never in the "
                                     "clear")
        with self._cond:
            self._require_open_round(meta.round)  # a stale round is refused before any read
            spec = self._spec
        self.strategy.check_update(meta, message.layout)
        spec.check_layout(message.layout)
        digest = wire.content_digest(message, inspect=spec.check_finite)
        with self._cond:
            open_round = self._require_open_round(meta.round)
            if meta.client_id not in open_round.selected:
                raise NotSelected(f"client {meta.client_id} is not in round {meta.round}'s "
                                  f"sample {open_round.selected}: wait for the next round")
            previous = open_round.digests.get(meta.client_id)
            if previous is not None:
                if previous != digest:
                    raise RoundConflict(f"client {meta.client_id} already sent a different "
                                        f"update for round {meta.round}")
                self.counters.update_duplicate()
                return "duplicate"
            self.strategy.fold(open_round.accumulator, message, meta)
            open_round.digests[meta.client_id] = digest
            open_round.examples[meta.client_id] = meta.num_examples
            open_round.metrics[meta.client_id] = meta.metrics
            self.privacy.note_update(meta.client_id, meta.privacy)
            self.counters.update_accepted(body_size)
            log.info("event=update round=%d client=%d examples=%d reported=%d/%d",
                     meta.round, meta.client_id, meta.num_examples,
                     len(open_round.digests), len(open_round.selected))
            if len(open_round.digests) == len(open_round.selected):
                self._close_round(open_round)
            return "accepted"

    def submit_done(self, client_id: int, metrics: Mapping[str, float], num_examples: int,
                    counts: Counts | None = None) -> None:
        """Keep a client's evaluation of the final model (a repeat replaces its own)."""
        self._check_client(client_id)
        with self._cond:
            self._evaluations.record(client_id, metrics, num_examples, counts)
            self._cond.notify_all()
        log.info("event=done client=%d done=%d/%d", client_id, len(self._evaluations),
                 self.num_clients)

    # ---- time ---------------------------------------------------------------------------

    def enforce_deadlines(self) -> None:
        """Block until training ends (final model published or run failed), closing or
        failing each round whose deadline passes. Waits on the condition, never polls."""
        with self._cond:
            while not self._training_over():
                open_round = self._open
                if open_round is None or open_round.deadline is None:
                    self._cond.wait()
                    continue
                remaining = open_round.deadline - self._clock()
                if remaining > 0:
                    self._cond.wait(timeout=remaining)
                elif self._open is open_round:
                    self._on_deadline(open_round)

    def _on_deadline(self, open_round: OpenRound) -> None:
        if open_round.secure is not None:
            self._secure_deadline(open_round)
            return
        reported = sorted(open_round.digests)
        missing = [cid for cid in open_round.selected if cid not in open_round.digests]
        quorum = min(self.min_clients, len(open_round.selected))
        if len(reported) >= quorum:
            log.warning("event=deadline round=%d closing_with=%s missing=%s",
                        open_round.number, reported, missing)
            self._close_round(open_round)
            return
        self._fail(
            f"round {open_round.number} reached its {self.round_timeout:g} s deadline with "
            f"{len(reported)} of {len(open_round.selected)} clients (min_clients={quorum}); "
            f"missing client ids {missing}")

    def _fail(self, reason: str) -> None:
        """The run has failed: every waiting call answers 410 ``run_failed`` (lock held)."""
        self._failure = reason
        log.error("event=run_failed %s", reason)
        self._cond.notify_all()

    # ---- outputs ------------------------------------------------------------------------

    def wait_for_model(self, version: int, timeout: float) -> bytes | memoryview | None:
        """The encoded model of ``version`` once it exists, or None after ``timeout`` s."""
        if version < 0:
            raise MalformedRequest(f"round must be >= 0, got {version}")
        if version > self.final_version:
            raise TrainingFinished(f"round {version} is past the last round "
                                   f"({self.final_version}){self._stopped_early()}")
        with self._cond:
            self._cond.wait_for(lambda: self._version >= version or self._failure,
                                timeout=timeout)
            self._raise_if_failed()
            if self._version < version:
                return None
            if self._version > version:
                raise RoundConflict(
                    f"model version {version} was superseded by version {self._version}")
            return self._model_body

    def wait_until_complete(self, timeout: float | None = None) -> bool:
        """Block until the final model is out and every client said done."""
        with self._cond:
            return self._cond.wait_for(self._complete, timeout=timeout)

    @property
    def failure(self) -> str | None:
        """Why the run failed (a round missed its quorum at the deadline); None if it has not."""
        with self._cond:
            return self._failure

    def final_model(self) -> bytes | memoryview | None:
        """The final model's body, without what a strategy serves beside the weights
        (SCAFFOLD's control variates)."""
        with self._cond:
            if self._version != self.final_version:
                return None
            model, control = wire.split_control(self._global)
            if not control:
                return self._model_body
            return wire.encode(model, {wire.META_ROUND: str(self._version)})

    def final_metrics(self) -> dict[str, float]:
        """Clients' evaluation of the final model, weighted by their test examples."""
        with self._cond:
            return self._evaluations.metrics()

    def final_client_metrics(self) -> dict[int, dict[str, float]]:
        """Each client's own evaluation of the final model on its test split."""
        with self._cond:
            return self._evaluations.per_client()

    def final_client_examples(self) -> dict[int, int]:
        """How many test examples each client evaluated the final model on."""
        with self._cond:
            return self._evaluations.examples()

    def final_counts(self) -> Counts | None:
        """The clients' confusion-matrix and ROC counts, summed."""
        with self._cond:
            return self._evaluations.counts()

    @property
    def elapsed_s(self) -> float:
        """Seconds since this coordinator started (a restarted aggregator counts anew)."""
        return self._clock() - self._started

    def status(self) -> Status:
        """The run's position, as ``GET /v1/status`` answers it."""
        with self._cond:
            open_round = self._open
            return Status(
                round=open_round.number if open_round else max(self._version, 0),
                rounds=self.rounds,
                phase=self._phase(),
                model_version=self._version,
                num_clients=self.num_clients,
                min_clients=self.min_clients,
                strategy=self.strategy.name,
                reported=self._reported(open_round),
                done=self._evaluations.client_ids,
                last_metrics=dict(self.history[-1].metrics) if self.history else {},
                error=self._failure,
                secure_aggregation="secagg" if self.secure else "off",
                secagg_session=open_round.secure.session if open_round and open_round.secure
                else "",
                secagg_stage=open_round.secure.stage.value if open_round and open_round.secure
                else "",
                final_version=self.final_version,
                dp=self.privacy.mode,
                epsilon=self.privacy.epsilon,
                dp_steps={str(c): s for c, s in sorted(self.privacy.client_steps.items())},
                stopped=self.privacy.stopped,
                selected=list(open_round.selected) if open_round else [],
                fraction_fit=self.sampling.fraction,
            )

    @staticmethod
    def _reported(open_round: OpenRound | None) -> list[int]:
        """Who sent this round's update (with secure aggregation: its masked input)."""
        if open_round is None:
            return []
        if open_round.secure is not None:
            return sorted(open_round.secure.masked)
        return sorted(open_round.digests)

    # ---- restore ------------------------------------------------------------------------

    def restore(self, checkpoint: Checkpoint) -> None:
        """Resume from a checkpoint: its model version is published, the next round opens."""
        with self._cond:
            self._spec = ModelSpec.of(checkpoint.model)
            self.strategy.load_state(checkpoint.strategy_state)
            self.history = list(checkpoint.history)
            self.privacy.restore(self.history)
            self.run_info = checkpoint.run_info
            self._publish(checkpoint.model, checkpoint.version)
        log.info("event=resumed version=%d rounds_closed=%d", checkpoint.version,
                 len(checkpoint.history))

    # ---- internals ----------------------------------------------------------------------

    def _publish(self, model: Tensors, version: int) -> None:
        """Make ``model`` version ``version`` and open the next round (lock held)."""
        self._set_model(wire.encode(model, {wire.META_ROUND: str(version)}), version)

    def _set_model(self, body: bytes | memoryview, version: int) -> None:
        """Publish an encoded model: the global tensors are views into ``body``, so one
        copy of the model is kept (lock held). The final version is the round
        ``select_model`` picks."""
        if version == self.final_version and version > 0:
            body = self._selected_final(body, version)
        self._model_body = body
        self._global = wire.decode(body).tensors
        self._version = version
        self.strategy.serve(self._global)
        if version < self.final_version:
            self._open_round(version + 1)
        else:
            self._open = None
        self._cond.notify_all()

    def _selected_final(self, body: bytes | memoryview, version: int) -> bytes | memoryview:
        """The final model: ``body`` (the last round's), or the best round's when
        ``select_model=best:<metric>`` picked an earlier one (lock held)."""
        metric = self.round_models.metric if self.round_models else None
        self.selection = select(self.history, metric)
        best = self.round_models.best_body() if self.round_models else None
        if self.selection.round != version and best is not None:
            tensors = wire.decode(best).tensors
            body = wire.encode(tensors, {wire.META_ROUND: str(version),
                                         wire.META_SELECTED_ROUND: str(self.selection.round)})
        log.info("event=model_selected final_version=%d model=%s", version,
                 self.selection.describe())
        return body

    def _open_round(self, number: int) -> None:
        """Open round ``number`` for its sampled clients (lock held)."""
        now = self._clock()
        selected = self.sampling.select(number)
        self._open = OpenRound(
            number=number, accumulator=self.strategy.new_round(), started=now,
            deadline=now + self.round_timeout if self.round_timeout else None,
            secure=self._new_secure_round(number), selected=selected)
        if not self.sampling.everyone:
            log.info("event=sample round=%d selected=%s (%s)", number, selected,
                     self.sampling.describe())
        if not selected:  # Poisson sampling drew no one: the round releases noise only
            self._close_round(self._open)

    def _aggregate(self, open_round: OpenRound) -> memoryview:
        """The next model's body, with the strategy's result written straight into it."""
        current = self._global if self.strategy.needs_current else None
        if current is None:
            # FedAvg needs only the sums: drop the old body before the new one exists, so
            # memory peaks at the sums plus one model (a response in flight keeps its own).
            self._global = self._model_body = None
        body, views = wire.allocate(self._spec.layout,
                                    {wire.META_ROUND: str(open_round.number)})
        self.strategy.aggregate_into(open_round.accumulator, current, open_round.number, views)
        return body

    def _close_round(self, open_round: OpenRound, record: RoundRecord | None = None) -> None:
        record = record or open_round.record(self.num_clients, self._clock())
        record.privacy = self.privacy.close_round(open_round.number, self.rounds)
        body = self._aggregate(open_round)
        if isinstance(self.strategy, ClientLevelDp) and record.privacy:
            record.privacy["clip_norm"] = self.strategy.last_clip_norm
        open_round.accumulator = None
        self.history.append(record)
        if self.round_models is not None and self.round_models.needed:
            self.round_models.closed(self.history, body)
        self._set_model(body, open_round.number)
        closed = self.counters.round_closed()
        self._checkpoint()
        for listener in self.round_listeners:
            listener(record)
        elapsed = self.elapsed_s
        eta = elapsed / closed * (self.rounds - record.round)
        log.info("event=round_closed %s elapsed_s=%.1f eta_s=%.1f",
                 format_round(record, self.rounds), elapsed, eta)

    def _checkpoint(self) -> None:
        if not self.checkpoint_dir or self._global is None:
            return
        try:
            save_checkpoint(self.checkpoint_dir, Checkpoint(
                self._version, self._global, self.strategy.state(), self.history, self.config,
                self.run_info))
        except OSError as exc:
            # The previous checkpoint is intact (atomic rename); training goes on.
            log.error("event=checkpoint_failed version=%d error=%s", self._version, exc)

    @property
    def final_version(self) -> int:
        """The model version training ends at: ``rounds``, unless the privacy budget ended
        it earlier."""
        return self.privacy.final_version(self.rounds)

    def _stopped_early(self) -> str:
        return f": {self.privacy.stopped}" if self.privacy.stopped else ""

    def _training_over(self) -> bool:
        return self._version == self.final_version or self._failure is not None

    def _complete(self) -> bool:
        return (self._version == self.final_version
                and len(self._evaluations) == self.num_clients)

    def _phase(self) -> Phase:
        if self._failure:
            return Phase.FAILED
        if self._complete():
            return Phase.DONE
        return Phase.PUBLISHED if self._version == self.final_version else Phase.WAITING

    def _raise_if_failed(self) -> None:
        if self._failure:
            raise RunFailed(self._failure)

    def _check_client(self, client_id: int) -> None:
        if not 0 <= client_id < self.num_clients:
            raise MalformedRequest(
                f"unknown client id {client_id}: this run has clients 0..{self.num_clients - 1}")

    def _require_open_round(self, round_: int) -> OpenRound:
        self._raise_if_failed()
        if self._version >= self.final_version:
            raise TrainingFinished(f"training finished after round {self.final_version}"
                                   f"{self._stopped_early()}")
        if self._open is None:
            raise RoundConflict("no round is open: the initial model was not posted yet")
        if round_ != self._open.number:
            raise RoundConflict(f"round {round_} is not the open round {self._open.number}")
        return self._open
