"""The one in-memory form every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class DatasetError(ValueError):
    """The dataset named or pointed at cannot be loaded; the message says why."""


@dataclass(frozen=True)
class ImageFiles:
    """Image files decoded lazily (Pillow) in batches: large folders never sit decoded in
    memory at once. Indexing with an index array gives the subset."""

    paths: np.ndarray  # of str
    image_size: int
    channels: int

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index) -> ImageFiles:
        return ImageFiles(self.paths[index], self.image_size, self.channels)

    @property
    def shape(self) -> tuple[int, ...]:
        """(N, H, W, C) of the decoded array: every image is resized to ``image_size``."""
        return (len(self), self.image_size, self.image_size, self.channels)


@dataclass(frozen=True)
class Dataset:
    """Train/test (and, when the source has one, validation) splits.

    ``kind`` is "table" (x of shape (N, F)) or "image" (N, H, W, C), where image x may be
    ``ImageFiles`` decoded on demand. Single-label y is (N,) class indices; multi-label y is
    (N, L) with 1, 0 or ``labels.MASKED``, ``num_classes`` is then L and ``class_names`` the
    observations.
    """

    name: str
    kind: str
    x_train: np.ndarray | ImageFiles
    y_train: np.ndarray
    x_test: np.ndarray | ImageFiles
    y_test: np.ndarray
    num_classes: int
    x_val: np.ndarray | ImageFiles | None = None
    y_val: np.ndarray | None = None
    class_names: list[str] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example, the model's input: (F,) or (H, W, C)."""
        return tuple(self.x_train.shape[1:])

    @property
    def multi_label(self) -> bool:
        """Whether each example carries L findings rather than one class."""
        return self.y_train.ndim == 2


def stratified_split(y: np.ndarray, test_fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices), stratified by label when every class can be split."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(y))
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    train, test = train_test_split(indices, test_size=test_fraction, random_state=seed,
                                   stratify=stratify)
    return np.sort(train), np.sort(test)
