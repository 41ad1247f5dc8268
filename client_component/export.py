"""The final global model as a Keras ``.keras`` file.

The aggregator is framework-free: it keeps the architecture a client registered with its
init (Keras JSON, ``model.to_json()``) beside the final weights, and this step, in the
client's TensorFlow image, puts the two together. A ``.keras`` file loads with
``keras.models.load_model`` anywhere, without this project's code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from contract import wire
from contract.file_names import FINAL_WEIGHTS, MODEL_ARCHITECTURE

KERAS_FILE = "model.keras"


class ExportError(RuntimeError):
    """The aggregator's outputs cannot be turned into a Keras model (says what is missing)."""


def export_keras(weights_dir: str | Path, target_dir: str | Path) -> dict:
    """Write ``model.keras`` and a copy of the raw weights into ``target_dir``; returns
    metadata for the Model artifact."""
    import keras

    source, target = Path(weights_dir), Path(target_dir)
    architecture = source / MODEL_ARCHITECTURE
    weights_file = source / FINAL_WEIGHTS
    for needed in (architecture, weights_file):
        if not needed.is_file():
            raise ExportError(f"{needed} is missing: the aggregator wrote no final model "
                              "or no client registered its architecture")
    try:
        model = keras.models.model_from_json(architecture.read_text())
    except Exception as exc:  # Keras raises many types for a config it cannot rebuild
        raise ExportError(f"{architecture} is not a Keras model this Keras "
                          f"{keras.__version__} can rebuild: {exc}") from None
    weights = wire.tensors_to_list(wire.decode(weights_file.read_bytes()).tensors)
    try:
        model.set_weights(weights)
    except ValueError as exc:
        raise ExportError(f"the final weights do not fit the registered architecture: {exc}"
                          ) from None
    target.mkdir(parents=True, exist_ok=True)
    model.save(target / KERAS_FILE)
    shutil.copyfile(weights_file, target / FINAL_WEIGHTS)
    return {"keras_file": KERAS_FILE, "weights_file": FINAL_WEIGHTS, "model_name": model.name,
            "parameters": int(model.count_params()),
            "keras_version": keras.__version__,
            "input_shape": json.dumps(list(model.input_shape))}
