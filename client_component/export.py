"""The final global model as a Keras ``.keras`` file.

The aggregator is framework-free: it keeps the architecture a client registered with its
init (Keras JSON, ``model.to_json()``) beside the final weights, and this step, in the
client's TensorFlow image, puts the two together. A ``.keras`` file loads with
``keras.models.load_model`` anywhere, without this project's code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from contract import wire
from contract.file_names import FINAL_WEIGHTS, MODEL_ARCHITECTURE
from contract.tracking import limit_mlflow_retries

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


def track_keras_model(keras_dir: str | Path, tracking_uri: str, mlflow_run_id: str) -> str:
    """Log ``model.keras`` as an MLflow Keras model (``model``) into the aggregator's MLflow
    run; returns the logged model's URI. Raises whatever MLflow raises: the caller decides
    that a tracking failure does not fail the export."""
    import keras
    import mlflow
    import tensorflow as tf
    from mlflow.models import infer_signature

    limit_mlflow_retries()
    mlflow.set_tracking_uri(tracking_uri)
    model = keras.models.load_model(Path(keras_dir) / KERAS_FILE)
    example = np.zeros((1, *model.input_shape[1:]), np.float32)
    signature = infer_signature(example, model.predict(example, verbose=0))
    # Reopened, the aggregator's run ends FINISHED again: the run trained whether or not
    # its model reached MLflow (a `with` block would mark it FAILED on an upload error).
    mlflow.start_run(run_id=mlflow_run_id)
    try:
        # Named requirements: inferring them would import the model in a subprocess.
        info = mlflow.keras.log_model(model, name="model", signature=signature,
                                      pip_requirements=[f"tensorflow=={tf.__version__}",
                                                        f"keras=={keras.__version__}"])
    finally:
        mlflow.end_run("FINISHED")
    return info.model_uri


def run_export_task(final_model: Any, keras_model: Any, tracking_uri: str = "") -> None:
    """The pipeline's export task: ``model.keras`` into ``keras_model`` (KFP artifacts:
    ``path`` and ``metadata``), and into MLflow when the aggregator tracked the run there. A
    tracking failure is one line; the export itself still succeeds."""
    metadata = export_keras(final_model.path, keras_model.path)
    keras_model.metadata.update({**final_model.metadata, **metadata})
    run_id = final_model.metadata.get("mlflow_run_id", "")
    if not (tracking_uri and run_id):
        return
    try:
        keras_model.metadata["mlflow_model_uri"] = track_keras_model(
            keras_model.path, tracking_uri, run_id)
    except Exception as exc:  # MLflow or the network: the model is in the KFP artifact
        print(f"export: MLflow tracking unavailable ({' '.join(str(exc).split())[:200]}): "
              "model.keras is in the KFP artifact only")
