"""The run's privacy ledger at the aggregator: what each round spent, and when the budget ends
training.

- ``example`` (DP-SGD at the sites): each client reports, with every update, its cumulative
  steps, its ε and whether its next round would exceed its budget. The ledger keeps the steps
  (a restarted client resumes from them, so a retry cannot reset its budget) and ends training
  after the round in which a client said its budget is spent.
- ``client`` (DP-FedAvg): the aggregator releases one noised sum per round; ε after r rounds is
  the accountant's, and training ends before the round that would exceed the target.

The per-round entries live in the round records, which every checkpoint holds: a restarted
aggregator rebuilds the ledger from them (``restore``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from contract import privacy
from server_component.checkpoint import RoundRecord

log = logging.getLogger(__name__)


@dataclass
class RunPrivacy:
    """The ledger of one run (``mode`` off: an empty one that never stops training)."""

    mode: str = "off"
    noise_multiplier: float = 1.0
    clip_norm: float = 1.0
    delta: float = 0.0
    target_epsilon: float = 0.0
    num_clients: int = 1
    client_steps: dict[int, int] = field(default_factory=dict)
    client_epsilon: dict[int, float] = field(default_factory=dict)
    client_delta: dict[int, float] = field(default_factory=dict)
    client_noise: dict[int, float] = field(default_factory=dict)  # calibrated at each site
    exhausted: set[int] = field(default_factory=set)  # in the open round
    rounds_released: int = 0  # client-level: noised sums published
    stopped: str = ""  # why training ended before the last round
    stopped_after: int = 0  # the round it ended after (0: it did not)
    clip_quantile: float = 0.0  # dp=client: 0 fixed clipping, else adaptive (client_dp)
    noise_seed: int | None = None  # tests only: central noise from the OS's entropy otherwise
    sampling_rate: float = 1.0  # dp=client: the probability a client is asked in a round

    def __post_init__(self) -> None:
        if self.mode == "client":
            self.delta = self.delta or privacy.default_delta(self.num_clients)

    @property
    def budget(self) -> privacy.PrivacyBudget:
        """The client-level budget: one Gaussian release per round, each client asked with
        probability ``sampling_rate`` (Poisson sampling; 1: all clients)."""
        mechanism = privacy.Mechanism(self.noise_multiplier, self.sampling_rate)
        return privacy.PrivacyBudget(mechanism, self.delta, self.target_epsilon,
                                     self.rounds_released)

    @property
    def epsilon(self) -> float:
        """ε spent so far: the run's (client), or the largest site's (example)."""
        if self.mode == "client":
            return self.budget.epsilon
        return max(self.client_epsilon.values(), default=0.0)

    def note_update(self, client_id: int, report: Mapping[str, float]) -> None:
        """A client's privacy report, sent with its update (example-level; lock held)."""
        if self.mode != "example" or not report:
            return
        steps = int(report.get("steps", 0))
        self.client_steps[client_id] = max(self.client_steps.get(client_id, 0), steps)
        self.client_epsilon[client_id] = float(report.get("epsilon", 0.0))
        self.client_delta[client_id] = float(report.get("delta", 0.0))
        if "noise_multiplier" in report:
            self.client_noise[client_id] = float(report["noise_multiplier"])
        if report.get("exhausted"):
            self.exhausted.add(client_id)

    def close_round(self, round_: int, rounds: int) -> dict:
        """The closed round's ledger entry; decides whether training stops after it."""
        if self.mode == "off":
            return {}
        if self.mode == "client":
            self.rounds_released += 1
            if round_ < rounds and self.budget.allow(1) < 1:
                self._stop(round_, f"the privacy budget ε={self.target_epsilon:g} allows no "
                           f"round after round {round_} (ε spent {self.epsilon:.3f})")
        elif self.exhausted and round_ < rounds:
            self._stop(round_, f"client(s) {sorted(self.exhausted)} reached the privacy "
                       f"budget ε={self.target_epsilon:g} in round {round_}")
        self.exhausted = set()
        entry = self.entry()
        if self.stopped_after == round_:
            entry["stopped"] = self.stopped
        return entry

    def entry(self) -> dict:
        """ε so far, as a round record and the outputs show it."""
        entry = {"mode": self.mode, "epsilon": self.epsilon, "delta": self.reported_delta,
                 "noise_multiplier": self.reported_noise, "clip_norm": self.clip_norm}
        if self.mode == "client":
            entry["rounds"] = self.rounds_released
        else:
            entry["client_epsilon"] = {str(c): e for c, e in sorted(self.client_epsilon.items())}
            entry["client_steps"] = {str(c): s for c, s in sorted(self.client_steps.items())}
        return entry

    @property
    def reported_noise(self) -> float:
        """The noise multiplier (example-level: the smallest site's, which may calibrate its
        own)."""
        if self.mode == "example" and self.client_noise:
            return min(self.client_noise.values())
        return self.noise_multiplier

    @property
    def reported_delta(self) -> float:
        """δ of the reported ε (example-level: the largest site's)."""
        if self.mode == "client":
            return self.delta
        return max(self.client_delta.values(), default=self.delta)

    def restore(self, history: Sequence[RoundRecord]) -> None:
        """Rebuild the ledger from a checkpoint's round records."""
        entries = [r.privacy for r in history if r.privacy]
        if self.mode == "client":
            self.rounds_released = len(entries)
        elif entries:
            last = entries[-1]
            self.client_steps = {int(c): int(s) for c, s in last["client_steps"].items()}
            self.client_epsilon = {int(c): float(e)
                                   for c, e in last["client_epsilon"].items()}
            self.client_delta = dict.fromkeys(self.client_epsilon, float(last["delta"]))
            # The smallest site's noise multiplier (what the outputs report), for each site.
            self.client_noise = dict.fromkeys(self.client_epsilon,
                                              float(last["noise_multiplier"]))
        stop = next((r for r in history if r.privacy.get("stopped")), None)
        if stop is not None:
            self.stopped, self.stopped_after = stop.privacy["stopped"], stop.round

    def final_version(self, rounds: int) -> int:
        """The model version training ends at: ``rounds``, or where the budget stopped it."""
        return self.stopped_after or rounds

    def _stop(self, round_: int, reason: str) -> None:
        self.stopped, self.stopped_after = reason, round_
        log.warning("event=privacy_budget_reached round=%d %s; the run finishes with model "
                    "version %d", round_, reason, round_)
