"""Keras models picked from the data: an MLP or Conv1D for tables, a compact CNN for images,
or any ``keras.applications`` network (weights=None) by name for larger images."""

from __future__ import annotations

import keras

from client_component.model_config import ModelConfig, ModelConfigError


def build_model(input_shape: tuple[int, ...], num_classes: int, kind: str,
                config: ModelConfig | None = None, seed: int = 0) -> keras.Model:
    """A compiled model; binary tasks get one sigmoid unit, others a softmax."""
    config = config or ModelConfig()
    config.validate()
    if config.architecture.startswith("keras:") and not hasattr(keras.applications,
                                                                config.architecture[6:]):
        raise ModelConfigError(f"keras.applications has no {config.architecture[6:]!r}")
    keras.utils.set_random_seed(seed)
    arch = config.architecture
    if arch == "auto":
        arch = "mlp" if kind == "table" else "cnn"
    inputs = keras.Input(shape=input_shape)
    features = _BODIES[arch](inputs, config) if arch in _BODIES else _application(inputs, arch)
    binary = num_classes == 2
    outputs = keras.layers.Dense(1 if binary else num_classes,
                                 activation="sigmoid" if binary else "softmax")(features)
    model = keras.Model(inputs, outputs, name=f"fl_{arch.replace(':', '_')}")
    optimizer = (keras.optimizers.Adam(config.learning_rate) if config.optimizer == "adam"
                 else keras.optimizers.SGD(config.learning_rate, momentum=0.9))
    model.compile(optimizer=optimizer,
                  loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy")
    return model


def _mlp(x, config: ModelConfig):
    for i in range(config.depth):
        x = keras.layers.Dense(max(config.width // (2 ** i), 4), activation="relu")(x)
    return x


def _conv1d(x, config: ModelConfig):
    # The KFP sample's table model: features as a 1-D signal, Conv1D -> MaxPool -> Dense.
    x = keras.layers.Reshape((x.shape[-1], 1))(x)
    x = keras.layers.Conv1D(max(config.width // 8, 4), 3, activation="relu", padding="same")(x)
    x = keras.layers.MaxPooling1D(3)(x)
    x = keras.layers.Flatten()(x)
    return keras.layers.Dense(max(config.width // 4, 8), activation="relu")(x)


def _cnn(x, config: ModelConfig):
    for i in range(config.depth):
        filters = config.width * 2 ** i
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=config.norm == "none")(x)
        if config.norm == "group":
            x = keras.layers.GroupNormalization(groups=min(8, filters))(x)
        x = keras.layers.Activation("relu")(x)
        if min(x.shape[1], x.shape[2]) >= 4:
            x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.layers.Dense(config.width * 2, activation="relu")(x)


def _application(x, arch: str):
    network = getattr(keras.applications, arch[6:])
    try:
        base = network(weights=None, include_top=False, input_shape=tuple(x.shape[1:]),
                       pooling="avg")
    except ValueError as exc:
        raise ModelConfigError(f"{arch} cannot take inputs of shape {tuple(x.shape[1:])}: "
                               f"{exc}") from None
    return base(x)


_BODIES = {"mlp": _mlp, "conv1d": _conv1d, "cnn": _cnn}
