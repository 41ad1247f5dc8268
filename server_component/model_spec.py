"""The shape contract every update must match: fixed by the first accepted init."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from contract.errors import IncompatibleUpdate, MalformedRequest
from server_component.chunked import all_finite

# Updates may travel as float16 whatever the model's float dtype (halving the bytes sent);
# the aggregator accumulates in float64 and publishes the model in its own dtype.
UPDATE_FLOAT16 = np.dtype(np.float16)
SUPPORTED_DTYPES = frozenset({np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64)})


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the global model: its shape and dtype."""

    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass(frozen=True)
class ModelSpec:
    """Names, shapes and dtypes of the global model's tensors."""

    tensors: dict[str, TensorSpec]

    @classmethod
    def of(cls, tensors: Mapping[str, np.ndarray]) -> ModelSpec:
        """The spec of an init's tensors; MalformedRequest (400) for a dtype other than
        float16, float32 or float64."""
        return cls.from_layout({name: (a.shape, a.dtype) for name, a in tensors.items()})

    @classmethod
    def from_layout(cls, layout: Mapping[str, tuple[tuple[int, ...], np.dtype]]) -> ModelSpec:
        """The spec an init's header announces, checked as ``of`` checks tensors."""
        for name, (_, dtype) in layout.items():
            if dtype not in SUPPORTED_DTYPES:
                raise MalformedRequest(
                    f"tensor {name!r} has dtype {dtype}; supported: float16, float32, float64"
                )
        return cls({name: TensorSpec(tuple(shape), dtype)
                    for name, (shape, dtype) in sorted(layout.items())})

    @property
    def layout(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Each tensor's (shape, dtype) by name."""
        return {name: (t.shape, t.dtype) for name, t in self.tensors.items()}

    @property
    def num_parameters(self) -> int:
        """The number of scalar parameters over all tensors."""
        return sum(int(np.prod(t.shape)) for t in self.tensors.values())

    def check(self, tensors: Mapping[str, np.ndarray]) -> None:
        """Raise IncompatibleUpdate unless ``tensors`` match this spec (float16 accepted for any
        float tensor) and are all finite."""
        self.check_layout({name: (a.shape, a.dtype) for name, a in tensors.items()})
        for name, array in tensors.items():
            self.check_finite(name, array)

    def check_layout(self, layout: Mapping[str, tuple[tuple[int, ...], np.dtype]]) -> None:
        """Names, shapes and dtypes, as read from a header before any tensor data."""
        if set(layout) != set(self.tensors):
            missing = sorted(set(self.tensors) - set(layout))
            extra = sorted(set(layout) - set(self.tensors))
            raise IncompatibleUpdate(f"tensor names differ: missing {missing}, unexpected {extra}")
        for name, spec in self.tensors.items():
            shape, dtype = layout[name]
            if tuple(shape) != spec.shape or dtype not in (spec.dtype, UPDATE_FLOAT16):
                raise IncompatibleUpdate(
                    f"tensor {name!r} is {dtype}{list(shape)}, "
                    f"the global model has {spec.dtype}{list(spec.shape)}"
                )

    @staticmethod
    def check_finite(name: str, values: np.ndarray) -> None:
        """Raise IncompatibleUpdate if ``values`` of tensor ``name`` (all of it, or a chunk)
        hold NaN or Inf."""
        if not all_finite(values):
            raise IncompatibleUpdate(f"tensor {name!r} holds NaN or Inf values")
