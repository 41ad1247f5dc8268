"""The shape contract every update must match: fixed by the first accepted init."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from server_component.chunked import all_finite
from server_component.errors import IncompatibleUpdate, MalformedRequest

# Updates may travel as float16 whatever the model's float dtype (halving the bytes sent);
# the aggregator accumulates in float64 and publishes the model in its own dtype.
UPDATE_FLOAT16 = np.dtype(np.float16)
SUPPORTED_DTYPES = frozenset({np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64)})


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass(frozen=True)
class ModelSpec:
    """Names, shapes and dtypes of the global model's tensors."""

    tensors: dict[str, TensorSpec]

    @classmethod
    def of(cls, tensors: Mapping[str, np.ndarray]) -> ModelSpec:
        for name, array in tensors.items():
            if array.dtype not in SUPPORTED_DTYPES:
                raise MalformedRequest(
                    f"tensor {name!r} has dtype {array.dtype}; supported: float16, float32, float64"
                )
        return cls({name: TensorSpec(a.shape, a.dtype) for name, a in sorted(tensors.items())})

    @property
    def num_parameters(self) -> int:
        return sum(int(np.prod(t.shape)) for t in self.tensors.values())

    def check(self, tensors: Mapping[str, np.ndarray]) -> None:
        """Raise IncompatibleUpdate unless ``tensors`` match this spec (float16 accepted for any
        float tensor) and are all finite."""
        if set(tensors) != set(self.tensors):
            missing = sorted(set(self.tensors) - set(tensors))
            extra = sorted(set(tensors) - set(self.tensors))
            raise IncompatibleUpdate(f"tensor names differ: missing {missing}, unexpected {extra}")
        for name, spec in self.tensors.items():
            array = tensors[name]
            if array.shape != spec.shape or array.dtype not in (spec.dtype, UPDATE_FLOAT16):
                raise IncompatibleUpdate(
                    f"tensor {name!r} is {array.dtype}{list(array.shape)}, "
                    f"the global model has {spec.dtype}{list(spec.shape)}"
                )
            if not all_finite(array):
                raise IncompatibleUpdate(f"tensor {name!r} holds NaN or Inf values")
