"""Model and optimizer choices, validated without importing TensorFlow (so a bad flag fails
fast)."""

from __future__ import annotations

from dataclasses import dataclass

ARCHITECTURES = ("auto", "mlp", "conv1d", "cnn", "keras:<Application>")
NORMS = ("none", "group")
OPTIMIZERS = ("auto", "adam", "sgd")
LOGIT_ADJUSTMENTS = ("none", "prior")  # client_component.label_prior


class ModelConfigError(ValueError):
    """An unknown architecture, norm or optimizer; the message lists the accepted ones."""


@dataclass(frozen=True)
class ModelConfig:
    architecture: str = "auto"
    width: int = 32
    depth: int = 2
    norm: str = "group"  # GroupNormalization: no running statistics to average; or "none"
    optimizer: str = "auto"  # SGD with momentum for images, Adam for tables
    learning_rate: float = 0.01

    def validate(self) -> None:
        arch = self.architecture
        if arch not in ARCHITECTURES[:-1] and not (arch.startswith("keras:") and arch[6:]):
            raise ModelConfigError(f"unknown model {arch!r}; accepted: {', '.join(ARCHITECTURES)}")
        if self.norm not in NORMS:
            raise ModelConfigError(f"unknown norm {self.norm!r}; accepted: {', '.join(NORMS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ModelConfigError(f"unknown optimizer {self.optimizer!r}; accepted: "
                                   f"{', '.join(OPTIMIZERS)}")
        if self.width < 1 or self.depth < 1:
            raise ModelConfigError("width and depth must be at least 1")
