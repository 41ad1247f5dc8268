"""A deterministic stand-in for Keras in protocol tests: each round moves the weights by a
client- and round-specific step, so final weights are a pure function of the protocol."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np


class NumpyLearner:
    def __init__(self, client_id: int, shapes=((8, 4), (4,)),
                 before_fit: Callable[[int, int], None] | None = None) -> None:
        self.client_id = client_id
        rng = np.random.default_rng(42)  # the same init on every client
        self.weights = [rng.normal(size=s).astype(np.float32) for s in shapes]
        self.before_fit = before_fit
        self.rounds_fitted: list[int] = []
        self.lock = threading.Lock()

    def get_weights(self) -> list[np.ndarray]:
        return [w.copy() for w in self.weights]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        self.weights = [np.array(w, copy=True) for w in weights]

    def fit(self, round_: int) -> tuple[int, dict[str, float]]:
        if self.before_fit:
            self.before_fit(self.client_id, round_)
        step = np.float32(0.01 * (self.client_id + 1) * round_)
        self.weights = [w + step for w in self.weights]
        self.rounds_fitted.append(round_)
        return 10 * (self.client_id + 1), {"accuracy": 0.5 + 0.01 * round_}

    def evaluate_test(self) -> tuple[int, dict[str, float]]:
        return 5, {"accuracy": float(np.mean([w.mean() for w in self.weights]))}
