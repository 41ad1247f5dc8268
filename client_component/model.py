"""Keras models picked from the data: an MLP for tables, a compact CNN for images."""

from __future__ import annotations

import keras


def build_model(input_shape: tuple[int, ...], num_classes: int, kind: str,
                learning_rate: float = 1e-3, seed: int = 0) -> keras.Model:
    """A compiled model; binary tasks get one sigmoid unit, others a softmax."""
    keras.utils.set_random_seed(seed)
    body = _table_body(input_shape) if kind == "table" else _image_body(input_shape)
    binary = num_classes == 2
    head = keras.layers.Dense(1 if binary else num_classes,
                              activation="sigmoid" if binary else "softmax")
    model = keras.Sequential([keras.Input(shape=input_shape), *body, head])
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy",
    )
    return model


def _table_body(input_shape: tuple[int, ...]) -> list[keras.layers.Layer]:
    return [keras.layers.Dense(32, activation="relu"), keras.layers.Dense(16, activation="relu")]


def _image_body(input_shape: tuple[int, ...]) -> list[keras.layers.Layer]:
    return [
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(32, activation="relu"),
    ]
