"""The model builder's view of the client settings: architecture, size, normalisation and
optimizer, with the defaults and checks of ``client_component.settings`` (so that they cannot
drift), validated without importing TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass

from client_component.settings import (  # noqa: F401 (re-exported for the model builder)
    ARCHITECTURES,
    LOGIT_ADJUSTMENTS,
    NORMS,
    OPTIMIZERS,
    ClientConfig,
)
from contract.settings import SettingsError, problems, settings_of

_DEFAULTS = {s.name: s.default for s in settings_of(ClientConfig)}


class ModelConfigError(SettingsError):
    """An unknown architecture, norm or optimizer; the message lists the accepted ones."""


@dataclass(frozen=True)
class ModelConfig:
    """What ``client_component.model.build_model`` needs to know."""

    architecture: str = _DEFAULTS["model"]
    width: int = _DEFAULTS["model_width"]
    depth: int = _DEFAULTS["model_depth"]
    norm: str = _DEFAULTS["norm"]
    optimizer: str = _DEFAULTS["optimizer"]
    learning_rate: float = _DEFAULTS["learning_rate"]

    @classmethod
    def of(cls, config: ClientConfig) -> ModelConfig:
        """The model's settings, picked out of the client's."""
        return cls(config.model, config.model_width, config.model_depth, config.norm,
                   config.optimizer, config.learning_rate)

    def validate(self) -> None:
        """ModelConfigError naming every refused choice, as the client settings check them."""
        found = problems(ClientConfig, {
            "model": self.architecture, "model_width": self.width, "model_depth": self.depth,
            "norm": self.norm, "optimizer": self.optimizer,
            "learning_rate": self.learning_rate})
        if found:
            raise ModelConfigError(found)
