"""Keras models picked from the data: an MLP or Conv1D for tables, a compact CNN for images,
or any ``keras.applications`` network (weights=None) by name for larger images."""

from __future__ import annotations

import keras

from client_component.model_config import ModelConfig, ModelConfigError
from client_component.multilabel_loss import multi_label_loss

FLATTEN_MAX_POSITIONS = 64  # a final feature map of at most 8x8 is flattened, not averaged


def build_model(input_shape: tuple[int, ...], num_classes: int, kind: str,
                config: ModelConfig | None = None, seed: int = 0,
                multi_label: bool = False) -> keras.Model:
    """A compiled model; binary tasks get one sigmoid unit, others a softmax, multi-label
    tasks one sigmoid unit per observation (``num_classes`` of them)."""
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
    binary = num_classes == 2 and not multi_label
    sigmoid = binary or multi_label
    outputs = keras.layers.Dense(1 if binary else num_classes,
                                 activation="sigmoid" if sigmoid else "softmax")(features)
    model = keras.Model(inputs, outputs, name=f"fl_{arch.replace(':', '_')}")
    optimizer = (keras.optimizers.Adam(config.learning_rate)
                 if resolved_optimizer(config.optimizer, kind) == "adam"
                 else keras.optimizers.SGD(config.learning_rate, momentum=0.9))
    loss = ("binary_crossentropy" if binary else multi_label_loss() if multi_label
            else "sparse_categorical_crossentropy")
    model.compile(optimizer=optimizer, loss=loss)
    return model


def resolved_optimizer(optimizer: str, kind: str) -> str:
    """``auto``: Adam for tables; SGD with momentum for images, whose Adam steps keep their
    full size on a site that has (nearly) only one class and so drift furthest under label
    skew (bench.quality --sweep)."""
    if optimizer != "auto":
        return optimizer
    return "adam" if kind == "table" else "sgd"


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
    # A small final map is flattened: where a finding sits on the film matters, and averaging
    # it away left features that barely differ between films (centralized AUC 0.59 after two
    # epochs with average pooling, 0.91 flattened; federated under label skew 0.69 vs 0.81).
    # Large maps (big images) are averaged, or the dense layer would dwarf the network.
    small = x.shape[1] * x.shape[2] <= FLATTEN_MAX_POSITIONS
    x = keras.layers.Flatten()(x) if small else keras.layers.GlobalAveragePooling2D()(x)
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
