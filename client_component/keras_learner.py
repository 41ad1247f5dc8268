"""The Keras learner: a model built from the client's data, trained and evaluated locally."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from client_component.data import load_dataset
from client_component.evaluation import evaluate
from client_component.local_data import LocalData, client_shard
from client_component.model import build_model

log = logging.getLogger("client_component")


@dataclass
class KerasLearner:
    model: object
    data: LocalData
    local_epochs: int = 1
    batch_size: int = 32

    @classmethod
    def from_config(cls, config) -> KerasLearner:
        data = client_shard(
            load_dataset(config.dataset, config.data_uri, config.seed),
            config.client_id, config.num_clients, config.partition, config.seed,
        )
        log.info("client=%d train=%d val=%d test=%d", config.client_id, len(data.y_train),
                 len(data.y_val), len(data.y_test))
        model = build_model(data.input_shape, data.num_classes, data.kind,
                            config.learning_rate, seed=config.seed)
        return cls(model, data, config.local_epochs, config.batch_size)

    def get_weights(self) -> list[np.ndarray]:
        return self.model.get_weights()

    def set_weights(self, weights: list[np.ndarray]) -> None:
        self.model.set_weights(weights)

    def fit(self, round_: int) -> tuple[int, dict[str, float]]:
        self.model.fit(self.data.x_train, self.data.y_train, epochs=self.local_epochs,
                       batch_size=self.batch_size, verbose=0, shuffle=True)
        metrics = evaluate(self.model, self.data.x_val, self.data.y_val, self.data.num_classes)
        return len(self.data.y_train), metrics

    def evaluate_test(self) -> tuple[int, dict[str, float]]:
        d = self.data
        return len(d.y_test), evaluate(self.model, d.x_test, d.y_test, d.num_classes)
