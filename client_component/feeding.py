"""Feeding data to Keras: arrays as they are, image files streamed through tf.data (decoded
with Pillow one example at a time, cached to disk, shuffled, batched, prefetched), so a large
image folder is never decoded into memory at once."""

from __future__ import annotations

import tempfile

import numpy as np
import tensorflow as tf

from client_component.datasets import ImageFiles
from client_component.datasets.image_folder import decode_images

Features = np.ndarray | ImageFiles


def image_dataset(files: ImageFiles, y: np.ndarray | None, batch_size: int,
                  shuffle_seed: int | None = None, cache_dir: str | None = None
                  ) -> tf.data.Dataset:
    """Batches of (images, labels), or of images alone when ``y`` is None."""
    size, channels = files.image_size, files.channels

    def examples():
        for i in range(len(files)):
            image = decode_images(files[np.array([i])])[0]
            yield (image, y[i]) if y is not None else image

    image_spec = tf.TensorSpec((size, size, channels), tf.float32)
    label_spec = tf.TensorSpec(np.shape(y)[1:], tf.int64) if y is not None else None
    signature = (image_spec, label_spec) if y is not None else image_spec
    dataset = tf.data.Dataset.from_generator(examples, output_signature=signature)
    dataset = dataset.cache(f"{cache_dir or tempfile.mkdtemp(prefix='fl-cache-')}/decoded")
    if shuffle_seed is not None:
        dataset = dataset.shuffle(min(len(files), 4096), seed=shuffle_seed,
                                  reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def predict(model, x: Features, batch_size: int = 256) -> np.ndarray:
    """The model's outputs on ``x``; image files are decoded a batch at a time."""
    if isinstance(x, ImageFiles):
        return model.predict(image_dataset(x, None, batch_size), verbose=0)
    return model.predict(x, batch_size=batch_size, verbose=0)
